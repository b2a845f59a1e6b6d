"""
The image and speech arms of the study ([`~d2v_hf.study`]): data2vec pretraining without labels against a random
initialisation of the same backbone, measured by a linear probe on frozen features and by fine-tuning.

- Images (`fashion_mnist`): `examples/run_pretraining.py --modality vision` on the Fashion-MNIST training images
  (labels unused). Downstream, on `vision_train_samples` labelled training images and `vision_eval_samples` test
  images: a linear probe (logistic regression on the mean-pooled last-layer patch features of the frozen backbone)
  and fine-tuning with `examples/run_image_classification.py`. Both arms fine-tune with mean pooling, as data2vec's
  (BEiT's) image fine-tuning does: data2vec 1.0 never regresses the CLS token, so CLS pooling would give the
  pretrained arm an untrained summary ([`mean_pooling_checkpoint`]).
- Speech (`spoken_digits`): `--modality audio` on the recorded speech of `../shared/data/speech` (one speaker, 8 kHz,
  resampled) plus the espeak-ng training digits (labels unused). Downstream: the ten digit words by espeak-ng, 64
  voices for training and 16 unseen voices for evaluation (probe and fine-tuning with
  `examples/run_audio_classification.py`), and, as a transfer check, the ten recorded human digits.
"""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import numpy as np


MODALITY_TASKS = {"fashion_mnist": "vision", "spoken_digits": "audio"}
MODALITY_TASK_TITLES = {"fashion_mnist": "Fashion-MNIST", "spoken_digits": "Spoken digits (espeak-ng, unseen voices)"}


def _study():
    from . import study

    return study


def _fmt(stats, digits: int = 1) -> str:
    from .study_report import _fmt as fmt

    return fmt(stats, digits)


# --------------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------------


def fashion_mnist_dir(args) -> Path:
    return Path(args.data_dir) / "vision" / "fashion-mnist"


def prepare_spoken_digits(args, output_dir: str | os.PathLike) -> dict[str, str]:
    """
    Synthesizes the espeak-ng digit words (training and unseen validation voices) and builds the unlabelled speech
    pretraining folder: links to every recording under `data_dir/speech` plus the training digits. Returns the paths.
    """
    from .data._common import scan_folder
    from .data.audio import AUDIO_EXTENSIONS
    from .finetuning_vision_audio import (
        SPOKEN_DIGITS_TRAIN_VOICES,
        SPOKEN_DIGITS_VALIDATION_VOICES,
        synthesize_spoken_digits,
    )

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


# --------------------------------------------------------------------------------------------------------------------
# Pretraining and checkpoints
# --------------------------------------------------------------------------------------------------------------------


def backbone_overrides(modality: str, model_size: str) -> str:
    """
    Vision: 4 x 4 patches of the 28 x 28 images (49 patches) at every size. Audio, tiny: a 3-layer CNN with a wide
    first kernel (40 samples, stride 20; 160 samples = 10 ms per frame), 4x cheaper per clip than the 7-layer one.
    """
    if modality == "vision":
        return "backbone.patch_size=4"
    if model_size == "tiny":
        return "backbone.conv_dim=[64,64,64],backbone.conv_kernel=[40,4,2],backbone.conv_stride=[20,4,2]"
    return ""


def pretrain_modality(args, modality: str, train_path: str, output_dir: str) -> dict:
    """`examples/run_pretraining.py --modality vision|audio` with the study's budget; its metrics and loss curve."""
    study = _study()
    steps = args.vision_pretrain_steps if modality == "vision" else args.audio_pretrain_steps
    argv = study._cli(
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
        **study._common_training_kwargs(),
    )
    start = time.time()
    metrics = study._load_example("run_pretraining").main(argv)
    history = study._read_log_history(output_dir)
    return {
        "command": "python examples/run_pretraining.py " + shlex.join(argv),
        "checkpoint": str(Path(output_dir) / "student"),
        "wall_time_s": time.time() - start,
        "final_loss": metrics.get("loss", study._series(history, "loss")[-1][1]),
        "loss_curve": study._series(history, "loss"),
        "target_var": metrics.get("target_var"),
        "prediction_var": metrics.get("prediction_var"),
    }


def _backbone_config(args, modality: str):
    from .pretraining import Data2VecModelArguments, build_pretraining_config

    model_args = Data2VecModelArguments(
        modality=modality, model_size=args.model_size, config_overrides=backbone_overrides(modality, args.model_size)
    )
    return build_pretraining_config(model_args, image_size=28 if modality == "vision" else None).backbone_config


