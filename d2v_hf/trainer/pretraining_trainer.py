"""[`~transformers.Trainer`] for data2vec pretraining: EMA teacher steps, exact loss normalisation, collapse guard."""

import hashlib
import os

import torch
from safetensors.torch import load_file, save_file
from torch.distributed.tensor import DTensor
from transformers import Trainer, TrainerCallback

from ..ema import gathered_parameters
from ..modelcard import KeepModelCardMixin
from ..modeling_data2vec_pretraining import Data2VecForPretraining
from .checkpointing import AtomicCheckpointMixin
from .parallelism import check_parallelism, parallelism_name
from .pretraining_config import Data2VecPretrainingArguments


# the fp32 EMA shadow of a low-precision teacher, saved in each checkpoint next to the optimizer state
EMA_FP32_NAME = "ema_fp32.safetensors"


class Data2VecCollapseError(RuntimeError):
    """Raised when the target or prediction std falls under its threshold: the representation has collapsed."""


class Data2VecNonFiniteLossError(FloatingPointError):
    """Raised when a loss is NaN or inf, before that step's optimizer and EMA updates can spread it."""


class EMATeacherCallback(TrainerCallback):
    """
    Steps the teacher once per optimizer step. `on_step_end` fires only after an optimizer step, so gradient
    accumulation does not step it per micro-batch (the data2vec 1.0 code does; data2vec 2.0 and the paper do not).
    The decay follows the model config's linear schedule at the model's own EMA step count, which is saved with the
    weights, so a resumed run continues the schedule where it stopped.
    """

    def __init__(self, trainer: "Data2VecPretrainingTrainer"):
        self.trainer = trainer
        self.last_decay = None

    def on_step_end(self, args, state, control, **kwargs):
        model = self.trainer.accelerator.unwrap_model(self.trainer.model)
        self.last_decay = model.ema_step()
        return control


