"""Training arguments of data2vec pretraining."""

from dataclasses import dataclass, field

from transformers import TrainingArguments

from ..argument_parsing import check_training_arguments


WEIGHT_DECAY_EXEMPTIONS = ("none", "1d_and_bias", "transformers")


@dataclass
class Data2VecPretrainingArguments(TrainingArguments):
    r"""
    [`~transformers.TrainingArguments`] for [`Data2VecPretrainingTrainer`]. The teacher's EMA schedule is part of the
    model recipe and lives in [`Data2VecPretrainingConfig`] (`ema_decay`, `ema_end_decay`, `ema_anneal_end_step`);
    what is here controls the run.

    Parameters that control the collapse guard:
        min_target_var (`float`, *optional*):
            Stop with an error when the target std (mean over channels of the per-channel std at masked positions,
            averaged over the logging window and the processes) falls under this value. 0 disables it. Default:
            the model config's `min_target_var`, i.e. the recipe's (0.1 for audio, 0 where the released code has no
            guard).
        min_pred_var (`float`, *optional*):
            The same for the prediction std (default: the model config's `min_pred_var`).
        collapse_check_after_steps (`int`, *optional*, defaults to `5000`):
            The guard is checked at every logging step once `global_step` reaches this value (fairseq: 5000).

    Parameters of the optimizer:
        weight_decay_exempt (`str`, *optional*):
            Which parameters get no weight decay: `"none"` (fairseq's data2vec 1.0 text and audio decay every
            parameter), `"1d_and_bias"` (1-D parameters and biases, as data2vec 2.0 and the BEiT code of vision 1.0)
            or `"transformers"` (the Trainer's default: biases and LayerNorm weights). Default: the recipe's.

    Parameters of compilation:
        torch_compile_regions (`bool`, *optional*, defaults to `False`):
            Compile each repeated layer once and reuse its code for the others (accelerate's regional compilation,
            as `ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION=1` turns on) rather than the whole step: a fraction of
            `torch_compile`'s compile time; steps may be slower (no fusion across layers; on CPU the text step took the
            same time, docs/benchmarks.md). Implies `torch_compile`.

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
    min_target_var: float | None = field(
        default=None, metadata={"help": "Stop when the target std falls under this (default: the recipe's)."}
    )
    min_pred_var: float | None = field(
        default=None, metadata={"help": "Stop when the prediction std falls under this (default: the recipe's)."}
    )
    collapse_check_after_steps: int = field(
        default=5000, metadata={"help": "Check the collapse guard once this many optimizer steps are done."}
    )
    weight_decay_exempt: str | None = field(
        default=None,
        metadata={
            "help": "Parameters without weight decay: none (fairseq data2vec 1.0 text/audio decay all), 1d_and_bias "
            "(1-D parameters and biases: data2vec 2.0, BEiT), transformers (the Trainer's: biases, LayerNorms). "
            "Default: the recipe's."
        },
    )
    torch_compile_regions: bool = field(
        default=False,
        metadata={
            "help": "Compile each repeated layer once (accelerate's regional compilation) rather than the whole step: "
            "much less compile time, possibly slower steps. Implies --torch_compile."
        },
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
        if self.torch_compile_regions:
            self.torch_compile = True  # before TrainingArguments picks the backend
        super().__post_init__()
        check_training_arguments(self)
        for name in ("min_target_var", "min_pred_var"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (0 disables the check).")
        if self.weight_decay_exempt not in (None, *WEIGHT_DECAY_EXEMPTIONS):
            raise ValueError(
                f"--weight_decay_exempt {self.weight_decay_exempt!r}; expected one of {WEIGHT_DECAY_EXEMPTIONS}."
            )
        if self.collapse_check_after_steps < 0:
            raise ValueError(f"collapse_check_after_steps={self.collapse_check_after_steps} must be >= 0.")


__all__ = ["Data2VecPretrainingArguments"]
