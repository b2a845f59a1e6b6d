"""Extractive question answering data: SQuAD/XQuAD loading, article splits and feature preparation.

The feature preparation and post-processing follow transformers' `examples/pytorch/question-answering` (`run_qa.py`
and `utils_qa.py`): contexts longer than `max_length` are split into overlapping windows (`doc_stride` tokens of
overlap), answers outside a window (and unanswerable questions) point at the CLS token, and predictions are mapped
back to the original context by [`~d2v_hf.finetuning.postprocess_qa_predictions`].

XQuAD (`xquad.{lang}.json.gz`) holds the same 48 articles (240 paragraphs, 1,190 questions) in 12 languages: files
are parallel, with the same article order and the same question ids in every language. [`split_by_article`] splits
the English file by article and [`select_parallel_articles`] picks the same articles in another language through the
question ids (not through titles, which a translated file may not keep in English).

```python
>>> from d2v_hf.finetuning import load_squad_json, split_by_article, select_parallel_articles
>>> english = load_squad_json("../shared/data/xquad/xquad.en.json.gz")
>>> splits = split_by_article(english, test_fraction=0.5, seed=42)
>>> german = load_squad_json("../shared/data/xquad/xquad.de.json.gz")
>>> german_test = select_parallel_articles(english, splits["test"].unique("title"), german)
```
"""

import gzip
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import datasets
import numpy as np

from .glue_data import MODEL_SELECTION_SEED


logger = logging.getLogger(__name__)


XQUAD_LANGUAGES = ("ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh")


SQUAD_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {
            "text": datasets.List(datasets.Value("string")),
            "answer_start": datasets.List(datasets.Value("int32")),
        },
    }
)


def _require(record: dict, key: str, where: str):
    if not isinstance(record, dict):
        raise ValueError(f"Expected a JSON object at {where}, got {type(record).__name__}: {str(record)[:100]!r}.")
    if key not in record:
        raise ValueError(f"Missing key {key!r} at {where}; keys present: {sorted(record)}.")
    return record[key]


