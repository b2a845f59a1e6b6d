"""
The report of the study, generated from the raw results (`docs/study_results.json`) and nothing else:
[`write_study_report`] writes `docs/study.md` (setup, compute table, probe and fine-tuning tables with paired
differences and 95% bootstrap intervals, score-vs-compute plots, a conclusion per modality). The model cards are
written from the same results by `study_model_cards.py`.

The decision rule of a modality: a pretrained arm beats random initialisation when, on the modality's main probe at
the end of its budget, its mean over seeds exceeds random's by more than the seed spread (the larger of the two
standard deviations over seeds). The first probed point where that holds is the smallest budget, of those measured,
at which it does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from d2v_hf.atomic_io import atomic_write_text

from comparison_report import MIN_SEEDS_FOR_INTERVAL
from comparison_tasks import TASKS
from study_config import (
    ARM_TITLES,
    BACKBONE_TYPES,
    DATA2VEC_ARMS,
    MAIN_PROBE,
    PROBES,
    RECIPE_OVERRIDES,
    backbone_size,
    one_masked_copy,
)
from study_utils import difference_interval, fmt, paired_bootstrap, pyplot, save_figure, signed, stats


MODALITY_TITLES = {"text": "Text", "vision": "Images", "audio": "Speech"}


# --------------------------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------------------------


def probe_curve(results: dict, modality: str, arm: str, probe: str) -> list[dict]:
    """Per probed step: `{"step", "flops", "fraction", **stats over seeds}` (random: one point at 0 FLOPs)."""
    entry = results["modalities"][modality]
    seeds = entry["arms"][arm]["seeds"]
    steps = sorted({int(step) for seed in seeds.values() for step in seed["probes"]})
    plan = entry["plan"]["arms"].get(arm)
    points = []
    for step in steps:
        values = [seed["probes"][str(step)][probe] for seed in seeds.values() if str(step) in seed["probes"]]
        flops = step * plan["flops_per_step"] if plan else 0
        fraction = flops / entry["plan"]["budget_flops"] if plan else 0.0
        points.append({"step": step, "flops": flops, "fraction": fraction, **stats(values)})
    return points


def measured_probes(results: dict, modality: str) -> list[tuple[str, str]]:
    """The `(probe, title)` pairs of `PROBES` every arm's final checkpoints have (older runs lack newer probes)."""
    arms = results["modalities"][modality]["arms"]
    return [(p, t) for p, t in PROBES[modality] if all(final_probe_scores(results, modality, arm, p) for arm in arms)]


def final_probe_scores(results: dict, modality: str, arm: str, probe: str) -> dict[str, float]:
    """The probe at each seed's last checkpoint."""
    seeds = results["modalities"][modality]["arms"][arm]["seeds"]
    last = {seed: entry["probes"][str(max(map(int, entry["probes"])))] for seed, entry in seeds.items()}
    return {seed: probes[probe] for seed, probes in last.items() if probe in probes}


def final_probe_stats(results: dict, modality: str, arm: str, probe: str) -> dict:
    """[`stats`] over seeds of [`final_probe_scores`]."""
    return stats(list(final_probe_scores(results, modality, arm, probe).values()))


def against_random(results: dict, modality: str, arm: str, probe: str) -> dict | None:
    """[`paired_difference`] of an arm's final probe scores and random init's."""
    scores = final_probe_scores(results, modality, arm, probe)
    return paired_difference(scores, final_probe_scores(results, modality, "random", probe))


def paired_difference(a: dict[str, float], b: dict[str, float]) -> dict | None:
    """Mean of the per-seed differences `a - b`, its 95% bootstrap interval (3 or more seeds) and significance."""
    seeds = sorted(set(a) & set(b), key=int)
    if not seeds:
        return None
    differences = [a[s] - b[s] for s in seeds]
    out = {"mean": sum(differences) / len(differences), "n": len(differences), "differences": differences}
    if len(differences) >= MIN_SEEDS_FOR_INTERVAL:
        low, high = paired_bootstrap(differences)
        out.update(low=low, high=high, significant=low > 0 or high < 0)
    return out


