"""Audio folders: lazy soundfile decoding, mono float32, resampling, and the asterisk spoken digits.

Hand-written rather than `load_dataset("audiofolder")`: its `Audio` feature decodes with torchcodec, which the CPU
machines here do not have; soundfile reads every format libsndfile knows."""

from __future__ import annotations

import functools
import logging
import os
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from datasets import ClassLabel, Dataset, Features, IterableDataset, Value
from scipy.signal import resample_poly

from ._common import AUDIO_EXTENSIONS, folder_label_dataset, scan_folder


logger = logging.getLogger(__name__)

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_LOGGED_RESAMPLING: set[tuple[int, int]] = set()


def _log_resampling(source_rate: int, target_rate: int, count: int | None = None) -> None:
    if (source_rate, target_rate) in _LOGGED_RESAMPLING:
        return
    _LOGGED_RESAMPLING.add((source_rate, target_rate))
    files = "audio files" if count is None else f"{count} audio file(s)"
    logger.info("Resampling %s from %d Hz to %d Hz with scipy.signal.resample_poly", files, source_rate, target_rate)


def _audio_info(path: str) -> sf._SoundFileInfo:
    try:
        return sf.info(path)
    except Exception as err:  # soundfile raises LibsndfileError, RuntimeError or TypeError depending on the damage
        raise ValueError(f"cannot read audio file {path}: {err}") from None


def read_audio(path: str | os.PathLike, sampling_rate: int = 16000, max_seconds: float | None = None) -> np.ndarray:
    """Reads one audio file as a mono float32 array at `sampling_rate`.

    Channels are averaged; a file at another rate is resampled with `scipy.signal.resample_poly` (polyphase
    filtering, so 8 kHz -> 16 kHz gives exactly twice as many samples). With `max_seconds`, only the first
    `max_seconds` seconds are read and returned.

    Args:
        path (`str` or `os.PathLike`): any file libsndfile reads (flac, wav, ogg, mp3 with libsndfile >= 1.1).
        sampling_rate (`int`, *optional*, defaults to 16000): the output rate in Hz.
        max_seconds (`float`, *optional*): crop to at most this many seconds from the start.

    Returns:
        `np.ndarray`: 1-D float32 samples in [-1, 1].

    Raises:
        ValueError: the file is missing, unreadable, corrupt or has no samples (the message names it).
    """
    path = str(path)
    try:
        with sf.SoundFile(path) as handle:
            source_rate = handle.samplerate
            frames = -1 if max_seconds is None else max(1, int(np.ceil(max_seconds * source_rate)))
            data = handle.read(frames=frames, dtype="float32", always_2d=True)
    except Exception as err:  # any decoder failure is a bad input file: report it by name
        raise ValueError(f"cannot read audio file {path}: {err}") from None
    if data.shape[0] == 0:
        raise ValueError(f"audio file {path} contains no samples")
    audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if source_rate != sampling_rate:
        _log_resampling(source_rate, sampling_rate)
        audio = resample(audio, source_rate, sampling_rate)
    if max_seconds is not None:
        audio = audio[: max(1, int(round(max_seconds * sampling_rate)))]
    return np.ascontiguousarray(audio, dtype=np.float32)


def resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """`audio` (1-D) from `source_rate` to `target_rate` Hz with `scipy.signal.resample_poly`, as float32."""
    if source_rate == target_rate:
        return np.asarray(audio, dtype=np.float32)
    divisor = gcd(int(source_rate), int(target_rate))
    return resample_poly(audio, target_rate // divisor, source_rate // divisor).astype(np.float32)


def _decode_audio_batch(batch: dict, sampling_rate: int, max_seconds: float | None) -> dict:
    # Module-level (bound with functools.partial) so the dataset pickles for spawn-based DataLoader workers.
    return {
        "input_values": [read_audio(p, sampling_rate, max_seconds) for p in batch["path"]],
        "path": batch["path"],
        "label": batch["label"],
        "sampling_rate": [sampling_rate] * len(batch["path"]),
    }


def _lazy_audio_dataset(
    base: Dataset, sampling_rate: int, max_seconds: float | None, streaming: bool
) -> Dataset | IterableDataset:
    if max_seconds is not None and max_seconds <= 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds}")
    decode = functools.partial(_decode_audio_batch, sampling_rate=sampling_rate, max_seconds=max_seconds)
    if streaming:
        # Shards let DataLoader workers split the files; the decode runs lazily per example.
        iterable = base.to_iterable_dataset(num_shards=min(len(base), 16))
        return iterable.map(decode, batched=True, batch_size=1)
    # Headers only (no decoding): catches corrupt files now and tells which files need resampling.
    # [:] reads the whole column at once (datasets >= 4 returns a lazy Column, read row by row when iterated)
    rates = [_audio_info(p).samplerate for p in base["path"][:]]
    for rate in sorted(set(rates)):
        if rate != sampling_rate:
            _log_resampling(rate, sampling_rate, sum(r == rate for r in rates))
    return base.with_transform(decode)


