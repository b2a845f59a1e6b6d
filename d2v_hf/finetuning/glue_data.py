"""GLUE data for `run_glue.py`: loading (Hub or local TSV/CSV/JSON files), columns, labels and tokenization.

- GLUE data: [`load_glue_datasets`] reads a Hub dataset (`--dataset_name nyu-mll/glue --dataset_config_name sst2`,
  the default when only `--task_name` is given) or local files (`--train_file/--validation_file`) in GLUE TSV
  (e.g. `../shared/data/glue/sst2/train.tsv`, header `sentence\\tlabel`; STS-B files carry their target in `score`),
  CSV or JSON/JSON lines. Local columns are renamed to the Hub's names (`score`/`gold_label`/`is_duplicate`/
  `Quality` -> `label`, MRPC's `#1 String`/`#2 String` -> `sentence1`/`sentence2`).
- Labels: [`get_glue_label_info`] decides regression (STS-B) vs classification and the label list (the Hub's class
  names for GLUE tasks, so ids match `nyu-mll/glue`), and [`encode_glue_labels`] maps labels to ids, rejecting values
  outside the label set.
- Input checks raise `ValueError`s naming the bad value: unknown task, missing text/label columns, labels outside the
  label set, empty files.

```python
>>> from d2v_hf.finetuning import load_glue_datasets, get_glue_label_info, encode_glue_labels
>>> raw = load_glue_datasets(
...     "sst2", train_file="../shared/data/glue/sst2/train.tsv", validation_file="../shared/data/glue/sst2/dev.tsv"
... )
>>> label_info = get_glue_label_info(raw, "sst2")  # GlueLabelInfo(is_regression=False, label_list=[...], ...)
>>> raw = encode_glue_labels(raw, label_info)
```
"""

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets


logger = logging.getLogger(__name__)


GLUE_TASKS = ("cola", "mnli", "mrpc", "qnli", "qqp", "rte", "sst2", "stsb", "wnli")


GLUE_HUB_DATASET = "nyu-mll/glue"


task_to_keys = {
    "cola": ("sentence", None),
    "mnli": ("premise", "hypothesis"),
    "mrpc": ("sentence1", "sentence2"),
    "qnli": ("question", "sentence"),
    "qqp": ("question1", "question2"),
    "rte": ("sentence1", "sentence2"),
    "sst2": ("sentence", None),
    "stsb": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"),
}


# Class names of the `nyu-mll/glue` ClassLabel features, in id order (local files are mapped onto the same ids).
GLUE_LABEL_NAMES = {
    "cola": ["unacceptable", "acceptable"],
    "mnli": ["entailment", "neutral", "contradiction"],
    "mrpc": ["not_equivalent", "equivalent"],
    "qnli": ["entailment", "not_entailment"],
    "qqp": ["not_duplicate", "duplicate"],
    "rte": ["entailment", "not_entailment"],
    "sst2": ["negative", "positive"],
    "wnli": ["not_entailment", "entailment"],
}


# Column names of the original GLUE TSV files -> names used by the Hub dataset (and by `task_to_keys`).
GLUE_COLUMN_ALIASES = {
    "label": ("score", "gold_label", "is_duplicate", "Quality"),
    "sentence1": ("#1 String",),
    "sentence2": ("#2 String",),
    # MNLI TSV files use sentence1/sentence2 where the Hub uses premise/hypothesis.
    "premise": ("sentence1",),
    "hypothesis": ("sentence2",),
}


def check_task_name(task_name: str | None) -> str | None:
    """Lower-cases and validates a GLUE task name; `None` (a custom dataset) passes."""
    if task_name is None:
        return None
    if not isinstance(task_name, str) or task_name.lower() not in task_to_keys:
        raise ValueError(f"Unknown GLUE task {task_name!r}; valid task names are: {', '.join(GLUE_TASKS)}.")
    return task_name.lower()


