"""
Every throughput measurement in one call: the three modalities, every step variant ((a) Hugging Face's own
pretraining model, (b) data2vec 1.0, (c) data2vec 2.0, (d) the straightforward 1.0 step), torch.compile off and on,
peak memory, the 2.0 teacher amortisation and the cost of each piece of the 2.0 forward (sparse student and its
gather, the decoder's scatter and convolutions, the teacher), and the speed levers of the 1.0 step, each alone and
together (a bf16 teacher copy, fused AdamW, the fused head + loss, gradient checkpointing at twice the batch,
torch.compile whole or layer by layer, CUDA graphs), each against the straightforward step (d) measured in the same
process, sequence packing of a padded text corpus (`sequence_packing.py`), and last the profile of a few steps
(`profile_step.py`).

The sections run in order of importance (text first, eager before compiled, the 2.0 tables before the other
modalities compiled) within `--time_budget_s`; a section that would start after the budget is listed as skipped,
and a section that fails is listed with its error while the others go on. On one H200 the default budget covers
text (eager and compiled), every eager table and the 2.0 tables (about 7 minutes); compilation takes 40-60 s per
compiled model, so every section takes about 20 minutes (`--time_budget_s 1500`). Each table is written as soon
as it is measured: one markdown file per table and `README.md` (the hardware line, the ratios of (b) and (c) to (d)
and to Hugging Face's model (a), every lever table, the sections' wall-clock) in the output folder.

# one GPU, base size, bf16, the sizes of docs/benchmarks.md (the default budget: about 7 minutes on an H200)
bash benchmarks/gpu_suite.sh outputs/gpu_suite
# the same code at tiny size on CPU, torch.compile with its "eager" backend (CI runs this; no time budget: it
# tests the code of every section)
bash benchmarks/gpu_suite.sh outputs/gpu_suite_smoke --smoke
# every compiled variant compiled layer by layer: the same step, a fraction of the compile time (2.5x less on CPU)
bash benchmarks/gpu_suite.sh outputs/gpu_suite --compile_regions --time_budget_s 1500
"""

import argparse
import gc
import math
import sys
import time
import traceback
from pathlib import Path

import torch

from measurement import hardware_line, measure_matmul_flops
from profile_step import profile_step
from reference_steps import (
    ALL_LEVERS,
    VARIANTS,
    BenchmarkSetup,
    data2vec2_breakdown,
    format_table,
    run_benchmark,
    teacher_amortisation,
)
from sequence_packing import packing_table


