#!/usr/bin/env python
"""Fine-tune a data2vec-text (or any transformers text) model for extractive question answering (SQuAD, XQuAD).

    # SQuAD v1.1 from the Hub
    python examples/question-answering/run_qa.py --model_name_or_path facebook/data2vec-text-base \
        --dataset_name rajpurkar/squad \
        --do_train --do_eval --max_seq_length 384 --doc_stride 128 --per_device_train_batch_size 12 \
        --learning_rate 3e-5 --num_train_epochs 2 --output_dir out/data2vec-text-squad

    # SQuAD v2.0 (unanswerable questions), local SQuAD-format JSON (.json or .json.gz)
    python examples/question-answering/run_qa.py --model_name_or_path facebook/data2vec-text-base \
        --version_2_with_negative \
        --train_file train-v2.0.json --validation_file dev-v2.0.json --null_score_diff_threshold 0.0 \
        --do_train --do_eval --output_dir out/data2vec-text-squad2

    # XQuAD zero-shot cross-lingual transfer (offline): fine-tune on half of the English XQuAD articles, evaluate
    # on the other half in all 12 languages; writes xquad_results.md/.json (per-language EM/F1 and the average)
    python examples/question-answering/run_qa.py --model_name_or_path xlm-roberta-base \
        --xquad_dir ../shared/data/xquad \
        --xquad_test_fraction 0.5 --do_train --do_eval --output_dir out/xquad-zero-shot

    # Several processes
    accelerate launch --multi_gpu --num_processes 2 examples/question-answering/run_qa.py ... [--use_cpu]

The model card with the evaluation results is always written to `--output_dir`; `--push_to_hub` uploads the folder.
"""

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers import (
    AutoModelForQuestionAnswering,
    DataCollatorWithPadding,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from d2v_hf.argument_parsing import parse_arguments
from d2v_hf.finetuning import (
    XQUAD_LANGUAGES,
    ModelArguments,
    QuestionAnsweringTrainer,
    hold_out_articles_for_model_selection,
    load_pretrained,
    load_qa_datasets,
    make_qa_post_processing_function,
    make_squad_compute_metrics,
    maybe_merge_lora,
    save_and_push_model_card,
    select_samples,
    setup_logging,
    tokenize_qa_examples,
    train_and_save,
    write_xquad_results,
)
from d2v_hf.modelcard import build_model_card, training_details_from_args
from d2v_hf.trainer.parallelism import end_distributed_run


logger = logging.getLogger(__name__)


@dataclass
class DataTrainingArguments:
    """What data to train and evaluate on, and how to cut contexts into features."""

    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset, e.g. rajpurkar/squad."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration."})
    train_file: str | None = field(default=None, metadata={"help": "SQuAD-format .json/.json.gz/.jsonl file."})
    validation_file: str | None = field(default=None, metadata={"help": "SQuAD-format evaluation file."})
    xquad_dir: str | None = field(default=None, metadata={"help": "Folder of xquad.{lang}.json.gz: zero-shot mode."})
    xquad_test_fraction: float = field(default=0.5, metadata={"help": "Share of XQuAD articles held out for test."})
    xquad_languages: list[str] = field(default_factory=lambda: list(XQUAD_LANGUAGES), metadata={"help": "Languages."})
    version_2_with_negative: bool = field(default=False, metadata={"help": "SQuAD v2.0: unanswerable questions."})
    null_score_diff_threshold: float = field(default=0.0, metadata={"help": "Predict no answer above this margin."})
    max_seq_length: int = field(default=384, metadata={"help": "Length of a feature (question + context window)."})
    doc_stride: int = field(default=128, metadata={"help": "Overlap of consecutive context windows, in tokens."})
    n_best_size: int = field(default=20, metadata={"help": "Start/end candidates per feature in post-processing."})
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer, in tokens."})
    pad_to_max_length: bool = field(default=True, metadata={"help": "Pad to max_seq_length (else dynamic)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Keep the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep the first N evaluation examples."})
    model_selection_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Hold out this share of the training articles (seeded, the same in every run) and evaluate there "
            "(in English) instead of the validation / test articles: for choosing a learning rate."
        },
    )
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})

    def __post_init__(self):
        if self.max_seq_length < 8:
            raise ValueError(f"--max_seq_length {self.max_seq_length}: too short for a question and a context window.")
        if not 0 <= self.doc_stride < self.max_seq_length:
            raise ValueError(
                f"--doc_stride {self.doc_stride}: must be in [0, --max_seq_length {self.max_seq_length})."
            )


