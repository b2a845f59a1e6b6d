"""examples/pretraining/run_pretraining.py end to end: artifacts, exact resume, clear errors that write nothing."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from .fixtures import load_example


run_pretraining = load_example("run_pretraining")

WORDS = "the teacher sees the whole sentence while the student sees a masked copy and regresses its layers".split()
TINY = "backbone.hidden_size=32,backbone.intermediate_size=64,backbone.num_hidden_layers=2,average_top_k_layers=2"


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(8, 30))) for _ in range(400)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def text_args(text_file, output_dir, *extra):
    return [
        "--modality=text",
        "--model_size=tiny",
        f"--config_overrides={TINY}",
        f"--train_file={text_file}",
        "--train_tokenizer",
        "--tokenizer_vocab_size=300",
        "--max_seq_length=32",
        f"--output_dir={output_dir}",
        "--per_device_train_batch_size=8",
        "--learning_rate=1e-3",
        "--logging_steps=1",
        "--use_cpu",
        "--seed=0",
        "--report_to=none",
        *extra,
    ]


def losses(output_dir):
    history = json.loads((Path(output_dir) / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def test_run_writes_artifacts_and_resume_is_exact(text_file, tmp_path):
    full = tmp_path / "full"
    run_pretraining.main(text_args(text_file, full, "--max_steps=6", "--save_steps=3", "--eval_strategy=no"))
    for name in (
        "model.safetensors",
        "README.md",
        "training_curves.png",
        "student/model.safetensors",
        "student/tokenizer.json",
        "checkpoint-3/rng_state.pth",
    ):
        assert (full / name).exists(), name
    card = (full / "README.md").read_text()
    assert "data2vec" in card and "average_top_k_layers" in card and "final loss" in card

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(full / "checkpoint-3", resumed / "checkpoint-3")
    run_pretraining.main(
        text_args(
            text_file,
            resumed,
            "--max_steps=6",
            "--save_steps=3",
            "--eval_strategy=no",
            f"--resume_from_checkpoint={resumed / 'checkpoint-3'}",
        )
    )
    a, b = load_file(full / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and any(k.startswith("teacher.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert int(a["ema_num_updates"]) == 6
    full_losses, resumed_losses = losses(full), losses(resumed)
    assert [resumed_losses[s] for s in (4, 5, 6)] == [full_losses[s] for s in (4, 5, 6)]


def test_output_dir_with_another_run_is_refused(text_file, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"another run")
    with pytest.raises(ValueError, match="already holds another run"):
        run_pretraining.main(text_args(text_file, out, "--max_steps=1"))
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]


@pytest.mark.parametrize("damage", ["truncate", "corrupt", "missing_state"])
def test_bad_checkpoint_is_refused(text_file, tmp_path, damage):
    out = tmp_path / "run"
    run_pretraining.main(text_args(text_file, out, "--max_steps=2", "--save_steps=2", "--eval_strategy=no"))
    checkpoint = out / "checkpoint-2"
    weights = checkpoint / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "corrupt":
        weights.write_bytes(b"\x00" * 64)
    else:
        (checkpoint / "trainer_state.json").unlink()
    before = sorted(p.name for p in checkpoint.iterdir())
    with pytest.raises(ValueError, match="Checkpoint file .*(model.safetensors|trainer_state.json)"):
        run_pretraining.main(text_args(text_file, out, "--max_steps=4", f"--resume_from_checkpoint={checkpoint}"))
    assert sorted(p.name for p in checkpoint.iterdir()) == before


def test_bad_text_inputs_write_nothing(tmp_path):
    out = tmp_path / "out"
    cases = {
        "missing.txt": (None, "does not exist|not found|missing"),
        "empty.txt": (b"\n\n", "empty|no non-empty"),
        "latin1.txt": ("caf\u00e9 au lait\n".encode("latin-1"), "UTF-8.*line 1|line 1.*UTF-8"),
        "table.csv": (b"sentence,label\nhello,1\n", "text.*column|column.*text"),
    }
    for name, (content, pattern) in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(ValueError, match=pattern):
            run_pretraining.main(text_args(path, out, "--max_steps=1"))
        assert not out.exists(), name


def test_packed_documents_train_and_bad_layout_flags_write_nothing(text_file, tmp_path):
    out = tmp_path / "packed"
    layout = ("--sample_break_mode=complete_doc", "--pack_documents", "--eval_strategy=no", "--max_steps=2")
    run_pretraining.main(text_args(text_file, out, *layout))
    assert len(losses(out)) == 2 and all(np.isfinite(loss) for loss in losses(out).values())
    for flags, pattern in {
        ("--pack_documents",): "--pack_documents packs the samples of --sample_break_mode complete_doc",
        ("--sample_break_mode=eos",): "--sample_break_mode 'eos'",
    }.items():
        with pytest.raises(ValueError, match=pattern):
            run_pretraining.main(text_args(text_file, tmp_path / "bad", "--max_steps=1", *flags))
        assert not (tmp_path / "bad").exists()


def test_bad_audio_and_image_inputs(tmp_path):
    out = tmp_path / "out"
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    (audio_dir / "broken.wav").write_bytes(b"RIFF not really audio")
    with pytest.raises(ValueError, match="broken.wav"):
        run_pretraining.main(
            [
                "--modality=audio",
                "--model_size=tiny",
                f"--train_file={audio_dir}",
                f"--output_dir={out}",
                "--use_cpu",
                "--max_steps=1",
            ]
        )
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    (image_dir / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png"):
        run_pretraining.main(
            [
                "--modality=vision",
                "--model_size=tiny",
                f"--train_file={image_dir}",
                f"--output_dir={out}",
                "--use_cpu",
                "--max_steps=1",
            ]
        )
    assert not out.exists()
    with pytest.raises(ValueError, match="--config_overrides: unknown recipe field"):
        run_pretraining.main(
            [
                "--modality=audio",
                "--config_overrides=nonsense=1",
                f"--train_file={audio_dir}",
                f"--output_dir={out}",
                "--use_cpu",
            ]
        )


def test_config_overrides_keep_json_lists():
    from d2v_hf import Data2VecForPretraining

    pretraining_utils = load_example("pretraining_utils")
    Data2VecModelArguments = pretraining_utils.Data2VecModelArguments
    build_pretraining_config = pretraining_utils.build_pretraining_config
    parse_config_overrides = pretraining_utils.parse_config_overrides

    overrides = (
        "average_top_k_layers=2,backbone.conv_dim=[32, 32],backbone.conv_kernel=[40,4],backbone.conv_stride=[20,4]"
    )
    recipe, backbone = parse_config_overrides(overrides)
    assert recipe == {"average_top_k_layers": 2}
    assert backbone == {"conv_dim": [32, 32], "conv_kernel": [40, 4], "conv_stride": [20, 4]}
    config = build_pretraining_config(
        Data2VecModelArguments(modality="audio", model_size="tiny", config_overrides=overrides)
    )
    assert list(config.backbone_config.conv_kernel) == [40, 4] and config.average_top_k_layers == 2
    assert config.backbone_config.num_feat_extract_layers == 2  # derived fields follow the overrides
    Data2VecForPretraining(config)


def test_streaming_hub_path_and_json_arguments(text_file, tmp_path):
    # --streaming reads lazily and needs --max_steps
    out = tmp_path / "stream"
    metrics = run_pretraining.main(text_args(text_file, out, "--streaming", "--max_steps=2", "--eval_strategy=no"))
    assert metrics["train_loss"] > 0 and (out / "student" / "model.safetensors").exists()
    with pytest.raises(ValueError, match="--streaming needs --max_steps"):
        run_pretraining.main(text_args(text_file, tmp_path / "s2", "--streaming"))
    # --dataset_name goes through datasets.load_dataset, which also reads a local folder of text files offline
    folder = tmp_path / "hub_like"
    folder.mkdir()
    shutil.copy(text_file, folder / "train.txt")
    args = [a for a in text_args(text_file, tmp_path / "hub", "--max_steps=2") if not a.startswith("--train_file")]
    run_pretraining.main([*args, f"--dataset_name={folder}"])
    assert (tmp_path / "hub" / "model.safetensors").exists()
    # a single JSON file of arguments, as the Transformers example scripts accept
    config = {}
    for arg in args:
        key, _, value = arg.lstrip("-").partition("=")
        try:
            config[key] = json.loads(value) if value else True
        except json.JSONDecodeError:
            config[key] = value
    config.update(dataset_name=str(folder), output_dir=str(tmp_path / "json"), max_steps=1)
    json_path = tmp_path / "args.json"
    json_path.write_text(json.dumps(config))
    run_pretraining.main([str(json_path)])
    assert (tmp_path / "json" / "README.md").exists()
