"""
The images and speech part of the study's report and model cards: the sections of `docs/study.md` on Fashion-MNIST
and the spoken digits, and one card per image or speech model. Every number comes from the results dictionary that
`study.run_study` returns.
"""

from __future__ import annotations

import os
from pathlib import Path

from d2v_hf.modelcard import build_model_card, save_model_card

from study_config import ARM_TITLES, MODALITY_OF_TASK, MODALITY_TASK_TITLES
from study_utils import fmt, stats, study_backbone_config, study_eval_result


MODALITY_MODEL_NAMES = {
    "data2vec_vision": "data2vec-vision-{size}-fashion-mnist-study",
    "random_vision": "random-init-vision-{size}-study",
    "data2vec_audio": "data2vec-audio-{size}-speech-study",
    "random_audio": "random-init-audio-{size}-study",
}


_SCORE_TITLES = {
    "probe_accuracy": "linear probe acc",
    "finetune_accuracy": "fine-tuned acc",
    "recorded_accuracy": "recorded human digits acc (10 clips)",
}


def describe_backbone(args, modality: str) -> str:
    """One line on the backbone of an image or speech arm, for the report and the cards."""
    config = study_backbone_config(modality, args.model_size)
    text = (
        f"{type(config).__name__.replace('Config', 'Model')}, {config.num_hidden_layers} layers x "
        f"{config.hidden_size} hidden, {config.num_attention_heads} heads, FFN {config.intermediate_size}"
    )
    if modality == "vision":
        size, patch = config.image_size, config.patch_size
        return text + f", {size} x {size} images in {patch} x {patch} patches"
    kernels, strides = list(config.conv_kernel), list(config.conv_stride)
    return text + f", CNN {len(config.conv_dim)} layers (kernels {kernels}, strides {strides})"


def _table(results: dict, task: str) -> list[str]:
    summary = results["summary"]
    keys = [k for k in _SCORE_TITLES if any(f"{task}/{k}" in summary.get(a, {}) for a in summary)]
    lines = ["| arm | " + " | ".join(_SCORE_TITLES[k] for k in keys) + " |", "|---|" + "---:|" * len(keys)]
    for arm in ("data2vec", "random"):
        if any(f"{task}/{k}" in summary.get(arm, {}) for k in keys):
            row = [fmt(summary[arm].get(f"{task}/{k}")) for k in keys]
            lines.append(f"| {ARM_TITLES[arm]} | " + " | ".join(row) + " |")
    diffs = []
    by_key = {(r["arm"], r["seed"]): r["scores"] for r in results["runs"] if r["task"] == task}
    for key in keys:
        values = [
            by_key[("data2vec", s)][key] - by_key[("random", s)][key]
            for s in results["config"]["seed_list"]
            if ("data2vec", s) in by_key and ("random", s) in by_key
        ]
        if values:
            value_stats = stats(values)
            diffs.append(f"| {_SCORE_TITLES[key]} | {fmt(value_stats)} | {sum(v > 0 for v in values)}/{len(values)} |")
    if diffs:
        lines += ["", "| data2vec − random init | difference (mean ± std over seeds) | seeds data2vec wins |"]
        lines += ["|---|---:|---:|", *diffs]
    return lines


def _verdict(results: dict, task: str) -> str:
    summary = results["summary"]
    sentences = []
    for key in ("probe_accuracy", "finetune_accuracy"):
        d2v, rnd = summary.get("data2vec", {}).get(f"{task}/{key}"), summary.get("random", {}).get(f"{task}/{key}")
        if not (d2v and rnd):
            continue
        margin = d2v["mean"] - rnd["mean"]
        spread = max(d2v["std"], rnd["std"])
        if min(d2v["n"], rnd["n"]) < 2:
            size = "one seed: no spread estimate"
        else:
            size = "within the seed spread" if abs(margin) <= spread else "larger than the seed spread"
        who = "data2vec wins" if margin > 0 else "**data2vec loses**"
        if abs(margin) < 0.05:
            who = "a tie"
        by = "" if who == "a tie" else f" by {abs(margin):.1f} points"
        sentences.append(f"{_SCORE_TITLES[key]}: {who}{by} ({size}).")
    return " ".join(sentences)


