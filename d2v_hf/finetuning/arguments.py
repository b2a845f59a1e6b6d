"""Arguments of the fine-tuning scripts (one dataclass per group of flags) and the logging setup they share."""

import logging
import sys
from dataclasses import dataclass, field

import datasets
import transformers


logger = logging.getLogger(__name__)


@dataclass
class ModelArguments:
    """Which model/config/tokenizer to fine-tune from, and the LoRA options."""

    model_name_or_path: str = field(metadata={"help": "Path to a pretrained model or its identifier on the Hub."})
    config_name: str | None = field(default=None, metadata={"help": "Config name or path, if not the model's."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path, if not the model's."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to store files downloaded from the Hub."})
    model_revision: str = field(default="main", metadata={"help": "Model version (branch, tag or commit id)."})
    token: str | None = field(default=None, metadata={"help": "Hub token (defaults to the `hf auth login` one)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom code from the Hub."})
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Allow a head of another size in the checkpoint (re-initialized)."}
    )
    use_peft: bool = field(default=False, metadata={"help": "Fine-tune LoRA adapters (peft) instead of all weights."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names to adapt; defaults per backbone (query/value, or q_proj/v_proj for speech)."},
    )
    merge_lora: bool = field(
        default=True, metadata={"help": "With --use_peft, also save the merged plain model to output_dir/merged."}
    )


@dataclass
class ClassificationModelArguments(ModelArguments):
    """[`ModelArguments`] plus the options of the image and audio scripts."""

    image_processor_name: str | None = field(
        default=None,
        metadata={"help": "Image processor / feature extractor to read normalisation settings from (default: model)."},
    )
    freeze_feature_encoder: bool = field(
        default=True, metadata={"help": "Audio: do not train the convolutional feature encoder (as HF's script)."}
    )


@dataclass
class _ClassificationDataArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset (or a local dataset folder)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of the Hub dataset."})
    train_dir: str | None = field(
        default=None, metadata={"help": "Training folder: one sub-folder per class (the label is the folder name)."}
    )
    validation_dir: str | None = field(default=None, metadata={"help": "Validation folder, laid out as train_dir."})
    train_val_split: float = field(
        default=0.15, metadata={"help": "Fraction of the training data held out when there is no validation data."}
    )
    model_selection_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Hold out this share of the training data (seeded, the same in every run) and evaluate there "
            "instead of the validation data: for choosing a learning rate without looking at the reported set."
        },
    )
    label_column_name: str = field(default="label", metadata={"help": "Label column of a Hub dataset."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep N training examples (a seeded random subset, as HF's scripts)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep N evaluation examples."})

    def __post_init__(self):
        if self.dataset_name is None and self.train_dir is None and self.validation_dir is None:
            raise ValueError("Give --train_dir (and --validation_dir) or --dataset_name.")
        if self.dataset_name is not None and (self.train_dir or self.validation_dir):
            raise ValueError("Give either --dataset_name or --train_dir/--validation_dir, not both.")
        if not 0.0 <= self.train_val_split < 1.0:
            raise ValueError(f"--train_val_split must be in [0, 1), got {self.train_val_split}.")
        if not 0.0 <= self.model_selection_fraction < 1.0:
            raise ValueError(f"--model_selection_fraction must be in [0, 1), got {self.model_selection_fraction}.")


@dataclass
class ImageDataArguments(_ClassificationDataArguments):
    """What images to train and evaluate on. A `--train_dir` holding Fashion-MNIST IDX files is detected."""

    image_column_name: str = field(default="image", metadata={"help": "Image column of a Hub dataset."})
    min_crop_scale: float = field(
        default=0.08, metadata={"help": "Smallest area fraction of the training random resized crop (1 = no crop)."}
    )


@dataclass
class AudioDataArguments(_ClassificationDataArguments):
    """What audio to train and evaluate on (any sampling rate: resampled to the model's, 16 kHz by default)."""

    audio_column_name: str = field(default="audio", metadata={"help": "Audio column of a Hub dataset."})
    max_length_seconds: float = field(
        default=20.0, metadata={"help": "Longer clips are cut: a random window in training, the start in evaluation."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.max_length_seconds <= 0:
            raise ValueError(f"--max_length_seconds must be positive, got {self.max_length_seconds}.")


def hub_kwargs(model_args) -> dict:
    """The `from_pretrained` keyword arguments of a [`ModelArguments`]: cache, revision, token, remote code."""
    return dict(
        cache_dir=model_args.cache_dir,
        revision=model_args.model_revision,
        token=model_args.token,
        trust_remote_code=model_args.trust_remote_code,
    )


def setup_logging(training_args) -> None:
    """
    The scripts' own messages (the `__main__` and `d2v_hf` loggers) at INFO on the main process; Transformers and
    Datasets at `--log_level` (default: their warnings only, so a run starts with a handful of lines, not dozens).
    """
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    own_level = logging.INFO if training_args.should_log else log_level
    for name in ("__main__", "d2v_hf"):
        logging.getLogger(name).setLevel(own_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    if training_args.world_size > 1:
        logger.warning(
            f"Process rank: {training_args.process_index}, world size: {training_args.world_size}, "
            f"device: {training_args.device}"
        )


__all__ = [
    "AudioDataArguments",
    "ClassificationModelArguments",
    "ImageDataArguments",
    "ModelArguments",
    "hub_kwargs",
    "setup_logging",
]
