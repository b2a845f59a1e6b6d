"""
The script side of `run_pretraining.py`: arguments, model construction from the command line, checks that run before
anything is written, and the artifacts written at the end (model card, loss plot). The method itself is `d2v_hf`.
"""

import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoConfig, AutoTokenizer

from d2v_hf import Data2VecForPretraining, Data2VecPretrainingConfig
from d2v_hf.configuration_data2vec_pretraining import (
    _PRESETS,
    MODALITY_BY_MODEL_TYPE,
    base_backbone_config,
    tiny_backbone_config,
)
from d2v_hf.data import train_bpe_tokenizer
from d2v_hf.modelcard import build_model_card


@dataclass
class Data2VecModelArguments:
    """What to pretrain: a preset recipe on a backbone size, or a checkpoint to continue from."""

    modality: str = field(default="text", metadata={"help": "text, audio or vision."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A Data2VecForPretraining checkpoint to continue, or a plain Data2Vec backbone (Hub id or path) "
            "whose weights initialise the student and the teacher. Default: a preset on a new backbone."
        },
    )
    model_size: str = field(
        default="base", metadata={"help": "Backbone of a new model: base (12 x 768, the paper) or tiny (4 x 64)."}
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated overrides of the recipe, e.g. 'average_top_k_layers=4,loss_beta=0'; backbone "
            "fields take a 'backbone.' prefix, e.g. 'backbone.num_hidden_layers=6'."
        },
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Text: tokenizer name or path."})
    train_tokenizer: bool = field(
        default=False, metadata={"help": "Text: train a byte-level BPE tokenizer on the training data first."}
    )
    tokenizer_vocab_size: int = field(default=8000, metadata={"help": "Vocabulary size of a trained tokenizer."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to store Hub downloads."})
    token: str | None = field(default=None, metadata={"help": "Hub token for private models and datasets."})


@dataclass
class Data2VecDataArguments:
    """What to pretrain on. With no dataset argument, text uses the embedded default corpus."""

    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset (datasets.load_dataset)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Its configuration."})
    train_file: str | None = field(
        default=None,
        metadata={
            "help": "Text: .txt/.txt.gz/.csv/.json lines; audio: a folder of audio files; vision: a folder of "
            "images or of the Fashion-MNIST IDX files."
        },
    )
    validation_file: str | None = field(default=None, metadata={"help": "Same kinds as --train_file."})
    validation_split_percentage: int = field(
        default=5, metadata={"help": "Held out of the training data when there is no validation data."}
    )
    text_column: str = field(default="text", metadata={"help": "Text column of csv/json/Hub datasets."})
    audio_column: str = field(default="audio", metadata={"help": "Audio column of Hub datasets."})
    image_column: str = field(default="image", metadata={"help": "Image column of Hub datasets."})
    max_seq_length: int = field(default=128, metadata={"help": "Text: tokens per training block."})
    max_audio_seconds: float = field(default=15.0, metadata={"help": "Audio: longer clips are cropped."})
    image_size: int | None = field(default=None, metadata={"help": "Vision: input size (default: the backbone's)."})
    streaming: bool = field(default=False, metadata={"help": "Read the data lazily (needs --max_steps)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the validation set."})

    @property
    def uses_embedded_default(self) -> bool:
        return self.dataset_name is None and self.train_file is None


# --- checks that run before anything is written -------------------------------------------------------------------


def check_output_dir(output_dir: str, resume_from_checkpoint, overwrite_output_dir: bool) -> None:
    """Refuses an output directory that already holds another run, unless resuming or told to overwrite."""
    path = Path(output_dir)
    if not path.exists() or resume_from_checkpoint or overwrite_output_dir:
        return
    if not path.is_dir():
        raise ValueError(f"--output_dir {output_dir} exists and is not a directory.")
    if any(path.iterdir()):
        raise ValueError(
            f"--output_dir {output_dir} already holds another run. Pass --resume_from_checkpoint to continue it, "
            "--overwrite_output_dir to train over it, or choose a new directory."
        )


def check_checkpoint(checkpoint: str) -> None:
    """Raises a `ValueError` naming the file when a Trainer checkpoint is missing, corrupted or truncated."""
    from safetensors import safe_open

    path = Path(checkpoint)
    if not path.is_dir():
        raise ValueError(f"Checkpoint {checkpoint} is not a directory.")
    state = path / "trainer_state.json"
    try:
        json.loads(state.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"Checkpoint file {state} is missing or corrupted ({err}).") from None
    weights = path / "model.safetensors"
    try:
        with safe_open(weights, framework="pt") as f:
            keys = list(f.keys())
            for key in keys:  # reading every tensor detects truncation, which the header alone may not
                f.get_tensor(key)
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"Checkpoint file {weights} is missing, corrupted or truncated ({err}).") from None
    if not any(k.startswith("teacher.") for k in keys):
        raise ValueError(f"Checkpoint file {weights} holds no teacher: it is not a Data2VecForPretraining checkpoint.")


def parse_config_overrides(overrides: str | None) -> tuple[dict, dict]:
    """
    'a=1,backbone.b=x,backbone.c=[8,8]' -> ({'a': 1}, {'b': 'x', 'c': [8, 8]}), values parsed as JSON when
    possible. Items are separated by the commas that precede a `key=`, so JSON lists keep theirs.
    """
    recipe, backbone = {}, {}
    for item in filter(None, re.split(r",(?=\s*[A-Za-z_][\w.]*\s*=)", overrides or "")):
        if "=" not in item:
            raise ValueError(f"--config_overrides item {item!r} is not of the form key=value.")
        key, value = (part.strip() for part in item.split("=", 1))
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        if key.startswith("backbone."):
            backbone[key[len("backbone.") :]] = value
        else:
            recipe[key] = value
    known = set(Data2VecPretrainingConfig.__dataclass_fields__) - {"backbone_config"}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise ValueError(f"--config_overrides: unknown recipe field(s) {unknown}; backbone fields need 'backbone.'.")
    return recipe, backbone


# --- model ---------------------------------------------------------------------------------------------------------


# computed by the config classes' __init__ from other fields
_DERIVED_BACKBONE_FIELDS = ("num_feat_extract_layers",)


def build_pretraining_config(model_args: Data2VecModelArguments, tokenizer=None, image_size: int | None = None):
    """The preset recipe of the modality on a new backbone, with `--config_overrides` applied."""
    if model_args.modality not in ("text", "audio", "vision"):
        raise ValueError(f"--modality {model_args.modality!r}; expected text, audio or vision.")
    if model_args.model_size not in ("base", "tiny"):
        raise ValueError(f"--model_size {model_args.model_size!r}; expected base or tiny.")
    recipe, backbone_overrides = parse_config_overrides(model_args.config_overrides)
    modality = model_args.modality
    if model_args.model_size == "tiny":
        backbone = tiny_backbone_config(modality)
        # the preset's K (10 / 8 / 6 of 12 layers) scaled to 4 layers
        recipe.setdefault("average_top_k_layers", 3)
    else:
        backbone = base_backbone_config(modality)
    if modality == "text" and tokenizer is not None:
        backbone.vocab_size = len(tokenizer)
        backbone.pad_token_id = tokenizer.pad_token_id
        backbone.bos_token_id, backbone.eos_token_id = tokenizer.bos_token_id, tokenizer.eos_token_id
        recipe.setdefault("mask_token_id", tokenizer.mask_token_id)
    if modality == "vision" and image_size is not None:
        backbone.image_size = image_size
    for key in backbone_overrides:
        if not hasattr(backbone, key):
            raise ValueError(f"--config_overrides: the {type(backbone).__name__} has no field {key!r}.")
    if backbone_overrides:
        # rebuilt, not patched: derived fields (e.g. the audio `num_feat_extract_layers`) must follow the overrides
        settings = {k: v for k, v in backbone.to_dict().items() if k not in _DERIVED_BACKBONE_FIELDS}
        backbone = type(backbone)(**{**settings, **backbone_overrides})
    if modality == "vision":
        num_patches = (backbone.image_size // backbone.patch_size) ** 2
        # BEiT masks 120 of 196 patches (61%), blocks of at least 16 (8%): the same fractions on other grids
        recipe.setdefault("num_mask_patches", max(1, round(num_patches * 120 / 196)))
        recipe.setdefault("min_mask_patches_per_block", max(1, min(16, round(num_patches * 16 / 196))))
    return Data2VecPretrainingConfig.from_preset(modality, backbone, **recipe)


def load_or_build_model(model_args: Data2VecModelArguments, tokenizer=None, image_size=None) -> Data2VecForPretraining:
    """A new model from the preset, a pretraining checkpoint to continue, or a student initialised from a backbone."""
    if model_args.model_name_or_path is None:
        return Data2VecForPretraining(build_pretraining_config(model_args, tokenizer, image_size))
    hub = {"cache_dir": model_args.cache_dir, "token": model_args.token}
    config = AutoConfig.from_pretrained(model_args.model_name_or_path, **hub)
    if isinstance(config, Data2VecPretrainingConfig):
        if config.modality != model_args.modality:
            raise ValueError(
                f"{model_args.model_name_or_path} is a {config.modality} checkpoint; --modality is "
                f"{model_args.modality}."
            )
        return Data2VecForPretraining.from_pretrained(model_args.model_name_or_path, **hub)
    found = MODALITY_BY_MODEL_TYPE.get(config.model_type)
    if found != model_args.modality:
        raise ValueError(
            f"{model_args.model_name_or_path} has model_type {config.model_type!r} ({found or 'not data2vec'}); "
            f"--modality {model_args.modality} needs a data2vec-{model_args.modality} backbone."
        )
    recipe, _ = parse_config_overrides(model_args.config_overrides)
    if tokenizer is not None:
        recipe.setdefault("mask_token_id", tokenizer.mask_token_id)
    recipe.setdefault("average_top_k_layers", None)
    if recipe["average_top_k_layers"] is None:
        recipe["average_top_k_layers"] = min(_PRESETS[found]["average_top_k_layers"], config.num_hidden_layers)
    model = Data2VecForPretraining(Data2VecPretrainingConfig.from_preset(found, config, **recipe))
    student = type(model.student).from_pretrained(model_args.model_name_or_path, **hub)
    model.student.load_state_dict(student.state_dict(), strict=False)
    model.teacher.load_state_dict(model.student.state_dict())
    return model


def load_tokenizer(model_args: Data2VecModelArguments, training_texts=None):
    """`--tokenizer_name`, the tokenizer of `--model_name_or_path`, or a BPE trained on `training_texts`."""
    if model_args.train_tokenizer or (model_args.tokenizer_name is None and model_args.model_name_or_path is None):
        if training_texts is None:
            raise ValueError("--train_tokenizer needs training texts.")
        return train_bpe_tokenizer(training_texts, vocab_size=model_args.tokenizer_vocab_size)
    name = model_args.tokenizer_name or model_args.model_name_or_path
    tokenizer = AutoTokenizer.from_pretrained(name, cache_dir=model_args.cache_dir, token=model_args.token)
    if tokenizer.mask_token_id is None:
        raise ValueError(f"The tokenizer {name} has no mask token; data2vec text masking needs one.")
    return tokenizer


# --- artifacts -----------------------------------------------------------------------------------------------------


def atomic_write_dir(final_dir: str | os.PathLike, write) -> None:
    """Calls `write(tmp_dir)` and moves the result into place, so a failure never leaves half a directory."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", dir=final_dir.parent))
    try:
        write(tmp)
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(tmp, final_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def final_metrics(log_history: list[dict]) -> dict:
    """The last logged training loss and variances and the last evaluation loss."""
    out = {}
    for entry in log_history:
        for key in ("loss", "target_var", "prediction_var", "ema_decay", "eval_loss"):
            if key in entry and not (isinstance(entry[key], float) and math.isnan(entry[key])):
                out[key] = entry[key]
    return out


def plot_training_curves(log_history: list[dict], path: str | os.PathLike) -> None:
    """Loss (train and eval) and the collapse monitors against the optimizer step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key):
        points = [(e["step"], e[key]) for e in log_history if key in e]
        return zip(*points) if points else ((), ())

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, style in (("loss", "-"), ("eval_loss", "o--")):
        steps, values = series(key)
        if steps:
            left.plot(steps, values, style, label=key)
    left.set(xlabel="optimizer step", ylabel="data2vec regression loss", title="Loss")
    left.legend()
    for key in ("target_var", "prediction_var"):
        steps, values = series(key)
        if steps:
            right.plot(steps, values, label=key)
    right.set(xlabel="optimizer step", ylabel="mean per-channel std", title="Collapse monitors")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def pretraining_model_card(model: Data2VecForPretraining, model_name: str, data_description: str, trainer):
    config = model.config
    recipe = {
        key: getattr(config, key)
        for key in (
            "average_top_k_layers",
            "target_feature",
            "instance_norm_target_layer",
            "layer_norm_target_layer",
            "instance_norm_targets",
            "layer_norm_targets",
            "head_layers",
            "loss_beta",
            "loss_scale",
            "loss_channel_reduction",
            "ema_decay",
            "ema_end_decay",
            "ema_anneal_end_step",
            "teacher_shared_params",
        )
    }
    if config.mode == "data2vec2":
        recipe.pop("head_layers")
        recipe.update({k: getattr(config, k) for k in ("mode", "clone_batch", "mask_prob", "decoder_layers")})
        recipe.update(decoder_kernel=config.decoder_kernel, decoder_dim=config.decoder_dim or config.hidden_size)
    elif config.modality == "text":
        recipe.update(text_mask_strategy=config.text_mask_strategy, mask_prob=config.mask_prob)
    elif config.modality == "audio":
        recipe.update(mask_prob=config.mask_prob, mask_length=config.mask_length)
    else:
        recipe.update(num_mask_patches=config.num_mask_patches)
    args = trainer.args
    details = {
        "modality": config.modality,
        "backbone": f"{config.backbone_config.model_type}, {config.backbone_config.num_hidden_layers} layers x "
        f"{config.hidden_size}",
        "data": data_description,
        "optimizer steps": trainer.state.global_step,
        "batch size per device x devices x accumulation": f"{args.per_device_train_batch_size} x {args.world_size} "
        f"x {args.gradient_accumulation_steps}",
        "learning rate": args.learning_rate,
        **{f"recipe.{k}": v for k, v in recipe.items()},
        **{f"final {k}": v for k, v in final_metrics(trainer.state.log_history).items()},
    }
    extra = (
        "## How to use\n\nThe `student/` folder holds a plain "
        f"`{type(model.student).__name__}` checkpoint for fine-tuning, e.g. "
        "`examples/text-classification/run_glue.py --model_name_or_path <this repo>/student`. The root folder holds "
        "the full "
        "pretraining state (student, EMA teacher, regression head) for `Data2VecForPretraining.from_pretrained` "
        "after `import d2v_hf`.\n\n![training curves](training_curves.png)\n"
    )
    return build_model_card(
        model_name,
        description=f"data2vec {'2.0' if config.mode == 'data2vec2' else '1.0'} pretraining of a {config.modality} "
        "backbone with d2v_hf.",
        training_details=details,
        extra_markdown=extra,
        tags=["data2vec", "self-supervised-learning", config.modality, "d2v_hf"],
    )


__all__ = [
    "Data2VecDataArguments",
    "Data2VecModelArguments",
    "atomic_write_dir",
    "build_pretraining_config",
    "check_checkpoint",
    "check_output_dir",
    "final_metrics",
    "load_or_build_model",
    "load_tokenizer",
    "parse_config_overrides",
    "plot_training_curves",
    "pretraining_model_card",
]
