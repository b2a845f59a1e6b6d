"""Two CPU processes with DDP: identical teachers on both ranks, and the loss of a one-process run."""

import json
import os
import sys

import pytest
import torch
from safetensors.torch import load_file

from .fixtures import (
    TINY_RUN_OVERRIDES,
    accelerate_launch_command,
    example_script_path,
    run_processes,
    write_word_corpus,
)


pytestmark = pytest.mark.slow


def run(command, output_dir, per_device_batch_size, corpus):
    args = [
        str(example_script_path("run_pretraining")),
        "--use_cpu",
        "--modality=text",
        "--model_size=tiny",
        f"--config_overrides={TINY_RUN_OVERRIDES}",
        f"--train_file={corpus}",
        "--train_tokenizer",
        "--tokenizer_vocab_size=300",
        "--max_seq_length=32",
        f"--output_dir={output_dir}",
        f"--per_device_train_batch_size={per_device_batch_size}",
        "--learning_rate=1e-3",
        "--logging_steps=1",
        "--max_steps=3",
        "--eval_strategy=no",
        "--save_strategy=no",
        "--train_sampling_strategy=sequential",
        "--seed=0",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = run_processes(command + args, 600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return [e["loss"] for e in history if "loss" in e], json.loads((output_dir / "all_results.json").read_text())


def test_two_processes_match_one_process(tmp_path):
    corpus = write_word_corpus(tmp_path / "corpus.txt")
    two_losses, two = run(accelerate_launch_command(2), tmp_path / "two", 4, corpus)
    one_losses, one = run([sys.executable], tmp_path / "one", 8, corpus)
    assert two["teacher_ranks_identical"] == 1.0 and "teacher_ranks_identical" not in one
    assert two_losses == pytest.approx(one_losses, rel=1e-5)
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5, msg=key)
