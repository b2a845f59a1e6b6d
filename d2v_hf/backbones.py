"""
The backbone side of data2vec, read from the registry (`backbone_registry.py`): how to build a student or teacher of
any registered Transformers encoder, where its per-layer target features live, how long its output sequence is,
which inputs are valid, and how the student is exported as the family's own class. Kept apart from the algorithm so
that the modeling file reads as the paper's steps.
"""

import math

import torch
import transformers
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel

from .backbone_registry import BackboneFamily, get_family
from .configuration_data2vec_pretraining import image_side
from .ema import is_sharded
from .masking import audio_frame_attention_mask, audio_frame_lengths, audio_receptive_field


INPUT_NAME = {"text": "input_ids", "audio": "input_values", "vision": "pixel_values"}
POSITION_NAME = {"text": "tokens", "audio": "feature frames", "vision": "patches"}
MODALITY_OF_INPUT = {name: modality for modality, name in INPUT_NAME.items()}


def family_of(model_or_config) -> BackboneFamily:
    """The registry entry of a backbone or its configuration."""
    config = getattr(model_or_config, "config", model_or_config)
    return get_family(getattr(config, "model_type", None))


def backbone_class(config: PreTrainedConfig) -> type[PreTrainedModel]:
    return getattr(transformers, family_of(config).model_class)


def pretraining_kwargs(config: PreTrainedConfig) -> dict:
    """Constructor arguments of a pretraining backbone: no pooler, a learned mask token where it is an argument."""
    family = family_of(config)
    kwargs = {"add_pooling_layer": False} if family.has_pooler else {}
    if family.mask_token_argument:
        kwargs["use_mask_token"] = True
    return kwargs


def build_backbone(config: PreTrainedConfig) -> PreTrainedModel:
    """
    A randomly initialised student or teacher: no pooler, which pretraining never trains (and DDP would flag), and
    the learned mask token the student's masked input needs.
    """
    return backbone_class(config)(config, **pretraining_kwargs(config))


