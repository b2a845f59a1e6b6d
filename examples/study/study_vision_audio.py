"""
The image and speech arms of the study (`study.py`): data2vec pretraining without labels against a random
initialisation of the same backbone, measured by a linear probe on frozen features and by fine-tuning.

- Images (`fashion_mnist`): `examples/pretraining/run_pretraining.py --modality vision` on the Fashion-MNIST training
  images (labels unused). Downstream, on `vision_train_samples` labelled training images and `vision_eval_samples` test
  images: a linear probe (logistic regression on the mean-pooled last-layer patch features of the frozen backbone) and
  fine-tuning with `examples/image-classification/run_image_classification.py`. Both arms fine-tune with mean pooling,
  as data2vec's (BEiT's) image fine-tuning does: data2vec 1.0 never regresses the CLS token, so CLS pooling would give
  the pretrained arm an untrained summary ([`mean_pooling_checkpoint`]).
- Speech (`spoken_digits`): `--modality audio` on the recorded speech of `../shared/data/speech` (one speaker, 8 kHz,
  resampled) plus the espeak-ng training digits (labels unused). Downstream: the ten digit words by espeak-ng, 64
  voices for training and 16 unseen voices for evaluation (probe and fine-tuning with
  `examples/audio-classification/run_audio_classification.py`), and, as a transfer check, the ten recorded human
  digits.
"""

from __future__ import annotations

import os
import shlex
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

from d2v_hf.data import (
    AUDIO_EXTENSIONS,
    DIGIT_NAMES,
    SPOKEN_DIGITS_TRAIN_VOICES,
    SPOKEN_DIGITS_VALIDATION_VOICES,
    image_transform,
    load_audio_folder,
    load_fashion_mnist,
    spoken_digits_from_asterisk,
    synthesize_spoken_digits,
)
from d2v_hf.data._common import scan_folder
from d2v_hf.finetuning import AudioClassificationCollator

from probes import extract_features, linear_probe_accuracy
from study_config import MODALITY_OF_TASK
from study_utils import (
    EXAMPLE_FOLDERS,
    backbone_overrides,
    cli_args,
    common_training_kwargs,
    load_example,
    read_log_history,
    series,
    study_backbone_config,
)


def fashion_mnist_dir(args) -> Path:
    return Path(args.data_dir) / "vision" / "fashion-mnist"


def prepare_spoken_digits(args, output_dir: str | os.PathLike) -> dict[str, str]:
    """
    Synthesizes the espeak-ng digit words (training and unseen validation voices) and builds the unlabelled speech
    pretraining folder: links to every recording under `data_dir/speech` plus the training digits. Returns the paths.
    """
    out = Path(output_dir)
    train, validation, corpus = out / "digits_train", out / "digits_validation", out / "speech_corpus"
    if not (train.is_dir() and validation.is_dir() and corpus.is_dir()):
        synthesize_spoken_digits(train, SPOKEN_DIGITS_TRAIN_VOICES, seed=0)
        synthesize_spoken_digits(validation, SPOKEN_DIGITS_VALIDATION_VOICES, seed=1)
        speech = Path(args.data_dir) / "speech"
        recordings = scan_folder(speech, AUDIO_EXTENSIONS, "audio")
        corpus.mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(recordings + scan_folder(train, AUDIO_EXTENSIONS, "audio")):
            link = corpus / f"{i:05d}{path.suffix}"
            if not link.exists():
                link.symlink_to(path.resolve())
    return {"train": str(train), "validation": str(validation), "corpus": str(corpus)}


