"""
Checkpoints that appear whole or not at all, and "resume from the last checkpoint" that picks the last complete one.

A run killed while `checkpoint-N` is being written would leave a folder with the weights but no optimizer, scheduler,
RNG state or `trainer_state.json`, which `transformers.trainer_utils.get_last_checkpoint` would then pick. Here every
checkpoint is written into a hidden staging folder of the output directory and renamed to `checkpoint-N` once all
its files (from every process) are there: a rename within one file system is atomic, so a `checkpoint-N` folder is
always complete.
"""

import json
import os
import re
import shutil
from pathlib import Path

from accelerate.utils.constants import FSDP_MODEL_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from ..atomic_io import STAGING_PREFIX


_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
# What `trainer.train(resume_from_checkpoint=...)` is given to mean "the last checkpoint of the output directory"
LAST = ("last", "latest", "true")


def is_complete_checkpoint(folder: str | os.PathLike) -> bool:
    """
    A Trainer checkpoint with its weights (whole, or FSDP's sharded `pytorch_model_fsdp_0/` folder) and a readable
    `trainer_state.json` (written last by the Trainer).
    """
    folder = Path(folder)
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    whole = any((folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json"))
    return whole or (folder / f"{FSDP_MODEL_NAME}_0" / ".metadata").is_file()


def last_complete_checkpoint(run_dir: str | os.PathLike) -> str | None:
    """The `checkpoint-N` folder of `run_dir` with the largest N that is complete, or `None`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    steps = sorted(
        (int(match.group(1)), path)
        for path in run_dir.iterdir()
        if path.is_dir() and (match := _CHECKPOINT_NAME.match(path.name))
    )
    return next((str(path) for _, path in reversed(steps) if is_complete_checkpoint(path)), None)


def resolve_resume_checkpoint(value: str | bool | None, output_dir: str | os.PathLike) -> str | None:
    """
    What `--resume_from_checkpoint` names: `last` (or `true`) means the last complete checkpoint of `output_dir`, a
    run folder (one holding `checkpoint-N` folders) means its last complete checkpoint, anything else is a
    checkpoint folder. Raises a `ValueError` when no complete checkpoint is found.
    """
    if value is None or value is False:
        return None
    text = str(value)
    if text.lower() in LAST:
        folder = output_dir
    elif Path(text).is_dir() and any(_CHECKPOINT_NAME.match(path.name) for path in Path(text).iterdir()):
        folder = text  # a run folder
    else:
        return text
    found = last_complete_checkpoint(folder)
    if found is None:
        raise ValueError(f"--resume_from_checkpoint {value}: no complete checkpoint-N folder in {folder}.")
    return found


class AtomicCheckpointMixin:
    """
    A [`~transformers.Trainer`] mixin: each checkpoint is written into `output_dir/.incomplete-checkpoint-N/` by
    every process, then renamed to `checkpoint-N` by the main process, and only then are old checkpoints rotated.
    The final `save_model()` writes into a staging folder too and then moves each file into place, so no file of
    the saved model is ever half-written.
    """

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if _internal_call:  # inside _save_checkpoint: already staged
            return super().save_model(output_dir, _internal_call)
        target = output_dir or self.args.output_dir
        staging = os.path.join(target, STAGING_PREFIX + "model")
        super().save_model(staging, _internal_call=True)
        self.accelerator.wait_for_everyone()
        if self.args.should_save and os.path.isdir(staging):
            for name in os.listdir(staging):
                destination = os.path.join(target, name)
                if os.path.isdir(destination):
                    shutil.rmtree(destination)
                os.replace(os.path.join(staging, name), destination)
            shutil.rmtree(staging)
        self.accelerator.wait_for_everyone()
        if self.args.push_to_hub:  # as Trainer.save_model, once the files are in place
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def _get_output_dir(self, trial) -> str:
        staging = getattr(self, "_checkpoint_staging", None)
        return staging if staging is not None else super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = super()._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = os.path.join(run_dir, STAGING_PREFIX + name)
        if self.args.should_save and os.path.exists(staging):
            shutil.rmtree(staging)  # what a killed earlier save of this step left behind
        self.accelerator.wait_for_everyone()
        limit, self.args.save_total_limit = self.args.save_total_limit, None  # rotation waits for the rename
        self._checkpoint_staging = staging
        try:
            super()._save_checkpoint(model, trial)  # writes staging/checkpoint-N
        finally:
            self._checkpoint_staging = None
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()  # every process has written its files (RNG states, shards)
        final = os.path.join(run_dir, name)
        if self.args.should_save:
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(os.path.join(staging, name), final)
            shutil.rmtree(staging)
            if self.state.best_model_checkpoint and self.state.best_model_checkpoint.startswith(staging):
                self.state.best_model_checkpoint = final
            rotate_checkpoints(run_dir, limit, self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()


__all__ = [
    "AtomicCheckpointMixin",
    "is_complete_checkpoint",
    "last_complete_checkpoint",
    "resolve_resume_checkpoint",
]