def read_data_file(path: str | os.PathLike, split: str = "data") -> datasets.Dataset:
    """
    Reads a local data file into a `datasets.Dataset`: `.tsv` (GLUE TSV, no quoting: GLUE sentences contain
    unbalanced quotes), `.csv`, `.json`/`.jsonl` (JSON lines or a JSON list). Text files may be gzip-compressed.
    Every column of a TSV/CSV file is read as a string; labels are converted by [`encode_glue_labels`].
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"The {split} file {str(path)!r} does not exist.")
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    extension = suffixes[-1] if suffixes else ""
    if path.stat().st_size == 0:
        raise ValueError(f"The {split} file {str(path)!r} is empty.")
    try:
        if extension in (".tsv", ".csv"):
            frame = pd.read_csv(
                path,
                sep="\t" if extension == ".tsv" else ",",
                quoting=csv.QUOTE_NONE if extension == ".tsv" else csv.QUOTE_MINIMAL,
                dtype=str,
                keep_default_na=False,
            )
        elif extension in (".json", ".jsonl"):
            try:
                frame = pd.read_json(path, lines=True, dtype=False)
            except ValueError:
                frame = pd.read_json(path, dtype=False)
        else:
            raise ValueError(
                f"Unsupported {split} file extension {extension!r} for {str(path)!r}: use .tsv, .csv, .json or .jsonl."
            )
    except pd.errors.EmptyDataError:
        raise ValueError(f"The {split} file {str(path)!r} is empty.") from None
    except pd.errors.ParserError as error:
        raise ValueError(f"Could not parse the {split} file {str(path)!r}: {error}") from None
    if len(frame) == 0:
        raise ValueError(f"The {split} file {str(path)!r} has no rows (columns: {list(frame.columns)}).")
    return datasets.Dataset.from_pandas(frame, preserve_index=False)


def _standardize_glue_columns(dataset: datasets.Dataset, task_name: str | None) -> datasets.Dataset:
    columns = set(dataset.column_names)
    wanted = set(task_to_keys[task_name]) if task_name else set()
    wanted.add("label")
    renames = {}
    for target, aliases in GLUE_COLUMN_ALIASES.items():
        if target not in wanted or target in columns:
            continue
        source = next((a for a in aliases if a in columns and a not in renames), None)
        if source is not None:
            renames[source] = target
    return dataset.rename_columns(renames) if renames else dataset


def load_glue_datasets(
    task_name: str | None = None,
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_file: str | None = None,
    validation_file: str | None = None,
    validation_mismatched_file: str | None = None,
    test_file: str | None = None,
    cache_dir: str | None = None,
    token: str | None = None,
) -> datasets.DatasetDict:
    """
    Loads GLUE-style data as a `datasets.DatasetDict`.

    - Local files (`train_file`, `validation_file`, and for MNLI `validation_mismatched_file`) in GLUE TSV, CSV or
      JSON: the splits are `train`, `validation` (`validation_matched` too for MNLI) and `validation_mismatched`.
    - Otherwise `load_dataset(dataset_name, dataset_config_name or task_name)`, with `dataset_name` defaulting to
      `nyu-mll/glue` when a task name is given. MNLI there has `validation_matched` and `validation_mismatched`.

    Raises:
        `ValueError`: unknown task, nothing to load, empty or unreadable files, missing columns.
    """
    task_name = check_task_name(task_name)
    files = {"train": train_file, "validation": validation_file, "validation_mismatched": validation_mismatched_file}
    files["test"] = test_file
    files = {split: f for split, f in files.items() if f is not None}
    if files:
        raw = datasets.DatasetDict({split: read_data_file(path, split) for split, path in files.items()})
        raw = datasets.DatasetDict({split: _standardize_glue_columns(ds, task_name) for split, ds in raw.items()})
        if task_name == "mnli" and "validation" in raw:
            raw["validation_matched"] = raw["validation"]
    else:
        if dataset_name is None and task_name is None:
            raise ValueError("Give --task_name, --dataset_name, or --train_file/--validation_file.")
        dataset_name = dataset_name or GLUE_HUB_DATASET
        config_name = dataset_config_name or task_name
        raw = datasets.load_dataset(dataset_name, config_name, cache_dir=cache_dir, token=token)
        if task_name == "mnli" and "validation" not in raw and "validation_matched" in raw:
            raw["validation"] = raw["validation_matched"]
    for split, dataset in raw.items():
        if len(dataset) == 0:
            raise ValueError(f"The {split} split is empty.")
    check_glue_columns(raw, task_name)
    return raw


# one split for every run that selects hyper-parameters, whatever its training seed: the candidates see the same data
MODEL_SELECTION_SEED = 42


def hold_out_for_model_selection(raw_datasets: datasets.DatasetDict, fraction: float) -> datasets.DatasetDict:
    """
    Replaces the evaluation splits by a held-out `fraction` of the training split (seeded, the same for every run),
    so that learning rates and other choices are made without looking at the reported validation set.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"--model_selection_fraction must be in (0, 1), got {fraction}.")
    if "train" not in raw_datasets:
        raise ValueError("--model_selection_fraction needs a train split to hold a part of out.")
    split = raw_datasets["train"].train_test_split(test_size=fraction, seed=MODEL_SELECTION_SEED)
    return datasets.DatasetDict(train=split["train"], validation=split["test"], validation_matched=split["test"])


