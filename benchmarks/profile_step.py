"""
Where the time of one pretraining step goes: `torch.profiler` over a few steps of one variant of
`reference_steps.py` (the same models, inputs and levers as the throughput suite), written as markdown: the kernels
(CUDA) or operators (CPU) that take the most time, and on CUDA how busy the GPU was (the summed kernel time against
the wall-clock of the steps; a step far from 100% waits on kernel launches, not on arithmetic).

# the data2vec 1.0 text step with every lever, compiled, on one GPU (the GPU suite's last section runs this too)
python benchmarks/profile_step.py --modality text --device cuda --size base --dtype bf16 --levers all --compile \
    --output outputs/profile_text.md
# the same code at tiny size on CPU
python benchmarks/profile_step.py --modality vision --output outputs/profile_vision.md
"""

import argparse
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from measurement import hardware_line, synchronize
from reference_steps import ALL_LEVERS, VARIANTS, BenchmarkSetup, prepare_variant, train_step, variant_name


LEVERS = {"none": {}, "all": ALL_LEVERS}


def profile_step(setup: BenchmarkSetup, variant: str, steps: int = 3, rows: int = 25) -> str:
    """Markdown: the busiest kernels / operators over `steps` steps of `variant`, after its warm-up."""
    device = torch.device(setup.device)
    prepared = prepare_variant(setup, variant)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    synchronize(device)
    start = time.perf_counter()
    with profile(activities=activities) as profiler:
        for _ in range(steps):
            train_step(variant, prepared.runner, prepared.inputs, prepared.optimizer, setup)
        synchronize(device)
    wall = (time.perf_counter() - start) / steps
    averages = profiler.key_averages()
    lines = [f"{variant_name(setup, variant)}: {wall * 1e3:,.1f} ms per step under the profiler ({steps} steps)"]
    if device.type == "cuda":
        # the self device time of every operator sums each kernel once
        busy = sum(event.self_device_time_total for event in averages) / 1e6 / steps
        lines.append(f"GPU busy {busy * 1e3:,.1f} ms per step ({busy / wall:.0%} of the wall-clock)")
        sort_by = "self_device_time_total"
    else:
        sort_by = "self_cpu_time_total"
    lines += ["", "```", averages.table(sort_by=sort_by, row_limit=rows, max_name_column_width=60), "```"]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modality", default="text", choices=("text", "audio", "vision"))
    parser.add_argument("--variant", default="data2vec", choices=VARIANTS)
    parser.add_argument("--size", default="tiny", choices=("tiny", "base"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--length", type=int, default=None)
    parser.add_argument("--levers", default="none", choices=sorted(LEVERS), help="'all': bf16 teacher, fused ...")
    parser.add_argument("--compile", action="store_true", help="torch.compile (backend inductor)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--output", default=None, help="markdown file (printed either way)")
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    setup = BenchmarkSetup(
        modality=args.modality, size=args.size, batch_size=args.batch_size, length=args.length, device=args.device,
        dtype=args.dtype, steps=args.steps, warmup=2, compile=args.compile, **LEVERS[args.levers],
    )  # fmt: skip
    report = f"Hardware: {hardware_line(args.device)}\n\n{profile_step(setup, args.variant, args.steps)}\n"
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(report, encoding="utf-8")
    print(report)
    return report


if __name__ == "__main__":
    main()
