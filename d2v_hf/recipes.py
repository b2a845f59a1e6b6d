"""
The released data2vec recipes, in one place: the model presets of data2vec 1.0 and 2.0 (what
`Data2VecPretrainingConfig.from_preset` applies), the base and tiny backbones, and the training recipes (optimizer,
schedule, batch, precision) that `run_pretraining.py --recipe NAME` applies. Every value cites the original config it
comes from; docs/recipes.md shows them side by side.
"""

from typing import Any

from transformers import Data2VecAudioConfig, Data2VecTextConfig, Data2VecVisionConfig, PreTrainedConfig


# data2vec 1.0 base recipes: the summary table (section 5) of the reference, released code unless noted.
_PRESETS: dict[str, dict[str, Any]] = {
    "text": {
        "average_top_k_layers": 10,
        "target_feature": "ffn",
        "layer_norm_target_layer": True,
        "head_layers": 2,
        "loss_beta": 4.0,
        "loss_scale": 1.0,
        "ema_decay": 0.999,
        "ema_end_decay": 0.9999,
        "ema_anneal_end_step": 300_000,
        "teacher_shared_params": ["embeddings."],
        "zero_token_type_embeddings": True,  # data2vec_text.py has no segment embeddings
        "text_mask_strategy": "span",
        "mask_prob": 0.35,
        "mask_length": 4,
        "min_target_var": 0.0,  # data2vec_text.py has no collapse guard
        "min_pred_var": 0.0,
    },
    "audio": {
        "average_top_k_layers": 8,
        "target_feature": "ffn",
        "instance_norm_target_layer": True,
        "head_layers": 1,
        "loss_beta": 0.0,
        "loss_scale": None,
        "ema_decay": 0.999,
        "ema_end_decay": 0.9999,
        "ema_anneal_end_step": 30_000,
        "teacher_shared_params": [
            "feature_extractor.",
            "feature_projection.",
            "encoder.pos_conv_embed.",
            "masked_spec_embed",
        ],
        "mask_prob": 0.65,
        "mask_length": 10,
        "min_target_var": 0.1,  # data2vec_audio.py: Data2VecAudioConfig.min_target_var / min_pred_var
        "min_pred_var": 0.01,
    },
    "vision": {
        "average_top_k_layers": 6,
        "target_feature": "block",
        "layer_norm_target_layer": True,
        "layer_norm_targets": True,
        "head_layers": 1,
        "loss_beta": 2.0,
        "loss_scale": 1.0,
        "loss_channel_reduction": "mean",
        "ema_decay": 0.9998,
        "ema_end_decay": 0.9998,
        "ema_anneal_end_step": 0,
        "teacher_shared_params": [],
        "num_mask_patches": 120,
        "min_mask_patches_per_block": 16,
        "min_target_var": 0.0,  # the BEiT repo's engine_for_cyclical.py has no collapse guard
        "min_pred_var": 0.0,
    },
}