def get_text_keys(task_name: str | None, column_names: Sequence[str]) -> tuple[str, str | None]:
    """
    The text column(s) of a task: `task_to_keys[task_name]`, or for a custom dataset `sentence1`/`sentence2` when
    present, else the first one or two non-label columns (as transformers' `run_glue.py`).
    """
    if task_name is not None:
        return task_to_keys[task_name]
    non_label = [name for name in column_names if name != "label"]
    if "sentence1" in non_label and "sentence2" in non_label:
        return "sentence1", "sentence2"
    if len(non_label) >= 2:
        return non_label[0], non_label[1]
    if len(non_label) == 1:
        return non_label[0], None
    raise ValueError(f"No text column found; columns present: {list(column_names)}.")


def check_glue_columns(raw_datasets: datasets.DatasetDict, task_name: str | None) -> None:
    """Raises a `ValueError` naming the missing text or label column of a split and listing the columns present."""
    for split, dataset in raw_datasets.items():
        columns = dataset.column_names
        keys = [k for k in get_text_keys(task_name, columns) if k is not None]
        for key in keys:
            if key not in columns:
                raise ValueError(
                    f"The {split} data lacks the text column {key!r} needed by task {task_name!r}; columns present: "
                    f"{columns}."
                )
        if "label" not in columns and not split.startswith("test"):
            aliases = ", ".join(repr(a) for a in GLUE_COLUMN_ALIASES["label"])
            raise ValueError(
                f"The {split} data lacks a label column ('label', or {aliases} in GLUE TSV files); columns present: "
                f"{columns}."
            )


@dataclass
class GlueLabelInfo:
    """Label setup of a GLUE-style task: regression, or classification over `label_list` (ids = positions)."""

    is_regression: bool
    label_list: list[Any] | None
    num_labels: int