def _read_json_text(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read()


def load_squad_json(path: str | os.PathLike, version_2_with_negative: bool = True) -> datasets.Dataset:
    """
    Reads a SQuAD-format file into a `datasets.Dataset` with columns `id`, `title`, `context`, `question`, `answers`
    (`{"text": [...], "answer_start": [...]}`), like `load_dataset("squad")`.

    Accepted layouts (plain or gzip-compressed, `.json`, `.jsonl`, `.json.gz`):
    - the official nested layout `{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
      "answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}` (SQuAD v1.1/v2.0, XQuAD);
    - the flat layout of `load_dataset("squad")` exports: one record per question with the five columns, either as a
      JSON list, as `{"data": [...]}` or as JSON lines.

    Args:
        path (`str` or `os.PathLike`):
            The file to read.
        version_2_with_negative (`bool`, *optional*, defaults to `True`):
            When `False` (SQuAD v1.1 mode), a question without answer (or with `is_impossible: true`) raises a
            `ValueError` naming its id. SQuAD v2.0 questions marked `is_impossible` get empty answers (their
            `plausible_answers` are not answers).

    Raises:
        `ValueError`: missing or empty file, malformed JSON, a missing key (named with its location), or an
        unanswerable question in v1.1 mode.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"SQuAD file {str(path)!r} does not exist.")
    text = _read_json_text(path)
    if not text.strip():
        raise ValueError(f"SQuAD file {str(path)!r} is empty.")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        # JSON lines: one flat record per line.
        try:
            payload = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise ValueError(f"{str(path)!r} is neither JSON nor JSON lines: {error}.") from None

    records = payload.get("data") if isinstance(payload, dict) else payload
    if isinstance(payload, dict) and "data" not in payload:
        raise ValueError(f"Missing key 'data' at the top level of {str(path)!r}; keys present: {sorted(payload)}.")
    if not isinstance(records, list):
        raise ValueError(f"Expected a list of articles or questions in {str(path)!r}, got {type(records).__name__}.")
    if not records:
        raise ValueError(f"SQuAD file {str(path)!r} contains no articles/questions.")

    rows = {name: [] for name in SQUAD_FEATURES}
    nested = isinstance(records[0], dict) and "paragraphs" in records[0]
    if nested:
        for a, article in enumerate(records):
            title = article.get("title", "") if isinstance(article, dict) else ""
            for p, paragraph in enumerate(_require(article, "paragraphs", f"data[{a}]")):
                where = f"data[{a}].paragraphs[{p}]"
                context = _require(paragraph, "context", where)
                for q, qa in enumerate(_require(paragraph, "qas", where)):
                    qa_where = f"{where}.qas[{q}]"
                    answers = [] if qa.get("is_impossible", False) else _require(qa, "answers", qa_where)
                    rows["id"].append(str(_require(qa, "id", qa_where)))
                    rows["title"].append(title)
                    rows["context"].append(context)
                    rows["question"].append(_require(qa, "question", qa_where))
                    rows["answers"].append(
                        {
                            "text": [
                                _require(ans, "text", f"{qa_where}.answers[{i}]") for i, ans in enumerate(answers)
                            ],
                            "answer_start": [
                                int(_require(ans, "answer_start", f"{qa_where}.answers[{i}]"))
                                for i, ans in enumerate(answers)
                            ],
                        }
                    )
    else:
        for r, record in enumerate(records):
            where = f"record {r}"
            for key in ("id", "context", "question", "answers"):
                _require(record, key, where)
            answers = record["answers"]
            if isinstance(answers, list):  # [{"text", "answer_start"}] like the nested layout
                answers = {"text": [a["text"] for a in answers], "answer_start": [a["answer_start"] for a in answers]}
            rows["id"].append(str(record["id"]))
            rows["title"].append(record.get("title", ""))
            rows["context"].append(record["context"])
            rows["question"].append(record["question"])
            rows["answers"].append(
                {
                    "text": list(_require(answers, "text", f"{where}.answers")),
                    "answer_start": [int(s) for s in _require(answers, "answer_start", f"{where}.answers")],
                }
            )
    if not rows["id"]:
        raise ValueError(f"SQuAD file {str(path)!r} contains no questions.")
    dataset = datasets.Dataset.from_dict(rows, features=SQUAD_FEATURES)
    validate_squad_dataset(dataset, version_2_with_negative=version_2_with_negative, name=str(path))
    return dataset


def validate_squad_dataset(dataset: datasets.Dataset, version_2_with_negative: bool = False, name: str = "dataset"):
    """
    Checks a SQuAD-style dataset: the `id`, `context`, `question` and `answers` columns exist, answer texts and starts
    pair up, each answer text stands at its `answer_start` in the context, and (v1.1 mode) every question has an
    answer.

    Raises:
        `ValueError` naming the missing column or the offending question id.
    """
    missing = [c for c in ("id", "context", "question", "answers") if c not in dataset.column_names]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; columns present: {dataset.column_names}.")
    if len(dataset) == 0:
        raise ValueError(f"{name} contains no questions.")
    # [:] reads each column at once (datasets >= 4 returns a lazy Column, read row by row when iterated)
    for qid, context, answers in zip(dataset["id"][:], dataset["context"][:], dataset["answers"][:]):
        if len(answers["text"]) != len(answers["answer_start"]):
            raise ValueError(f"Question {qid!r} in {name} has {answers!r}: texts and answer_start differ in length.")
        for text, start in zip(answers["text"], answers["answer_start"]):
            # a start that does not point at the text would train the model on another span, silently
            if context[start : start + len(text)] != text:
                raise ValueError(
                    f"Question {qid!r} in {name}: the answer {text!r} is not at answer_start={start} of its context "
                    f"(found {context[start : start + len(text)]!r}); fix answer_start (the character offset)."
                )
        if not version_2_with_negative and len(answers["text"]) == 0:
            raise ValueError(
                f"Question {qid!r} in {name} has no answer, which SQuAD v1.1 does not allow; pass "
                "--version_2_with_negative (SQuAD v2.0) for data with unanswerable questions."
            )


def load_xquad(
    xquad_dir: str | os.PathLike, languages: Sequence[str] = XQUAD_LANGUAGES
) -> dict[str, datasets.Dataset]:
    """Loads `xquad.{lang}.json.gz` (or `.json`) for each language from `xquad_dir` (SQuAD v1.1 mode)."""
    xquad_dir = Path(xquad_dir)
    result = {}
    for language in languages:
        if language not in XQUAD_LANGUAGES:
            raise ValueError(f"Unknown XQuAD language {language!r}; valid ones: {', '.join(XQUAD_LANGUAGES)}.")
        candidates = [xquad_dir / f"xquad.{language}.json.gz", xquad_dir / f"xquad.{language}.json"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise ValueError(
                f"No XQuAD file for {language!r} in {str(xquad_dir)!r} (looked for {candidates[0].name})."
            )
        result[language] = load_squad_json(path, version_2_with_negative=False)
    return result


def split_by_article(dataset: datasets.Dataset, test_fraction: float = 0.5, seed: int = 42) -> datasets.DatasetDict:
    """
    Splits a SQuAD-style dataset by article (`title`), so no context of a test article is seen in training.

    Args:
        dataset (`datasets.Dataset`): with a `title` column.
        test_fraction (`float`, *optional*, defaults to 0.5): fraction of the articles put in `test`, in (0, 1).
        seed (`int`, *optional*, defaults to 42): seed of the article shuffle.

    Returns:
        `datasets.DatasetDict` with `train` and `test`, each keeping the original row order.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
    if "title" not in dataset.column_names:
        raise ValueError(f"Cannot split by article without a 'title' column; columns: {dataset.column_names}.")
    titles = list(dict.fromkeys(dataset["title"][:]))  # unique, in order of appearance
    if len(titles) < 2:
        raise ValueError(f"Need at least 2 articles to split by article, got {len(titles)}: {titles}.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(titles))
    num_test = min(max(1, int(round(test_fraction * len(titles)))), len(titles) - 1)
    test_titles = {titles[i] for i in order[:num_test]}
    is_test = [title in test_titles for title in dataset["title"][:]]
    test_indices = [i for i, t in enumerate(is_test) if t]
    train_indices = [i for i, t in enumerate(is_test) if not t]
    return datasets.DatasetDict(train=dataset.select(train_indices), test=dataset.select(test_indices))


def select_parallel_articles(
    reference: datasets.Dataset, titles: Iterable[str], target: datasets.Dataset
) -> datasets.Dataset:
    """
    Selects, in a parallel dataset (another XQuAD language), the questions of the `reference` dataset's articles
    `titles`.

    The match goes through question ids, which XQuAD keeps identical across languages, so it works whatever the
    target language does to titles. The target rows are returned in the reference's order.

    Raises:
        `ValueError`: a title is not in `reference`, or some of the selected question ids are missing in `target`
        (the files are not parallel).
    """
    titles = list(titles)
    known_titles = set(reference["title"][:])
    unknown = [t for t in titles if t not in known_titles]
    if unknown:
        raise ValueError(f"Article title(s) {unknown[:5]} not found in the reference dataset.")
    wanted = set(titles)
    ids = [qid for qid, title in zip(reference["id"][:], reference["title"][:]) if title in wanted]
    target_index = {qid: i for i, qid in enumerate(target["id"][:])}
    missing = [qid for qid in ids if qid not in target_index]
    if missing:
        raise ValueError(
            f"{len(missing)} question id(s) of the selected articles are missing in the target dataset (e.g. "
            f"{missing[:3]}): the two files are not parallel XQuAD files."
        )
    return target.select([target_index[qid] for qid in ids])


def load_qa_datasets(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    xquad_dir: str | None = None,
    xquad_test_fraction: float = 0.5,
    xquad_languages: Sequence[str] = XQUAD_LANGUAGES,
    version_2_with_negative: bool = False,
    seed: int = 42,
    cache_dir: str | None = None,
    token: str | None = None,
) -> tuple[datasets.Dataset | None, dict[str, datasets.Dataset]]:
    """
    Loads the QA data of `run_qa.py`: `(train examples or None, {name: evaluation examples})`.

    - `xquad_dir` (zero-shot mode): the English XQuAD file is split by article ([`split_by_article`]); the train
      articles are returned for training and the held-out articles in every language of `xquad_languages` (same
      questions, through [`select_parallel_articles`]) for evaluation, keyed by language.
    - `train_file`/`validation_file`: SQuAD-format files ([`load_squad_json`]); the evaluation set is `validation`.
    - `dataset_name`: `load_dataset(dataset_name, dataset_config_name)` with `train`/`validation` splits.
    """
    local = train_file is not None or validation_file is not None
    if sum([xquad_dir is not None, local, dataset_name is not None]) > 1:
        raise ValueError("Give only one of --xquad_dir, --train_file/--validation_file and --dataset_name.")
    if xquad_dir is not None:
        if version_2_with_negative:
            raise ValueError(
                "XQuAD is SQuAD v1.1 data (every question has an answer): drop --version_2_with_negative."
            )
        languages = list(dict.fromkeys(xquad_languages))
        xquad = load_xquad(xquad_dir, list(dict.fromkeys(["en", *languages])))
        splits = split_by_article(xquad["en"], test_fraction=xquad_test_fraction, seed=seed)
        test_titles = list(dict.fromkeys(splits["test"]["title"][:]))
        logger.info(
            f"XQuAD: {len(splits['train'])} English training questions, {len(splits['test'])} held-out questions "
            f"from {len(test_titles)} articles, evaluated in {', '.join(languages)}."
        )
        eval_sets = {lang: select_parallel_articles(xquad["en"], test_titles, xquad[lang]) for lang in languages}
        return splits["train"], eval_sets
    if local:
        train = load_squad_json(train_file, version_2_with_negative) if train_file is not None else None
        eval_sets = {}
        if validation_file is not None:
            eval_sets["validation"] = load_squad_json(validation_file, version_2_with_negative)
        return train, eval_sets
    if dataset_name is None:
        raise ValueError("Give --dataset_name, --train_file/--validation_file or --xquad_dir.")
    raw = datasets.load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir, token=token)
    for split, dataset in raw.items():
        validate_squad_dataset(dataset, version_2_with_negative, name=f"{dataset_name} {split}")
    eval_sets = {"validation": raw["validation"]} if "validation" in raw else {}
    return raw.get("train"), eval_sets


def hold_out_articles_for_model_selection(train: datasets.Dataset, fraction: float, name: str = "validation"):
    """
    `(train, {name: held-out})`: a `fraction` of the training articles (seeded, the same for every run) becomes the
    evaluation set, so that learning rates are chosen without looking at the reported test articles.
    """
    if train is None:
        raise ValueError("--model_selection_fraction needs training data to hold a part of out.")
    splits = split_by_article(train, test_fraction=fraction, seed=MODEL_SELECTION_SEED)
    return splits["train"], {name: splits["test"]}


def _check_qa_tokenizer(tokenizer, max_length: int, doc_stride: int):
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"Question answering needs a fast tokenizer (offset mappings); {type(tokenizer).__name__} is not one."
        )
    if doc_stride >= max_length:
        raise ValueError(f"doc_stride ({doc_stride}) must be smaller than max_length ({max_length}).")


