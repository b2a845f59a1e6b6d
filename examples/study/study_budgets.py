#!/usr/bin/env python
"""
Every study run side by side: per modality, arm and pretraining setting, at which budget the arm beats random
initialisation on the modality's main probe. One study run answers for one budget (`study.md`, and a longer run it
links); the question "what is the smallest budget at which it does" takes runs at several budgets and settings, and
this script reads their `study_results.json` (the raw numbers, nothing else) and writes `--output`:

- per arm and setting, one row per run: its budget, the final probe score against random init's, their paired
  difference with its 95% bootstrap interval, the decision (ahead by more than the seed spread, the study's rule),
  the first probed point from which the arm stays ahead, and the probe along the run;
- per arm and setting, the smallest budget measured at which it beats random init and the largest at which it does
  not;
- per arm over all its runs: how many end ahead, the range of the final differences, and its largest lead at any
  probed point (what an arm that is never ahead came closest to);
- a plot per modality of the final difference against budget.

Budgets are multiples of the quick mode's (its steps x batch of the modality); a setting is what a run changed from
the quick mode's pretraining, seed and probe settings (steps and probe points aside).

    python examples/study/study_budgets.py --results 'docs/study_results.json,docs/*/study_results.json' \\
        --output docs/study_budgets.md
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from d2v_hf.argument_parsing import parse_arguments
from d2v_hf.atomic_io import atomic_write_text

from study_config import (
    ARM_TITLES,
    MAIN_PROBE,
    MODALITIES,
    PRETRAINING_FIELDS,
    PROBE_FIELDS,
    RECIPE_OVERRIDES,
    preset_values,
)
from study_report import MODALITY_TITLES, decide, difference_cell, final_probe_stats, probe_curve
from study_utils import comma_list, fmt, pyplot, save_figure, signed


# settings that one arm alone reads
ARM_ONLY = {"text_mask_strategy": "data2vec", **{flag: arm for arm, flag in RECIPE_OVERRIDES.items()}}


@dataclass
class StudyBudgetsArguments:
    results: str = field(
        metadata={"help": "Comma-separated study_results.json paths or glob patterns (quote them), one per run."}
    )
    output: str = field(default="docs/study_budgets.md", metadata={"help": "The markdown file to write."})
    modalities: str = field(default=",".join(MODALITIES), metadata={"help": "Comma-separated modalities to report."})

    def __post_init__(self):
        unknown = sorted(set(self.modality_list) - set(MODALITIES))
        if unknown or not self.modality_list:
            raise ValueError(f"--modalities {self.modalities!r}; expected some of {', '.join(MODALITIES)}.")

    @property
    def modality_list(self) -> list[str]:
        return comma_list(self.modalities)

    def result_paths(self) -> list[str]:
        """Each pattern's files, sorted, once each; a pattern that matches nothing is named."""
        paths = []
        for pattern in comma_list(self.results):
            matched = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            if not matched or not all(Path(path).is_file() for path in matched):
                raise ValueError(f"--results {pattern}: no such file.")
            paths += [path for path in matched if path not in paths]
        if not paths:
            raise ValueError("--results is empty: give the study_results.json of one or more study runs.")
        return paths


def load_run(path: str) -> dict:
    """A study run's raw results, with `path`; a file that is not one is named."""
    try:
        results = json.loads(Path(path).read_text(encoding="utf-8"))
        valid = isinstance(results["config"]["mode"], str) and isinstance(results["modalities"], dict)
    except (ValueError, KeyError, TypeError):
        valid = False
    if not valid:
        raise ValueError(f"--results {path}: not the study_results.json of a study run.")
    return {**results, "path": path}


def run_setting(results: dict, modality: str, arm: str) -> tuple[tuple[str, str], ...]:
    """
    The pretraining, seed and probe settings of `arm` in this run that differ from the quick mode's, as sorted
    `(name, value)` pairs: `()` for the quick mode's own. The text mask strategy and the recipe overrides are
    data2vec 1.0's or 2.0's alone.
    """
    config, quick = results["config"], preset_values("quick")
    ran = preset_values(config["mode"])
    setting = []
    for name in dict.fromkeys((*PRETRAINING_FIELDS[modality], "seeds", *PROBE_FIELDS)):
        if name in (f"{modality}_steps", "probe_points") or ARM_ONLY.get(name, arm) != arm:
            continue
        value = config.get(name, ran.get(name))  # a run saved before a field existed ran its mode's preset
        if value != quick.get(name):
            setting.append((name, "all" if value is None else str(value)))  # None: every line / example
    return tuple(sorted(setting))


def budget_ratio(results: dict, modality: str) -> float:
    """The run's pretraining budget as a multiple of the quick mode's (steps x samples per step of data2vec 1.0)."""
    config, quick = results["config"], preset_values("quick")
    ran = config[f"{modality}_steps"] * config[f"{modality}_batch_size"]
    return ran / (quick[f"{modality}_steps"] * quick[f"{modality}_batch_size"])


