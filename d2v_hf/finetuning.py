"""Library logic of the fine-tuning scripts (`examples/run_glue.py`, `examples/run_qa.py`).

- GLUE data: [`load_glue_datasets`] reads a Hub dataset (`--dataset_name nyu-mll/glue --dataset_config_name sst2`,
  the default when only `--task_name` is given) or local files (`--train_file/--validation_file`) in GLUE TSV
  (e.g. `../shared/data/glue/sst2/train.tsv`, header `sentence\\tlabel`; STS-B files carry their target in `score`),
  CSV or JSON/JSON lines. Local columns are renamed to the Hub's names (`score`/`gold_label`/`is_duplicate`/
  `Quality` -> `label`, MRPC's `#1 String`/`#2 String` -> `sentence1`/`sentence2`).
- Labels: [`get_glue_label_info`] decides regression (STS-B) vs classification and the label list (the Hub's class
  names for GLUE tasks, so ids match `nyu-mll/glue`), and [`encode_glue_labels`] maps labels to ids, rejecting values
  outside the label set.
- Input checks raise `ValueError`s naming the bad value: unknown task, missing text/label columns, labels outside the
  label set, empty files, and a checkpoint of another modality ([`check_model_modality`]).
- LoRA ([`apply_lora`], [`merge_and_save`]) through peft, with per-backbone default target modules.

```python
>>> from d2v_hf.finetuning import load_glue_datasets, get_glue_label_info, encode_glue_labels
>>> raw = load_glue_datasets(
...     "sst2", train_file="../shared/data/glue/sst2/train.tsv", validation_file="../shared/data/glue/sst2/dev.tsv"
... )
>>> label_info = get_glue_label_info(raw, "sst2")  # GlueLabelInfo(is_regression=False, label_list=[...], ...)
>>> raw = encode_glue_labels(raw, label_info)
```
"""

import copy
import csv
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import transformers
from transformers import HfArgumentParser, PretrainedConfig


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

# Model types per modality, beyond what the Auto mappings tell (see `detect_modality`).
_AUDIO_HINTS = ("audio", "wav2vec", "hubert", "wavlm", "whisper", "speech", "unispeech", "sew", "clap")
_VISION_HINTS = ("vision", "vit", "beit", "deit", "swin", "convnext", "resnet", "image", "dinov")

# LoRA target modules per backbone family: attention projections are where LoRA is usually applied.
_LORA_TARGETS_BY_MODEL_TYPE = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "data2vec-text": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "vit": ["query", "value"],
    "deit": ["query", "value"],
    "beit": ["query", "value"],
    "data2vec-vision": ["query", "value"],
    "wav2vec2": ["q_proj", "v_proj"],
    "data2vec-audio": ["q_proj", "v_proj"],
    "hubert": ["q_proj", "v_proj"],
    "wavlm": ["q_proj", "v_proj"],
}

# Task heads that must be trained in full (and saved) next to the LoRA adapters.
_HEAD_MODULE_NAMES = ("classifier", "qa_outputs", "score", "projector", "lm_head")


