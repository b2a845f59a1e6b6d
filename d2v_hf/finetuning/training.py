"""
The shared steps of the fine-tuning scripts around the Trainer: training arguments adjusted to the data, the start of
the image and audio scripts ([`prepare_classification`]), and the end of every script (train, save, evaluate, merge
LoRA, model card, push).
"""

import dataclasses
import logging
import os
from typing import Any

from ..modelcard import build_model_card, save_model_card, training_details_from_args
from .arguments import ModelArguments
from .checkpoints import build_classification_model, check_image_size, load_checkpoint_config, load_processor_settings
from .classification_data import (
    ClassificationData,
    align_labels_with_checkpoint,
    load_audio_classification_datasets,
    load_image_classification_datasets,
)
from .lora import maybe_merge_lora
from .metrics import make_glue_compute_metrics


logger = logging.getLogger(__name__)


@dataclasses.dataclass
class ClassificationSetup:
    """What [`prepare_classification`] returns: the data, the model and the processor settings of the checkpoint."""

    data: ClassificationData
    model: Any
    settings: dict
    image_size: int | None = None


def prepare_classification(modality: str, model_args, data_args, training_args) -> ClassificationSetup:
    """
    The shared start of `run_image_classification.py` and `run_audio_classification.py`: the checkpoint's config
    first (another modality or a bad image size fails before any data is read), its processor settings, the
    datasets, the training arguments, the labels aligned with the checkpoint, then the model.
    """
    script = "run_image_classification.py" if modality == "vision" else "run_audio_classification.py"
    config = load_checkpoint_config(model_args, modality, script)
    image_size = check_image_size(config) if modality == "vision" else None
    settings = load_processor_settings(model_args, modality)
    if modality == "vision":
        mean, std = settings["image_mean"], settings["image_std"]
        data = load_image_classification_datasets(data_args, image_size, mean, std, training_args.seed, model_args)
    else:
        rate = int(settings["sampling_rate"])
        data = load_audio_classification_datasets(data_args, rate, training_args.seed, model_args)
    prepare_training_arguments(training_args, data)
    data = align_labels_with_checkpoint(config, data, model_args.ignore_mismatched_sizes)
    logger.info(f"{data.description}: {len(data.label_names)} classes {data.label_names}")
    model = build_classification_model(config, model_args, data.label_names)
    return ClassificationSetup(data=data, model=model, settings=settings, image_size=image_size)


def prepare_training_arguments(training_args, data: ClassificationData) -> None:
    """
    Adjusts [`~transformers.TrainingArguments`]: `remove_unused_columns=False` (the lazily decoded datasets need
    their stored columns), `average_tokens_across_devices=False` (classification losses are means over examples)
    and no evaluation during training without validation data.
    """
    if training_args.remove_unused_columns:
        logger.info("Setting remove_unused_columns=False: the datasets decode their stored columns on access.")
        training_args.remove_unused_columns = False
    if getattr(training_args, "average_tokens_across_devices", False):
        # A per-clip / per-image mean loss has no tokens to average; with it on, transformers 5 reports the eval
        # loss multiplied by the number of processes under DDP (checked with 2 CPU processes).
        training_args.average_tokens_across_devices = False
    if training_args.do_train and data.train is None:
        raise ValueError("--do_train needs training data (--train_dir or a dataset with a train split).")
    if training_args.do_eval and data.validation is None:
        raise ValueError("--do_eval needs validation data (--validation_dir, a validation split, --train_val_split).")
    if data.validation is None and training_args.eval_strategy != "no":
        logger.warning("No validation data: evaluation during training is turned off.")
        training_args.eval_strategy = "no"


def accuracy_compute_metrics():
    """`compute_metrics` for the Trainer: accuracy of the argmax of the logits (offline)."""
    return make_glue_compute_metrics(None, is_regression=False)


def train_and_save(trainer, resume_from_checkpoint=None) -> dict[str, float]:
    """`trainer.train()`, then save the model, the train metrics (`train_results.json`) and the trainer state."""
    result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trainer.save_model()
    metrics = dict(result.metrics, train_samples=len(trainer.train_dataset))
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    return metrics


def evaluate_and_save(trainer, prefix: str = "eval", **extra) -> dict[str, float]:
    """`trainer.evaluate()` plus `extra` entries, logged and saved to `{prefix}_results.json`."""
    metrics = dict(trainer.evaluate(metric_key_prefix=prefix), **extra)
    trainer.log_metrics(prefix, metrics)
    trainer.save_metrics(prefix, metrics)
    return metrics


def save_and_push_model_card(trainer, card, **push_kwargs) -> None:
    """
    Writes `card` to `output_dir/README.md` (main process) and, with `--push_to_hub`, pushes the output folder: the
    trainer keeps that card ([`~d2v_hf.modelcard.KeepModelCardMixin`]) instead of writing its generic one.
    """
    if trainer.is_world_process_zero():
        save_model_card(card, trainer.args.output_dir)
    if trainer.args.push_to_hub:
        trainer.push_to_hub(**push_kwargs)


def train_evaluate_and_save_card(
    trainer,
    model_args: ModelArguments,
    data: ClassificationData,
    task_type: str,
    extra_details: dict | None = None,
) -> dict[str, float]:
    """
    The end of both scripts, as transformers' examples: train (`--do_train`, resuming with
    `--resume_from_checkpoint`), save the model, metrics and state, evaluate (`--do_eval`), merge LoRA adapters
    (`--use_peft --merge_lora`), write the model card (the evaluation results in its model-index) to `output_dir`
    and push to the Hub with `--push_to_hub`. The trainer's `processing_class` (image processor / feature
    extractor) is saved with the model.

    Returns:
        `dict[str, float]`: the train and eval metrics.
    """
    args = trainer.args
    all_metrics: dict[str, float] = {}
    if args.do_train:
        all_metrics.update(train_and_save(trainer, args.resume_from_checkpoint))
    eval_metrics = None
    if args.do_eval:
        eval_metrics = evaluate_and_save(trainer, eval_samples=len(data.validation))
        all_metrics.update(eval_metrics)

    merged_dir = maybe_merge_lora(trainer, model_args, trainer.processing_class)
    card = build_model_card(
        model_name=os.path.basename(os.path.normpath(args.output_dir)),
        base_model=model_args.model_name_or_path,
        task_type=task_type,
        dataset_name=data.description,
        dataset_type=data.dataset_type,
        dataset_config=None,
        dataset_split=data.validation_split,
        datasets=[data.hub_dataset] if data.hub_dataset else None,
        eval_results=eval_metrics,
        training_details=training_details_from_args(
            args,
            num_labels=len(data.label_names),
            labels=", ".join(data.label_names) if len(data.label_names) <= 20 else f"{len(data.label_names)} classes",
            lora=f"r={model_args.lora_r}, alpha={model_args.lora_alpha}" if model_args.use_peft else "no",
            merged_model=os.path.relpath(merged_dir, args.output_dir) if merged_dir else None,
            **(extra_details or {}),
        ),
    )
    save_and_push_model_card(trainer, card, finetuned_from=model_args.model_name_or_path)
    return all_metrics


__all__ = [
    "ClassificationSetup",
    "accuracy_compute_metrics",
    "evaluate_and_save",
    "prepare_classification",
    "prepare_training_arguments",
    "save_and_push_model_card",
    "train_and_save",
    "train_evaluate_and_save_card",
]