# data2vec 2.0 base recipes (mode="data2vec2"): section 6.3 of the reference, released `D2V/config/v2/*.yaml`.
_PRESETS_V2: dict[str, dict[str, Any]] = {
    "text": {
        "mode": "data2vec2",
        "clone_batch": 8,
        "average_top_k_layers": 12,
        "target_feature": "ffn",
        "instance_norm_target_layer": True,
        "loss_beta": 0.0,
        "loss_scale": 1.0,
        "ema_decay": 0.9999,
        "ema_end_decay": 0.99999,
        "ema_anneal_end_step": 100_000,
        "teacher_shared_params": ["embeddings."],
        "zero_token_type_embeddings": True,  # modalities/text.py has no segment embeddings
        "mask_prob": 0.48,
        "mask_length": 1,
        "decoder_dim": None,
        "decoder_kernel": 9,
        "decoder_layers": 5,
        "decoder_groups": 1,
        "decoder_residual": False,
        "decoder_projection_layers": 2,
        "decoder_input_dropout": 0.1,
        "mask_noise_std": 0.01,
    },
    "audio": {
        "mode": "data2vec2",
        "clone_batch": 8,
        "average_top_k_layers": 8,
        "target_feature": "ffn",
        "instance_norm_target_layer": True,
        "loss_beta": 0.0,
        "loss_scale": None,
        "ema_decay": 0.999,
        "ema_end_decay": 0.99999,
        "ema_anneal_end_step": 75_000,
        "teacher_shared_params": ["feature_extractor.", "feature_projection."],
        "mask_prob": 0.5,
        "mask_length": 5,
        "mask_prob_adjust": 0.05,
        "decoder_kernel": 7,  # decoder_dim: hidden_size // 2 (384 for the base model), set in from_preset
        "decoder_layers": 4,
        "decoder_groups": 16,
        "decoder_residual": True,
        "decoder_projection_layers": 1,
        "decoder_input_dropout": 0.1,
        "mask_noise_std": 0.01,
    },
    "vision": {
        "mode": "data2vec2",
        "clone_batch": 16,
        "average_top_k_layers": 10,
        "target_feature": "ffn",
        "instance_norm_target_layer": True,
        "layer_norm_targets": True,
        "loss_beta": 0.0,
        "loss_scale": None,
        "ema_decay": 0.9998,
        "ema_end_decay": 0.99999,
        "ema_anneal_end_step": 100_000,
        "teacher_shared_params": [],
        "mask_prob": 0.8,
        "mask_length": 3,
        "mask_prob_adjust": 0.07,
        "cls_loss": 0.01,
        "min_target_var": 0.0,  # base_images_only_task.yaml sets both to 0
        "min_pred_var": 0.0,
        "decoder_dim": None,
        "decoder_kernel": 3,
        "decoder_layers": 6,
        "decoder_groups": 16,
        "decoder_residual": True,
        "decoder_projection_layers": 1,
        "decoder_input_dropout": 0.0,
        "mask_noise_std": 0.01,
    },
}
# the data2vec 2.0 image encoder has absolute positions, no relative position bias, no layer scale, no dropout
_VISION_V2_BACKBONE = {
    "use_absolute_position_embeddings": True,
    "use_relative_position_bias": False,
    "use_shared_relative_position_bias": False,
    "layer_scale_init_value": 0.0,
    "drop_path_rate": 0.0,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
}


def base_backbone_config(modality: str) -> PreTrainedConfig:
    """The base (12 x 768) architecture of each modality, as data2vec 1.0 pretrained it."""
    if modality == "text":
        # RoBERTa-base: GPT-2 BPE vocabulary + <mask>, 512 positions (+2 for fairseq's padding offset)
        return Data2VecTextConfig(
            vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1
        )
    if modality == "audio":
        # fairseq's data2vec audio: LayerDrop 0.05, no channel masking, no dropout inside the FFN (activation_dropout
        # 0.0: the wav2vec2 default that data2vec_audio.py and base_audio_only_task.yaml keep; HF's default is 0.1)
        return Data2VecAudioConfig(layerdrop=0.05, mask_feature_prob=0.0, activation_dropout=0.0)
    if modality == "vision":
        # BEiT ViT-B/16 as in the data2vec_vision repo: shared relative position bias, layer scale 1e-4,
        # drop-path 0.25, attention dropout 0.05, final LayerNorm (no mean pooling), a learned mask token
        return Data2VecVisionConfig(
            layer_norm_eps=1e-6,  # BEiT's LayerNorms (Hugging Face's default: 1e-12)
            use_mask_token=True,
            use_absolute_position_embeddings=False,
            use_shared_relative_position_bias=True,
            layer_scale_init_value=1e-4,
            drop_path_rate=0.25,
            attention_probs_dropout_prob=0.05,
            use_mean_pooling=False,
        )
    raise ValueError(f"Unknown modality {modality!r}; expected one of 'text', 'audio', 'vision'.")


def tiny_backbone_config(modality: str, **kwargs) -> PreTrainedConfig:
    """A 4-layer, 64-wide backbone of each modality, for laptops, CI and the embedded demo; `kwargs` override."""
    common = dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=256)
    if modality == "text":
        # 514 positions: the 512 tokens of the tokenizer's model_max_length after RoBERTa's padding offset (as base)
        text = dict(type_vocab_size=1, layer_norm_eps=1e-5, max_position_embeddings=514)
        return Data2VecTextConfig(**{**common, **text, **kwargs})
    if modality == "audio":
        # the base CNN strides (320 samples = 20 ms per frame at 16 kHz) with fewer channels
        audio = dict(conv_dim=(64,) * 7, num_conv_pos_embeddings=5, num_conv_pos_embedding_groups=4, layerdrop=0.05)
        return Data2VecAudioConfig(
            **{**common, **audio, "mask_feature_prob": 0.0, "activation_dropout": 0.0, **kwargs}
        )
    if modality == "vision":
        vision = dict(use_mask_token=True, use_shared_relative_position_bias=True, layer_scale_init_value=1e-4)
        vision.update(use_mean_pooling=False, drop_path_rate=0.1, image_size=28, patch_size=4, layer_norm_eps=1e-6)
        return Data2VecVisionConfig(**{**common, **vision, **kwargs})
    raise ValueError(f"Unknown modality {modality!r}; expected one of 'text', 'audio', 'vision'.")