def decide(results: dict, modality: str) -> dict[str, dict]:
    """Per pretrained arm: does it beat random on the main probe by more than the seed spread, and from where."""
    probe, arms = MAIN_PROBE[modality], results["modalities"][modality]["arms"]
    if "random" not in arms:
        return {}
    random = final_probe_stats(results, modality, "random", probe)
    decisions = {}
    for arm in arms:
        if arm == "random":
            continue
        final = final_probe_stats(results, modality, arm, probe)
        spread = max(final["std"], random["std"])
        # the first probed point from which the arm stays ahead (a point that is ahead once and falls back is noise)
        first = None
        for point in reversed(probe_curve(results, modality, arm, probe)):
            if point["mean"] - random["mean"] <= max(point["std"], random["std"]):
                break
            first = point
        decisions[arm] = {
            "margin": final["mean"] - random["mean"],
            "spread": spread,
            "beats_random": final["mean"] - random["mean"] > spread,
            "first_point": first,
            "difference": against_random(results, modality, arm, probe),
        }
    return decisions


def compute_to_reach(results: dict, modality: str) -> tuple[float | None, dict[str, float | None]]:
    """
    The best main-probe score (mean over seeds) of the pretrained arm whose final score is lowest, and the training
    FLOPs at which each pretrained arm first reaches it (`None`: not within its budget). `(None, {})` with fewer than
    two pretrained arms: there is no slower arm to reach.
    """
    probe, arms = MAIN_PROBE[modality], results["modalities"][modality]["arms"]
    curves = {arm: probe_curve(results, modality, arm, probe) for arm in arms if arm != "random"}
    if len(curves) < 2:
        return None, {}
    slowest = min(curves, key=lambda arm: curves[arm][-1]["mean"])
    target = max(point["mean"] for point in curves[slowest])
    reach = {arm: next((p["flops"] for p in curve if p["mean"] >= target), None) for arm, curve in curves.items()}
    return target, reach


def finetune_scores(results: dict, task: str, arm: str) -> dict[str, float]:
    runs = results["finetune"][task][arm]["seeds"]
    return {seed: run["scores"]["score"] for seed, run in runs.items()}


def finetune_stats(results: dict, task: str, arm: str) -> dict:
    """[`stats`] over seeds of [`finetune_scores`]."""
    return stats(list(finetune_scores(results, task, arm).values()))


# --------------------------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------------------------


def plot_probe_curves(results: dict, img_dir: str | os.PathLike) -> dict[str, str]:
    """One figure per modality: each probe's score (mean ± std over seeds) against training FLOPs."""
    plt = pyplot()
    paths = {}
    Path(img_dir).mkdir(parents=True, exist_ok=True)
    for modality, entry in results["modalities"].items():
        probes = measured_probes(results, modality)
        fig, axes = plt.subplots(1, len(probes), figsize=(5 * len(probes), 3.8), squeeze=False)
        for ax, (probe, title) in zip(axes[0], probes):
            for arm in entry["arms"]:
                curve = probe_curve(results, modality, arm, probe)
                if arm == "random":
                    point = curve[0]
                    ax.axhspan(point["mean"] - point["std"], point["mean"] + point["std"], color="grey", alpha=0.2)
                    ax.axhline(point["mean"], color="grey", linestyle="--", label=ARM_TITLES[arm])
                    continue
                x = [p["flops"] / 1e12 for p in curve]
                ax.errorbar(x, [p["mean"] for p in curve], yerr=[p["std"] for p in curve], marker="o", capsize=3,
                            label=ARM_TITLES[arm])  # fmt: skip
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("training TFLOPs (FlopCounterMode)")
            ax.set_ylabel("score")
            ax.grid(alpha=0.3)
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        path = Path(img_dir) / f"study_{modality}_probes.png"
        save_figure(fig, path)
        paths[modality] = f"img/{path.name}"
    return paths


