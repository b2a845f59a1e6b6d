#!/usr/bin/env python
"""
The study's text probes on every layer of each arm's final checkpoint (embeddings, then each encoder layer), to see
whether a pretrained arm's representation beats random initialisation at some depth even where its last layer does
not, and how much of its input token each layer keeps (`probes.token_identity`), at every layer of the final
checkpoint and at the last layer along each run. Reads a finished study run (`run_study.py` with the same flags),
pretrains nothing, and writes `{docs_dir}/study_text_layers.md` (the command, then per layer and arm the SST-2 and
STS-B probes and token identity, mean ± std over seeds, and the paired difference against random initialisation
with its 95% bootstrap interval; then token identity along the runs).

    # the 8x-text run of docs/study_longer (about 20 minutes on 2 CPU cores)
    python examples/study/layer_probes.py --mode quick --data_dir ../shared/data --text_steps 3200 \
        --probe_points 8 --modalities text --output_dir outputs/study-longer --docs_dir docs/study_longer
"""

import json
import shlex
import sys
from pathlib import Path

from d2v_hf.argument_parsing import parse_arguments
from d2v_hf.atomic_io import atomic_write_text

from probes import TOKEN_IDENTITY_CLASSES
from study import PartialResults, checkpoints_along, saved_probes
from study_config import ARM_TITLES, PROBES, StudyArguments
from study_data import comparison_arguments, prepare_data
from study_probes import probe_data, text_probes, token_identity_probe
from study_report import paired_difference
from study_utils import difference_interval, fmt, stats


def _text_runs(args, data: dict):
    """`(arm, seed, {step: backbone folder}, partial results)` of every text run of the finished study."""
    partial = PartialResults(args)
    for arm in args.arms_of("text"):
        for seed in args.seed_list:
            yield arm, seed, checkpoints_along(args, partial, "text", arm, seed, data), partial


def layer_scores(args, data: dict) -> tuple[dict, dict]:
    """
    The probes of every text run of the finished study, as `(by_layer, along)`:

    - `by_layer`, `{arm: {seed: {layer: {probe: score}}}}`: the final checkpoint's layers 0 to L, each with the
      study's text probes and `token_identity` (how well the layer's states name their input token);
    - `along`, `{arm: {seed: {point: {"token_identity": %, "sst2": %}}}}`: the last layer's token identity at each
      probe point of the run, beside the study's own SST-2 probe there (`point` i of `--probe_points`, at
      i / probe_points of the arm's budget; the random arm has point 0 only). The final point reuses `by_layer`'s
      last layer.
    """
    cargs, tasks = comparison_arguments(args, probes=True), probe_data(args, "text", data)
    by_layers, along_runs = {}, {}
    for arm, seed, along, partial in _text_runs(args, data):
        final_step = max(along)
        last = json.loads(Path(along[final_step], "config.json").read_text())["num_hidden_layers"]
        by_layer = text_probes(cargs, along[final_step], tasks, seed, layers=list(range(last + 1)))
        for layer, identity in token_identity_probe(cargs, along[final_step], tasks, seed, list(by_layer)).items():
            by_layer[layer]["token_identity"] = identity["accuracy"]
        by_layers.setdefault(arm, {})[str(seed)] = by_layer
        for layer, result in by_layer.items():
            print(f"text {arm} seed {seed} layer {layer}: " + ", ".join(f"{k} {v:.1f}" for k, v in result.items()))
        for point, step in enumerate(sorted(along), start=0 if arm == "random" else 1):
            if step == final_step:
                identity = by_layer[last]["token_identity"]
            else:
                identity = token_identity_probe(cargs, along[step], tasks, seed, [last])[last]["accuracy"]
            probed = saved_probes(args, partial, "text", arm, seed, step)
            entry = {"token_identity": identity, "sst2": probed["scores"]["sst2"] if probed else None}
            along_runs.setdefault(arm, {}).setdefault(str(seed), {})[point] = entry
            print(f"text {arm} seed {seed} step {step}: token identity {identity:.1f}, sst2 probe {entry['sst2']}")
    return by_layers, along_runs


