"""
What the study runs: its arms, tasks and scores, the sizes of its `quick` and `full` modes, and [`StudyArguments`]
(every knob, each field left at `None` taking its mode's value). The rest of the study reads these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


ARMS = ("data2vec", "mlm", "random")


ARM_TITLES = {
    "data2vec": "data2vec 1.0",
    "mlm": "RoBERTa-style MLM",
    "random": "random init",
}


TEXT_TASKS = ("sst2", "stsb", "xquad")


# The image and speech tasks (study_vision_audio): data2vec against random init only (no MLM arm).
MODALITY_TASKS = ("fashion_mnist", "spoken_digits")


TASKS = TEXT_TASKS + MODALITY_TASKS
MODALITY_OF_TASK = {"fashion_mnist": "vision", "spoken_digits": "audio"}
MODALITY_TASK_TITLES = {"fashion_mnist": "Fashion-MNIST", "spoken_digits": "Spoken digits (espeak-ng, unseen voices)"}


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


# Arguments that change each pretrained checkpoint (the rest only changes fine-tuning).
TEXT_PRETRAINING_FIELDS = (
    "corpus_lines",
    "tokenizer_vocab_size",
    "max_seq_length",
    "pretrain_steps",
    "pretrain_batch_size",
    "pretrain_learning_rate",
    "pretrain_warmup_steps",
)


PRETRAINING_FIELDS = {
    "data2vec": TEXT_PRETRAINING_FIELDS,
    "mlm": TEXT_PRETRAINING_FIELDS,
    "data2vec_vision": ("vision_pretrain_steps", "vision_batch_size", "vision_pretrain_learning_rate"),
    "data2vec_audio": (
        "audio_pretrain_steps",
        "audio_batch_size",
        "audio_pretrain_learning_rate",
        "audio_max_seconds",
    ),
}


__all__ = [
    "ARMS",
    "ARM_TITLES",
    "MODALITY_OF_TASK",
    "MODALITY_TASKS",
    "MODALITY_TASK_TITLES",
    "PRETRAINING_FIELDS",
    "PRETRAINING_TITLES",
    "TASKS",
    "TASK_SCORES",
    "TASK_TITLES",
    "TEXT_TASKS",
    "StudyArguments",
]
