"""
The released recipes: every training value against a table transcribed here from the original configs, the model
presets' collapse guard and FFN dropout, the weight decay each recipe exempts, and `run_pretraining.py --recipe`.
"""

import pytest
from datasets import Dataset

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
