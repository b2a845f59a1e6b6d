"""LoRA fine-tuning through peft (per-backbone default target modules, merge into a plain model), and the Trainer
flag that keeps classification losses right under several processes."""

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch


logger = logging.getLogger(__name__)


# LoRA target modules per backbone family: attention projections are where LoRA is usually applied.
_LORA_TARGETS_BY_MODEL_TYPE = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "data2vec-text": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "vit": ["query", "value"],
    "deit": ["query", "value"],
    "beit": ["query", "value"],
    "data2vec-vision": ["query", "value"],
    "wav2vec2": ["q_proj", "v_proj"],
    "data2vec-audio": ["q_proj", "v_proj"],
    "hubert": ["q_proj", "v_proj"],
    "wavlm": ["q_proj", "v_proj"],
}


# Task heads that must be trained in full (and saved) next to the LoRA adapters.
_HEAD_MODULE_NAMES = ("classifier", "qa_outputs", "score", "projector", "lm_head")


def default_lora_target_modules(model_or_config) -> list[str]:
    """
    LoRA target modules for a backbone: `query`/`value` for BERT/RoBERTa/data2vec-text and ViT/data2vec-vision,
    `q_proj`/`v_proj` for wav2vec2/data2vec-audio. Other backbones are inspected for such `nn.Linear` names.
    """
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type in _LORA_TARGETS_BY_MODEL_TYPE:
        return list(_LORA_TARGETS_BY_MODEL_TYPE[model_type])
    if isinstance(model_or_config, torch.nn.Module):
        linear_names = {
            name.rsplit(".", 1)[-1]
            for name, module in model_or_config.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
        for pair in (["query", "value"], ["q_proj", "v_proj"], ["q", "v"], ["query_proj", "value_proj"]):
            if set(pair) <= linear_names:
                return pair
    raise ValueError(
        f"No default LoRA target modules for model_type {model_type!r}; pass --lora_target_modules "
        "(names of the attention nn.Linear layers, e.g. query value)."
    )


def default_modules_to_save(model) -> list[str]:
    """The task head(s) of a model (`classifier`, `qa_outputs`, `score`, `projector`, ...), trained in full."""
    child_names = {name for name, _ in model.named_children()}
    return [name for name in _HEAD_MODULE_NAMES if name in child_names]


def apply_lora(
    model,
    r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.1,
    target_modules: Sequence[str] | None = None,
    modules_to_save: Sequence[str] | None = None,
):
    """
    Wraps `model` with LoRA adapters (peft): only the adapters and the task head (`modules_to_save`) are trainable.

    Args:
        model ([`~transformers.PreTrainedModel`]): the model with its task head.
        r, lora_alpha, lora_dropout: LoRA hyperparameters.
        target_modules (`Sequence[str]`, *optional*): defaults to [`default_lora_target_modules`].
        modules_to_save (`Sequence[str]`, *optional*): defaults to [`default_modules_to_save`].

    Returns:
        `peft.PeftModel`.
    """
    from peft import LoraConfig, get_peft_model

    if r <= 0:
        raise ValueError(f"LoRA rank r must be positive, got {r}.")
    target_modules = list(target_modules) if target_modules else default_lora_target_modules(model)
    module_names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    unknown = [m for m in target_modules if m not in module_names]
    if unknown:
        raise ValueError(
            f"LoRA target module(s) {unknown} not found in {type(model).__name__}; e.g. available linear layer names:"
            f" {sorted(n for n in module_names if n)[:30]}."
        )
    modules_to_save = list(modules_to_save) if modules_to_save is not None else default_modules_to_save(model)
    lora_config = LoraConfig(
        r=r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        modules_to_save=modules_to_save or None,
        bias="none",
    )
    peft_model = get_peft_model(model, lora_config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    logger.info(
        f"LoRA on {target_modules} (r={r}), full training of {modules_to_save}: {trainable:,} trainable parameters of "
        f"{total:,} ({100 * trainable / total:.2f}%)."
    )
    return peft_model


def merge_and_save(model, output_dir: str | os.PathLike, processing_class=None, in_place: bool = False):
    """
    Merges LoRA adapters into the base weights (`merge_and_unload`) and saves the resulting plain transformers model
    with `save_pretrained` (loadable without peft).

    Args:
        model (`peft.PeftModel` or [`~transformers.PreTrainedModel`]): a model without adapters is saved as is.
        output_dir (`str` or `os.PathLike`): where to save.
        processing_class (*optional*): tokenizer/processor saved next to the model.
        in_place (`bool`, *optional*, defaults to `False`): merge `model` itself; by default a copy is merged so
            the adapter model stays usable (e.g. by a Trainer that will still save or push it).

    Returns:
        The merged [`~transformers.PreTrainedModel`].
    """
    from peft import PeftModel

    if isinstance(model, PeftModel):
        merged = (model if in_place else copy.deepcopy(model)).merge_and_unload()
    else:
        merged = model
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(output_dir)
    if processing_class is not None:
        processing_class.save_pretrained(output_dir)
    return merged


def maybe_merge_lora(trainer, model_args, processing_class=None) -> str | None:
    """With `--use_peft` and `--merge_lora`, saves the merged model to `output_dir/merged` on the main process."""
    if not (model_args.use_peft and model_args.merge_lora) or not trainer.is_world_process_zero():
        return None
    merged_dir = os.path.join(trainer.args.output_dir, "merged")
    merge_and_save(trainer.accelerator.unwrap_model(trainer.model), merged_dir, processing_class)
    logger.info(f"Merged LoRA model saved to {merged_dir}")
    return merged_dir


def disable_loss_kwargs(model) -> None:
    """
    Tells [`~transformers.Trainer`] that the model does not take `num_items_in_batch`.

    Trainer (transformers 5.x) assumes that a model whose `forward` takes `**kwargs` normalizes its loss by the
    global `num_items_in_batch`, and then multiplies the loss by the number of processes. Classification heads
    (`...ForSequenceClassification`, audio/image classification) take `**kwargs` but average their loss per batch,
    so under `accelerate launch` with N processes their loss (and gradients) came out N times too large: `eval_loss`
    of a 2-process run was twice the single-process one. `accepts_loss_kwargs = False` is the attribute Trainer
    reads first.
    """
    from peft import PeftModel

    base = model.get_base_model() if isinstance(model, PeftModel) else model
    base.accepts_loss_kwargs = False


__all__ = [
    "apply_lora",
    "default_lora_target_modules",
    "default_modules_to_save",
    "disable_loss_kwargs",
    "maybe_merge_lora",
    "merge_and_save",
]
