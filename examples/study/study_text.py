"""
The text arms of the study behind `examples/study/run_study.py`: data2vec text pretraining against RoBERTa-style
masked-language-model (MLM) pretraining and against random initialisation, on real data, with the same compute budget.

Three arms share one byte-level BPE tokenizer (trained once on the corpus slice), one backbone configuration (the tiny
`Data2VecTextConfig` of [`~d2v_hf.configuration_data2vec_pretraining.tiny_backbone_config`] in quick mode, RoBERTa-base
size in full mode) and, for the two pretrained arms, the same corpus blocks, optimizer, schedule, number of steps,
batch size and sequence length:

- `data2vec`: `examples/pretraining/run_pretraining.py` (the data2vec 1.0 text recipe,
  [`~d2v_hf.Data2VecForPretraining`]); its exported student is fine-tuned.
- `mlm`: `Data2VecTextForMaskedLM` (the same backbone class) with transformers' `DataCollatorForLanguageModeling`
  (15% of the tokens, 80% `<mask>` / 10% random / 10% unchanged) and the plain `Trainer` ([`pretrain_mlm`]).
- `random`: a randomly initialised `Data2VecTextModel` (one per fine-tuning seed).

Each arm is then fine-tuned with `examples/text-classification/run_glue.py` (SST-2, STS-B) and
`examples/question-answering/run_qa.py` (XQuAD: trained on the English questions of half of the articles, evaluated on
the other half in all 12 languages, i.e. zero-shot on the 11 non-English ones), with the same hyperparameters for every
arm, over several seeds. `study_report.py` turns the raw results (`study_results.json`) into `study.md` with tables and
learning-curve plots, writes one model card per produced model with the downstream results in its model-index
([`~d2v_hf.modelcard.build_model_card`]) and uploads them; the image and speech arms are in `study_vision_audio.py`.

```python
>>> from study import StudyArguments, run_study  # python examples/study/run_study.py does this
>>> results = run_study(StudyArguments(mode="quick", data_dir="../shared/data"))  # under 30 minutes on 2 CPU cores
```
"""

from __future__ import annotations

import gzip
import os
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModel,
    AutoTokenizer,
    Data2VecTextForMaskedLM,
    Data2VecTextModel,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
    set_seed,
)

from d2v_hf.data import load_text_dataset, tokenize_and_group, train_bpe_tokenizer

from study_config import StudyArguments
from study_utils import (
    cli_args,
    common_training_kwargs,
    load_example,
    read_log_history,
    series,
    study_backbone_config,
)


def prepare_corpus(corpus_file: str | os.PathLike, output_file: str | os.PathLike, max_lines: int | None) -> dict:
    """
    Writes `max_lines` evenly spaced non-empty lines of `corpus_file` (gzip or plain text, one paragraph a line) to
    `output_file` (all lines when `max_lines` is `None`). GCIDE is sorted alphabetically, so even spacing keeps the
    whole vocabulary range. Returns a description (lines, words, characters).
    """
    opener = gzip.open if str(corpus_file).endswith(".gz") else open
    with opener(corpus_file, "rt", encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    lines = [line for line in lines if line and not line.startswith("00-database")]
    if max_lines is not None and max_lines < len(lines):
        stride = len(lines) / max_lines
        lines = [lines[int(i * stride)] for i in range(max_lines)]
    output_file = Path(output_file)
    output_file.parent.mkdir(parents=True, exist_ok=True)
    output_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        "source": Path(corpus_file).name,
        "lines": len(lines),
        "words": sum(len(line.split()) for line in lines),
        "chars": sum(len(line) for line in lines),
    }


def train_study_tokenizer(corpus_file: str | os.PathLike, output_dir: str | os.PathLike, vocab_size: int):
    """Trains the byte-level BPE tokenizer that every arm shares, and saves it to `output_dir`."""
    lines = Path(corpus_file).read_text(encoding="utf-8").splitlines()
    tokenizer = train_bpe_tokenizer(lines, vocab_size=vocab_size)
    tokenizer.save_pretrained(output_dir)
    return tokenizer


