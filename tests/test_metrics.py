"""GLUE and SQuAD metrics against hand-worked values; QA feature preparation and post-processing."""

import gzip
import json
import logging

import datasets
import numpy as np
import pytest
from transformers import EvalPrediction

from d2v_hf.finetuning import (
    format_xquad_results,
    load_squad_json,
    postprocess_qa_predictions,
    prepare_train_features,
    prepare_validation_features,
    select_parallel_articles,
    split_by_article,
)
from d2v_hf.finetuning import metrics as metrics_module
from d2v_hf.finetuning.metrics import (
    GLUE_TASK_METRICS,
    glue_compute_metrics,
    make_glue_compute_metrics,
    normalize_answer,
    squad_v1_compute_metrics,
    squad_v2_compute_metrics,
)

from .fixtures import build_tokenizer


# --------------------------------------------------------------------------------------------------------------------
# GLUE
# --------------------------------------------------------------------------------------------------------------------


def test_glue_keys_match_evaluate_glue_metric():
    predictions, references = [1, 0, 1, 1], [1, 1, 1, 0]
    for task, keys in GLUE_TASK_METRICS.items():
        result = glue_compute_metrics(task, predictions, references, backend="local")
        assert tuple(result) == keys, task
        assert all(isinstance(v, float) for v in result.values())


def test_glue_mrpc_accuracy_and_f1_by_hand():
    # TP=2 (positions 0, 2), FP=1 (3), FN=1 (1): precision = recall = 2/3, so F1 = 2/3; accuracy 2/4.
    result = glue_compute_metrics("mrpc", [1, 0, 1, 1], [1, 1, 1, 0], backend="local")
    assert result == pytest.approx({"accuracy": 0.5, "f1": 2 / 3})


def test_glue_cola_matthews_by_hand():
    # TP=2, FP=1, TN=2, FN=0: (2*2 - 1*0) / sqrt(3*2*3*2) = 4/6.
    result = glue_compute_metrics("cola", [1, 1, 0, 0, 1], [1, 0, 0, 0, 1], backend="local")
    assert result == pytest.approx({"matthews_correlation": 4 / 6})


def test_glue_stsb_pearson_spearman_by_hand():
    # x - mean = [-1.5, -.5, .5, 1.5], y - mean = [-1.75, -.75, .25, 2.25]: r = 6.5 / sqrt(5 * 8.75); ranks agree.
    result = glue_compute_metrics("stsb", [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0], backend="local")
    assert result["pearson"] == pytest.approx(6.5 / np.sqrt(5 * 8.75))
    assert result["spearmanr"] == pytest.approx(1.0)


@pytest.mark.parametrize("task", ["sst2", "mnli", "mnli_matched", "mnli_mismatched", "qnli", "rte", "wnli"])
def test_glue_accuracy_tasks(task):
    assert glue_compute_metrics(task, [0, 1, 2, 1], [0, 1, 1, 1], backend="local") == {"accuracy": 0.75}


def test_glue_auto_backend_falls_back_offline_with_a_logged_note(caplog):
    metrics_module._EVALUATE_GLUE_METRICS.pop("qqp", None)
    with caplog.at_level(logging.INFO, logger="d2v_hf.finetuning.metrics"):
        auto = glue_compute_metrics("qqp", [1, 0, 1, 1], [1, 1, 1, 0])
    assert auto == pytest.approx(glue_compute_metrics("qqp", [1, 0, 1, 1], [1, 1, 1, 0], backend="local"))
    if metrics_module._EVALUATE_GLUE_METRICS["qqp"] is None:  # offline: the fallback must have been announced
        assert "local scikit-learn/scipy implementation" in caplog.text


def test_glue_bad_inputs():
    with pytest.raises(ValueError, match="Unknown GLUE task name 'sst3'.*cola"):
        glue_compute_metrics("sst3", [1], [1])
    with pytest.raises(ValueError, match="2 predictions for 3 references"):
        glue_compute_metrics("sst2", [1, 0], [1, 0, 1], backend="local")
    with pytest.raises(ValueError, match="1-D"):
        glue_compute_metrics("sst2", [[0.1, 0.9]], [1], backend="local")


