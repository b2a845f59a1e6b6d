"""Helpers every part of the study shares: running the example scripts, their arguments and logs, statistics over
seeds, and running jobs side by side in worker processes."""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import EvalResult

from study_config import TASK_SCORES, TEXT_TASKS


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


def backbone_overrides(modality: str, model_size: str) -> str:
    """
    The study's changes to `run_pretraining.py`'s backbone. Vision: 4 x 4 patches of the 28 x 28 images (49 patches)
    at every size. Audio, tiny: a 3-layer CNN with a wide first kernel (40 samples, stride 20; 160 samples = 10 ms per
    frame), 4x cheaper per clip than the 7-layer one. Text: none.
    """
    if modality == "vision":
        return "backbone.patch_size=4"
    if modality == "audio" and model_size == "tiny":
        return "backbone.conv_dim=[64,64,64],backbone.conv_kernel=[40,4,2],backbone.conv_stride=[20,4,2]"
    return ""


def study_backbone_config(modality: str, model_size: str, tokenizer=None):
    """The backbone every arm of a modality uses: exactly the student configuration `run_pretraining.py` builds."""
    pretraining_utils = load_example("pretraining_utils")
    model_args = pretraining_utils.Data2VecModelArguments(
        modality=modality, model_size=model_size, config_overrides=backbone_overrides(modality, model_size) or None
    )
    image_size = 28 if modality == "vision" else None
    return pretraining_utils.build_pretraining_config(model_args, tokenizer, image_size).backbone_config


def study_eval_result(score_stats: dict, **fields) -> EvalResult:
    """A model-index entry of a study card: the mean over seeds of a score (`fields` name the task and metric)."""
    return EvalResult(metric_value=round(score_stats["mean"], 2), **fields)


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


def summarize_runs(runs: list[dict]) -> dict[str, dict[str, dict]]:
    """
    `{arm: {"<task>/<score>": stats}}` over seeds, plus `"average"`: per seed, the unweighted mean of each text
    task's main score (SST-2 accuracy, STS-B (Pearson + Spearman) / 2, XQuAD-en F1) over the text tasks that ran.
    """
    summary: dict[str, dict[str, dict]] = {}
    by_arm: dict[str, dict[str, dict[int, dict]]] = {}
    for run in runs:
        by_arm.setdefault(run["arm"], {}).setdefault(run["task"], {})[run["seed"]] = run["scores"]
    for arm, tasks in by_arm.items():
        out = summary.setdefault(arm, {})
        for task, per_seed in tasks.items():
            for key in next(iter(per_seed.values())):
                out[f"{task}/{key}"] = stats([scores[key] for scores in per_seed.values()])
        text = {task: per_seed for task, per_seed in tasks.items() if task in TEXT_TASKS}
        seeds = sorted(set.intersection(*(set(per_seed) for per_seed in text.values()))) if text else []
        if seeds:
            averages = [np.mean([text[task][seed][TASK_SCORES[task][0]] for task in text]) for seed in seeds]
            out["average"] = stats(averages)
    return summary


def _call(target: str, kwargs: dict, threads: int | None):
    """Runs `module:function(**kwargs)` of the study's modules (in a worker process, or in this one)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)(**kwargs)


def run_jobs(jobs: list[tuple[Any, str, dict]], workers: int, threads: int | None, on_done) -> None:
    """
    Runs `jobs` (`(key, "module:function", kwargs)`) with `workers` processes (spawned, `threads` torch threads each;
    in this process when `workers == 1`), calling `on_done(key, result)` here as each one finishes, so finished
    results are saved even if a later job fails. On a 2-core CPU, two 1-thread runs side by side take about half
    the wall time of running them one after the other at 2 threads.
    """
    if workers <= 1 or len(jobs) <= 1:
        for key, target, kwargs in jobs:
            on_done(key, _call(target, kwargs, threads))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_call, target, kwargs, threads): key for key, target, kwargs in jobs}
        for future in as_completed(futures):
            on_done(futures[future], future.result())


__all__ = [
    "EXAMPLE_FOLDERS",
    "backbone_overrides",
    "study_backbone_config",
    "study_eval_result",
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
    "summarize_runs",
]
