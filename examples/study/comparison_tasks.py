"""
The tasks of the checkpoint comparison (`compare_checkpoints.py`): where each task's data comes from (local files
first, the Hub when it is reachable), the example script and arguments that fine-tune on it, the score read from the
script's metrics, and the data of its frozen-feature probe.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import AutoConfig

from d2v_hf.argument_parsing import load_config
from d2v_hf.backbone_registry import BACKBONES
from d2v_hf.data import (
    SPOKEN_DIGITS_TRAIN_VOICES,
    SPOKEN_DIGITS_VALIDATION_VOICES,
    espeak_ng_available,
    synthesize_spoken_digits,
)
from d2v_hf.finetuning import (
    GLUE_TASKS,
    AudioDataArguments,
    ClassificationModelArguments,
    ImageDataArguments,
    check_image_size,
    detect_modality,
    encode_glue_labels,
    get_glue_label_info,
    glue_compute_metrics,
    load_audio_classification_datasets,
    load_glue_datasets,
    load_image_classification_datasets,
    load_processor_settings,
    task_to_keys,
)


class TaskUnavailable(Exception):
    """The task's data cannot be reached here; the message says why (it becomes the report's skip line)."""


@dataclass(frozen=True)
class Task:
    name: str
    modality: str
    kind: str  # glue | xquad | squad | image | audio
    title: str
    metric: str  # what the main score is


TASKS = {
    **{
        name: Task(name, "text", "glue", name.upper().replace("SST2", "SST-2").replace("STSB", "STS-B"), metric)
        for name, metric in {
            "cola": "Matthews correlation",
            "sst2": "accuracy",
            "mrpc": "mean of accuracy and F1",
            "qqp": "mean of accuracy and F1",
            "stsb": "mean of Pearson and Spearman",
            "mnli": "matched accuracy",
            "qnli": "accuracy",
            "rte": "accuracy",
            "wnli": "accuracy",
        }.items()
    },
    "xquad": Task("xquad", "text", "xquad", "XQuAD (English training, zero-shot languages)", "English F1"),
    "squad": Task("squad", "text", "squad", "SQuAD v1.1", "F1"),
    "squad_v2": Task("squad_v2", "text", "squad", "SQuAD v2.0", "F1"),
    "fashion_mnist": Task("fashion_mnist", "vision", "image", "Fashion-MNIST", "accuracy"),
    "images": Task("images", "vision", "image", "image folder", "accuracy"),
    "spoken_digits": Task("spoken_digits", "audio", "audio", "spoken digits (unseen voices)", "accuracy"),
    "speech": Task("speech", "audio", "audio", "audio folder", "accuracy"),
}
SQUAD_HUB = {"squad": "rajpurkar/squad", "squad_v2": "rajpurkar/squad_v2"}

# Pooling of the frozen-feature probes, per family (fine-tuning uses the family's own task head, listed beside it)
POOLING = {
    "text": ("cls", "first token (`<s>` / `[CLS]`), as the family's sequence-classification head"),
    "audio": ("mean", "mean over frames, as the family's audio-classification head"),
}
VISION_POOLING = {
    "vit": ("cls", "CLS token, as ViT's and DINO's classifiers"),
    "deit": ("cls", "CLS token (DeiT's classification token)"),
    "beit": ("mean", "mean over patch tokens, as BEiT's fine-tuning (`use_mean_pooling`)"),
    "data2vec-vision": ("mean", "mean over patch tokens, as data2vec's (BEiT's) fine-tuning (`use_mean_pooling`)"),
}


def hub_offline() -> bool:
    return any(os.environ.get(name, "0") not in ("0", "") for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def checkpoint_modality(checkpoint: str) -> tuple[str | None, str]:
    """`(modality, model_type)` of a checkpoint (folder or Hub id), from its config (a clear error if unreadable)."""
    config = load_config(checkpoint, "--checkpoints")
    return detect_modality(config), config.model_type


def probe_pooling(modality: str, model_type: str) -> tuple[str, str]:
    """`(pooling, why)` of the probe features of a family."""
    if modality == "vision":
        return VISION_POOLING.get(model_type, ("cls", "CLS token (the family's classifier reads it)"))
    return POOLING[modality]


def prefix_tokens(model_type: str) -> int:
    family = BACKBONES.get(model_type)
    return family.prefix_tokens if family is not None else 1


def task_data(args, task: Task) -> dict:
    """The data arguments of `task`'s script, or `TaskUnavailable` saying why the data cannot be reached."""
    data = Path(args.data_dir)
    if task.kind == "glue":
        folder = Path(args.glue_dir) if args.glue_dir else data / "glue" / task.name
        if (folder / "train.tsv").is_file() and (folder / "dev.tsv").is_file():
            return {"train_file": str(folder / "train.tsv"), "validation_file": str(folder / "dev.tsv")}
        if hub_offline():
            raise TaskUnavailable(f"no local files {folder}/train.tsv and dev.tsv, and the Hub is offline")
        return {}  # nyu-mll/glue from the Hub
    if task.kind == "xquad":
        folder = data / "xquad"
        if not (folder / "xquad.en.json.gz").is_file():
            raise TaskUnavailable(f"no XQuAD files in {folder}")
        languages = [lang.strip() for lang in args.xquad_languages.split(",") if lang.strip()]
        return {"xquad_dir": str(folder), "xquad_test_fraction": 0.5, "xquad_languages": languages}
    if task.kind == "squad":
        if hub_offline():
            raise TaskUnavailable(f"{SQUAD_HUB[task.name]} is on the Hub, which is offline")
        extra = {"version_2_with_negative": True} if task.name == "squad_v2" else {}
        return {"dataset_name": SQUAD_HUB[task.name], **extra}
    if task.name == "fashion_mnist":
        folder = data / "vision" / "fashion-mnist"
        if not folder.is_dir():
            raise TaskUnavailable(f"no Fashion-MNIST folder {folder}")
        return {"train_dir": str(folder), "validation_dir": str(folder)}
    if task.name in ("images", "speech"):
        kind = "image" if task.name == "images" else "audio"
        hub_name = getattr(args, f"{kind}_dataset_name")
        if hub_name:
            if hub_offline() and not Path(hub_name).exists():
                raise TaskUnavailable(f"{hub_name} is on the Hub, which is offline")
            columns = {f"{kind}_column_name": getattr(args, f"{kind}_column_name")}
            return {"dataset_name": hub_name, "label_column_name": args.label_column_name, **columns}
        train_dir, validation_dir = getattr(args, f"{kind}_train_dir"), getattr(args, f"{kind}_validation_dir")
        if not (train_dir and validation_dir):
            raise TaskUnavailable(
                f"neither --{kind}_dataset_name nor --{kind}_train_dir/--{kind}_validation_dir given"
            )
        return {"train_dir": train_dir, "validation_dir": validation_dir}
    # spoken digits: synthesized once into the comparison's folder (training and unseen validation voices)
    if not espeak_ng_available():
        raise TaskUnavailable("espeak-ng, which synthesizes the spoken digits, is not installed")
    root = Path(args.output_dir) / "data"
    train, validation = root / "digits_train", root / "digits_validation"
    if not (train.is_dir() and validation.is_dir()):
        synthesize_spoken_digits(train, SPOKEN_DIGITS_TRAIN_VOICES[: args.digit_voices], seed=0)
        synthesize_spoken_digits(validation, SPOKEN_DIGITS_VALIDATION_VOICES, seed=1)
    return {"train_dir": str(train), "validation_dir": str(validation)}