def test_make_glue_compute_metrics_for_trainer():
    logits = np.array([[2.0, -1.0], [0.0, 3.0], [1.0, 0.0], [-1.0, 1.0]])  # argmax: 0, 1, 0, 1
    result = make_glue_compute_metrics("mrpc")(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 1, 1])))
    # TP=2, FN=1, FP=0: F1 = 0.8; accuracy 3/4; combined_score is their mean (as in transformers' run_glue.py).
    assert result == pytest.approx({"accuracy": 0.75, "f1": 0.8, "combined_score": 0.775})
    stsb = make_glue_compute_metrics("stsb")(
        EvalPrediction(predictions=np.array([[1.0], [2.0], [3.0]]), label_ids=np.array([1.0, 2.0, 3.5]))
    )
    assert stsb["spearmanr"] == pytest.approx(1.0) and set(stsb) == {"pearson", "spearmanr", "combined_score"}


# --------------------------------------------------------------------------------------------------------------------
# SQuAD metrics
# --------------------------------------------------------------------------------------------------------------------


def _ref(qid, *answers):
    return {"id": qid, "answers": {"text": list(answers), "answer_start": [0] * len(answers)}}


def test_normalize_answer():
    assert normalize_answer("The  Eiffel-Tower!") == "eiffeltower"
    assert normalize_answer("An apple a day, THE end.") == "apple day end"
    assert normalize_answer("theater anthem") == "theater anthem"  # articles only as whole words


def test_squad_v1_by_hand():
    predictions = [
        {"id": "q1", "prediction_text": "the Denver Broncos."},  # EM with the second gold answer after normalization
        {"id": "q2", "prediction_text": "Denver Broncos team"},  # P = 2/3, R = 1: F1 = 0.8, EM 0
    ]
    references = [_ref("q1", "Broncos", "Denver Broncos"), _ref("q2", "Denver Broncos")]
    assert squad_v1_compute_metrics(predictions, references) == pytest.approx({"exact_match": 50.0, "f1": 90.0})
    # A question without prediction scores 0 but counts in the total (official script).
    result = squad_v1_compute_metrics(predictions, references + [_ref("q3", "Paris")])
    assert result == pytest.approx({"exact_match": 100 / 3, "f1": 180 / 3})
    # max over gold answers: the better-matching gold answer wins for F1 too.
    assert squad_v1_compute_metrics({"q": "big red dog"}, [_ref("q", "cat", "red dog")])["f1"] == pytest.approx(80.0)


def test_squad_v1_rejects_unanswerable_and_malformed():
    with pytest.raises(ValueError, match="'q1' has no gold answer"):
        squad_v1_compute_metrics({"q1": ""}, [_ref("q1")])
    with pytest.raises(ValueError, match="'id' and 'prediction_text'"):
        squad_v1_compute_metrics([{"id": "q1", "text": "x"}], [_ref("q1", "x")])