def _to_int(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def get_glue_label_info(raw_datasets: datasets.DatasetDict, task_name: str | None) -> GlueLabelInfo:
    """
    Decides regression vs classification and the label list.

    - `stsb` (or, for a custom dataset, float labels) is regression (`num_labels=1`).
    - A GLUE classification task uses the Hub's class names (`GLUE_LABEL_NAMES`), so local files get the same ids.
    - A custom dataset uses the sorted distinct labels of its train split (or of the first labeled split).
    """
    task_name = check_task_name(task_name)
    labeled = [
        split for split in raw_datasets if not split.startswith("test") and "label" in raw_datasets[split].column_names
    ]
    if not labeled:
        raise ValueError(f"No labeled split found among {list(raw_datasets)}.")
    reference = "train" if "train" in labeled else labeled[0]
    feature = raw_datasets[reference].features["label"]
    if task_name == "stsb":
        return GlueLabelInfo(is_regression=True, label_list=None, num_labels=1)
    if task_name is not None:
        names = GLUE_LABEL_NAMES[task_name]
        return GlueLabelInfo(is_regression=False, label_list=list(names), num_labels=len(names))
    if isinstance(feature, datasets.ClassLabel):
        return GlueLabelInfo(is_regression=False, label_list=list(feature.names), num_labels=feature.num_classes)
    if getattr(feature, "dtype", "") in ("float32", "float64"):
        return GlueLabelInfo(is_regression=True, label_list=None, num_labels=1)
    values = raw_datasets[reference].unique("label")
    as_ints = [_to_int(v) for v in values]
    label_list = sorted(as_ints) if all(v is not None for v in as_ints) else sorted(str(v) for v in values)
    return GlueLabelInfo(is_regression=False, label_list=label_list, num_labels=len(label_list))


def encode_glue_labels(raw_datasets: datasets.DatasetDict, label_info: GlueLabelInfo) -> datasets.DatasetDict:
    """
    Converts the `label` column to class ids (classification) or floats (regression) in every labeled split.

    A class label may be given as its id (`0`, `"1"`) or its name (`"entailment"`); for a regression task it must
    parse as a number. Hub `test` splits (label `-1`) are left alone.

    Raises:
        `ValueError` showing the first bad value, its split and row, and the label set.
    """
    encoded = {}
    for split, dataset in raw_datasets.items():
        if "label" not in dataset.column_names or split.startswith("test"):
            encoded[split] = dataset
            continue
        # [:] reads the whole column at once (datasets >= 4 returns a lazy Column, read row by row when iterated)
        values = dataset["label"][:]
        if label_info.is_regression:
            new_values = []
            for row, value in enumerate(values):
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    raise ValueError(
                        f"Label {value!r} (row {row} of the {split} data) is not a number; a regression task needs "
                        "numeric labels (e.g. STS-B scores 0-5)."
                    ) from None
                new_values.append(number)
            feature = datasets.Value("float32")
        else:
            label_list = label_info.label_list
            ints_only = all(isinstance(n, int) and not isinstance(n, bool) for n in label_list)
            names = {str(name): i for i, name in enumerate(label_list)}
            id_range = "" if ints_only else f" (or an id in 0-{len(label_list) - 1})"
            new_values = []
            for row, value in enumerate(values):
                as_int = _to_int(value)
                if ints_only:
                    label_id = label_list.index(as_int) if as_int in label_list else None
                elif str(value) in names:
                    label_id = names[str(value)]
                else:
                    # A label list of names also accepts the ids (GLUE TSV files store 0/1, the Hub has names).
                    label_id = as_int if as_int is not None and 0 <= as_int < len(label_list) else None
                if label_id is None:
                    raise ValueError(
                        f"Label {value!r} (row {row} of the {split} data) is not in the label set {label_list}"
                        f"{id_range}."
                    )
                new_values.append(label_id)
            feature = datasets.Value("int64")
        dataset = dataset.remove_columns("label").add_column("label", new_values, feature=feature)
        encoded[split] = dataset
    return datasets.DatasetDict(encoded)


def tokenize_glue_datasets(
    raw_datasets: datasets.DatasetDict,
    tokenizer,
    task_name: str | None,
    max_seq_length: int = 128,
    pad_to_max_length: bool = True,
    num_proc: int | None = None,
    load_from_cache_file: bool = True,
) -> datasets.DatasetDict:
    """Tokenizes the text column(s) of every split (truncating to `max_seq_length`)."""
    if max_seq_length > tokenizer.model_max_length:
        logger.warning(
            f"max_seq_length ({max_seq_length}) is larger than the tokenizer's model_max_length "
            f"({tokenizer.model_max_length}); using {tokenizer.model_max_length}."
        )
        max_seq_length = tokenizer.model_max_length
    padding = "max_length" if pad_to_max_length else False

    def preprocess(examples):
        sentence1_key, sentence2_key = get_text_keys(task_name, list(examples.keys()))
        texts = (
            (examples[sentence1_key],) if sentence2_key is None else (examples[sentence1_key], examples[sentence2_key])
        )
        texts = tuple([str(t) if t is not None else "" for t in column] for column in texts)
        return tokenizer(*texts, padding=padding, max_length=max_seq_length, truncation=True)

    return raw_datasets.map(
        preprocess,
        batched=True,
        num_proc=num_proc,
        load_from_cache_file=load_from_cache_file,
        desc="Running tokenizer on dataset",
    )


def select_samples(dataset: datasets.Dataset, max_samples: int | None) -> datasets.Dataset:
    """The first `max_samples` rows (all when `None`); `max_samples` must be positive."""
    if max_samples is None:
        return dataset
    if max_samples <= 0:
        raise ValueError(f"max samples must be positive, got {max_samples}.")
    return dataset.select(range(min(max_samples, len(dataset))))


__all__ = [
    "MODEL_SELECTION_SEED",
    "hold_out_for_model_selection",
    "GLUE_COLUMN_ALIASES",
    "GLUE_HUB_DATASET",
    "GLUE_LABEL_NAMES",
    "GLUE_TASKS",
    "GlueLabelInfo",
    "check_glue_columns",
    "check_task_name",
    "encode_glue_labels",
    "get_glue_label_info",
    "get_text_keys",
    "load_glue_datasets",
    "read_data_file",
    "select_samples",
    "task_to_keys",
    "tokenize_glue_datasets",
]
