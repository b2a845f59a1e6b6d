"""
The released recipes: every training value against a table transcribed here from the original configs, the model
presets' collapse guard and FFN dropout, the weight decay each recipe exempts, and `run_pretraining.py --recipe`.
"""

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import Data2VecVisionModel

from d2v_hf import (
    Data2VecForPretraining,
    Data2VecPretrainingArguments,
    Data2VecPretrainingConfig,
    Data2VecPretrainingTrainer,
)
from d2v_hf.recipes import TRAINING_RECIPES, base_backbone_config, tiny_backbone_config

from .fixtures import load_example, tiny_config


run_pretraining = load_example("run_pretraining")

# (adam betas, eps, weight decay, peak lr, schedule, warmup, updates or epochs, clip, released batch, GPUs)
RELEASED = {
    # fairseq examples/data2vec/config/text/pretraining/base.yaml (lines 14, 21, 31, 35-48)
    "data2vec-text-base": ((0.9, 0.98), 1e-6, 0.01, 2e-4, "cosine", 10_000, 1_000_000, 5.0, 256, 16),
    # fairseq examples/data2vec/config/audio/pretraining/base_librispeech.yaml (lines 18, 24, 31, 41-53)
    "data2vec-audio-base": ((0.9, 0.98), 1e-6, 0.01, 5e-4, "warmup_stable_decay", 12_000, 400_000, 0.0, 192, 16),
    # data2vec_vision beit/README.md ViT-B command (lines 23-35), beit/run_cyclical.py defaults (betas, eps)
    "data2vec-vision-base": ((0.9, 0.999), 1e-8, 0.05, 2e-3, "cosine", 10 / 800, 800, 3.0, 2048, 16),
    # fairseq examples/data2vec/config/v2/base_text_only_task.yaml (lines 17, 24, 43, 49-67)
    "data2vec2-text-base": ((0.9, 0.98), 1e-6, 0.01, 2e-4, "cosine", 4_000, 1_000_000, 1.0, 64, 16),
    # fairseq examples/data2vec/config/v2/base_audio_only_task.yaml (lines 21, 28, 35, 48-61)
    "data2vec2-audio-base": ((0.9, 0.98), 1e-6, 0.01, 7.5e-4, "cosine", 8_000, 400_000, 0.0, 24, 8),
    # fairseq examples/data2vec/config/v2/base_images_only_task.yaml (lines 28, 34, 47-65)
    "data2vec2-vision-base": ((0.9, 0.95), 1e-8, 0.05, 1e-3, "cosine", 50_040, 375_300, 4.0, 256, 16),
}


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_training_recipe_matches_the_released_config(name):
    betas, eps, decay, lr, schedule, warmup, length, clip, batch, gpus = RELEASED[name]
    recipe = TRAINING_RECIPES[name]
    assert recipe["optim"] == "adamw_torch"  # decoupled weight decay, as fairseq's adam and timm's AdamW
    assert (recipe["adam_beta1"], recipe["adam_beta2"]) == betas and recipe["adam_epsilon"] == eps
    assert recipe["weight_decay"] == decay and recipe["learning_rate"] == lr
    assert recipe["lr_scheduler_type"] == schedule and recipe["warmup_steps"] == warmup
    assert recipe.get("max_steps", recipe.get("num_train_epochs")) == length
    assert recipe["max_grad_norm"] == clip and recipe["batch"] == batch and recipe["gpus"] == gpus
    assert recipe["per_gpu"] * recipe["gpus"] == recipe["batch"]
    # fairseq 1.0 (text, audio) decays every parameter; 2.0 and the BEiT code exempt 1-D parameters and biases
    assert recipe["weight_decay_exempt"] == (
        "none" if name in ("data2vec-text-base", "data2vec-audio-base") else "1d_and_bias"
    )
    if name == "data2vec-audio-base":  # tri_stage phase_ratio [0.03, 0.9, 0.07] of 400k updates
        assert recipe["lr_scheduler_kwargs"]["num_stable_steps"] == 360_000
        assert recipe["lr_scheduler_kwargs"]["num_decay_steps"] == 28_000


