"""
d2v_hf against fairseq's own data2vec outputs (../shared/reference/fairseq_fixtures), through the checkpoint
converter (`d2v_hf.convert_fairseq`), and the converter's refusals. The measurements are those of
`benchmarks/fairseq_parity.py` (the table in docs/faithfulness.md); each test can fail, and two show that a broken
mapping does.
"""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import AutoFeatureExtractor, AutoModel, Data2VecAudioModel, Data2VecTextModel

import d2v_hf  # noqa: F401  (registers Data2VecForPretraining with AutoModel)
from d2v_hf import compute_audio_span_mask, compute_random_mask, compute_text_span_mask
from d2v_hf.convert_fairseq import convert_checkpoint, main
from d2v_hf.fairseq_checkpoint import FairseqCheckpointError, read_fairseq_checkpoint
from d2v_hf.fairseq_converters import ALT_BLOCK, TEXT_LAYER, Data2VecText1Converter, KeyRule, parse_layer_spec

from .fixtures import REPO, load_example
from fairseq_parity import MEASURES  # benchmarks/, on the path through tests/fixtures.py


pytestmark = pytest.mark.real_data
TOLERANCE = 1e-5
CONVERTED = ("data2vec_text", "data2vec_audio", "data2vec2_text")


@pytest.fixture(autouse=True)
def deterministic():
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("name", list(MEASURES))
def test_every_quantity_matches_fairseq(fairseq_fixtures, name, record_property):
    diffs = MEASURES[name](fairseq_fixtures / name)
    for quantity, diff in diffs.items():
        record_property(quantity, diff)
    print(name, diffs)
    assert all(diff < TOLERANCE for diff in diffs.values()), diffs


@pytest.mark.parametrize("name", CONVERTED)
def test_every_trained_parameter_has_a_fairseq_counterpart(fairseq_fixtures, name):
    converted = convert_checkpoint(fairseq_fixtures / name / "checkpoint.pt")
    model, converter = converted.model, converted.converter
    mapped = {target for rule in converter.student_rules(model.config) for target in rule.targets}
    trained = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert trained == mapped
    # the frozen rest of the student is the text backbone's token-type embedding: zero, as fairseq has none
    frozen = {key for key, _ in model.named_parameters() if key.startswith("student.")} - mapped
    assert frozen == ({"student.embeddings.token_type_embeddings.weight"} if "text" in name else set())
    assert all(not model.get_parameter(key).any() for key in frozen)


def _swap_layers(converted):
    """A mapping that sends fairseq's layer 0 to layer 1 and back (as a wrong layer index would)."""
    student = converted.model.student
    layers = student.get_submodule("encoder.layer" if hasattr(student.encoder, "layer") else "encoder.layers")
    with torch.no_grad():
        first, second = layers[0].state_dict(), layers[1].state_dict()
        first = {key: value.clone() for key, value in first.items()}
        layers[0].load_state_dict(second)
        layers[1].load_state_dict(first)
    return converted


@pytest.mark.parametrize("name", CONVERTED)
def test_a_swapped_layer_mapping_fails_parity(fairseq_fixtures, name):
    diffs = MEASURES[name](fairseq_fixtures / name, convert=lambda path: _swap_layers(convert_checkpoint(path)))
    assert max(diffs.values()) > 10 * TOLERANCE, diffs


def _with_trained_teacher(fairseq_fixtures, name, tmp_path):
    """The fixture's checkpoint with its EMA state moved away from the student (as after training), and that state:
    a converter that reads the teacher must reproduce it."""
    checkpoint = torch.load(fairseq_fixtures / name / "checkpoint.pt", weights_only=True)
    key = "encoder._ema" if name == "data2vec_text" else "_ema"
    generator = torch.Generator().manual_seed(0)
    teacher = {k: v + 0.01 * torch.randn(v.shape, generator=generator) for k, v in checkpoint["model"][key].items()}
    checkpoint["model"][key] = teacher
    checkpoint["optimizer_history"] = [{"num_updates": 1}]
    path = tmp_path / "checkpoint.pt"
    torch.save(checkpoint, path)
    return path, teacher


@pytest.mark.parametrize("name", CONVERTED)
def test_the_teacher_comes_from_fairseqs_ema_state(fairseq_fixtures, name, tmp_path, monkeypatch):
    path, teacher = _with_trained_teacher(fairseq_fixtures, name, tmp_path)
    converted = convert_checkpoint(path)
    assert converted.teacher_from_ema and int(converted.model.ema_num_updates) == 1

    def max_teacher_diff(converted):
        state = converted.model.state_dict()
        rules = converted.converter.teacher_rules(converted.model.config)
        return max(float((torch.cat([state[t] for t in rule.targets]) - teacher[rule.source]).abs().max())
                   for rule in rules)  # fmt: skip

    assert max_teacher_diff(converted) == 0
    # dropping the teacher (a converter that does not find `_ema`) is visible
    monkeypatch.setattr(type(converted.converter), "ema_key", "no_such_key")
    dropped = convert_checkpoint(path)
    assert not dropped.teacher_from_ema and max_teacher_diff(dropped) > 1e-3


