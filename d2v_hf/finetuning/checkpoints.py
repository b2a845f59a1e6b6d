"""
Loading checkpoints for fine-tuning: which modality a config belongs to, the checks that fail before any data is
read (another modality, a pretraining checkpoint instead of its `student/`, a head of another size, an image size
that is no multiple of the patch size), the processor settings, and the model with its new head (and LoRA).
"""

import logging
from collections.abc import Sequence

from transformers import (
    AutoFeatureExtractor,
    AutoImageProcessor,
    AutoModelForAudioClassification,
    AutoModelForImageClassification,
    AutoTokenizer,
    PretrainedConfig,
)

from ..argument_parsing import load_config
from .arguments import ClassificationModelArguments, ModelArguments, hub_kwargs
from .lora import apply_lora


logger = logging.getLogger(__name__)

AUDIO_SAMPLING_RATE = 16000
# data2vec's speech input (`normalize: true` in its configs): 16 kHz, each clip normalised, with an attention mask
AUDIO_PROCESSOR_SETTINGS = {"sampling_rate": AUDIO_SAMPLING_RATE, "do_normalize": True, "return_attention_mask": True}


# Model types per modality, beyond what the Auto mappings tell (see `detect_modality`).
_AUDIO_HINTS = ("audio", "wav2vec", "hubert", "wavlm", "whisper", "speech", "unispeech", "sew", "clap")


_VISION_HINTS = ("vision", "vit", "beit", "deit", "swin", "convnext", "resnet", "image", "dinov")


# What to use instead, per modality, in the errors of a checkpoint of the wrong modality.
_MODALITY_EXAMPLES = {
    "text": "a data2vec-text/RoBERTa/BERT model and run_glue.py or run_qa.py",
    "vision": "a data2vec-vision/ViT/BEiT model and run_image_classification.py",
    "audio": "a data2vec-audio/wav2vec2/HuBERT model and run_audio_classification.py",
}


def detect_modality(config: PretrainedConfig) -> str | None:
    """
    Guesses the input modality of a config: `"text"`, `"audio"`, `"vision"`, or `None` when unknown.

    Uses transformers' Auto mappings (audio classification/CTC, image classification, sequence classification/QA)
    and then the `model_type` and `architectures` names.
    """
    from transformers.models.auto import modeling_auto

    model_type = getattr(config, "model_type", "") or ""
    if model_type in modeling_auto.MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES or (
        model_type in modeling_auto.MODEL_FOR_CTC_MAPPING_NAMES
    ):
        return "audio"
    if model_type in modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES and (
        model_type not in modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    ):
        return "vision"
    if model_type in modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES or (
        model_type in modeling_auto.MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES
    ):
        return "text"
    names = " ".join([model_type, *(getattr(config, "architectures", None) or [])]).lower()
    if any(hint in names for hint in _AUDIO_HINTS):
        return "audio"
    if any(hint in names for hint in _VISION_HINTS):
        return "vision"
    return None


def check_model_modality(config: PretrainedConfig, expected: str, script: str = "this script") -> None:
    """
    Raises a `ValueError` naming the modality found when `config` belongs to a model of another modality than
    `expected` (e.g. a data2vec-audio checkpoint given to `run_glue.py`), or is a whole `Data2VecForPretraining`
    checkpoint (its `student/` folder is the model to fine-tune). Unknown model types pass.
    """
    name = getattr(config, "_name_or_path", "") or "the checkpoint"
    if getattr(config, "model_type", None) == "data2vec-pretraining":
        raise ValueError(
            f"{name!r} is a full data2vec pretraining checkpoint (student, teacher and regression head); fine-tune "
            "the plain backbone that run_pretraining.py exports to its `student/` folder (or export it with "
            "`Data2VecForPretraining.from_pretrained(...).export_student(dir)`)."
        )
    found = detect_modality(config)
    if found is not None and found != expected:
        raise ValueError(
            f"{script} fine-tunes {expected} models, but {name!r} is a {found} model (model_type="
            f"{config.model_type!r}, architectures={getattr(config, 'architectures', None)}). Use "
            f"{_MODALITY_EXAMPLES[expected].split(' and ')[0]}, or {_MODALITY_EXAMPLES[found]} for this checkpoint."
        )