def test_model_presets_collapse_guard_and_audio_ffn_dropout():
    # data2vec_audio.py and data2vec2.py: 0.1 / 0.01; data2vec_text.py and the BEiT code: no guard;
    # v2/base_images_only_task.yaml:86-87: 0 / 0
    expected = {("text", None): 0.0, ("audio", None): 0.1, ("vision", None): 0.0}
    expected.update({("text", "data2vec2"): 0.1, ("audio", "data2vec2"): 0.1, ("vision", "data2vec2"): 0.0})
    for (modality, mode), min_target_var in expected.items():
        kwargs = {"mode": mode} if mode else {}
        config = Data2VecPretrainingConfig.from_preset(modality, **kwargs)
        assert config.min_target_var == min_target_var, (modality, mode)
        assert config.min_pred_var == (0.01 if min_target_var else 0.0), (modality, mode)
    # wav2vec2's activation_dropout default 0.0 (HF's is 0.1), kept by fairseq's data2vec audio 1.0 and 2.0
    assert base_backbone_config("audio").activation_dropout == 0.0
    assert tiny_backbone_config("audio").activation_dropout == 0.0
    assert Data2VecPretrainingConfig.from_preset("audio", mode="data2vec2").backbone_config.activation_dropout == 0.0


def decayed(modality, mode, tmp_path, **arguments):
    config = tiny_config(modality, **({"mode": mode, "clone_batch": 2} if mode == "data2vec2" else {}))
    model = Data2VecForPretraining(config)
    args = Data2VecPretrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **arguments)
    trainer = Data2VecPretrainingTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"x": [1]}))
    names = set(trainer.get_decay_parameter_names(model))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    return names, trainable, dict(model.named_parameters())


def test_weight_decay_follows_the_recipe(tmp_path):
    names, trainable, _ = decayed("text", "data2vec", tmp_path)
    assert names == trainable  # data2vec 1.0 text: every parameter, LayerNorms and biases included
    names, trainable, parameters = decayed("text", "data2vec2", tmp_path)
    assert names == {n for n in trainable if parameters[n].ndim > 1 and not n.endswith(".bias")} and names
    names, trainable, _ = decayed("vision", "data2vec", tmp_path, weight_decay_exempt="transformers")
    assert not any("LayerNorm" in n or n.endswith(".bias") for n in names) and names
    with pytest.raises(ValueError, match="--weight_decay_exempt 'some'"):
        Data2VecPretrainingArguments(output_dir=str(tmp_path), weight_decay_exempt="some")


def test_collapse_thresholds_come_from_the_recipe_unless_given(tmp_path):
    def thresholds(modality, **arguments):
        model = Data2VecForPretraining(tiny_config(modality))
        args = Data2VecPretrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **arguments)
        return Data2VecPretrainingTrainer(model=model, args=args).collapse_thresholds()

    assert thresholds("audio") == (0.1, 0.01) and thresholds("text") == (0.0, 0.0)
    assert thresholds("text", min_target_var=0.5, min_pred_var=0.2) == (0.5, 0.2)


def test_recipe_fills_in_what_you_did_not_give(tmp_path):
    argv = ["--recipe=data2vec2-text-base", f"--output_dir={tmp_path}", "--use_cpu", "--learning_rate=1e-3"]
    model_args, data_args, args, demo, notes = run_pretraining.parse_args([*argv, "--per_device_train_batch_size=2"])
    assert (model_args.modality, model_args.model_size, model_args.config_overrides) == (
        "text",
        "base",
        "mode=data2vec2",
    )
    assert args.learning_rate == 1e-3 and "learning_rate: 0.0002 in the recipe, yours kept" in notes
    assert (args.adam_beta2, args.adam_epsilon, args.max_grad_norm, args.warmup_steps) == (0.98, 1e-6, 1.0, 4000)
    assert (
        args.weight_decay_exempt == "1d_and_bias" and args.max_steps == 1_000_000 and data_args.max_seq_length == 512
    )
    # the released 64 sequences of an update from 1 process x 2 sequences: 32 accumulation steps
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 32)
    assert "released batch 64 (16 GPUs x 4) per update; this run: 64 (1 processes x 2 x 32)" in notes[0]
    *_, notes = run_pretraining.parse_args([*argv, "--config_overrides=clone_batch=4"])
    assert any("config_overrides" in line and "yours kept" in line for line in notes)
    model_args, *_ = run_pretraining.parse_args([*argv, "--config_overrides=clone_batch=4"])
    assert model_args.config_overrides == "mode=data2vec2,clone_batch=4"
    model_args, *_ = run_pretraining.parse_args([*argv, "--config_overrides", "clone_batch=4"])  # space-separated
    assert model_args.config_overrides == "mode=data2vec2,clone_batch=4"
    with pytest.raises(ValueError, match="--recipe 'data2vec-text-large'"):
        run_pretraining.parse_args(["--recipe=data2vec-text-large", f"--output_dir={tmp_path}"])


