"""Evaluation metrics for GLUE and SQuAD (v1.1 and v2.0).

GLUE: [`glue_compute_metrics`] returns, per task, exactly the keys that `evaluate.load("glue", task_name)` returns:

| task | keys |
|---|---|
| cola | `matthews_correlation` |
| sst2, mnli, mnli_matched, mnli_mismatched, qnli, rte, wnli, hans | `accuracy` |
| mrpc, qqp | `accuracy`, `f1` |
| stsb | `pearson`, `spearmanr` |

It first tries the `evaluate` library's `glue` metric and falls back to a local scikit-learn/scipy implementation of
the same formulas (logged once per task). The fallback exists because `evaluate.load("glue", ...)` fetches the metric
script from the Hugging Face Hub: on an offline machine (`HF_HUB_OFFLINE=1`, no cached module) it raises
`FileNotFoundError: Couldn't find a module script at .../glue/glue.py`. That is what happens on the project's CI
machines (checked with evaluate 0.4.6), so there the local implementation is what runs. Both give the same numbers:
accuracy is the mean of `predictions == references`, F1 is `sklearn.metrics.f1_score` (binary, positive label 1),
Matthews correlation is `sklearn.metrics.matthews_corrcoef`, Pearson/Spearman are `scipy.stats.pearsonr/spearmanr`.

SQuAD: [`squad_v1_compute_metrics`] and [`squad_v2_compute_metrics`] are line-by-line ports of the official
evaluation scripts (`evaluate-v1.1.py` and `evaluate-v2.0.py`), with the input format of `evaluate`'s `squad` and
`squad_v2` metrics. They are always computed locally: the official scripts are short and deterministic, and
`evaluate.load("squad")` needs the Hub just like `glue`.

Example:

```python
>>> from d2v_hf.finetuning import glue_compute_metrics, squad_v1_compute_metrics
>>> glue_compute_metrics("mrpc", predictions=[1, 0, 1], references=[1, 1, 1])
{'accuracy': 0.6666666666666666, 'f1': 0.8}
>>> squad_v1_compute_metrics(
...     predictions=[{"id": "q1", "prediction_text": "the Eiffel Tower"}],
...     references=[{"id": "q1", "answers": {"text": ["Eiffel Tower"], "answer_start": [0]}}],
... )
{'exact_match': 100.0, 'f1': 100.0}
```
"""

import collections
import logging
import re
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np


logger = logging.getLogger(__name__)

# Keys returned by `evaluate.load("glue", config)` for each config the metric accepts.
GLUE_TASK_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("matthews_correlation",),
    "sst2": ("accuracy",),
    "mrpc": ("accuracy", "f1"),
    "stsb": ("pearson", "spearmanr"),
    "qqp": ("accuracy", "f1"),
    "mnli": ("accuracy",),
    "mnli_mismatched": ("accuracy",),
    "mnli_matched": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
    "hans": ("accuracy",),
}

# Cache of `evaluate` glue metric modules per task; `None` marks "not loadable here, use the local implementation".
_EVALUATE_GLUE_METRICS: dict[str, Any] = {}


def _check_glue_task_name(task_name: str) -> str:
    if not isinstance(task_name, str) or task_name.lower() not in GLUE_TASK_METRICS:
        raise ValueError(
            f"Unknown GLUE task name {task_name!r}; valid names are: {', '.join(sorted(GLUE_TASK_METRICS))}."
        )
    return task_name.lower()


def _load_evaluate_glue(task_name: str):
    """Loads `evaluate`'s glue metric once per task; returns `None` (and logs why) when it cannot be loaded."""
    if task_name not in _EVALUATE_GLUE_METRICS:
        try:
            import evaluate

            _EVALUATE_GLUE_METRICS[task_name] = evaluate.load("glue", task_name)
        except Exception as error:  # noqa: BLE001 - any failure (offline, missing module, network) means "fall back"
            logger.info(
                "evaluate.load('glue', %r) is unavailable (%s: %s); using the local scikit-learn/scipy "
                "implementation of the GLUE metrics, which computes the same values.",
                task_name,
                type(error).__name__,
                str(error).splitlines()[0] if str(error) else "",
            )
            _EVALUATE_GLUE_METRICS[task_name] = None
    return _EVALUATE_GLUE_METRICS[task_name]


