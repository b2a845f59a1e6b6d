"""Helpers shared by the text, audio and image loaders (file scanning, labels, error messages)."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from datasets import ClassLabel, Dataset, Features, Value


AUDIO_EXTENSIONS = (".flac", ".wav", ".ogg", ".mp3")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def as_path_list(files: str | os.PathLike | Iterable[str | os.PathLike], what: str = "file") -> list[Path]:
    """Normalises one path or a list of paths to a non-empty list of `Path`."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    paths = [Path(f) for f in files]
    if not paths:
        raise ValueError(f"no {what}s given")
    return paths


def check_file(path: Path, what: str = "file") -> None:
    if not path.exists():
        raise ValueError(f"{what} {path} does not exist")
    if not path.is_file():
        raise ValueError(f"{what} {path} is not a regular file")


def scan_folder(folder: str | os.PathLike, extensions: Iterable[str], what: str) -> list[Path]:
    """Recursively lists the files under `folder` whose suffix is in `extensions`, in a deterministic order.

    Hidden files and folders (a leading dot) are skipped: they are editor or OS artefacts, not data.
    """
    folder = Path(folder)
    if not folder.exists():
        raise ValueError(f"{what} folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"{what} folder {folder} is not a directory")
    extensions = tuple(e.lower() for e in extensions)
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in extensions
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise ValueError(f"no {what} files ({', '.join(extensions)}) found under {folder}")
    return files


def folder_label_dataset(files: list[Path], labels: list[str] | None = None) -> Dataset:
    """A `path` + `label` Dataset; labels default to the parent folder names, stored as a `ClassLabel`."""
    labels = [p.parent.name for p in files] if labels is None else labels
    names = sorted(set(labels))
    features = Features({"path": Value("string"), "label": ClassLabel(names=names)})
    return Dataset.from_dict({"path": [str(p) for p in files], "label": [names.index(x) for x in labels]}, features)


def folder_label_names(folder: str | os.PathLike, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> list[str]:
    """The sorted parent-folder names that the folder loaders use as `ClassLabel` names (useful when streaming).

    Args:
        folder (`str` or `os.PathLike`): the root folder given to the loader.
        extensions (`Iterable[str]`, *optional*, defaults to `AUDIO_EXTENSIONS`): `IMAGE_EXTENSIONS` for images.

    Returns:
        `list[str]`: label names; label `i` of the loader's dataset is `names[i]`.
    """
    return sorted({p.parent.name for p in scan_folder(folder, extensions, "data")})


def open_binary(path: Path):
    """Opens a file for binary reading, transparently decompressing `.gz`."""
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def iter_utf8_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yields `(1-based line number, decoded line)` and raises a ValueError naming the first non-UTF-8 line."""
    try:
        with open_binary(path) as handle:
            for number, raw in enumerate(handle, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise ValueError(
                        f"{path}: line {number} is not valid UTF-8 ({err.reason} at byte {err.start} of the line); "
                        "re-encode the file as UTF-8"
                    ) from None
                if number == 1:
                    line = line.lstrip("\ufeff")  # a UTF-8 byte-order mark is not text
                yield number, line
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError; a truncated .gz raises EOFError
        raise ValueError(f"cannot read {path}: {err}") from None


__all__ = [
    "AUDIO_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "as_path_list",
    "check_file",
    "folder_label_dataset",
    "folder_label_names",
    "iter_utf8_lines",
    "open_binary",
    "scan_folder",
]