def test_recipe_run_lists_its_values_in_the_card(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"line {i} of a small corpus about teachers and students" for i in range(200)))
    out = tmp_path / "out"
    run_pretraining.main([
        "--recipe=data2vec-text-base", "--model_size=tiny", f"--train_file={corpus}", "--train_tokenizer",
        "--tokenizer_vocab_size=300", "--max_seq_length=32", "--max_steps=2", "--per_device_train_batch_size=4",
        "--gradient_accumulation_steps=1", f"--output_dir={out}", "--use_cpu", "--report_to=none",
        "--eval_strategy=no", "--config_overrides=backbone.num_hidden_layers=2,average_top_k_layers=2",
    ])  # fmt: skip
    card = (out / "README.md").read_text()
    assert "recipe data2vec-text-base" in card and "this run: 4 (1 processes x 4 x 1)" in card
    assert (
        "max_steps: 1000000 in the recipe, yours kept" in card and "model_size: base in the recipe, yours kept" in card
    )
    assert "adam_beta2: 0.98" in card and "weight_decay_exempt: none" in card


def mae_sincos(grid: int, dim: int) -> np.ndarray:
    """MAE's get_2d_sincos_pos_embed (models_mae / util/pos_embed.py), which data2vec 2.0 uses, written out."""

    def one_d(positions, d):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", positions.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    w, h = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    return np.concatenate([one_d(w, dim // 2), one_d(h, dim // 2)], axis=1)


def test_data2vec2_image_positions_are_fixed_sincos(tmp_path):
    config = tiny_config("vision", mode="data2vec2", clone_batch=2)
    model = Data2VecForPretraining(config)
    positions = model.student.embeddings.position_embeddings
    grid = config.backbone_config.image_size // config.backbone_config.patch_size
    np.testing.assert_allclose(positions[0, 1:].numpy(), mae_sincos(grid, config.hidden_size), atol=1e-6)
    assert torch.equal(positions[0, 0], torch.zeros(config.hidden_size))  # the CLS slot: no position
    assert not positions.requires_grad and torch.equal(model.teacher.embeddings.position_embeddings, positions)
    assert "student.embeddings.position_embeddings" not in dict(model.named_parameters())
    assert model.student.embeddings.cls_token.std() > 0.5  # N(0, 1), not zeros
    # excluded from the optimizer, unchanged by training
    args = Data2VecPretrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = Data2VecPretrainingTrainer(model=model, args=args, train_dataset=Dataset.from_dict({"x": [1]}))
    optimized = {id(p) for group in trainer.create_optimizer().param_groups for p in group["params"]}
    assert id(positions) not in optimized and id(model.student.embeddings.cls_token) in optimized
    before = positions.clone()
    inputs = tiny_inputs_v2(config)
    model.train()
    model(**inputs).loss.backward()
    trainer.optimizer.step()
    assert torch.equal(positions, before)
    # save / load / export keep them, and keep them out of training
    model.save_pretrained(tmp_path / "ckpt")
    loaded = Data2VecForPretraining.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(loaded.student.embeddings.position_embeddings, before)
    assert not loaded.student.embeddings.position_embeddings.requires_grad
    model.export_student(tmp_path / "student")
    exported = Data2VecVisionModel.from_pretrained(tmp_path / "student")
    assert torch.equal(exported.embeddings.position_embeddings, before)


