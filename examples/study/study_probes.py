"""
The study's frozen-feature probes: one call scores a saved backbone on every probe of its modality
(`study_config.PROBES`). Features are the mean over the real positions of the last layer (tokens, patches after the
CLS token, frames) for every arm alike: data2vec never regresses a CLS token and MAE's linear probe reads the mean
too, so a first-token probe would favour one objective. Linear models choose their regularisation on a held-out
part of the probe's training data (`probes.fit_probe`); the data are read as the checkpoint comparison reads them.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.stats import spearmanr

from comparison_tasks import TASKS, classification_probe_data, glue_probe_data, glue_probe_score
from probes import extract_features, fit_probe, knn_accuracy, text_features, token_identity, token_states
from study_data import comparison_arguments


def _accuracy(predictions, targets) -> float:
    return 100 * float(np.mean(predictions == targets))


def text_probes(cargs, checkpoint: str, data: dict, seed: int, layers: list[int] | None = None) -> dict:
    """
    SST-2 and STS-B probes of a text backbone on its last layer: `{probe: score}`; or, given `layers` (see
    `probes.text_features`), `{layer: {probe: score}}`, every layer's features read from the same forward passes.
    """
    wanted = [None] if layers is None else list(layers)

    def features(texts):  # one array per wanted layer
        kwargs = dict(max_length=cargs.max_seq_length, pooling="mean", layers=wanted)
        return text_features(checkpoint, texts, **kwargs)

    scores = {layer: {} for layer in wanted}
    train_texts, eval_texts, train_targets, eval_targets = glue_probe_data(cargs, TASKS["sst2"], data["sst2"], seed)
    for layer, train, test in zip(wanted, features(train_texts[0]), features(eval_texts[0])):
        train, test = (train, train_targets), (test, eval_targets)
        scores[layer]["sst2"] = fit_probe(train, test, glue_probe_score(TASKS["sst2"]), seed=seed)["score"]
        scores[layer]["sst2_knn"] = 100 * knn_accuracy(train, test)
    # STS-B: each sentence encoded alone (as SentEval does); ridge regression on (|u - v|, u * v), and, without any
    # training, the cosine similarity of u and v
    train_texts, eval_texts, train_targets, eval_targets = glue_probe_data(cargs, TASKS["stsb"], data["stsb"], seed)
    encoded = {split: (features(first), features(second)) for split, (first, second) in
               (("train", train_texts), ("eval", eval_texts))}  # fmt: skip
    for index, layer in enumerate(wanted):
        pairs = {}
        for split, (u_layers, v_layers) in encoded.items():
            u, v = u_layers[index], v_layers[index]
            pairs[split] = (np.concatenate([np.abs(u - v), u * v], axis=1), u, v)
        train, test = (pairs["train"][0], train_targets), (pairs["eval"][0], eval_targets)
        score = glue_probe_score(TASKS["stsb"])
        scores[layer]["stsb"] = fit_probe(train, test, score, regression=True, seed=seed)["score"]
        _, u, v = pairs["eval"]
        cosine = (u * v).sum(1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(v, axis=1) + 1e-8)
        scores[layer]["stsb_cosine"] = 100 * float(spearmanr(cosine, eval_targets).statistic)
    return scores[None] if layers is None else scores


def token_identity_probe(cargs, checkpoint: str, data: dict, seed: int, layers: list[int | None]) -> dict:
    """
    `{layer: {"accuracy", "chance"}}`: how well each layer's states name their input token (`probes.token_identity`),
    trained on the tokens of the SST-2 probe's training sentences, scored on those of its evaluation sentences. It
    tests one reason a pretrained arm can lose to random init on the mean-pooled sentence probes: at tiny width those
    lean on which words a sentence holds (`text_probe_reference.py`), which a random backbone keeps at every layer.
    """
    train_texts, eval_texts, _, _ = glue_probe_data(cargs, TASKS["sst2"], data["sst2"], seed)
    kwargs = dict(layers=layers, max_length=cargs.max_seq_length)
    (train, train_ids), (test, test_ids) = (
        token_states(checkpoint, texts[0], **kwargs) for texts in (train_texts, eval_texts)
    )
    return {
        layer: token_identity((train[i], train_ids), (test[i], test_ids), seed=seed) for i, layer in enumerate(layers)
    }


def _classification_probes(cargs, task_name: str, checkpoint: str, data: dict, seed: int) -> dict:
    task = TASKS[task_name]
    train_set, test_set = classification_probe_data(cargs, task, data[task_name], checkpoint, seed)
    kwargs = dict(max_seconds=cargs.audio_clip_seconds, pooling="mean", prefix_tokens=1)
    train = extract_features(checkpoint, task.modality, train_set, **kwargs)
    test = extract_features(checkpoint, task.modality, test_set, **kwargs)
    return {
        task_name: fit_probe(train, test, _accuracy, seed=seed)["score"],
        f"{task_name}_knn": 100 * knn_accuracy(train, test),
    }


def probe_data(args, modality: str, data: dict) -> dict:
    """The task data arguments the probes of `modality` read (local files of `data_dir`)."""
    glue = args.data_dir.rstrip("/") + "/glue/"
    if modality == "text":
        return {
            task: {"train_file": f"{glue}{task}/train.tsv", "validation_file": f"{glue}{task}/dev.tsv"}
            for task in ("sst2", "stsb")
        }
    if modality == "vision":
        return {"fashion_mnist": {"train_dir": data["fashion_mnist"], "validation_dir": data["fashion_mnist"]}}
    return {"spoken_digits": {"train_dir": data["digits_train"], "validation_dir": data["digits_validation"]}}


def probe_checkpoint(args, modality: str, checkpoint: str, seed: int, data: dict) -> dict:
    """Every probe of `modality` on the backbone saved in `checkpoint`: `{"scores": {probe: percent}, ...}`."""
    cargs = comparison_arguments(args, probes=True)
    start, tasks = time.time(), probe_data(args, modality, data)
    if modality == "text":
        scores = text_probes(cargs, checkpoint, tasks, seed)
    else:
        task = "fashion_mnist" if modality == "vision" else "spoken_digits"
        scores = _classification_probes(cargs, task, checkpoint, tasks, seed)
    return {"scores": scores, "wall_time_s": time.time() - start}


__all__ = ["probe_checkpoint", "probe_data", "text_probes", "token_identity_probe"]