def check_head_size(config: PretrainedConfig, num_labels: int, ignore_mismatched_sizes: bool = False) -> None:
    """
    Raises a `ValueError` when the checkpoint already has a classification head of another size (e.g. an SST-2
    model given for STS-B), unless `ignore_mismatched_sizes` re-initializes it. Backbones without head pass.
    """
    architectures = getattr(config, "architectures", None) or []
    has_head = any(name.endswith("Classification") for name in architectures)
    if has_head and config.num_labels != num_labels and not ignore_mismatched_sizes:
        raise ValueError(
            f"The checkpoint {getattr(config, '_name_or_path', '')!r} has a {config.num_labels}-label classification "
            f"head ({architectures[0]}), but the task needs {num_labels}; pass --ignore_mismatched_sizes to train a "
            "new head."
        )


def check_image_size(config) -> int:
    """Returns the model's square image size, or raises a `ValueError` when it is not a multiple of the patch size."""
    image_size, patch_size = getattr(config, "image_size", None), getattr(config, "patch_size", None)
    sizes = list(image_size) if isinstance(image_size, (list, tuple)) else [image_size]
    patches = list(patch_size) if isinstance(patch_size, (list, tuple)) else [patch_size] * len(sizes)
    if image_size is None or any(s is None for s in sizes):
        raise ValueError(f"The checkpoint's config ({type(config).__name__}) has no image_size.")
    if len(set(sizes)) != 1:
        raise ValueError(f"Only square images are supported; the checkpoint's image_size is {image_size}.")
    for size, patch in zip(sizes, patches):
        if patch and size % patch != 0:
            raise ValueError(
                f"The image size {size} is not divisible by the patch size {patch} ({type(config).__name__}); "
                "choose an image_size that is a multiple of patch_size."
            )
    return int(sizes[0])


def load_checkpoint_config(model_args: ModelArguments, expected: str, script: str):
    """`AutoConfig.from_pretrained` of the checkpoint, checked with [`check_model_modality`]."""
    flag = "--config_name" if model_args.config_name else "--model_name_or_path"
    config = load_config(model_args.config_name or model_args.model_name_or_path, flag, **hub_kwargs(model_args))
    check_model_modality(config, expected, script)
    return config


def load_pretrained(
    model_args: ModelArguments,
    auto_model_class,
    modality: str = "text",
    script: str = "this script",
    **config_overrides,
):
    """
    Loads config, tokenizer (or processor) and model for fine-tuning, as transformers' example scripts do, with the
    checks of this module: the checkpoint must be of `modality`, a classification head of another size needs
    `--ignore_mismatched_sizes`, and `--use_peft` wraps the model with LoRA ([`apply_lora`]).

    Args:
        model_args ([`ModelArguments`]): checkpoint, revision, token, LoRA options.
        auto_model_class: e.g. `AutoModelForSequenceClassification`, `AutoModelForQuestionAnswering`.
        modality (`str`): `"text"`, `"audio"` or `"vision"`.
        script (`str`): the script name, for error messages.
        **config_overrides: set on the config before the model is built (`num_labels`, `id2label`, ...).

    Returns:
        `(config, tokenizer, model)`.
    """
    config = load_checkpoint_config(model_args, modality, script)
    if "num_labels" in config_overrides:
        check_head_size(config, config_overrides["num_labels"], model_args.ignore_mismatched_sizes)
        config.num_labels = config_overrides.pop("num_labels")  # first: it resets id2label/label2id
    for key, value in config_overrides.items():
        setattr(config, key, value)
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, **hub_kwargs(model_args)
    )
    model = auto_model_class.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **hub_kwargs(model_args),
    )
    if model_args.use_peft:
        model = apply_lora(
            model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout, model_args.lora_target_modules
        )
    return config, tokenizer, model