def tiny_inputs_v2(config):
    from d2v_hf import compute_inverse_block_mask

    pixel_values = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.cat([compute_inverse_block_mask(4, 0.5, 1, 0.0, config.clone_batch) for _ in range(2)])
    return {"pixel_values": pixel_values, "mask": mask}


def test_data2vec_image_initialisation_is_beits():
    backbone = base_backbone_config("vision")
    assert backbone.layer_norm_eps == 1e-6 and tiny_backbone_config("vision").layer_norm_eps == 1e-6
    config = tiny_config("vision", num_layers=4, backbone_kwargs={"hidden_size": 256, "intermediate_size": 512})
    torch.manual_seed(0)
    model = Data2VecForPretraining(config)
    embeddings = model.student.embeddings
    for token in (embeddings.cls_token, embeddings.mask_token):  # trunc-normal(0.02); Hugging Face: zeros
        assert 0.015 < float(token.detach().std()) < 0.025
    for number, layer in enumerate(model.student.encoder.layer, start=1):  # BEiT's fix_init_weight
        for linear in (layer.attention.output.dense, layer.output.dense):
            expected = 0.02 / math.sqrt(2 * number)
            assert abs(float(linear.weight.detach().std()) / expected - 1) < 0.1, (
                number,
                float(linear.weight.detach().std()),
            )
        assert abs(float(layer.attention.attention.query.weight.detach().std()) / 0.02 - 1) < 0.1  # others as before
    assert torch.equal(model.teacher.embeddings.cls_token, embeddings.cls_token)


