"""Files and folders written whole or not at all: written under a staging name beside their place, then renamed
(a rename within one file system is atomic), so a crash never leaves a half-written model, card or plot."""

import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


STAGING_PREFIX = ".incomplete-"


def atomic_write_dir(final_dir: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Calls `write(tmp_dir)` and moves the result into place, so a failure never leaves half a directory."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkdtemp: its folders are private (0700) and would stay so once renamed; mkdir follows the umask
    tmp = final_dir.parent / f"{STAGING_PREFIX}{final_dir.name}.{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        write(tmp)
        if final_dir.exists():
            shutil.rmtree(final_dir)
        os.replace(tmp, final_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_write_file(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Calls `write(tmp_path)` next to `path`, then renames it to `path`: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{STAGING_PREFIX}{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """[`atomic_write_file`] of a UTF-8 text (a report, a JSON record)."""
    atomic_write_file(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


__all__ = ["STAGING_PREFIX", "atomic_write_dir", "atomic_write_file", "atomic_write_text"]
