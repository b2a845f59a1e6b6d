"""
fairseq data2vec checkpoints into Hugging Face: `python -m d2v_hf.convert_fairseq --checkpoint PATH --output_dir DIR`.

Reads a fairseq data2vec pretraining checkpoint (without fairseq: `fairseq_checkpoint.py`) and writes a
[`Data2VecForPretraining`] folder: the student, the teacher (fairseq's `_ema` state where the checkpoint keeps it,
else a copy of the student), the regression head or the data2vec 2.0 decoder, the EMA step count and a config
derived from the checkpoint's `cfg`, plus `student/`, the plain Transformers backbone for fine-tuning. What each
fairseq model maps to is in `fairseq_converters.py` (one converter per model; `docs/conversion.md` has the tables).
"""

import argparse
import logging
import os
import sys
from dataclasses import dataclass

import torch
from transformers import Wav2Vec2FeatureExtractor

from .atomic_io import atomic_write_dir
from .fairseq_checkpoint import FairseqCheckpoint, FairseqCheckpointError, read_fairseq_checkpoint
from .fairseq_converters import FairseqConverter, KeyRule, find_converter
from .modeling_data2vec_pretraining import Data2VecForPretraining


logger = logging.getLogger(__name__)


def _assign(rules: list[KeyRule], source: dict, target: dict, what: str, path: str) -> set[str]:
    """Copies each rule's tensor from `source` into `target` (split along dim 0 for fused tensors); returns the keys
    of `source` it read. A key the model needs and the checkpoint lacks, or a shape that differs, is an error."""
    used = set()
    for rule in rules:
        if rule.source not in source:
            raise FairseqCheckpointError(f"{path}: {what} has no {rule.source!r}; the checkpoint is incomplete.")
        tensor = source[rule.source]
        parts = tensor.chunk(len(rule.targets)) if len(rule.targets) > 1 else (tensor,)
        for name, part in zip(rule.targets, parts):
            if tuple(part.shape) != tuple(target[name].shape):
                raise FairseqCheckpointError(
                    f"{path}: {what} {rule.source!r} has shape {tuple(tensor.shape)}; {name} needs "
                    f"{tuple(target[name].shape)}."
                )
            target[name] = part.to(target[name].dtype).clone()
        used.add(rule.source)
    return used


@dataclass
class ConvertedModel:
    """What [`convert_checkpoint`] built: the model, its converter, and whether the teacher came from `_ema`."""

    model: Data2VecForPretraining
    converter: FairseqConverter
    teacher_from_ema: bool


def convert_checkpoint(checkpoint: FairseqCheckpoint | str | os.PathLike) -> ConvertedModel:
    """
    A [`Data2VecForPretraining`] holding the fairseq checkpoint's student, teacher and head. Every tensor of the
    checkpoint is mapped and every d2v_hf tensor is filled, or this raises; the token-type embeddings, which
    fairseq has none of, are zeros.
    """
    if not isinstance(checkpoint, FairseqCheckpoint):
        checkpoint = read_fairseq_checkpoint(checkpoint)
    converter = find_converter(checkpoint)
    config = converter.pretraining_config()
    model = Data2VecForPretraining(config)
    state = model.state_dict()
    weights = {key: value for key, value in checkpoint.model.items() if isinstance(value, torch.Tensor)}
    used = _assign(converter.student_rules(config), weights, state, "the student", checkpoint.path)
    for key in state:  # the teacher starts as the student; fairseq's EMA state then replaces what it averaged
        if key.startswith("teacher."):
            state[key] = state["student." + key[len("teacher.") :]].clone()
    ema = checkpoint.model.get(converter.ema_key)
    if isinstance(ema, dict):
        ema_used = _assign(converter.teacher_rules(config), ema, state, "the EMA teacher", checkpoint.path)
        unused = [key for key in ema if key not in ema_used and not converter.ignored(key)]
        if unused:
            raise FairseqCheckpointError(f"{checkpoint.path}: the EMA teacher has weights no rule maps: {unused[:5]}.")
    unused = [key for key in weights if key not in used and not converter.ignored(key)]
    if unused:
        raise FairseqCheckpointError(
            f"{checkpoint.path}: {converter.name} weights that no rule maps: {unused[:5]} ({len(unused)} in all)."
        )
    state["ema_num_updates"] = torch.tensor(checkpoint.num_updates, dtype=torch.long)
    model.load_state_dict(state)
    return ConvertedModel(model=model, converter=converter, teacher_from_ema=isinstance(ema, dict))


