"""Teacher, EMA, save/load, export and input validation of Data2VecForPretraining."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModel,
    Data2VecAudioForCTC,
    Data2VecAudioModel,
    Data2VecTextForQuestionAnswering,
    Data2VecTextForSequenceClassification,
    Data2VecTextModel,
    Data2VecVisionForImageClassification,
    Data2VecVisionModel,
)

from d2v_hf import Data2VecForPretraining, Data2VecPretrainingConfig, get_annealed_rate

from .fixtures import tiny_backbone_config, tiny_config, tiny_inputs


MODALITIES = ["text", "audio", "vision"]


def train_steps(model, inputs, steps=2, lr=1e-2):
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.ema_step()
    return optimizer


@pytest.mark.parametrize("modality", MODALITIES)
def test_teacher_is_a_frozen_separate_copy(modality):
    model = Data2VecForPretraining(tiny_config(modality))
    assert model.teacher is not model.student and type(model.teacher) is type(model.student)
    for (name, t), (_, s) in zip(model.teacher.named_parameters(), model.student.named_parameters()):
        assert t.data_ptr() != s.data_ptr(), name
        torch.testing.assert_close(t, s, rtol=0, atol=0)  # starts as an exact copy
        assert not t.requires_grad
    model.train()
    assert model.student.training and not model.teacher.training
    assert not any(m.training for m in model.teacher.modules())
    inputs = tiny_inputs(model.config)
    optimizer = train_steps(model, inputs, steps=1)
    assert all(p.grad is None for p in model.teacher.parameters())
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in model.teacher.parameters()}
    # after training, student and teacher have moved apart
    assert any(not torch.equal(t, s) for t, s in zip(model.teacher.parameters(), model.student.parameters()))


def test_ema_step_arithmetic_and_sharing():
    model = Data2VecForPretraining(tiny_config("text"))  # preset shares "embeddings."
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.student.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    before = {n: p.clone() for n, p in model.teacher.named_parameters()}
    student = dict(model.student.named_parameters())
    assert model.ema_step(0.75) == 0.75
    for name, p in model.teacher.named_parameters():
        if name.startswith("embeddings."):
            assert torch.equal(p, student[name]), name
        else:
            assert torch.equal(p, before[name] * 0.75 + student[name] * 0.25), name
    assert int(model.ema_num_updates) == 1


def test_ema_decay_one_freezes_averaged_params_and_zero_copies():
    model = Data2VecForPretraining(tiny_config("vision"))  # no sharing
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(1.0)
    before = [p.clone() for p in model.teacher.parameters()]
    model.ema_step(1.0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.teacher.parameters()))
    model.ema_step(0.0)
    assert all(torch.equal(t, s) for t, s in zip(model.teacher.parameters(), model.student.parameters()))


def test_ema_fp32_master_for_low_precision_teacher():
    model = Data2VecForPretraining(tiny_config("vision"))
    model.teacher.to(torch.bfloat16)
    ref = [p.detach().float().clone() for p in model.teacher.parameters()]
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(1e-3)  # an update far below bf16 resolution around 1.0 still accumulates in fp32
    for _ in range(3):
        model.ema_step(0.9)
        ref = [r * 0.9 + s.float() * (1 - 0.9) for r, s in zip(ref, model.student.parameters())]
    torch.testing.assert_close(model._ema_fp32_master, ref, atol=1e-6, rtol=1e-6)
    assert all(p.dtype == torch.bfloat16 for p in model.teacher.parameters())


def test_schedule():
    config = tiny_config("audio", ema_decay=0.9, ema_end_decay=0.99, ema_anneal_end_step=10)
    model = Data2VecForPretraining(config)
    assert model.ema_decay_at(0) == 0.9
    assert model.ema_decay_at(5) == pytest.approx(0.945)
    assert model.ema_decay_at(10) == model.ema_decay_at(1000) == 0.99
    # update k uses the decay of step k, as fairseq's set_num_updates(k): 0.909, not 0.9, for the first
    assert model.ema_decay_at() == model.ema_step() == pytest.approx(0.909)
    assert model.ema_step() == pytest.approx(0.918)
    assert get_annealed_rate(0.9998, 0.9998, 5, 0) == 0.9998


@pytest.mark.parametrize("modality", MODALITIES)
def test_save_load_roundtrip(modality, tmp_path):
    torch.manual_seed(0)
    model = Data2VecForPretraining(tiny_config(modality))
    inputs = tiny_inputs(model.config)
    train_steps(model, inputs)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    keys = load_file(tmp_path / "model.safetensors").keys()
    assert any(k.startswith("teacher.") for k in keys) and any(k.startswith("head.") for k in keys)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, Data2VecForPretraining) and loaded.config.modality == modality
    assert int(loaded.ema_num_updates) == 2 and not loaded.teacher.training
    for (n, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), n
    model.eval()
    loaded.eval()
    with torch.no_grad():
        a, b = model(**inputs), loaded(**inputs)
    assert torch.equal(a.loss, b.loss) and torch.equal(a.targets, b.targets)


@pytest.mark.parametrize(
    "modality,classes",
    [
        ("text", (Data2VecTextModel, Data2VecTextForSequenceClassification, Data2VecTextForQuestionAnswering)),
        ("audio", (Data2VecAudioModel, Data2VecAudioForCTC)),
        ("vision", (Data2VecVisionModel, Data2VecVisionForImageClassification)),
    ],
)
def test_export_student_loads_in_hf_classes(modality, classes, tmp_path):
    model = Data2VecForPretraining(tiny_config(modality))
    train_steps(model, tiny_inputs(model.config), steps=1)
    model.export_student(tmp_path)
    inputs = {k: v for k, v in tiny_inputs(model.config, pad=False).items() if k != "mask"}
    model.eval()
    for cls in classes:
        kwargs = {"vocab_size": 10} if cls is Data2VecAudioForCTC else {}
        loaded, info = cls.from_pretrained(tmp_path, output_loading_info=True, **kwargs)
        # the export carries the backbone's pooler (so AutoModel loads it with no missing key); heads built
        # without a pooler leave it out, as they do with roberta-base
        unexpected = [k for k in info["unexpected_keys"] if not k.startswith("pooler.")]
        assert not unexpected, (cls.__name__, unexpected)
        backbone = loaded if cls in (Data2VecTextModel, Data2VecAudioModel, Data2VecVisionModel) else loaded.base_model
        if backbone is loaded:
            assert not info["missing_keys"] and not info["unexpected_keys"], (cls.__name__, info)
        missing_backbone = [
            k for k in info["missing_keys"] if "pooler" not in k and k.startswith(cls.base_model_prefix)
        ]
        assert not missing_backbone, (cls.__name__, missing_backbone)
        backbone.eval()
        with torch.no_grad():
            torch.testing.assert_close(backbone(**inputs).last_hidden_state, model.student(**inputs).last_hidden_state)


def test_config_roundtrip_and_registration(tmp_path):
    config = tiny_config("audio", loss_scale=0.5, teacher_shared_params=["feature_extractor."])
    config.save_pretrained(tmp_path)
    loaded = Data2VecPretrainingConfig.from_pretrained(tmp_path)
    assert loaded.modality == "audio" and loaded.loss_scale == 0.5
    assert loaded.teacher_shared_params == ["feature_extractor."]
    assert loaded.backbone_config.to_dict() == config.backbone_config.to_dict()


@pytest.mark.parametrize("modality", MODALITIES)
def test_presets_document_base_recipe(modality):
    config = Data2VecPretrainingConfig.from_preset(modality)
    assert config.modality == modality and config.backbone_config.num_hidden_layers == 12
    assert config.backbone_config.hidden_size == 768
    expected_k = {"text": 10, "audio": 8, "vision": 6}[modality]
    assert config.average_top_k_layers == expected_k
    assert str(expected_k) in Data2VecPretrainingConfig.from_preset.__doc__


# --- bad input -------------------------------------------------------------------------------------------------


def test_bad_config_values():
    with pytest.raises(ValueError, match="average_top_k_layers=3"):
        tiny_config("text", average_top_k_layers=3)
    with pytest.raises(ValueError, match="average_top_k_layers=0"):
        tiny_config("text", average_top_k_layers=0)
    with pytest.raises(ValueError, match="ema_decay=1.5"):
        tiny_config("text", ema_decay=1.5)
    with pytest.raises(ValueError, match="ema_end_decay=-0.1"):
        tiny_config("text", ema_end_decay=-0.1)
    with pytest.raises(ValueError, match="model_type 'gpt2'"):  # a decoder: not in the backbone registry
        from transformers import GPT2Config

        Data2VecPretrainingConfig(backbone_config=GPT2Config())
    with pytest.raises(ValueError, match="'whisper'"):
        Data2VecPretrainingConfig(backbone_config={"model_type": "whisper"})
    with pytest.raises(ValueError, match="not divisible by patch_size 8"):
        Data2VecPretrainingConfig.from_preset("vision", tiny_backbone_config("vision", image_size=36))
    with pytest.raises(ValueError, match="Unknown modality 'video'"):
        Data2VecPretrainingConfig.from_preset("video")


def test_bad_decay_in_ema_step():
    model = Data2VecForPretraining(tiny_config("text"))
    with pytest.raises(ValueError, match="decay=1.2"):
        model.ema_step(1.2)


@pytest.mark.parametrize("modality", MODALITIES)
def test_bad_mask(modality):
    model = Data2VecForPretraining(tiny_config(modality))
    inputs = tiny_inputs(model.config)
    mask = inputs.pop("mask")
    with pytest.raises(ValueError, match="mask has shape"):
        model(**inputs, mask=mask[:, :-1])
    with pytest.raises(ValueError, match="no masked position"):
        model(**inputs, mask=torch.zeros_like(mask))
    with pytest.raises(ValueError, match="mask` is required"):
        model(**inputs)
    with pytest.raises(ValueError, match="got dtype torch.float32"):
        model(**inputs, mask=mask.float())
    with pytest.raises(ValueError, match="got values other than 0 and 1"):
        model(**inputs, mask=mask.long() * 2)
    assert model(**inputs, mask=mask.long()).loss.isfinite()  # 0/1 integers are taken


def test_mask_on_padding_is_rejected():
    model = Data2VecForPretraining(tiny_config("text"))
    inputs = tiny_inputs(model.config, pad=True)
    inputs["mask"][0, -1] = True  # row 0 is padded from position 11
    with pytest.raises(ValueError, match="padded tokens"):
        model(**inputs)


def test_wrong_modality_inputs():
    model = Data2VecForPretraining(tiny_config("text"))
    with pytest.raises(ValueError, match="configured for text .* got `pixel_values`"):
        model(pixel_values=torch.randn(1, 3, 32, 32), mask=torch.ones(1, 16, dtype=torch.bool))
    audio = Data2VecForPretraining(tiny_config("audio"))
    with pytest.raises(ValueError, match="got `input_ids`"):
        audio(input_ids=torch.ones(1, 5, dtype=torch.long), mask=torch.ones(1, 5, dtype=torch.bool))


def test_audio_shorter_than_receptive_field():
    model = Data2VecForPretraining(tiny_config("audio"))  # receptive field 8 + 7*4 + 7*16 = 148 samples
    with pytest.raises(ValueError, match="shorter than the feature encoder's receptive field of 148"):
        model(input_values=torch.randn(1, 100), mask=torch.ones(1, 1, dtype=torch.bool))
    attention_mask = torch.ones(2, 3000, dtype=torch.long)
    attention_mask[1, 120:] = 0
    with pytest.raises(ValueError, match="Audio of 120 samples"):
        model.compute_targets(input_values=torch.randn(2, 3000), attention_mask=attention_mask)


def test_bad_image_and_token_inputs():
    model = Data2VecForPretraining(tiny_config("vision"))
    with pytest.raises(ValueError, match="not divisible by the patch size 8"):
        model(pixel_values=torch.randn(1, 3, 36, 36), mask=torch.ones(1, 16, dtype=torch.bool))
    text = Data2VecForPretraining(tiny_config("text"))
    with pytest.raises(ValueError, match="token id 500"):
        text(input_ids=torch.full((1, 4), 500), mask=torch.ones(1, 4, dtype=torch.bool))


def test_text_recipes_keep_token_type_embeddings_zero_and_untrained():
    """fairseq's data2vec text has no segment embeddings: the presets zero Transformers' and never train them."""
    for mode in ("data2vec", "data2vec2"):
        model = Data2VecForPretraining(tiny_config("text", mode=mode))
        segments = model.student.embeddings.token_type_embeddings.weight
        assert model.config.zero_token_type_embeddings and not segments.any() and not segments.requires_grad
        inputs = tiny_inputs(model.config)
        if mode == "data2vec2":  # one mask row per copy, drawn by the model
            del inputs["mask"]
        model(**inputs).loss.backward()
        assert segments.grad is None
    with pytest.raises(ValueError, match="zero_token_type_embeddings=True is for text backbones"):
        tiny_config("audio", zero_token_type_embeddings=True)


def test_vision_2_0_preset_needs_no_beit_mask_fields():
    """The BEiT block-mask fields are data2vec 1.0's: a 2.0 image preset on an 8 x 8 patch grid needs no override."""
    from transformers import ViTConfig

    backbone = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                         image_size=32, patch_size=4)  # fmt: skip
    config = Data2VecPretrainingConfig.from_preset("vision", backbone, mode="data2vec2", average_top_k_layers=2)
    assert config.num_mask_patches > 64  # 1.0's 120 of 196, unused here
    with pytest.raises(ValueError, match="num_mask_patches"):
        Data2VecPretrainingConfig.from_preset("vision", backbone, average_top_k_layers=2)
