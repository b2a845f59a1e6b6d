"""Trainer subclasses for d2v_hf: pretraining and question answering."""

from .pretraining_config import Data2VecPretrainingArguments
from .pretraining_trainer import Data2VecCollapseError, Data2VecPretrainingTrainer, EMATeacherCallback
from .qa_trainer import QuestionAnsweringTrainer


__all__ = [
    "Data2VecCollapseError",
    "Data2VecPretrainingArguments",
    "Data2VecPretrainingTrainer",
    "EMATeacherCallback",
    "QuestionAnsweringTrainer",
]