MODALITIES = ("text", "vision", "audio")
EVERY_LEVER_COMPILED = {**ALL_LEVERS, "compile": True}
# the levers of the data2vec 1.0 step: (name, BenchmarkSetup fields); the batch factor doubles the batch
EAGER_LEVERS = (
    ("none", {}),
    ("bf16 teacher copy", {"teacher_dtype": "bf16"}),
    ("fused AdamW", {"fused_adamw": True}),
    ("fused head + loss", {"fused_head_loss": True}),
    ("gradient checkpointing, 2x batch", {"gradient_checkpointing": True, "batch_factor": 2}),
    ("bf16 teacher + fused AdamW + fused head + loss", ALL_LEVERS),
)
# "all of them + torch.compile" is (b) of the compiled variants table, whose row the levers table takes over
COMPILED_LEVERS = (
    ("all of them + torch.compile + CUDA graphs", {**EVERY_LEVER_COMPILED, "compile_mode": "reduce-overhead"}),
    ("all of them + regional torch.compile", {**EVERY_LEVER_COMPILED, "compile_regions": True}),
    ("torch.compile (+ fused head + loss: one graph)", {"compile": True, "fused_head_loss": True}),
)
# where the time goes (benchmarks/profile_step.py), last: (modality, variant, compiled with every lever)
PROFILES = (
    ("text", "data2vec", True),
    ("vision", "data2vec", False),
    ("vision", "hf", False),
    ("audio", "data2vec", True),
)
LEVER_HEADER = [
    "| lever | (b) tokens/s | (d) tokens/s | (b) vs (d) | (b) peak memory (MiB) | (d) peak memory (MiB) | (b) loss "
    "| graphs | (b) first step (s) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def lever_row(name: str, fast, reference, compiled: bool) -> str:
    """A levers-table row; `graphs` is 0 for a compiled step that dynamo left eager (e.g. its recompile limit)."""
    return (
        f"| {name} | {fast.tokens_per_s:,.0f} | {reference.tokens_per_s:,.0f} | "
        f"{fast.tokens_per_s / reference.tokens_per_s:.2f}x | {fast.peak_memory_bytes / 2**20:,.0f} | "
        f"{reference.peak_memory_bytes / 2**20:,.0f} | {fast.loss:.4f} | {fast.graphs if compiled else '-'} | "
        f"{fast.first_step_s:,.1f} |"
    )


def _free(device: str):
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", required=True, help="where the tables go (created)")
    parser.add_argument("--smoke", action="store_true", help="tiny models on CPU, compile backend 'eager', 1 step")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (median reported)")
    parser.add_argument("--peak_tflops", type=float, default=989.0, help="bf16 dense peak of the GPU (H100/H200)")
    parser.add_argument(
        "--time_budget_s",
        type=float,
        default=None,
        help="no section starts after this many seconds (skipped); default 450 on a GPU, none with --smoke, whose "
        "every section must run because it is the test of the suite's code",
    )
    parser.add_argument("--modalities", default=",".join(MODALITIES), help="comma-separated subset, in order")
    parser.add_argument(
        "--compile_regions",
        action="store_true",
        help="compile every compiled variant layer by layer (accelerate's compile_regions: each repeated layer "
        "compiled once, a fraction of the whole model's compile time); the levers table keeps its rows",
    )
    args = parser.parse_args(argv)
    if args.time_budget_s is None:
        # a smoke run on a loaded CI machine took over 450 s and skipped its last sections (failing its test)
        args.time_budget_s = math.inf if args.smoke else 450.0
    for flag in ("steps", "time_budget_s", "peak_tflops"):
        if not getattr(args, flag) > 0:
            raise ValueError(f"--{flag} {getattr(args, flag)}; expected a positive number.")
    args.modality_list = [m.strip() for m in args.modalities.split(",") if m.strip()]
    unknown = [m for m in args.modality_list if m not in MODALITIES]
    if unknown or not args.modality_list:
        raise ValueError(f"--modalities {args.modalities!r}; expected a subset of {list(MODALITIES)}.")
    if not args.smoke and not torch.cuda.is_available():
        raise ValueError("The GPU suite needs a CUDA device; --smoke runs it on CPU at tiny size.")
    return args


def ratio(results, numerator: str, denominator: str) -> str:
    by_variant = {r.variant: r for r in results}
    if numerator not in by_variant or denominator not in by_variant:
        return "-"
    return f"{by_variant[numerator].tokens_per_s / by_variant[denominator].tokens_per_s:.2f}x"


class Suite:
    """The output folder: each section's table as a file, and README.md rewritten after every section."""

    def __init__(self, out: Path, header: list[str], budget_s: float):
        self.out, self.header, self.budget_s = out, header, budget_s
        self.start = time.perf_counter()
        self.ratios = [
            "| modality | torch.compile | (b) 1.0 vs (d) straightforward | (c) 2.0 vs (d) | (b) vs (a) HF "
            "| (c) vs (a) |",
            "|---|---|---:|---:|---:|---:|",
        ]
        self.levers: dict[str, list[str]] = {}
        self.log = ["| section | wall-clock (s) | status |", "|---|---:|---|"]

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def section(self, name: str, function, *args) -> None:
        """Runs one section unless the budget is spent; an error is recorded, not raised (the rest still runs)."""
        if self.elapsed() > self.budget_s:
            self.log.append(f"| {name} | - | skipped: the time budget of {self.budget_s:.0f} s was spent |")
        else:
            start = time.perf_counter()
            # each section compiles its own models: without a reset, the entries of earlier compiles of the same
            # forward can reach dynamo's recompile limit, after which a step silently runs eager (seen in the smoke
            # suite after other compiled tests: graphs 0)
            torch._dynamo.reset()
            try:
                function(*args)
                status = "done"
            except Exception as error:  # noqa: BLE001 - one failing measurement must not lose the others
                traceback.print_exc()
                status = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"
            self.log.append(f"| {name} | {time.perf_counter() - start:,.1f} | {status} |")
        self.write_readme()

    def write(self, name: str, text: str) -> None:
        (self.out / name).write_text(text + "\n", encoding="utf-8")

    def add_lever_rows(self, modality: str, rows: list[str], dtype: str) -> None:
        """Appends to the modality's levers table (README and `{modality}_levers.md`)."""
        table = self.levers.setdefault(modality, [])
        table += rows
        self.write(f"{modality}_levers.md", "\n".join([f"{modality}, {dtype}", "", *LEVER_HEADER, *table]))

    def write_readme(self) -> None:
        lines = [*self.header, *self.ratios, "", "## Speed levers of the data2vec 1.0 step (alone, then together)", ""]
        lines.append(
            "(b) data2vec 1.0 with the lever, (d) the straightforward step, timed interleaved in the same process; "
            "graphs: the graphs torch.compile made of (b)'s step (1: no graph break; regional compilation makes one "
            "per compiled module and grad mode); first step: (b)'s warm-up step, its compilation included."
        )
        for modality, rows in self.levers.items():
            lines += ["", f"### {modality}", "", *LEVER_HEADER, *rows]
        lines += ["", "## Sections", "", *self.log, "", f"Total wall-clock: {self.elapsed():,.0f} s."]
        lines += ["", "Per-run tables (tokens/s, step time, peak memory, FLOPs, MFU): the other files of this folder."]
        self.write("README.md", "\n".join(lines))


def main(argv=None) -> Path:
    args = parse_args(argv)  # checked before anything is written
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    modalities = args.modality_list
    if args.smoke:
        torch.set_num_threads(1)
        common = dict(size="tiny", device="cpu", dtype="fp32", steps=1, warmup=1, clone_batch=2)
        shapes = {"text": (2, 16), "audio": (2, 4000), "vision": (2, 28)}
        peak = measure_matmul_flops("cpu", "fp32", size=256)
        backend, clone_batches = "eager", (1, 2)
        peak_line = f"MFU peak: {peak / 1e9:.1f} GFLOP/s measured on a 256^3 fp32 matmul"
    else:
        common = dict(size="base", device="cuda", dtype="bf16", steps=args.steps, warmup=2, clone_batch=8)
        shapes = {modality: (None, None) for modality in MODALITIES}  # docs/benchmarks.md's shapes
        peak = args.peak_tflops * 1e12
        measured = measure_matmul_flops("cuda", "bf16")
        backend, clone_batches = "inductor", (1, 2, 4, 8)
        peak_line = (
            f"MFU peak: {args.peak_tflops:.0f} TFLOP/s (--peak_tflops); an 8192^3 bf16 matmul ran at "
            f"{measured / 1e12:.0f} TFLOP/s here"
        )
    command = "python benchmarks/gpu_suite.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = [
        "# GPU throughput suite" + (" (smoke run: tiny models on CPU)" if args.smoke else ""),
        "",
        f"Hardware: {hardware_line(common['device'])}",
        f"Command: {command}",
        f"{peak_line}; {'bf16 autocast' if common['dtype'] == 'bf16' else 'fp32'}, median of {common['steps']} steps "
        f"after {common['warmup']} warm-up steps"
        + ("; every compiled variant compiled layer by layer (--compile_regions)" if args.compile_regions else ""),
        "",
    ]
    suite = Suite(out, header, args.time_budget_s)

    def setup_for(modality: str, batch_factor: int = 1, **fields) -> BenchmarkSetup:
        """The suite's setup of `modality` (its shape, backend and common fields) with `fields` set."""
        batch_size, length = shapes[modality]
        if args.compile_regions and fields.get("compile"):
            fields = {**fields, "compile_regions": True}
        setup = BenchmarkSetup(modality=modality, batch_size=batch_size, length=length, compile_backend=backend,
                               **{**common, **fields})  # fmt: skip
        if batch_factor == 1:
            return setup
        return BenchmarkSetup(**{**setup.__dict__, "batch_size": setup.batch_size * batch_factor})

    def main_table(modality: str, compiled: bool):
        # compiled, (b) runs with every lever (the levers table shows each alone); (d) stays the eager reference
        setup = setup_for(modality, **(EVERY_LEVER_COMPILED if compiled else {}))
        results = run_benchmark(setup, VARIANTS)
        name = f"{modality}_{'compiled' if compiled else 'eager'}"
        what = "(a), (b) with every lever and (c) compiled, (d) eager" if compiled else "eager"
        header = f"{modality}, batch {setup.batch_size} x length {setup.length}, {setup.dtype}, {what}"
        suite.write(f"{name}.md", f"{header}\n\n{format_table(results, peak)}")
        suite.ratios.append(
            f"| {modality} | {'on, (b) with every lever' if compiled else 'off'} | "
            f"{ratio(results, 'data2vec', 'straightforward')} | {ratio(results, 'data2vec2', 'straightforward')} | "
            f"{ratio(results, 'data2vec', 'hf')} | {ratio(results, 'data2vec2', 'hf')} |"
        )
        if compiled:
            by_variant = {r.variant: r for r in results}
            fast, reference = by_variant["data2vec"], by_variant["straightforward"]
            row = lever_row("all of them + torch.compile", fast, reference, compiled=True)
            suite.add_lever_rows(modality, [row], common["dtype"])
        del results
        _free(common["device"])

    def data2vec2_tables(modality: str):
        setup = setup_for(modality)
        suite.write(f"{modality}_amortisation.md", teacher_amortisation(setup, clone_batches=clone_batches))
        _free(common["device"])
        suite.write(f"{modality}_data2vec2_breakdown.md", data2vec2_breakdown(setup))
        _free(common["device"])

    def levers(modality: str, table):
        """Each lever: (b) data2vec 1.0 with it against (d) the straightforward step, timed interleaved."""
        chosen = [lever for lever in table if common["device"] == "cuda" or "CUDA graphs" not in lever[0]]
        for name, fields in chosen:  # one row at a time, so that a failing lever keeps the rows before it
            setup = setup_for(modality, **fields)
            results = {r.variant: r for r in run_benchmark(setup, ("straightforward", "data2vec"))}
            row = lever_row(name, results["data2vec"], results["straightforward"], setup.compile)
            suite.add_lever_rows(modality, [row], common["dtype"])
            del results
            _free(common["device"])

    def packing():
        """Text only: a padded corpus of short documents, padded one per row against packed rows."""
        setup = setup_for("text", **ALL_LEVERS)
        suite.write("text_packing.md", packing_table(setup, documents=8 * setup.batch_size))
        _free(common["device"])

    def profile(modality: str, variant: str, compiled: bool):
        setup = setup_for(modality, **(EVERY_LEVER_COMPILED if compiled else {}))
        name = f"{modality}_{variant}_{'compiled' if compiled else 'eager'}_profile.md"
        suite.write(name, profile_step(setup, variant, steps=common["steps"]))
        _free(common["device"])

    # in order of importance: text (the 2x target), eager then compiled, the others eager, the 2.0 tables, then
    # the others compiled; the CUDA graphs lever of text comes before the levers of lesser interest
    first, others = modalities[:1], modalities[1:]
    for modality in first:
        suite.section(f"{modality}: variants, eager", main_table, modality, False)
        suite.section(f"{modality}: eager levers", levers, modality, EAGER_LEVERS)
    if "text" in modalities:
        suite.section("text: sequence packing of a padded corpus", packing)
    for modality in others:
        suite.section(f"{modality}: variants, eager", main_table, modality, False)
    for modality in first:
        suite.section(f"{modality}: variants, compiled", main_table, modality, True)
        suite.section(f"{modality}: CUDA graphs", levers, modality, COMPILED_LEVERS[:1])
    for modality in others:
        suite.section(f"{modality}: eager levers", levers, modality, EAGER_LEVERS)
    for modality in modalities:
        suite.section(f"{modality}: 2.0 amortisation and breakdown", data2vec2_tables, modality)
    for modality in others:
        suite.section(f"{modality}: variants, compiled", main_table, modality, True)
    for modality in modalities:
        remaining = COMPILED_LEVERS[1:] if modality in first else COMPILED_LEVERS
        suite.section(f"{modality}: compiled levers", levers, modality, remaining)
    for modality, variant, compiled in PROFILES:
        if modality in modalities:
            what = f"{variant}, {'every lever, compiled' if compiled else 'eager'}"
            suite.section(f"{modality}: profile of {what}", profile, modality, variant, compiled)
    print((out / "README.md").read_text(encoding="utf-8"))
    return out


if __name__ == "__main__":
    main()