def test_squad_v2_by_hand():
    predictions = [
        {"id": "q1", "prediction_text": "Denver Broncos", "no_answer_probability": 0.1},  # 1 / 1
        {"id": "q2", "prediction_text": "the Denver Broncos team", "no_answer_probability": 0.1},  # 0 / 0.8
        {"id": "q3", "prediction_text": "", "no_answer_probability": 0.1},  # unanswerable, empty: 1 / 1
        {"id": "q4", "prediction_text": "Paris", "no_answer_probability": 0.9},  # unanswerable, answered: 0 / 0
    ]
    references = [_ref("q1", "Denver Broncos"), _ref("q2", "Denver Broncos"), _ref("q3"), _ref("q4")]
    result = squad_v2_compute_metrics(predictions, references)
    expected = {
        "exact": 50.0,
        "f1": 70.0,
        "total": 4,
        "HasAns_exact": 50.0,
        "HasAns_f1": 90.0,
        "HasAns_total": 2,
        "NoAns_exact": 50.0,
        "NoAns_f1": 50.0,
        "NoAns_total": 2,
        # Best threshold: start from the 2 no-answer questions; sorted by probability, q1 (+1), q2 (+0 / +0.8),
        # q3 (+0), q4 (-1): the best running score is 3 (EM) / 3.8 (F1), reached at threshold 0.1.
        "best_exact": 75.0,
        "best_exact_thresh": 0.1,
        "best_f1": 95.0,
        "best_f1_thresh": 0.1,
    }
    assert result == pytest.approx(expected)
    # Above the threshold, q4's answer counts as "no answer", which is right for it.
    assert squad_v2_compute_metrics(predictions, references, no_answer_threshold=0.5)["exact"] == 75.0


# --------------------------------------------------------------------------------------------------------------------
# Post-processing (hand-built features)
# --------------------------------------------------------------------------------------------------------------------

CONTEXT = "Paris is the capital of France."
# Token offsets of a feature "<s> q q </s></s> Paris is the capital of France . </s>": None outside the context.
OFFSETS = [None, None, None, None, None, [0, 5], [6, 8], [9, 12], [13, 20], [21, 23], [24, 30], [30, 31], None]


def _features(*offsets, example_id="e1"):
    return {"example_id": [example_id] * len(offsets), "offset_mapping": list(offsets)}


def _logits(size, high):
    logits = np.full(size, -10.0)
    for index, value in high.items():
        logits[index] = value
    return logits


def test_postprocess_picks_best_valid_span_in_n_best():
    examples = {"id": ["e1"], "context": [CONTEXT]}
    # Best raw scores point at question tokens (offset None) and at an end before the start: both must be skipped.
    start = _logits(13, {1: 9.0, 8: 5.0, 10: 4.0})
    end = _logits(13, {2: 9.0, 6: 8.0, 10: 6.0})
    answers = postprocess_qa_predictions(examples, _features(OFFSETS), (start[None], end[None]), n_best_size=3)
    assert answers == {"e1": "capital of France"}  # start 8, end 10: 5 + 6 beats start 10/end 10 (4 + 6)
    # max_answer_length=2 tokens drops that span: the best remaining one is "France".
    answers = postprocess_qa_predictions(
        examples, _features(OFFSETS), (start[None], end[None]), n_best_size=3, max_answer_length=2
    )
    assert answers == {"e1": "France"}


def test_postprocess_n_best_size_limits_candidates():
    examples = {"id": ["e1"], "context": [CONTEXT]}
    start = _logits(13, {1: 9.0, 2: 8.5, 5: 1.0})  # the only valid start is third-best
    end = _logits(13, {5: 1.0})
    features = _features(OFFSETS)
    assert postprocess_qa_predictions(examples, features, (start[None], end[None]), n_best_size=3) == {"e1": "Paris"}
    # With n_best_size=2 the valid start is never tried: only the fallback "empty" remains.
    assert postprocess_qa_predictions(examples, features, (start[None], end[None]), n_best_size=2) == {"e1": "empty"}


def test_postprocess_version_2_null_answer_and_threshold():
    examples = {"id": ["e1"], "context": [CONTEXT]}
    start = _logits(13, {0: 6.0, 5: 2.0})
    end = _logits(13, {0: 6.0, 5: 2.0})
    predictions = (start[None], end[None])
    # null score 12 vs best span ("Paris") 4: score_diff = 8 > 0, so no answer.
    assert postprocess_qa_predictions(examples, _features(OFFSETS), predictions, version_2_with_negative=True) == {
        "e1": ""
    }
    answers = postprocess_qa_predictions(
        examples, _features(OFFSETS), predictions, version_2_with_negative=True, null_score_diff_threshold=8.5
    )
    assert answers == {"e1": "Paris"}