# --------------------------------------------------------------------------------------------------------------------
# Arguments shared by the scripts
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ModelArguments:
    """Which model/config/tokenizer to fine-tune from, and the LoRA options."""

    model_name_or_path: str = field(metadata={"help": "Path to a pretrained model or its identifier on the Hub."})
    config_name: str | None = field(default=None, metadata={"help": "Config name or path, if not the model's."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path, if not the model's."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to store files downloaded from the Hub."})
    model_revision: str = field(default="main", metadata={"help": "Model version (branch, tag or commit id)."})
    token: str | None = field(default=None, metadata={"help": "Hub token (defaults to the `hf auth login` one)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom code from the Hub."})
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Allow a head of another size in the checkpoint (re-initialized)."}
    )
    use_peft: bool = field(default=False, metadata={"help": "Fine-tune LoRA adapters (peft) instead of all weights."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.1, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Module names to adapt; defaults per backbone (query/value, or q_proj/v_proj for speech)."},
    )
    merge_lora: bool = field(
        default=True, metadata={"help": "With --use_peft, also save the merged plain model to output_dir/merged."}
    )


def parse_arguments(dataclass_types: Sequence[type], args: Sequence[str] | None = None) -> tuple:
    """
    Parses command line arguments into dataclasses with [`~transformers.HfArgumentParser`]; a single `.json` argument
    is read as a file of arguments, as in transformers' example scripts.
    """
    parser = HfArgumentParser(list(dataclass_types))
    args = sys.argv[1:] if args is None else [str(a) for a in args]
    if len(args) == 1 and args[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(args[0]))
    return parser.parse_args_into_dataclasses(args=args)


def setup_logging(training_args) -> None:
    """Logging as in transformers' example scripts: INFO on the main process, one summary line per process."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    if training_args.should_log:
        transformers.utils.logging.set_verbosity_info()
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    logging.getLogger("d2v_hf").setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    logger.warning(
        f"Process rank: {training_args.process_index}, world size: {training_args.world_size}, "
        f"device: {training_args.device}, distributed training: {training_args.parallel_mode.value == 'distributed'}"
    )


# --------------------------------------------------------------------------------------------------------------------
# Modality checks
# --------------------------------------------------------------------------------------------------------------------


def detect_modality(config: PretrainedConfig) -> str | None:
    """
    Guesses the input modality of a config: `"text"`, `"audio"`, `"vision"`, or `None` when unknown.

    Uses transformers' Auto mappings (audio classification/CTC, image classification, sequence classification/QA)
    and then the `model_type` and `architectures` names.
    """
    from transformers.models.auto import modeling_auto

    model_type = getattr(config, "model_type", "") or ""
    if model_type in modeling_auto.MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING_NAMES or (
        model_type in modeling_auto.MODEL_FOR_CTC_MAPPING_NAMES
    ):
        return "audio"
    if model_type in modeling_auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES and (
        model_type not in modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES
    ):
        return "vision"
    if model_type in modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES or (
        model_type in modeling_auto.MODEL_FOR_QUESTION_ANSWERING_MAPPING_NAMES
    ):
        return "text"
    names = " ".join([model_type, *(getattr(config, "architectures", None) or [])]).lower()
    if any(hint in names for hint in _AUDIO_HINTS):
        return "audio"
    if any(hint in names for hint in _VISION_HINTS):
        return "vision"
    return None


def check_model_modality(config: PretrainedConfig, expected: str, script: str = "this script") -> None:
    """
    Raises a `ValueError` when `config` is a model of another modality than `expected` (e.g. a data2vec-audio
    checkpoint given to `run_glue.py`). Unknown model types pass.
    """
    found = detect_modality(config)
    if found is not None and found != expected:
        name = getattr(config, "_name_or_path", "") or "the checkpoint"
        raise ValueError(
            f"{script} fine-tunes {expected} models, but {name!r} is a {found} model (model_type="
            f"{config.model_type!r}, architectures={getattr(config, 'architectures', None)}). Use a {expected} "
            f"checkpoint (e.g. a data2vec-text/RoBERTa/BERT model) or the {found} fine-tuning script."
        )


def check_head_size(config: PretrainedConfig, num_labels: int, ignore_mismatched_sizes: bool = False) -> None:
    """
    Raises a `ValueError` when the checkpoint already has a classification head of another size (e.g. an SST-2
    model given for STS-B), unless `ignore_mismatched_sizes` re-initializes it. Backbones without head pass.
    """
    architectures = getattr(config, "architectures", None) or []
    has_head = any(name.endswith(("ForSequenceClassification", "ForAudioClassification")) for name in architectures)
    if has_head and config.num_labels != num_labels and not ignore_mismatched_sizes:
        raise ValueError(
            f"The checkpoint {getattr(config, '_name_or_path', '')!r} has a {config.num_labels}-label classification "
            f"head ({architectures[0]}), but the task needs {num_labels}; pass --ignore_mismatched_sizes to train a "
            "new head."
        )


def load_pretrained(
    model_args: ModelArguments,
    auto_model_class,
    modality: str = "text",
    script: str = "this script",
    **config_overrides,
):
    """
    Loads config, tokenizer (or processor) and model for fine-tuning, as transformers' example scripts do, with the
    checks of this module: the checkpoint must be of `modality`, a classification head of another size needs
    `--ignore_mismatched_sizes`, and `--use_peft` wraps the model with LoRA ([`apply_lora`]).

    Args:
        model_args ([`ModelArguments`]): checkpoint, revision, token, LoRA options.
        auto_model_class: e.g. `AutoModelForSequenceClassification`, `AutoModelForQuestionAnswering`.
        modality (`str`): `"text"`, `"audio"` or `"vision"`.
        script (`str`): the script name, for error messages.
        **config_overrides: set on the config before the model is built (`num_labels`, `id2label`, ...).

    Returns:
        `(config, tokenizer, model)`.
    """
    from transformers import AutoConfig, AutoTokenizer

    hub_kwargs = dict(
        cache_dir=model_args.cache_dir,
        revision=model_args.model_revision,
        token=model_args.token,
        trust_remote_code=model_args.trust_remote_code,
    )
    config = AutoConfig.from_pretrained(model_args.config_name or model_args.model_name_or_path, **hub_kwargs)
    check_model_modality(config, modality, script)
    if "num_labels" in config_overrides:
        check_head_size(config, config_overrides["num_labels"], model_args.ignore_mismatched_sizes)
        config.num_labels = config_overrides.pop("num_labels")  # first: it resets id2label/label2id
    for key, value in config_overrides.items():
        setattr(config, key, value)
    tokenizer = AutoTokenizer.from_pretrained(model_args.tokenizer_name or model_args.model_name_or_path, **hub_kwargs)
    model = auto_model_class.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **hub_kwargs,
    )
    if model_args.use_peft:
        model = apply_lora(
            model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout, model_args.lora_target_modules
        )
    return config, tokenizer, model


def train_and_save(trainer, resume_from_checkpoint=None) -> dict[str, float]:
    """`trainer.train()`, then save the model, the train metrics (`train_results.json`) and the trainer state."""
    result = trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    trainer.save_model()
    metrics = dict(result.metrics, train_samples=len(trainer.train_dataset))
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    return metrics


# --------------------------------------------------------------------------------------------------------------------
# GLUE data
# --------------------------------------------------------------------------------------------------------------------


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
        values = dataset["label"]
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


# --------------------------------------------------------------------------------------------------------------------
# LoRA (peft)
# --------------------------------------------------------------------------------------------------------------------


def default_lora_target_modules(model_or_config) -> list[str]:
    """
    LoRA target modules for a backbone: `query`/`value` for BERT/RoBERTa/data2vec-text and ViT/data2vec-vision,
    `q_proj`/`v_proj` for wav2vec2/data2vec-audio. Other backbones are inspected for such `nn.Linear` names.
    """
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type in _LORA_TARGETS_BY_MODEL_TYPE:
        return list(_LORA_TARGETS_BY_MODEL_TYPE[model_type])
    import torch

    if isinstance(model_or_config, torch.nn.Module):
        linear_names = {
            name.rsplit(".", 1)[-1]
            for name, module in model_or_config.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
        for pair in (["query", "value"], ["q_proj", "v_proj"], ["q", "v"], ["query_proj", "value_proj"]):
            if set(pair) <= linear_names:
                return pair
    raise ValueError(
        f"No default LoRA target modules for model_type {model_type!r}; pass --lora_target_modules "
        "(names of the attention nn.Linear layers, e.g. query value)."
    )


def default_modules_to_save(model) -> list[str]:
    """The task head(s) of a model (`classifier`, `qa_outputs`, `score`, `projector`, ...), trained in full."""
    child_names = {name for name, _ in model.named_children()}
    return [name for name in _HEAD_MODULE_NAMES if name in child_names]


def apply_lora(
    model,
    r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.1,
    target_modules: Sequence[str] | None = None,
    modules_to_save: Sequence[str] | None = None,
):
    """
    Wraps `model` with LoRA adapters (peft): only the adapters and the task head (`modules_to_save`) are trainable.

    Args:
        model ([`~transformers.PreTrainedModel`]): the model with its task head.
        r, lora_alpha, lora_dropout: LoRA hyperparameters.
        target_modules (`Sequence[str]`, *optional*): defaults to [`default_lora_target_modules`].
        modules_to_save (`Sequence[str]`, *optional*): defaults to [`default_modules_to_save`].

    Returns:
        `peft.PeftModel`.
    """
    from peft import LoraConfig, get_peft_model

    if r <= 0:
        raise ValueError(f"LoRA rank r must be positive, got {r}.")
    target_modules = list(target_modules) if target_modules else default_lora_target_modules(model)
    module_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [m for m in target_modules if m not in module_names]
    if unknown:
        raise ValueError(
            f"LoRA target module(s) {unknown} not found in {type(model).__name__}; e.g. available linear layer names:"
            f" {sorted(n for n in module_names if n)[:30]}."
        )
    modules_to_save = list(modules_to_save) if modules_to_save is not None else default_modules_to_save(model)
    lora_config = LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        modules_to_save=modules_to_save or None,
        bias="none",
    )
    peft_model = get_peft_model(model, lora_config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    logger.info(
        f"LoRA on {target_modules} (r={r}), full training of {modules_to_save}: {trainable:,} trainable parameters of "
        f"{total:,} ({100 * trainable / total:.2f}%)."
    )
    return peft_model


def merge_and_save(model, output_dir: str | os.PathLike, processing_class=None, in_place: bool = False):
    """
    Merges LoRA adapters into the base weights (`merge_and_unload`) and saves the resulting plain transformers model
    with `save_pretrained` (loadable without peft).

    Args:
        model (`peft.PeftModel` or [`~transformers.PreTrainedModel`]): a model without adapters is saved as is.
        output_dir (`str` or `os.PathLike`): where to save.
        processing_class (*optional*): tokenizer/processor saved next to the model.
        in_place (`bool`, *optional*, defaults to `False`): merge `model` itself; by default a copy is merged so
            the adapter model stays usable (e.g. by a Trainer that will still save or push it).

    Returns:
        The merged [`~transformers.PreTrainedModel`].
    """
    from peft import PeftModel

    if isinstance(model, PeftModel):
        merged = (model if in_place else copy.deepcopy(model)).merge_and_unload()
    else:
        merged = model
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(output_dir)
    if processing_class is not None:
        processing_class.save_pretrained(output_dir)
    return merged


def maybe_merge_lora(trainer, model_args: ModelArguments, processing_class=None) -> str | None:
    """With `--use_peft` and `--merge_lora`, saves the merged model to `output_dir/merged` on the main process."""
    if not (model_args.use_peft and model_args.merge_lora) or not trainer.is_world_process_zero():
        return None
    merged_dir = os.path.join(trainer.args.output_dir, "merged")
    merge_and_save(trainer.accelerator.unwrap_model(trainer.model), merged_dir, processing_class)
    logger.info(f"Merged LoRA model saved to {merged_dir}")
    return merged_dir


def disable_loss_kwargs(model) -> None:
    """
    Tells [`~transformers.Trainer`] that the model does not take `num_items_in_batch`.

    Trainer (transformers 5.x) assumes that a model whose `forward` takes `**kwargs` normalizes its loss by the
    global `num_items_in_batch`, and then multiplies the loss by the number of processes. Classification heads
    (`...ForSequenceClassification`, audio/image classification) take `**kwargs` but average their loss per batch,
    so under `accelerate launch` with N processes their loss (and gradients) came out N times too large: `eval_loss`
    of a 2-process run was twice the single-process one. `accepts_loss_kwargs = False` is the attribute Trainer
    reads first.
    """
    from peft import PeftModel

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    base.accepts_loss_kwargs = False


# --------------------------------------------------------------------------------------------------------------------
# Model card + Hub
# --------------------------------------------------------------------------------------------------------------------


def push_to_hub_with_model_card(trainer, card, **kwargs):
    """
    `trainer.push_to_hub(**kwargs)`, but uploading `card` as `README.md` instead of the card that
    `Trainer.create_model_card` would write over it.
    """
    from .modelcard import save_model_card

    def create_model_card(*args, **card_kwargs):
        if trainer.is_world_process_zero():
            save_model_card(card, trainer.args.output_dir)

    original = trainer.create_model_card
    trainer.create_model_card = create_model_card
    try:
        return trainer.push_to_hub(**kwargs)
    finally:
        trainer.create_model_card = original


def save_and_push_model_card(trainer, card, **push_kwargs) -> None:
    """Writes `card` to `output_dir/README.md` (main process) and, with `--push_to_hub`, pushes the output folder."""
    from .modelcard import save_model_card

    if trainer.is_world_process_zero():
        save_model_card(card, trainer.args.output_dir)
    if trainer.args.push_to_hub:
        push_to_hub_with_model_card(trainer, card, **push_kwargs)


__all__ = [
    "GLUE_COLUMN_ALIASES",
    "GLUE_HUB_DATASET",
    "GLUE_LABEL_NAMES",
    "GLUE_TASKS",
    "GlueLabelInfo",
    "ModelArguments",
    "apply_lora",
    "check_glue_columns",
    "check_head_size",
    "check_model_modality",
    "check_task_name",
    "default_lora_target_modules",
    "default_modules_to_save",
    "detect_modality",
    "disable_loss_kwargs",
    "encode_glue_labels",
    "get_glue_label_info",
    "get_text_keys",
    "load_pretrained",
    "load_glue_datasets",
    "maybe_merge_lora",
    "merge_and_save",
    "parse_arguments",
    "push_to_hub_with_model_card",
    "read_data_file",
    "save_and_push_model_card",
    "select_samples",
    "setup_logging",
    "task_to_keys",
    "tokenize_glue_datasets",
    "train_and_save",
]
