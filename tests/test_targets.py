"""Targets and losses against an independent computation from the teacher's layer outputs."""

import math

import pytest
import torch
import torch.nn.functional as F

from d2v_hf import Data2VecForPretraining

from .fixtures import MASK_TOKEN_ID, make_teacher_differ, manual_text_layers, tiny_config, tiny_inputs


def manual_audio_layers(backbone, input_values):
    features = backbone.feature_extractor(input_values).transpose(1, 2)
    hidden, _ = backbone.feature_projection(features)
    encoder = backbone.encoder
    hidden = encoder.layer_norm(hidden + encoder.pos_conv_embed(hidden))
    ffn_outputs, block_outputs = [], []
    for layer in encoder.layers:
        hidden = layer.layer_norm(hidden + layer.attention(hidden)[0])
        ffn = layer.feed_forward(hidden)
        hidden = layer.final_layer_norm(hidden + ffn)
        ffn_outputs.append(ffn)
        block_outputs.append(hidden)
    torch.testing.assert_close(hidden, backbone(input_values).last_hidden_state)
    return ffn_outputs, block_outputs


def vision_block_outputs(backbone, pixel_values):
    hidden_states = backbone(pixel_values, output_hidden_states=True).hidden_states
    return [h[:, 1:] for h in hidden_states[1:]]  # drop the embedding output, then the CLS token


def reference_targets(model, inputs):
    """The recipe of fairseq's data2vec, written out step by step for the config at hand."""
    config, teacher = model.config, model.teacher
    if config.modality == "text":
        ffn, block = manual_text_layers(teacher, inputs["input_ids"], inputs["attention_mask"])
        layers = ffn if config.target_feature == "ffn" else block
    elif config.modality == "audio":
        ffn, block = manual_audio_layers(teacher, inputs["input_values"])
        layers = ffn if config.target_feature == "ffn" else block
    else:
        assert config.target_feature == "block"
        layers = vision_block_outputs(teacher, inputs["pixel_values"])
    top = layers[len(layers) - config.average_top_k_layers :]
    normalised = []
    for y in top:
        y = y.float()
        if config.instance_norm_target_layer:  # over time, per channel and sequence: F.instance_norm on (B, C, T)
            y = F.instance_norm(y.transpose(1, 2)).transpose(1, 2)
        if config.layer_norm_target_layer:
            y = F.layer_norm(y, (y.shape[-1],))
        normalised.append(y)
    y = torch.stack(normalised).mean(0)
    if config.layer_norm_targets:
        y = F.layer_norm(y, (y.shape[-1],))
    if config.instance_norm_targets:
        y = F.instance_norm(y.transpose(1, 2)).transpose(1, 2)
    return y


def reference_loss(config, predictions, targets):
    diff = predictions - targets
    if config.modality == "text":  # smooth L1, beta 4, summed over channels, scale 1
        beta = 4.0
        elementwise = torch.where(diff.abs() < beta, 0.5 * diff**2 / beta, diff.abs() - 0.5 * beta)
        return elementwise.sum(-1).mean()
    if config.modality == "audio":  # L2 summed over channels, times 1/sqrt(D)
        return (diff**2).sum(-1).mean() / math.sqrt(diff.shape[-1])
    beta = 2.0  # vision: smooth L1, beta 2, mean over positions and channels
    return torch.where(diff.abs() < beta, 0.5 * diff**2 / beta, diff.abs() - 0.5 * beta).mean()


@pytest.mark.parametrize("modality", ["text", "audio", "vision"])
def test_preset_targets_and_loss_match_reference(modality):
    torch.manual_seed(0)
    # 12 layers, so that the preset's own K (10 / 8 / 6) applies unchanged
    model = Data2VecForPretraining(tiny_config(modality, num_layers=12)).eval()
    make_teacher_differ(model)
    inputs = tiny_inputs(model.config, pad=False)
    unmasked = {k: v for k, v in inputs.items() if k != "mask"}
    with torch.no_grad():
        expected = reference_targets(model, unmasked)
        torch.testing.assert_close(model.compute_targets(**unmasked), expected, atol=1e-5, rtol=1e-5)
        out = model(**inputs)
    mask = inputs["mask"]
    torch.testing.assert_close(out.targets, expected[mask], atol=1e-5, rtol=1e-5)
    assert out.num_masked == mask.sum() and out.predictions.shape == (mask.sum(), 32)
    torch.testing.assert_close(
        out.loss, reference_loss(model.config, out.predictions, expected[mask]), atol=1e-5, rtol=1e-5
    )


