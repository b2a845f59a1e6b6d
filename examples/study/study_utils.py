"""Helpers every part of the study shares: running the example scripts, their arguments and logs, statistics over
seeds, and running jobs side by side in worker processes."""

from __future__ import annotations

import functools
import importlib
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


# Where each example script (and its helper modules) lives, relative to examples/.
EXAMPLE_FOLDERS = {
    "run_pretraining": "pretraining",
    "pretraining_utils": "pretraining",
    "run_glue": "text-classification",
    "run_qa": "question-answering",
    "run_image_classification": "image-classification",
    "run_audio_classification": "audio-classification",
}


def load_example(name: str):
    """
    Imports `examples/<task>/<name>.py` of this checkout (the scripts are not part of the installed package): the
    script's folder goes on `sys.path`, as when it runs as `python examples/<task>/<name>.py`, so its own helper
    modules import too. Spawned worker processes inherit the path.
    """
    folder = Path(__file__).resolve().parents[1] / EXAMPLE_FOLDERS[name]
    if not (folder / f"{name}.py").is_file():
        raise FileNotFoundError(
            f"{folder / name}.py not found: the study runs from a checkout of the d2v_hf repository."
        )
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(name)


def comma_list(text: str | None) -> list[str]:
    """A comma-separated flag's items, stripped, empty ones dropped (`None` -> `[]`)."""
    return [item.strip() for item in ("" if text is None else str(text)).split(",") if item.strip()]


def pyplot():
    """matplotlib's pyplot on the Agg backend: the study writes PNG files and never opens a window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike) -> None:
    """The figure as a PNG, whole or not at all (a stopped run leaves no half-written image), then closed."""
    # imported here: this module stays free of torch, so the study's worker processes start fast
    from d2v_hf.atomic_io import atomic_write_file

    atomic_write_file(path, functools.partial(fig.savefig, dpi=110, format="png"))
    pyplot().close(fig)


def cli_args(**kwargs) -> list[str]:
    """
    `cli_args(do_train=True, seed=1, langs=["en", "de"])` -> `["--do_train", "--seed", "1", "--langs", "en", "de"]`;
    `None`/`False` values are left out.
    """
    args = []
    for key, value in kwargs.items():
        if value is True:
            args.append(f"--{key}")
        elif isinstance(value, (list, tuple)):
            args += [f"--{key}", *map(str, value)]
        elif value is not None and value is not False:
            args += [f"--{key}", str(value)]
    return args


def device_kwargs() -> dict[str, Any]:
    import torch

    return {} if torch.cuda.is_available() else {"use_cpu": True}


def common_training_kwargs() -> dict[str, Any]:
    return dict(report_to="none", save_strategy="no", disable_tqdm="true", log_level="warning", **device_kwargs())


def read_log_history(output_dir: str | os.PathLike) -> list[dict]:
    path = Path(output_dir) / "trainer_state.json"
    return json.loads(path.read_text())["log_history"] if path.is_file() else []


def series(log_history: list[dict], key: str) -> list[list[float]]:
    return [[e["step"], float(e[key])] for e in log_history if key in e and e[key] is not None]


def environment_info() -> dict[str, Any]:
    """Hardware and library versions, for the report and the model cards."""
    import torch
    import transformers

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    return {
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
    }


def stats(values: list[float]) -> dict[str, Any]:
    values = [float(v) for v in values]
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "n": len(values),
        "values": values,
    }


def paired_bootstrap(differences: list[float], resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """
    95% percentile-bootstrap interval of the mean of paired differences (one per seed, same seed = same data order
    and subsets): resamples the differences with replacement. With few seeds the interval is wide, as it should be.
    """
    values = np.asarray(differences, dtype=float)
    means = np.random.default_rng(seed).choice(values, size=(resamples, len(values)), replace=True).mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def fmt(stats: dict | None, digits: int = 1) -> str:
    """`mean ± std` of a [`stats`] dictionary, or a dash."""
    if not stats:
        return "–"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def _digits(*values: float) -> int:
    """One decimal, or two where one would print a nonzero value as -0.0 or +0.0."""
    return 2 if any(0 < abs(value) < 0.05 for value in values) else 1


def signed(value: float, digits: int | None = None) -> str:
    """`value` with its sign (a zero as +0.0), at `digits` decimals (by default `_digits(value)`)."""
    digits = _digits(value) if digits is None else digits
    return f"{(round(value, digits) + 0.0):+.{digits}f}"  # + 0.0 turns a rounded -0.0 into 0.0


def difference_interval(difference: dict) -> str:
    """`mean [low, high]` of a `paired_difference` with its interval, the three at the same decimals."""
    values = (difference["mean"], difference["low"], difference["high"])
    digits = _digits(*values)
    return "{} [{}, {}]".format(*(signed(value, digits) for value in values))


def _call(target: str, kwargs: dict, threads: int | None):
    """Runs `module:function(**kwargs)` of the study's modules (in a worker process, or in this one)."""
    import torch

    if threads:
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        # numpy's / scipy's BLAS too: two workers each using both cores make scikit-learn's probes 6x slower
        threadpool_limits(threads)
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)(**kwargs)


def _exit_with(parent: int) -> None:
    """
    Runs in each worker process: ends it once the study's process is gone. A worker in the middle of a job reads no
    more from the pool until the job ends, so a study killed on its own (`kill`, a lost session) would leave its
    workers training on, orphaned, into the run folders that the restarted study resumes and writes to.
    """

    def watch():
        while os.getppid() == parent:
            time.sleep(2)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-study", daemon=True).start()


def run_jobs(jobs: list[tuple[Any, str, dict]], workers: int, threads: int | None, on_done) -> None:
    """
    Runs `jobs` (`(key, "module:function", kwargs)`) with `workers` processes (spawned, `threads` torch threads each;
    in this process when `workers == 1`), calling `on_done(key, result)` here as each one finishes, so finished
    results are saved even if a later job fails. `on_done` may return more jobs (those that needed this result),
    which join the queue: a worker that would otherwise wait for the slowest job of a stage takes them instead. On a
    2-core CPU, two 1-thread runs side by side take about half the wall time of running them one after the other at
    2 threads.
    """
    if workers <= 1:
        queue = list(jobs)
        while queue:
            key, target, kwargs = queue.pop(0)
            queue += on_done(key, _call(target, kwargs, threads)) or []
        return
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, initializer=_exit_with, initargs=(os.getpid(),)) as pool:
        pending = {pool.submit(_call, target, kwargs, threads): key for key, target, kwargs in jobs}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                for key, target, kwargs in on_done(pending.pop(future), future.result()) or []:
                    pending[pool.submit(_call, target, kwargs, threads)] = key


__all__ = [
    "EXAMPLE_FOLDERS",
    "cli_args",
    "common_training_kwargs",
    "device_kwargs",
    "environment_info",
    "fmt",
    "load_example",
    "read_log_history",
    "paired_bootstrap",
    "run_jobs",
    "series",
    "stats",
]
