"""
Run by `torchrun --nproc_per_node 2` from `test_sharded_ema.py`: data2vec steps of a tiny model on two CPU processes
(gloo), the student and the teacher either replicated (DDP) or sharded with accelerate's own FSDP2 preparation
(`fsdp2_prepare_model`, what the Trainer applies with examples/accelerate_configs/fsdp2.yaml; accelerate runs FSDP on
GPUs only, so a stand-in gives it the Accelerator fields it reads); rank 0 saves the gathered weights and the losses.

With `--stop_after K --checkpoint DIR` the run saves a sharded checkpoint after K steps with accelerate's own FSDP
functions (`save_fsdp_model` / `save_fsdp_optimizer`, SHARDED_STATE_DICT: what the Trainer calls under FSDP) plus each
process's RNG state, and stops; `--resume DIR` starts fresh processes from it and runs the remaining steps.

    python -m torch.distributed.run --nproc_per_node 2 tests/sharded_ema_worker.py {ddp,fsdp} OUTPUT.pt [options]
"""

import argparse
import faulthandler
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
from accelerate import PartialState
from accelerate.utils import FullyShardedDataParallelPlugin
from accelerate.utils.fsdp_utils import (
    fsdp2_prepare_model,
    load_fsdp_model,
    load_fsdp_optimizer,
    save_fsdp_model,
    save_fsdp_optimizer,
)
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests` as a package, run as a script

from d2v_hf import Data2VecForPretraining  # noqa: E402
from d2v_hf.backbones import encoder_layers  # noqa: E402
from tests.fixtures import tiny_config, tiny_inputs  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("wrapping", choices=["ddp", "fsdp"])
    parser.add_argument("output")
    parser.add_argument("--modality", default="text", choices=["text", "vision", "audio"])
    parser.add_argument("--mode", default="data2vec", choices=["data2vec", "data2vec2"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--global_batch", type=int, default=8)
    parser.add_argument("--stop_after", type=int, default=None)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--export", default=None, help="Also export the student to this folder.")
    return parser.parse_args(argv)


def build(args, world: int):
    torch.manual_seed(0)
    overrides = {"ema_decay": 0.9, "ema_end_decay": 0.99, "ema_anneal_end_step": 10}
    if args.mode == "data2vec2":
        overrides.update(mode="data2vec2", clone_batch=2)
    model = Data2VecForPretraining(tiny_config(args.modality, **overrides))
    if args.wrapping == "fsdp":
        # accelerate's own FSDP2 wrapping, as the Trainer applies it with examples/accelerate_configs/fsdp2.yaml
        # (TRANSFORMER_BASED_WRAP on `_no_split_modules`: student and teacher layers alike, then the input
        # embeddings, then the root); it reads these fields of the Accelerator (`device` since accelerate 1.16)
        plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
        accelerator = SimpleNamespace(
            state=SimpleNamespace(fsdp_plugin=plugin),
            mixed_precision="no",
            is_main_process=dist.get_rank() == 0,
            device=torch.device("cpu"),
        )
        wrapped = fsdp2_prepare_model(accelerator, model)
        layers = list(encoder_layers(model.student)) + list(encoder_layers(model.teacher))
        assert all(isinstance(layer, FSDPModule) for layer in layers), "the layers are not FSDP units"
    else:
        wrapped = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    return model, wrapped, torch.optim.AdamW(wrapped.parameters(), lr=1e-2)


def fsdp_checkpoint_functions(accelerator: PartialState):
    """
    accelerate's FSDP2 checkpoint functions, as the Trainer calls them. They read the process fields of the
    Accelerator, which the `PartialState` has (accelerate runs FSDP on GPUs only: no FSDP Accelerator on CPU).
    """
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, state_dict_type="SHARDED_STATE_DICT")

    def save(model, optimizer, folder):
        save_fsdp_model(plugin, accelerator, model, folder)
        save_fsdp_optimizer(plugin, accelerator, optimizer, model, folder)

    def load(model, optimizer, folder):
        load_fsdp_model(plugin, accelerator, model, folder)
        load_fsdp_optimizer(plugin, accelerator, optimizer, model, folder)

    return save, load


def export(model, wrapped, rank: int, folder: str) -> None:
    """
    The student written as one ordinary checkpoint: gathered on every process with the options accelerate's
    `get_state_dict` uses under FSDP2 (what `trainer.student_state_dict()` calls), written by process 0. Without the
    gathered weights `export_student` refuses the sharded student.
    """
    if sharded := any(isinstance(p, DTensor) for p in model.student.parameters()):
        try:
            model.export_student(folder + "-refused")
        except ValueError as err:
            assert "sharded" in str(err), err
        else:
            raise AssertionError("export_student wrote a sharded student")
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, cpu_offload=True)
    state = get_model_state_dict(wrapped, options=options) if sharded else model.state_dict()
    student = {name[len("student.") :]: t for name, t in state.items() if name.startswith("student.")}
    if rank == 0:
        model.export_student(folder, state_dict=student)


def main(args) -> None:
    # a process still running after 240 s (the test waits 300; WORKER_HANG_S sets it for a loop that hunts a rare
    # hang) prints every thread's stack and exits, so that a hang fails the test with where it hung, not a bare timeout
    faulthandler.dump_traceback_later(float(os.environ.get("WORKER_HANG_S", 240)), exit=True)
    accelerator = PartialState(cpu=True)  # the gloo process group
    rank, world = dist.get_rank(), dist.get_world_size()
    model, wrapped, optimizer = build(args, world)
    save, load = fsdp_checkpoint_functions(accelerator)
    start, losses = 0, []
    if args.resume:
        load(wrapped, optimizer, args.resume)
        resumed = torch.load(os.path.join(args.resume, f"rng_state_{rank}.pth"), weights_only=False)
        torch.set_rng_state(resumed["rng"])
        start, losses = resumed["step"], resumed["losses"]
    per_rank = args.global_batch // world
    mine = slice(rank * per_rank, (rank + 1) * per_rank)
    for step in range(start, args.steps):
        # the global batch of each step depends on the step only, so a resumed run sees the same data
        inputs = tiny_inputs(model.config, batch_size=args.global_batch, seed=step)
        if args.mode == "data2vec2":
            inputs.pop("mask")  # drawn by the model (M masked copies per sample)
        loss = wrapped(**{name: value[mine] for name, value in inputs.items()}).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.ema_step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(float(mean) / world)
        if args.stop_after is not None and step + 1 == args.stop_after:
            save(wrapped, optimizer, args.checkpoint)
            state = {"rng": torch.get_rng_state(), "step": step + 1, "losses": losses}
            torch.save(state, os.path.join(args.checkpoint, f"rng_state_{rank}.pth"))
            break
    state = {
        name: (tensor.full_tensor() if isinstance(tensor, DTensor) else tensor).detach().clone()
        for name, tensor in model.state_dict().items()
    }
    sharded = sum(isinstance(p, DTensor) for p in model.teacher.parameters())
    if args.export:
        export(model, wrapped, rank, args.export)
    if rank == 0:
        torch.save({"losses": losses, "state": state, "sharded_teacher_params": sharded}, args.output)
    dist.barrier()  # both processes are done; the process group is not torn down (see below)


if __name__ == "__main__":
    main(parse_args())
    # skip the process group's and the interpreter's teardown: destroying DDP's reducer there can deadlock with
    # gloo's worker thread (it waits for the GIL the exiting main thread holds), and a run that had written all its
    # outputs hung once in CI on a loaded machine after its last write (destroy_process_group was then still called);
    # the barrier above already waits for both processes, and exiting ends gloo's threads with them
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
