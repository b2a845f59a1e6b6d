"""
Pretraining throughput of (a) Hugging Face's own pretraining model of the backbone, (b) the data2vec 1.0 step of
d2v_hf, (c) the data2vec 2.0 step and (d) a straightforward data2vec 1.0 step, side by side in one
process with the same backbone size, batch, length and dtype. Prints a markdown table (and the 2.0 teacher
amortisation with --amortisation).

# CPU, tiny model (4 x 64), the default: well under a minute on 2 cores
python benchmarks/pretraining_throughput.py --modality text
# GPU, base model (12 x 768), sequence 512, batch 32, bf16 autocast
python benchmarks/pretraining_throughput.py --modality text --device cuda --size base --dtype bf16
"""

import argparse

import torch

from measurement import hardware_line, measure_matmul_flops
from reference_steps import (
    VARIANTS,
    BenchmarkSetup,
    flops_table,
    format_table,
    run_benchmark,
    teacher_amortisation,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modality", default="text", choices=["text", "audio", "vision"])
    parser.add_argument("--size", default="tiny", choices=["tiny", "base"], help="tiny: 4 x 64; base: 12 x 768")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16: autocast, fp32 weights")
    parser.add_argument("--batch_size", type=int, default=None, help="default: 8 (tiny) / 32 (base) for text")
    parser.add_argument(
        "--length", type=int, default=None, help="tokens (text), samples (audio) or image side (vision)"
    )
    parser.add_argument("--clone_batch", type=int, default=8, help="data2vec 2.0: masked copies per sample (M)")
    parser.add_argument(
        "--steps", type=int, default=3, help="timed steps per variant, interleaved (the median is reported)"
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    parser.add_argument(
        "--peak_tflops", type=float, default=None, help="default: 989 (H100 bf16) on CUDA, a measured matmul on CPU"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (not the straightforward d)")
    parser.add_argument(
        "--compile_regions", action="store_true", help="compile each repeated layer once instead (implies --compile)"
    )
    parser.add_argument("--fused_head_loss", action="store_true", help="data2vec 1.0: config.fused_head_loss")
    parser.add_argument("--gradient_checkpointing", action="store_true")
    parser.add_argument("--amortisation", action="store_true", help="also the 2.0 teacher cost for M in 1, 2, 4, 8")
    parser.add_argument(
        "--flops_only", action="store_true", help="only count the FLOPs of one step of each variant (no timing)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU: torch.set_num_threads (default 1: stable on shared machines; 0 keeps torch's default)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    if args.threads and torch.device(args.device).type == "cpu":
        torch.set_num_threads(args.threads)
    setup = BenchmarkSetup(
        modality=args.modality,
        size=args.size,
        batch_size=args.batch_size,
        length=args.length,
        device=args.device,
        dtype=args.dtype,
        clone_batch=args.clone_batch,
        steps=args.steps,
        warmup=args.warmup,
        compile=args.compile,
        compile_regions=args.compile_regions,
        fused_head_loss=args.fused_head_loss,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ValueError(f"--variants: unknown {unknown}; expected a subset of {VARIANTS}.")
    if args.flops_only:
        report = (
            f"FLOPs (FlopCounterMode, one forward + backward): {setup.modality}, {setup.size} backbone, batch "
            f"{setup.batch_size} x length {setup.length}\n\n{flops_table(setup, variants)}"
        )
        print(report)
        return report
    if args.peak_tflops is not None:
        peak, peak_source = args.peak_tflops * 1e12, f"--peak_tflops {args.peak_tflops}"
    elif torch.device(setup.device).type == "cuda":
        peak, peak_source = 989e12, "989 TFLOP/s (H100 SXM dense bf16)"
    else:
        peak = measure_matmul_flops(setup.device, setup.dtype)
        peak_source = f"{peak / 1e9:.1f} GFLOP/s measured on a 1024^3 {setup.dtype} matmul"
    results = run_benchmark(setup, variants)
    unit = {"text": "tokens", "audio": "20 ms feature frames", "vision": "patches"}[setup.modality]
    lines = [
        f"Hardware: {hardware_line(setup.device)}",
        f"Setup: {setup.modality}, {setup.size} backbone, batch {setup.batch_size} x length {setup.length}, "
        f"{setup.dtype}, median of {setup.steps} steps (variants interleaved step by step) after "
        f"{max(1, setup.warmup)} warm-up; tokens = {unit}; "
        f"MFU peak = {peak_source}; FLOPs counted by FlopCounterMode (forward + backward, teacher included)",
        "",
        format_table(results, peak),
    ]
    if args.amortisation:
        lines += ["", "data2vec 2.0 teacher amortisation:", "", teacher_amortisation(setup)]
    report = "\n".join(lines)
    print(report)
    return report


if __name__ == "__main__":
    main()
