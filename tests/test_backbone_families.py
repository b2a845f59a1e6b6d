"""
Every family of the backbone registry, each on a tiny configuration built in code: the targets equal an independent
computation, the masked input reaches the student and not the teacher, and the exported student loads as the
family's own `AutoModel` and task head. Then one pretraining run per modality on a non-Data2Vec family, and continued
pretraining of a saved `RobertaModel` followed by `run_glue.py`.
"""

import json

import numpy as np
import pytest
import torch
from transformers import (
    AutoModel,
    AutoModelForAudioClassification,
    AutoModelForImageClassification,
    AutoModelForSequenceClassification,
    PreTrainedConfig,
    RobertaConfig,
    RobertaForMaskedLM,
    RobertaModel,
    ViTModel,
)

from d2v_hf import Data2VecForPretraining, Data2VecPretrainingConfig
from d2v_hf.backbone_registry import BACKBONES, get_family
from d2v_hf.backbones import encoder_layers
from d2v_hf.modeling_data2vec2 import encode_visible_frames, encode_visible_patches, encode_visible_text

from .fixtures import (
    REPO,
    build_tokenizer,
    cli,
    glue_texts,
    load_example,
    manual_layer_features,
    tiny_backbone_config,
    tiny_config,
    tiny_inputs,
)


FAMILIES = sorted(BACKBONES)
TASK_HEAD = {
    "text": AutoModelForSequenceClassification,
    "vision": AutoModelForImageClassification,
    "audio": AutoModelForAudioClassification,
}
NO_DROPOUT = {
    "text": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    "vision": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
    "audio": dict(hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0),
}


def family_model(model_type: str, **overrides) -> Data2VecForPretraining:
    modality = BACKBONES[model_type].modality
    torch.manual_seed(0)
    overrides.setdefault("average_top_k_layers", 2)
    config = tiny_config(modality, preset=False, model_type=model_type, **overrides)
    assert config.backbone_config.model_type == model_type and config.modality == modality
    return Data2VecForPretraining(config)