def test_text_padding_and_student_sees_mask_tokens():
    model = Data2VecForPretraining(tiny_config("text", num_layers=3, average_top_k_layers=2)).eval()
    make_teacher_differ(model)
    inputs = tiny_inputs(model.config, pad=True)
    with torch.no_grad():
        out = model(**inputs)
        expected = reference_targets(
            model, {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        )
        student_ids = inputs["input_ids"].masked_fill(inputs["mask"], MASK_TOKEN_ID)
        hidden = model.student(student_ids, attention_mask=inputs["attention_mask"]).last_hidden_state
    torch.testing.assert_close(out.targets, expected[inputs["mask"]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.predictions, model.head(hidden[inputs["mask"]]), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_is_the_last_k_layers(k):
    model = Data2VecForPretraining(tiny_config("text", num_layers=3, average_top_k_layers=k)).eval()
    inputs = tiny_inputs(model.config)
    ffn, _ = manual_text_layers(model.teacher, inputs["input_ids"], inputs["attention_mask"])
    expected = torch.stack([F.layer_norm(y, (32,)) for y in ffn[3 - k :]]).mean(0)
    got = model.compute_targets(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("modality", ["text", "audio"])
def test_block_feature_and_all_norms_in_order(modality):
    overrides = dict(
        target_feature="block",
        instance_norm_target_layer=True,
        layer_norm_target_layer=True,
        layer_norm_targets=True,
        instance_norm_targets=True,
    )
    model = Data2VecForPretraining(
        tiny_config(modality, num_layers=3, preset=False, average_top_k_layers=2, **overrides)
    )
    model.eval()
    inputs = tiny_inputs(model.config, pad=False)
    unmasked = {k: v for k, v in inputs.items() if k != "mask"}
    torch.testing.assert_close(
        model.compute_targets(**unmasked), reference_targets(model, unmasked), atol=1e-5, rtol=1e-5
    )


def test_targets_ignore_the_mask_and_the_student():
    """The teacher sees the unmasked input: targets do not depend on the mask or on the student's weights."""
    model = Data2VecForPretraining(tiny_config("text", num_layers=2)).eval()
    make_teacher_differ(model)
    inputs = tiny_inputs(model.config)
    with torch.no_grad():
        full = model.compute_targets(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        for p in model.student.parameters():
            p.add_(1.0)
        out = model(**inputs)
    torch.testing.assert_close(out.targets, full[inputs["mask"]])


def test_audio_instance_norm_uses_real_frames_only():
    model = Data2VecForPretraining(tiny_config("audio", num_layers=2)).eval()
    inputs = tiny_inputs(model.config, batch_size=2, pad=False)
    values = inputs["input_values"]
    attention_mask = torch.ones_like(values, dtype=torch.long)
    attention_mask[1, 2000:] = 0
    padded = model.compute_targets(input_values=values, attention_mask=attention_mask)
    # the padded row's real frames equal the targets of that row computed alone at its real length
    alone = model.compute_targets(input_values=values[1:, :2000])
    frames = alone.shape[1]
    assert padded.shape[1] > frames
    # attention differs with padding (HF zeroes padded frames and masks them as keys), so compare the unpadded row
    torch.testing.assert_close(padded[0], model.compute_targets(input_values=values[:1])[0], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(padded).all() and torch.isfinite(alone).all()


def test_bert_masking_scores_every_selected_position():
    from d2v_hf import compute_text_bert_mask

    model = Data2VecForPretraining(tiny_config("text", num_layers=2, text_mask_strategy="bert")).eval()
    inputs = tiny_inputs(model.config)
    generator = torch.Generator().manual_seed(3)
    mask, student_ids = compute_text_bert_mask(
        inputs["input_ids"], inputs["attention_mask"], MASK_TOKEN_ID, 99, mask_prob=0.5, generator=generator
    )
    out = model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        mask=mask,
        student_input_ids=student_ids,
    )
    # random and unchanged positions are scored too (the paper; fairseq#4229 scores only <mask> positions)
    assert out.num_masked == mask.sum() > (student_ids == MASK_TOKEN_ID).sum()