# --------------------------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------------------------


def difference_cell(difference: dict | None) -> str:
    if difference is None:
        return "–"
    if "low" not in difference:
        return f"{signed(difference['mean'])} (n={difference['n']}: no interval below {MIN_SEEDS_FOR_INTERVAL} seeds)"
    verdict = "significant" if difference["significant"] else "not significant"
    return f"{difference_interval(difference)}, {verdict}"


def _compute_table(results: dict, modality: str) -> list[str]:
    entry = results["modalities"][modality]
    target, reach = compute_to_reach(results, modality)
    lines = [
        "| arm | class | samples / step | GFLOPs / step | steps | training TFLOPs | wall-clock / run (min) | "
        "loss first → last | FLOPs to reach the slowest arm's best |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for arm, plan in entry["plan"]["arms"].items():
        seeds = entry["arms"][arm]["seeds"].values()
        runs = [seed["pretraining"] for seed in seeds if "pretraining" in seed]
        wall = stats([run["wall_time_s"] / 60 for run in runs])
        first, last = (stats([run[key] for run in runs])["mean"] for key in ("first_loss", "final_loss"))
        losses = f"{first:.3g} → {last:.3g}"
        reached = reach.get(arm)
        to_reach = "-" if target is None else "not reached" if reached is None else f"{reached / 1e12:.3g} TFLOPs"
        lines.append(
            f"| {ARM_TITLES[arm]} | `{plan['class']}` | {plan['batch_size']} | {plan['flops_per_step'] / 1e9:.2f} | "
            f"{plan['steps']} | {plan['total_flops'] / 1e12:.3g} | {wall['mean']:.1f} | {losses} | "
            f"{to_reach} |"
        )
    lines.append(
        f"\nBudget: {entry['plan']['budget_flops'] / 1e12:.3g} TFLOPs per run (the data2vec 1.0 arm's steps)."
        + (f" The slowest arm's best {MAIN_PROBE[modality]} probe score: {target:.1f}." if target is not None else "")
    )
    teachers = [
        f"{ARM_TITLES[arm]}: {100 * plan['teacher']['init_weight']:.0f}% ({_teacher_schedule(plan['teacher'])})"
        for arm, plan in entry["plan"]["arms"].items()
        if "teacher" in plan
    ]
    if teachers:
        changed = any(results["config"].get(flag) for flag in RECIPE_OVERRIDES.values())
        decays = "recipe's" if changed else "released"
        lines.append(
            "\nShare of the teacher's averaged weights still at their random initialisation after the last update "
            f"(the product of the EMA decays over the run; the {decays} decays, their ramp shortened to the run): "
            + "; ".join(teachers)
            + "."
        )
    return lines


def _teacher_schedule(teacher: dict) -> str:
    start, end, ramp, updates = (teacher[k] for k in ("ema_decay", "ema_end_decay", "ema_anneal_end_step", "updates"))
    if start == end or ramp == 0:
        return f"EMA decay {end:g} for all {updates} updates"
    over = f"{updates} updates" if ramp >= updates else f"the first {ramp} of {updates} updates"
    return f"EMA decay {start:g} → {end:g} over {over}"


def _probe_table(results: dict, modality: str) -> list[str]:
    arms, probes = results["modalities"][modality]["arms"], measured_probes(results, modality)
    lines = ["| arm | " + " | ".join(title for _, title in probes) + " |", "|---|" + "---:|" * len(probes)]
    for arm in arms:
        cells = []
        for probe, _ in probes:
            values = final_probe_stats(results, modality, arm, probe)
            cells.append(f"{fmt(values)} (n={values['n']})")
        lines.append(f"| {ARM_TITLES[arm]} | " + " | ".join(cells) + " |")
    if "random" in arms:
        lines += ["", "Paired differences against random init (per seed; mean, 95% bootstrap interval):", ""]
        lines += ["| arm | " + " | ".join(probe for probe, _ in probes) + " |", "|---|" + "---|" * len(probes)]
        for arm in arms:
            if arm != "random":
                cells = [difference_cell(against_random(results, modality, arm, probe)) for probe, _ in probes]
                lines.append(f"| {ARM_TITLES[arm]} | " + " | ".join(cells) + " |")
    return lines


def _finetune_table(results: dict, task: str) -> list[str]:
    arms = results["finetune"][task]
    zero_shot = task == "xquad"  # the 11 languages never trained on
    lines = [
        f"**{TASKS[task].title}** ({TASKS[task].metric}; evaluation set):",
        "",
        "| arm | learning rates tried (held-out score) | chosen | score | vs random init |"
        + (" zero-shot F1 (11 languages) |" if zero_shot else ""),
        "|---|---|---:|---:|---|" + ("---:|" if zero_shot else ""),
    ]
    for arm, entry in arms.items():
        sweep = ", ".join(f"{rate}: {scores['score']:.1f}" for rate, scores in entry["sweep"].items())
        values = finetune_stats(results, task, arm)
        versus = "–"
        if arm != "random" and "random" in arms:
            versus = difference_cell(
                paired_difference(finetune_scores(results, task, arm), finetune_scores(results, task, "random"))
            )
        row = f"| {ARM_TITLES[arm]} | {sweep} | {entry['chosen_learning_rate']} | {fmt(values)} (n={values['n']}) | "
        row += f"{versus} |"
        if zero_shot:
            row += f" {fmt(stats([run['scores']['zero_shot_f1'] for run in entry['seeds'].values()]))} |"
        lines.append(row)
    return lines


def _longer_budget_sentence(results: dict, modality: str, arm: str) -> str:
    """Where the runs with larger budgets (`--longer_budget_results`) put the smallest budget that beats random."""
    runs = sorted(
        (
            (_budget_ratio(results, longer, modality), longer)
            for longer in results.get("longer_budgets", [])
            if {arm, "random"} <= set(longer["modalities"].get(modality, {}).get("arms", {}))
        ),
        key=lambda run: run[0],
    )
    if not runs:
        return "The smallest budget at which it would is above the one measured here (no longer run is linked)."
    does_not = []
    for ratio, longer in runs:
        where = f"the {ratio:.0f}x-budget run ({longer['report']}, same seeds and settings)"
        first = decide(longer, modality)[arm]["first_point"]
        if first is None:
            does_not.append(where)
            continue
        before = f"It does not in {' or '.join(does_not)}; it" if does_not else "It"
        score = f"{first['mean']:.1f} ± {first['std']:.1f}"
        return (
            f"{before} does in {where} from {first['flops'] / 1e12:.3g} TFLOPs on ({first['fraction'] * ratio:.1f}x "
            f"this budget, the first probed point from which it stays ahead: {score})."
        )
    return (
        f"It does not in {' or '.join(does_not)} either: the smallest budget at which it would is above "
        f"{runs[-1][0]:.0f}x this one."
    )


def _budget_ratio(results: dict, longer: dict, modality: str) -> float:
    return (
        longer["modalities"][modality]["plan"]["budget_flops"]
        / results["modalities"][modality]["plan"]["budget_flops"]
    )


def _other_probes(results: dict, modality: str) -> list[str]:
    """The significant differences against random init on the modality's other probes, in both directions."""
    arms = results["modalities"][modality]["arms"]
    if "random" not in arms:
        return []
    sentences = []
    for probe, _ in measured_probes(results, modality)[1:]:
        found = []
        for arm in arms:
            difference = against_random(results, modality, arm, probe) if arm != "random" else None
            if difference and difference.get("significant"):
                found.append(f"{ARM_TITLES[arm]} {signed(difference['mean'])}")
        if found:
            sentences.append(f"Significant differences against random init on the {probe} probe: {', '.join(found)}.")
    return sentences


def _baseline_losses(results: dict, modality: str) -> list[str]:
    """
    A baseline whose final loss, in every seed, is not 2% below that of a model ignoring its input (or above it) has
    not started learning.
    """
    chance = results.get("chance_losses", {}).get(modality, {})
    notes = []
    for arm, (value, meaning) in chance.items():
        runs = [
            seed.get("pretraining")
            for seed in results["modalities"][modality]["arms"].get(arm, {}).get("seeds", {}).values()
        ]
        finals = [run["final_loss"] for run in runs if run]
        if finals and min(finals) >= value * 0.98:
            notes.append(
                f"{ARM_TITLES[arm]}'s loss ended at {stats(finals)['mean']:.2f} (lowest seed {min(finals):.2f}), not "
                f"2% below {value:.2f}, {meaning}: at this budget it has not started learning its task."
            )
    return notes


def _finetuning_notes(results: dict, modality: str) -> list[str]:
    notes = []
    for task, arms in results["finetune"].items():
        if TASKS[task].modality != modality or task != MAIN_PROBE[modality]:
            continue
        below = [
            arm
            for arm in arms
            if finetune_stats(results, task, arm)["mean"] < final_probe_stats(results, modality, arm, task)["mean"]
        ]
        if below:
            notes.append(
                f"Fine-tuning on {TASKS[task].title} is not converged at {results['config']['finetune_steps']} steps: "
                f"the linear probe of the frozen features scores higher for {', '.join(ARM_TITLES[a] for a in below)}."
            )
    return notes


def conclusion(results: dict, modality: str) -> str:
    """What the numbers of a modality say, and no more."""
    probe = MAIN_PROBE[modality]
    decisions = decide(results, modality)
    if not decisions:
        return "No random-initialisation arm ran, so nothing is decided against it."
    sentences = []
    for arm, decision in decisions.items():
        title = ARM_TITLES[arm]
        if decision["beats_random"]:
            first = decision["first_point"]
            where = f", and stays ahead from {100 * first['fraction']:.0f}% of the budget on" if first else ""
            sentences.append(
                f"{title} beats random init on the {probe} probe by {signed(decision['margin'])} points, more than "
                f"the seed spread ({decision['spread']:.1f}){where}."
            )
        else:
            sentences.append(
                f"{title} does not beat random init on the {probe} probe by more than the seed spread at this "
                f"budget ({signed(decision['margin'])} against a spread of {decision['spread']:.1f}). "
                + _longer_budget_sentence(results, modality, arm)
            )
        teacher = results["modalities"][modality]["plan"]["arms"].get(arm, {}).get("teacher")
        if teacher and teacher["init_weight"] >= 0.5:
            sentences.append(
                f"At the end of this budget its teacher is still {100 * teacher['init_weight']:.0f}% its random "
                f"initialisation ({_teacher_schedule(teacher)}): its targets came from a mostly untrained network."
            )
    sentences += _ranking(results, modality, probe)
    sentences += _other_probes(results, modality) + _baseline_losses(results, modality)
    sentences += _finetuning_notes(results, modality)
    sentences.append(
        f"These are {backbone_size(results['config'])} models trained for minutes; they say which objective learns "
        "faster at this scale, not which is better at the paper's."
    )
    return " ".join(sentences)


def _ranking(results: dict, modality: str, probe: str) -> list[str]:
    """
    The pretrained arms ranked by their final score on the modality's main probe; whether data2vec wins is said only
    when a data2vec arm and another pretrained arm both ran (a longer run may carry one arm only).
    """
    finals = {
        arm: final_probe_stats(results, modality, arm, probe)["mean"]
        for arm in results["modalities"][modality]["arms"]
        if arm != "random"
    }
    if len(finals) < 2:
        return []
    best = max(finals, key=finals.get)
    ranked = ", ".join(f"{ARM_TITLES[arm]} {finals[arm]:.1f}" for arm in sorted(finals, key=finals.get, reverse=True))
    data2vec_ran = any(arm in DATA2VEC_ARMS for arm in finals)
    verdict = (
        f", the modality's own objective, so at this scale data2vec does not win on {modality}."
        if data2vec_ran and best not in DATA2VEC_ARMS
        else "."
    )
    highest = f"the highest is {ARM_TITLES[best]}{verdict}"
    return [f"Ranking on the {probe} probe at equal training FLOPs: {ranked}; {highest}"]


def _setup(results: dict) -> list[str]:
    config, env = results["config"], results["environment"]
    lines = [
        f"Ran on {env['device']} (torch {env['torch']}, transformers {env['transformers']}, "
        f"{config['torch_threads'] or 'default'} thread(s) per run, {config['workers']} run(s) side by side), "
        f"finished {results['finished']}: **{results['wall_time_s'] / 60:.1f} minutes** of wall clock for the whole "
        "study.",
        "",
        f"- Seeds: {', '.join(map(str, config['seed_list']))}. A seed is the pretraining seed of a pretrained arm "
        "(initialisation, data order, masks), the initialisation of the random arm, and the seed of the probes' "
        "training subset and of the fine-tuning runs; paired differences pair equal seeds.",
        "- Backbones: one family per modality for every arm ("
        + ", ".join(f"{m}: `{t}`" for m, t in BACKBONE_TYPES.items())
        + f"), {backbone_size(config)} size; every arm of a modality shares data, optimizer (AdamW, peak "
        + "learning rate "
        + ", ".join(f"{m} {config[f'{m}_learning_rate']:g}" for m in results["modalities"])
        + ", linear warmup over 10% then linear decay) and batch; data2vec 2.0 takes "
        + (
            "the same samples per step (one masked copy of each)."
            if one_masked_copy(config.get("data2vec2_overrides"))
            else "a quarter of the samples per step (it trains on several masked copies of each)."
        ),
        "- Equal compute: every arm gets the steps that spend the data2vec 1.0 arm's training FLOPs, counted per step "
        "by `torch.utils.flop_counter.FlopCounterMode` over a forward and backward pass on a real batch (the "
        "teacher's forward included).",
        f"- Probes: mean-pooled last-layer features of the frozen backbone at {config['probe_points']} evenly spaced "
        f"points of each run; {config['probe_train_samples']} training examples (regularisation chosen on a held-out "
        "fifth of them), evaluated on "
        + (f"at most {config['probe_eval_samples']}" if config["probe_eval_samples"] else "all")
        + " examples of each task's evaluation split.",
    ]
    data = []  # the pretraining data of the modalities this run has
    if results.get("corpus"):
        corpus = results["corpus"]
        source = corpus["source"] if " " in corpus["source"] else f"`{corpus['source']}`"  # a file name: code
        data.append(
            f"Text: {corpus['lines']:,} evenly spaced lines ({corpus['words']:,} words) of {source}, "
            f"a {config['tokenizer_vocab_size']}-token byte-level BPE tokenizer trained on them, blocks of "
            f"{config['max_seq_length']} tokens."
        )
    if "vision" in results["modalities"]:
        data.append("Images: the Fashion-MNIST training images (labels unused).")
    if "audio" in results["modalities"]:
        data.append("Speech: the recordings of `speech/` plus the training voices' synthesized digits.")
    if data:
        lines.append("- Pretraining data. " + " ".join(data))
    if "text" in results["modalities"] and config.get("text_mask_strategy") == "bert":
        lines.append(
            "- Text masks: data2vec 1.0 masks 15% of the tokens the BERT way (80% `<mask>`, 10% a random token, 10% "
            "unchanged: the paper's main row, and the MLM arm's masks), not the released recipe's spans of 4 `<mask>`."
        )
    for arm, flag in RECIPE_OVERRIDES.items():
        if config.get(flag):  # absent from runs saved before the field existed
            lines.append(f"- {ARM_TITLES[arm]}'s recipe, changed from the released one: `{config[flag]}`.")
    longer_runs = results.get("longer_budgets", [])
    if longer_runs:
        runs = []
        for longer in longer_runs:
            link = os.path.relpath(longer["report"], config["docs_dir"])  # from the folder study.md is written to
            budgets = ", ".join(
                f"{_budget_ratio(results, longer, modality):.0f}x the {modality} budget"
                for modality in results["modalities"]
                if modality in longer["modalities"]
            )
            runs.append(f"[{longer['report']}]({link}) ({budgets}; `{longer['command']}`)")
        lines.append(
            ("- A longer run" if len(runs) == 1 else "- Longer runs")
            + " with the same seeds and settings, more steps, "
            + ("gives" if len(runs) == 1 else "give")
            + " the budget at which an arm that does not beat random init here does: "
            + "; ".join(runs)
            + ". Probed points follow their own run's learning-rate schedule (warmup and decay over the longer run), "
            "so a point at this run's budget is not this run's end."
        )
    if results["finetune"]:
        lines.append(
            f"- Fine-tuning: {config['finetune_steps']} steps, batch {config['finetune_batch_size']}, "
            f"{config['finetune_train_samples'] or 'all'} training examples; the learning rate chosen per arm on a "
            "fifth of the training data held out (first seed), never on the evaluation set."
        )
    return lines


def study_report_markdown(results: dict, images: dict[str, str]) -> str:
    config = results["config"]
    lines = [
        f"# Study: data2vec against each modality's own objective, at equal compute ({config['mode']} mode)",
        "",
        "Generated by `examples/study/run_study.py` (`study_report.py`) from [`study_results.json`]"
        "(study_results.json); every number below comes from that run.",
        "",
        "```bash",
        results["command"],
        "```",
        "",
        *_setup(results),
        "",
        "## Conclusions",
        "",
    ]
    for modality in results["modalities"]:
        lines += [f"- **{MODALITY_TITLES[modality]}.** {conclusion(results, modality)}"]
    for modality in results["modalities"]:
        lines += ["", f"## {MODALITY_TITLES[modality]}", "", "### Compute", "", *_compute_table(results, modality)]
        lines += [
            "",
            "### Probes at the end of the budget (mean ± std over seeds)",
            "",
            *_probe_table(results, modality),
        ]
        lines += ["", "### Score against compute", "", f"![{modality} probes]({images[modality]})"]
        for task in results["finetune"]:
            if TASKS[task].modality == modality:
                lines += ["", "### Fine-tuning", "", *_finetune_table(results, task)]
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        "python examples/study/run_study.py --mode quick --data_dir ../shared/data     # 2-core CPU, 30 minutes",
        "python examples/study/run_study.py --mode standard --data_dir ../shared/data  # 2-core CPU, ~3 h (untimed)",
        "python examples/study/run_study.py --mode full --data_dir ../shared/data      # base size, one GPU",
        "python examples/study/run_study.py --mode full --dry_run                      # every arm at full size",
        "```",
        "",
    ]
    return "\n".join(lines)


def write_study_report(results: dict, docs_dir: str | os.PathLike) -> Path:
    """Writes `study_results.json`, the plots and `study.md` (read back from the JSON) into `docs_dir`."""
    docs = Path(docs_dir)
    docs.mkdir(parents=True, exist_ok=True)
    atomic_write_text(docs / "study_results.json", json.dumps(results, indent=1))
    results = json.loads((docs / "study_results.json").read_text(encoding="utf-8"))  # the report reads the JSON
    images = plot_probe_curves(results, docs / "img")
    path = docs / "study.md"
    atomic_write_text(path, study_report_markdown(results, images))
    return path


__all__ = [
    "MODALITY_TITLES",
    "against_random",
    "compute_to_reach",
    "conclusion",
    "decide",
    "difference_cell",
    "final_probe_scores",
    "final_probe_stats",
    "finetune_scores",
    "finetune_stats",
    "measured_probes",
    "paired_difference",
    "plot_probe_curves",
    "probe_curve",
    "study_report_markdown",
    "write_study_report",
]