def finetune_arguments(args, task: Task, data: dict, model_selection: bool) -> tuple[str, dict]:
    """`(script name, its arguments)` of one fine-tuning run (without model, seed, learning rate, output)."""
    common = dict(max_train_samples=args.max_train_samples, max_eval_samples=args.max_eval_samples)
    if task.kind == "glue":
        arguments = dict(task_name=task.name, max_seq_length=args.max_seq_length, pad_to_max_length="false")
        if model_selection:
            arguments["model_selection_fraction"] = args.model_selection_fraction
        return "run_glue", {**data, **arguments, **common}
    if task.kind in ("xquad", "squad"):
        arguments = dict(max_seq_length=args.qa_max_seq_length, doc_stride=args.qa_doc_stride)
        if model_selection:
            arguments["model_selection_fraction"] = args.model_selection_fraction
        return "run_qa", {**data, **arguments, **common}
    if model_selection:  # a held-out part of the training data replaces the validation data
        data = {**data, "model_selection_fraction": args.model_selection_fraction}
    if task.kind == "image":
        return "run_image_classification", {**data, "min_crop_scale": 1.0, **common}
    extra = {"max_length_seconds": args.audio_clip_seconds, "freeze_feature_encoder": "false"}
    return "run_audio_classification", {**data, **extra, **common}


