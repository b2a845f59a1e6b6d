"""
The study behind `examples/study.py`: data2vec text pretraining against RoBERTa-style masked-language-model (MLM)
pretraining and against random initialisation, on real data, with the same compute budget.

Three arms share one byte-level BPE tokenizer (trained once on the corpus slice), one backbone configuration (the
tiny `Data2VecTextConfig` of [`~d2v_hf.pretraining.tiny_backbone_config`] in quick mode, RoBERTa-base size in full
mode) and, for the two pretrained arms, the same corpus blocks, optimizer, schedule, number of steps, batch size and
sequence length:

- `data2vec`: `examples/run_pretraining.py` (the data2vec 1.0 text recipe, [`~d2v_hf.Data2VecForPretraining`]); its
  exported student is fine-tuned.
- `mlm`: `Data2VecTextForMaskedLM` (the same backbone class) with transformers' `DataCollatorForLanguageModeling`
  (15% of the tokens, 80% `<mask>` / 10% random / 10% unchanged) and the plain `Trainer` ([`pretrain_mlm`]).
- `random`: a randomly initialised `Data2VecTextModel` (one per fine-tuning seed).

Each arm is then fine-tuned with `examples/run_glue.py` (SST-2, STS-B) and `examples/run_qa.py` (XQuAD: trained on
the English questions of half of the articles, evaluated on the other half in all 12 languages, i.e. zero-shot on
the 11 non-English ones), with the same hyperparameters for every arm, over several seeds.
`d2v_hf.study_report` turns the raw results (`study_results.json`) into `study.md` with tables and learning-curve
plots, writes one model card per produced model with the downstream results in its model-index
([`~d2v_hf.modelcard.build_model_card`]) and uploads them; the image and speech arms are in
`d2v_hf.study_vision_audio`.

```python
>>> from d2v_hf.study import StudyArguments, run_study
>>> results = run_study(StudyArguments(mode="quick", data_dir="../shared/data"))  # under 30 minutes on 2 CPU cores
```
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import os
import platform
import shlex
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np


logger = logging.getLogger(__name__)

ARMS = ("data2vec", "mlm", "random")
ARM_TITLES = {
    "data2vec": "data2vec 1.0",
    "mlm": "RoBERTa-style MLM",
    "random": "random init",
}
TEXT_TASKS = ("sst2", "stsb", "xquad")
# The image and speech tasks (d2v_hf.study_vision_audio): data2vec against random init only (no MLM arm).
MODALITY_TASKS = ("fashion_mnist", "spoken_digits")
TASKS = TEXT_TASKS + MODALITY_TASKS
# Main score (0-100) of each task; the text ones are averaged into the GLUE-style average.
TASK_SCORES = {
    "sst2": ("accuracy", "SST-2 accuracy"),
    "stsb": ("corr", "STS-B (Pearson + Spearman) / 2"),
    "xquad": ("en_f1", "XQuAD-en F1"),
    "fashion_mnist": ("finetune_accuracy", "Fashion-MNIST accuracy (fine-tuned)"),
    "spoken_digits": ("finetune_accuracy", "spoken-digit accuracy (fine-tuned, unseen voices)"),
}
TASK_TITLES = {
    "sst2": "SST-2",
    "stsb": "STS-B",
    "xquad": "XQuAD",
    "fashion_mnist": "Fashion-MNIST",
    "spoken_digits": "Spoken digits",
}
# Pretraining runs: (arm, modality) -> key in results["pretraining"].
PRETRAINING_TITLES = {
    "data2vec": "data2vec 1.0 text",
    "mlm": "RoBERTa-style MLM",
    "data2vec_vision": "data2vec 1.0 vision",
    "data2vec_audio": "data2vec 1.0 audio",
}

# Sizes of the two modes. `quick` fits a shared 2-core CPU in under 30 minutes; `full` is meant for one GPU.
_PRESETS: dict[str, dict[str, Any]] = {
    "quick": dict(
        model_size="tiny",
        corpus_lines=12000,
        tokenizer_vocab_size=4000,
        max_seq_length=64,
        pretrain_steps=250,
        pretrain_batch_size=32,
        pretrain_learning_rate=1e-3,
        pretrain_warmup_steps=25,
        seeds="0,1",
        finetune_steps=250,
        finetune_batch_size=16,
        finetune_learning_rate=2e-3,
        glue_max_train_samples=4000,
        glue_max_eval_samples=None,
        qa_steps=60,
        qa_batch_size=16,
        qa_max_seq_length=256,
        qa_doc_stride=32,
        qa_max_eval_samples=24,
        eval_points=4,
        vision_pretrain_steps=300,
        vision_batch_size=32,
        vision_pretrain_learning_rate=1e-3,
        vision_finetune_steps=300,
        vision_finetune_learning_rate=3e-3,
        vision_train_samples=3000,
        vision_eval_samples=2000,
        audio_pretrain_steps=300,
        audio_batch_size=8,
        audio_pretrain_learning_rate=5e-4,
        audio_max_seconds=2.0,
        audio_finetune_steps=160,
        audio_clip_seconds=0.8,
        torch_threads=1,
        workers=2,
    ),
    "full": dict(
        model_size="base",
        corpus_lines=None,
        tokenizer_vocab_size=32000,
        max_seq_length=256,
        pretrain_steps=50000,
        pretrain_batch_size=64,
        pretrain_learning_rate=5e-4,
        pretrain_warmup_steps=2500,
        seeds="0,1,2,3,4",
        finetune_steps=4000,
        finetune_batch_size=32,
        finetune_learning_rate=2e-5,
        glue_max_train_samples=None,
        glue_max_eval_samples=None,
        qa_steps=1000,
        qa_batch_size=32,
        qa_max_seq_length=384,
        qa_doc_stride=128,
        qa_max_eval_samples=None,
        eval_points=10,
        vision_pretrain_steps=20000,
        vision_batch_size=256,
        vision_pretrain_learning_rate=1e-3,
        vision_finetune_steps=3000,
        vision_finetune_learning_rate=1e-4,
        vision_train_samples=30000,
        vision_eval_samples=10000,
        audio_pretrain_steps=10000,
        audio_batch_size=32,
        audio_pretrain_learning_rate=5e-4,
        audio_max_seconds=5.0,
        audio_finetune_steps=1000,
        audio_clip_seconds=1.0,
        torch_threads=0,
        workers=1,
    ),
}


@dataclass
class StudyArguments:
    """What the study runs. Fields left at `None` take the value of the `mode` preset (`quick` or `full`)."""

    mode: str = field(default="quick", metadata={"help": "quick (2-core CPU, < 30 min) or full (one GPU)."})
    data_dir: str = field(default="../shared/data", metadata={"help": "The real-data folder (glue, xquad, corpus)."})
    output_dir: str = field(default="outputs/study", metadata={"help": "Checkpoints and per-run outputs."})
    docs_dir: str = field(default="docs", metadata={"help": "Where study.md, study_results.json and img/ go."})
    model_cards_dir: str = field(default="model_cards", metadata={"help": "One folder per model, with README.md."})
    tasks: str = field(
        default=",".join(TASKS),
        metadata={
            "help": "Comma-separated: sst2, stsb, xquad (text), fashion_mnist (images), spoken_digits (speech)."
        },
    )
    arms: str = field(default="data2vec,mlm,random", metadata={"help": "Comma-separated: data2vec, mlm, random."})
    seeds: str | None = field(default=None, metadata={"help": "Fine-tuning seeds, comma-separated."})
    model_size: str | None = field(default=None, metadata={"help": "tiny (4 x 64) or base (12 x 768)."})
    corpus_lines: int | None = field(default=None, metadata={"help": "Corpus lines used (evenly spaced); 0 = all."})
    tokenizer_vocab_size: int | None = field(default=None, metadata={"help": "BPE vocabulary size."})
    max_seq_length: int | None = field(default=None, metadata={"help": "Pretraining block and GLUE length."})
    pretrain_steps: int | None = field(default=None, metadata={"help": "Optimizer steps of each pretraining arm."})
    pretrain_batch_size: int | None = field(default=None, metadata={"help": "Blocks per pretraining step."})
    pretrain_learning_rate: float | None = field(default=None, metadata={"help": "Peak pretraining learning rate."})
    pretrain_warmup_steps: int | None = field(default=None, metadata={"help": "Linear warmup steps."})
    finetune_steps: int | None = field(default=None, metadata={"help": "Steps of each GLUE fine-tuning run."})
    finetune_batch_size: int | None = field(default=None, metadata={"help": "GLUE batch size."})
    finetune_learning_rate: float | None = field(default=None, metadata={"help": "Fine-tuning learning rate."})
    glue_max_train_samples: int | None = field(default=None, metadata={"help": "GLUE training examples kept."})
    glue_max_eval_samples: int | None = field(default=None, metadata={"help": "GLUE dev examples kept."})
    qa_steps: int | None = field(default=None, metadata={"help": "Steps of each XQuAD fine-tuning run."})
    qa_batch_size: int | None = field(default=None, metadata={"help": "XQuAD batch size."})
    qa_max_seq_length: int | None = field(default=None, metadata={"help": "XQuAD feature length."})
    qa_doc_stride: int | None = field(default=None, metadata={"help": "XQuAD context window overlap."})
    qa_max_eval_samples: int | None = field(default=None, metadata={"help": "XQuAD questions per language."})
    eval_points: int | None = field(default=None, metadata={"help": "GLUE dev evaluations per run (curves)."})
    vision_pretrain_steps: int | None = field(default=None, metadata={"help": "Images: data2vec pretraining steps."})
    vision_batch_size: int | None = field(default=None, metadata={"help": "Images: pretraining batch size."})
    vision_pretrain_learning_rate: float | None = field(default=None, metadata={"help": "Images: pretraining lr."})
    vision_finetune_steps: int | None = field(default=None, metadata={"help": "Images: fine-tuning steps (batch 32)."})
    vision_finetune_learning_rate: float | None = field(default=None, metadata={"help": "Images: fine-tuning lr."})
    vision_train_samples: int | None = field(
        default=None, metadata={"help": "Images: labelled training images for the probe and fine-tuning."}
    )
    vision_eval_samples: int | None = field(default=None, metadata={"help": "Images: test images evaluated."})
    audio_pretrain_steps: int | None = field(default=None, metadata={"help": "Speech: data2vec pretraining steps."})
    audio_batch_size: int | None = field(default=None, metadata={"help": "Speech: pretraining batch size (clips)."})
    audio_pretrain_learning_rate: float | None = field(default=None, metadata={"help": "Speech: pretraining lr."})
    audio_max_seconds: float | None = field(default=None, metadata={"help": "Speech: pretraining crop (seconds)."})
    audio_finetune_steps: int | None = field(default=None, metadata={"help": "Speech: fine-tuning steps (batch 16)."})
    audio_clip_seconds: float | None = field(default=None, metadata={"help": "Speech: digit clip length (seconds)."})
    torch_threads: int | None = field(
        default=None, metadata={"help": "torch.set_num_threads (0: torch's default); 1 is fastest on a shared CPU."}
    )
    workers: int | None = field(
        default=None,
        metadata={"help": "Runs in parallel (separate processes, torch_threads each); 2 on a 2-core CPU, 1 on a GPU."},
    )
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the models with their cards."})
    hub_org: str | None = field(default=None, metadata={"help": "Hub user or organisation for --push_to_hub."})
    hub_token: str | None = field(default=None, metadata={"help": "Hub token (default: the logged-in one)."})

    def __post_init__(self):
        if self.mode not in _PRESETS:
            raise ValueError(f"--mode {self.mode!r}; expected one of {sorted(_PRESETS)}.")
        for key, value in _PRESETS[self.mode].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        if self.corpus_lines == 0:
            self.corpus_lines = None
        unknown = sorted(set(self.task_list) - set(TASKS)) + sorted(set(self.arm_list) - set(ARMS))
        if unknown:
            raise ValueError(f"Unknown task(s)/arm(s) {unknown}; tasks: {TASKS}, arms: {ARMS}.")
        if self.workers < 1:
            raise ValueError(f"--workers {self.workers}; expected at least 1.")
        if self.push_to_hub and not self.hub_org:
            raise ValueError("--push_to_hub needs --hub_org (the Hub user or organisation to upload to).")

    @property
    def task_list(self) -> list[str]:
        return [t.strip() for t in self.tasks.split(",") if t.strip()]

    @property
    def arm_list(self) -> list[str]:
        return [a.strip() for a in self.arms.split(",") if a.strip()]

    @property
    def seed_list(self) -> list[int]:
        return [int(s) for s in str(self.seeds).split(",") if str(s).strip()]

    def to_dict(self) -> dict[str, Any]:
        skip = {"hub_token"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


# --------------------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------------------


def _load_example(name: str):
    """Imports `examples/<name>.py` of the repository checkout (the scripts are not part of the installed package)."""
    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the study runs from a checkout of the d2v_hf repository.")
    spec = importlib.util.spec_from_file_location(f"d2v_hf_study_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cli(**kwargs) -> list[str]:
    """`_cli(do_train=True, seed=1)` -> `["--do_train", "--seed", "1"]`; `None`/`False` values are left out."""
    args = []
    for key, value in kwargs.items():
        if value is True:
            args.append(f"--{key}")
        elif value is not None and value is not False:
            args += [f"--{key}", str(value)]
    return args


def _device_kwargs() -> dict[str, Any]:
    import torch

    return {} if torch.cuda.is_available() else {"use_cpu": True}


def _common_training_kwargs() -> dict[str, Any]:
    return dict(report_to="none", save_strategy="no", disable_tqdm="true", log_level="warning", **_device_kwargs())


def _read_log_history(output_dir: str | os.PathLike) -> list[dict]:
    path = Path(output_dir) / "trainer_state.json"
    return json.loads(path.read_text())["log_history"] if path.is_file() else []


def _series(log_history: list[dict], key: str) -> list[list[float]]:
    return [[e["step"], float(e[key])] for e in log_history if key in e and e[key] is not None]


def environment_info() -> dict[str, Any]:
    """Hardware and library versions, for the report and the model cards."""
    import torch
    import transformers

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    return {
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
    }


# --------------------------------------------------------------------------------------------------------------------
# Data and tokenizer
# --------------------------------------------------------------------------------------------------------------------


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
    from .tokenization import train_bpe_tokenizer

    lines = Path(corpus_file).read_text(encoding="utf-8").splitlines()
    tokenizer = train_bpe_tokenizer(lines, vocab_size=vocab_size)
    tokenizer.save_pretrained(output_dir)
    return tokenizer


def study_backbone_config(model_size: str, tokenizer):
    """The backbone every arm uses: exactly the student configuration `run_pretraining.py` builds."""
    from .pretraining import Data2VecModelArguments, build_pretraining_config

    config = build_pretraining_config(Data2VecModelArguments(modality="text", model_size=model_size), tokenizer)
    return config.backbone_config


# --------------------------------------------------------------------------------------------------------------------
# Pretraining
# --------------------------------------------------------------------------------------------------------------------


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
    """Runs `examples/run_pretraining.py` (data2vec 1.0 text recipe); returns its metrics and its loss curve."""
    run_pretraining = _load_example("run_pretraining")
    argv = _cli(
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
        **_common_training_kwargs(),
    )
    start = time.time()
    metrics = run_pretraining.main(argv)
    history = _read_log_history(output_dir)
    return {
        "command": "python examples/run_pretraining.py " + shlex.join(argv),
        "checkpoint": str(Path(output_dir) / "student"),
        "wall_time_s": time.time() - start,
        "final_loss": metrics.get("loss"),
        "loss_curve": _series(history, "loss"),
        "target_var": metrics.get("target_var"),
        "prediction_var": metrics.get("prediction_var"),
    }


def pretrain_mlm(args: StudyArguments, corpus_file: str, tokenizer_dir: str, output_dir: str) -> dict:
    """
    RoBERTa-style MLM pretraining of `Data2VecTextForMaskedLM` with the same tokenizer, backbone, corpus blocks,
    optimizer, schedule, steps, batch and sequence length as the data2vec arm: `DataCollatorForLanguageModeling`
    (15% of the tokens; 80% `<mask>`, 10% random, 10% unchanged) and the plain `Trainer`.
    """
    from transformers import (
        AutoTokenizer,
        Data2VecTextForMaskedLM,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    from .data import load_text_dataset, tokenize_and_group

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    set_seed(0)
    texts = load_text_dataset(corpus_file)
    train_dataset = tokenize_and_group(texts, tokenizer, max_seq_length=args.max_seq_length)
    model = Data2VecTextForMaskedLM(study_backbone_config(args.model_size, tokenizer))
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=0.15)
    training_args = TrainingArguments(
        output_dir=output_dir, **_pretraining_optimizer_kwargs(args), **_common_training_kwargs()
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
        "command": "d2v_hf.study.pretrain_mlm (Trainer + DataCollatorForLanguageModeling, mlm_probability=0.15)",
        "checkpoint": output_dir,
        "wall_time_s": time.time() - start,
        "final_loss": _series(trainer.state.log_history, "loss")[-1][1],
        "loss_curve": _series(trainer.state.log_history, "loss"),
        "train_runtime": result.metrics.get("train_runtime"),
    }


def save_random_init(args: StudyArguments, tokenizer_dir: str, output_dir: str, seed: int) -> str:
    """A randomly initialised `Data2VecTextModel` of the study's backbone (seeded), saved with the tokenizer."""
    import torch
    from transformers import AutoTokenizer, Data2VecTextModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    Data2VecTextModel(study_backbone_config(args.model_size, tokenizer)).save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