def pretrain_modality(args, modality: str, train_path: str, output_dir: str) -> dict:
    """`run_pretraining.py --modality vision|audio` with the study's budget; its metrics and loss curve."""
    steps = args.vision_pretrain_steps if modality == "vision" else args.audio_pretrain_steps
    argv = cli_args(
        modality=modality,
        model_size=args.model_size,
        config_overrides=backbone_overrides(modality, args.model_size) or None,
        train_file=train_path,
        image_size=28 if modality == "vision" else None,
        max_audio_seconds=args.audio_max_seconds if modality == "audio" else None,
        validation_split_percentage=0,
        output_dir=output_dir,
        overwrite_output_dir=True,
        eval_strategy="no",
        max_steps=steps,
        per_device_train_batch_size=args.vision_batch_size if modality == "vision" else args.audio_batch_size,
        learning_rate=args.vision_pretrain_learning_rate
        if modality == "vision"
        else args.audio_pretrain_learning_rate,
        warmup_steps=max(1, steps // 10),
        weight_decay=0.05 if modality == "vision" else 0.01,
        adam_beta2=0.999 if modality == "vision" else 0.98,
        logging_steps=max(1, steps // 40),
        seed=0,
        **common_training_kwargs(),
    )
    start = time.time()
    metrics = load_example("run_pretraining").main(argv)
    history = read_log_history(output_dir)
    return {
        "command": "python examples/pretraining/run_pretraining.py " + shlex.join(argv),
        "checkpoint": str(Path(output_dir) / "student"),
        "wall_time_s": time.time() - start,
        "final_loss": metrics.get("loss", series(history, "loss")[-1][1]),
        "loss_curve": series(history, "loss"),
        "target_var": metrics.get("target_var"),
        "prediction_var": metrics.get("prediction_var"),
    }


def mean_pooling_checkpoint(args, modality: str, source: str | None, output_dir: str, seed: int) -> str:
    """
    The checkpoint both arms fine-tune: the pretrained student (`source`) or, with `source=None`, a random
    initialisation (seeded) of the same backbone. Images switch to mean pooling of the patch tokens (the final
    LayerNorm becomes the pooler's new LayerNorm, as in data2vec/BEiT fine-tuning); audio already mean-pools.
    """
    if Path(output_dir, "config.json").is_file():
        return output_dir
    config = study_backbone_config(modality, args.model_size) if source is None else AutoConfig.from_pretrained(source)
    if modality == "vision":
        config.use_mean_pooling = True
    torch.manual_seed(seed)
    if source is None:
        model = AutoModel.from_config(config)
    else:
        model = AutoModel.from_pretrained(source, config=config)
    model.save_pretrained(output_dir)
    if source is not None and Path(source, "preprocessor_config.json").is_file():  # the pretraining statistics
        shutil.copy(Path(source, "preprocessor_config.json"), output_dir)
    return output_dir


def _probe_datasets(args, task: str, paths: dict | None, seed: int):
    """Labelled training and evaluation sets of the probe, subsampled by seed (images) or whole (digits)."""
    if task == "fashion_mnist":
        transform = image_transform(28, train=False)
        train = load_fashion_mnist(fashion_mnist_dir(args), "train", transform=transform)
        test = load_fashion_mnist(fashion_mnist_dir(args), "test", transform=transform)
        train = train.shuffle(seed=seed).select(range(min(args.vision_train_samples, len(train))))
        test = test.select(range(min(args.vision_eval_samples, len(test))))
        return train, test
    read = dict(sampling_rate=16000, max_seconds=args.audio_clip_seconds)
    return load_audio_folder(paths["train"], **read), load_audio_folder(paths["validation"], **read)


def _finetune(args, task: str, checkpoint: str, seed: int, output_dir: str, paths: dict | None) -> dict:
    steps = args.vision_finetune_steps if task == "fashion_mnist" else args.audio_finetune_steps
    eval_steps = max(1, steps // max(1, args.eval_points))
    common = dict(
        model_name_or_path=checkpoint,
        do_train=True,
        do_eval=True,
        max_steps=steps,
        per_device_train_batch_size=32 if task == "fashion_mnist" else 16,
        per_device_eval_batch_size=128,
        learning_rate=args.vision_finetune_learning_rate if task == "fashion_mnist" else args.finetune_learning_rate,
        warmup_steps=max(1, steps // 10),
        weight_decay=0.05 if task == "fashion_mnist" else 0.01,
        eval_strategy="steps",
        eval_steps=eval_steps,
        logging_steps=max(1, eval_steps // 2),
        seed=seed,
        output_dir=output_dir,
        **common_training_kwargs(),
    )
    if task == "fashion_mnist":
        script = "run_image_classification"
        argv = cli_args(
            train_dir=fashion_mnist_dir(args),
            validation_dir=fashion_mnist_dir(args),
            max_train_samples=args.vision_train_samples,
            max_eval_samples=args.vision_eval_samples,
            min_crop_scale=1.0,
            **common,
        )
    else:
        script = "run_audio_classification"
        argv = cli_args(
            train_dir=paths["train"],
            validation_dir=paths["validation"],
            max_length_seconds=args.audio_clip_seconds,
            freeze_feature_encoder="false",
            **common,
        )
    start = time.time()
    metrics = load_example(script).main(argv)
    history = read_log_history(output_dir)
    return {
        "accuracy": 100 * float(metrics["eval_accuracy"]),
        "eval_curve": [[s, 100 * v] for s, v in series(history, "eval_accuracy")],
        "loss_curve": series(history, "loss"),
        "wall_time_s": time.time() - start,
        "command": f"python examples/{EXAMPLE_FOLDERS[script]}/{script}.py " + shlex.join(argv),
    }


def recorded_digits_accuracy(args, model_dir: str) -> float:
    """Accuracy of a fine-tuned spoken-digit classifier on the ten recorded human digits of `data_dir/speech`."""
    recorded = spoken_digits_from_asterisk(Path(args.data_dir) / "speech" / "asterisk-en")
    model = AutoModelForAudioClassification.from_pretrained(model_dir).eval()
    batch = AudioClassificationCollator(max_length=int(args.audio_clip_seconds * 16000), train=False)(list(recorded))
    with torch.no_grad():
        predicted = model(input_values=batch["input_values"], attention_mask=batch["attention_mask"]).logits.argmax(-1)
    names = [model.config.id2label[int(i)] for i in predicted]
    return 100 * float(np.mean([name == DIGIT_NAMES[label] for name, label in zip(names, batch["labels"].tolist())]))


def run_modality_task(args, task: str, arm: str, checkpoint: str, seed: int, output_dir: str, paths=None) -> dict:
    """
    One (arm, task, seed) of the image or speech study: the linear probe, then fine-tuning (and, for speech, the
    recorded digits). `checkpoint` is the [`mean_pooling_checkpoint`] of the arm. Returns the run record.
    """
    modality = MODALITY_OF_TASK[task]
    start = time.time()
    train, test = _probe_datasets(args, task, paths, seed)
    seconds = args.audio_clip_seconds
    probe = linear_probe_accuracy(
        extract_features(checkpoint, modality, train, max_seconds=seconds),
        extract_features(checkpoint, modality, test, max_seconds=seconds),
    )
    finetuned = _finetune(args, task, checkpoint, seed, output_dir, paths)
    scores = {"probe_accuracy": 100 * probe, "finetune_accuracy": finetuned["accuracy"]}
    if task == "spoken_digits":
        scores["recorded_accuracy"] = recorded_digits_accuracy(args, output_dir)
    return {
        "scores": scores,
        "eval_curve": finetuned["eval_curve"],
        "loss_curve": finetuned["loss_curve"],
        "wall_time_s": time.time() - start,
        "command": finetuned["command"],
        "probe": f"study_vision_audio.linear_probe_accuracy on {len(train)} / {len(test)} examples",
    }


__all__ = [
    "extract_features",
    "fashion_mnist_dir",
    "linear_probe_accuracy",
    "mean_pooling_checkpoint",
    "prepare_spoken_digits",
    "pretrain_modality",
    "recorded_digits_accuracy",
    "run_modality_task",
]
