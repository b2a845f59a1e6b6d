"""data2vec 2.0 mode (config.mode="data2vec2"): shared teacher pass, sparse student, decoder, loss, masks, errors."""

import json

import pytest
import torch
import torch.nn.functional as F

from d2v_hf import Data2VecForPretraining, Data2VecPretrainingConfig
from d2v_hf.data_collator import DataCollatorForData2Vec2Text, data_collator_for
from d2v_hf.masking_data2vec2 import (
    compute_block_mask_1d,
    compute_inverse_block_mask,
    compute_random_mask,
)
from d2v_hf.modeling_data2vec2 import encode_visible_frames, encode_visible_patches, encode_visible_text

from .fixtures import NO_DROPOUT, build_tokenizer, load_example, make_teacher_differ, tiny_backbone_config, tiny_config


def v2_config(clone_batch=3, num_layers=2, backbone_kwargs=None, **overrides):
    backbone = tiny_backbone_config("text", num_layers, **(backbone_kwargs or {}))
    overrides.setdefault("average_top_k_layers", num_layers)
    overrides.setdefault("mode", "data2vec2")
    return Data2VecPretrainingConfig.from_preset("text", backbone, clone_batch=clone_batch, **overrides)


def v2_inputs(clone_batch, batch_size=3, seq_len=16, pad=True, seed=0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 98, (batch_size, seq_len), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    if pad:
        attention_mask[0, 11:] = 0
        input_ids[0, 11:] = 1
    mask = compute_random_mask(attention_mask, 0.48, clone_batch, generator)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "mask": mask}


def test_preset_is_the_data2vec2_text_recipe():
    config = Data2VecPretrainingConfig.from_preset("text", mode="data2vec2")
    assert (config.clone_batch, config.average_top_k_layers, config.mask_prob) == (8, 12, 0.48)
    assert config.instance_norm_target_layer and not config.layer_norm_target_layer
    assert (config.loss_beta, config.effective_loss_scale, config.decoder_kernel, config.decoder_layers) == (
        0,
        1,
        9,
        5,
    )
    assert (config.ema_decay, config.ema_end_decay, config.ema_anneal_end_step) == (0.9999, 0.99999, 100_000)
    model_config = Data2VecPretrainingConfig.from_dict(config.to_dict())
    assert model_config.mode == "data2vec2" and model_config.clone_batch == 8


def test_one_teacher_pass_gives_the_targets_of_m_teacher_runs():
    clone_batch = 4
    model = Data2VecForPretraining(v2_config(clone_batch)).eval()
    make_teacher_differ(model)
    inputs = v2_inputs(clone_batch)
    calls = []
    handle = model.teacher.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    with torch.no_grad():
        out = model(**inputs)
    handle.remove()
    assert calls == [3]  # one teacher pass over the 3 original samples, not over the 12 copies
    with torch.no_grad():
        repeated = model.compute_targets(
            input_ids=inputs["input_ids"].repeat_interleave(clone_batch, 0),
            attention_mask=inputs["attention_mask"].repeat_interleave(clone_batch, 0),
        )
    torch.testing.assert_close(out.targets, repeated[inputs["mask"]], atol=1e-5, rtol=1e-5)


def test_student_encodes_only_the_unmasked_tokens():
    clone_batch = 2
    model = Data2VecForPretraining(v2_config(clone_batch, backbone_kwargs=NO_DROPOUT)).eval()
    inputs = v2_inputs(clone_batch, pad=False)
    ids, mask = inputs["input_ids"], inputs["mask"]
    keep = ~mask
    with torch.no_grad():
        states, visible, _ = encode_visible_text(model.student, ids, keep, clone_batch)
        # the same as the full backbone with the masked tokens removed from attention (positions unchanged)
        full = model.student(ids.repeat_interleave(clone_batch, 0), attention_mask=keep.long()).last_hidden_state
        torch.testing.assert_close(states[visible], full[keep], atol=1e-5, rtol=1e-5)
        # change a token that copy 0 of sample 0 masks and copy 1 sees
        position = int((mask[0] & ~mask[1]).nonzero()[0])
        changed = ids.clone()
        changed[0, position] = 3 if ids[0, position] != 3 else 4
        new_states, _, _ = encode_visible_text(model.student, changed, keep, clone_batch)
    torch.testing.assert_close(new_states[0], states[0], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(new_states[1], states[1])
    assert visible.sum() == keep.sum() and states.shape[1] == int(keep.sum(1).max())


def test_output_and_loss_shapes_and_l2_loss():
    clone_batch = 3
    model = Data2VecForPretraining(v2_config(clone_batch)).eval()
    inputs = v2_inputs(clone_batch, pad=True)
    mask = inputs["mask"]
    assert mask.shape == (9, 16)
    # exactly n - int(0.52 n) masked tokens per copy: 11 real tokens -> 6, 16 -> 8; padding never masked
    assert mask.sum(1).tolist() == [6, 6, 6, 8, 8, 8, 8, 8, 8] and not mask[:3, 11:].any()
    out = model(**inputs)
    assert out.predictions.shape == out.targets.shape == (int(mask.sum()), 32)
    assert out.num_masked == mask.sum() and out.loss.shape == ()
    expected = (out.predictions - out.targets).pow(2).sum(-1).mean()  # L2 summed over channels, loss_scale 1
    torch.testing.assert_close(out.loss, expected)
    out.loss.backward()
    assert model.student.embeddings.word_embeddings.weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())


