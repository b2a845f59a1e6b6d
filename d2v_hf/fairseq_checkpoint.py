"""
Reading a fairseq checkpoint without fairseq, omegaconf or arbitrary code execution.

A fairseq trainer checkpoint is a `torch.save`d dict: `{"args", "cfg", "model", "optimizer_history", ...}`. Released
checkpoints pickle their `cfg` as omegaconf `DictConfig`s whose metadata names fairseq's dataclasses, enums and
`typing.Any`: `torch.load(weights_only=True)` refuses them, and `weights_only=False` would run whatever a downloaded
file names. Here torch's own weights-only unpickler reads the file, with every class the file names (listed by
`torch.serialization.get_unsafe_globals_in_checkpoint`, which reads the pickle without running it) mapped to an inert
stand-in that only records what it was given; the stand-ins are then turned back into plain dicts, lists and values.
Only the modules a fairseq config can name are mapped ([`STAND_IN_MODULES`]); a file naming anything else is refused.
Nothing the file names is imported or called.
"""

import os
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING  # the renames pickle itself applies when it loads
from dataclasses import dataclass
from typing import Any

import torch


# what a fairseq checkpoint's pickle names: its configs' classes (omegaconf, fairseq, fairseq's `examples`
# package), typing and enum metadata, argparse namespaces, numpy scalars and a few builtin types. Each becomes an
# inert stand-in; a file naming anything else (a function of `os`, `subprocess`, `builtins.eval`, ...) is refused.
STAND_IN_MODULES = (
    "omegaconf",
    "fairseq",
    "examples",
    "typing",
    "enum",
    "argparse",
    "numpy",
    "collections",
    "dataclasses",
)
STAND_IN_BUILTINS = (
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "str",
    "int",
    "float",
    "bool",
    "bytes",
    "object",
    "type",
)


class FairseqCheckpointError(ValueError):
    """A file that is not a readable fairseq data2vec pretraining checkpoint; the message says what was found."""


class _StandIn:
    """An inert object in place of a class the checkpoint names: keeps the arguments and the pickled state."""

    qualified_name = "?"

    def __new__(cls, *args, **kwargs):
        instance = object.__new__(cls)
        instance.args, instance.state = args, None
        return instance

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __repr__(self):
        return f"<{self.qualified_name}>"


def _stand_in(qualified_name: str) -> type:
    return type(qualified_name.rsplit(".", 1)[-1], (_StandIn,), {"qualified_name": qualified_name})


def plain(value: Any) -> Any:
    """
    The plain Python value behind what the unpickler rebuilt: an omegaconf `DictConfig` / `ListConfig` becomes a
    dict / list, a value node its value, an enum member its value, an `argparse.Namespace` a dict; tensors stay.
    """
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item) for item in value) if isinstance(value, list) else tuple(map(plain, value))
    if not isinstance(value, _StandIn):
        return value
    state = value.state
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):  # (dict, slots) pickles
        state = {**(state[0] or {}), **state[1]}
    if isinstance(state, dict):
        if "_content" in state:  # omegaconf containers: DictConfig, ListConfig
            return plain(state["_content"])
        if "_val" in state:  # omegaconf value nodes
            return plain(state["_val"])
        if value.qualified_name == "argparse.Namespace":
            return plain(state)
    if value.args:  # an enum member (rebuilt as Enum(value)) or another value object
        return plain(value.args[0]) if len(value.args) == 1 else plain(list(value.args))
    return plain(state) if state is not None else value.qualified_name


@dataclass
class FairseqCheckpoint:
    """What a fairseq trainer checkpoint holds, as plain values."""

    path: str
    cfg: dict
    model: dict[str, Any]
    num_updates: int

    def model_cfg(self) -> dict:
        return self.cfg.get("model") or {}

    def task_cfg(self) -> dict:
        return self.cfg.get("task") or {}


def read_fairseq_checkpoint(path: str | os.PathLike) -> FairseqCheckpoint:
    """
    Loads a fairseq checkpoint's config and weights safely (see the module docstring). Raises
    [`FairseqCheckpointError`] for a missing, corrupt or non-fairseq file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FairseqCheckpointError(f"--checkpoint {path}: no such file.")
    if not zipfile.is_zipfile(path):
        raise FairseqCheckpointError(
            f"{path} is not a torch checkpoint (a zip archive, as torch.save writes since torch 1.6); it may be "
            "truncated or corrupt. Download it again."
        )
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        for name in names:
            module, _, attribute = name.rpartition(".")
            # protocol-2 pickles name some functions by their Python 2 module (`commands.call` is subprocess.call)
            module, attribute = NAME_MAPPING.get((module, attribute), (IMPORT_MAPPING.get(module, module), attribute))
            if module.split(".")[0] not in STAND_IN_MODULES and not (
                module == "builtins" and attribute in STAND_IN_BUILTINS
            ):
                raise FairseqCheckpointError(
                    f"{path} names {module}.{attribute}, which a fairseq checkpoint does not hold (it may run code "
                    "when unpickled); refusing it."
                )
        stand_ins = [(_stand_in(name), name) for name in names]
        with torch.serialization.safe_globals(stand_ins):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except FairseqCheckpointError:
        raise
    except Exception as err:  # a torn archive, a bad pickle: one clear message instead of torch's internals
        # torch's refusal of a global it will not map (e.g. `posix.system`) is one line of its long message
        reason = next((line for line in str(err).splitlines() if "unsupported GLOBAL" in line), str(err))
        raise FairseqCheckpointError(f"{path} could not be read safely as a torch checkpoint: {reason}") from err
    if not isinstance(raw, dict) or "model" not in raw or not isinstance(raw["model"], dict):
        found = sorted(raw) if isinstance(raw, dict) else type(raw).__name__
        raise FairseqCheckpointError(
            f"{path} is not a fairseq trainer checkpoint: expected a dict with 'model' (the state dict) and 'cfg'; "
            f"found {found}."
        )
    cfg = plain(raw.get("cfg"))
    if not isinstance(cfg, dict):  # checkpoints of fairseq before hydra keep an argparse Namespace in `args`
        cfg = plain(raw.get("args"))
    if not isinstance(cfg, dict):
        raise FairseqCheckpointError(f"{path} has neither a 'cfg' nor an 'args' configuration; cannot derive a model.")
    if "model" not in cfg and "arch" in cfg:  # argparse-era: one flat namespace
        cfg = {"model": cfg, "task": cfg}
    history = plain(raw.get("optimizer_history")) or [{}]
    num_updates = int((history[-1] or {}).get("num_updates", 0) or 0)
    return FairseqCheckpoint(path=path, cfg=cfg, model=plain(raw["model"]), num_updates=num_updates)


__all__ = ["FairseqCheckpoint", "FairseqCheckpointError", "plain", "read_fairseq_checkpoint"]
