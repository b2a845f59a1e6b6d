"""
The script side of `run_pretraining.py`: arguments, model construction from the command line, checks that run before
anything is written, and the artifacts written at the end (model card, loss plot). The method itself is `d2v_hf`.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from transformers import CONFIG_MAPPING, AutoTokenizer

from d2v_hf import Data2VecForPretraining, Data2VecPretrainingConfig
from d2v_hf.argument_parsing import load_config, split_overrides
from d2v_hf.backbone_registry import BACKBONES, get_family, modality_of
from d2v_hf.backbones import backbone_class, pretraining_kwargs
from d2v_hf.configuration_data2vec_pretraining import _PRESETS, base_backbone_config, tiny_backbone_config
from d2v_hf.data import train_bpe_tokenizer
from d2v_hf.recipes import RECIPE_METADATA, TRAINING_RECIPES


@dataclass
class Data2VecModelArguments:
    """What to pretrain: a preset recipe on a backbone size, or a checkpoint to continue from."""

    recipe: str | None = field(
        default=None,
        metadata={
            "help": "A released recipe, model and training: data2vec-{text,audio,vision}-base or "
            "data2vec2-{text,audio,vision}-base (docs/recipes.md). Flags you give win over it."
        },
    )
    modality: str = field(default="text", metadata={"help": "text, audio or vision."})
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A Data2VecForPretraining checkpoint to continue, or an encoder of any registered family (Hub id "
            "or path: roberta-base, bert-base-uncased, xlm-roberta-base, google/vit-base-patch16-224-in21k, "
            "facebook/wav2vec2-base, facebook/hubert-base-ls960, a Data2Vec model, a local folder) whose weights "
            "initialise the student and the teacher (continued pretraining). Default: a preset on a new backbone."
        },
    )
    backbone_type: str | None = field(
        default=None,
        metadata={
            "help": "A new backbone's family (model_type): data2vec-text, roberta, xlm-roberta, bert, "
            "data2vec-audio, wav2vec2, hubert, wavlm, data2vec-vision, beit, vit or deit; same size as the "
            "Data2Vec one of --model_size. Default: data2vec-<modality>."
        },
    )
    model_size: str = field(
        default="base",
        metadata={
            "help": "Backbone of a new model: base (12 x 768, the paper) or tiny (4 x 64; the no-argument demo's)."
        },
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
    tokenizer_vocab_size: int = field(
        default=8000, metadata={"help": "Vocabulary size of a trained tokenizer (the no-argument demo: 4000)."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where to store Hub downloads."})
    token: str | None = field(default=None, metadata={"help": "Hub token for private models and datasets."})
    license: str = field(
        default="apache-2.0", metadata={"help": "License in the model card's metadata (check your data's terms)."}
    )


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
    sample_break_mode: str = field(
        default="none",
        metadata={
            "help": "Text: none (one stream cut into full blocks) or complete_doc (a sample never crosses a text's "
            "boundary: the data2vec 1.0 recipe's layout, padded)."
        },
    )
    pack_documents: bool = field(
        default=False,
        metadata={
            "help": "Text, with complete_doc: pack whole samples into rows of max_seq_length, each token attending "
            "within its own sample only (the padded batch's loss without computing its padding; data2vec 1.0)."
        },
    )
    max_audio_seconds: float = field(default=15.0, metadata={"help": "Audio: longer clips are cropped."})
    image_size: int | None = field(default=None, metadata={"help": "Vision: input size (default: the backbone's)."})
    streaming: bool = field(default=False, metadata={"help": "Read the data lazily (needs --max_steps)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the validation set."})

    def __post_init__(self):
        if self.sample_break_mode not in ("none", "complete_doc"):
            raise ValueError(f"--sample_break_mode {self.sample_break_mode!r}; expected none or complete_doc.")
        if self.pack_documents and self.sample_break_mode != "complete_doc":
            raise ValueError("--pack_documents packs the samples of --sample_break_mode complete_doc; pass both.")

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


def check_checkpoint(checkpoint: str, modality: str | None = None) -> None:
    """
    Raises a `ValueError` naming the file when a Trainer checkpoint is missing, corrupted or truncated, or (with
    `modality`) when it holds a model of another modality.
    """
    from safetensors import safe_open

    path = Path(checkpoint)
    if not path.is_dir():
        raise ValueError(f"Checkpoint {checkpoint} is not a directory.")
    if modality is not None:
        try:
            backbone = json.loads((path / "config.json").read_text()).get("backbone_config") or {}
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"Checkpoint file {path / 'config.json'} is missing or corrupted ({err}).") from None
        found = modality_of(backbone.get("model_type"))
        if found != modality:
            raise ValueError(
                f"--resume_from_checkpoint {checkpoint} holds a {found or 'non-data2vec'} model; --modality is "
                f"{modality}. Resume a {modality} run, or pass --modality {found}."
            )
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


def recipe_defaults(name: str, given: set[str], training_args) -> tuple[list[str], list[str]]:
    """
    The command-line flags that `--recipe NAME` adds (those the user did not give), and a line per value for the log
    and the model card. The released batch of one update is reached on `training_args.world_size` processes with
    gradient accumulation: `accumulation = ceil(batch / (per-device batch x processes))`, with the recipe's per-device
    batch or yours (`--per_device_train_batch_size`, e.g. to fit memory); the learning rate, warmup, total updates and
    EMA schedule stay as released, since the update is the same. An accumulation you give yourself changes the batch
    of an update; nothing is rescaled then, and the log and the card say so.
    """
    if name not in TRAINING_RECIPES:
        raise ValueError(f"--recipe {name!r}; expected one of {sorted(TRAINING_RECIPES)}.")
    recipe = TRAINING_RECIPES[name]
    values = {k: v for k, v in recipe.items() if k not in RECIPE_METADATA}
    values.update(modality=recipe["modality"], model_size="base")  # the mode goes into config_overrides (the script)
    per_device = training_args.per_device_train_batch_size if "per_device_train_batch_size" in given else None
    processes = training_args.world_size
    # more processes than the release had: a smaller per-device batch keeps the update's size (to the nearest)
    values["per_device_train_batch_size"] = per_device or min(
        recipe["per_gpu"], math.ceil(recipe["batch"] / processes)
    )
    values["gradient_accumulation_steps"] = max(
        1, math.ceil(recipe["batch"] / (values["per_device_train_batch_size"] * processes))
    )
    flags, lines = [], []
    for key, value in values.items():
        text = json.dumps(value) if isinstance(value, dict) else str(value)
        if key in given:
            lines.append(f"{key}: {text} in the recipe, yours kept")
        else:
            flags.append(f"--{key}={text}")
            lines.append(f"{key}: {text}")
    accumulation = (
        training_args.gradient_accumulation_steps
        if "gradient_accumulation_steps" in given
        else values["gradient_accumulation_steps"]
    )
    per_update = values["per_device_train_batch_size"] * processes * accumulation
    released = f"{recipe['batch']} ({recipe['gpus']} GPUs x {recipe['per_gpu']})"
    lines.insert(
        0,
        f"recipe {name} ({recipe['source']}): released batch {released} per update; this run: "
        f"{per_update} ({processes} processes x {values['per_device_train_batch_size']} x {accumulation})",
    )
    return flags, lines


def parse_config_overrides(overrides: str | None) -> tuple[dict, dict]:
    """
    'a=1,backbone.b=x,backbone.c=[8,8]' -> ({'a': 1}, {'b': 'x', 'c': [8, 8]}), values parsed as JSON when
    possible. Items are separated by the commas that precede a `key=`, so JSON lists keep theirs.
    """
    recipe, backbone = {}, {}
    for item in split_overrides(overrides):
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
# what a backbone of another family keeps from the Data2Vec one of --model_size: its size and input geometry (the
# rest, e.g. wav2vec2's 128-wide positional convolution, stays the family's own default)
_ARCHITECTURE_FIELDS = {
    "text": ("vocab_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps"),
    "audio": ("conv_dim", "conv_stride", "conv_kernel", "layerdrop", "mask_feature_prob", "activation_dropout"),
    "vision": ("image_size", "patch_size", "num_channels", "layer_norm_eps", "drop_path_rate"),
}


def backbone_of_family(backbone, model_type: str):
    """The Data2Vec `backbone`'s size (layers, width, heads, FFN, input geometry) as a `model_type` configuration."""
    family = get_family(model_type)
    modality = modality_of(backbone.model_type)
    if family.modality != modality:
        raise ValueError(
            f"--backbone_type {model_type} is {'an' if family.modality == 'audio' else 'a'} {family.modality} family; "
            f"--modality is {modality}. "
            f"{modality.capitalize()} families: {sorted(t for t, f in BACKBONES.items() if f.modality == modality)}."
        )
    if model_type == backbone.model_type:
        return backbone
    config_class = CONFIG_MAPPING[model_type]
    defaults = config_class()
    names = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
    names += _ARCHITECTURE_FIELDS[modality]
    return config_class(**{name: getattr(backbone, name) for name in names if hasattr(defaults, name)})


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
    if model_args.backbone_type is not None:
        backbone = backbone_of_family(backbone, model_args.backbone_type)
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
    config = load_config(model_args.model_name_or_path, "--model_name_or_path", **hub)
    if isinstance(config, Data2VecPretrainingConfig):
        if config.modality != model_args.modality:
            raise ValueError(
                f"{model_args.model_name_or_path} is a {config.modality} checkpoint; --modality is "
                f"{model_args.modality}."
            )
        return Data2VecForPretraining.from_pretrained(model_args.model_name_or_path, **hub)
    get_family(config.model_type)  # an unregistered family: the error lists the registered ones
    found = modality_of(config.model_type)
    if found != model_args.modality:
        raise ValueError(
            f"{model_args.model_name_or_path} has model_type {config.model_type!r}, a {found} backbone; --modality "
            f"is {model_args.modality}. Pass --modality {found}."
        )
    if model_args.backbone_type not in (None, config.model_type):
        raise ValueError(
            f"--backbone_type {model_args.backbone_type} differs from {model_args.model_name_or_path}'s model_type "
            f"{config.model_type!r}; drop --backbone_type to continue that checkpoint."
        )
    recipe, _ = parse_config_overrides(model_args.config_overrides)
    if tokenizer is not None:
        recipe.setdefault("mask_token_id", tokenizer.mask_token_id)
    recipe.setdefault("average_top_k_layers", None)
    if recipe["average_top_k_layers"] is None:
        recipe["average_top_k_layers"] = min(_PRESETS[found]["average_top_k_layers"], config.num_hidden_layers)
    model = Data2VecForPretraining(Data2VecPretrainingConfig.from_preset(found, config, **recipe))
    # the family's class with the pretraining constructor arguments (no pooler, a mask token): a task checkpoint
    # (e.g. RobertaForMaskedLM's `roberta.` weights) loads too; only a new mask token may be missing
    pretrained, info = backbone_class(config).from_pretrained(
        model_args.model_name_or_path, **hub, **pretraining_kwargs(config), output_loading_info=True
    )
    new = set(info["missing_keys"])  # e.g. a mask token the checkpoint never had: keep the recipe's initialisation
    state = {key: value for key, value in pretrained.state_dict().items() if key not in new}
    missing, unexpected = model.student.load_state_dict(state, strict=False)
    if unexpected or any(key not in new for key in missing) or any(key != "embeddings.mask_token" for key in new):
        raise ValueError(
            f"{model_args.model_name_or_path} does not fit a {type(model.student).__name__}: missing {missing}, "
            f"unexpected {unexpected}."
        )
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


__all__ = [
    "Data2VecDataArguments",
    "Data2VecModelArguments",
    "build_pretraining_config",
    "check_checkpoint",
    "check_output_dir",
    "load_or_build_model",
    "load_tokenizer",
    "parse_config_overrides",
]
