"""
The checkpoint comparison's report, generated from `results.json` alone: per task, each checkpoint's probe and
fine-tuning scores (mean ± std over seeds, n), the learning rate its sweep chose, the paired differences against the
reference checkpoint with 95% bootstrap intervals, the data2vec paper's numbers where the paper has the task (marked
as the paper's, with its protocol), the skips with their reasons, the cost of every run and the exact command.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from d2v_hf.atomic_io import atomic_write_text

from comparison_tasks import TASKS
from study_utils import fmt, paired_bootstrap, stats


# a bootstrap over 2 paired differences only spans them: no interval, and no claim, below 3 seeds
MIN_SEEDS_FOR_INTERVAL = 3
# data2vec 1.0 paper, Table 4: GLUE dev, base models, lr swept over {1e-5, 2e-5, 3e-5, 4e-5}, mean of 5 runs
PAPER_GLUE = {
    "data2vec-text": {"mnli": 83.2, "qnli": 90.9, "rte": 67.0, "mrpc": 90.2, "qqp": 89.1, "stsb": 87.2, "cola": 62.2,
                      "sst2": 91.8},
    "roberta": {"mnli": 84.1, "qnli": 90.4, "rte": 69.3, "mrpc": 89.0, "qqp": 89.3, "stsb": 88.9, "cola": 56.8,
                "sst2": 92.3},
    "bert": {"mnli": 84.0, "qnli": 89.0, "rte": 61.0, "mrpc": 86.3, "qqp": 89.1, "stsb": 89.5, "cola": 57.3,
             "sst2": 93.0},
}  # fmt: skip
PAPER_GLUE_NOTE = (
    "Paper: data2vec 1.0 (Baevski et al., 2022), Table 4, GLUE dev, base models pretrained on Books + Wikipedia, "
    "fine-tuned with the learning rate swept over {1e-5, 2e-5, 3e-5, 4e-5}, mean of 5 runs; the RoBERTa row is "
    "RoBERTa retrained in the BERT setup, the BERT row is from Wu et al. (2020)."
)
PAPER_OTHER = (
    "The paper reports no Fashion-MNIST, spoken-digit or XQuAD numbers. For orientation only, its ImageNet-1k top-1 "
    "(ViT-B, fine-tuned; Table 1): data2vec 84.2, MAE 83.6, BEiT 83.2, DINO 82.8; its LibriSpeech test-other WER "
    "(base, 10 h labelled, 4-gram LM; Table 2): data2vec 8.1, wav2vec 2.0 9.5, HuBERT 9.4."
)


def _values(runs: dict, key: str = "score") -> list[float]:
    return [run["scores"][key] if "scores" in run else run[key] for _, run in sorted(runs.items(), key=_seed_order)]


def _seed_order(item):
    return int(item[0])


def _score_stats(record: dict, part: str) -> dict | None:
    runs = record.get(part)
    if not runs:
        return None
    return stats(_values(runs))


def _cell(summary: dict | None) -> str:
    return "–" if summary is None else f"{fmt(summary)} (n={summary['n']})"


def _paper(record: dict, task: str) -> str:
    number = PAPER_GLUE.get(record.get("model_type"), {}).get(task)
    return "–" if number is None else f"{number}"


def _task_table(results: dict, task: str) -> list[str]:
    lines = [
        "| checkpoint | family | linear probe | fine-tuned | chosen lr | sweep (lr: held-out score) | paper |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    skips = []
    for name in results["checkpoints"]:
        record = results["pairs"].get(f"{name}|{task}")
        if record is None:
            continue
        if record.get("status") == "skipped":
            skips.append(f"- {name}: skipped, {record['reason']}.")
            continue
        sweep = record.get("sweep", {})
        sweep_text = ", ".join(f"{rate}: {run['scores']['score']:.1f}" for rate, run in sweep.items()) or "–"
        lines.append(
            f"| {name} | {record.get('model_type')} | {_cell(_score_stats(record, 'probe'))} | "
            f"{_cell(_score_stats(record, 'finetune'))} | {record.get('chosen_learning_rate', '–')} | {sweep_text} | "
            f"{_paper(record, task)} |"
        )
    return (lines if len(lines) > 2 else []) + ([""] + skips if skips else [])


def _xquad_languages(results: dict) -> list[str]:
    rows = []
    for name in results["checkpoints"]:
        runs = results["pairs"].get(f"{name}|xquad", {}).get("finetune")
        if not runs:
            continue
        keys = sorted(k for k in next(iter(runs.values()))["scores"] if k.endswith("_f1") and k != "zero_shot_f1")
        rows.append((name, keys, {k: np.mean(_values(runs, k)) for k in ["score", "zero_shot_f1", *keys]}))
    if not rows:
        return []
    keys = rows[0][1]
    header = "| checkpoint | en (F1) | zero-shot mean | " + " | ".join(k.removesuffix("_f1") for k in keys) + " |"
    lines = ["", "Zero-shot F1 per language (mean over seeds; trained on English only):", "", header]
    lines.append("|---|" + "---:|" * (len(keys) + 2))
    for name, _, means in rows:
        cells = [f"{means['score']:.1f}", f"{means.get('zero_shot_f1', float('nan')):.1f}"]
        cells += [f"{means[k]:.1f}" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _differences(results: dict, task: str) -> list[str]:
    reference = results["reference"]
    base = results["pairs"].get(f"{reference}|{task}")
    if base is None or base.get("status") != "done":
        return []
    lines = []
    for name in results["checkpoints"]:
        record = results["pairs"].get(f"{name}|{task}")
        if name == reference or record is None or record.get("status") != "done":
            continue
        for part, title in (("probe", "probe"), ("finetune", "fine-tuned")):
            ours, theirs = base.get(part, {}), record.get(part, {})
            seeds = sorted(set(ours) & set(theirs), key=int)
            if not seeds:
                continue
            diffs = [_values({s: ours[s]})[0] - _values({s: theirs[s]})[0] for s in seeds]
            mean = float(np.mean(diffs))
            if len(diffs) < MIN_SEEDS_FOR_INTERVAL:
                interval, verdict = f"{len(diffs)} seed(s): too few for an interval", "–"
            else:
                low, high = paired_bootstrap(diffs)
                interval = f"[{low:+.1f}, {high:+.1f}]"
                verdict = "yes" if low > 0 or high < 0 else "no"
            lines.append(f"| {reference} − {name} | {title} | {mean:+.1f} | {interval} | {verdict} | {len(diffs)} |")
    if not lines:
        return []
    header = [
        "",
        f"Paired differences against {reference} (same seeds: same subsets and data order):",
        "",
        "| comparison | score | mean difference | 95% bootstrap interval | interval excludes 0 | seeds |",
        "|---|---|---:|---|---|---:|",
    ]
    return header + lines


def _checkpoint_table(results: dict) -> list[str]:
    lines = ["| name | checkpoint | family | probe pooling |", "|---|---|---|---|"]
    for name, path in results["checkpoints"].items():
        records = [r for r in results["pairs"].values() if r["checkpoint"] == name]
        family = next((r["model_type"] for r in records if "model_type" in r), "–")
        pooling = next((r["pooling"] for r in records if "pooling" in r), "–")
        lines.append(f"| {name} | `{path}` | {family} | {pooling} |")
    return lines


def _cost(results: dict) -> list[str]:
    lines = [
        "| checkpoint | task | probe runs | fine-tuning runs (sweep + seeds) | wall-clock (s) |",
        "|---|---|---:|---:|---:|",
    ]
    total = 0.0
    for record in results["pairs"].values():
        if record.get("status") != "done":
            continue
        runs = [
            *record.get("probe", {}).values(),
            *record.get("sweep", {}).values(),
            *record.get("finetune", {}).values(),
        ]
        seconds = sum(run["wall_time_s"] for run in runs)
        total += seconds
        fine = len(record.get("sweep", {})) + len(record.get("finetune", {}))
        lines.append(
            f"| {record['checkpoint']} | {record['task']} | {len(record.get('probe', {}))} | {fine} | {seconds:.0f} |"
        )
    return lines + ["", f"Total: {total / 60:.1f} minutes on {results['environment']['device']}."]


def _example_commands(results: dict) -> list[str]:
    lines = []
    for record in results["pairs"].values():
        runs = record.get("finetune")
        if runs:
            first = runs[min(runs, key=int)]
            lines.append(f"- {record['checkpoint']} / {record['task']}: `{first['command']}`")
    return lines


def comparison_report_markdown(results: dict, note: str | None = None) -> str:
    settings = results["settings"]
    lines = ["# Checkpoint comparison", ""]
    if note:
        lines += [f"**{note}**", ""]
    lines += [
        "Produced by:",
        "",
        "```bash",
        results["command"],
        "```",
        "",
        f"Environment: {results['environment']['device']}, torch {results['environment']['torch']}, transformers "
        f"{results['environment']['transformers']}. Seeds {results['seeds']}; {settings['max_steps']} fine-tuning "
        f"steps of batch {settings['batch_size']} on at most {settings['max_train_samples']} training examples; at "
        f"most {settings['max_eval_samples']} evaluation examples.",
        "",
        "## Protocol",
        "",
        "One protocol for every checkpoint, each with its own tokenizer / image processor / feature extractor:",
        "",
        f"1. **Linear probe** (one per seed, which draws its {settings['probe_train_samples']} training examples): "
        "pooled last-layer features of the frozen checkpoint, logistic regression (ridge for STS-B) on standardised "
        "features, its regularisation chosen on a held-out 20% of the probe's training examples; scored on the "
        "evaluation set with the task's metric. No probe for question answering.",
        f"2. **Learning-rate sweep**: one fine-tuning run per candidate rate (first seed) on the training data minus "
        f"a held-out {settings['model_selection_fraction']:.0%} (QA: of the training articles), scored on that part: "
        "the reported evaluation set is never used to choose.",
        "3. **Fine-tuning** with the chosen rate, one run per seed, through the example scripts "
        "(`run_glue.py`, `run_qa.py`, `run_image_classification.py`, `run_audio_classification.py`) with each "
        "family's own task head (BEiT-style image models with mean pooling of the patch tokens, as their papers "
        "fine-tune).",
        "",
        "Scores are percent; ± is the standard deviation over seeds, n the number of seeds.",
        "",
        *_checkpoint_table(results),
        "",
        "## Results",
    ]
    for task in results["tasks"]:
        spec = TASKS[task]
        lines += ["", f"### {spec.title} ({spec.metric})", "", *_task_table(results, task)]
        if task == "xquad":
            lines += _xquad_languages(results)
        lines += _differences(results, task)
    lines += ["", "## The paper's numbers", "", PAPER_GLUE_NOTE, "", PAPER_OTHER]
    lines += ["", "## Cost", "", *_cost(results)]
    lines += ["", "## One command per (checkpoint, task)", "", *_example_commands(results)]
    lines += ["", "Every run's command, scores and time are in `results.json`; this page is generated from it."]
    return "\n".join(lines) + "\n"


def write_comparison_report(results: dict, path: str | os.PathLike, note: str | None = None) -> Path:
    atomic_write_text(path, comparison_report_markdown(results, note))
    return Path(path)


__all__ = ["PAPER_GLUE", "comparison_report_markdown", "write_comparison_report"]