def _truncate_questions(questions, tokenizer, max_length, doc_stride, ids=None):
    """
    Cuts questions too long to leave `doc_stride` + 1 context tokens in a window (the tokenizer would panic): like
    `max_query_length` in the original BERT SQuAD code, the question keeps its first tokens.
    """
    budget = max_length - doc_stride - tokenizer.num_special_tokens_to_add(pair=True) - 1
    if budget <= 0:
        raise ValueError(
            f"max_length={max_length} leaves no room for a question and a context window with doc_stride="
            f"{doc_stride}: use a larger max_length or a smaller doc_stride."
        )
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    result = list(questions)
    for i, offsets in enumerate(encoded["offset_mapping"]):
        if len(offsets) <= budget:
            continue
        question = questions[i]
        # Shrink until the re-tokenized prefix fits (a prefix may tokenize slightly differently at its end).
        keep = budget
        while (
            keep > 0
            and len(tokenizer(question[: offsets[keep - 1][1]], add_special_tokens=False)["input_ids"]) > budget
        ):
            keep -= 1
        result[i] = question[: offsets[keep - 1][1]] if keep > 0 else ""
        logger.warning(
            f"Question {ids[i] if ids is not None else i!r} has {len(offsets)} tokens; kept the first {keep} so that "
            f"a window of max_length={max_length} holds doc_stride={doc_stride} context tokens."
        )
    return result