def prefix_of(model, hidden_states) -> int:
    """Tokens in front of the patches, counted from the output (not read from the registry)."""
    if model.modality != "vision":
        return 0
    backbone = model.config.backbone_config
    return hidden_states.shape[1] - (backbone.image_size // backbone.patch_size) ** 2


def main_inputs(model):
    inputs = tiny_inputs(model.config, pad=model.modality == "text")
    mask = inputs.pop("mask")
    return inputs, mask


@pytest.mark.parametrize("target_feature", ["ffn", "block"])
@pytest.mark.parametrize("model_type", FAMILIES)
def test_targets_equal_an_independent_computation(model_type, target_feature):
    model = family_model(model_type, target_feature=target_feature).eval()
    inputs, _ = main_inputs(model)
    targets = model.compute_targets(**inputs)

    main = inputs[model.main_input_name]
    attention_mask = inputs.get("attention_mask")
    with torch.no_grad():
        if target_feature == "block":
            kwargs = {} if attention_mask is None else {"attention_mask": attention_mask}
            layers = model.teacher(main, output_hidden_states=True, **kwargs).hidden_states[-2:]
        else:
            layers = manual_layer_features(model.teacher, main, attention_mask)[0][-2:]
    prefix = prefix_of(model, layers[0])
    expected = sum(layer[:, prefix:] for layer in layers) / 2
    if attention_mask is not None:  # padded positions are never scored
        targets, expected = targets[attention_mask.bool()], expected[attention_mask.bool()]
    assert targets.shape == expected.shape
    torch.testing.assert_close(targets, expected, atol=1e-5, rtol=1e-5)
    # the manual loop and output_hidden_states agree on the block outputs: the loop is the layers' own arithmetic
    if target_feature == "ffn" and model.modality != "text":
        with torch.no_grad():
            blocks = manual_layer_features(model.teacher, main)[1]
            hidden_states = model.teacher(main, output_hidden_states=True).hidden_states
        torch.testing.assert_close(blocks[-1], hidden_states[-1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_masked_input_reaches_the_student_and_not_the_teacher(model_type):
    model = family_model(model_type, **NO_DROPOUT[BACKBONES[model_type].modality])
    model.eval()  # no dropout in the student either: only the mask may change its outputs
    inputs, mask = main_inputs(model)
    seen = {}

    def record(name):
        def hook(module, args, kwargs, output):
            seen[name] = output.last_hidden_state

        return hook

    handles = [
        model.student.register_forward_hook(record("student"), with_kwargs=True),
        model.teacher.register_forward_hook(record("teacher"), with_kwargs=True),
    ]
    with torch.no_grad():
        model(**inputs, mask=mask)
    for handle in handles:
        handle.remove()
    with torch.no_grad():
        clean_student = model.student(**inputs).last_hidden_state
        clean_teacher = model.teacher(**inputs).last_hidden_state
    student_change = (seen["student"] - clean_student)[:, prefix_of(model, clean_student) :].abs().amax(-1)
    assert bool((student_change[mask] > 1e-4).all()), "a masked position did not change the student's output"
    torch.testing.assert_close(seen["teacher"], clean_teacher)


@pytest.mark.parametrize("model_type", FAMILIES)
def test_export_loads_as_the_family_auto_model_and_task_head(model_type, tmp_path):
    family = BACKBONES[model_type]
    model = family_model(model_type)
    # one training step, so that the export carries trained weights rather than the initialisation
    inputs, mask = main_inputs(model)
    model(**inputs, mask=mask).loss.backward()
    with torch.no_grad():
        for parameter in model.student.parameters():
            if parameter.grad is not None:
                parameter -= 0.1 * parameter.grad
    model.export_student(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == model_type and saved["architectures"] == [family.model_class]

    backbone, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert type(backbone).__name__ == family.model_class
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    head, info = TASK_HEAD[family.modality].from_pretrained(tmp_path, num_labels=3, output_loading_info=True)
    backbone_keys = {key for key in backbone.state_dict() if not key.startswith("pooler.")}
    prefix = head.base_model_prefix + "."
    missing_backbone = [key for key in info["missing_keys"] if key.removeprefix(prefix) in backbone_keys]
    unexpected = [key for key in info["unexpected_keys"] if not key.startswith("pooler.")]
    assert not missing_backbone and not unexpected, info

    model.eval()
    with torch.no_grad():
        student = model.student(**inputs).last_hidden_state
        torch.testing.assert_close(backbone.eval()(**inputs).last_hidden_state, student)
        torch.testing.assert_close(head.base_model.eval()(**inputs).last_hidden_state, student)


DATA2VEC2_CASES = [(name, None) for name in FAMILIES if BACKBONES[name].data2vec2_refusal is None]
# the pre-LN ("stable layer norm") speech encoders of the large checkpoints: LayerNorm after the layers
DATA2VEC2_CASES += [("wav2vec2", {"do_stable_layer_norm": True, "feat_extract_norm": "layer"})]
DATA2VEC2_CASES += [("hubert", {"do_stable_layer_norm": True, "feat_extract_norm": "layer"})]


@pytest.mark.parametrize("model_type, backbone_kwargs", DATA2VEC2_CASES)
def test_data2vec2_sparse_student_on_every_family(model_type, backbone_kwargs):
    family = BACKBONES[model_type]
    torch.manual_seed(0)
    clone_batch = 2
    config = tiny_config(
        family.modality,
        model_type=model_type,
        mode="data2vec2",
        clone_batch=clone_batch,
        backbone_kwargs=backbone_kwargs,
    )
    model = Data2VecForPretraining(config)
    inputs, _ = main_inputs(model)
    out = model(**inputs)  # the masks of the M copies drawn by the model
    out.loss.backward()
    assert out.loss.isfinite() and out.predictions.shape == out.targets.shape
    last_layer = [p for p in encoder_layers(model.student)[-1].parameters() if p.grad is not None]
    assert last_layer and all(bool(p.grad.abs().sum() > 0) for p in last_layer)

    model.eval()
    config = model.config
    if family.modality == "text":
        ids = inputs["input_ids"]
        keep = torch.rand(ids.shape[0] * clone_batch, ids.shape[1]) > 0.5
        keep &= inputs["attention_mask"].bool().repeat_interleave(clone_batch, 0)
        keep[:, 0] = True
        with torch.no_grad():
            states, visible, _ = encode_visible_text(model.student, ids, keep, clone_batch)
            # the full backbone with the masked tokens taken out of attention, positions unchanged
            full = model.student(ids.repeat_interleave(clone_batch, 0), attention_mask=keep.long()).last_hidden_state
        torch.testing.assert_close(states[visible], full[keep], atol=1e-5, rtol=1e-5)
    elif family.modality == "audio":
        values = inputs["input_values"][:1]
        frames = model.student._get_feat_extract_output_lengths(values.shape[1])
        keep = torch.ones(clone_batch, int(frames), dtype=torch.bool)
        with torch.no_grad():
            states, _, _ = encode_visible_frames(model.student, values, keep, clone_batch)
            # nothing masked: the sparse path is the backbone's own forward
            full = model.student(values).last_hidden_state
        torch.testing.assert_close(states, full.expand(clone_batch, -1, -1), atol=1e-5, rtol=1e-5)
    elif family.modality == "vision":
        pixels = inputs["pixel_values"][:1]
        grid = config.backbone_config.image_size // config.backbone_config.patch_size
        mask = torch.zeros(clone_batch, grid * grid, dtype=torch.bool)
        mask[0, :8], mask[1, 8:] = True, True  # copy 0 hides the top half, copy 1 the bottom half
        with torch.no_grad():
            states, _, _ = encode_visible_patches(model.student, pixels, ~mask, clone_batch)
            changed = pixels.clone()
            changed[..., :8, :] += 1.0  # the first patch row, hidden from copy 0, seen by copy 1
            new_states, _, _ = encode_visible_patches(model.student, changed, ~mask, clone_batch)
        torch.testing.assert_close(new_states[0], states[0], atol=1e-6, rtol=1e-6)
        assert not torch.allclose(new_states[1], states[1])


def test_unregistered_family_lists_the_supported_ones():
    with pytest.raises(ValueError, match=r"model_type 'gpt2'.*Supported: beit, bert, .*wavlm.*backbone_registry"):
        get_family("gpt2")
    with pytest.raises(ValueError, match="no backbone entry for model_type 'electra'"):
        Data2VecPretrainingConfig(backbone_config={"model_type": "electra"})
    with pytest.raises(ValueError, match="RobertaConfig, a text backbone; expected a vision"):
        Data2VecPretrainingConfig.from_preset("vision", RobertaConfig())
    with pytest.raises(ValueError, match="cannot run on a wavlm backbone: WavLM's gated relative position bias"):
        tiny_config("audio", model_type="wavlm", mode="data2vec2")
    with pytest.raises(ValueError, match="'encoder.typo.', which matches no parameter of the HubertModel"):
        Data2VecForPretraining(tiny_config("audio", model_type="hubert", teacher_shared_params=["encoder.typo."]))


@pytest.mark.parametrize("model_type", ["roberta", "hubert", "vit", "deit"])
def test_config_round_trip_keeps_the_family(model_type, tmp_path):
    model = family_model(model_type)
    model.save_pretrained(tmp_path)
    loaded = Data2VecForPretraining.from_pretrained(tmp_path)
    assert type(loaded.student) is type(model.student) and isinstance(loaded.config.backbone_config, PreTrainedConfig)
    assert loaded.config.backbone_config.model_type == model_type
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_docs_table_lists_every_family_as_registered():
    text = (REPO / "docs" / "backbones.md").read_text(encoding="utf-8")
    for model_type, family in BACKBONES.items():
        row = f"| `{model_type}` | {family.modality} | `{family.model_class}` | `{family.layers}` | "
        row += f"`{family.ffn_output}` |"
        assert row in text, row


# --------------------------------------------------------------------------------------------------------------------
# Pretraining runs of non-Data2Vec families through run_pretraining.py
# --------------------------------------------------------------------------------------------------------------------

run_pretraining = load_example("run_pretraining")
pretraining_utils = load_example("pretraining_utils")
run_glue = load_example("run_glue")
RUN = [
    "--model_size=tiny",
    "--use_cpu",
    "--seed=0",
    "--logging_steps=1",
    "--save_strategy=no",
    "--eval_strategy=no",
    "--warmup_steps=5",
    "--min_target_var=0.1",  # fairseq's collapse threshold, armed after 10 steps: a collapse would stop the run
    "--collapse_check_after_steps=10",
    "--min_pred_var=0",
    "--max_steps=30",
    "--report_to=none",
    "--disable_tqdm=true",
]


def losses_and_spread(output_dir):
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    logs = [entry for entry in history if "loss" in entry]
    return [entry["loss"] for entry in logs], logs[-1]["target_var"]


def check_run(output_dir, model_type):
    """
    The loss falls over the 30 steps: the least-squares slope of loss against step is negative and significant
    (t < -2; per-batch losses are noisy at this size, speech most) and the last 10 steps average at least 5% below
    the first 10. The target spread ends above fairseq's collapse threshold (0.1).
    """
    losses, spread = losses_and_spread(output_dir)
    assert len(losses) == 30
    y = np.array(losses)
    x = np.arange(len(y), dtype=float)
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    t = slope / np.sqrt(residual.var(ddof=2) / ((x - x.mean()) ** 2).sum())
    first, last = y[:10].mean(), y[-10:].mean()
    assert t < -2 and last < 0.95 * first, f"loss did not fall (t={t:.2f}): {y.round(3).tolist()}"
    print(f"{model_type}: t={t:.2f}, last/first={last / first:.3f}, spread={spread:.3f}")
    assert spread > 0.1, spread
    config = json.loads((output_dir / "student" / "config.json").read_text())
    assert config["model_type"] == model_type


@pytest.mark.real_data
@pytest.mark.parametrize(
    "modality, model_type, data",
    [
        ("text", "roberta", []),
        ("vision", "vit", ["--config_overrides=backbone.num_hidden_layers=2,average_top_k_layers=2"]),
        ("audio", "hubert", ["--config_overrides=backbone.num_hidden_layers=2,average_top_k_layers=2"]),
    ],
)
def test_pretraining_a_non_data2vec_family(modality, model_type, data, tmp_path, shared_data):
    if modality == "vision":
        data = [*data, f"--train_file={shared_data / 'vision' / 'fashion-mnist'}", "--per_device_train_batch_size=16"]
        data += ["--max_train_samples=2000", "--learning_rate=1e-3"]
    elif modality == "audio":
        data = [*data, f"--train_file={shared_data / 'speech' / 'asterisk-en' / 'audio'}", "--max_audio_seconds=2.0"]
        data += ["--max_train_samples=16", "--per_device_train_batch_size=8", "--learning_rate=2e-3"]
    else:
        data = ["--max_seq_length=64", "--per_device_train_batch_size=8", "--learning_rate=1e-3"]
    out = tmp_path / model_type
    run_pretraining.main(
        [f"--modality={modality}", f"--backbone_type={model_type}", f"--output_dir={out}", *RUN, *data]
    )
    check_run(out, model_type)


@pytest.mark.real_data
def test_continued_pretraining_of_a_roberta_checkpoint_then_glue(tmp_path, shared_data):
    glue_folder = shared_data / "glue" / "sst2"
    texts = glue_texts(glue_folder / "train.tsv", ["sentence"], 2000)
    tokenizer = build_tokenizer(texts, vocab_size=600, model_max_length=64)
    roberta = tmp_path / "roberta"
    config = tiny_backbone_config(
        "text",
        model_type="roberta",
        vocab_size=len(tokenizer),
        max_position_embeddings=66,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(roberta)
    tokenizer.save_pretrained(roberta)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(texts) + "\n", encoding="utf-8")

    out = tmp_path / "continued"
    run_pretraining.main(
        [
            "--modality=text",
            f"--model_name_or_path={roberta}",
            f"--train_file={corpus}",
            "--max_seq_length=64",
            "--per_device_train_batch_size=8",
            "--learning_rate=3e-3",
            f"--output_dir={out}",
            "--config_overrides=average_top_k_layers=2",
            *RUN,
        ]
    )
    check_run(out, "roberta")
    # the student started from the saved RobertaModel and moved away from it
    start = RobertaModel.from_pretrained(roberta).state_dict()
    trained = RobertaModel.from_pretrained(out / "student").state_dict()
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(start[key], trained[key])

    glue = tmp_path / "glue"
    metrics = run_glue.main(
        cli(
            model_name_or_path=out / "student",
            task_name="sst2",
            train_file=glue_folder / "train.tsv",
            validation_file=glue_folder / "dev.tsv",
            max_train_samples=64,
            max_eval_samples=64,
            do_train=True,
            do_eval=True,
            max_seq_length=64,
            per_device_train_batch_size=16,
            max_steps=4,
            output_dir=glue,
        )
    )
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    saved = json.loads((glue / "config.json").read_text())
    assert saved["model_type"] == "roberta" and saved["architectures"] == ["RobertaForSequenceClassification"]


@pytest.mark.parametrize("mode", ["data2vec", "data2vec2"])
def test_student_and_teacher_start_from_a_checkpoint_of_another_family(mode, tmp_path):
    # a task checkpoint (RobertaForMaskedLM: `roberta.` weights and an LM head) and a ViTModel without a mask token
    torch.manual_seed(0)
    roberta = RobertaForMaskedLM(tiny_backbone_config("text", model_type="roberta"))
    roberta.save_pretrained(tmp_path / "roberta")
    vit = ViTModel(tiny_backbone_config("vision", model_type="vit"))
    vit.save_pretrained(tmp_path / "vit")
    overrides = f"mode={mode},average_top_k_layers=2,mask_token_id=98"
    for modality, folder, weights in (("text", "roberta", roberta.roberta), ("vision", "vit", vit)):
        args = pretraining_utils.Data2VecModelArguments(
            modality=modality, model_name_or_path=str(tmp_path / folder), config_overrides=overrides
        )
        if modality == "vision":
            args.config_overrides = f"mode={mode},average_top_k_layers=2,num_mask_patches=8"
            args.config_overrides += ",min_mask_patches_per_block=2"
        model = pretraining_utils.load_or_build_model(args)
        assert type(model.student) is type(weights) and model.config.mode == mode
        student, teacher = model.student.state_dict(), model.teacher.state_dict()
        for key, value in weights.state_dict().items():
            if key.startswith("pooler."):
                continue
            torch.testing.assert_close(student[key], value, msg=key)
            torch.testing.assert_close(teacher[key], value, msg=key)
        if modality == "vision" and mode == "data2vec":  # the new mask token: trunc-normal (Hugging Face's: zeros)
            assert student["embeddings.mask_token"].abs().sum() > 0

    args = pretraining_utils.Data2VecModelArguments(
        modality="audio", model_name_or_path=str(tmp_path / "vit"), config_overrides=overrides
    )
    with pytest.raises(ValueError, match="model_type 'vit', a vision backbone; --modality is audio"):
        pretraining_utils.load_or_build_model(args)
    args = pretraining_utils.Data2VecModelArguments(modality="vision", backbone_type="hubert")
    with pytest.raises(ValueError, match="--backbone_type hubert is an audio family; --modality is vision"):
        pretraining_utils.build_pretraining_config(args)