def test_mask_generators_against_fairseqs_masks(fairseq_fixtures):
    # data2vec 2.0 text: fairseq seeds its random masking with hash((seed, update, sum of the copies' ids))
    inputs = torch.load(fairseq_fixtures / "data2vec2_text" / "inputs.pt", weights_only=True)
    cfg = torch.load(fairseq_fixtures / "data2vec2_text" / "checkpoint.pt", weights_only=True)["cfg"]["model"]
    seed, copies = cfg["seed"], cfg["clone_batch"]
    clone_hash = torch.tensor([0] + [int(hash((seed, i)) % 1e10) for i in range(copies - 1)])
    ids = (inputs["id"].repeat_interleave(copies).view(-1, copies) + clone_hash).view(-1)
    generator = torch.Generator().manual_seed(int(hash((seed, 0, ids.sum().item())) % 1e6))
    attention_mask = (~inputs["padding_mask"]).long()
    mask = compute_random_mask(attention_mask, cfg["modalities"]["text"]["mask_prob"], copies, generator)
    assert torch.equal(mask, inputs["mask"])
    # (2.0 images, drawn from the global RNG: compared in test_every_quantity_matches_fairseq)

    # 1.0 text and speech: fairseq draws with numpy per (seed, epoch, index), d2v_hf with torch generators, so the
    # positions differ; the rules must not: spans of mask_length, fairseq's span counts, the same masked counts
    text = torch.load(fairseq_fixtures / "data2vec_text" / "inputs.pt", weights_only=True)
    lengths = torch.tensor(text["lengths"])
    real = torch.arange(text["mask"].shape[1]) < lengths[:, None]
    generator = torch.Generator().manual_seed(0)
    drawn = torch.stack([compute_text_span_mask(real.long(), 0.35, 4, generator=generator) for _ in range(500)])
    for row, length in enumerate(lengths.tolist()):
        fairseq_count = int(text["mask"][row].sum())
        counts = drawn[:, row].sum(1)
        assert counts.min() <= fairseq_count <= counts.max()
        # span starts: int(0.35 * L / 4 + U) of them, each masking 4 tokens (cut at the row end)
        assert int(0.35 * length / 4) * 4 - 4 <= fairseq_count <= (int(0.35 * length / 4) + 1) * 4
    audio = torch.load(fairseq_fixtures / "data2vec_audio" / "inputs.pt", weights_only=True)["mask"]
    assert len(set(audio.sum(1).tolist())) == 1  # require_same_masks, in fairseq and d2v_hf alike
    frames = torch.ones_like(audio)
    generator = torch.Generator().manual_seed(0)
    counts = torch.stack([compute_audio_span_mask(frames, 0.65, 10, generator=generator).sum(1) for _ in range(300)])
    assert (counts == counts[:, :1]).all() and counts.min() <= int(audio[0].sum()) <= counts.max()


def test_converted_folders_load_in_hugging_face_classes(fairseq_fixtures, tmp_path):
    assert main(["--checkpoint", str(fairseq_fixtures / "data2vec_text" / "checkpoint.pt"),
                 "--output_dir", str(tmp_path / "text")]) == 0  # fmt: skip
    pretraining = AutoModel.from_pretrained(tmp_path / "text")
    assert type(pretraining).__name__ == "Data2VecForPretraining"
    student = Data2VecTextModel.from_pretrained(tmp_path / "text" / "student")
    assert not student.embeddings.token_type_embeddings.weight.any()
    torch.testing.assert_close(
        student.embeddings.word_embeddings.weight, pretraining.student.embeddings.word_embeddings.weight
    )

    assert main(["--checkpoint", str(fairseq_fixtures / "data2vec_audio" / "checkpoint.pt"),
                 "--output_dir", str(tmp_path / "audio"), "--student_only"]) == 0  # fmt: skip
    assert isinstance(AutoModel.from_pretrained(tmp_path / "audio"), Data2VecAudioModel)
    assert AutoFeatureExtractor.from_pretrained(tmp_path / "audio").sampling_rate == 16000


def test_a_converted_model_continues_pretraining(fairseq_fixtures, tmp_path):
    folder = tmp_path / "converted"
    assert main(["--checkpoint", str(fairseq_fixtures / "data2vec_audio" / "checkpoint.pt"),
                 "--output_dir", str(folder)]) == 0  # fmt: skip
    clips = tmp_path / "clips"
    clips.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        sf.write(clips / f"{i}.wav", rng.standard_normal(4000).astype(np.float32) * 0.1, 16000)
    run_pretraining = load_example("run_pretraining")
    run_pretraining.main([
        "--modality=audio", f"--model_name_or_path={folder}", f"--train_file={clips}",
        f"--output_dir={tmp_path / 'out'}", "--max_steps=2", "--per_device_train_batch_size=2", "--use_cpu",
        "--report_to=none", "--save_strategy=no",
    ])  # fmt: skip
    assert (tmp_path / "out" / "student" / "model.safetensors").is_file()