# --------------------------------------------------------------------------------------------------------------------
# Fine-tuning
# --------------------------------------------------------------------------------------------------------------------


def finetune_glue(args: StudyArguments, checkpoint: str, task: str, seed: int, output_dir: str) -> dict:
    """Fine-tunes `checkpoint` on SST-2 or STS-B with `examples/run_glue.py` (local GLUE TSV files)."""
    run_glue = _load_example("run_glue")
    glue_dir = Path(args.data_dir) / "glue" / task
    eval_steps = max(1, args.finetune_steps // max(1, args.eval_points))
    argv = _cli(
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
        **_common_training_kwargs(),
    )
    start = time.time()
    metrics = run_glue.main(argv)
    history = _read_log_history(output_dir)
    if task == "stsb":
        scores = {"pearson": metrics["eval_pearson"], "spearmanr": metrics["eval_spearmanr"]}
        scores["corr"] = (scores["pearson"] + scores["spearmanr"]) / 2
        curve = [
            [s, (p + r) / 2]
            for (s, p), (_, r) in zip(_series(history, "eval_pearson"), _series(history, "eval_spearmanr"))
        ]
    else:
        scores = {"accuracy": metrics["eval_accuracy"]}
        curve = _series(history, "eval_accuracy")
    return {
        "scores": {k: 100 * float(v) for k, v in scores.items()},
        "eval_curve": [[s, 100 * v] for s, v in curve],
        "loss_curve": _series(history, "loss"),
        "wall_time_s": time.time() - start,
        "command": "python examples/run_glue.py " + shlex.join(argv),
    }


def finetune_xquad(args: StudyArguments, checkpoint: str, seed: int, output_dir: str) -> dict:
    """
    Fine-tunes `checkpoint` on the English questions of half of the XQuAD articles and evaluates the other half in
    all 12 languages (`examples/run_qa.py --xquad_dir`); the article split follows the seed.
    """
    run_qa = _load_example("run_qa")
    argv = _cli(
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
        **_common_training_kwargs(),
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
        "loss_curve": _series(_read_log_history(output_dir), "loss"),
        "wall_time_s": time.time() - start,
        "command": "python examples/run_qa.py " + shlex.join(argv),
    }


# --------------------------------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------------------------------


def feature_spread(checkpoint: str, texts: list[str], max_length: int = 64) -> float:
    """
    Mean over features of the standard deviation, across all tokens of `texts`, of the last-layer outputs. Near 0
    when every token gets nearly the same vector: a collapsed representation, from which a short fine-tuning run
    tends to stay at the majority class.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    model, tokenizer = AutoModel.from_pretrained(checkpoint).eval(), AutoTokenizer.from_pretrained(checkpoint)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    return float(hidden[batch["attention_mask"].bool()].std(0).mean())


def unigram_entropy(corpus_file: str | os.PathLike, tokenizer_dir: str | os.PathLike) -> float:
    """Entropy (nats) of the token frequencies of the corpus: the MLM loss of a model that ignores the context."""
    from transformers import AutoTokenizer

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


# --------------------------------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------------------------------


def _stats(values: list[float]) -> dict[str, Any]:
    values = [float(v) for v in values]
    return {
        "mean": float(np.mean(values)),
        "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "n": len(values),
        "values": values,
    }


def summarize_runs(runs: list[dict]) -> dict[str, dict[str, dict]]:
    """
    `{arm: {"<task>/<score>": stats}}` over seeds, plus `"average"`: per seed, the unweighted mean of each text
    task's main score (SST-2 accuracy, STS-B (Pearson + Spearman) / 2, XQuAD-en F1) over the text tasks that ran.
    """
    summary: dict[str, dict[str, dict]] = {}
    by_arm: dict[str, dict[str, dict[int, dict]]] = {}
    for run in runs:
        by_arm.setdefault(run["arm"], {}).setdefault(run["task"], {})[run["seed"]] = run["scores"]
    for arm, tasks in by_arm.items():
        out = summary.setdefault(arm, {})
        for task, per_seed in tasks.items():
            for key in next(iter(per_seed.values())):
                out[f"{task}/{key}"] = _stats([scores[key] for scores in per_seed.values()])
        text = {task: per_seed for task, per_seed in tasks.items() if task in TEXT_TASKS}
        seeds = sorted(set.intersection(*(set(per_seed) for per_seed in text.values()))) if text else []
        if seeds:
            averages = [np.mean([text[task][seed][TASK_SCORES[task][0]] for task in text]) for seed in seeds]
            out["average"] = _stats(averages)
    return summary


# The report and model-card functions live in d2v_hf.study_report (which imports this module's constants); they
# stay importable from here.
def __getattr__(name: str):
    from . import study_report

    if name in getattr(study_report, "__all__", ()):
        return getattr(study_report, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------------------------------------
# The whole study
# --------------------------------------------------------------------------------------------------------------------


# Arguments that change each pretrained checkpoint (the rest only changes fine-tuning).
_TEXT_PRETRAINING_FIELDS = (
    "corpus_lines",
    "tokenizer_vocab_size",
    "max_seq_length",
    "pretrain_steps",
    "pretrain_batch_size",
    "pretrain_learning_rate",
    "pretrain_warmup_steps",
)
_PRETRAINING_FIELDS = {
    "data2vec": _TEXT_PRETRAINING_FIELDS,
    "mlm": _TEXT_PRETRAINING_FIELDS,
    "data2vec_vision": ("vision_pretrain_steps", "vision_batch_size", "vision_pretrain_learning_rate"),
    "data2vec_audio": (
        "audio_pretrain_steps",
        "audio_batch_size",
        "audio_pretrain_learning_rate",
        "audio_max_seconds",
    ),
}


def _pretraining_key(args: StudyArguments, run: str) -> dict:
    return {k: getattr(args, k) for k in ("data_dir", "output_dir", "model_size") + _PRETRAINING_FIELDS[run]}


def _run_settings(config: dict) -> dict:
    selection = {"tasks", "arms", "seeds", "docs_dir", "model_cards_dir", "push_to_hub", "hub_org", "workers"}
    return {k: v for k, v in config.items() if k not in selection}


def _data2vec_recipe(out: Path) -> dict:
    path = out / "pretrain" / "data2vec" / "config.json"
    if not path.is_file():
        return {}
    config = json.loads(path.read_text())
    keys = ("average_top_k_layers", "ema_decay", "ema_end_decay", "ema_anneal_end_step", "mask_prob")
    return {k: config.get(k) for k in keys + ("text_mask_strategy",)}


def _call(target: str, kwargs: dict, threads: int | None):
    """Runs `module:function(**kwargs)` of d2v_hf (in a worker process, or in this one)."""
    import importlib

    import torch

    if threads:
        torch.set_num_threads(threads)
    module, function = target.split(":")
    return getattr(importlib.import_module(f"d2v_hf.{module}"), function)(**kwargs)


def run_jobs(jobs: list[tuple[Any, str, dict]], workers: int, threads: int | None, on_done) -> None:
    """
    Runs `jobs` (`(key, "module:function", kwargs)`) with `workers` processes (spawned, `threads` torch threads each;
    in this process when `workers == 1`), calling `on_done(key, result)` here as each one finishes, so finished
    results are saved even if a later job fails. On a 2-core CPU, two 1-thread runs side by side take about half
    the wall time of running them one after the other at 2 threads.
    """
    if workers <= 1 or len(jobs) <= 1:
        for key, target, kwargs in jobs:
            on_done(key, _call(target, kwargs, threads))
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {pool.submit(_call, target, kwargs, threads): key for key, target, kwargs in jobs}
        for future in as_completed(futures):
            on_done(futures[future], future.result())


# The slowest first, so that two workers finish together.
_JOB_ORDER = {"xquad": 0, "stsb": 1, "spoken_digits": 2, "fashion_mnist": 3, "sst2": 4}


def _check_study_inputs(args: StudyArguments) -> None:
    """Missing data or tools fail before anything runs."""
    from .finetuning_vision_audio import espeak_ng_available

    data = Path(args.data_dir)
    needed = {
        "sst2": data / "glue" / "sst2",
        "stsb": data / "glue" / "stsb",
        "xquad": data / "xquad",
        "fashion_mnist": data / "vision" / "fashion-mnist",
        "spoken_digits": data / "speech",
    }
    if set(args.task_list) & set(TEXT_TASKS):
        needed["corpus"] = data / "corpus" / "gcide_en.txt.gz"
    missing = [str(path) for task, path in needed.items() if (task in args.task_list or task == "corpus")]
    missing = [path for path in missing if not Path(path).exists()]
    if missing:
        raise ValueError(f"--data_dir {args.data_dir}: missing {missing} (see ../shared/data/README.md).")
    if "spoken_digits" in args.task_list and not espeak_ng_available():
        raise ValueError(
            "The spoken_digits task synthesizes its digits with espeak-ng, which is not installed (Debian/Ubuntu: "
            "apt-get install espeak-ng); install it or leave spoken_digits out of --tasks."
        )


def run_study(args: StudyArguments, command: str | None = None) -> dict:
    """
    Runs the study end to end (pretraining, fine-tuning over seeds, report, model cards) and returns the raw
    results. Finished pretraining and fine-tuning runs are kept in `output_dir/partial_results.json`, so an
    interrupted study resumes where it stopped (with the same arguments).
    """
    import torch

    from . import study_vision_audio as sva

    _check_study_inputs(args)
    start = time.time()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    partial_path = out / "partial_results.json"
    partial = json.loads(partial_path.read_text()) if partial_path.is_file() else {}
    # A finished pretraining run is kept while its own settings are unchanged; finished fine-tuning runs (keyed by
    # arm, task and seed) are kept when only the selection of arms, tasks or seeds (or where the report goes) changed.
    partial["pretraining"] = {
        run: info
        for run, info in (partial.get("pretraining") or {}).items()
        if run in _PRETRAINING_FIELDS and info.get("key") == _pretraining_key(args, run)
    }
    if _run_settings(partial.get("config") or {}) != _run_settings(args.to_dict()):
        partial["runs"] = []
    partial["config"] = args.to_dict()
    # wall clock spent by earlier, interrupted invocations on the runs that are kept
    elapsed_before = partial.get("elapsed_s", 0.0) if partial.get("runs") or partial["pretraining"] else 0.0

    def save_partial():
        partial["elapsed_s"] = elapsed_before + time.time() - start
        partial_path.write_text(json.dumps(partial, indent=1), encoding="utf-8")

    text_tasks = [t for t in args.task_list if t in TEXT_TASKS]
    corpus_file, tokenizer_dir = str(out / "corpus.txt"), str(out / "tokenizer")
    corpus, backbone_text = partial.get("corpus"), None
    if text_tasks:
        if corpus is None or not Path(tokenizer_dir).is_dir():
            corpus = prepare_corpus(Path(args.data_dir) / "corpus" / "gcide_en.txt.gz", corpus_file, args.corpus_lines)
            train_study_tokenizer(corpus_file, tokenizer_dir, args.tokenizer_vocab_size)
            partial["corpus"] = corpus
        from transformers import AutoTokenizer

        backbone = study_backbone_config(args.model_size, AutoTokenizer.from_pretrained(tokenizer_dir))
        backbone_text = (
            f"{backbone.num_hidden_layers} layers x {backbone.hidden_size} hidden, {backbone.num_attention_heads} "
            f"heads, FFN {backbone.intermediate_size}, vocabulary {backbone.vocab_size}"
        )
    digits = sva.prepare_spoken_digits(args, out / "speech") if "spoken_digits" in args.task_list else None

    # 1. Pretraining runs (side by side with --workers)
    text_kwargs = dict(args=args, corpus_file=corpus_file, tokenizer_dir=tokenizer_dir)
    modality_kwargs = {
        "fashion_mnist": ("data2vec_vision", dict(modality="vision", train_path=str(sva.fashion_mnist_dir(args)))),
        "spoken_digits": ("data2vec_audio", dict(modality="audio", train_path=digits and digits["corpus"])),
    }
    wanted_pretraining = []
    if text_tasks:
        wanted_pretraining += [
            ("data2vec", "study:pretrain_data2vec", text_kwargs),
            ("mlm", "study:pretrain_mlm", text_kwargs),
        ]
        wanted_pretraining = [job for job in wanted_pretraining if job[0] in args.arm_list]
    if "data2vec" in args.arm_list:
        for task, (run, kwargs) in modality_kwargs.items():
            if task in args.task_list:
                wanted_pretraining.append((run, "study_vision_audio:pretrain_modality", dict(args=args, **kwargs)))
    jobs = [
        (run, target, {**kwargs, "output_dir": str(out / "pretrain" / run)})
        for run, target, kwargs in wanted_pretraining
        if run not in partial["pretraining"]
    ]

    def pretraining_done(run, result):
        partial["pretraining"][run] = {**result, "key": _pretraining_key(args, run)}
        save_partial()
        logger.warning(f"    pretraining {run}: final loss {result['final_loss']} ({result['wall_time_s']:.0f}s)")

    logger.warning(f"*** Pretraining: {[job[0] for job in jobs] or 'nothing left to run'} ***")
    run_jobs(jobs, args.workers, args.torch_threads, pretraining_done)

    # 2. The checkpoints each arm fine-tunes
    def checkpoint_for(arm: str, task: str, seed: int) -> str:
        if task in TEXT_TASKS:
            if arm != "random":
                return partial["pretraining"][arm]["checkpoint"]
            path = str(out / "random_init" / f"seed{seed}")
            return path if Path(path).is_dir() else save_random_init(args, tokenizer_dir, path, seed)
        run, _ = modality_kwargs[task]
        modality = sva.MODALITY_TASKS[task]
        if arm == "data2vec":
            source = partial["pretraining"][run]["checkpoint"]
            return sva.mean_pooling_checkpoint(args, modality, source, str(out / "checkpoints" / run), 0)
        path = str(out / "checkpoints" / f"random_{modality}_seed{seed}")
        return sva.mean_pooling_checkpoint(args, modality, None, path, seed)

    # 3. Fine-tuning runs (and probes), every arm x task x seed
    def wanted_run(arm, task):
        return task in TEXT_TASKS or arm in ("data2vec", "random")

    wanted = {(a, t, s) for a in args.arm_list for t in args.task_list for s in args.seed_list if wanted_run(a, t)}
    done = {(r["arm"], r["task"], r["seed"]) for r in partial["runs"]}
    jobs = []
    for arm, task, seed in sorted(wanted - done, key=lambda k: (_JOB_ORDER[k[1]], k[2], k[0])):
        run_dir = str(out / "finetune" / f"{arm}-{task}-seed{seed}")
        kwargs = dict(args=args, checkpoint=checkpoint_for(arm, task, seed), seed=seed, output_dir=run_dir)
        if task == "xquad":
            jobs.append(((arm, task, seed), "study:finetune_xquad", kwargs))
        elif task in TEXT_TASKS:
            jobs.append(((arm, task, seed), "study:finetune_glue", dict(kwargs, task=task)))
        else:
            kwargs.update(task=task, arm=arm, paths=digits)
            jobs.append(((arm, task, seed), "study_vision_audio:run_modality_task", kwargs))

    def finetuning_done(key, run):
        arm, task, seed = key
        partial["runs"].append({"arm": arm, "task": task, "seed": seed, **run})
        save_partial()
        logger.warning(f"    {arm} {task} seed {seed}: {run['scores']} ({run['wall_time_s']:.0f}s)")

    logger.warning(f"*** Fine-tuning: {len(jobs)} runs with {args.workers} worker(s) ***")
    run_jobs(jobs, args.workers, args.torch_threads, finetuning_done)

    checkpoints = {
        arm: partial["pretraining"][arm]["checkpoint"] for arm in ("data2vec", "mlm") if arm in partial["pretraining"]
    }
    if "random" in args.arm_list and text_tasks:
        checkpoints["random"] = checkpoint_for("random", text_tasks[0], args.seed_list[0])
    for task in args.task_list:
        if task in MODALITY_TASKS:
            modality = sva.MODALITY_TASKS[task]
            for arm in ("data2vec", "random"):
                if arm in args.arm_list:
                    checkpoints[f"{arm}_{modality}"] = checkpoint_for(arm, task, args.seed_list[0])

    runs = [r for r in partial["runs"] if (r["arm"], r["task"], r["seed"]) in wanted]
    text_checkpoints = {arm: checkpoints[arm] for arm in ARMS if arm in checkpoints}
    diagnostics = text_diagnostics(args, text_checkpoints, corpus_file, tokenizer_dir) if text_checkpoints else {}
    config = {**args.to_dict(), "task_list": args.task_list, "arm_list": args.arm_list, "seed_list": args.seed_list}
    results = {
        "command": command or "python examples/study.py",
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_time_s": elapsed_before + time.time() - start,
        "runs_time_s": sum(r["wall_time_s"] for r in runs)
        + sum(p["wall_time_s"] for p in partial["pretraining"].values()),
        "environment": environment_info(),
        "config": config,
        "corpus": corpus,
        "backbone": backbone_text,
        "modality_backbones": {
            sva.MODALITY_TASKS[t]: sva.describe_backbone(args, sva.MODALITY_TASKS[t])
            for t in args.task_list
            if t in MODALITY_TASKS
        },
        "data2vec_top_k": _data2vec_recipe(out).get("average_top_k_layers"),
        "data2vec_recipe": _data2vec_recipe(out),
        "checkpoints": checkpoints,
        "pretraining": partial["pretraining"],
        "diagnostics": diagnostics,
        "runs": runs,
    }
    results["summary"] = summarize_runs(results["runs"])
    from .study_report import discuss_results, push_study_models, write_study_model_cards, write_study_report

    write_study_report(results, args.docs_dir, analysis=discuss_results(results))
    write_study_model_cards(results, args.model_cards_dir)
    save_partial()  # the wall clock so far, for a later call that only rewrites the report
    if args.push_to_hub:
        results["pushed"] = push_study_models(results, args.hub_org, token=args.hub_token)
    return results


__all__ = [
    "ARMS",
    "StudyArguments",
    "environment_info",
    "feature_spread",
    "finetune_glue",
    "finetune_xquad",
    "prepare_corpus",
    "pretrain_data2vec",
    "pretrain_mlm",
    "run_jobs",
    "run_study",
    "save_random_init",
    "study_backbone_config",
    "summarize_runs",
    "text_diagnostics",
    "train_study_tokenizer",
    "unigram_entropy",
]