def test_postprocess_combines_features_of_one_example(tmp_path):
    # Two windows of one example; the answer is only inside the second, with the higher score.
    examples = {"id": ["e1", "e2"], "context": [CONTEXT, "Rome is in Italy."]}
    second = [None, None, None, [13, 20], [21, 23], [24, 30], None]
    e2 = [None, None, None, [0, 4], [5, 7], [8, 10], [11, 16]]
    features = {"example_id": ["e1", "e1", "e2"], "offset_mapping": [OFFSETS[:7], second, e2]}
    start = np.stack([_logits(7, {5: 2.0}), _logits(7, {5: 7.0}), _logits(7, {6: 3.0})])
    end = np.stack([_logits(7, {6: 2.0}), _logits(7, {5: 7.0}), _logits(7, {6: 3.0})])
    answers = postprocess_qa_predictions(examples, features, (start, end), output_dir=str(tmp_path), prefix="eval")
    assert answers == {"e1": "France", "e2": "Italy"}
    assert json.loads((tmp_path / "eval_predictions.json").read_text()) == answers
    assert (tmp_path / "eval_nbest_predictions.json").is_file()


def test_postprocess_input_checks():
    with pytest.raises(ValueError, match="2 predictions and 1 features"):
        postprocess_qa_predictions(
            {"id": ["e1"], "context": [CONTEXT]}, _features(OFFSETS), (np.zeros((2, 13)), np.zeros((2, 13)))
        )
    with pytest.raises(ValueError, match="'e2' has no feature"):
        postprocess_qa_predictions(
            {"id": ["e1", "e2"], "context": [CONTEXT, CONTEXT]},
            _features(OFFSETS),
            (np.zeros((1, 13)), np.zeros((1, 13))),
        )


# --------------------------------------------------------------------------------------------------------------------
# Feature preparation with doc stride (real tokenizer)
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qa_tokenizer():
    words = "the cat sat on a mat while dogs ran across green fields near old stone houses and rivers".split()
    texts = [" ".join(words[i:] + words[:i]) for i in range(len(words))] * 5
    return build_tokenizer(texts, vocab_size=300, model_max_length=64)


def _long_example():
    filler = " ".join(["the cat sat on a mat while dogs ran across green fields"] * 6)
    answer = "old stone houses"
    context = f"{filler} near {answer} and rivers."
    return {
        "id": ["x1", "x2"],
        "question": ["  where did dogs run?", "what is near?"],
        "context": [context, "fields near rivers"],
        "answers": [
            {"text": [answer], "answer_start": [context.index(answer)]},
            {"text": ["rivers"], "answer_start": [12]},
        ],
    }


def test_doc_stride_features_map_back_to_the_answer(qa_tokenizer):
    examples = _long_example()
    train = prepare_train_features(examples, qa_tokenizer, max_length=32, doc_stride=8)
    assert set(train) >= {"input_ids", "attention_mask", "start_positions", "end_positions"}
    # The long context is cut into several windows; a short one gives exactly one feature.
    num_long = len(qa_tokenizer(examples["context"][0], add_special_tokens=False)["input_ids"])
    assert num_long > 32 and len(train["input_ids"]) > 3
    validation = prepare_validation_features(examples, qa_tokenizer, max_length=32, doc_stride=8)
    assert validation["example_id"].count("x2") == 1 and validation["example_id"].count("x1") >= 3
    assert len(validation["input_ids"]) == len(train["input_ids"])

    found = 0
    for i, example_id in enumerate(validation["example_id"]):
        start, end = train["start_positions"][i], train["end_positions"][i]
        index = examples["id"].index(example_id)
        if start == 0:  # CLS: the answer is not inside this window
            assert end == 0
            continue
        offsets = validation["offset_mapping"][i]
        text = examples["context"][index][offsets[start][0] : offsets[end][1]]
        assert text == examples["answers"][index]["text"][0]
        found += 1
    assert found >= 2  # both examples have at least one window holding their answer

    # Perfect logits (one-hot on the labeled positions) must post-process back to the gold answers: EM 100.
    size = len(validation["input_ids"][0])
    start_logits = np.stack([_logits(size, {s: 10.0}) for s in train["start_positions"]])
    end_logits = np.stack([_logits(size, {e: 10.0}) for e in train["end_positions"]])
    answers = postprocess_qa_predictions(
        {"id": examples["id"], "context": examples["context"]},
        {"example_id": validation["example_id"], "offset_mapping": validation["offset_mapping"]},
        (start_logits, end_logits),
    )
    references = [{"id": q, "answers": a} for q, a in zip(examples["id"], examples["answers"])]
    assert squad_v1_compute_metrics(answers, references) == {"exact_match": 100.0, "f1": 100.0}


