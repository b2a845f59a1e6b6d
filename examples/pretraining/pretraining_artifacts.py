"""
What `run_pretraining.py` leaves next to the full pretraining state: the exported student, the model card, the loss
plot (TensorBoard event files come from the Trainer's `report_to`), each written whole or not at all.
"""

import math
import os
import platform
from pathlib import Path

import torch
from huggingface_hub import EvalResult

from d2v_hf import Data2VecForPretraining
from d2v_hf.atomic_io import atomic_write_dir, atomic_write_file
from d2v_hf.configuration_data2vec_pretraining import image_side
from d2v_hf.data import IMAGENET_MEAN, IMAGENET_STD
from d2v_hf.finetuning.checkpoints import make_processor
from d2v_hf.modelcard import build_model_card, save_model_card


# Recipe fields shown on every card, then the ones of each mode and modality.
_RECIPE_FIELDS = (
    "average_top_k_layers",
    "target_feature",
    "instance_norm_target_layer",
    "layer_norm_target_layer",
    "instance_norm_targets",
    "layer_norm_targets",
    "loss_beta",
    "loss_scale",
    "loss_channel_reduction",
    "ema_decay",
    "ema_end_decay",
    "ema_anneal_end_step",
    "teacher_shared_params",
)
_MODE_FIELDS = {
    "data2vec2": ("mode", "clone_batch", "mask_prob", "decoder_layers", "decoder_kernel"),
    "text": ("head_layers", "text_mask_strategy", "mask_prob"),
    "audio": ("head_layers", "mask_prob", "mask_length"),
    "vision": ("head_layers", "num_mask_patches"),
}


def final_metrics(log_history: list[dict]) -> dict:
    """The last logged training loss and stds and the last evaluation loss."""
    out = {}
    for entry in log_history:
        for key in ("loss", "target_var", "prediction_var", "ema_decay", "eval_loss"):
            if key in entry and not (isinstance(entry[key], float) and math.isnan(entry[key])):
                out[key] = entry[key]
    return out