def test_mask_drawn_when_omitted_and_padding_does_not_leak():
    clone_batch = 2
    model = Data2VecForPretraining(v2_config(clone_batch, backbone_kwargs=NO_DROPOUT, mask_noise_std=0.0)).eval()
    inputs = v2_inputs(clone_batch, pad=True)
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    assert out.num_masked == 2 * 6 + 4 * 8
    # the decoder's predictions at real positions do not depend on what sits in the padding
    with torch.no_grad():
        reference = model(**inputs).predictions
        inputs["input_ids"][0, 11:] = 50
        torch.testing.assert_close(model(**inputs).predictions, reference, atol=1e-6, rtol=1e-6)


def test_short_training_run_decreases_the_loss():
    torch.manual_seed(0)
    clone_batch = 2
    model = Data2VecForPretraining(v2_config(clone_batch))
    inputs = v2_inputs(clone_batch, batch_size=4, pad=False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    model.train()
    for _ in range(25):
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.ema_step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses
    assert int(model.ema_num_updates) == 25


def test_save_and_load_round_trip(tmp_path):
    model = Data2VecForPretraining(v2_config(2, mask_noise_std=0.0)).eval()
    model.save_pretrained(tmp_path)
    loaded = Data2VecForPretraining.from_pretrained(tmp_path).eval()
    assert loaded.config.mode == "data2vec2" and type(loaded.head) is type(model.head)
    inputs = v2_inputs(2)
    torch.testing.assert_close(loaded(**inputs).loss, model(**inputs).loss)


def test_collator_draws_m_exact_masks_per_example():
    tokenizer = build_tokenizer(["w1 w2 w3 w4"], vocab_size=300)  # pad id 1, as the tiny backbone
    config = v2_config(clone_batch=4)
    collator = data_collator_for(config, tokenizer)
    assert isinstance(collator, DataCollatorForData2Vec2Text)
    examples = [{"input_ids": list(range(5, 25))}, {"input_ids": list(range(5, 15))}]
    batch = collator(examples)
    assert batch["input_ids"].shape == (2, 20) and batch["mask"].shape == (8, 20)
    assert batch["mask"].sum(1).tolist() == [10] * 4 + [5] * 4 and not batch["mask"][4:, 10:].any()
    assert len({tuple(row.tolist()) for row in batch["mask"][:4]}) > 1  # the copies differ
    # the same example gets the same masks in another batch
    alone = collator(examples[1:])
    torch.testing.assert_close(alone["mask"], batch["mask"][4:, :10])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(clone_batch=0), "clone_batch=0"),
        (dict(clone_batch=2.5), "clone_batch=2.5"),
        (dict(decoder_kernel=4), "decoder_kernel=4"),
        (dict(decoder_layers=0), "decoder_layers=0"),
        (dict(decoder_groups=3), "decoder_groups=3"),
        (dict(mask_noise_std=-1.0), "mask_noise_std=-1.0"),
        (dict(mask_prob=1.0), "mask_prob=1.0"),
        (dict(mode="data2vec3"), "mode='data2vec3'"),
        (dict(cls_loss=-1.0), "cls_loss=-1.0"),
        (dict(cls_loss=0.01), "cls_loss=0.01 is for images"),
    ],
)
def test_bad_config_raises_value_error_naming_the_value(overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        v2_config(**overrides)


def test_bad_inputs_raise_value_errors():
    model = Data2VecForPretraining(v2_config(clone_batch=2))
    inputs = v2_inputs(2, pad=True)
    with pytest.raises(ValueError, match=r"clone_batch=2.*\(6, 16\)"):
        model(**{**inputs, "mask": inputs["mask"][:3]})
    everything = inputs["mask"].clone()
    everything[5] = True
    with pytest.raises(ValueError, match="mask row 5 masks every token"):
        model(**{**inputs, "mask": everything & inputs["attention_mask"].repeat_interleave(2, 0).bool()})
    padded = inputs["mask"].clone()
    padded[0, 15] = True
    with pytest.raises(ValueError, match="padded"):
        model(**{**inputs, "mask": padded})
    with pytest.raises(ValueError, match="num_copies=0"):
        compute_random_mask(inputs["attention_mask"], 0.5, 0)
    with pytest.raises(ValueError, match="use_shared_relative_position_bias=True"):
        backbone = tiny_backbone_config("vision", use_absolute_position_embeddings=True)
        backbone.use_shared_relative_position_bias = True
        Data2VecPretrainingConfig(
            backbone_config=backbone,
            average_top_k_layers=2,
            mode="data2vec2",
            num_mask_patches=8,
            min_mask_patches_per_block=2,
        )


def test_run_pretraining_script_trains_data2vec2_end_to_end(tmp_path):
    script = load_example("run_pretraining")
    words = "the teacher sees the whole sentence while the student sees masked copies of it".split()
    generator = torch.Generator().manual_seed(0)
    lines = [" ".join(words[i] for i in torch.randint(0, len(words), (20,), generator=generator)) for _ in range(60)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    overrides = "mode=data2vec2,clone_batch=2,backbone.num_hidden_layers=2,average_top_k_layers=2"
    args = [
        "--modality=text",
        "--model_size=tiny",
        f"--config_overrides={overrides}",
        f"--train_file={tmp_path / 'corpus.txt'}",
        "--train_tokenizer",
        "--tokenizer_vocab_size=300",
        "--max_seq_length=32",
        f"--output_dir={tmp_path / 'out'}",
        "--per_device_train_batch_size=4",
        "--max_steps=2",
        "--logging_steps=1",
        "--eval_strategy=no",
        "--use_cpu",
        "--report_to=none",
    ]
    metrics = script.main(args)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["mode"] == "data2vec2" and config["clone_batch"] == 2
    assert metrics["loss"] > 0 and (tmp_path / "out" / "student" / "model.safetensors").exists()
    assert "data2vec 2.0 pretraining" in (tmp_path / "out" / "README.md").read_text()


# --- images ------------------------------------------------------------------------------------------------------


def vision_v2(clone_batch=3):
    return Data2VecForPretraining(tiny_config("vision", num_layers=2, mode="data2vec2", clone_batch=clone_batch))


def test_vision_preset_and_inverse_block_mask():
    config = Data2VecPretrainingConfig.from_preset("vision", mode="data2vec2")
    backbone = config.backbone_config
    assert (config.clone_batch, config.mask_prob, config.mask_length, config.decoder_layers) == (16, 0.8, 3, 6)
    assert backbone.use_absolute_position_embeddings and not backbone.use_shared_relative_position_bias
    mask = compute_inverse_block_mask(14, 0.8, 3, 0.07, 4, torch.Generator().manual_seed(0))
    assert mask.shape == (4, 196) and (~mask).sum(1).tolist() == [39] * 4  # exactly int(196 * 0.2) visible
    visible = (~mask[0]).reshape(14, 14).float()
    # visible patches come in blocks: most have a visible neighbour
    neighbours = F.conv2d(visible[None, None], torch.ones(1, 1, 3, 3), padding=1)[0, 0] - visible
    assert (neighbours[visible.bool()] > 0).float().mean() > 0.8


def test_vision_one_teacher_pass_and_sparse_student():
    clone_batch = 2
    model = vision_v2(clone_batch).eval()
    make_teacher_differ(model)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.cat(
        [compute_inverse_block_mask(4, 0.5, 2, 0.0, clone_batch, torch.Generator().manual_seed(i)) for i in (1, 2)]
    )
    with torch.no_grad():
        out = model(pixel_values=pixels, mask=mask)
        repeated = model.compute_targets(pixel_values=pixels.repeat_interleave(clone_batch, 0))
        torch.testing.assert_close(out.targets, repeated[mask], atol=1e-5, rtol=1e-5)
        assert out.predictions.shape == (int(mask.sum()), 32)
        states, _, _ = encode_visible_patches(model.student, pixels, ~mask, clone_batch)
        # change the pixels of a patch that copy 0 masks and copy 1 sees: only copy 1's encoder output changes
        patch = int((mask[0] & ~mask[1]).nonzero()[0])
        row, column = divmod(patch, 4)
        changed = pixels.clone()
        changed[0, :, row * 8 : row * 8 + 8, column * 8 : column * 8 + 8] += 1.0
        new_states, _, _ = encode_visible_patches(model.student, changed, ~mask, clone_batch)
    torch.testing.assert_close(new_states[0], states[0], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(new_states[1], states[1])


def test_vision_cls_loss():
    """fairseq's image `cls_loss`: each copy's CLS output regresses the mean teacher target over the patches."""
    assert Data2VecPretrainingConfig.from_preset("vision", mode="data2vec2").cls_loss == 0.01
    clone_batch = 2
    model = vision_v2(clone_batch).eval()
    make_teacher_differ(model)
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.cat(
        [compute_inverse_block_mask(4, 0.5, 2, 0.0, clone_batch, torch.Generator().manual_seed(i)) for i in (1, 2)]
    )
    with torch.no_grad():
        torch.manual_seed(0)  # the decoder's input noise
        with_cls = model(pixel_values=pixels, mask=mask).loss
        model.config.cls_loss = 0.0
        torch.manual_seed(0)
        without = model(pixel_values=pixels, mask=mask).loss
        *_, cls_states = encode_visible_patches(model.student, pixels, ~mask, clone_batch, return_cls=True)
        cls_targets = model.compute_targets(pixel_values=pixels).mean(1).repeat_interleave(clone_batch, 0)
    assert model.config.loss_channel_reduction == "sum"
    expected = without + 0.01 * ((cls_states - cls_targets) ** 2).sum() * model.config.effective_loss_scale
    torch.testing.assert_close(with_cls, expected)
    assert with_cls > without
    # the CLS term trains the CLS token
    model.config.cls_loss = 0.01
    model.train()
    model(pixel_values=pixels, mask=mask).loss.backward()
    assert model.student.embeddings.cls_token.grad.abs().sum() > 0


def test_vision_collator_and_unequal_masks_error():
    model = vision_v2(clone_batch=2)
    collator = data_collator_for(model.config)
    batch = collator([{"pixel_values": torch.randn(3, 32, 32)} for _ in range(2)])
    assert batch["mask"].shape == (4, 16) and (~batch["mask"]).sum(1).tolist() == [3] * 4
    model(**batch).loss.backward()
    mask = batch["mask"].clone()
    mask[0, (~mask[0]).nonzero()[0]] = True
    with pytest.raises(ValueError, match="between 2 and 3 positions"):
        model(pixel_values=batch["pixel_values"], mask=mask)


# --- audio -------------------------------------------------------------------------------------------------------


def test_audio_preset_masks_teacher_pass_and_sparse_student():
    config = Data2VecPretrainingConfig.from_preset("audio", mode="data2vec2")
    assert (config.clone_batch, config.decoder_dim, config.decoder_kernel, config.mask_prob) == (8, 384, 7, 0.5)
    clone_batch = 2
    model = Data2VecForPretraining(tiny_config("audio", num_layers=2, mode="data2vec2", clone_batch=2)).eval()
    make_teacher_differ(model)
    values = torch.randn(2, 3000, generator=torch.Generator().manual_seed(0))
    mask = torch.cat([compute_block_mask_1d(45, 0.5, 5, 0.05, 2, torch.Generator().manual_seed(i)) for i in (1, 2)])
    assert mask.sum(1).tolist() == [22] * 4  # exactly int(45 * 0.5)
    with torch.no_grad():
        out = model(input_values=values, mask=mask)
        repeated = model.compute_targets(input_values=values.repeat_interleave(clone_batch, 0))
        torch.testing.assert_close(out.targets, repeated[mask], atol=1e-5, rtol=1e-5)
        states, _, _ = encode_visible_frames(model.student, values, ~mask, clone_batch)
        # perturb the projected features of a frame that copy 0 masks and copy 1 sees
        frame = int((mask[0] & ~mask[1]).nonzero()[0])

        def perturb(module, args, output):
            hidden = output[0].clone()
            hidden[0, frame] += 1.0
            return (hidden, output[1])

        handle = model.student.feature_projection.register_forward_hook(perturb)
        new_states, _, _ = encode_visible_frames(model.student, values, ~mask, clone_batch)
        handle.remove()
    torch.testing.assert_close(new_states[0], states[0], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(new_states[1], states[1])


def test_audio_collator_and_padding_error():
    model = Data2VecForPretraining(tiny_config("audio", num_layers=2, mode="data2vec2", clone_batch=3))
    collator = data_collator_for(model.config)
    batch = collator([{"input_values": torch.randn(n).numpy()} for n in (3000, 3400)])
    assert batch["input_values"].shape == (2, 3000) and batch["mask"].shape == (6, 45)
    assert batch["mask"].sum(1).tolist() == [22] * 6
    model(**batch).loss.backward()
    attention_mask = torch.ones(2, 3000, dtype=torch.long)
    attention_mask[1, 2500:] = 0
    with pytest.raises(ValueError, match="unpadded"):
        model(input_values=batch["input_values"], attention_mask=attention_mask, mask=batch["mask"])