def test_train_features_unanswerable(qa_tokenizer):
    examples = {
        "id": ["u1"],
        "question": ["who?"],
        "context": ["the cat sat"],
        "answers": [{"text": [], "answer_start": []}],
    }
    features = prepare_train_features(examples, qa_tokenizer, max_length=32, doc_stride=8)
    assert features["start_positions"] == [0] and features["end_positions"] == [0]
    with pytest.raises(ValueError, match="'u1' has no answer"):
        prepare_train_features(examples, qa_tokenizer, max_length=32, doc_stride=8, version_2_with_negative=False)
    with pytest.raises(ValueError, match="doc_stride \\(32\\) must be smaller"):
        prepare_train_features(examples, qa_tokenizer, max_length=32, doc_stride=32)


def test_long_question_is_truncated_not_a_panic(qa_tokenizer):
    examples = {
        "id": ["l1"],
        "question": [" ".join(["where did the dogs run"] * 20)],
        "context": ["the dogs ran across green fields"],
        "answers": [{"text": ["green fields"], "answer_start": [20]}],
    }
    features = prepare_train_features(examples, qa_tokenizer, max_length=32, doc_stride=8)
    assert all(len(ids) == 32 for ids in features["input_ids"])


# --------------------------------------------------------------------------------------------------------------------
# SQuAD files and XQuAD splits
# --------------------------------------------------------------------------------------------------------------------


def _squad_payload():
    return {
        "version": "v2.0",
        "data": [
            {
                "title": "Art_A",
                "paragraphs": [
                    {
                        "context": "Paris is the capital of France.",
                        "qas": [
                            {"id": "a1", "question": "Capital?", "answers": [{"text": "Paris", "answer_start": 0}]},
                            {"id": "a2", "question": "Moon?", "answers": [], "is_impossible": True},
                        ],
                    }
                ],
            },
            {
                "title": "Art_B",
                "paragraphs": [
                    {
                        "context": "Rome is in Italy.",
                        "qas": [
                            {"id": "b1", "question": "Where?", "answers": [{"text": "Italy", "answer_start": 11}]}
                        ],
                    }
                ],
            },
        ],
    }


def test_load_squad_json_nested_gzip_and_v1_check(tmp_path):
    path = tmp_path / "train.json.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        json.dump(_squad_payload(), f)
    dataset = load_squad_json(path)
    assert dataset.column_names == ["id", "title", "context", "question", "answers"]
    assert dataset["id"] == ["a1", "a2", "b1"] and dataset["title"] == ["Art_A", "Art_A", "Art_B"]
    assert dataset[0]["answers"] == {"text": ["Paris"], "answer_start": [0]}
    assert dataset[1]["answers"] == {"text": [], "answer_start": []}
    with pytest.raises(ValueError, match="'a2'.*no answer.*version_2_with_negative"):
        load_squad_json(path, version_2_with_negative=False)