class Data2VecPretrainingTrainer(AtomicCheckpointMixin, KeepModelCardMixin, Trainer):
    r"""
    [`~transformers.Trainer`] for [`Data2VecForPretraining`].

    - The teacher takes one EMA step per optimizer step ([`EMATeacherCallback`]).
    - The loss of an optimizer step is the sum of the per-position losses over all masked positions of all
      micro-batches on all processes, divided by their total count: exactly the loss of one big batch, as fairseq's
      `sample_size` normalisation.
    - Logs `loss`, `target_var`, `prediction_var`, `ema_decay` and the learning rate, and `eval_loss` on the
      validation split.
    - Checkpoints appear whole or not at all ([`~d2v_hf.trainer.checkpointing.AtomicCheckpointMixin`]); a NaN / inf
      loss stops training before that step's optimizer and EMA updates ([`Data2VecNonFiniteLossError`]).
    - The collapse guard of fairseq: a [`Data2VecCollapseError`] once `target_var < min_target_var` or
      `prediction_var < min_pred_var` after `args.collapse_check_after_steps` steps (thresholds: the arguments', or
      the recipe's in the model config).
    - Weight decay on the parameters the recipe decays (`args.weight_decay_exempt`).

    Example:

    ```python
    >>> trainer = Data2VecPretrainingTrainer(
    ...     model=model, args=Data2VecPretrainingArguments("out"), data_collator=data_collator_for(config, tokenizer),
    ...     train_dataset=train_dataset,
    ... )
    >>> trainer.train()
    ```
    """

    # compute_loss already normalises over the whole optimizer step
    loss_is_scaled_for_ga = True
    _tag_names = ["d2v_hf", "data2vec", "self-supervised-learning"]

    def __init__(self, model: Data2VecForPretraining = None, args: Data2VecPretrainingArguments = None, **kwargs):
        if not isinstance(model, Data2VecForPretraining):
            raise ValueError(
                f"Data2VecPretrainingTrainer trains a Data2VecForPretraining, got {type(model).__name__}."
            )
        if args is not None and not isinstance(args, Data2VecPretrainingArguments):
            raise ValueError("Pass Data2VecPretrainingArguments (collapse guard and changed defaults).")
        super().__init__(model=model, args=args, **kwargs)
        # refuse, before any step, a distributed setup the EMA teacher cannot run under
        state = self.accelerator.state
        fsdp, deepspeed = (state.fsdp_plugin if self.is_fsdp_enabled else None), state.deepspeed_plugin
        check_parallelism(
            parallelism_name(fsdp, deepspeed),
            model.config.teacher_dtype,
            deepspeed.deepspeed_config if deepspeed else None,
        )
        self.ema_callback = EMATeacherCallback(self)
        self.add_callback(self.ema_callback)
        # running sums of (target_var, prediction_var, count) since the last log
        self._monitor = torch.zeros(3, device=self.args.device)

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        if self.args.torch_compile_regions:
            # the Trainer builds accelerate's TorchDynamoPlugin without this field; accelerate reads it at `prepare`
            self.accelerator.state.dynamo_plugin.use_regional_compilation = True

    def train(self, *args, **kwargs):
        output = super().train(*args, **kwargs)
        if self.args.world_size > 1:
            output.metrics["teacher_ranks_identical"] = float(self._teachers_identical_across_processes())
        return output

    def _teachers_identical_across_processes(self) -> bool:
        """Every process steps its own teacher copy: check that they are bitwise identical."""
        teacher = self.accelerator.unwrap_model(self.model).teacher
        digest = hashlib.blake2b(digest_size=7)
        with gathered_parameters([teacher]):  # ZeRO-3: whole tensors on every process
            for tensor in teacher.state_dict().values():
                if isinstance(tensor, DTensor):  # FSDP: the whole tensor (every process gathers it, in the same order)
                    tensor = tensor.full_tensor()
                digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        mine = torch.tensor([int.from_bytes(digest.digest(), "little")], device=self.args.device)
        digests = self.accelerator.gather(mine)
        if not bool((digests == digests[0]).all()):
            raise RuntimeError(
                f"The teachers of the {len(digests)} processes differ after training: {digests.tolist()}"
            )
        return True

    def student_state_dict(self) -> dict[str, torch.Tensor]:
        """
        The student's whole weights, gathered under FSDP and DeepSpeed ZeRO-3 by accelerate (`get_state_dict`), for
        [`Data2VecForPretraining.export_student`]. A collective: every process calls it; the main process gets them.
        """
        state = self.accelerator.get_state_dict(self.model_wrapped)  # the DeepSpeed engine under DeepSpeed
        prefix = "student."
        return {name[len(prefix) :]: tensor for name, tensor in (state or {}).items() if name.startswith(prefix)}

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        """Masked positions of the optimizer step: all micro-batches, summed over all processes."""
        if not batch_samples or "mask" not in batch_samples[0]:
            return None
        count = sum(batch["mask"].sum() for batch in batch_samples).to(device)
        if self.args.world_size > 1:
            count = self.accelerator.gather(count.reshape(1)).sum()
        return count

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        where = f"optimizer step {self.state.global_step + 1}" if model.training else "evaluation"
        try:
            outputs = model(**inputs)
        except ValueError as err:  # bad input: say when it came, the model says what it was
            raise ValueError(f"At {where}: {err}") from err
        loss = outputs.loss
        if model.training:
            self._check_finite(loss, where)
        if num_items_in_batch is not None and model.training:
            # loss is a per-position mean; DDP averages gradients over processes, hence the world size
            loss = loss * outputs.num_masked / num_items_in_batch * self.args.world_size
            self._monitor += torch.stack(
                [outputs.target_var.detach(), outputs.prediction_var.detach(), torch.ones_like(outputs.target_var)]
            ).to(self._monitor.device)
        return (loss, outputs) if return_outputs else loss

    def _check_finite(self, loss: torch.Tensor, where: str) -> None:
        """Stops on a NaN / inf loss on any process, before the backward pass, the optimizer step and the EMA step."""
        bad = (~torch.isfinite(loss.detach())).float().reshape(1)
        if self.args.world_size > 1:  # every process stops together (one raising alone would hang the others)
            bad = self.accelerator.reduce(bad, reduction="sum")
        if bad.item() > 0:
            raise Data2VecNonFiniteLossError(
                f"Non-finite loss ({loss.item()}) at {where}. Training stops before this step's optimizer and EMA "
                "updates, so the student, the teacher and the checkpoints already saved stay finite. Check the data "
                "of this step, lower the learning rate or lengthen the warmup, then resume from the last checkpoint."
            )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            logs.update(self._monitor_logs())
        super().log(logs, start_time)

    def _monitor_logs(self) -> dict[str, float]:
        monitor = self._monitor.clone()
        self._monitor.zero_()
        if self.args.world_size > 1:
            monitor = self.accelerator.reduce(monitor, reduction="sum")
        logs = {}
        if monitor[2] > 0:
            logs["target_var"] = round((monitor[0] / monitor[2]).item(), 5)
            logs["prediction_var"] = round((monitor[1] / monitor[2]).item(), 5)
            self._check_collapse(logs["target_var"], logs["prediction_var"])
        if self.ema_callback.last_decay is not None:
            logs["ema_decay"] = self.ema_callback.last_decay
        return logs

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        # the fp32 shadow of a low-precision teacher belongs to the resumable state, like the optimizer's moments
        super()._save_optimizer_and_scheduler(output_dir)
        state = self.accelerator.unwrap_model(self.model).ema_fp32_state()
        if state and self.args.should_save:
            save_file(
                {name: tensor.contiguous() for name, tensor in state.items()}, os.path.join(output_dir, EMA_FP32_NAME)
            )

    def _load_optimizer_and_scheduler(self, checkpoint) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, EMA_FP32_NAME) if checkpoint else None
        if path and os.path.isfile(path):
            self.accelerator.unwrap_model(self.model).load_ema_fp32_state(load_file(path))

    def get_decay_parameter_names(self, model) -> list[str]:
        """The parameters that get weight decay: all (data2vec 1.0 text and audio), all but 1-D parameters and biases
        (2.0, vision 1.0), or the Trainer's choice (`args.weight_decay_exempt`)."""
        config = self.accelerator.unwrap_model(self.model).config
        exempt = self.args.weight_decay_exempt
        if exempt is None:
            exempt = "none" if config.mode == "data2vec" and config.modality in ("text", "audio") else "1d_and_bias"
        if exempt == "transformers":
            return super().get_decay_parameter_names(model)
        names = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
        if exempt == "none":
            return names
        parameters = dict(model.named_parameters())
        return [name for name in names if parameters[name].ndim > 1 and not name.endswith(".bias")]

    def collapse_thresholds(self) -> tuple[float, float]:
        """`(min_target_var, min_pred_var)`: the arguments' when given, else the model config's (the recipe's)."""
        config = self.accelerator.unwrap_model(self.model).config
        target = self.args.min_target_var if self.args.min_target_var is not None else config.min_target_var
        prediction = self.args.min_pred_var if self.args.min_pred_var is not None else config.min_pred_var
        return target, prediction

    def _check_collapse(self, target_var: float, prediction_var: float) -> None:
        args, step = self.args, self.state.global_step
        if step < args.collapse_check_after_steps:
            return
        min_target_var, min_pred_var = self.collapse_thresholds()
        if target_var < min_target_var:
            raise Data2VecCollapseError(
                f"Representation collapse at step {step}: target_var={target_var:.5f} < min_target_var="
                f"{min_target_var}. Lower the learning rate, lengthen the warmup or raise the EMA decay "
                "(see the data2vec paper, Sec. 6); --min_target_var 0 disables this check."
            )
        if prediction_var < min_pred_var:
            raise Data2VecCollapseError(
                f"Representation collapse at step {step}: prediction_var={prediction_var:.5f} < min_pred_var="
                f"{min_pred_var}. --min_pred_var 0 disables this check."
            )


__all__ = ["Data2VecCollapseError", "Data2VecNonFiniteLossError", "Data2VecPretrainingTrainer", "EMATeacherCallback"]