def _tokenize_qa(examples, tokenizer, question_column, context_column, max_length, doc_stride, pad_to_max_length):
    pad_on_right = tokenizer.padding_side == "right"
    # Some questions start with whitespace, which would waste room in the window (as in transformers' run_qa.py).
    questions = _truncate_questions(
        [q.lstrip() for q in examples[question_column]], tokenizer, max_length, doc_stride, examples.get("id")
    )
    contexts = examples[context_column]
    return tokenizer(
        questions if pad_on_right else contexts,
        contexts if pad_on_right else questions,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if pad_to_max_length else False,
    )


def prepare_train_features(
    examples: dict[str, list],
    tokenizer,
    max_length: int = 384,
    doc_stride: int = 128,
    pad_to_max_length: bool = True,
    version_2_with_negative: bool = True,
    question_column_name: str = "question",
    context_column_name: str = "context",
    answer_column_name: str = "answers",
) -> dict[str, list]:
    """
    Tokenizes a batch of examples (for `Dataset.map(batched=True)`) into training features with `start_positions`
    and `end_positions`.

    Long contexts give several features (windows overlapping by `doc_stride` tokens). A feature whose window does not
    contain the whole answer, and an unanswerable question, are labeled with the CLS token index.

    Args:
        examples (`dict[str, list]`): a batch with question, context and answers columns.
        tokenizer ([`PreTrainedTokenizerFast`]): must be fast (offset mappings).
        max_length (`int`): length of a feature (question + context window + special tokens).
        doc_stride (`int`): overlap between consecutive windows, in tokens.
        pad_to_max_length (`bool`): pad every feature to `max_length`.
        version_2_with_negative (`bool`): when `False`, an example without answer raises a `ValueError`.
    """
    _check_qa_tokenizer(tokenizer, max_length, doc_stride)
    pad_on_right = tokenizer.padding_side == "right"
    tokenized = _tokenize_qa(
        examples, tokenizer, question_column_name, context_column_name, max_length, doc_stride, pad_to_max_length
    )
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    offset_mapping = tokenized.pop("offset_mapping")
    tokenized["start_positions"] = []
    tokenized["end_positions"] = []
    context_index = 1 if pad_on_right else 0

    for i, offsets in enumerate(offset_mapping):
        input_ids = tokenized["input_ids"][i]
        if tokenizer.cls_token_id is not None and tokenizer.cls_token_id in input_ids:
            cls_index = input_ids.index(tokenizer.cls_token_id)
        elif tokenizer.bos_token_id is not None and tokenizer.bos_token_id in input_ids:
            cls_index = input_ids.index(tokenizer.bos_token_id)
        else:
            cls_index = 0
        sequence_ids = tokenized.sequence_ids(i)
        sample_index = sample_mapping[i]
        answers = examples[answer_column_name][sample_index]
        if len(answers["answer_start"]) == 0:
            if not version_2_with_negative:
                qid = examples["id"][sample_index] if "id" in examples else sample_index
                raise ValueError(
                    f"Question {qid!r} has no answer, which SQuAD v1.1 does not allow; use version_2_with_negative."
                )
            tokenized["start_positions"].append(cls_index)
            tokenized["end_positions"].append(cls_index)
            continue
        start_char = answers["answer_start"][0]
        end_char = start_char + len(answers["text"][0])
        # First and last token of the context in this window.
        token_start_index = 0
        while sequence_ids[token_start_index] != context_index:
            token_start_index += 1
        token_end_index = len(input_ids) - 1
        while sequence_ids[token_end_index] != context_index:
            token_end_index -= 1
        if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
            # The answer is not fully inside this window: label it with the CLS index.
            tokenized["start_positions"].append(cls_index)
            tokenized["end_positions"].append(cls_index)
        else:
            # Move token_start_index and token_end_index to the two ends of the answer (the answer may be the last
            # word of the window: the `<` bound guards the start scan).
            while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                token_start_index += 1
            tokenized["start_positions"].append(token_start_index - 1)
            while offsets[token_end_index][1] >= end_char:
                token_end_index -= 1
            tokenized["end_positions"].append(token_end_index + 1)
    return tokenized


