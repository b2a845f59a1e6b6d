"""Model cards (`README.md` with YAML front matter) for models trained with d2v_hf.

[`build_model_card`] is generic: fine-tuning scripts pass evaluation results (which become the card's `model-index`,
readable by the Hub's leaderboards), pretraining scripts pass no results but a recipe/losses section as
`training_details` and `extra_markdown`.

```python
>>> from d2v_hf.modelcard import build_model_card, save_model_card
>>> card = build_model_card(
...     model_name="data2vec-text-sst2",
...     base_model="facebook/data2vec-text-base",
...     task_type="text-classification",
...     dataset_name="GLUE SST-2",
...     dataset_type="nyu-mll/glue",
...     dataset_config="sst2",
...     dataset_split="validation",
...     eval_results={"eval_accuracy": 0.91, "eval_loss": 0.25},
...     training_details={"learning_rate": 2e-5, "num_train_epochs": 3},
... )
>>> save_model_card(card, "out/sst2")  # writes out/sst2/README.md
```
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .atomic_io import atomic_write_file


# The card layout: YAML front matter, title, summary, results, training details, versions, the caller's sections.
TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md"


# Keys of Trainer metrics that describe the run, not the model's quality; kept out of the model-index.
_NON_METRIC_SUFFIXES = (
    "runtime",
    "samples_per_second",
    "steps_per_second",
    "epoch",
    "samples",
    "model_preparation_time",
    "total_flos",
    "mem_cpu_alloc_delta",
    "mem_cpu_peaked_delta",
)

# Training arguments worth showing on a card, in this order.
_TRAINING_ARGUMENT_KEYS = (
    "learning_rate",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "max_steps",
    "lr_scheduler_type",
    "warmup_steps",
    "weight_decay",
    "optim",
    "seed",
    "fp16",
    "bf16",
)


def _is_metric(key: str, value: Any, include_loss: bool = True) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not include_loss and key.endswith("loss"):
        return False
    return not any(key.endswith(suffix) for suffix in _NON_METRIC_SUFFIXES)


def _metric_type(key: str, prefix: str = "eval_") -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _cells(rows) -> list[tuple[str, ...]]:
    return [tuple(_format_value(cell) for cell in row) for row in rows]


def training_details_from_args(training_args, **extra: Any) -> dict[str, Any]:
    """
    Picks the hyperparameters worth showing on a card from [`~transformers.TrainingArguments`] and adds the
    `world_size` (number of processes) and any `extra` entries.
    """
    details = {}
    for key in _TRAINING_ARGUMENT_KEYS:
        value = getattr(training_args, key, None)
        if value is None or (key == "max_steps" and value <= 0) or (key in ("fp16", "bf16") and not value):
            continue
        details[key] = value.value if hasattr(value, "value") else value
    details["world_size"] = getattr(training_args, "world_size", 1)
    details.update(extra)
    return details


def build_model_card(
    model_name: str,
    base_model: str | None = None,
    task_type: str | None = None,
    task_name: str | None = None,
    dataset_name: str | None = None,
    dataset_type: str | None = None,
    dataset_config: str | None = None,
    dataset_split: str | None = None,
    datasets: list[str] | None = None,
    eval_results: Mapping[str, Any] | None = None,
    training_details: Mapping[str, Any] | None = None,
    extra_markdown: str | None = None,
    tags: list[str] | None = None,
    license: str | None = None,
    language: str | list[str] | None = None,
    metric_prefix: str = "eval_",
    description: str | None = None,
    model_index: list[EvalResult] | None = None,
    pipeline_tag: str | None = None,
) -> ModelCard:
    """
    Builds a [`~huggingface_hub.ModelCard`] with YAML front matter (`library_name: transformers`, tags including
    `data2vec`, `datasets`, `base_model` and, when evaluation results are given, a `model-index`).

    Args:
        model_name (`str`): name of the model (the card's title and the model-index name).
        base_model (`str`, *optional*): the checkpoint it was fine-tuned from (Hub id or local path).
        task_type (`str`, *optional*): Hub task id, e.g. `text-classification`, `question-answering`, `fill-mask`;
            required with `eval_results`.
        task_name (`str`, *optional*): human-readable task name (e.g. `GLUE SST-2`).
        dataset_name (`str`, *optional*): human-readable dataset name.
        dataset_type (`str`, *optional*): dataset id for the model-index (e.g. `nyu-mll/glue`); defaults to
            `dataset_name`.
        dataset_config (`str`, *optional*): dataset configuration (e.g. `sst2`).
        dataset_split (`str`, *optional*): split the results were computed on.
        datasets (`list[str]`, *optional*): Hub dataset ids for the `datasets` metadata (leave out local files).
        eval_results (`Mapping`, *optional*): either `{metric: value}` (Trainer metrics like `eval_accuracy` are
            accepted: the `eval_` prefix is dropped, runtime/speed entries are left out of the model-index), or
            `{config: {metric: value}}` for results on several configurations (e.g. one per XQuAD language, or
            MNLI matched/mismatched): each inner dict is reported with its key as `dataset_config`.
        training_details (`Mapping`, *optional*): shown as a table (hyperparameters, recipe, final losses, ...).
        extra_markdown (`str`, *optional*): appended at the end (e.g. a results table or a pretraining recipe).
        tags (`list[str]`, *optional*): extra tags (`data2vec` and `d2v_hf` are always present).
        license (`str`, *optional*), language (`str` or `list[str]`, *optional*): card metadata.
        metric_prefix (`str`, *optional*, defaults to `"eval_"`): prefix removed from metric names.
        description (`str`, *optional*): a paragraph under the title.
        model_index (`list[EvalResult]`, *optional*): ready-made model-index entries (e.g. means over seeds), added
            after those built from `eval_results`.
        pipeline_tag (`str`, *optional*): the Hub pipeline; defaults to `task_type`.

    Returns:
        [`~huggingface_hub.ModelCard`]; write it with [`save_model_card`].
    """
    if not model_name:
        raise ValueError("model_name must be a non-empty string.")
    all_tags = ["data2vec", "d2v_hf"] + [t for t in (tags or []) if t not in ("data2vec", "d2v_hf")]
    dataset_type = dataset_type or dataset_name

    grouped: dict[str | None, dict[str, Any]] = {}
    if eval_results:
        if all(isinstance(v, Mapping) for v in eval_results.values()):
            grouped = {str(config): dict(values) for config, values in eval_results.items()}
        elif any(isinstance(v, Mapping) for v in eval_results.values()):
            raise ValueError("eval_results must be either {metric: value} or {config: {metric: value}}, not both.")
        else:
            grouped = {dataset_config: dict(eval_results)}

    entries = []
    for config, values in grouped.items():
        for key, value in values.items():
            # The loss stays in the card's table but is no leaderboard metric.
            if not _is_metric(key, value, include_loss=False):
                continue
            if task_type is None or dataset_type is None:
                raise ValueError("eval_results need task_type and dataset_name/dataset_type for the model-index.")
            entries.append(
                EvalResult(
                    task_type=task_type,
                    task_name=task_name,
                    dataset_type=dataset_type,
                    dataset_name=dataset_name or dataset_type,
                    dataset_config=config,
                    dataset_split=dataset_split,
                    metric_type=_metric_type(key, metric_prefix),
                    metric_name=_metric_type(key, metric_prefix),
                    metric_value=float(value),
                )
            )
    entries += list(model_index or [])
    card_data = ModelCardData(
        model_name=model_name,
        # A local checkpoint folder is no Hub id: it is named in the text only.
        base_model=base_model if base_model and not os.path.isdir(base_model) else None,
        datasets=list(datasets) if datasets else None,
        eval_results=entries or None,
        library_name="transformers",
        license=license,
        language=language,
        tags=all_tags,
        pipeline_tag=pipeline_tag or task_type,
    )

    summary = description or (
        f"This model is a fine-tuned version of `{base_model}`" if base_model else f"`{model_name}`"
    )
    if description is None:
        if task_name or dataset_name:
            summary += f" on {task_name or dataset_name}"
            if dataset_config and not grouped.keys() - {dataset_config}:
                summary += f" (`{dataset_config}`)"
        summary += ", trained with d2v_hf (data2vec for Hugging Face Transformers)."

    results = None
    if len(grouped) == 1:
        values = next(iter(grouped.values()))
        rows = [(_metric_type(k, metric_prefix), v) for k, v in values.items() if _is_metric(k, v)]
        results = {"header": ("metric", "value"), "rows": _cells(rows)}
    elif grouped:
        metric_names = list(
            dict.fromkeys(_metric_type(k, metric_prefix) for v in grouped.values() for k in v if _is_metric(k, v[k]))
        )
        rows = []
        for config, values in grouped.items():
            by_name = {_metric_type(k, metric_prefix): v for k, v in values.items()}
            rows.append((config, *(by_name.get(name, "") for name in metric_names)))
        results = {"header": ("config", *metric_names), "rows": _cells(rows)}
    return ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE_PATH),
        model_name=model_name,
        summary=summary,
        results=results,
        dataset_split=dataset_split,
        details=_cells((k, v) for k, v in (training_details or {}).items() if v is not None),
        framework_versions=_framework_versions(),
        extra_markdown=extra_markdown.strip() if extra_markdown else None,
    )


def _framework_versions() -> list[str]:
    import importlib.metadata

    lines = []
    for package in ("d2v_hf", "transformers", "torch", "datasets", "peft", "tokenizers"):
        try:
            lines.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return lines


def save_model_card(card: ModelCard, output_dir: str | os.PathLike, filename: str = "README.md") -> Path:
    """Writes `card` to `output_dir/README.md` (creating the folder), whole or not at all; returns the path."""
    path = Path(output_dir) / filename
    atomic_write_file(path, card.save)
    return path


class KeepModelCardMixin:
    """
    A [`~transformers.Trainer`] mixin that keeps the `README.md` a script wrote to `output_dir`: `Trainer.push_to_hub`
    (and the end of training with `push_to_hub`) would otherwise write its generic card over it. Without such a file
    the Trainer's own card is written.
    """

    def create_model_card(self, *args, **kwargs):
        if not os.path.exists(os.path.join(self.args.output_dir, "README.md")):
            super().create_model_card(*args, **kwargs)


__all__ = ["KeepModelCardMixin", "build_model_card", "save_model_card", "training_details_from_args"]