def _pretraining_optimizer_kwargs(args: StudyArguments) -> dict[str, Any]:
    """Optimizer and schedule shared by both pretraining arms (the data2vec/RoBERTa Adam settings)."""
    return dict(
        max_steps=args.pretrain_steps,
        per_device_train_batch_size=args.pretrain_batch_size,
        learning_rate=args.pretrain_learning_rate,
        warmup_steps=args.pretrain_warmup_steps,
        lr_scheduler_type="linear",
        weight_decay=0.01,
        adam_beta2=0.98,
        adam_epsilon=1e-6,
        max_grad_norm=1.0,
        logging_steps=max(1, args.pretrain_steps // 40),
        seed=0,
    )


def pretrain_data2vec(args: StudyArguments, corpus_file: str, tokenizer_dir: str, output_dir: str) -> dict:
    """Runs `run_pretraining.py` (the data2vec 1.0 text recipe); returns its metrics and loss curve."""
    run_pretraining = load_example("run_pretraining")
    argv = cli_args(
        modality="text",
        model_size=args.model_size,
        train_file=corpus_file,
        tokenizer_name=tokenizer_dir,
        max_seq_length=args.max_seq_length,
        validation_split_percentage=0,
        output_dir=output_dir,
        overwrite_output_dir=True,
        eval_strategy="no",
        **_pretraining_optimizer_kwargs(args),
        **common_training_kwargs(),
    )
    start = time.time()
    metrics = run_pretraining.main(argv)
    history = read_log_history(output_dir)
    return {
        "command": "python examples/pretraining/run_pretraining.py " + shlex.join(argv),
        "checkpoint": str(Path(output_dir) / "student"),
        "wall_time_s": time.time() - start,
        "final_loss": metrics.get("loss"),
        "loss_curve": series(history, "loss"),
        "target_var": metrics.get("target_var"),
        "prediction_var": metrics.get("prediction_var"),
    }


def pretrain_mlm(args: StudyArguments, corpus_file: str, tokenizer_dir: str, output_dir: str) -> dict:
    """
    RoBERTa-style MLM pretraining of `Data2VecTextForMaskedLM` with the same tokenizer, backbone, corpus blocks,
    optimizer, schedule, steps, batch and sequence length as the data2vec arm: `DataCollatorForLanguageModeling`
    (15% of the tokens; 80% `<mask>`, 10% random, 10% unchanged) and the plain `Trainer`.
    """
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    set_seed(0)
    texts = load_text_dataset(corpus_file)
    train_dataset = tokenize_and_group(texts, tokenizer, max_seq_length=args.max_seq_length)
    model = Data2VecTextForMaskedLM(study_backbone_config("text", args.model_size, tokenizer))
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15)
    training_args = TrainingArguments(
        output_dir=output_dir, **_pretraining_optimizer_kwargs(args), **common_training_kwargs()
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        data_collator=collator,
        train_dataset=train_dataset,
        processing_class=tokenizer,
    )
    start = time.time()
    result = trainer.train()
    trainer.save_model()
    trainer.save_state()
    return {
        "command": "study_text.pretrain_mlm (Trainer + DataCollatorForLanguageModeling, mlm_probability=0.15)",
        "checkpoint": output_dir,
        "wall_time_s": time.time() - start,
        "final_loss": series(trainer.state.log_history, "loss")[-1][1],
        "loss_curve": series(trainer.state.log_history, "loss"),
        "train_runtime": result.metrics.get("train_runtime"),
    }


