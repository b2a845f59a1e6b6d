"""What every script does with its command line: `HfArgumentParser` (or one `.json` file of arguments), checks of
the training arguments, and a `--model_name_or_path` that is named when it cannot be loaded."""

import argparse
import copy
import json
import os
import re
import sys
from collections.abc import Sequence

import torch
from transformers import AutoConfig, HfArgumentParser, TrainingArguments


def check_training_arguments(training_args: TrainingArguments) -> None:
    """
    Raises a `ValueError` naming the flag for values the Trainer would only reject deep inside torch, after the data
    is built (a batch size of 0, a negative learning rate), and turns off `dataloader_pin_memory` where there is no
    GPU (it only prints warnings there).
    """
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(training_args, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name} {value!r}: expected a whole number >= 1.")
    # the checks torch.optim's Adam family makes when the Trainer creates the optimizer (lr and weight decay: all):
    # each value must be >= 0 and below its upper bound, if it has one
    upper = {"learning_rate": None, "weight_decay": None}
    if "adam" in str(getattr(training_args.optim, "value", training_args.optim)):
        upper |= {"adam_epsilon": None, "adam_beta1": 1, "adam_beta2": 1}
    for name, bound in upper.items():
        value = getattr(training_args, name)
        if value < 0 or (bound is not None and value >= bound):
            expected = "a number >= 0" if bound is None else f"in [0, {bound})"
            raise ValueError(f"--{name} {value!r}: expected {expected}.")
    if training_args.dataloader_pin_memory and (training_args.use_cpu or not torch.cuda.is_available()):
        training_args.dataloader_pin_memory = False


def check_model_path(name_or_path: str, flag: str = "--model_name_or_path", needs_config: bool = True) -> None:
    """
    A value that cannot be a Hub id (a path: `/`, `.`, `~`, more than one `/`) must be an existing folder; an
    existing folder must hold a `config.json` when `needs_config` (a model's; a tokenizer's folder need not).
    """
    folder = os.path.expanduser(name_or_path)
    looks_local = name_or_path.startswith(("/", ".", "~")) or name_or_path.count("/") > 1 or "\\" in name_or_path
    if looks_local and not os.path.isdir(folder):
        raise ValueError(f"{flag} {name_or_path}: no such folder.")
    if needs_config and os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, "config.json")):
        # Transformers would ask for a `model_type` key in a config.json that is not there, or fail on the tokenizer
        raise ValueError(f"{flag} {name_or_path}: the folder has no config.json (it is not a saved model).")


def load_config(name_or_path: str, flag: str = "--model_name_or_path", **hub_kwargs):
    """
    `AutoConfig.from_pretrained`, with an error naming the flag when `name_or_path` is neither an existing folder
    nor a Hub model that can be reached (Transformers would report an invalid repo id for a mistyped local path).
    """
    check_model_path(name_or_path, flag)
    try:
        return AutoConfig.from_pretrained(name_or_path, **hub_kwargs)
    except OSError as err:
        raise ValueError(
            f"{flag} {name_or_path}: not a local folder with a config.json, and not reachable as a Hub model ({err})."
        ) from None


def split_overrides(text: str | None) -> list[str]:
    """
    `'a=1,backbone.b=[8,8]'` -> `['a=1', 'backbone.b=[8,8]']`: the items of a `key=value` list flag, split at the
    commas that precede a `key=` (a dotted name allowed), so that JSON lists keep theirs; blank items are dropped.
    """
    return [item.strip() for item in re.split(r",(?=\s*[A-Za-z_][\w.]*\s*=)", text or "") if item.strip()]


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults after each flag (as HfArgumentParser) and the script's description with its line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        # a dataclass field's help is prose ("15% of tokens"), which argparse would read as a %-format template and
        # fail on in `--help`; the default this formatter appends after it stays a template
        if action.help and action.help != argparse.SUPPRESS:
            action = copy.copy(action)
            action.help = action.help.replace("%", "%%")
        return super()._get_help_string(action)


def parse_arguments(
    dataclass_types: Sequence[type], args: Sequence[str] | None = None, description: str | None = None
) -> tuple:
    """
    Parses `args` (default: `sys.argv[1:]`) into instances of `dataclass_types` with
    [`~transformers.HfArgumentParser`]; a single `.json` argument is read as a file of arguments, as in the
    Transformers example scripts. A file that is missing or not valid JSON raises a `ValueError` naming it; training
    arguments are checked with [`check_training_arguments`].
    """
    parser = HfArgumentParser(list(dataclass_types), description=description, formatter_class=_HelpFormatter)
    args = sys.argv[1:] if args is None else [str(a) for a in args]
    if len(args) == 1 and args[0].endswith(".json"):
        path = os.path.abspath(args[0])
        try:
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"Cannot read the arguments file {args[0]}: {err}") from None
        parsed = parser.parse_json_file(json_file=path)
    else:
        parsed = parser.parse_args_into_dataclasses(args=args)
    for instance in parsed:
        if isinstance(instance, TrainingArguments):
            check_training_arguments(instance)
    return parsed


__all__ = ["check_model_path", "check_training_arguments", "load_config", "parse_arguments", "split_overrides"]