def export_backbone(backbone: PreTrainedModel, state_dict: dict[str, torch.Tensor] | None = None) -> PreTrainedModel:
    """
    The backbone as its family's `AutoModel` builds it (with its pooler, freshly initialised and seeded so that
    exports are reproducible; without a mask token that is a constructor argument), holding the backbone's weights,
    or `state_dict` (the whole weights of a backbone sharded by FSDP or DeepSpeed ZeRO-3, gathered beforehand).
    """
    family, config = family_of(backbone), backbone.config
    if state_dict is None and is_sharded(backbone):
        raise ValueError(
            "The backbone is sharded (FSDP or DeepSpeed ZeRO-3): each process holds a slice of its weights. Pass its "
            "gathered weights as `state_dict` (Data2VecPretrainingTrainer.student_state_dict(), on every process)."
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        exported = backbone_class(config)(config)  # the class's defaults, as AutoModel.from_pretrained builds it
    state = backbone.state_dict() if state_dict is None else state_dict
    if family.mask_token_argument:
        state = {key: value for key, value in state.items() if key != "embeddings.mask_token"}
    missing, unexpected = exported.load_state_dict(state, strict=False)
    if unexpected or any(not key.startswith("pooler.") for key in missing):
        raise RuntimeError(f"The student does not fit {type(exported).__name__}: {missing}, {unexpected}.")
    return exported.to(backbone.dtype)


def _submodule(module: nn.Module, path: str) -> nn.Module:
    return module.get_submodule(path) if path else module


@torch.no_grad()
def init_beit_backbone(backbone: PreTrainedModel) -> None:
    """
    data2vec 1.0's image initialisation (the BEiT code, `modeling_cyclical.py`): CLS and mask tokens from
    trunc-normal(0.02) (Hugging Face zeroes them), and each block's attention output and second FFN projection
    divided by sqrt(2 * layer number) (BEiT's `fix_init_weight`), so deeper residual branches start smaller.
    """
    family = family_of(backbone)
    nn.init.trunc_normal_(backbone.embeddings.cls_token, std=0.02)
    if getattr(backbone.embeddings, "mask_token", None) is not None:
        nn.init.trunc_normal_(backbone.embeddings.mask_token, std=0.02)
    for number, layer in enumerate(encoder_layers(backbone), start=1):
        for path in (family.attention_output, family.ffn_projection):
            _submodule(layer, path).weight.div_(math.sqrt(2.0 * number))


def encoder_layers(backbone: PreTrainedModel) -> nn.ModuleList:
    return backbone.get_submodule(family_of(backbone).layers)


def target_modules(backbone: PreTrainedModel, target_feature: str) -> list[nn.Module]:
    """
    One module per layer whose forward output is that layer's target feature: `"ffn"` the registry's feed-forward
    output (before the last residual connection, post-LN or layer scale, as fairseq's `fc_results` / `lr`), `"block"`
    the layer itself (the residual stream at the end of the block).
    """
    layers = encoder_layers(backbone)
    if target_feature == "block":
        return list(layers)
    return [_submodule(layer, family_of(backbone).ffn_output) for layer in layers]


def prefix_tokens(config: PreTrainedConfig) -> int:
    """Vision: the tokens in front of the patches (CLS, and DeiT's distillation token), 0 for text and audio."""
    return family_of(config).prefix_tokens


def check_teacher_shared_params(backbone: PreTrainedModel, prefixes: list[str]) -> None:
    """Every `teacher_shared_params` prefix must name parameters of this backbone (a typo would share nothing)."""
    names = [name for name, _ in backbone.named_parameters()]
    family = family_of(backbone)
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise ValueError(
                f"teacher_shared_params has {prefix!r}, which matches no parameter of the {type(backbone).__name__} "
                f"backbone; the recipes share {list(family.shared_params)} in the {family.model_type} family."
            )


def check_inputs(config, inputs: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """
    Validates the modality's inputs and returns `(main_input, padding_mask)`, where `padding_mask` is a bool
    `(batch, seq)` tensor over the backbone's OUTPUT positions (tokens / feature frames / patches), True where real.
    The checks of values (token range, finiteness) are skipped while `torch.compile` traces: they read the data,
    which would break its graph at every step (as Transformers skips its own under `is_torchdynamo_compiling`).
    """
    eager = not torch.compiler.is_compiling()
    modality, backbone = config.modality, config.backbone_config
    expected = INPUT_NAME[modality]
    foreign = [name for name, value in inputs.items() if value is not None and name != expected]
    foreign = [name for name in foreign if name in MODALITY_OF_INPUT]
    if foreign:
        raise ValueError(
            f"This model is configured for {modality} ({backbone.model_type}) but got `{foreign[0]}`, an input of "
            f"the {MODALITY_OF_INPUT[foreign[0]]} modality; pass `{expected}`."
        )
    main = inputs.get(expected)
    if main is None:
        raise ValueError(f"The {modality} model needs `{expected}`.")
    if main.dim() == 0 or main.shape[0] == 0:
        raise ValueError(f"`{expected}` holds no example (shape {tuple(main.shape)}): the batch is empty.")
    if modality == "text" and (main.dtype.is_floating_point or main.dtype == torch.bool):
        raise ValueError(f"input_ids must be integer token ids; got dtype {main.dtype} (e.g. `input_ids.long()`).")
    if eager and modality != "text" and not bool(torch.isfinite(main).all()):
        # one NaN would reach the loss, the student's weights and, through the EMA, the teacher for good
        example = int((~torch.isfinite(main)).flatten(1).any(1).nonzero()[0])
        raise ValueError(f"{expected} contains NaN or inf values (example {example} of the batch); check the data.")
    attention_mask = inputs.get("attention_mask")
    if modality == "text":
        if main.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq_len); got shape {tuple(main.shape)}.")
        if eager and main.numel() and (main.min() < 0 or main.max() >= backbone.vocab_size):
            bad = main.max().item() if main.max() >= backbone.vocab_size else main.min().item()
            raise ValueError(f"input_ids contains token id {bad} outside the vocabulary (size {backbone.vocab_size}).")
        max_len = backbone.max_position_embeddings
        if family_of(backbone).text_position_offset:  # learned positions start after the padding index (RoBERTa)
            max_len -= backbone.pad_token_id + 1
        if main.shape[1] > max_len:
            raise ValueError(f"Sequence length {main.shape[1]} exceeds the backbone's maximum of {max_len} tokens.")
        padding = None if attention_mask is None else _check_attention_mask(attention_mask, main.shape).bool()
        return main, padding
    if modality == "audio":
        if main.dim() != 2:
            raise ValueError(f"input_values must be (batch, num_samples) raw audio; got shape {tuple(main.shape)}.")
        field = audio_receptive_field(backbone.conv_kernel, backbone.conv_stride)
        shortest = main.shape[1]
        if attention_mask is not None:
            shortest = int(_check_attention_mask(attention_mask, main.shape).sum(-1).min())
        if shortest < field:
            raise ValueError(
                f"Audio of {shortest} samples is shorter than the feature encoder's receptive field of {field} "
                f"samples ({field / 16000 * 1000:.0f} ms at 16 kHz); no feature frame can be computed."
            )
        num_frames = int(audio_frame_lengths(main.shape[1], backbone.conv_kernel, backbone.conv_stride))
        if attention_mask is None:
            return main, None
        frames = audio_frame_attention_mask(attention_mask, num_frames, backbone.conv_kernel, backbone.conv_stride)
        return main, frames
    if main.dim() != 4:
        raise ValueError(f"pixel_values must be (batch, channels, height, width); got shape {tuple(main.shape)}.")
    height, width = main.shape[-2:]
    patch = backbone.patch_size
    if height % patch or width % patch:
        raise ValueError(f"Image size {height}x{width} is not divisible by the patch size {patch}.")
    size = image_side(backbone)
    if (height, width) != (size, size):
        raise ValueError(f"Image size {height}x{width} differs from the backbone's image_size {size}x{size}.")
    if main.shape[1] != backbone.num_channels:
        raise ValueError(f"pixel_values has {main.shape[1]} channels; the backbone expects {backbone.num_channels}.")
    return main, None


def num_output_positions(config, main_input: torch.Tensor) -> int:
    backbone = config.backbone_config
    if config.modality == "text":
        return main_input.shape[1]
    if config.modality == "audio":
        return int(audio_frame_lengths(main_input.shape[1], backbone.conv_kernel, backbone.conv_stride))
    return (main_input.shape[-2] // backbone.patch_size) * (main_input.shape[-1] // backbone.patch_size)


def check_mask(mask, shape: tuple[int, int], real: torch.Tensor | None, what: str, hint: str = "") -> torch.BoolTensor:
    """
    Validates the student's mask (1.0: `(batch, positions)`; 2.0: one row per masked copy) and returns it as bool.
    `real` (bool, same shape) marks the positions that may be masked; `what` names them in errors. The checks of
    values are skipped while `torch.compile` traces (see [`check_inputs`]).
    """
    eager = not torch.compiler.is_compiling()
    if mask is None:
        raise ValueError(f"`mask` is required: a bool tensor (batch, {what}) that is True at masked positions.")
    if tuple(mask.shape) != tuple(shape):
        hint = hint or f"the input has {shape[0]} x {shape[1]} {what}"
        raise ValueError(f"mask has shape {tuple(mask.shape)}; {hint}: expected {tuple(shape)}.")
    if mask.dtype != torch.bool:
        if mask.dtype.is_floating_point:
            raise ValueError(f"mask must be boolean (or 0/1 integers); got dtype {mask.dtype}.")
        if eager and ((mask != 0) & (mask != 1)).any():
            raise ValueError("mask must be boolean (or 0/1 integers); got values other than 0 and 1.")
        mask = mask.bool()
    if not eager:
        return mask
    if not mask.any():
        raise ValueError("mask has no masked position in the batch: there is nothing to regress.")
    if real is not None and (mask & ~real.to(mask.device)).any():
        raise ValueError(f"mask marks padded {what} as masked; only real positions can be masked.")
    return mask


def packed_text_inputs(
    config, input_ids: torch.Tensor, position_ids: torch.Tensor, padding: torch.Tensor | None, attn_implementation: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Packed text rows (several samples in a row, `position_ids` counting from 0 within each; see
    `tokenize_and_group(pack_documents=True)`): returns the backbone's `(attention_mask, position_ids)`. The mask is
    4D `(batch, 1, seq, seq)` and lets a token attend only within its own sample (padding forms a group of its own, so
    no row of the softmax is empty); it is boolean for SDPA, additive for eager attention. The position ids are
    shifted past the padding index where the family's learned positions start there (RoBERTa), as Transformers
    numbers an unpacked row.
    """
    if config.modality != "text" or config.mode != "data2vec":
        raise ValueError(
            f"position_ids (packed samples) are supported for data2vec 1.0 text only; this model is {config.mode} "
            f"{config.modality}."
        )
    if config.instance_norm_target_layer or config.instance_norm_targets:
        raise ValueError(
            "position_ids (packed samples) with instance-normalised targets would normalise over several samples at "
            "once; use layer-normalised targets (the text recipe's) or unpacked data."
        )
    if attn_implementation not in ("sdpa", "eager"):
        raise ValueError(
            f"position_ids (packed samples) need attn_implementation 'sdpa' or 'eager' (a 4D mask); the backbone "
            f"uses {attn_implementation!r}."
        )
    if tuple(position_ids.shape) != tuple(input_ids.shape) or position_ids.dtype.is_floating_point:
        raise ValueError(
            f"position_ids must be integers of input_ids' shape {tuple(input_ids.shape)}; got "
            f"{tuple(position_ids.shape)} ({position_ids.dtype})."
        )
    real = torch.ones_like(input_ids, dtype=torch.bool) if padding is None else padding.to(input_ids.device)
    if not torch.compiler.is_compiling():
        starts = position_ids == 0
        follows = position_ids[:, 1:] == position_ids[:, :-1] + 1
        if (position_ids < 0).any() or not bool(starts[:, 0][real[:, 0]].all()):
            raise ValueError("position_ids must start at 0 in every row and never be negative.")
        if not bool((starts[:, 1:] | follows | ~real[:, 1:]).all()):
            raise ValueError("position_ids must count up by 1 within a sample and restart at 0 at the next one.")
    # sample index of every token: a new sample where the count restarts; padding gets -1, a group of its own
    sample = torch.where(real, torch.cumsum((position_ids == 0).long(), dim=1), -1)
    allowed = (sample.unsqueeze(-1) == sample.unsqueeze(-2)).unsqueeze(1)
    if attn_implementation == "eager":
        blocked = torch.finfo(torch.float32).min
        allowed = torch.zeros(allowed.shape, device=allowed.device).masked_fill(~allowed, blocked)
    offset = config.backbone_config.pad_token_id + 1 if family_of(config.backbone_config).text_position_offset else 0
    return allowed, position_ids + offset


def _check_attention_mask(attention_mask: torch.Tensor, shape) -> torch.Tensor:
    if tuple(attention_mask.shape) != tuple(shape[:2]):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected {tuple(shape[:2])}.")
    return attention_mask


__all__ = [
    "INPUT_NAME",
    "POSITION_NAME",
    "backbone_class",
    "build_backbone",
    "check_inputs",
    "check_mask",
    "check_teacher_shared_params",
    "encoder_layers",
    "export_backbone",
    "family_of",
    "init_beit_backbone",
    "num_output_positions",
    "packed_text_inputs",
    "prefix_tokens",
    "pretraining_kwargs",
    "target_modules",
]
