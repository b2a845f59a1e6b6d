"""Tiny backbone configurations and inputs, built in code (no network)."""

import torch
from transformers import Data2VecAudioConfig, Data2VecTextConfig, Data2VecVisionConfig

from d2v_hf import (
    Data2VecPretrainingConfig,
    audio_frame_lengths,
    compute_audio_span_mask,
    compute_text_span_mask,
    compute_vision_block_mask,
)


VOCAB_SIZE = 99
MASK_TOKEN_ID = 98


def tiny_backbone_config(modality: str, num_layers: int = 2, **kwargs):
    common = dict(hidden_size=32, num_hidden_layers=num_layers, num_attention_heads=4, intermediate_size=37)
    common.update(kwargs)
    if modality == "text":
        return Data2VecTextConfig(vocab_size=VOCAB_SIZE, max_position_embeddings=64, **common)
    if modality == "audio":
        return Data2VecAudioConfig(
            conv_dim=(32, 32, 32),
            conv_kernel=(8, 8, 8),
            conv_stride=(4, 4, 4),
            num_conv_pos_embeddings=2,
            conv_pos_kernel_size=5,
            num_conv_pos_embedding_groups=2,
            **common,
        )
    common = {"image_size": 32, "patch_size": 8, **common}
    return Data2VecVisionConfig(**common)


def tiny_config(modality: str, num_layers: int = 2, preset: bool = True, backbone_kwargs=None, **overrides):
    """The modality's preset on a tiny backbone; K defaults to all layers when the preset's K does not fit."""
    backbone = tiny_backbone_config(modality, num_layers, **(backbone_kwargs or {}))
    if modality == "text":
        overrides.setdefault("mask_token_id", MASK_TOKEN_ID)
    if modality == "vision":  # a 4 x 4 patch grid
        overrides.setdefault("num_mask_patches", 8)
        overrides.setdefault("min_mask_patches_per_block", 2)
    if preset:
        from d2v_hf.configuration_data2vec_pretraining import _PRESETS

        if _PRESETS[modality]["average_top_k_layers"] > num_layers:
            overrides.setdefault("average_top_k_layers", num_layers)
        return Data2VecPretrainingConfig.from_preset(modality, backbone, **overrides)
    return Data2VecPretrainingConfig(backbone_config=backbone, **overrides)


def tiny_inputs(config, batch_size: int = 3, seed: int = 0, pad: bool = True):
    """Unmasked inputs plus a mask from the library's masking function of the modality."""
    generator = torch.Generator().manual_seed(seed)
    modality, backbone = config.modality, config.backbone_config
    if modality == "text":
        input_ids = torch.randint(3, VOCAB_SIZE - 1, (batch_size, 16), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        if pad:
            attention_mask[0, 11:] = 0
            input_ids[0, 11:] = backbone.pad_token_id
        mask = compute_text_span_mask(attention_mask, generator=generator)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "mask": mask}
    if modality == "audio":
        input_values = torch.randn(batch_size, 3000, generator=generator)
        frames = int(audio_frame_lengths(3000, backbone.conv_kernel, backbone.conv_stride))
        mask = compute_audio_span_mask(
            torch.ones(batch_size, frames, dtype=torch.bool), mask_length=4, generator=generator
        )
        return {"input_values": input_values, "mask": mask}
    pixel_values = torch.randn(batch_size, 3, 32, 32, generator=generator)
    mask = compute_vision_block_mask(batch_size, (4, 4), 8, min_num_patches=2, generator=generator)
    return {"pixel_values": pixel_values, "mask": mask}