@pytest.mark.real_data
def test_pretraining_augmentations_on_real_images(shared_data):
    from d2v_hf.data import IMAGENET_MEAN, IMAGENET_STD, load_fashion_mnist, pretraining_image_transform
    from d2v_hf.data.image import ImageTransform, read_idx

    folder = shared_data / "vision" / "fashion-mnist"
    images = load_fashion_mnist(folder, "test").select(range(500))
    # evaluation: resize + centre crop, ImageNet statistics: the channel means follow the raw pixels exactly
    raw = read_idx(next(folder.glob("t10k-images-idx3-ubyte*")))[:500].astype(np.float64) / 255.0
    evaluated = torch.stack([pretraining_image_transform("data2vec", 28, train=False)(row["image"]) for row in images])
    for channel in range(3):
        expected = (raw.mean() - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        assert abs(float(evaluated[:, channel].mean()) - expected) < 0.01, channel
    # training: the crop areas of each release (data2vec 1.0: 8-100% of the image, 2.0: 20-100%)
    for mode, smallest in (("data2vec", 0.08), ("data2vec2", 0.2)):
        transform = pretraining_image_transform(mode, 28, train=True, seed=0)
        areas = [
            (box[2] - box[0]) * (box[3] - box[1]) / 784 for box in (transform._crop_box(28, 28) for _ in range(3000))
        ]
        assert smallest - 0.02 <= min(areas) < smallest + 0.05 and max(areas) > 0.95, (mode, min(areas))
        assert abs(np.mean(areas) - (smallest + 1) / 2) < 0.05, (mode, np.mean(areas))
    # flips half of the time; colour jitter (1.0 only) changes brightness / contrast / saturation
    image = images[0]["image"]
    for mode, jitter in (("data2vec", True), ("data2vec2", False)):
        augmentation = {"crop_scale": (1.0, 1.0), "color_jitter": 0.4 if jitter else 0.0}
        transform = ImageTransform(28, IMAGENET_MEAN, IMAGENET_STD, train=True, seed=1, **augmentation)
        plain = pretraining_image_transform(mode, 28, train=False)(image)
        outputs = [transform(image) for _ in range(400)]
        flipped = [torch.allclose(o.flip(-1), plain, atol=1e-5) for o in outputs]
        same = [torch.allclose(o, plain, atol=1e-5) for o in outputs]
        if jitter:
            assert not any(flipped) and not any(same)  # every output re-coloured
            brightness = torch.stack([o.mean() for o in outputs])
            assert float(brightness.std()) > 0.05
        else:
            assert all(f or s for f, s in zip(flipped, same)) and 0.4 < np.mean(flipped) < 0.6


MODEL_RELEASED = {
    # fairseq examples/data2vec/config/text/pretraining/base.yaml:25-26 (task), 51-61 (model)
    ("text", "data2vec"): dict(
        head_layers=2, average_top_k_layers=10, layer_norm_target_layer=True, loss_scale=1.0, ema_decay=0.999,
        ema_end_decay=0.9999, ema_anneal_end_step=300_000, loss_beta=4.0, mask_prob=0.35, mask_length=4,
    ),
    # fairseq examples/data2vec/config/audio/pretraining/base_librispeech.yaml:64-78
    ("audio", "data2vec"): dict(
        mask_prob=0.65, mask_length=10, loss_beta=0.0, loss_scale=None, instance_norm_target_layer=True,
        average_top_k_layers=8, ema_decay=0.999, ema_end_decay=0.9999, ema_anneal_end_step=30_000,
    ),
    # data2vec_vision beit/README.md:24-34 (--target_layers [6..11] of 12, --ema_decay 0.9998 from step 0,
    # --l1_beta 2.0, --post_target_layer_norm, --num_mask_patches 120, --min_mask_patches_per_block 16)
    ("vision", "data2vec"): dict(
        average_top_k_layers=6, ema_decay=0.9998, ema_end_decay=0.9998, loss_beta=2.0, layer_norm_targets=True,
        num_mask_patches=120, min_mask_patches_per_block=16,
    ),
    # fairseq examples/data2vec/config/v2/base_text_only_task.yaml:74-111
    ("text", "data2vec2"): dict(
        loss_beta=0.0, loss_scale=1.0, clone_batch=8, ema_decay=0.9999, ema_end_decay=0.99999,
        ema_anneal_end_step=100_000, average_top_k_layers=12, instance_norm_target_layer=True, mask_prob=0.48,
        mask_length=1, mask_noise_std=0.01, decoder_input_dropout=0.1, decoder_kernel=9, decoder_layers=5,
        decoder_groups=1, decoder_residual=False, decoder_projection_layers=2,
    ),
    # fairseq examples/data2vec/config/v2/base_audio_only_task.yaml:66-113
    ("audio", "data2vec2"): dict(
        loss_beta=0.0, loss_scale=None, clone_batch=8, ema_decay=0.999, ema_end_decay=0.99999,
        ema_anneal_end_step=75_000, average_top_k_layers=8, instance_norm_target_layer=True, mask_prob=0.5,
        mask_prob_adjust=0.05, mask_length=5, mask_noise_std=0.01, decoder_input_dropout=0.1, decoder_dim=384,
        decoder_groups=16, decoder_kernel=7, decoder_layers=4,
    ),
    # fairseq examples/data2vec/config/v2/base_images_only_task.yaml:72-116 (depth 10 + prenet_depth 2 = 12 blocks)
    ("vision", "data2vec2"): dict(
        ema_decay=0.9998, ema_end_decay=0.99999, ema_anneal_end_step=100_000, instance_norm_target_layer=True,
        layer_norm_targets=True, average_top_k_layers=10, clone_batch=16, min_target_var=0.0, min_pred_var=0.0,
        cls_loss=0.01, mask_prob=0.8, mask_prob_adjust=0.07, mask_length=3, mask_noise_std=0.01,
        decoder_input_dropout=0.0, decoder_groups=16, decoder_kernel=3, decoder_layers=6,
    ),
}  # fmt: skip


@pytest.mark.parametrize("modality, mode", sorted(MODEL_RELEASED))
def test_model_preset_matches_the_released_config(modality, mode):
    config = Data2VecPretrainingConfig.from_preset(modality, **({"mode": mode} if mode == "data2vec2" else {}))
    for key, value in MODEL_RELEASED[(modality, mode)].items():
        assert getattr(config, key) == value, key
    if (modality, mode) == ("vision", "data2vec2"):
        assert config.decoder_dim in (None, 768)  # None: the hidden size, 768 for the base model (yaml:112)