def _local_glue_metrics(task_name: str, predictions: np.ndarray, references: np.ndarray) -> dict[str, float]:
    """The formulas of `evaluate`'s `glue.py`, with the same key names and float outputs."""
    if task_name == "cola":
        from sklearn.metrics import matthews_corrcoef

        return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
    if task_name == "stsb":
        from scipy.stats import pearsonr, spearmanr

        return {
            "pearson": float(pearsonr(predictions, references)[0]),
            "spearmanr": float(spearmanr(predictions, references)[0]),
        }
    accuracy = float((predictions == references).mean())
    if task_name in ("mrpc", "qqp"):
        from sklearn.metrics import f1_score

        return {"accuracy": accuracy, "f1": float(f1_score(y_true=references, y_pred=predictions))}
    return {"accuracy": accuracy}


def glue_compute_metrics(
    task_name: str,
    predictions: Sequence | np.ndarray,
    references: Sequence | np.ndarray,
    backend: str = "auto",
) -> dict[str, float]:
    """
    Computes the official GLUE metric(s) of a task.

    Args:
        task_name (`str`):
            One of `cola`, `sst2`, `mrpc`, `stsb`, `qqp`, `mnli`, `mnli_matched`, `mnli_mismatched`, `qnli`, `rte`,
            `wnli`, `hans` (the configurations of `evaluate`'s `glue` metric).
        predictions (`Sequence` or `np.ndarray`):
            Predicted class ids (floats for `stsb`).
        references (`Sequence` or `np.ndarray`):
            Gold class ids (floats for `stsb`), same length as `predictions`.
        backend (`str`, *optional*, defaults to `"auto"`):
            `"auto"` tries `evaluate.load("glue", task_name)` and falls back to the local implementation when it
            cannot be loaded (offline); `"evaluate"` requires `evaluate`; `"local"` never touches `evaluate`.

    Returns:
        `dict[str, float]`: the metric values under the keys listed in [`GLUE_TASK_METRICS`].
    """
    task_name = _check_glue_task_name(task_name)
    if backend not in ("auto", "evaluate", "local"):
        raise ValueError(f"backend must be 'auto', 'evaluate' or 'local', got {backend!r}.")
    predictions = np.asarray(predictions)
    references = np.asarray(references)
    if predictions.ndim != 1 or references.ndim != 1:
        raise ValueError(
            f"GLUE predictions and references must be 1-D (one value per example), got shapes {predictions.shape} "
            f"and {references.shape}; take the argmax of classification logits first."
        )
    if len(predictions) != len(references):
        raise ValueError(f"Got {len(predictions)} predictions for {len(references)} references.")
    if len(predictions) == 0:
        raise ValueError("Cannot compute GLUE metrics on zero examples.")

    if backend != "local":
        metric = _load_evaluate_glue(task_name)
        if metric is not None:
            return {k: float(v) for k, v in metric.compute(predictions=predictions, references=references).items()}
        if backend == "evaluate":
            raise ValueError(f"evaluate.load('glue', {task_name!r}) failed (offline?); use backend='auto' or 'local'.")
    return _local_glue_metrics(task_name, predictions, references)