def save_converted(converted: ConvertedModel, output_dir: str | os.PathLike, student_only: bool = False) -> None:
    """
    Writes the pretraining folder (with `student/`), or with `student_only` the plain backbone alone; speech
    students get the feature extractor of fairseq's audio task (16 kHz, normalised clips). Atomic: a failed save
    leaves no half-written folder.
    """
    model = converted.model

    def write(staging):
        student_dir = staging if student_only else staging / "student"
        if not student_only:
            model.save_pretrained(staging)
        model.export_student(student_dir)
        if model.config.modality == "audio":
            Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(student_dir)

    atomic_write_dir(output_dir, write)


def fairseq_gradient(model: Data2VecForPretraining, rule: KeyRule) -> torch.Tensor:
    """The gradient of a fairseq tensor as d2v_hf computed it (fused tensors concatenated back), for parity checks."""
    parameters = dict(model.named_parameters())
    return torch.cat([parameters[target].grad for target in rule.targets])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m d2v_hf.convert_fairseq",
        description="Converts a fairseq data2vec pretraining checkpoint (1.0 text and speech, 2.0 text) into a "
        "Data2VecForPretraining folder (student, teacher, head, config) with student/ for fine-tuning.",
    )
    parser.add_argument("--checkpoint", required=True, help="fairseq checkpoint (.pt), as released or trained")
    parser.add_argument("--output_dir", required=True, help="folder to write (refused if it exists and is not empty)")
    parser.add_argument("--student_only", action="store_true", help="write only the plain backbone into output_dir")
    parser.add_argument("--overwrite_output_dir", action="store_true", help="replace a non-empty output_dir")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    args = parser.parse_args(argv)
    try:
        if os.path.isdir(args.output_dir) and os.listdir(args.output_dir) and not args.overwrite_output_dir:
            raise FairseqCheckpointError(
                f"--output_dir {args.output_dir} exists and is not empty; pass --overwrite_output_dir or another "
                "folder."
            )
        if os.path.exists(args.output_dir) and not os.path.isdir(args.output_dir):
            raise FairseqCheckpointError(f"--output_dir {args.output_dir} is a file, not a folder.")
        converted = convert_checkpoint(args.checkpoint)
        save_converted(converted, args.output_dir, student_only=args.student_only)
    except FairseqCheckpointError as err:
        if args.debug:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    config = converted.model.config
    teacher = "fairseq's EMA teacher (_ema)" if converted.teacher_from_ema else "a copy of the student (no _ema kept)"
    size = f"{config.backbone_config.num_hidden_layers} layers x {config.hidden_size}"
    updates = int(converted.model.ema_num_updates)
    print(f"Converted {converted.converter.name} ({size}, {updates} updates) into {args.output_dir}")
    if not args.student_only:
        print(f"  teacher: {teacher}")
        print(f"  continue pretraining: run_pretraining.py --model_name_or_path {args.output_dir}")
        print(f"  fine-tune: --model_name_or_path {os.path.join(args.output_dir, 'student')}")
    if not converted.teacher_from_ema:
        logger.warning("The checkpoint keeps no EMA teacher: the teacher is a copy of the student.")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["ConvertedModel", "convert_checkpoint", "fairseq_gradient", "main", "save_converted"]
