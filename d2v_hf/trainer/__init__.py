"""The data2vec pretraining Trainer, its arguments and the EMA teacher callback."""

from .pretraining_config import Data2VecPretrainingArguments
from .pretraining_trainer import (
    Data2VecCollapseError,
    Data2VecNonFiniteLossError,
    Data2VecPretrainingTrainer,
    EMATeacherCallback,
)


__all__ = [
    "Data2VecCollapseError",
    "Data2VecNonFiniteLossError",
    "Data2VecPretrainingArguments",
    "Data2VecPretrainingTrainer",
    "EMATeacherCallback",
]