def budget_rows(runs: list[dict], modality: str) -> dict[tuple, list[dict]]:
    """`{(arm, setting): [row per run, by budget]}` over the runs that trained `arm` beside random init."""
    probe, rows = MAIN_PROBE[modality], {}
    for results in runs:
        if "random" not in results["modalities"].get(modality, {}).get("arms", {}):
            continue  # without random init the run decides nothing
        ratio = budget_ratio(results, modality)
        for arm, decision in decide(results, modality).items():
            first = decision["first_point"]
            rows.setdefault((arm, run_setting(results, modality, arm)), []).append(
                {
                    "ratio": ratio,
                    "tflops": results["modalities"][modality]["plan"]["budget_flops"] / 1e12,
                    "arm": final_probe_stats(results, modality, arm, probe),
                    "random": final_probe_stats(results, modality, "random", probe),
                    "decision": decision,
                    "first_ratio": None if first is None else first["fraction"] * ratio,
                    "along": [point["mean"] for point in probe_curve(results, modality, arm, probe)],
                    "report": Path(results["path"]).parent / "study.md",  # written beside its JSON
                }
            )
    return {key: sorted(found, key=lambda row: row["ratio"]) for key, found in sorted(rows.items())}


def smallest_budget(rows: list[dict]) -> str:
    """Where the runs of one arm and setting put the smallest budget at which it beats random init."""
    ahead = [row for row in rows if row["decision"]["beats_random"]]
    if not ahead:
        return f"not by {_ratio(rows[-1]['ratio'])}, the largest budget measured"
    # a run's end decides its budget; a probed point of a longer run is on that run's schedule, so it is said beside
    upper = ahead[0]
    where = f"ahead from {_ratio(upper['first_ratio'])} on in that run"
    behind = [row["ratio"] for row in rows if not row["decision"]["beats_random"]]
    below, above = [r for r in behind if r < upper["ratio"]], [r for r in behind if r > upper["ratio"]]
    said = (
        f"between {_ratio(max(below))} (not ahead by more than the seed spread at the end of that run) and "
        f"{_ratio(upper['ratio'])} ({where})"
        if below
        else f"by {_ratio(upper['ratio'])}, the smallest budget measured ({where})"
    )
    if above:
        said += f"; yet not ahead at the end of the {', '.join(map(_ratio, above))} run(s)"
    return said


def arm_overview(arm: str, rows: dict[tuple, list[dict]]) -> str:
    """
    One arm over every run and setting: how many runs end ahead of random init, the range of the paired difference
    at their ends, and the largest lead of its probe (mean over seeds) at any probed point over random init's score.
    """
    found = [row for (name, _), runs in rows.items() if name == arm for row in runs]
    ends = [row["decision"]["difference"]["mean"] for row in found]
    lead = max(value - row["random"]["mean"] for row in found for value in row["along"])
    ratios = [row["ratio"] for row in found]
    return (
        f"- {ARM_TITLES[arm]}: {len(found)} run(s) from {_ratio(min(ratios))} to {_ratio(max(ratios))} (up to "
        f"{max(row['tflops'] for row in found):.3g} TFLOPs a run); ahead of random init at the end of "
        f"{sum(row['decision']['beats_random'] for row in found)}; paired difference at the end from "
        f"{signed(min(ends))} to {signed(max(ends))}; largest lead at any probed point {signed(lead)}."
    )


def _ratio(value: float) -> str:
    return f"{value:.0f}x" if value >= 10 else f"{value:.2g}x"  # 128x, 1.5x, 0.25x


def _setting_title(setting: tuple) -> str:
    return ", ".join(f"{name}={value}" for name, value in setting) or "quick mode's"


def setting_style(arm_index: int, setting_index: int) -> dict:
    """Colour for the arm; line style and marker for the setting: 4 line styles and 6 markers cycled together repeat a
    pair only after 12 settings, so two settings of one arm do not draw alike (with one cycle of 4, a fifth setting
    drew as the first)."""
    return dict(
        color=f"C{arm_index}", linestyle=("-", "--", ":", "-.")[setting_index % 4], marker="osD^vP"[setting_index % 6]
    )


