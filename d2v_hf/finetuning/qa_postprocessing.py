"""
Post-processing of extractive QA predictions, as transformers' `utils_qa.py`: the start/end logits of all the windows
of an example are mapped back to its context through the offset mapping, keeping the best of the `n_best_size` x
`n_best_size` candidates; plus the XQuAD zero-shot results table.
"""

import collections
import json
import logging
import os
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from transformers import EvalPrediction


logger = logging.getLogger(__name__)


def postprocess_qa_predictions(
    examples,
    features,
    predictions: tuple[np.ndarray, np.ndarray],
    version_2_with_negative: bool = False,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
    output_dir: str | None = None,
    prefix: str | None = None,
) -> collections.OrderedDict:
    """
    Turns start/end logits of the features into answer texts for the examples, as transformers' `utils_qa.py` does.

    For each example, the `n_best_size` best start and end positions of each of its features are combined; spans
    that leave the context, end before they start or are longer than `max_answer_length` tokens are dropped, and the
    best-scoring span (start logit + end logit) is kept. With `version_2_with_negative`, the null answer scores the
    minimum over the features of `start_logits[0] + end_logits[0]` (CLS), and the empty answer is predicted when
    `null_score - best_non_null_score > null_score_diff_threshold`.

    Args:
        examples: the raw examples (`id`, `context`).
        features: the features from [`prepare_validation_features`] (`example_id`, `offset_mapping`).
        predictions (`tuple[np.ndarray, np.ndarray]`): start and end logits, one row per feature.
        version_2_with_negative (`bool`): whether the null answer is allowed.
        n_best_size (`int`): number of start/end candidates per feature, and of n-best answers kept.
        max_answer_length (`int`): longest answer, in tokens.
        null_score_diff_threshold (`float`): see above (v2 only).
        output_dir (`str`, *optional*): if given, `predictions.json`, `nbest_predictions.json` (and `null_odds.json`
            in v2) are written there, with `prefix_` prepended when `prefix` is given.

    Returns:
        `collections.OrderedDict`: example id -> predicted answer text.
    """
    if len(predictions) != 2:
        raise ValueError(
            f"`predictions` should be a tuple (start_logits, end_logits), got {len(predictions)} elements."
        )
    all_start_logits, all_end_logits = predictions
    # Column access below needs `datasets.Dataset`s; plain dicts of lists (handy in tests) are converted.
    if isinstance(examples, dict):
        examples = datasets.Dataset.from_dict(examples)
    if isinstance(features, dict):
        features = datasets.Dataset.from_dict(features)
    if len(all_start_logits) != len(features):
        raise ValueError(f"Got {len(all_start_logits)} predictions and {len(features)} features.")

    # [:] reads the whole column at once (datasets >= 4 returns a lazy Column, read row by row when iterated)
    example_id_to_index = {k: i for i, k in enumerate(examples["id"][:])}
    features_per_example = collections.defaultdict(list)
    for i, example_id in enumerate(features["example_id"][:]):
        if example_id not in example_id_to_index:
            raise ValueError(f"Feature {i} points at example id {example_id!r}, which is not among the examples.")
        features_per_example[example_id_to_index[example_id]].append(i)
    all_offsets = features["offset_mapping"][:]
    all_max_context = features["token_is_max_context"][:] if "token_is_max_context" in features.column_names else None

    all_predictions = collections.OrderedDict()
    all_nbest_json = collections.OrderedDict()
    scores_diff_json = collections.OrderedDict() if version_2_with_negative else None
    logger.info(f"Post-processing {len(examples)} example predictions split into {len(features)} features.")

    for example_index, example in enumerate(examples):
        if not features_per_example[example_index]:
            raise ValueError(
                f"Example {example['id']!r} has no feature: select examples, not features, to subsample the data."
            )
        min_null_prediction = None
        prelim_predictions = []
        for feature_index in features_per_example[example_index]:
            start_logits = all_start_logits[feature_index]
            end_logits = all_end_logits[feature_index]
            offset_mapping = all_offsets[feature_index]
            token_is_max_context = all_max_context[feature_index] if all_max_context is not None else None

            feature_null_score = start_logits[0] + end_logits[0]
            if min_null_prediction is None or min_null_prediction["score"] > feature_null_score:
                min_null_prediction = {
                    "offsets": (0, 0),
                    "score": feature_null_score,
                    "start_logit": start_logits[0],
                    "end_logit": end_logits[0],
                }

            start_indexes = np.argsort(start_logits)[-1 : -n_best_size - 1 : -1].tolist()
            end_indexes = np.argsort(end_logits)[-1 : -n_best_size - 1 : -1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    # Skip out-of-bounds indices and tokens outside the context (offset None).
                    if (
                        start_index >= len(offset_mapping)
                        or end_index >= len(offset_mapping)
                        or offset_mapping[start_index] is None
                        or offset_mapping[end_index] is None
                    ):
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    if token_is_max_context is not None and not token_is_max_context.get(str(start_index), False):
                        continue
                    prelim_predictions.append(
                        {
                            "offsets": (offset_mapping[start_index][0], offset_mapping[end_index][1]),
                            "score": start_logits[start_index] + end_logits[end_index],
                            "start_logit": start_logits[start_index],
                            "end_logit": end_logits[end_index],
                        }
                    )
        if version_2_with_negative:
            prelim_predictions.append(min_null_prediction)
            null_score = min_null_prediction["score"]

        n_best = sorted(prelim_predictions, key=lambda x: x["score"], reverse=True)[:n_best_size]
        # Add back the null prediction if it was cut by the n-best selection.
        if version_2_with_negative and not any(p["offsets"] == (0, 0) for p in n_best):
            n_best.append(min_null_prediction)

        context = example["context"]
        for pred in n_best:
            offsets = pred.pop("offsets")
            pred["text"] = context[offsets[0] : offsets[1]]

        # Rare edge case (no valid span at all): a fake prediction avoids failing.
        if len(n_best) == 0 or (len(n_best) == 1 and n_best[0]["text"] == ""):
            n_best.insert(0, {"text": "empty", "start_logit": 0.0, "end_logit": 0.0, "score": 0.0})

        scores = np.array([pred.pop("score") for pred in n_best])
        exp_scores = np.exp(scores - np.max(scores))
        probs = exp_scores / exp_scores.sum()
        for prob, pred in zip(probs, n_best):
            pred["probability"] = prob

        if not version_2_with_negative:
            all_predictions[example["id"]] = n_best[0]["text"]
        else:
            i = 0
            while n_best[i]["text"] == "":
                i += 1
            best_non_null_pred = n_best[i]
            score_diff = null_score - best_non_null_pred["start_logit"] - best_non_null_pred["end_logit"]
            scores_diff_json[example["id"]] = float(score_diff)
            if score_diff > null_score_diff_threshold:
                all_predictions[example["id"]] = ""
            else:
                all_predictions[example["id"]] = best_non_null_pred["text"]

        all_nbest_json[example["id"]] = [
            {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in pred.items()} for pred in n_best
        ]

    if output_dir is not None:
        if not os.path.isdir(output_dir):
            raise ValueError(f"output_dir {output_dir!r} is not a directory.")
        name = lambda base: base if prefix is None else f"{prefix}_{base}"  # noqa: E731
        with open(os.path.join(output_dir, name("predictions.json")), "w", encoding="utf-8") as f:
            f.write(json.dumps(all_predictions, indent=4, ensure_ascii=False) + "\n")
        with open(os.path.join(output_dir, name("nbest_predictions.json")), "w", encoding="utf-8") as f:
            f.write(json.dumps(all_nbest_json, indent=4, ensure_ascii=False) + "\n")
        if version_2_with_negative:
            with open(os.path.join(output_dir, name("null_odds.json")), "w", encoding="utf-8") as f:
                f.write(json.dumps(scores_diff_json, indent=4) + "\n")
    return all_predictions


def make_qa_post_processing_function(
    version_2_with_negative: bool = False,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
    output_dir: str | None = None,
    answer_column_name: str = "answers",
):
    """
    Builds the `post_process_function(examples, features, predictions, stage="eval")` of
    [`~d2v_hf.trainer.QuestionAnsweringTrainer`]: it runs [`postprocess_qa_predictions`] and returns an
    `EvalPrediction` whose `predictions` are `evaluate`-style prediction dicts and `label_ids` the references.
    """

    def post_processing_function(examples, features, predictions, stage: str = "eval") -> EvalPrediction:
        if isinstance(predictions, tuple) and len(predictions) > 2:
            predictions = predictions[:2]
        answers = postprocess_qa_predictions(
            examples=examples,
            features=features,
            predictions=predictions,
            version_2_with_negative=version_2_with_negative,
            n_best_size=n_best_size,
            max_answer_length=max_answer_length,
            null_score_diff_threshold=null_score_diff_threshold,
            output_dir=output_dir,
            prefix=stage,
        )
        if version_2_with_negative:
            formatted = [{"id": k, "prediction_text": v, "no_answer_probability": 0.0} for k, v in answers.items()]
        else:
            formatted = [{"id": k, "prediction_text": v} for k, v in answers.items()]
        references = [{"id": ex["id"], "answers": ex[answer_column_name]} for ex in examples]
        return EvalPrediction(predictions=formatted, label_ids=references)

    return post_processing_function


def format_xquad_results(results: dict[str, dict[str, float]]) -> tuple[str, dict[str, Any]]:
    """
    Formats per-language `{"exact_match", "f1"}` results as a markdown table with an average row.

    Returns:
        `(markdown, summary)` where `summary` is `{"languages": {lang: {"exact_match", "f1"}}, "average": {...}}`.
    """
    if not results:
        raise ValueError("No XQuAD results to format.")
    for language, values in results.items():
        missing = [k for k in ("exact_match", "f1") if k not in values]
        if missing:
            raise ValueError(f"XQuAD results for {language!r} lack {missing}; got keys {sorted(values)}.")
    languages = {lang: {"exact_match": float(v["exact_match"]), "f1": float(v["f1"])} for lang, v in results.items()}
    average = {
        "exact_match": float(np.mean([v["exact_match"] for v in languages.values()])),
        "f1": float(np.mean([v["f1"] for v in languages.values()])),
    }
    lines = ["| language | EM | F1 |", "|---|---:|---:|"]
    lines += [f"| {lang} | {v['exact_match']:.2f} | {v['f1']:.2f} |" for lang, v in languages.items()]
    lines.append(f"| **average** | **{average['exact_match']:.2f}** | **{average['f1']:.2f}** |")
    return "\n".join(lines) + "\n", {"languages": languages, "average": average}


def write_xquad_results(results: dict[str, dict[str, float]], output_dir: str | os.PathLike) -> dict[str, Any]:
    """Writes `xquad_results.md` and `xquad_results.json` to `output_dir`; returns the JSON summary."""
    markdown, summary = format_xquad_results(results)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "xquad_results.md").write_text(markdown, encoding="utf-8")
    (output_dir / "xquad_results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


__all__ = [
    "format_xquad_results",
    "make_qa_post_processing_function",
    "postprocess_qa_predictions",
    "write_xquad_results",
]