def load_processor_settings(model_args: ModelArguments, modality: str) -> dict:
    """
    Reads the checkpoint's image processor (`image_mean`, `image_std`) or feature extractor (`sampling_rate`,
    `do_normalize`, `return_attention_mask`) when it has one; a data2vec student exported by `run_pretraining.py`
    has none, and gets data2vec's settings (mean = std = 0.5; 16 kHz, normalised, with attention mask).
    """
    name = model_args.image_processor_name or model_args.model_name_or_path
    settings = (
        {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}
        if modality == "vision"
        else dict(AUDIO_PROCESSOR_SETTINGS)  # a copy: the checkpoint's own values replace these below
    )
    try:
        loader = AutoImageProcessor if modality == "vision" else AutoFeatureExtractor
        processor = loader.from_pretrained(name, **hub_kwargs(model_args))
    except (OSError, ValueError, KeyError) as err:
        logger.info(f"No {modality} processor found for {name} ({type(err).__name__}); using data2vec's defaults.")
        return settings
    for key in settings:
        value = getattr(processor, key, None)
        if value is not None:
            settings[key] = list(value) if isinstance(value, (list, tuple)) else value
    return settings


def make_processor(modality: str, settings: dict, image_size: int | None = None):
    """The image processor / feature extractor saved with the fine-tuned model (so pipelines can use it)."""
    if modality == "vision":
        # imported here: without torchvision, importing the name warns, which text and speech runs need not show
        from transformers import ViTImageProcessor

        return ViTImageProcessor(
            size={"height": image_size, "width": image_size},
            image_mean=settings["image_mean"],
            image_std=settings["image_std"],
            resample=3,  # bicubic, as the transform
        )
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=settings["sampling_rate"],
        padding_value=0.0,
        do_normalize=settings["do_normalize"],
        return_attention_mask=settings["return_attention_mask"],
    )


def build_classification_model(config, model_args: ClassificationModelArguments, label_names: Sequence[str]):
    """
    Loads `AutoModelForImageClassification` or `AutoModelForAudioClassification` (chosen by the config's modality)
    from `model_args.model_name_or_path` with a head over `label_names` (`label2id` / `id2label` set), then wraps it
    in LoRA adapters with `--use_peft` ([`apply_lora`]). The audio feature encoder is frozen
    with `--freeze_feature_encoder`.
    """
    label_names = [str(name) for name in label_names]
    check_head_size(config, len(label_names), model_args.ignore_mismatched_sizes)
    config.num_labels = len(label_names)
    config.label2id = {name: i for i, name in enumerate(label_names)}
    config.id2label = dict(enumerate(label_names))
    modality = detect_modality(config)
    config.finetuning_task = "audio-classification" if modality == "audio" else "image-classification"
    auto_class = AutoModelForAudioClassification if modality == "audio" else AutoModelForImageClassification
    model = auto_class.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **hub_kwargs(model_args),
    )
    expected_input = "input_values" if modality == "audio" else "pixel_values"
    if model.main_input_name != expected_input:
        raise ValueError(
            f"{type(model).__name__} takes {model.main_input_name!r}, but this script feeds {expected_input!r} "
            f"({'raw waveforms' if modality == 'audio' else 'normalised images'}); use "
            f"{_MODALITY_EXAMPLES[modality].split(' and ')[0]}."
        )
    if modality == "audio" and model_args.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    if model_args.use_peft:
        model = apply_lora(
            model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout, model_args.lora_target_modules
        )
    return model


__all__ = [
    "AUDIO_PROCESSOR_SETTINGS",
    "AUDIO_SAMPLING_RATE",
    "build_classification_model",
    "check_head_size",
    "check_image_size",
    "check_model_modality",
    "detect_modality",
    "load_checkpoint_config",
    "load_pretrained",
    "load_processor_settings",
    "make_processor",
]