def plot_budgets(rows: dict[tuple, list[dict]], modality: str, path: Path) -> None:
    """The final paired difference against random init (95% interval) at each budget, one line per arm and setting."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 7))
    arms = list(dict.fromkeys(arm for arm, _ in rows))
    settings = list(dict.fromkeys(setting for _, setting in rows))
    for index, ((arm, setting), found) in enumerate(rows.items()):
        shift = 2 ** (0.04 * (index - (len(rows) - 1) / 2))  # side by side at each budget, not on top of each other
        x = [row["ratio"] * shift for row in found]
        differences = [row["decision"]["difference"] for row in found]
        y = [difference["mean"] for difference in differences]
        errors = [
            [d["mean"] - d.get("low", d["mean"]) for d in differences],
            [d.get("high", d["mean"]) - d["mean"] for d in differences],
        ]
        label = f"{ARM_TITLES[arm]} ({_setting_title(setting)})"
        style = setting_style(arms.index(arm), settings.index(setting))
        ax.errorbar(x, y, yerr=errors, markersize=4, capsize=2, label=label, **style)
    ax.axhline(0.0, color="grey", linestyle="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("pretraining budget (x the quick mode's)")
    ax.set_ylabel(f"{MAIN_PROBE[modality]}: arm - random init")
    ax.grid(alpha=0.3)
    # below the axes: with a dozen arms and settings, a legend inside covers the points at small budgets
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    save_figure(fig, path)


def budgets_markdown(runs: list[dict], modalities: list[str], command: str, output: Path) -> str:
    lines = [
        "# The study at every budget measured",
        "",
        "Generated by `examples/study/study_budgets.py` from the `study_results.json` of each run below (every "
        "number comes from those files; each run's own report heads with the command that made it):",
        "",
        "```bash",
        command,
        "```",
        "",
        "Per modality, arm and setting: at which pretraining budget the arm beats random initialisation on the "
        "modality's main probe, by the study's rule (its mean over seeds exceeds random init's by more than the seed "
        "spread at the end of the run). Budgets are multiples of the quick mode's (steps x samples per step); a "
        "setting lists what a run changed from the quick mode's pretraining, seed and probe settings. *First ahead* "
        "is the first probed point from which the arm stays ahead to the end of that run: a point of a longer run is "
        "on that run's learning-rate schedule, not at the end of a run of that budget. *Each arm over all its runs* "
        "pools every setting; its largest lead is the arm's probe (mean over seeds) at any probed point of any run "
        "minus random init's score in that run.",
    ]
    for modality in modalities:
        rows = budget_rows([run for run in runs if modality in run["modalities"]], modality)
        if not rows:
            continue
        image = output.parent / "img" / f"study_budgets_{modality}.png"
        plot_budgets(rows, modality, image)
        lines += [
            "",
            f"## {MODALITY_TITLES[modality]}: the {MAIN_PROBE[modality]} probe",
            "",
            "### Smallest budget",
            "",
        ]
        lines += [
            f"- {ARM_TITLES[arm]} ({_setting_title(setting)} settings): {smallest_budget(found)}."
            for (arm, setting), found in rows.items()
        ]
        lines += ["", "### Each arm over all its runs", ""]
        lines += [arm_overview(arm, rows) for arm in dict.fromkeys(arm for arm, _ in rows)]
        lines += ["", f"![{modality} budgets]({os.path.relpath(image, output.parent)})", "", "### Every run", ""]
        lines.append(
            "| arm | setting | budget (TFLOPs) | arm's score | random init | difference [95% interval] | beats random "
            "| first ahead | along the run (mean over seeds) | run |"
        )
        lines.append("|---|---|---:|---:|---:|---|---|---:|---|---|")
        for (arm, setting), found in rows.items():
            for row in found:
                verdict = "yes" if row["decision"]["beats_random"] else "no"
                verdict += f" ({signed(row['decision']['margin'])} vs spread {row['decision']['spread']:.1f})"
                first = "–" if row["first_ratio"] is None else _ratio(row["first_ratio"])
                link = f"[{row['report'].parent}]({os.path.relpath(row['report'], output.parent)})"
                lines.append(
                    f"| {ARM_TITLES[arm]} | {_setting_title(setting)} | {_ratio(row['ratio'])} ({row['tflops']:.3g}) "
                    f"| {fmt(row['arm'])} | {fmt(row['random'])} | {difference_cell(row['decision']['difference'])} "
                    f"| {verdict} | {first} | {', '.join(f'{v:.1f}' for v in row['along'])} | {link} |"
                )
    return "\n".join(lines) + "\n"


def main(argv=None) -> Path:
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    (args,) = parse_arguments([StudyBudgetsArguments], argv)
    runs = [load_run(path) for path in args.result_paths()]
    dry_runs = [run["path"] for run in runs if run["config"].get("dry_run")]
    runs = [run for run in runs if not run["config"].get("dry_run")]  # 2 steps of each arm: no budget to compare
    if not any(modality in run["modalities"] for run in runs for modality in args.modality_list):
        raise ValueError(f"--results: no run (--dry_run runs aside) trained any of --modalities {args.modalities!r}.")
    output = Path(args.output)
    command = shlex.join(["python", "examples/study/study_budgets.py", *argv])
    markdown = budgets_markdown(runs, args.modality_list, command, output)
    if dry_runs:
        markdown += f"\nLeft out, as `--dry_run` runs (2 steps of each arm): {', '.join(dry_runs)}.\n"
    atomic_write_text(output, markdown)
    print(output.read_text(encoding="utf-8"))
    return output


if __name__ == "__main__":
    main()