def make_glue_compute_metrics(
    task_name: str | None, is_regression: bool | None = None, add_combined_score: bool = True
) -> Callable[[Any], dict[str, float]]:
    """
    Builds a `compute_metrics` function for [`~transformers.Trainer`] (`EvalPrediction -> dict`).

    Classification logits are turned into class ids with an argmax, regression outputs (`stsb`) are squeezed. As in
    transformers' `run_glue.py`, a `combined_score` (mean of the metrics) is added when a task has several metrics.

    Args:
        task_name (`str` or `None`):
            A GLUE task name (see [`glue_compute_metrics`]); `None` for a custom dataset, which is scored with
            accuracy (classification) or mean squared error `mse` (regression).
        is_regression (`bool`, *optional*):
            Defaults to `task_name == "stsb"`.
        add_combined_score (`bool`, *optional*, defaults to `True`):
            Whether to add `combined_score` for multi-metric tasks.
    """
    if task_name is not None:
        task_name = _check_glue_task_name(task_name)
    if is_regression is None:
        is_regression = task_name == "stsb"

    def compute_metrics(eval_prediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        if isinstance(predictions, (tuple, list)):
            predictions = predictions[0]
        predictions = np.asarray(predictions)
        predictions = np.squeeze(predictions) if is_regression else np.argmax(predictions, axis=1)
        predictions = np.atleast_1d(predictions)
        references = np.atleast_1d(np.asarray(eval_prediction.label_ids))
        if task_name is not None:
            result = glue_compute_metrics(task_name, predictions, references)
        elif is_regression:
            result = {"mse": float(((predictions - references) ** 2).mean())}
        else:
            result = {"accuracy": float((predictions == references).mean())}
        if add_combined_score and len(result) > 1:
            result["combined_score"] = float(np.mean(list(result.values())))
        return result

    return compute_metrics


# --------------------------------------------------------------------------------------------------------------------
# SQuAD (ports of the official evaluation scripts)
# --------------------------------------------------------------------------------------------------------------------

_ARTICLES_REGEX = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles (a/an/the) and extra whitespace (official SQuAD scripts)."""

    def remove_articles(s):
        return _ARTICLES_REGEX.sub(" ", s)

    def white_space_fix(s):
        return " ".join(s.split())

    def remove_punc(s):
        exclude = set(string.punctuation)
        return "".join(ch for ch in s if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(text.lower())))


def _get_tokens(text: str) -> list[str]:
    if not text:
        return []
    return normalize_answer(text).split()


def squad_v1_exact_match(prediction: str, ground_truth: str) -> bool:
    """SQuAD v1.1 `exact_match_score`: normalized strings are equal."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def squad_v1_f1(prediction: str, ground_truth: str) -> float:
    """SQuAD v1.1 `f1_score`: bag-of-tokens F1 between normalized strings (0 when nothing overlaps)."""
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    return (2 * precision * recall) / (precision + recall)


def squad_v2_exact(gold: str, prediction: str) -> int:
    """SQuAD v2.0 `compute_exact`."""
    return int(normalize_answer(gold) == normalize_answer(prediction))


def squad_v2_f1(gold: str, prediction: str) -> float:
    """SQuAD v2.0 `compute_f1`: like v1.1, but if either side is empty the score is 1 when both are, else 0."""
    gold_tokens = _get_tokens(gold)
    prediction_tokens = _get_tokens(prediction)
    common = collections.Counter(gold_tokens) & collections.Counter(prediction_tokens)
    num_same = sum(common.values())
    if len(gold_tokens) == 0 or len(prediction_tokens) == 0:
        return int(gold_tokens == prediction_tokens)
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(gold_tokens)
    return (2 * precision * recall) / (precision + recall)


def _predictions_to_dict(predictions):
    """Accepts `{id: text}` or `evaluate`-style `[{"id", "prediction_text"(, "no_answer_probability")}]`."""
    if isinstance(predictions, Mapping):
        return dict(predictions), {qid: 0.0 for qid in predictions}
    texts, no_answer_probabilities = {}, {}
    for i, prediction in enumerate(predictions):
        if not isinstance(prediction, Mapping) or "id" not in prediction or "prediction_text" not in prediction:
            raise ValueError(
                f"Prediction #{i} must be a dict with keys 'id' and 'prediction_text' (SQuAD format), got "
                f"{prediction!r}."
            )
        texts[prediction["id"]] = prediction["prediction_text"]
        no_answer_probabilities[prediction["id"]] = float(prediction.get("no_answer_probability", 0.0))
    return texts, no_answer_probabilities


def _reference_answers(reference, index: int) -> tuple[str, list[str]]:
    if not isinstance(reference, Mapping) or "id" not in reference or "answers" not in reference:
        raise ValueError(
            f"Reference #{index} must be a dict with keys 'id' and 'answers' ({{'text': [...], 'answer_start': "
            f"[...]}}), got {reference!r}."
        )
    answers = reference["answers"]
    if isinstance(answers, Mapping):
        texts = answers.get("text")
    else:  # official JSON layout: a list of {"text", "answer_start"}
        texts = [answer["text"] for answer in answers]
    if texts is None:
        raise ValueError(f"Reference {reference['id']!r} has no 'text' in its answers: {answers!r}.")
    return reference["id"], list(texts)


def squad_v1_compute_metrics(predictions, references) -> dict[str, float]:
    """
    SQuAD v1.1 metric, as `evaluate-v1.1.py` (and `evaluate`'s `squad` metric) computes it.

    Args:
        predictions (`list[dict]` or `dict[str, str]`):
            `[{"id": ..., "prediction_text": ...}, ...]` or a mapping from question id to predicted text.
        references (`list[dict]`):
            `[{"id": ..., "answers": {"text": [...], "answer_start": [...]}}, ...]`.

    Returns:
        `dict[str, float]`: `exact_match` and `f1`, in percent. EM and F1 of a question are maxed over its gold
        answers; a question without prediction scores 0 (and is logged), as in the official script.
    """
    predictions, _ = _predictions_to_dict(predictions)
    if len(references) == 0:
        raise ValueError("Cannot compute SQuAD metrics on zero references.")
    exact_match = f1 = 0.0
    total = 0
    for index, reference in enumerate(references):
        qid, gold_answers = _reference_answers(reference, index)
        if not gold_answers:
            raise ValueError(
                f"Question {qid!r} has no gold answer; SQuAD v1.1 has none of those: use the v2 metric "
                "(version_2_with_negative=True) for unanswerable questions."
            )
        total += 1
        if qid not in predictions:
            logger.warning("Unanswered question %s will receive score 0.", qid)
            continue
        prediction = predictions[qid]
        exact_match += max(squad_v1_exact_match(prediction, gold) for gold in gold_answers)
        f1 += max(squad_v1_f1(prediction, gold) for gold in gold_answers)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


def _make_eval_dict(exact_scores, f1_scores, qid_list=None):
    if qid_list is None:
        total = len(exact_scores)
        return {
            "exact": 100.0 * sum(exact_scores.values()) / total,
            "f1": 100.0 * sum(f1_scores.values()) / total,
            "total": total,
        }
    total = len(qid_list)
    return {
        "exact": 100.0 * sum(exact_scores[k] for k in qid_list) / total,
        "f1": 100.0 * sum(f1_scores[k] for k in qid_list) / total,
        "total": total,
    }


def _find_best_thresh(predictions, scores, no_answer_probabilities, qid_to_has_answer):
    num_no_answer = len([k for k in qid_to_has_answer if not qid_to_has_answer[k]])
    current_score = num_no_answer
    best_score = current_score
    best_thresh = 0.0
    qid_list = sorted(no_answer_probabilities, key=lambda k: no_answer_probabilities[k])
    for qid in qid_list:
        if qid not in scores:
            continue
        if qid_to_has_answer[qid]:
            diff = scores[qid]
        else:
            diff = -1 if predictions[qid] else 0
        current_score += diff
        if current_score > best_score:
            best_score = current_score
            best_thresh = no_answer_probabilities[qid]
    return 100.0 * best_score / len(scores), best_thresh


def squad_v2_compute_metrics(predictions, references, no_answer_threshold: float = 1.0) -> dict[str, float]:
    """
    SQuAD v2.0 metric, as `evaluate-v2.0.py` (and `evaluate`'s `squad_v2` metric) computes it.

    A question whose gold answers are all empty (after normalization) is unanswerable: only the empty prediction
    scores 1 on it (EM and F1). A prediction whose `no_answer_probability` exceeds `no_answer_threshold` counts as
    the empty prediction.

    Args:
        predictions (`list[dict]` or `dict[str, str]`):
            `[{"id", "prediction_text", "no_answer_probability" (optional, defaults to 0.0)}, ...]` or a mapping
            from question id to predicted text (`""` for "no answer").
        references (`list[dict]`):
            `[{"id": ..., "answers": {"text": [...], "answer_start": [...]}}, ...]`, empty lists for unanswerable.
        no_answer_threshold (`float`, *optional*, defaults to 1.0):
            The official script's `--na-prob-thresh`.

    Returns:
        `dict[str, float]`: `exact`, `f1`, `total`, then `HasAns_exact/f1/total` and `NoAns_exact/f1/total` when
        the references contain such questions, and `best_exact`, `best_exact_thresh`, `best_f1`, `best_f1_thresh`.
        Scores are percentages. Questions without a prediction are left out (and logged), as in the official script.
    """
    predictions, no_answer_probabilities = _predictions_to_dict(predictions)
    if len(references) == 0:
        raise ValueError("Cannot compute SQuAD metrics on zero references.")
    qid_to_has_answer = {}
    exact_raw, f1_raw = {}, {}
    for index, reference in enumerate(references):
        qid, gold_texts = _reference_answers(reference, index)
        qid_to_has_answer[qid] = bool(gold_texts)
        gold_answers = [text for text in gold_texts if normalize_answer(text)]
        if not gold_answers:
            # For unanswerable questions, the only correct answer is the empty string.
            gold_answers = [""]
        if qid not in predictions:
            logger.warning("Missing prediction for %s", qid)
            continue
        prediction = predictions[qid]
        exact_raw[qid] = max(squad_v2_exact(gold, prediction) for gold in gold_answers)
        f1_raw[qid] = max(squad_v2_f1(gold, prediction) for gold in gold_answers)
    if not exact_raw:
        raise ValueError("None of the reference question ids has a prediction.")

    def apply_no_answer_threshold(scores):
        new_scores = {}
        for qid, score in scores.items():
            if no_answer_probabilities.get(qid, 0.0) > no_answer_threshold:
                new_scores[qid] = float(not qid_to_has_answer[qid])
            else:
                new_scores[qid] = score
        return new_scores

    exact_thresh = apply_no_answer_threshold(exact_raw)
    f1_thresh = apply_no_answer_threshold(f1_raw)
    result = _make_eval_dict(exact_thresh, f1_thresh)
    # Restricted to answered questions so a missing prediction does not raise, unlike the official script's KeyError.
    has_answer_qids = [k for k, v in qid_to_has_answer.items() if v and k in exact_raw]
    no_answer_qids = [k for k, v in qid_to_has_answer.items() if not v and k in exact_raw]
    for prefix, qids in (("HasAns", has_answer_qids), ("NoAns", no_answer_qids)):
        if qids:
            for key, value in _make_eval_dict(exact_thresh, f1_thresh, qid_list=qids).items():
                result[f"{prefix}_{key}"] = value
    # Like the official script: thresholds are searched over the no-answer probabilities of the predictions.
    probabilities = {k: no_answer_probabilities.get(k, 0.0) for k in predictions}
    result["best_exact"], result["best_exact_thresh"] = _find_best_thresh(
        predictions, exact_raw, probabilities, qid_to_has_answer
    )
    result["best_f1"], result["best_f1_thresh"] = _find_best_thresh(
        predictions, f1_raw, probabilities, qid_to_has_answer
    )
    return result


def squad_compute_metrics(predictions, references, version_2_with_negative: bool = False) -> dict[str, float]:
    """Dispatches to [`squad_v2_compute_metrics`] or [`squad_v1_compute_metrics`]."""
    if version_2_with_negative:
        return squad_v2_compute_metrics(predictions, references)
    return squad_v1_compute_metrics(predictions, references)


def make_squad_compute_metrics(version_2_with_negative: bool = False) -> Callable[[Any], dict[str, float]]:
    """
    Builds the `compute_metrics` of [`~d2v_hf.trainer.QuestionAnsweringTrainer`]: it receives the `EvalPrediction`
    made by the post-processing function (`predictions` = formatted predictions, `label_ids` = references).
    """

    def compute_metrics(eval_prediction) -> dict[str, float]:
        return squad_compute_metrics(
            eval_prediction.predictions, eval_prediction.label_ids, version_2_with_negative=version_2_with_negative
        )

    return compute_metrics


__all__ = [
    "GLUE_TASK_METRICS",
    "glue_compute_metrics",
    "make_glue_compute_metrics",
    "make_squad_compute_metrics",
    "normalize_answer",
    "squad_compute_metrics",
    "squad_v1_compute_metrics",
    "squad_v1_exact_match",
    "squad_v1_f1",
    "squad_v2_compute_metrics",
    "squad_v2_exact",
    "squad_v2_f1",
]
