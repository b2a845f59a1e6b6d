"""
Memory per GPU of the model states of data2vec pretraining (student, teacher, head, gradients, AdamW moments, the EMA's
fp32 master) under each distributed setup of `examples/accelerate_configs/`, counted from the parameters of the base
and large backbones (built on the meta device, nothing is allocated). Activations (which grow with the batch) and the
frameworks' communication buffers come on top: `benchmarks/gpu_suite.sh` measures peak memory on a GPU.

    python benchmarks/memory_per_gpu.py --num_gpus 8 --output docs/memory_per_gpu.md

What each setup holds per GPU, with T the trainable parameters (student + head), P the teacher's, N the GPUs, all
training in bf16 mixed precision with AdamW:
- DDP: fp32 weights of both (4T + 4P), fp32 gradients (4T) and DDP's gradient buckets (another 4T), AdamW's two fp32
  moments (8T).
- FSDP2 (fp32 shards, bf16 compute): the DDP states without buckets, divided by N, plus what is gathered at once: the
  root group (embeddings, head: everything outside the encoder layers) in bf16 and two layers in bf16 (the running
  one and the prefetched one) with one layer's fp32 gradient before its reduce-scatter.
- DeepSpeed ZeRO-2 (bf16 module): bf16 weights of both (2T + 2P) and the teacher's fp32 EMA master (4P, whole on every
  GPU), then fp32 master weights, moments and bf16 gradients of T divided by N (4T + 8T + 2T).
- DeepSpeed ZeRO-3: all of ZeRO-2's divided by N except the EMA master (4P whole), plus during each EMA update both
  models gathered in bf16 (2T + 2P).
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from d2v_hf import Data2VecForPretraining, Data2VecPretrainingConfig
from d2v_hf.backbones import encoder_layers
from d2v_hf.recipes import tiny_backbone_config


GIB = 2**30
# the large sizes of the data2vec papers (24 layers of width 1024); the base ones are the presets'
LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
SETUPS = ("DDP", "FSDP2", "ZeRO-2", "ZeRO-3")


@dataclass
class ParameterCounts:
    """Numbers of parameters (elements) of one pretraining model."""

    trainable: int  # student + head (+ 2.0 decoder)
    teacher: int
    root: int  # outside the encoder layers of student and teacher: FSDP's root group
    layer: int  # one encoder layer: FSDP's unit
    frozen: int = 0  # student weights that are not trained (the text recipes' zero token-type embeddings)

    @classmethod
    def of(cls, model: Data2VecForPretraining) -> "ParameterCounts":
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        teacher = sum(p.numel() for p in model.teacher.parameters())
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad) - teacher
        in_layers = sum(p.numel() for b in (model.student, model.teacher) for p in encoder_layers(b).parameters())
        layer = sum(p.numel() for p in encoder_layers(model.student)[0].parameters())
        return cls(trainable, teacher, trainable + frozen + teacher - in_layers, layer, frozen)


def count_parameters(modality: str, size: str, mode: str = "data2vec") -> ParameterCounts:
    """Builds the pretraining model of `modality` at `size` (base, large or tiny) on the meta device and counts."""
    config = Data2VecPretrainingConfig.from_preset(modality, mode=mode)
    if size == "large":
        backbone = type(config.backbone_config)(**{**config.backbone_config.to_dict(), **LARGE})
        config = Data2VecPretrainingConfig.from_preset(modality, backbone, mode=mode)
    elif size == "tiny":  # 4 layers, fewer than the preset's top-K (K does not change the parameter count)
        backbone = tiny_backbone_config(modality)
        config = Data2VecPretrainingConfig.from_preset(modality, backbone, mode=mode, average_top_k_layers=2)
    elif size != "base":
        raise ValueError(f"size {size!r}; expected base, large or tiny.")
    with torch.device("meta"):
        model = Data2VecForPretraining(config)
    return ParameterCounts.of(model)


def bytes_per_gpu(counts: ParameterCounts, setup: str, num_gpus: int) -> dict[str, float]:
    """Bytes of each kind of model state per GPU (see the module docstring for what each setup holds)."""
    t, p, n = counts.trainable, counts.teacher, num_gpus
    w = t + counts.frozen  # the student's (and head's) weights, trained or not
    if setup == "DDP":
        return {"weights": 4 * (w + p), "gradients": 8 * t, "optimizer": 8 * t}
    if setup == "FSDP2":
        gathered = 2 * counts.root + 2 * 2 * counts.layer + 4 * counts.layer
        return {"weights": 4 * (w + p) / n, "gradients": 4 * t / n, "optimizer": 8 * t / n, "gathered": gathered}
    if setup == "ZeRO-2":
        return {"weights": 2 * (w + p) + 4 * p, "gradients": 2 * t / n, "optimizer": 12 * t / n}
    if setup == "ZeRO-3":
        states = {"weights": 2 * (w + p) / n + 4 * p, "gradients": 2 * t / n, "optimizer": 12 * t / n}
        return {**states, "gathered": 2 * (w + p)}
    raise ValueError(f"setup {setup!r}; expected one of {SETUPS}.")


def table(num_gpus: int, sizes=("base", "large"), modalities=("text", "vision", "audio")) -> str:
    counts = {(m, s): count_parameters(m, s) for m in modalities for s in sizes}
    columns = [f"{m} {s}" for m in modalities for s in sizes]
    lines = [
        f"Model states per GPU in GiB, {num_gpus} GPUs, bf16 mixed precision, AdamW, data2vec 1.0: weights of "
        "student, head and teacher, gradients, AdamW moments, the EMA's fp32 master where the teacher is bf16; in "
        "brackets the part of the total that is gathered only while a layer runs (FSDP2) or during the EMA update "
        "(ZeRO-3). Activations and communication buffers come on top. What each setup holds: the docstring of "
        "benchmarks/memory_per_gpu.py.",
        "",
        "| | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
        "| parameters (student + head / teacher), M | "
        + " | ".join(f"{c.trainable / 1e6:.0f} / {c.teacher / 1e6:.0f}" for c in counts.values())
        + " |",
    ]
    for setup in SETUPS:
        cells = []
        for c in counts.values():
            states = bytes_per_gpu(c, setup, num_gpus)
            total = sum(states.values()) / GIB
            gathered = states.get("gathered", 0) / GIB
            cells.append(f"{total:.1f}" + (f" ({gathered:.1f})" if gathered else ""))
        lines.append(f"| {setup} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_gpus", type=int, default=8, help="GPUs the states are sharded over.")
    parser.add_argument("--output", default=None, help="Also write the table (markdown) to this file.")
    args = parser.parse_args(argv)
    if args.num_gpus < 1:
        parser.error(f"--num_gpus {args.num_gpus} must be >= 1.")
    return args


def main(argv=None) -> str:
    args = parse_args(argv)
    text = table(args.num_gpus)
    print(text)
    if args.output:
        command = f"python benchmarks/memory_per_gpu.py --num_gpus {args.num_gpus} --output {args.output}"
        Path(args.output).write_text(f"<!-- generated by: {command} -->\n\n{text}")
    return text


if __name__ == "__main__":
    main()
