#!/usr/bin/env python
"""Fine-tune a data2vec-text (or any transformers text) model on a GLUE task, or on your own CSV/JSON/TSV data.

    # Hub data (nyu-mll/glue), all nine tasks; MNLI is evaluated on matched and mismatched validation sets
    python examples/text-classification/run_glue.py --model_name_or_path facebook/data2vec-text-base --task_name sst2 \
        --dataset_name nyu-mll/glue --dataset_config_name sst2 --do_train --do_eval \
        --max_seq_length 128 --per_device_train_batch_size 32 --learning_rate 2e-5 --num_train_epochs 3 \
        --output_dir out/data2vec-text-sst2

    # Local GLUE TSV files (offline), STS-B regression, LoRA adapters merged at the end
    python examples/text-classification/run_glue.py --model_name_or_path facebook/data2vec-text-base --task_name stsb \
        --train_file ../shared/data/glue/stsb/train.tsv --validation_file ../shared/data/glue/stsb/dev.tsv \
        --do_train --do_eval --use_peft --learning_rate 5e-4 --output_dir out/stsb-lora

    # Several processes (GPUs; on CPU add --use_cpu so each process joins a gloo group)
    accelerate launch --multi_gpu --num_processes 2 examples/text-classification/run_glue.py ... [--use_cpu]

    # All arguments from a JSON file
    python examples/text-classification/run_glue.py args.json

The model card (`README.md` with the evaluation results in its model-index) is always written to `--output_dir`;
`--push_to_hub` uploads the output folder with `trainer.push_to_hub`.
"""

import logging
import os
from dataclasses import dataclass, field