def prepare_validation_features(
    examples: dict[str, list],
    tokenizer,
    max_length: int = 384,
    doc_stride: int = 128,
    pad_to_max_length: bool = True,
    question_column_name: str = "question",
    context_column_name: str = "context",
    id_column_name: str = "id",
) -> dict[str, list]:
    """
    Tokenizes a batch of examples into evaluation features: each feature keeps its `example_id` and an
    `offset_mapping` where tokens outside the context are `None`, so post-processing only picks context spans.
    """
    _check_qa_tokenizer(tokenizer, max_length, doc_stride)
    pad_on_right = tokenizer.padding_side == "right"
    tokenized = _tokenize_qa(
        examples, tokenizer, question_column_name, context_column_name, max_length, doc_stride, pad_to_max_length
    )
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    context_index = 1 if pad_on_right else 0
    tokenized["example_id"] = []
    for i in range(len(tokenized["input_ids"])):
        sequence_ids = tokenized.sequence_ids(i)
        tokenized["example_id"].append(examples[id_column_name][sample_mapping[i]])
        tokenized["offset_mapping"][i] = [
            (offset if sequence_ids[k] == context_index else None)
            for k, offset in enumerate(tokenized["offset_mapping"][i])
        ]
    return tokenized


def tokenize_qa_examples(
    examples: datasets.Dataset,
    tokenizer,
    training: bool,
    max_length: int = 384,
    doc_stride: int = 128,
    pad_to_max_length: bool = True,
    version_2_with_negative: bool = False,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """
    `examples.map` with [`prepare_train_features`] (`training=True`) or [`prepare_validation_features`], replacing
    the example columns by the feature columns.
    """
    kwargs = dict(
        tokenizer=tokenizer, max_length=max_length, doc_stride=doc_stride, pad_to_max_length=pad_to_max_length
    )
    if training:
        kwargs["version_2_with_negative"] = version_2_with_negative
    return examples.map(
        prepare_train_features if training else prepare_validation_features,
        fn_kwargs=kwargs,
        batched=True,
        num_proc=num_proc,
        remove_columns=examples.column_names,
        desc=f"Running tokenizer on {'train' if training else 'evaluation'} examples",
    )


__all__ = [
    "hold_out_articles_for_model_selection",
    "SQUAD_FEATURES",
    "XQUAD_LANGUAGES",
    "load_qa_datasets",
    "load_squad_json",
    "load_xquad",
    "prepare_train_features",
    "prepare_validation_features",
    "select_parallel_articles",
    "split_by_article",
    "tokenize_qa_examples",
    "validate_squad_dataset",
]
