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


def test_ema_refuses_teacher_and_student_sharded_differently():
    """A teacher shard paired with a differently sharded student would average the wrong values: a clear error."""
    script = """
import torch, torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard, distribute_tensor
from d2v_hf.ema import ema_update_
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:PORT", rank=0, world_size=1)
mesh = init_device_mesh("cpu", (1,))
teacher = distribute_tensor(torch.zeros(4, 2), mesh, [Shard(0)])
student = distribute_tensor(torch.ones(4, 2), mesh, [Replicate()])
try:
    ema_update_([(teacher, student)], [], 0.9)
except ValueError as err:
    print(err)
dist.destroy_process_group()
""".replace("PORT", str(free_port()))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "sharded differently" in result.stdout, result.stdout + result.stderr[-2000:]
