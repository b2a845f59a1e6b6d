"""
DeepSpeed ZeRO-2 and ZeRO-3 through `run_pretraining.py` on two CPU processes (gloo), with the accelerate config files
of `examples/accelerate_configs/`: the DDP run's weights (student, teacher, exported student), an exact resume, and
the refusal of a ZeRO-3 setup that could not save the model.
"""

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from .fixtures import (
    REPO,
    TINY_RUN_OVERRIDES,
    accelerate_launch_command,
    example_script_path,
    run_processes,
    torchrun_command,
    write_word_corpus,
)


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed"),
]
CONFIGS = REPO / "examples" / "accelerate_configs"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}


def arguments(corpus, output_dir, *extra) -> list[str]:
    return [
        "--modality=text", "--model_size=tiny", f"--config_overrides={TINY_RUN_OVERRIDES}", f"--train_file={corpus}",
        "--train_tokenizer", "--tokenizer_vocab_size=300", "--max_seq_length=32", f"--output_dir={output_dir}",
        "--per_device_train_batch_size=4", "--learning_rate=1e-3", "--logging_steps=1", "--max_steps=3",
        "--eval_strategy=no", "--train_sampling_strategy=sequential", "--seed=0", "--report_to=none", *extra,
    ]  # fmt: skip


def run(command: list[str]) -> subprocess.CompletedProcess:
    return run_processes(command, 600, env=ENV)


def deepspeed_run(config: str, corpus, output_dir, *extra, processes: int = 2) -> subprocess.CompletedProcess:
    worker = [str(Path(__file__).with_name("deepspeed_worker.py")), str(CONFIGS / f"{config}.yaml"), "--"]
    return run(torchrun_command(processes) + worker + arguments(corpus, output_dir, *extra))


def assert_ok(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The DDP run and the ZeRO-2 / ZeRO-3 runs of the same 3 steps (global batch 8), each in its folder."""
    root = tmp_path_factory.mktemp("deepspeed")
    corpus = write_word_corpus(root / "corpus.txt")
    script = str(example_script_path("run_pretraining"))
    assert_ok(run(accelerate_launch_command(2) + [script, "--use_cpu"] + arguments(corpus, root / "ddp")))
    for stage in (2, 3):
        assert_ok(deepspeed_run(f"deepspeed_zero{stage}", corpus, root / f"zero{stage}"))
    return root


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_run_equals_ddp(runs, stage):
    """Weights after 3 steps, teacher and EMA count included, and the exported student: the DDP run's. ZeRO-3
    partitions every parameter (the worker sets the persistence threshold to 0), so its EMA runs on gathered ones."""
    for name in ("model.safetensors", "student/model.safetensors"):
        reference, weights = load_file(runs / "ddp" / name), load_file(runs / f"zero{stage}" / name)
        assert set(weights) == set(reference)
        for key, tensor in reference.items():
            torch.testing.assert_close(weights[key], tensor, atol=1e-6, rtol=1e-5, msg=f"{name}: {key}")
    weights = load_file(runs / f"zero{stage}" / "model.safetensors")
    assert int(weights["ema_num_updates"]) == 3
    key = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(weights[f"teacher.{key}"], weights[f"student.{key}"])  # the teacher moved by EMA
    results = json.loads((runs / f"zero{stage}" / "all_results.json").read_text())
    assert results["teacher_ranks_identical"] == 1.0


def test_zero3_resume_equals_the_uninterrupted_run(runs, tmp_path):
    """A ZeRO-3 run with a bf16 teacher (its fp32 EMA master gathered, saved in each checkpoint and restored) saves at
    step 2; resuming that checkpoint in new processes ends on the uninterrupted run's weights, bitwise."""
    corpus, bf16_teacher = runs / "corpus.txt", f"--config_overrides={TINY_RUN_OVERRIDES},teacher_dtype=bfloat16"
    assert_ok(deepspeed_run("deepspeed_zero3", corpus, tmp_path / "whole", "--save_steps=2", bf16_teacher))
    master = load_file(tmp_path / "whole" / "checkpoint-2" / "ema_fp32.safetensors")
    assert master and all(t.dtype == torch.float32 and t.numel() > 0 for t in master.values())  # whole, not slices
    folder = tmp_path / "resumed"
    folder.mkdir()
    shutil.copytree(tmp_path / "whole" / "checkpoint-2", folder / "checkpoint-2")
    extra = ("--save_steps=2", bf16_teacher, "--resume_from_checkpoint=last", "--log_level=info")
    result = deepspeed_run("deepspeed_zero3", corpus, folder, *extra)
    assert_ok(result)
    assert "Resuming training from checkpoint with epoch 0 and global step 2" in result.stdout + result.stderr
    reference, weights = load_file(tmp_path / "whole" / "model.safetensors"), load_file(folder / "model.safetensors")
    assert weights["teacher.encoder.layer.0.attention.self.query.weight"].dtype == torch.bfloat16
    for key, tensor in reference.items():
        torch.testing.assert_close(weights[key], tensor, atol=0, rtol=0, msg=key)


def test_zero3_that_cannot_save_the_model_is_refused_before_training(runs, tmp_path):
    config = tmp_path / "zero3_no_save.yaml"
    config.write_text(
        (CONFIGS / "deepspeed_zero3.yaml")
        .read_text()
        .replace("zero3_save_16bit_model: true", "zero3_save_16bit_model: false")
    )
    worker = [str(Path(__file__).with_name("deepspeed_worker.py")), str(config), "--"]
    result = run(torchrun_command(1) + worker + arguments(runs / "corpus.txt", tmp_path / "out"))
    assert result.returncode != 0
    assert "zero3_save_16bit_model: true" in result.stderr
    assert not (tmp_path / "out" / "checkpoint-1").exists()