def save_random_init(args: StudyArguments, tokenizer_dir: str, output_dir: str, seed: int) -> str:
    """A randomly initialised `Data2VecTextModel` of the study's backbone (seeded), saved with the tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    Data2VecTextModel(study_backbone_config("text", args.model_size, tokenizer)).save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def finetune_glue(args: StudyArguments, checkpoint: str, task: str, seed: int, output_dir: str) -> dict:
    """Fine-tunes `checkpoint` on SST-2 or STS-B with `examples/text-classification/run_glue.py` (local TSV files)."""
    run_glue = load_example("run_glue")
    glue_dir = Path(args.data_dir) / "glue" / task
    eval_steps = max(1, args.finetune_steps // max(1, args.eval_points))
    argv = cli_args(
        model_name_or_path=checkpoint,
        task_name=task,
        train_file=glue_dir / "train.tsv",
        validation_file=glue_dir / "dev.tsv",
        do_train=True,
        do_eval=True,
        max_seq_length=args.max_seq_length * 2 if task == "stsb" else args.max_seq_length,
        pad_to_max_length="false",
        max_train_samples=args.glue_max_train_samples,
        max_eval_samples=args.glue_max_eval_samples,
        max_steps=args.finetune_steps,
        per_device_train_batch_size=args.finetune_batch_size,
        per_device_eval_batch_size=128,
        learning_rate=args.finetune_learning_rate,
        warmup_steps=max(1, args.finetune_steps // 10),
        weight_decay=0.01,
        eval_strategy="steps",
        eval_steps=eval_steps,
        logging_steps=max(1, eval_steps // 2),
        seed=seed,
        output_dir=output_dir,
        **common_training_kwargs(),
    )
    start = time.time()
    metrics = run_glue.main(argv)
    history = read_log_history(output_dir)
    if task == "stsb":
        scores = {"pearson": metrics["eval_pearson"], "spearmanr": metrics["eval_spearmanr"]}
        scores["corr"] = (scores["pearson"] + scores["spearmanr"]) / 2
        curve = [
            [s, (p + r) / 2]
            for (s, p), (_, r) in zip(series(history, "eval_pearson"), series(history, "eval_spearmanr"))
        ]
    else:
        scores = {"accuracy": metrics["eval_accuracy"]}
        curve = series(history, "eval_accuracy")
    return {
        "scores": {k: 100 * float(v) for k, v in scores.items()},
        "eval_curve": [[s, 100 * v] for s, v in curve],
        "loss_curve": series(history, "loss"),
        "wall_time_s": time.time() - start,
        "command": "python examples/text-classification/run_glue.py " + shlex.join(argv),
    }


def finetune_xquad(args: StudyArguments, checkpoint: str, seed: int, output_dir: str) -> dict:
    """
    Fine-tunes `checkpoint` on the English questions of half of the XQuAD articles and evaluates the other half in
    all 12 languages (`examples/question-answering/run_qa.py --xquad_dir`); the article split follows the seed.
    """
    run_qa = load_example("run_qa")
    argv = cli_args(
        model_name_or_path=checkpoint,
        xquad_dir=Path(args.data_dir) / "xquad",
        xquad_test_fraction=0.5,
        do_train=True,
        do_eval=True,
        max_seq_length=args.qa_max_seq_length,
        doc_stride=args.qa_doc_stride,
        max_eval_samples=args.qa_max_eval_samples,
        max_steps=args.qa_steps,
        per_device_train_batch_size=args.qa_batch_size,
        per_device_eval_batch_size=128,
        learning_rate=args.finetune_learning_rate,
        warmup_steps=max(1, args.qa_steps // 10),
        weight_decay=0.01,
        logging_steps=max(1, args.qa_steps // 10),
        seed=seed,
        output_dir=output_dir,
        **common_training_kwargs(),
    )
    start = time.time()
    metrics = run_qa.main(argv)
    languages = metrics["xquad"]["languages"]
    others = [lang for lang in languages if lang != "en"]
    scores = {"en_f1": languages["en"]["f1"], "en_exact_match": languages["en"]["exact_match"]}
    if others:
        scores["zero_shot_f1"] = float(np.mean([languages[lang]["f1"] for lang in others]))
        scores["zero_shot_exact_match"] = float(np.mean([languages[lang]["exact_match"] for lang in others]))
    scores.update({f"{lang}_f1": values["f1"] for lang, values in languages.items() if lang != "en"})
    return {
        "scores": {k: float(v) for k, v in scores.items()},
        "eval_curve": [],
        "loss_curve": series(read_log_history(output_dir), "loss"),
        "wall_time_s": time.time() - start,
        "command": "python examples/question-answering/run_qa.py " + shlex.join(argv),
    }


def feature_spread(checkpoint: str, texts: list[str], max_length: int = 64) -> float:
    """
    Mean over features of the standard deviation, across all tokens of `texts`, of the last-layer outputs. Near 0
    when every token gets nearly the same vector: a collapsed representation, from which a short fine-tuning run
    tends to stay at the majority class.
    """
    model, tokenizer = AutoModel.from_pretrained(checkpoint).eval(), AutoTokenizer.from_pretrained(checkpoint)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    return float(hidden[batch["attention_mask"].bool()].std(0).mean())


def unigram_entropy(corpus_file: str | os.PathLike, tokenizer_dir: str | os.PathLike) -> float:
    """Entropy (nats) of the token frequencies of the corpus: the MLM loss of a model that ignores the context."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    lines = [line for line in Path(corpus_file).read_text(encoding="utf-8").splitlines() if line]
    ids = np.concatenate([np.asarray(i) for i in tokenizer(lines, add_special_tokens=False)["input_ids"] if i])
    p = np.bincount(ids) / len(ids)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def text_diagnostics(args: StudyArguments, checkpoints: dict[str, str], corpus_file: str, tokenizer_dir: str):
    """Feature spread of each text arm on SST-2 dev sentences, and the corpus's unigram entropy."""
    lines = (Path(args.data_dir) / "glue" / "sst2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:129]
    texts = [line.split("\t")[0] for line in lines]
    spread = {arm: feature_spread(path, texts, args.max_seq_length) for arm, path in checkpoints.items()}
    return {"feature_spread": spread, "unigram_entropy": unigram_entropy(corpus_file, tokenizer_dir)}


__all__ = [
    "feature_spread",
    "finetune_glue",
    "finetune_xquad",
    "prepare_corpus",
    "pretrain_data2vec",
    "pretrain_mlm",
    "save_random_init",
    "text_diagnostics",
    "train_study_tokenizer",
    "unigram_entropy",
]