def _modality_summary(results: dict, tasks: list[str]) -> str:
    """What the image and speech numbers say, generated from them (probe first: the direct test of the features)."""
    summary, sentences = results["summary"], []
    for task in tasks:
        d2v, rnd = summary.get("data2vec", {}), summary.get("random", {})
        probe = [d2v.get(f"{task}/probe_accuracy"), rnd.get(f"{task}/probe_accuracy")]
        tuned = [d2v.get(f"{task}/finetune_accuracy"), rnd.get(f"{task}/finetune_accuracy")]
        name = MODALITY_TASK_TITLES[task].split(" (")[0]
        if all(probe):
            margin = probe[0]["mean"] - probe[1]["mean"]
            better = "better" if margin > 0 else "worse"
            sentences.append(
                f"{name}: the frozen data2vec features are {better} than random features in the linear probe by "
                f"{abs(margin):.1f} points"
                + (
                    " (every seed), so the pretraining learned something useful without labels even at this scale"
                    if margin > 0 and probe[0]["min"] > probe[1]["max"]
                    else ""
                )
                + "."
            )
        if all(tuned):
            margin = tuned[0]["mean"] - tuned[1]["mean"]
            spreads = f"± {tuned[0]['std']:.1f} and ± {tuned[1]['std']:.1f}"
            sentences.append(f"After fine-tuning the difference is {margin:+.1f} points (spreads: {spreads}).")
        failed = [
            f"{r['arm']} seed {r['seed']} ({r['scores']['finetune_accuracy']:.1f}%)"
            for r in results["runs"]
            if r["task"] == task and r["scores"]["finetune_accuracy"] < 25
        ]
        if failed:
            sentences.append(
                f"Fine-tuning runs that barely left chance (below 25%): {', '.join(failed)}; with a few hundred steps "
                "at one shared learning rate, single runs are fragile, so the fine-tuned means carry that noise."
            )
    return " ".join(sentences)


def modality_report_markdown(results: dict) -> str:
    """The images and speech sections of docs/study.md, from `results` (setup, tables, verdicts, commands)."""
    config, pre = results["config"], results.get("pretraining", {})
    tasks = [t for t in config["task_list"] if t in MODALITY_OF_TASK and any(r["task"] == t for r in results["runs"])]
    if not tasks:
        return ""
    backbones = results.get("modality_backbones", {})
    lines = [
        "## Images and speech: data2vec against random initialisation",
        "",
        "Same backbone for both arms; data2vec pretrains it without labels, random init does not pretrain. Both are "
        "then measured the same way, with the same seeds: a **linear probe** (scikit-learn logistic regression on the "
        "standardised, mean-pooled last-layer features of the frozen backbone) and **fine-tuning** of the whole "
        "model with mean pooling and a linear head (data2vec/BEiT image fine-tuning pools the patch tokens; data2vec "
        "1.0 never regresses the CLS token). Scores are accuracies x 100, mean ± std over seeds.",
        "",
    ]
    for task in tasks:
        modality = MODALITY_OF_TASK[task]
        run = pre.get(f"data2vec_{modality}")
        lines += [f"### {MODALITY_TASK_TITLES[task]}", ""]
        if task == "fashion_mnist":
            lines.append(
                f"- Pretraining (data2vec only): the {30000:,} Fashion-MNIST training images, labels unused, "
                f"{config['vision_pretrain_steps']} steps x {config['vision_batch_size']} images (data2vec 1.0 vision "
                f"recipe: block masking of 60% of the patches, top-K teacher layers, EMA), lr "
                f"{config['vision_pretrain_learning_rate']}."
            )
            lines.append(
                f"- Downstream: {config['vision_train_samples']:,} labelled training images (a different random "
                f"subset per seed), {config['vision_eval_samples']:,} test images; fine-tuning "
                f"{config['vision_finetune_steps']} steps x 32 images, lr {config['vision_finetune_learning_rate']}. "
                "Chance: 10%."
            )
        else:
            lines.append(
                "- Pretraining (data2vec only): the recorded speech of `speech/` (568 files, one speaker, 8 kHz "
                "resampled to 16 kHz) plus the 640 espeak-ng training digits, labels unused, "
                f"{config['audio_pretrain_steps']} steps x {config['audio_batch_size']} clips of at most "
                f"{config['audio_max_seconds']} s (data2vec 1.0 audio recipe: span masking, top-K teacher layers, "
                f"EMA), lr {config['audio_pretrain_learning_rate']}."
            )
            lines.append(
                "- Downstream: the ten digit words by espeak-ng in 64 voices for training and 16 other voices for "
                f"evaluation (160 clips), {config['audio_clip_seconds']} s per clip; fine-tuning "
                f"{config['audio_finetune_steps']} steps x 16 clips, lr {config['finetune_learning_rate']}, feature "
                "encoder trained. The fine-tuned model is also run on the ten recorded human digits (one speaker, "
                "another domain; 10 clips, so each is 10 points). Chance: 10%."
            )
        lines.append(f"- Backbone: {backbones.get(modality, '?')}.")
        if run:
            lines.append(
                f"- Pretraining: final loss {run['final_loss']:.4f}, {run['wall_time_s'] / 60:.1f} min; command: "
                f"`{run['command']}`"
            )
        example = next((r for r in results["runs"] if r["task"] == task), None)
        if example:
            lines.append(f"- Fine-tuning command (first run): `{example['command']}`")
        lines += ["", *_table(results, task), "", _verdict(results, task), ""]
    lines += [_modality_summary(results, tasks), ""]
    lines += [
        "Why these results can differ from the paper: the pretraining here is a few hundred steps of a tiny model "
        "(the paper: 800k updates of ViT-B on ImageNet, 400k of a 95M-parameter model on 960 h of LibriSpeech), so "
        "the EMA teacher is still close to its random start and the student has had little time to learn good "
        "targets; the speech corpus is 25 minutes of one speaker, and the digits to classify are synthetic voices "
        "the pretraining barely covers. The linear probe is the purer test of the pretrained features; fine-tuning "
        "with labels for a few hundred steps can let a random initialisation catch up.",
        "",
    ]
    return "\n".join(lines)