def load_audio_folder(
    folder: str | os.PathLike, sampling_rate: int = 16000, max_seconds: float | None = None, streaming: bool = False
) -> Dataset | IterableDataset:
    """Loads every audio file under `folder` (recursively), decoded lazily.

    Files with the suffixes in `AUDIO_EXTENSIONS` are listed in sorted path order. Decoding happens on access
    (`Dataset.with_transform`), so a large folder is not loaded into memory; for the non-streaming dataset every
    file header is checked up front so corrupt files fail early, by name.

    Column contract (each example): `input_values` (1-D float32 `np.ndarray`, mono, at `sampling_rate`, not
    normalised: the collators do it), `path` (`str`), `label` (`int`, a `ClassLabel` over the sorted parent
    folder names: `ds.features["label"].names` maps it back; streaming datasets carry no features, use
    `folder_label_names(folder)` there) and `sampling_rate` (`int`). `ds.column_names` lists only the stored
    columns `path` and `label`: pass `remove_unused_columns=False` to `Trainer` so it keeps `path` for the decoder.

    Args:
        folder (`str` or `os.PathLike`): the root folder.
        sampling_rate (`int`, *optional*, defaults to 16000): target rate; other rates are resampled (logged once).
        max_seconds (`float`, *optional*): keep only the first `max_seconds` seconds of each file.
        streaming (`bool`, *optional*, defaults to `False`): return an `IterableDataset` decoding on the fly.

    Returns:
        `datasets.Dataset` (lazy transform) or `datasets.IterableDataset`.

    Raises:
        ValueError: the folder is missing or holds no audio files, or a file is unreadable (named).
    """
    files = scan_folder(folder, AUDIO_EXTENSIONS, "audio")
    return _lazy_audio_dataset(folder_label_dataset(files), sampling_rate, max_seconds, streaming)


def spoken_digits_from_asterisk(
    folder: str | os.PathLike, sampling_rate: int = 16000, max_seconds: float | None = None, streaming: bool = False
) -> Dataset | IterableDataset:
    """The ten spoken single digits of the Asterisk English prompts as a labelled 10-class audio dataset.

    Label mapping: the file `audio/digits/N.<ext>`, where `N` is one decimal digit, is the word for N ("zero" ...
    "nine") and gets label `N`; the `ClassLabel` names are `DIGIT_NAMES`. Every other file in that folder (10-90,
    ordinals `h-N`, "oh", months, days, ...) is left out. One recording per class (one speaker), so it suits
    smoke-testing a classification head rather than measuring accuracy.

    Args:
        folder (`str` or `os.PathLike`): the `asterisk-en` folder, its `audio` folder, or the `digits` folder itself.
        sampling_rate (`int`, *optional*, defaults to 16000): target rate (the recordings are 8 kHz).
        max_seconds (`float`, *optional*): crop each recording.
        streaming (`bool`, *optional*, defaults to `False`): return an `IterableDataset`.

    Returns:
        `Dataset` or `IterableDataset` with the [`load_audio_folder`] columns, `label` in 0-9, in label order.

    Raises:
        ValueError: no digits folder found, or a digit 0-9 has no recording.
    """
    root = Path(folder)
    candidates = [root / "audio" / "digits", root / "digits", root]
    digits_dir = next((c for c in candidates if c.is_dir() and any(c.glob("0.*"))), None)
    if digits_dir is None:
        raise ValueError(f"no spoken-digits folder (containing 0.flac ... 9.flac) found in {root}")
    by_digit = {}
    for path in sorted(digits_dir.iterdir()):
        if path.suffix.lower() in AUDIO_EXTENSIONS and len(path.stem) == 1 and path.stem.isdigit():
            by_digit.setdefault(int(path.stem), path)
    missing = [d for d in range(10) if d not in by_digit]
    if missing:
        raise ValueError(f"{digits_dir}: no recording for digit(s) {missing}")
    features = Features({"path": Value("string"), "label": ClassLabel(names=list(DIGIT_NAMES))})
    base = Dataset.from_dict({"path": [str(by_digit[d]) for d in range(10)], "label": list(range(10))}, features)
    return _lazy_audio_dataset(base, sampling_rate, max_seconds, streaming)


__all__ = [
    "AUDIO_EXTENSIONS",
    "DIGIT_NAMES",
    "load_audio_folder",
    "read_audio",
    "resample",
    "spoken_digits_from_asterisk",
]