def test_load_squad_json_flat_jsonl_and_errors(tmp_path):
    flat = tmp_path / "flat.jsonl"
    record = {
        "id": "f1",
        "title": "T",
        "context": "abc",
        "question": "q",
        "answers": {"text": ["b"], "answer_start": [1]},
    }
    flat.write_text(json.dumps(record) + "\n" + json.dumps(dict(record, id="f2")) + "\n")
    assert load_squad_json(flat, version_2_with_negative=False)["id"] == ["f1", "f2"]

    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_squad_json(empty)
    no_data = tmp_path / "nodata.json"
    no_data.write_text(json.dumps({"data": []}))
    with pytest.raises(ValueError, match="no articles"):
        load_squad_json(no_data)
    payload = _squad_payload()
    del payload["data"][1]["paragraphs"][0]["context"]
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=r"Missing key 'context' at data\[1\]\.paragraphs\[0\]"):
        load_squad_json(broken)
    with pytest.raises(ValueError, match="does not exist"):
        load_squad_json(tmp_path / "missing.json")


def _articles(num_articles=6, per_article=3, title_prefix="T"):
    rows = {"id": [], "title": [], "context": [], "question": [], "answers": []}
    for a in range(num_articles):
        for q in range(per_article):
            rows["id"].append(f"{a}-{q}")
            rows["title"].append(f"{title_prefix}{a}")
            rows["context"].append(f"context {a}")
            rows["question"].append(f"question {q}")
            rows["answers"].append({"text": ["context"], "answer_start": [0]})
    return datasets.Dataset.from_dict(rows)


def test_split_by_article_is_disjoint_and_seeded():
    dataset = _articles()
    splits = split_by_article(dataset, test_fraction=0.5, seed=3)
    train_titles, test_titles = set(splits["train"]["title"]), set(splits["test"]["title"])
    assert not train_titles & test_titles and len(test_titles) == 3 and len(train_titles) == 3
    assert len(splits["train"]) + len(splits["test"]) == len(dataset)
    assert split_by_article(dataset, 0.5, seed=3)["test"]["id"] == splits["test"]["id"]
    with pytest.raises(ValueError, match="test_fraction must be in"):
        split_by_article(dataset, test_fraction=1.0)


def test_select_parallel_articles_uses_ids_not_titles():
    english = _articles()
    translated = _articles(title_prefix="Titel")  # same ids, translated titles
    selected = select_parallel_articles(english, ["T1", "T4"], translated)
    assert selected["id"] == ["1-0", "1-1", "1-2", "4-0", "4-1", "4-2"]
    assert set(selected["title"]) == {"Titel1", "Titel4"}
    with pytest.raises(ValueError, match="not parallel"):
        select_parallel_articles(english, ["T1"], translated.select(range(3)))
    with pytest.raises(ValueError, match="not found"):
        select_parallel_articles(english, ["Nope"], translated)


@pytest.mark.real_data
def test_xquad_files_are_parallel(shared_data):
    english = load_squad_json(shared_data / "xquad" / "xquad.en.json.gz", version_2_with_negative=False)
    german = load_squad_json(shared_data / "xquad" / "xquad.de.json.gz", version_2_with_negative=False)
    assert len(english) == len(german) == 1190 and english["id"] == german["id"]
    splits = split_by_article(english, 0.5, seed=42)
    held_out = list(dict.fromkeys(splits["test"]["title"]))
    german_test = select_parallel_articles(english, held_out, german)
    assert german_test["id"] == splits["test"]["id"] and german_test["context"] != splits["test"]["context"]


def test_format_xquad_results():
    markdown, summary = format_xquad_results(
        {"en": {"exact_match": 50.0, "f1": 60.0}, "de": {"exact_match": 30.0, "f1": 40.0}}
    )
    assert summary["average"] == {"exact_match": 40.0, "f1": 50.0}
    assert "| de | 30.00 | 40.00 |" in markdown and "**average**" in markdown
    with pytest.raises(ValueError, match="lack \\['f1'\\]"):
        format_xquad_results({"en": {"exact_match": 1.0}})