def mean_pooling_checkpoint(args, modality: str, source: str | None, output_dir: str, seed: int) -> str:
    """
    The checkpoint both arms fine-tune: the pretrained student (`source`) or, with `source=None`, a random
    initialisation (seeded) of the same backbone. Images switch to mean pooling of the patch tokens (the final
    LayerNorm becomes the pooler's new LayerNorm, as in data2vec/BEiT fine-tuning); audio already mean-pools.
    """
    import torch
    from transformers import AutoConfig, AutoModel

    if Path(output_dir, "config.json").is_file():
        return output_dir
    config = _backbone_config(args, modality) if source is None else AutoConfig.from_pretrained(source)
    if modality == "vision":
        config.use_mean_pooling = True
    torch.manual_seed(seed)
    if source is None:
        model = AutoModel.from_config(config)
    else:
        model = AutoModel.from_pretrained(source, config=config)
    model.save_pretrained(output_dir)
    return output_dir


# --------------------------------------------------------------------------------------------------------------------
# Linear probe
# --------------------------------------------------------------------------------------------------------------------


def _batches(dataset, batch_size: int):
    for start in range(0, len(dataset), batch_size):
        yield [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]


def extract_features(
    checkpoint: str, modality: str, dataset, batch_size: int = 64, max_seconds: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """
    Mean-pooled last-layer features of the frozen backbone: the patch tokens of each image (CLS left out), the
    (unpadded) frames of each clip (its first `max_seconds`). Returns `(features, labels)`.
    """
    import torch
    from transformers import AutoModel

    from .finetuning_vision_audio import AudioClassificationCollator, ImageClassificationCollator

    model = AutoModel.from_pretrained(checkpoint).eval()
    if modality == "vision":
        collate = ImageClassificationCollator()
    else:
        collate = AudioClassificationCollator(max_length=int(max_seconds * 16000), train=False)
    features, labels = [], []
    with torch.no_grad():
        for examples in _batches(dataset, batch_size):
            batch = collate(examples)
            labels.append(batch.pop("labels").numpy())
            if modality == "vision":
                hidden = model(pixel_values=batch["pixel_values"]).last_hidden_state[:, 1:]
                features.append(hidden.mean(1).numpy())
            else:
                hidden = model(**batch).last_hidden_state
                mask = model._get_feature_vector_attention_mask(hidden.shape[1], batch["attention_mask"])
                mask = mask.unsqueeze(-1).to(hidden.dtype)
                features.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
    return np.concatenate(features), np.concatenate(labels)


def linear_probe_accuracy(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> float:
    """Multinomial logistic regression on standardised features (scikit-learn, L2, C=1), accuracy on `test`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train[0])
    classifier = LogisticRegression(max_iter=2000).fit(scaler.transform(train[0]), train[1])
    return float((classifier.predict(scaler.transform(test[0])) == test[1]).mean())


def _probe_datasets(args, task: str, paths: dict | None, seed: int):
    """Labelled training and evaluation sets of the probe, subsampled by seed (images) or whole (digits)."""
    from .data import image_transform, load_audio_folder, load_fashion_mnist

    if task == "fashion_mnist":
        transform = image_transform(28, train=False)
        train = load_fashion_mnist(fashion_mnist_dir(args), "train", transform=transform)
        test = load_fashion_mnist(fashion_mnist_dir(args), "test", transform=transform)
        train = train.shuffle(seed=seed).select(range(min(args.vision_train_samples, len(train))))
        test = test.select(range(min(args.vision_eval_samples, len(test))))
        return train, test
    read = dict(sampling_rate=16000, max_seconds=args.audio_clip_seconds)
    return load_audio_folder(paths["train"], **read), load_audio_folder(paths["validation"], **read)


# --------------------------------------------------------------------------------------------------------------------
# Fine-tuning
# --------------------------------------------------------------------------------------------------------------------


def _finetune(args, task: str, checkpoint: str, seed: int, output_dir: str, paths: dict | None) -> dict:
    study = _study()
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
        **study._common_training_kwargs(),
    )
    if task == "fashion_mnist":
        script = "run_image_classification"
        argv = study._cli(
            train_dir=fashion_mnist_dir(args),
            validation_dir=fashion_mnist_dir(args),
            max_train_samples=args.vision_train_samples,
            max_eval_samples=args.vision_eval_samples,
            min_crop_scale=1.0,
            **common,
        )
    else:
        script = "run_audio_classification"
        argv = study._cli(
            train_dir=paths["train"],
            validation_dir=paths["validation"],
            max_length_seconds=args.audio_clip_seconds,
            freeze_feature_encoder="false",
            **common,
        )
    start = time.time()
    metrics = study._load_example(script).main(argv)
    history = study._read_log_history(output_dir)
    return {
        "accuracy": 100 * float(metrics["eval_accuracy"]),
        "eval_curve": [[s, 100 * v] for s, v in study._series(history, "eval_accuracy")],
        "loss_curve": study._series(history, "loss"),
        "wall_time_s": time.time() - start,
        "command": f"python examples/{script}.py " + shlex.join(argv),
    }


def recorded_digits_accuracy(args, model_dir: str) -> float:
    """Accuracy of a fine-tuned spoken-digit classifier on the ten recorded human digits of `data_dir/speech`."""
    import torch
    from transformers import AutoModelForAudioClassification

    from .data import spoken_digits_from_asterisk
    from .data.audio import DIGIT_NAMES
    from .finetuning_vision_audio import AudioClassificationCollator

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
    modality = MODALITY_TASKS[task]
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
        "probe": f"d2v_hf.study_vision_audio.linear_probe_accuracy on {len(train)} / {len(test)} examples",
    }


# --------------------------------------------------------------------------------------------------------------------
# Report and model cards
# --------------------------------------------------------------------------------------------------------------------

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
    config = _backbone_config(args, modality)
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
    study = _study()
    summary = results["summary"]
    keys = [k for k in _SCORE_TITLES if any(f"{task}/{k}" in summary.get(a, {}) for a in summary)]
    lines = ["| arm | " + " | ".join(_SCORE_TITLES[k] for k in keys) + " |", "|---|" + "---:|" * len(keys)]
    for arm in ("data2vec", "random"):
        if any(f"{task}/{k}" in summary.get(arm, {}) for k in keys):
            row = [_fmt(summary[arm].get(f"{task}/{k}")) for k in keys]
            lines.append(f"| {study.ARM_TITLES[arm]} | " + " | ".join(row) + " |")
    diffs = []
    by_key = {(r["arm"], r["seed"]): r["scores"] for r in results["runs"] if r["task"] == task}
    for key in keys:
        values = [
            by_key[("data2vec", s)][key] - by_key[("random", s)][key]
            for s in results["config"]["seed_list"]
            if ("data2vec", s) in by_key and ("random", s) in by_key
        ]
        if values:
            stats = study._stats(values)
            diffs.append(f"| {_SCORE_TITLES[key]} | {_fmt(stats)} | {sum(v > 0 for v in values)}/{len(values)} |")
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
    tasks = [t for t in config["task_list"] if t in MODALITY_TASKS and any(r["task"] == t for r in results["runs"])]
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
        modality = MODALITY_TASKS[task]
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
    from huggingface_hub import EvalResult

    from .modelcard import build_model_card

    study = _study()
    arm, modality = key.split("_")
    task = next(t for t, m in MODALITY_TASKS.items() if m == modality)
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
        f"| {_SCORE_TITLES[k.split('/')[1]]} | {_fmt(v, 2)} |" for k, v in summary.items() if k.startswith(task + "/")
    ]
    extra = "\n".join(
        ["## Results (mean ± std over seeds, accuracy x 100)", "", "| score | value |", "|---|---:|", *rows, "",
         "Regenerate with `python examples/study.py` (see model_cards/README.md in d2v_hf)."]
    )  # fmt: skip
    name = modality_model_name(key, config["model_size"])
    card = build_model_card(
        name,
        description=f"A {config['model_size']} data2vec-{modality} backbone from the d2v_hf study (arm: "
        f"{study.ARM_TITLES[arm]}), {config['mode']} mode. See docs/study.md of d2v_hf for the whole comparison.",
        training_details=details,
        tags=["data2vec", modality, "study", "feature-extraction"],
        extra_markdown=extra,
    )
    index = []
    for score in ("probe_accuracy", "finetune_accuracy"):
        stats = summary.get(f"{task}/{score}")
        if stats:
            index.append(
                EvalResult(
                    task_type="image-classification" if modality == "vision" else "audio-classification",
                    task_name="Fashion-MNIST classification"
                    if modality == "vision"
                    else "Spoken-digit classification",
                    dataset_type="zalando-datasets/fashion_mnist"
                    if modality == "vision"
                    else "espeak-ng-spoken-digits",
                    dataset_name="Fashion-MNIST"
                    if modality == "vision"
                    else "Spoken digits (espeak-ng, unseen voices)",
                    dataset_split="test" if modality == "vision" else "validation voices",
                    metric_type="accuracy",
                    metric_name=f"{_SCORE_TITLES[score]} (mean of {stats['n']} seeds, x100)",
                    metric_value=round(stats["mean"], 2),
                )
            )
    if index:
        card.data.eval_results = index
        card.data.model_name = name
    return card


def write_modality_model_cards(results: dict, model_cards_dir: str | os.PathLike) -> list[Path]:
    from .modelcard import save_model_card

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
    "MODALITY_TASKS",
    "build_modality_model_card",
    "describe_backbone",
    "modality_model_name",
    "modality_report_markdown",
    "write_modality_model_cards",
    "extract_features",
    "linear_probe_accuracy",
    "mean_pooling_checkpoint",
    "prepare_spoken_digits",
    "pretrain_modality",
    "recorded_digits_accuracy",
    "run_modality_task",
]
