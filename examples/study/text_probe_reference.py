#!/usr/bin/env python
"""
Reference points for the study's SST-2 probe without any network: the probe itself (`probes.fit_probe`, logistic
regression on standardised features, regularisation chosen on a held-out fifth) on the same seeded training sentences
and evaluation examples as every arm's, over two bag-of-words features:

- the counts of every word of the training sentences (scikit-learn's `CountVectorizer`): what the words alone give;
- the same counts projected to the tiny backbones' width by a fixed Gaussian matrix: what mean-pooling random token
  embeddings of that width keeps of them, i.e. about what a randomly initialised backbone offers the probe.

A pretrained arm beats random initialisation only once its features hold more than the second; the first says how far
there is to go. Writes `{docs_dir}/study_text_probe_reference.md` (the command, then mean ± std over seeds).

    python examples/study/text_probe_reference.py --mode quick --data_dir ../shared/data --docs_dir docs/study_longer
"""

import shlex
import sys
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer

from d2v_hf.argument_parsing import parse_arguments
from d2v_hf.atomic_io import atomic_write_text
from d2v_hf.configuration_data2vec_pretraining import base_backbone_config, tiny_backbone_config

from comparison_tasks import TASKS, glue_probe_data, glue_probe_score
from probes import fit_probe
from study_config import StudyArguments
from study_data import comparison_arguments
from study_probes import probe_data
from study_utils import fmt, stats


def reference_scores(args: StudyArguments) -> tuple[dict, int]:
    """
    `{feature: {seed: SST-2 accuracy}}` for the word counts and their projection to the backbones' width, and the
    number of evaluation examples.
    """
    cargs, tasks = comparison_arguments(args, probes=True), probe_data(args, "text", {})
    backbone = tiny_backbone_config("text") if args.model_size == "tiny" else base_backbone_config("text")
    width = backbone.hidden_size
    names = ("words", f"words, projected to {width} dimensions")
    scores = {name: {} for name in names}
    task, score = TASKS["sst2"], glue_probe_score(TASKS["sst2"])
    for seed in args.seed_list:
        train_texts, eval_texts, train_targets, eval_targets = glue_probe_data(cargs, task, tasks["sst2"], seed)
        counts = CountVectorizer().fit(train_texts[0])
        train, test = counts.transform(train_texts[0]).toarray(), counts.transform(eval_texts[0]).toarray()
        projection = np.random.default_rng(seed).normal(size=(train.shape[1], width)) / np.sqrt(width)
        for name, (x_train, x_test) in zip(names, ((train, test), (train @ projection, test @ projection))):
            probe = fit_probe((x_train, train_targets), (x_test, eval_targets), score, seed=seed)
            scores[name][seed] = probe["score"]
    return scores, len(eval_targets)


def reference_report(scores: dict, evaluated: int, args: StudyArguments, command: str) -> str:
    lines = [
        "# The SST-2 probe without a network: bag-of-words reference points",
        "",
        "```bash",
        command,
        "```",
        "",
        f"The study's probe ({args.probe_train_samples} training sentences drawn per seed, evaluated on the first "
        f"{evaluated} dev examples) on word counts and on their fixed random projection to "
        "the backbones' width (see the script's docstring).",
        "",
        "| features | SST-2 accuracy, logistic regression |",
        "|---|---:|",
    ]
    for name, by_seed in scores.items():
        lines.append(f"| {name} | {fmt(stats(list(by_seed.values())))} (n={len(by_seed)}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> Path:
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    (args,) = parse_arguments([StudyArguments], argv)
    sst2 = Path(args.data_dir) / "glue" / "sst2"
    if not sst2.is_dir():
        raise ValueError(f"--data_dir {args.data_dir}: no {sst2} (see ../shared/data/README.md).")
    command = shlex.join(["python", "examples/study/text_probe_reference.py", *argv])
    out = Path(args.docs_dir) / "study_text_probe_reference.md"
    report = reference_report(*reference_scores(args), args, command)
    atomic_write_text(out, report)
    print(report)
    return out


if __name__ == "__main__":
    main()