def finetune_score(task: Task, metrics: dict) -> dict[str, float]:
    """The scores of a finished run (percent): `score` is the task's main one."""
    if task.kind == "glue":
        key = "eval_combined_score" if "eval_combined_score" in metrics else None
        if key is None:
            key = next(k for k in ("eval_matthews_correlation", "eval_accuracy", "eval_pearson") if k in metrics)
        scores = {"score": 100 * float(metrics[key])}
        scores.update({k.removeprefix("eval_"): 100 * float(v) for k, v in metrics.items() if k in _GLUE_KEYS})
        return scores
    if task.kind == "xquad":
        languages = metrics["xquad"]["languages"]
        scores = {"score": float(languages["en"]["f1"]), "en_exact_match": float(languages["en"]["exact_match"])}
        others = [lang for lang in languages if lang != "en"]
        if others:
            scores["zero_shot_f1"] = float(np.mean([languages[lang]["f1"] for lang in others]))
            scores.update({f"{lang}_f1": float(languages[lang]["f1"]) for lang in others})
        return scores
    if task.kind == "squad":
        return {"score": float(metrics["eval_f1"]), "exact_match": float(metrics["eval_exact_match"])}
    return {"score": 100 * float(metrics["eval_accuracy"])}


_GLUE_KEYS = ("eval_accuracy", "eval_f1", "eval_pearson", "eval_spearmanr", "eval_matthews_correlation")


def glue_probe_score(task: Task):
    """`score(predictions, targets)` of a GLUE probe in percent: the task's metric(s), averaged as the scripts do."""

    def score(predictions, targets):
        values = glue_compute_metrics(task.name, predictions, targets)
        return 100 * float(np.mean(list(values.values())))

    return score


@functools.lru_cache(maxsize=4)
def _encoded_glue(task_name: str, data_items: tuple):
    """
    The task's data with class ids or floats for labels, as run_glue.py reads it. Kept per process: a worker probes
    dozens of checkpoints on the same files, and reading and encoding SST-2's 67k training labels takes seconds.
    """
    raw = load_glue_datasets(task_name, **dict(data_items))
    return encode_glue_labels(raw, get_glue_label_info(raw, task_name))


def glue_probe_data(args, task: Task, data: dict, seed: int):
    """`(train_texts, eval_texts, train_targets, eval_targets)`: seeded subsets of the task's train and dev sets."""
    raw = _encoded_glue(task.name, tuple(sorted(data.items())))
    first, second = task_to_keys[task.name]
    validation = raw["validation_matched" if task.name == "mnli" else "validation"]

    def take(dataset, limit, shuffle):
        if limit is not None and limit < len(dataset):
            dataset = (dataset.shuffle(seed=seed) if shuffle else dataset).select(range(limit))
        # [:] reads each column at once (datasets >= 4 returns a lazy Column, read row by row when iterated)
        texts = (dataset[first][:], dataset[second][:] if second else None)
        return texts, np.array(dataset["label"][:])

    # a seeded training subset; the first evaluation examples, as run_glue.py's --max_eval_samples
    train_texts, train_targets = take(raw["train"], args.probe_train_samples, shuffle=True)
    eval_texts, eval_targets = take(validation, args.max_eval_samples, shuffle=False)
    return train_texts, eval_texts, train_targets, eval_targets


def classification_probe_data(args, task: Task, data: dict, checkpoint: str, seed: int):
    """
    Labelled training and evaluation sets of an image or audio probe, through the fine-tuning scripts' loaders
    (folders or a Hub dataset), read as the checkpoint's processor says, with no training augmentation.
    """
    model_args = ClassificationModelArguments(model_name_or_path=checkpoint)
    data_args = (ImageDataArguments if task.modality == "vision" else AudioDataArguments)(
        **data, max_train_samples=args.probe_train_samples
    )
    if task.modality == "vision":
        settings = load_processor_settings(model_args, "vision")
        size = check_image_size(AutoConfig.from_pretrained(checkpoint))
        mean, std = settings["image_mean"], settings["image_std"]
        loaded = load_image_classification_datasets(data_args, size, mean, std, seed, model_args, False)
    else:
        loaded = load_audio_classification_datasets(data_args, 16000, seed, model_args)
    test = loaded.validation
    if args.max_eval_samples is not None and args.max_eval_samples < len(test):
        test = test.shuffle(seed=0).select(range(args.max_eval_samples))  # the same evaluation set for every seed
    return loaded.train, test


__all__ = [
    "GLUE_TASKS",
    "TASKS",
    "Task",
    "TaskUnavailable",
    "checkpoint_modality",
    "classification_probe_data",
    "finetune_arguments",
    "finetune_score",
    "glue_probe_data",
    "glue_probe_score",
    "probe_pooling",
    "prefix_tokens",
    "task_data",
]
