"""Measurement helpers of the throughput benchmark: peak memory, FLOP counting, timing, peak FLOP/s, hardware."""

import contextlib
import ctypes
import gc
import os
import platform
import threading
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """
    Peak memory used inside the block: `torch.cuda.max_memory_allocated` above the allocation at entry on CUDA; on
    CPU the peak resident set size above the one at entry (after `gc` and glibc's `malloc_trim`), sampled every ms.
    """

    def __init__(self, device: torch.device):
        self.device, self.base, self.peak = device, 0, 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_bytes())

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            self.base = self.peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes())

    @property
    def used(self) -> int:
        return self.peak - self.base


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(fn, *args) -> int:
    """FLOPs of `fn(*args)` (matmuls, convolutions, attention) as counted by `FlopCounterMode`."""
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return counter.get_total_flops()


def timed(device, fn, *args) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn(*args)
    synchronize(device)
    return time.perf_counter() - start


def measure_matmul_flops(device: str = "cpu", dtype: str = "fp32", size: int | None = None) -> float:
    """Achieved FLOP/s of a square matmul (best of several): the "peak" used for MFU on CPU."""
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 1024)
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    a = torch.randn(size, size, device=device, dtype=torch_dtype)
    b = torch.randn(size, size, device=device, dtype=torch_dtype)
    best = float("inf")
    for _ in range(6):
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def counting_backend(name: str, mode: str, graphs: list):
    """
    torch.compile's backend `name` (inductor in `mode`, or a named one), noting each graph dynamo hands it: a backend
    of its own per compiled model, so that no model reuses another's compiled code and the count is its own.
    """
    if name == "inductor":
        inner = torch._TorchCompileInductorWrapper(mode, None, False)  # what torch.compile(mode=) uses
    else:
        inner = torch._dynamo.lookup_backend(name)

    def backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return inner(graph_module, example_inputs)

    return backend


def hardware_line(device: str) -> str:
    import transformers

    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        what = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}"
    else:
        model = platform.processor() or platform.machine()
        with contextlib.suppress(OSError):
            with open("/proc/cpuinfo") as f:
                model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
        what = f"CPU {model}, {os.cpu_count()} logical cores, {torch.get_num_threads()} torch threads"
    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    return f"{what}; {versions}, Python {platform.python_version()}"


__all__ = ["PeakMemory", "count_flops", "hardware_line", "measure_matmul_flops", "synchronize", "timed"]
