"""The data2vec teacher: EMA arithmetic and the decay schedule, as pure functions.

Hand-written, not `torch.optim.swa_utils.AveragedModel` / timm's `ModelEmaV2`: those average every parameter,
while the teacher must skip the parameters it shares with the student and keep an fp32 master for low-precision
teachers, in one fused `_foreach` update."""

import contextlib

import torch
from torch import nn
from torch.distributed.tensor import DTensor


def get_annealed_rate(start: float, end: float, step: int, total_steps: int) -> float:
    """
    fairseq's linear EMA ramp: `end - (end - start) * (1 - step / total_steps)`, clamped at `end` once
    `step >= total_steps` (and constant when `start == end` or `total_steps == 0`).
    """
    if step < 0:
        raise ValueError(f"step={step} must be >= 0.")
    if total_steps <= 0 or step >= total_steps or start == end:
        return end
    return end - (end - start) * (1.0 - step / total_steps)


def check_decay(decay: float) -> float:
    decay = float(decay)
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"EMA decay={decay} must be in [0, 1].")
    return decay


def split_shared_parameters(
    teacher: nn.Module, student: nn.Module, shared_prefixes: list[str]
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[tuple[torch.Tensor, torch.Tensor]]]:
    """
    Pairs `(teacher_param, student_param)` by name, split into the averaged ones and the shared ones (names that
    start with one of `shared_prefixes`). Buffers are returned with the shared ones: fairseq copies them verbatim.
    """
    student_params = dict(student.named_parameters())
    averaged, shared = [], []
    for name, teacher_param in teacher.named_parameters():
        pair = (teacher_param, student_params[name])
        (shared if any(name.startswith(prefix) for prefix in shared_prefixes) else averaged).append(pair)
    student_buffers = dict(student.named_buffers())
    for name, teacher_buffer in teacher.named_buffers():
        shared.append((teacher_buffer, student_buffers[name]))
    return averaged, shared


@torch.no_grad()
def ema_update_(
    averaged: list[tuple[torch.Tensor, torch.Tensor]],
    shared: list[tuple[torch.Tensor, torch.Tensor]],
    decay: float,
    fp32_master: list[torch.Tensor] | None = None,
) -> None:
    """
    In place: `teacher <- decay * teacher + (1 - decay) * student` for the averaged pairs, `teacher <- student` for
    the shared ones. The arithmetic runs in fp32: on the teacher itself when it is fp32, else on `fp32_master`
    (one fp32 tensor per averaged pair), which is then cast into the teacher.
    """
    decay = check_decay(decay)
    averaged, shared = _local_shards(averaged), _local_shards(shared)
    if averaged:
        teachers = [t for t, _ in averaged]
        students = [s.detach().float() if s.dtype != torch.float32 else s.detach() for _, s in averaged]
        targets = [_local(m) for m in fp32_master] if fp32_master is not None else teachers
        if any(t.dtype != torch.float32 for t in targets):
            raise ValueError("ema_update_ needs fp32 accumulators: pass `fp32_master` for a low-precision teacher.")
        # one fused multi-tensor kernel per op instead of a Python loop over hundreds of tensors
        torch._foreach_mul_(targets, decay)
        torch._foreach_add_(targets, students, alpha=1.0 - decay)
        if fp32_master is not None:
            torch._foreach_copy_(teachers, targets)
    if shared:
        torch._foreach_copy_([t for t, _ in shared], [s.detach() for _, s in shared])


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _local_shards(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """
    Under FSDP2 parameters are `DTensor` shards (buffers stay plain tensors): each process updates its own shard of
    the teacher from the matching shard of the student, with no communication (as DINOv2 does), which needs both to
    be sharded alike (the same wrapping of student and teacher).
    """
    local = []
    for teacher, student in pairs:
        if isinstance(teacher, DTensor) or isinstance(student, DTensor):
            same = isinstance(teacher, DTensor) and isinstance(student, DTensor)
            if not same or teacher.placements != student.placements or teacher.device_mesh != student.device_mesh:
                raise ValueError(
                    "The teacher and the student are sharded differently (FSDP): wrap the student's and the "
                    "teacher's layers alike (e.g. accelerate's TRANSFORMER_BASED_WRAP on the backbone's layer class)."
                )
        local.append((_local(teacher), _local(student)))
    return local


def is_zero3_partitioned(module: nn.Module) -> bool:
    """Whether DeepSpeed ZeRO-3 has partitioned the module's parameters (each process holds a slice of each)."""
    return any(hasattr(parameter, "ds_id") for parameter in module.parameters())


def is_sharded(module: nn.Module) -> bool:
    """Whether FSDP2 (`DTensor` shards) or DeepSpeed ZeRO-3 (partitions) splits the module's weights over processes."""
    return is_zero3_partitioned(module) or any(isinstance(p, DTensor) for p in module.parameters())


def gathered_parameters(modules: list[nn.Module], modify: bool = False) -> contextlib.AbstractContextManager:
    """
    Under DeepSpeed ZeRO-3, a context in which the modules' parameters are whole on every process (with `modify`,
    the values process 0 writes are partitioned again on exit: TRL's `SyncRefModelCallback` pattern); otherwise
    nothing. Every process must enter it (it is a collective).
    """
    if not any(is_zero3_partitioned(module) for module in modules):
        return contextlib.nullcontext()
    import deepspeed

    parameters = [parameter for module in modules for parameter in module.parameters()]
    return deepspeed.zero.GatheredParameters(parameters, modifier_rank=0 if modify else None)


__all__ = [
    "check_decay",
    "ema_update_",
    "gathered_parameters",
    "get_annealed_rate",
    "is_sharded",
    "is_zero3_partitioned",
    "split_shared_parameters",
]
