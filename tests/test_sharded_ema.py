"""The EMA teacher under FSDP2 on two CPU processes (gloo): sharded student and teacher give the DDP run, and a
sharded checkpoint resumes it exactly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from .fixtures import free_port, run_processes, torchrun_command


def run(wrapping: str, output: Path, *options: str) -> dict:
    worker = Path(__file__).with_name("sharded_ema_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = run_processes(torchrun_command(2) + [str(worker), wrapping, str(output), *options], 300, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return torch.load(output)


def assert_same_run(run, reference):
    assert run["losses"] == pytest.approx(reference["losses"], rel=1e-5, abs=1e-6)
    assert set(run["state"]) == set(reference["state"])
    for name, tensor in reference["state"].items():
        torch.testing.assert_close(run["state"][name], tensor, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.slow
@pytest.mark.parametrize(
    "modality, mode", [("text", "data2vec"), ("vision", "data2vec2"), ("audio", "data2vec")]
)  # fmt: skip
def test_fsdp2_sharded_teacher_equals_ddp(tmp_path, modality, mode):
    options = ("--modality", modality, "--mode", mode)
    ddp = run("ddp", tmp_path / "ddp.pt", *options, "--export", str(tmp_path / "ddp-student"))
    fsdp = run("fsdp", tmp_path / "fsdp.pt", *options, "--export", str(tmp_path / "fsdp-student"))
    assert fsdp["sharded_teacher_params"] > 0 and ddp["sharded_teacher_params"] == 0  # the teacher was sharded
    assert_same_run(fsdp, ddp)
    # the teachers moved (the EMA ran on the shards) and differ from the students
    teacher = {k[len("teacher.") :]: v for k, v in fsdp["state"].items() if k.startswith("teacher.")}
    student = {k[len("student.") :]: v for k, v in fsdp["state"].items() if k.startswith("student.")}
    assert any(not torch.equal(tensor, student[name]) for name, tensor in teacher.items())
    # the sharded run's student, gathered and exported, is the DDP run's exported student (an ordinary checkpoint)
    exported, reference = (load_file(tmp_path / f"{run}-student" / "model.safetensors") for run in ("fsdp", "ddp"))
    assert set(exported) == set(reference) and not (tmp_path / "fsdp-student-refused").exists()
    for name, tensor in reference.items():
        torch.testing.assert_close(exported[name], tensor, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.slow
def test_fsdp2_sharded_checkpoint_resumes_exactly(tmp_path):
    """Save after 2 of 4 steps with accelerate's FSDP functions (what the Trainer calls), resume in new processes:
    the losses and the gathered student, teacher and EMA count of the uninterrupted run."""
    uninterrupted = run("fsdp", tmp_path / "whole.pt", "--steps", "4")
    checkpoint = tmp_path / "checkpoint"
    first = run("fsdp", tmp_path / "first.pt", "--steps", "4", "--stop_after", "2", "--checkpoint", str(checkpoint))
    assert len(first["losses"]) == 2 and (checkpoint / "pytorch_model_fsdp_0" / ".metadata").is_file()
    resumed = run("fsdp", tmp_path / "resumed.pt", "--steps", "4", "--resume", str(checkpoint))
    assert_same_run(resumed, uninterrupted)
    assert int(resumed["state"]["ema_num_updates"]) == 4


@pytest.mark.parametrize(
    "modality, model_type",
    [("text", None), ("text", "bert"), ("vision", None), ("vision", "vit"), ("audio", None), ("audio", "hubert")],
)
def test_fsdp_wraps_the_backbone_layer_class(modality, model_type):
    """accelerate's TRANSFORMER_BASED_WRAP wraps `_no_split_modules`: the backbone's layer class only (wav2vec 2.0
    lists none itself; BERT-like backbones list their embeddings too, which accelerate's FSDP2 cannot wrap along with
    the input embeddings it wraps itself), in the student and the teacher alike."""
    from d2v_hf import Data2VecForPretraining
    from d2v_hf.backbones import encoder_layers

    from .fixtures import tiny_config

    model = Data2VecForPretraining(tiny_config(modality, model_type=model_type))
    for backbone in (model.student, model.teacher):
        assert {type(layer).__name__ for layer in encoder_layers(backbone)} == set(model._no_split_modules)


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