def plot_training_curves(log_history: list[dict], path: str | os.PathLike) -> None:
    """Loss (train and eval) and the collapse monitors (per-channel stds) against the optimizer step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key):
        points = [(e["step"], e[key]) for e in log_history if key in e]
        return zip(*points) if points else ((), ())

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for key, style, label in (("loss", "-", "training loss"), ("eval_loss", "o", "validation loss")):
        steps, values = series(key)
        if steps:  # evaluations are points, not a line: there are few of them
            left.plot(steps, values, style, label=label)
    left.set(xlabel="optimizer step", ylabel="data2vec regression loss", title="Loss")
    for key, label in (("target_var", "teacher targets"), ("prediction_var", "student predictions")):
        steps, values = series(key)
        if steps:
            right.plot(steps, values, label=label)
    right.set(xlabel="optimizer step", ylabel="std over masked positions (channel mean)", title="Collapse monitors")
    for axes in (left, right):
        if axes.lines:  # a run shorter than logging_steps logs nothing to plot
            axes.legend()
    fig.tight_layout()
    atomic_write_file(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


def hardware_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(device)}"
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


def pretraining_model_card(model: Data2VecForPretraining, name: str, data: dict, trainer, tokenizer, notes, license):
    """
    The card of a pretraining run. `data` has `name`, `description`, `hub_dataset` (or None) and `max_seq_length`;
    `notes` lists what the script chose for the user (e.g. the EMA schedule of a short run).
    """
    config, args = model.config, trainer.args
    recipe = {key: getattr(config, key) for key in _RECIPE_FIELDS + _MODE_FIELDS.get(config.mode, ())}
    if config.mode != "data2vec2":
        recipe.update({key: getattr(config, key) for key in _MODE_FIELDS[config.modality]})
    metrics = final_metrics(trainer.state.log_history)
    train_runtime = next((e["train_runtime"] for e in reversed(trainer.state.log_history) if "train_runtime" in e), 0)
    backbone = config.backbone_config
    details = {
        "modality": config.modality,
        "backbone": f"{type(model.student).__name__}, {backbone.num_hidden_layers} layers x {config.hidden_size}",
        "parameters (student)": f"{sum(p.numel() for p in model.student.parameters()):,}",
        "data": data["description"],
        "tokenizer": f"{tokenizer.name_or_path or 'byte-level BPE trained on the data'}, {len(tokenizer):,} tokens"
        if tokenizer is not None
        else None,
        "sequence length (tokens)": data.get("max_seq_length"),
        "optimizer steps": trainer.state.global_step,
        "batch size per device x devices x accumulation": f"{args.per_device_train_batch_size} x {args.world_size} "
        f"x {args.gradient_accumulation_steps}",
        "learning rate": args.learning_rate,
        "training time": f"{train_runtime / 60:.1f} min",
        "hardware": hardware_description(args.device),
        **{f"recipe.{k}": v for k, v in recipe.items()},
        **{f"final {k}": v for k, v in metrics.items()},
        **{f"note {i + 1}": note for i, note in enumerate(notes)},
    }
    index = []
    if "eval_loss" in metrics:
        index.append(
            EvalResult(
                task_type="feature-extraction",
                dataset_type=data.get("hub_dataset") or "local",
                dataset_name=data["name"],
                dataset_split="validation",
                metric_type="loss",
                metric_name="data2vec regression loss",
                metric_value=float(metrics["eval_loss"]),
            )
        )
    usage = (
        "## How to use\n\n"
        f"`student/` holds a plain `{type(model.student).__name__}` checkpoint: load it with `AutoModel` (or the "
        "`feature-extraction` pipeline) or fine-tune it, e.g. `python examples/text-classification/run_glue.py "
        "--model_name_or_path <this folder>/student ...`. It has **no language-model head**: data2vec regresses "
        'representations, not tokens, so `pipeline("fill-mask")` cannot use it. The root folder holds the full '
        "pretraining state (student, EMA teacher, regression head) for `Data2VecForPretraining.from_pretrained` "
        "after `import d2v_hf`; TensorBoard event files are in `runs/`.\n\n![training curves](training_curves.png)"
    )
    return build_model_card(
        name,
        description=f"data2vec {'2.0' if config.mode == 'data2vec2' else '1.0'} pretraining of a {config.modality} "
        "backbone with d2v_hf.",
        datasets=[data["hub_dataset"]] if data.get("hub_dataset") else None,
        training_details=details,
        extra_markdown=usage,
        tags=["data2vec", "self-supervised-learning", config.modality, "d2v_hf"],
        license=license,
        pipeline_tag="feature-extraction",
        model_index=index,
    )


def write_artifacts(trainer, model: Data2VecForPretraining, tokenizer, card, student_state=None) -> dict[str, str]:
    """
    The student (with the tokenizer), the card and the plot, each written whole; returns their paths.
    `student_state`: the student's gathered weights (`trainer.student_state_dict()`), needed when it is sharded.
    """
    output_dir = Path(trainer.args.output_dir)
    paths = {"student": output_dir / "student", "card": output_dir / "README.md"}
    paths["plot"] = output_dir / "training_curves.png"

    def export(folder):
        model.export_student(folder, state_dict=student_state)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        if model.config.modality == "vision":  # the pretraining statistics, for fine-tuning and pipelines
            statistics = {"image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD}
            make_processor("vision", statistics, image_side(model.config.backbone_config)).save_pretrained(folder)

    atomic_write_dir(paths["student"], export)
    plot_training_curves(trainer.state.log_history, paths["plot"])
    save_model_card(card, output_dir)
    return {name: str(path) for name, path in paths.items()}


__all__ = ["final_metrics", "plot_training_curves", "pretraining_model_card", "write_artifacts"]