def modality_model_name(key: str, model_size: str) -> str:
    return MODALITY_MODEL_NAMES[key].format(size=model_size)


def build_modality_model_card(key: str, results: dict):
    """The card of one image or speech model of the study: recipe and compute, results in the model-index."""
    arm, modality = key.split("_")
    task = next(t for t, m in MODALITY_OF_TASK.items() if m == modality)
    config, summary = results["config"], results["summary"].get(arm, {})
    pre = results.get("pretraining", {}).get(f"data2vec_{modality}") if arm == "data2vec" else None
    details = {"backbone": results.get("modality_backbones", {}).get(modality)}
    if pre:
        details.update(
            {
                "pretraining objective": "data2vec 1.0 (EMA teacher, regression of its top-K layer average at masked "
                "positions)",
                "pretraining data": "Fashion-MNIST training images (labels unused)"
                if modality == "vision"
                else "recorded speech (speech/asterisk-en) + espeak-ng training digits (labels unused)",
                "pretraining command": pre["command"],
                "final pretraining loss": pre["final_loss"],
                "pretraining wall time": f"{pre['wall_time_s'] / 60:.1f} min on {results['environment']['device']}",
            }
        )
    else:
        details["pretraining"] = "none: a random initialisation of the same backbone, one per seed"
    details["pooling"] = "mean over patch tokens / frames"
    details["seeds"] = ", ".join(map(str, config["seed_list"]))
    rows = [
        f"| {_SCORE_TITLES[k.split('/')[1]]} | {fmt(v, 2)} |" for k, v in summary.items() if k.startswith(task + "/")
    ]
    extra = "\n".join(
        ["## Results (mean ± std over seeds, accuracy x 100)", "", "| score | value |", "|---|---:|", *rows, "",
         "Regenerate with `python examples/study/run_study.py` (see model_cards/README.md in d2v_hf)."]
    )  # fmt: skip
    name = modality_model_name(key, config["model_size"])
    index = []
    for score in ("probe_accuracy", "finetune_accuracy"):
        score_stats = summary.get(f"{task}/{score}")
        if score_stats:
            index.append(
                study_eval_result(
                    score_stats,
                    task_type="image-classification" if modality == "vision" else "audio-classification",
                    task_name="Fashion-MNIST classification"
                    if modality == "vision"
                    else "Spoken-digit classification",
                    dataset_type="zalando-datasets/fashion_mnist"
                    if modality == "vision"
                    else "espeak-ng-spoken-digits",
                    dataset_name=MODALITY_TASK_TITLES[task],
                    dataset_split="test" if modality == "vision" else "validation voices",
                    metric_type="accuracy",
                    metric_name=f"{_SCORE_TITLES[score]} (mean of {score_stats['n']} seeds, x100)",
                )
            )
    card = build_model_card(
        name,
        description=f"A {config['model_size']} data2vec-{modality} backbone from the d2v_hf study (arm: "
        f"{ARM_TITLES[arm]}), {config['mode']} mode. See docs/study.md of d2v_hf for the whole comparison.",
        training_details=details,
        tags=["data2vec", modality, "study", "feature-extraction"],
        extra_markdown=extra,
        model_index=index,
    )
    return card


def write_modality_model_cards(results: dict, model_cards_dir: str | os.PathLike) -> list[Path]:
    paths = []
    for key, checkpoint in results.get("checkpoints", {}).items():
        if key not in MODALITY_MODEL_NAMES:
            continue
        card = build_modality_model_card(key, results)
        paths.append(
            save_model_card(card, Path(model_cards_dir) / modality_model_name(key, results["config"]["model_size"]))
        )
        if checkpoint and Path(checkpoint).is_dir():
            card.save(Path(checkpoint) / "README.md")
    return paths


__all__ = [
    "MODALITY_MODEL_NAMES",
    "build_modality_model_card",
    "describe_backbone",
    "modality_model_name",
    "modality_report_markdown",
    "write_modality_model_cards",
]
