"""
Run by `torchrun --nproc_per_node 2` from `test_sharded_ema.py`: three data2vec steps of a tiny text model on two CPU
processes (gloo), the student and the teacher either replicated (DDP) or sharded per layer with FSDP2
(`fully_shard`), then the gathered weights and the losses are saved by rank 0.

    python -m torch.distributed.run --nproc_per_node 2 tests/sharded_ema_worker.py {ddp,fsdp} OUTPUT.pt
"""

import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

from d2v_hf import Data2VecForPretraining, Data2VecPretrainingConfig
from d2v_hf.backbones import encoder_layers
from d2v_hf.recipes import tiny_backbone_config


def main(mode: str, output: str, steps: int = 3, global_batch: int = 8) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    backbone = tiny_backbone_config(
        "text", vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pad_token_id=1,
    )  # fmt: skip
    config = Data2VecPretrainingConfig.from_preset(
        "text", backbone, average_top_k_layers=2, mask_token_id=3, ema_decay=0.9, ema_end_decay=0.99,
        ema_anneal_end_step=10,
    )  # fmt: skip
    model = Data2VecForPretraining(config)
    if mode == "fsdp":  # student and teacher layers wrapped alike, the rest (embeddings, head) in the root group
        mesh = init_device_mesh("cpu", (world,))
        for layer in list(encoder_layers(model.student)) + list(encoder_layers(model.teacher)):
            fully_shard(layer, mesh=mesh)
        wrapped = fully_shard(model, mesh=mesh)
    else:
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.AdamW(wrapped.parameters(), lr=1e-2)
    generator, losses, per_rank = torch.Generator().manual_seed(0), [], global_batch // world
    for _ in range(steps):
        input_ids = torch.randint(5, 100, (global_batch, 16), generator=generator)
        mask = torch.rand(global_batch, 16, generator=generator) < 0.3
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        loss = wrapped(input_ids=input_ids[mine], mask=mask[mine]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.ema_step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(float(mean) / world)
    state = {
        name: (tensor.full_tensor() if isinstance(tensor, DTensor) else tensor).detach().clone()
        for name, tensor in model.state_dict().items()
    }
    sharded = sum(isinstance(p, DTensor) for p in model.teacher.parameters())
    if rank == 0:
        torch.save({"losses": losses, "state": state, "sharded_teacher_params": sharded}, output)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
