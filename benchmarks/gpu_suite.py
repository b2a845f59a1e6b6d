"""
Every throughput measurement in one call: the three modalities, every step variant ((a) Hugging Face's own
pretraining model, (b) data2vec 1.0, (c) data2vec 2.0, (d) the straightforward 1.0 step), torch.compile off and on,
peak memory, the 2.0 teacher amortisation and the cost of each piece of the 2.0 forward (sparse student and its
gather, the decoder's scatter and convolutions, the teacher), and the speed levers of the 1.0 step, each alone and
together (a bf16 teacher copy, fused AdamW, gradient checkpointing at twice the batch, all of them with
torch.compile), each against the straightforward step (d) measured in the same process. Writes one markdown table
per run and `README.md` (the hardware line and the ratios of (b) and (c) to (d) and to Hugging Face's model (a))
into a folder.

# one GPU, base size, bf16, the sizes of docs/benchmarks.md (aimed at under 8 minutes on an H100/H200)
bash benchmarks/gpu_suite.sh outputs/gpu_suite
# the same code at tiny size on CPU, torch.compile with its "eager" backend (CI runs this)
bash benchmarks/gpu_suite.sh outputs/gpu_suite_smoke --smoke
"""

import argparse
import gc
from pathlib import Path

import torch

from measurement import hardware_line, measure_matmul_flops
from reference_steps import (
    VARIANTS,
    BenchmarkSetup,
    data2vec2_breakdown,
    format_table,
    run_benchmark,
    teacher_amortisation,
)


MODALITIES = ("text", "audio", "vision")
# the levers of the data2vec 1.0 step: (name, BenchmarkSetup fields); the batch factor doubles the batch
LEVERS = (
    ("none", {}),
    ("bf16 teacher copy", {"teacher_dtype": "bf16"}),
    ("fused AdamW", {"fused_adamw": True}),
    ("gradient checkpointing, 2x batch", {"gradient_checkpointing": True, "batch_factor": 2}),
    ("all of them + torch.compile", {"teacher_dtype": "bf16", "fused_adamw": True, "compile": True}),
)


def levers_table(modality: str, batch_size, length, backend: str, common: dict) -> str:
    """Each lever alone and together: (b) data2vec 1.0 against (d) the straightforward step, same process."""
    lines = [
        "| lever | (b) tokens/s | (d) tokens/s | (b) vs (d) | (b) peak memory (MiB) | (b) loss |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, fields in LEVERS:
        fields = dict(fields)
        factor = fields.pop("batch_factor", 1)
        setup = BenchmarkSetup(modality=modality, batch_size=batch_size, length=length, compile_backend=backend,
                               **{**common, **fields})  # fmt: skip
        if factor != 1:
            setup = BenchmarkSetup(**{**setup.__dict__, "batch_size": setup.batch_size * factor})
        results = {r.variant: r for r in run_benchmark(setup, ("straightforward", "data2vec"))}
        fast, reference = results["data2vec"], results["straightforward"]
        lines.append(
            f"| {name} | {fast.tokens_per_s:,.0f} | {reference.tokens_per_s:,.0f} | "
            f"{fast.tokens_per_s / reference.tokens_per_s:.2f}x | {fast.peak_memory_bytes / 2**20:,.0f} | "
            f"{fast.loss:.4f} |"
        )
        del results
        gc.collect()
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="where the tables go (created)")
    parser.add_argument("--smoke", action="store_true", help="tiny models on CPU, compile backend 'eager', 1 step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (median reported)")
    parser.add_argument("--peak_tflops", type=float, default=989.0, help="bf16 dense peak of the GPU (H100/H200)")
    return parser.parse_args(argv)


def ratio(results, numerator: str, denominator: str) -> str:
    by_variant = {r.variant: r for r in results}
    if numerator not in by_variant or denominator not in by_variant:
        return "-"
    return f"{by_variant[numerator].tokens_per_s / by_variant[denominator].tokens_per_s:.2f}x"


def main(argv=None) -> Path:
    args = parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        torch.set_num_threads(1)
        common = dict(size="tiny", device="cpu", dtype="fp32", steps=1, warmup=1, clone_batch=2)
        shapes = {"text": (2, 16), "audio": (2, 4000), "vision": (2, 28)}
        peak = measure_matmul_flops("cpu", "fp32", size=256)
        backend = "eager"
    else:
        if not torch.cuda.is_available():
            raise ValueError("The GPU suite needs a CUDA device; --smoke runs it on CPU at tiny size.")
        common = dict(size="base", device="cuda", dtype="bf16", steps=args.steps, warmup=2, clone_batch=8)
        shapes = {modality: (None, None) for modality in MODALITIES}  # docs/benchmarks.md's shapes
        peak = args.peak_tflops * 1e12
        backend = "inductor"
    device = common["device"]
    summary = [
        "# GPU throughput suite" + (" (smoke run: tiny models on CPU)" if args.smoke else ""),
        "",
        f"Hardware: {hardware_line(device)}",
        f"Command: python benchmarks/gpu_suite.py --output_dir {args.output_dir}" + (" --smoke" if args.smoke else ""),
        "",
        "| modality | torch.compile | (b) 1.0 vs (d) straightforward | (c) 2.0 vs (d) | (b) vs (a) HF | (c) vs (a) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    summary_levers = []
    for modality in MODALITIES:
        batch_size, length = shapes[modality]
        for compiled in (False, True):
            setup = BenchmarkSetup(
                modality=modality,
                batch_size=batch_size,
                length=length,
                compile=compiled,
                compile_backend=backend,
                **common,
            )
            results = run_benchmark(setup, VARIANTS)
            name = f"{modality}_{'compiled' if compiled else 'eager'}"
            table = format_table(results, peak)
            header = f"{modality}, batch {setup.batch_size} x length {setup.length}, {setup.dtype}, compile={compiled}"
            (out / f"{name}.md").write_text(f"{header}\n\n{table}\n", encoding="utf-8")
            summary.append(
                f"| {modality} | {'on' if compiled else 'off'} | {ratio(results, 'data2vec', 'straightforward')} | "
                f"{ratio(results, 'data2vec2', 'straightforward')} | {ratio(results, 'data2vec', 'hf')} | "
                f"{ratio(results, 'data2vec2', 'hf')} |"
            )
            del results
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
        amortisation = teacher_amortisation(
            BenchmarkSetup(modality=modality, batch_size=batch_size, length=length, **common),
            clone_batches=(1, 2) if args.smoke else (1, 2, 4, 8),
        )
        (out / f"{modality}_amortisation.md").write_text(amortisation + "\n", encoding="utf-8")
        breakdown = data2vec2_breakdown(
            BenchmarkSetup(modality=modality, batch_size=batch_size, length=length, **common)
        )
        (out / f"{modality}_data2vec2_breakdown.md").write_text(breakdown + "\n", encoding="utf-8")
        levers = levers_table(modality, batch_size, length, backend, common)
        (out / f"{modality}_levers.md").write_text(f"{modality}, {common['dtype']}\n\n{levers}\n", encoding="utf-8")
        summary_levers.append(f"### {modality}\n\n{levers}\n")
    summary += ["", "## Speed levers of the data2vec 1.0 step (each alone, then together)", "", *summary_levers]
    summary += ["", "Per-run tables (tokens/s, step time, peak memory, FLOPs, MFU): the other files of this folder."]
    (out / "README.md").write_text("\n".join(summary) + "\n", encoding="utf-8")
    print("\n".join(summary))
    return out


if __name__ == "__main__":
    main()