# --------------------------------------------------------------------------------------------------------------------
# Training recipes: what `run_pretraining.py --recipe NAME` sets. Each value is the released one; the comment gives
# the file and line it comes from (fairseq: examples/data2vec/config/..., commit 3d262bb; BEiT: the data2vec_vision
# repo's beit/README.md pretraining command and beit/run_cyclical.py defaults).
# `batch` is the released batch of one optimizer update, split over `gpus` GPUs of `per_gpu` each; run_pretraining.py
# reaches the same update on any number of GPUs with gradient accumulation. fairseq trained in fp16 (`common.fp16`);
# on a GPU the script uses bf16 where the GPU has it (no loss scaling needed), else fp16.
# --------------------------------------------------------------------------------------------------------------------

TRAINING_RECIPES: dict[str, dict[str, Any]] = {
    "data2vec-text-base": {
        "modality": "text",
        "mode": "data2vec",
        "source": "fairseq examples/data2vec/config/text/pretraining/base.yaml",
        "optim": "adamw_torch",  # fairseq's adam and timm's AdamW: Adam with decoupled weight decay
        "adam_beta1": 0.9,  # base.yaml:38 adam_betas (0.9,0.98)
        "adam_beta2": 0.98,
        "adam_epsilon": 1e-6,  # base.yaml:39
        "weight_decay": 0.01,  # base.yaml:37
        "weight_decay_exempt": "none",  # fairseq's adam decays every parameter
        "learning_rate": 2e-4,  # base.yaml:47
        "lr_scheduler_type": "cosine",  # base.yaml:42
        "warmup_steps": 10_000,  # base.yaml:43
        "max_steps": 1_000_000,  # base.yaml:48
        "max_grad_norm": 5.0,  # base.yaml:46
        "max_seq_length": 512,  # base.yaml:21 tokens_per_sample
        "batch": 256,  # sequences of 512 tokens: base.yaml:31 max_tokens 8192 per GPU x base.yaml:14 16 GPUs
        "gpus": 16,
        "per_gpu": 16,
    },
    "data2vec-audio-base": {
        "modality": "audio",
        "mode": "data2vec",
        "source": "fairseq examples/data2vec/config/audio/pretraining/base_librispeech.yaml",
        "optim": "adamw_torch",  # fairseq's adam and timm's AdamW: Adam with decoupled weight decay
        "adam_beta1": 0.9,  # base_librispeech.yaml:47
        "adam_beta2": 0.98,
        "adam_epsilon": 1e-6,  # base_librispeech.yaml:48
        "weight_decay": 0.01,  # base_librispeech.yaml:49
        "weight_decay_exempt": "none",
        "learning_rate": 5e-4,  # base_librispeech.yaml:43
        # base_librispeech.yaml:52-53 tri_stage 3% / 90% / 7%: warmup, hold, then fairseq's exponential decay to 1%
        # of the peak; Transformers' warmup_stable_decay decays linearly (the one shape it lacks)
        "lr_scheduler_type": "warmup_stable_decay",
        "lr_scheduler_kwargs": {"num_stable_steps": 360_000, "num_decay_steps": 28_000, "min_lr_ratio": 0.01},
        "warmup_steps": 12_000,
        "max_steps": 400_000,  # base_librispeech.yaml:42
        "max_grad_norm": 0.0,  # no clip_norm in the file: fairseq's default 0 (no clipping)
        "max_audio_seconds": 20.0,  # base_librispeech.yaml:18 max_sample_size 320000 at 16 kHz
        # base_librispeech.yaml:24 max_tokens 3.8M samples per GPU x :31 16 GPUs = 60.8M samples per update, about
        # 190 clips of 20 s (fairseq packs clips of any length up to max_tokens)
        "batch": 192,
        "gpus": 16,
        "per_gpu": 12,
    },
    "data2vec-vision-base": {
        "modality": "vision",
        "mode": "data2vec",
        "source": "data2vec_vision beit/README.md (ViT-B pretraining command) and beit/run_cyclical.py",
        "optim": "adamw_torch",  # fairseq's adam and timm's AdamW: Adam with decoupled weight decay
        "adam_beta1": 0.9,  # run_cyclical.py --opt_betas None: timm's AdamW default (0.9, 0.999)
        "adam_beta2": 0.999,
        "adam_epsilon": 1e-8,  # run_cyclical.py --opt_eps default 1e-8
        "weight_decay": 0.05,  # README.md:35
        "weight_decay_exempt": "1d_and_bias",  # optim_factory.py:65 (and cls_token, modeling_cyclical.py:150)
        "learning_rate": 2e-3,  # README.md:29 (no batch scaling in run_cyclical.py)
        "lr_scheduler_type": "cosine",  # cosine to min_lr 1e-5 (run_cyclical.py); here to 0
        "warmup_steps": 10 / 800,  # README.md:29 --warmup_epochs 10 of --epochs 800 (a float < 1: a ratio)
        "num_train_epochs": 800,
        "max_grad_norm": 3.0,  # README.md:30
        "image_size": 224,
        "batch": 2048,  # README.md:23,29 16 GPUs x --batch_size 128
        "gpus": 16,
        "per_gpu": 128,
    },
    "data2vec2-text-base": {
        "modality": "text",
        "mode": "data2vec2",
        "source": "fairseq examples/data2vec/config/v2/base_text_only_task.yaml",
        "optim": "adamw_torch",  # fairseq's adam and timm's AdamW: Adam with decoupled weight decay
        "adam_beta1": 0.9,  # base_text_only_task.yaml:62
        "adam_beta2": 0.98,
        "adam_epsilon": 1e-6,  # :63
        "weight_decay": 0.01,  # :64
        "weight_decay_exempt": "1d_and_bias",  # models/data2vec2.py:265-266
        "learning_rate": 2e-4,  # :50, :59
        "lr_scheduler_type": "cosine",  # :66
        "warmup_steps": 4_000,  # :67
        "max_steps": 1_000_000,  # :51
        "max_grad_norm": 1.0,  # :49
        "max_seq_length": 512,  # :24
        "batch": 64,  # sequences (each seen as clone_batch 8 masked copies): :43 batch_size 4 x :17 16 GPUs
        "gpus": 16,
        "per_gpu": 4,
    },
    "data2vec2-audio-base": {
        "modality": "audio",
        "mode": "data2vec2",
        "source": "fairseq examples/data2vec/config/v2/base_audio_only_task.yaml",
        "optim": "adamw_torch",  # fairseq's adam and timm's AdamW: Adam with decoupled weight decay
        "adam_beta1": 0.9,  # base_audio_only_task.yaml:55
        "adam_beta2": 0.98,
        "adam_epsilon": 1e-6,  # :56
        "weight_decay": 0.01,  # :57
        "weight_decay_exempt": "1d_and_bias",  # models/data2vec2.py:265-266
        "learning_rate": 7.5e-4,  # :50
        "lr_scheduler_type": "cosine",  # :60
        "warmup_steps": 8_000,  # :61
        "max_steps": 400_000,  # :49
        "max_grad_norm": 0.0,  # no clip_norm in the file: fairseq's default 0 (no clipping)
        "max_audio_seconds": 20.0,  # :21 max_sample_size 320000
        # :28 max_tokens 1M samples per GPU x :35 8 GPUs = 8M samples per update, about 25 clips of 20 s
        "batch": 24,
        "gpus": 8,
        "per_gpu": 3,
    },
    "data2vec2-vision-base": {
        "modality": "vision",
        "mode": "data2vec2",
        "source": "fairseq examples/data2vec/config/v2/base_images_only_task.yaml",
        "optim": "adamw_torch",  # fairseq's adam and timm's AdamW: Adam with decoupled weight decay
        "adam_beta1": 0.9,  # base_images_only_task.yaml:61 adam_betas [0.9,0.95]
        "adam_beta2": 0.95,
        "adam_epsilon": 1e-8,  # not set: fairseq's adam default 1e-8
        "weight_decay": 0.05,  # :62
        "weight_decay_exempt": "1d_and_bias",  # models/data2vec2.py:265-266
        "learning_rate": 1e-3,  # :49, :58
        "lr_scheduler_type": "cosine",  # :64
        "warmup_steps": 50_040,  # :65
        "max_steps": 375_300,  # :48
        "max_grad_norm": 4.0,  # :51
        "image_size": 224,
        "batch": 256,  # images (each seen as clone_batch 16 masked copies): :28 batch_size 16 x :34 16 GPUs
        "gpus": 16,
        "per_gpu": 16,
    },
}
# Fields of a training recipe that are no TrainingArguments flags of run_pretraining.py
RECIPE_METADATA = ("modality", "mode", "source", "batch", "gpus", "per_gpu")