def main(args=None):
    model_args, data_args, training_args = parse_arguments(
        (ModelArguments, DataTrainingArguments, TrainingArguments), args
    )
    setup_logging(training_args)
    set_seed(training_args.seed)
    v2 = data_args.version_2_with_negative

    # train examples and {name: eval examples}: one eval set, or one per XQuAD language (same held-out articles).
    train_examples, eval_sets = load_qa_datasets(
        dataset_name=data_args.dataset_name,
        dataset_config_name=data_args.dataset_config_name,
        train_file=data_args.train_file,
        validation_file=data_args.validation_file,
        xquad_dir=data_args.xquad_dir,
        xquad_test_fraction=data_args.xquad_test_fraction,
        xquad_languages=data_args.xquad_languages,
        version_2_with_negative=v2,
        seed=training_args.seed,
        cache_dir=model_args.cache_dir,
        token=model_args.token,
    )
    if data_args.model_selection_fraction:
        name = "en" if data_args.xquad_dir else "validation"  # XQuAD: the held-out English training articles
        train_examples, eval_sets = hold_out_articles_for_model_selection(
            train_examples, data_args.model_selection_fraction, name
        )
    if train_examples is not None:
        train_examples = select_samples(train_examples, data_args.max_train_samples)
    eval_sets = {name: select_samples(ds, data_args.max_eval_samples) for name, ds in eval_sets.items()}

    _, tokenizer, model = load_pretrained(model_args, AutoModelForQuestionAnswering, "text", "run_qa.py")
    max_seq_length = min(data_args.max_seq_length, tokenizer.model_max_length)
    feature_kwargs = dict(
        tokenizer=tokenizer,
        max_length=max_seq_length,
        doc_stride=data_args.doc_stride,
        pad_to_max_length=data_args.pad_to_max_length,
        num_proc=data_args.preprocessing_num_workers,
    )
    if training_args.do_train and train_examples is None:
        raise ValueError("--do_train requires training data (--train_file, --dataset_name or --xquad_dir).")
    if training_args.do_eval and not eval_sets:
        raise ValueError("--do_eval requires evaluation data (--validation_file, --dataset_name or --xquad_dir).")
    train_dataset, eval_features = None, {}
    with training_args.main_process_first(desc="dataset map pre-processing"):
        if training_args.do_train:
            train_dataset = tokenize_qa_examples(
                train_examples, training=True, version_2_with_negative=v2, **feature_kwargs
            )
        if training_args.do_eval:
            eval_features = {
                k: tokenize_qa_examples(v, training=False, **feature_kwargs) for k, v in eval_sets.items()
            }
    first_eval = next(iter(eval_sets), None)

    trainer = QuestionAnsweringTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_features.get(first_eval),
        eval_examples=eval_sets.get(first_eval),
        processing_class=tokenizer,
        data_collator=default_data_collator if data_args.pad_to_max_length else DataCollatorWithPadding(tokenizer),
        post_process_function=make_qa_post_processing_function(
            version_2_with_negative=v2,
            n_best_size=data_args.n_best_size,
            max_answer_length=data_args.max_answer_length,
            null_score_diff_threshold=data_args.null_score_diff_threshold,
            output_dir=training_args.output_dir if training_args.should_save else None,
        ),
        compute_metrics=make_squad_compute_metrics(v2),
    )

    all_metrics = train_and_save(trainer, training_args.resume_from_checkpoint) if training_args.do_train else {}

    eval_results = {}
    os.makedirs(training_args.output_dir, exist_ok=True)
    for name, features in eval_features.items():
        logger.info(f"*** Evaluate {name} ***")
        # One prefix per XQuAD language (eval_de_f1, ...); a single eval set keeps the usual eval_ prefix.
        prefix = f"eval_{name}" if data_args.xquad_dir else "eval"
        metrics = trainer.evaluate(eval_dataset=features, eval_examples=eval_sets[name], metric_key_prefix=prefix)
        metrics[f"{prefix}_samples"] = len(eval_sets[name])
        trainer.log_metrics(name, metrics)
        trainer.save_metrics(f"eval_{name}" if data_args.xquad_dir else "eval", metrics)
        eval_results[name] = {key.removeprefix(f"{prefix}_"): value for key, value in metrics.items()}
        all_metrics.update(metrics)
    if data_args.xquad_dir and eval_results and trainer.is_world_process_zero():
        summary = write_xquad_results(eval_results, training_args.output_dir)
        logger.info(
            f"XQuAD zero-shot average: EM {summary['average']['exact_match']:.2f} F1 {summary['average']['f1']:.2f}"
        )
        all_metrics["xquad"] = summary

    merged_dir = maybe_merge_lora(trainer, model_args, tokenizer)
    if data_args.xquad_dir:
        dataset_name, dataset_type = "XQuAD", "google/xquad"
    else:
        dataset_name = data_args.dataset_name or ("SQuAD v2.0" if v2 else "SQuAD v1.1")
        dataset_type = data_args.dataset_name or ("rajpurkar/squad_v2" if v2 else "rajpurkar/squad")
    card = build_model_card(
        model_name=os.path.basename(os.path.normpath(training_args.output_dir)),
        base_model=model_args.model_name_or_path,
        task_type="question-answering",
        task_name="Extractive question answering",
        dataset_name=dataset_name,
        dataset_type=dataset_type,
        dataset_config=data_args.dataset_config_name,
        dataset_split="held-out articles" if data_args.xquad_dir else "validation",
        datasets=[data_args.dataset_name] if data_args.dataset_name else None,
        eval_results=(eval_results if data_args.xquad_dir else next(iter(eval_results.values()), None)) or None,
        training_details=training_details_from_args(
            training_args,
            max_seq_length=max_seq_length,
            doc_stride=data_args.doc_stride,
            version_2_with_negative=v2,
            xquad_test_fraction=data_args.xquad_test_fraction if data_args.xquad_dir else None,
            lora=f"r={model_args.lora_r}, alpha={model_args.lora_alpha}" if model_args.use_peft else "no",
            merged_model=os.path.relpath(merged_dir, training_args.output_dir) if merged_dir else None,
        ),
        extra_markdown=(
            "## XQuAD zero-shot results\n\n" + Path(training_args.output_dir, "xquad_results.md").read_text()
            if "xquad" in all_metrics
            else None
        ),
    )
    save_and_push_model_card(trainer, card, finetuned_from=model_args.model_name_or_path)
    return all_metrics


if __name__ == "__main__":
    main()
    end_distributed_run()