def _cell(arm: str, values: dict, baseline: dict | None) -> str:
    """mean ± std over seeds, then (for a pretrained arm) the paired difference against `baseline` (random init)."""
    cell = f"{fmt(stats(list(values.values())))} (n={len(values)})"
    if arm != "random" and baseline:
        difference = paired_difference(values, baseline)
        if difference and "low" in difference:
            mark = ", significant" if difference["significant"] else ""
            cell += f"; {difference_interval(difference)}{mark}"
    return cell


def layer_report(scores: dict, command: str, along: dict | None = None) -> str:
    """The markdown report of `layer_scores`' two tables (`along`, the second, when given)."""
    layers = sorted({layer for arm in scores.values() for seed in arm.values() for layer in seed})
    lines = [
        "# Text probes at every layer of the final checkpoints",
        "",
        "Generated by `examples/study/layer_probes.py` from the study run's final checkpoints (layer 0: the "
        "embeddings; layer i: the output of encoder layer i; mean-pooled over real tokens, probes as in the study).",
        "",
        "```bash",
        command,
        "```",
    ]
    identity_title = "Token identity: accuracy of a linear probe naming a position's token from its state"
    for probe, title in (*PROBES["text"], ("token_identity", identity_title)):
        lines += ["", f"## {title}", "", "| layer | " + " | ".join(ARM_TITLES.get(a, a) for a in scores) + " |"]
        lines.append("|---:|" + "---:|" * len(scores))
        for layer in layers:
            random = {seed: by_layer[layer][probe] for seed, by_layer in scores.get("random", {}).items()}
            cells = [
                _cell(arm, {seed: by_layer[layer][probe] for seed, by_layer in seeds.items()}, random)
                for arm, seeds in scores.items()
            ]
            lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Token identity: logistic regression (regularisation chosen on a held-out fifth, as the other probes) naming "
        f"which of the {TOKEN_IDENTITY_CLASSES} most frequent tokens of the SST-2 probe's training sentences sits at "
        "a position, from that position's state at the layer; trained on those sentences' tokens, scored on the "
        "evaluation sentences' (positions holding other tokens left out). The states of a random backbone still hold "
        "their token at every layer (the residual stream carries the embedding); a layer scoring below it has "
        "dropped part of which word it reads.",
        "",
        "Each pretrained cell: mean ± std over seeds, then the paired difference against random initialisation at the "
        "same layer (per seed; mean and 95% bootstrap interval; significant when the interval excludes 0).",
    ]
    if along:
        arms = [arm for arm in along if arm != "random"]
        points = sorted({point for arm in arms for seed in along[arm].values() for point in seed})
        columns = [(arm, name) for arm in arms for name in ("token_identity", "sst2")]
        titles = {"token_identity": "token identity, last layer", "sst2": "the study's SST-2 probe"}
        lines += ["", "## Token identity of the last layer along each run, beside the study's SST-2 probe", ""]
        header = " | ".join(f"{ARM_TITLES.get(arm, arm)}: {titles[name]}" for arm, name in columns)
        lines.append(f"| point (share of the budget) | {header} |")
        lines.append("|---:|" + "---:|" * len(columns))
        for point in points:
            cells = []
            for arm, name in columns:
                values = {seed: by_point[point][name] for seed, by_point in along[arm].items()}
                cells.append(_cell(arm, values, None) if None not in values.values() else "–")
            lines.append(f"| {point} ({point / max(points):.0%}) | " + " | ".join(cells) + " |")
        if "random" in along:
            lines.append("")
            for name in ("token_identity", "sst2"):
                values = {seed: by_point[0][name] for seed, by_point in along["random"].items()}
                if None not in values.values():
                    lines.append(f"Random init (no training), {titles[name]}: {_cell('random', values, None)}.")
        lines += ["", "Cells: mean ± std over seeds."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> Path:
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    (args,) = parse_arguments([StudyArguments], argv)
    if "text" not in args.modality_list:
        raise ValueError(f"--modalities {args.modalities!r} has no text: the layer probes are text probes.")
    data = prepare_data(args)
    scores, along = layer_scores(args, data)
    out = Path(args.docs_dir) / "study_text_layers.md"
    command = shlex.join(["python", "examples/study/layer_probes.py", *argv])
    atomic_write_text(out, layer_report(scores, command, along))
    print(out.read_text(encoding="utf-8"))
    return out


if __name__ == "__main__":
    main()
