"""Training arguments of data2vec pretraining."""

from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..argument_parsing import check_training_arguments


@dataclass
class Data2VecPretrainingArguments(TrainingArguments):
    r"""
    [`~transformers.TrainingArguments`] for [`Data2VecPretrainingTrainer`]. The teacher's EMA schedule is part of the
    model recipe and lives in [`Data2VecPretrainingConfig`] (`ema_decay`, `ema_end_decay`, `ema_anneal_end_step`);
    what is here controls the run.

    Parameters that control the collapse guard:
        min_target_var (`float`, *optional*, defaults to `0.1`):
            Stop with an error when the target std (mean over channels of the per-channel std at masked positions,
            averaged over the logging window and the processes) falls under this value. 0 disables it.
        min_pred_var (`float`, *optional*, defaults to `0.01`):
            The same for the prediction std.
        collapse_check_after_steps (`int`, *optional*, defaults to `5000`):
            The guard is checked at every logging step once `global_step` reaches this value (fairseq: 5000).

    Parameters that control the output directory:
        overwrite_output_dir (`bool`, *optional*, defaults to `False`):
            Allow `output_dir` to hold another run already; without it `run_pretraining.py` refuses to start
            (use `--resume_from_checkpoint` to continue a run).

    Defaults changed from [`~transformers.TrainingArguments`]: `remove_unused_columns=False` (collators need the raw
    columns), `prediction_loss_only=True` (predictions have a different length per batch),
    `report_to="tensorboard"` (event files in `output_dir/runs/`, next to `training_curves.png`; `none` turns it
    off), `logging_steps=10`.
    """

    # Parameters that control the collapse guard
    min_target_var: float = field(default=0.1, metadata={"help": "Stop when the target std falls under this value."})
    min_pred_var: float = field(default=0.01, metadata={"help": "Stop when the prediction std falls under this."})
    collapse_check_after_steps: int = field(
        default=5000, metadata={"help": "Check the collapse guard once this many optimizer steps are done."}
    )
    # Parameters that control the output directory
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow an output_dir that already holds another run."}
    )
    # Changed defaults
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep raw columns for the collator."})
    prediction_loss_only: bool = field(default=True, metadata={"help": "Evaluation reports the loss only."})
    report_to: None | str | list[str] = field(
        default="tensorboard", metadata={"help": "Integrations to report to (tensorboard: output_dir/runs/)."}
    )
    logging_steps: float = field(default=10, metadata={"help": "Log every X updates steps."})

    def __post_init__(self):
        super().__post_init__()
        check_training_arguments(self)
        for name in ("min_target_var", "min_pred_var"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (0 disables the check).")
        if self.collapse_check_after_steps < 0:
            raise ValueError(f"collapse_check_after_steps={self.collapse_check_after_steps} must be >= 0.")


__all__ = ["Data2VecPretrainingArguments"]
