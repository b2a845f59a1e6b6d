"""Command-line parsing shared by every script: `HfArgumentParser`, or a single `.json` file of arguments."""

import json
import os
import sys
from collections.abc import Sequence

from transformers import HfArgumentParser


def parse_arguments(dataclass_types: Sequence[type], args: Sequence[str] | None = None) -> tuple:
    """
    Parses `args` (default: `sys.argv[1:]`) into instances of `dataclass_types` with
    [`~transformers.HfArgumentParser`]; a single `.json` argument is read as a file of arguments, as in the
    Transformers example scripts. A file that is missing or not valid JSON raises a `ValueError` naming it.
    """
    parser = HfArgumentParser(list(dataclass_types))
    args = sys.argv[1:] if args is None else [str(a) for a in args]
    if len(args) == 1 and args[0].endswith(".json"):
        path = os.path.abspath(args[0])
        try:
            with open(path, encoding="utf-8") as handle:
                json.load(handle)
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"Cannot read the arguments file {args[0]}: {err}") from None
        return parser.parse_json_file(json_file=path)
    return parser.parse_args_into_dataclasses(args=args)


__all__ = ["parse_arguments"]