def _fake_checkpoint(path, model_keys, cfg=None):
    weights = {key: torch.zeros(1) for key in model_keys}
    torch.save({"args": None, "cfg": cfg or {"model": {"_name": "x"}}, "model": weights}, path)
    return path


@pytest.mark.parametrize(
    "keys, message",
    [
        (["modality_encoders.AUDIO.local_encoder.x", "blocks.0.attn.qkv.weight"], "data2vec 2.0 speech model"),
        (["quantizer.vars", "project_q.weight", "feature_extractor.conv_layers.0.0.weight"], "wav2vec 2.0 model"),
        (["encoder.sentence_encoder.embed_tokens.weight", "encoder.lm_head.dense.weight"], "RoBERTa masked-LM"),
        (["w2v_encoder.w2v_model.encoder.layers.0.fc1.weight"], "fine-tuned speech model"),
        (
            ["encoder.sentence_encoder.embed_tokens.weight", "classification_heads.sst2.dense.weight"],
            "fine-tuned text",
        ),
        (["decoder.embed_tokens.weight"], "not a data2vec pretraining checkpoint"),
    ],
)
def test_other_checkpoints_are_refused_naming_what_was_found(tmp_path, keys, message):
    path = _fake_checkpoint(tmp_path / "other.pt", keys)
    with pytest.raises(FairseqCheckpointError, match=message):
        convert_checkpoint(path)


def test_the_image_2_0_fixture_is_refused_with_the_reason(fairseq_fixtures):
    with pytest.raises(FairseqCheckpointError, match="data2vec 2.0 image model.*no Hugging Face class"):
        convert_checkpoint(fairseq_fixtures / "data2vec2_image" / "checkpoint.pt")


def test_bad_files_get_a_clear_error_and_write_nothing(fairseq_fixtures, tmp_path, capsys):
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((fairseq_fixtures / "data2vec_text" / "checkpoint.pt").read_bytes()[:2000])
    not_a_dict = tmp_path / "tensor.pt"
    torch.save(torch.zeros(2), not_a_dict)
    for path, message in [
        (tmp_path / "missing.pt", "no such file"),
        (truncated, "truncated or corrupt"),
        (not_a_dict, "not a fairseq trainer checkpoint"),
    ]:
        assert main(["--checkpoint", str(path), "--output_dir", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
        assert not (tmp_path / "out").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    path = fairseq_fixtures / "data2vec_text" / "checkpoint.pt"
    assert main(["--checkpoint", str(path), "--output_dir", str(tmp_path / "full")]) == 2
    assert "not empty" in capsys.readouterr().err and (tmp_path / "full" / "keep.txt").exists()


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (subprocess.call, (["touch", str(marker)],))

    path = tmp_path / "evil.pt"
    torch.save({"cfg": {"model": Payload()}, "model": {}}, path)
    with pytest.raises(FairseqCheckpointError, match="subprocess.call, which a fairseq checkpoint does not hold"):
        read_fairseq_checkpoint(path)
    assert not marker.exists()


def test_omegaconf_configs_are_read_without_omegaconf(fairseq_fixtures, tmp_path):
    omegaconf = pytest.importorskip("omegaconf")
    checkpoint = torch.load(fairseq_fixtures / "data2vec_text" / "checkpoint.pt", weights_only=True)
    cfg = checkpoint["cfg"]
    checkpoint["cfg"] = omegaconf.OmegaConf.create(cfg)  # as released checkpoints pickle it
    path = tmp_path / "omegaconf.pt"
    torch.save(checkpoint, path)
    with pytest.raises(pickle.UnpicklingError):  # what the d2v_hf loader replaces: torch's safe load refuses it
        torch.load(path, weights_only=True)
    # in a process where omegaconf cannot be imported, the config reads back as plain values
    code = (
        "import sys; sys.modules['omegaconf'] = None\n"
        "from d2v_hf.fairseq_checkpoint import read_fairseq_checkpoint\n"
        f"print(read_fairseq_checkpoint({str(path)!r}).cfg['model']['transformer']['encoder'])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == str(cfg["model"]["transformer"]["encoder"])


def test_layer_spec_is_parsed_without_eval():
    assert parse_layer_spec("[(512, 10, 5)] + [(512, 3, 2)] * 2") == [(512, 10, 5), (512, 3, 2), (512, 3, 2)]
    with pytest.raises(FairseqCheckpointError, match="conv_feature_layers"):
        parse_layer_spec("__import__('os').system('true')")


def test_key_tables_cover_each_layer_once():
    # each Hugging Face layer tensor comes from exactly one fairseq tensor, in both text layouts
    for table in (TEXT_LAYER, ALT_BLOCK):
        targets = [t for value in table.values() for t in ((value,) if isinstance(value, str) else value)]
        assert len(targets) == len(set(targets)) == 8
    assert KeyRule("a", ("b",)).targets == ("b",) and Data2VecText1Converter.ema_key == "encoder._ema"
