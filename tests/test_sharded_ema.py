"""The EMA teacher under FSDP2 on two CPU processes (gloo): sharded student and teacher give the DDP run."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(mode: str, output: Path) -> dict:
    worker = Path(__file__).with_name("sharded_ema_worker.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        command + [str(worker), mode, str(output)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return torch.load(output)


@pytest.mark.slow
def test_fsdp2_sharded_teacher_equals_ddp(tmp_path):
    ddp = run("ddp", tmp_path / "ddp.pt")
    fsdp = run("fsdp", tmp_path / "fsdp.pt")
    assert fsdp["sharded_teacher_params"] > 0 and ddp["sharded_teacher_params"] == 0  # the teacher was sharded
    assert fsdp["losses"] == pytest.approx(ddp["losses"], rel=1e-5, abs=1e-6)
    assert set(fsdp["state"]) == set(ddp["state"])
    for name, tensor in ddp["state"].items():
        torch.testing.assert_close(fsdp["state"][name], tensor, atol=1e-5, rtol=1e-5, msg=name)
    # the teachers moved (the EMA ran on the shards) and differ from the students
    teacher = fsdp["state"]["teacher.encoder.layer.0.attention.self.query.weight"]
    student = fsdp["state"]["student.encoder.layer.0.attention.self.query.weight"]
    assert not torch.equal(teacher, student)


@pytest.mark.parametrize("modality", ["text", "audio", "vision"])
def test_fsdp_wraps_the_backbone_layer_class(modality):
    """accelerate's TRANSFORMER_BASED_WRAP wraps `_no_split_modules`: the backbone's layers (wav2vec 2.0 lists none
    itself), in the student and the teacher alike."""
    from d2v_hf import Data2VecForPretraining
    from d2v_hf.backbones import encoder_layers

    from .fixtures import tiny_config

    model = Data2VecForPretraining(tiny_config(modality))
    for backbone in (model.student, model.teacher):
        assert {type(layer).__name__ for layer in encoder_layers(backbone)} <= set(model._no_split_modules)