from transformers import (
    AutoModelForSequenceClassification,
    DataCollatorWithPadding,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from d2v_hf.argument_parsing import parse_arguments
from d2v_hf.finetuning import (
    ClassificationTrainer,
    ModelArguments,
    check_task_name,
    disable_loss_kwargs,
    encode_glue_labels,
    get_glue_label_info,
    hold_out_for_model_selection,
    load_glue_datasets,
    load_pretrained,
    make_glue_compute_metrics,
    maybe_merge_lora,
    save_and_push_model_card,
    select_samples,
    setup_logging,
    tokenize_glue_datasets,
    train_and_save,
)
from d2v_hf.modelcard import build_model_card, training_details_from_args
from d2v_hf.trainer.parallelism import end_distributed_run


logger = logging.getLogger(__name__)


@dataclass
class DataTrainingArguments:
    """What data to train and evaluate on."""

    task_name: str | None = field(
        default=None, metadata={"help": "GLUE task: cola mnli mrpc qnli qqp rte sst2 stsb wnli"}
    )
    dataset_name: str | None = field(
        default=None, metadata={"help": "Hub dataset (default nyu-mll/glue with a task)."}
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset config (default: task_name)."})
    train_file: str | None = field(default=None, metadata={"help": "Local training data (.tsv GLUE, .csv, .json)."})
    validation_file: str | None = field(default=None, metadata={"help": "Local validation data."})
    validation_mismatched_file: str | None = field(default=None, metadata={"help": "MNLI mismatched validation."})
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated."})
    pad_to_max_length: bool = field(default=True, metadata={"help": "Pad to max_seq_length (else dynamic padding)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N evaluation examples."})
    model_selection_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Hold out this share of the training data (seeded, the same in every run) and evaluate there "
            "instead of the validation set: for choosing a learning rate without looking at the reported set."
        },
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    overwrite_cache: bool = field(default=False, metadata={"help": "Recompute the tokenized datasets."})

    def __post_init__(self):
        if self.max_seq_length < 4:  # <s> A </s> at the least, and a second sentence needs more
            raise ValueError(f"--max_seq_length {self.max_seq_length}: too short for any input; use e.g. 128.")


def main(args=None):
    model_args, data_args, training_args = parse_arguments(
        (ModelArguments, DataTrainingArguments, TrainingArguments), args
    )
    setup_logging(training_args)
    set_seed(training_args.seed)
    task_name = check_task_name(data_args.task_name)

    # Data and labels (local GLUE TSV/CSV/JSON files or a Hub dataset), checked before any model is loaded.
    raw_datasets = load_glue_datasets(
        task_name,
        dataset_name=data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        train_file=data_args.train_file,
        validation_file=data_args.validation_file,
        validation_mismatched_file=data_args.validation_mismatched_file,
        cache_dir=model_args.cache_dir,
        token=model_args.token,
    )
    if data_args.model_selection_fraction:
        raw_datasets = hold_out_for_model_selection(raw_datasets, data_args.model_selection_fraction)
    label_info = get_glue_label_info(raw_datasets, task_name)
    raw_datasets = encode_glue_labels(raw_datasets, label_info)
    labels = {} if label_info.is_regression else dict(enumerate(map(str, label_info.label_list)))
    _, tokenizer, model = load_pretrained(
        model_args,
        AutoModelForSequenceClassification,
        "text",
        "run_glue.py",
        num_labels=label_info.num_labels,
        id2label=labels or {0: "LABEL_0"},
        label2id={name: i for i, name in labels.items()} or {"LABEL_0": 0},
        finetuning_task=task_name,
        problem_type="regression" if label_info.is_regression else "single_label_classification",
    )

    # Subsample before tokenizing, so --max_train_samples also saves the tokenization time.
    for split in raw_datasets:
        limit = data_args.max_train_samples if split == "train" else data_args.max_eval_samples
        raw_datasets[split] = select_samples(raw_datasets[split], limit)
    with training_args.main_process_first(desc="dataset map pre-processing"):
        tokenized = tokenize_glue_datasets(
            raw_datasets,
            tokenizer,
            task_name,
            max_seq_length=data_args.max_seq_length,
            pad_to_max_length=data_args.pad_to_max_length,
            num_proc=data_args.preprocessing_num_workers,
            load_from_cache_file=not data_args.overwrite_cache,
        )
    if training_args.do_train and "train" not in tokenized:
        raise ValueError("--do_train requires a train split (--train_file or a dataset with 'train').")
    eval_splits = {}
    if training_args.do_eval:
        main_split = "validation_matched" if task_name == "mnli" else "validation"
        if main_split not in tokenized:
            raise ValueError(f"--do_eval requires a {main_split} split (--validation_file or a Hub dataset).")
        eval_splits[task_name or "eval"] = tokenized[main_split]
        if task_name == "mnli" and "validation_mismatched" in tokenized:
            eval_splits["mnli-mm"] = tokenized["validation_mismatched"]

    disable_loss_kwargs(model)  # the classification loss is a batch mean: no num_items_in_batch scaling
    trainer = ClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"] if training_args.do_train else None,
        eval_dataset=next(iter(eval_splits.values()), None),
        compute_metrics=make_glue_compute_metrics(task_name, is_regression=label_info.is_regression),
        processing_class=tokenizer,
        data_collator=default_data_collator if data_args.pad_to_max_length else DataCollatorWithPadding(tokenizer),
    )
    all_metrics = train_and_save(trainer, training_args.resume_from_checkpoint) if training_args.do_train else {}

    eval_results = {}
    for name, dataset in eval_splits.items():
        logger.info(f"*** Evaluate {name} ***")
        metrics = dict(trainer.evaluate(eval_dataset=dataset), eval_samples=len(dataset))
        if name == "mnli-mm":
            metrics = {f"{k}_mm": v for k, v in metrics.items()}
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
        eval_results[name] = {k.removesuffix("_mm"): v for k, v in metrics.items()}
        all_metrics.update(metrics)

    merged_dir = maybe_merge_lora(trainer, model_args, tokenizer)
    from_hub = not (data_args.train_file or data_args.validation_file)
    card = build_model_card(
        model_name=os.path.basename(os.path.normpath(training_args.output_dir)),
        base_model=model_args.model_name_or_path,
        task_type="text-classification",
        task_name=f"GLUE {task_name.upper()}" if task_name else "Text classification",
        dataset_name=f"GLUE {task_name.upper()}" if task_name else data_args.dataset_name or "custom",
        dataset_type=data_args.dataset_name or ("nyu-mll/glue" if task_name else "custom"),
        dataset_config=data_args.dataset_config_name or task_name,
        dataset_split="validation",
        datasets=[data_args.dataset_name or "nyu-mll/glue"] if from_hub else None,
        eval_results=eval_results if len(eval_results) > 1 else next(iter(eval_results.values()), None),
        training_details=training_details_from_args(
            training_args,
            max_seq_length=data_args.max_seq_length,
            lora=f"r={model_args.lora_r}, alpha={model_args.lora_alpha}" if model_args.use_peft else "no",
            merged_model=os.path.relpath(merged_dir, training_args.output_dir) if merged_dir else None,
        ),
    )
    save_and_push_model_card(trainer, card, finetuned_from=model_args.model_name_or_path)
    return all_metrics


if __name__ == "__main__":
    main()
    end_distributed_run()
