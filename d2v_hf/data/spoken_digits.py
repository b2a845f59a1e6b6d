"""A speaker-independent spoken-digit set synthesised with espeak-ng: ten class folders, one file per voice."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import DIGIT_NAMES, resample


# espeak-ng's English accents (the `gmw/en*` voices shipped with Debian's espeak-ng-data) and voice variants.
ESPEAK_ENGLISH_ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
ESPEAK_VOICE_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "f1", "f2", "f3", "f4")
# A voice is an accent + a variant (formants, pitch, breathiness). The validation voices are 16 of the 80 combinations,
# chosen so that each accent and each variant occurs in both splits, but no validation voice occurs in training.
SPOKEN_DIGITS_TRAIN_VOICES = tuple(
    f"{accent}+{variant}"
    for i, accent in enumerate(ESPEAK_ENGLISH_ACCENTS)
    for j, variant in enumerate(ESPEAK_VOICE_VARIANTS)
    if (i + j) % 5
)
SPOKEN_DIGITS_VALIDATION_VOICES = tuple(
    f"{accent}+{variant}"
    for i, accent in enumerate(ESPEAK_ENGLISH_ACCENTS)
    for j, variant in enumerate(ESPEAK_VOICE_VARIANTS)
    if (i + j) % 5 == 0
)


def espeak_ng_available(executable: str = "espeak-ng") -> bool:
    """Whether the `espeak-ng` speech synthesizer is installed (Debian/Ubuntu: `apt-get install espeak-ng`)."""
    return shutil.which(executable) is not None


def _espeak(text: str, voice: str, speed: int, pitch: int, path: str, executable: str, ssml: bool = False) -> None:
    command = [executable, "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", path]
    command += ["-m", text] if ssml else [text]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    if result.returncode != 0 or not os.path.exists(path):
        raise ValueError(f"espeak-ng failed for voice {voice!r}: {result.stderr.strip() or result.returncode}")


def _split_words(audio: np.ndarray, rate: int, count: int) -> list[np.ndarray] | None:
    """Cuts a recording of `count` words separated by long pauses at its silences (10 ms frames, 0.3 s gaps)."""
    hop = max(1, int(0.01 * rate))
    frames = len(audio) // hop
    if frames == 0:
        return None
    peak = np.abs(audio[: frames * hop]).reshape(frames, hop).max(axis=1)
    voiced = np.flatnonzero(peak > 0.01 * max(float(peak.max()), 1e-6))
    if len(voiced) == 0:
        return None
    gaps = np.flatnonzero(np.diff(voiced) > 30)
    starts, ends = np.r_[voiced[0], voiced[gaps + 1]], np.r_[voiced[gaps], voiced[-1]]
    if len(starts) != count:
        return None
    margin = 5  # 50 ms of silence on both sides
    return [audio[max(0, (s - margin) * hop) : (e + 1 + margin) * hop] for s, e in zip(starts, ends)]


def _speak_digits(voice, stem, output_dir, speed_range, pitch_range, sampling_rate, seed, executable) -> None:
    """Writes `output_dir/<digit name>/<stem>.wav` for the ten digits spoken by one voice."""
    rng = np.random.default_rng([seed, *voice.encode()])
    speed = int(rng.integers(*speed_range, endpoint=True))
    pitch = int(rng.integers(*pitch_range, endpoint=True))
    ssml = "<speak>" + ' <break time="700ms"/> '.join(DIGIT_NAMES) + "</speak>"
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "digits.wav")
        _espeak(ssml, voice, speed, pitch, wav, executable, ssml=True)
        audio, rate = sf.read(wav, dtype="float32")
        words = _split_words(audio, rate, len(DIGIT_NAMES))
        if words is None:  # the pauses were not found: one call per word
            words = []
            for name in DIGIT_NAMES:
                _espeak(name, voice, speed, pitch, wav, executable)
                words.append(sf.read(wav, dtype="float32")[0])
    for name, word in zip(DIGIT_NAMES, words):
        sf.write(output_dir / name / f"{stem}.wav", resample(word, rate, sampling_rate), sampling_rate)


def synthesize_spoken_digits(
    output_dir: str | os.PathLike,
    voices: Sequence[str] = SPOKEN_DIGITS_TRAIN_VOICES,
    speed_range: tuple[int, int] = (130, 200),
    pitch_range: tuple[int, int] = (25, 75),
    sampling_rate: int = 16000,
    seed: int = 0,
    executable: str = "espeak-ng",
) -> Path:
    """
    Synthesizes the ten digit words ("zero" ... "nine") in each of `voices` with espeak-ng, as a class-folder
    dataset: `output_dir/<digit name>/<voice>.wav` (16-bit PCM at `sampling_rate`), ready for `--train_dir` /
    `--validation_dir`. Each voice speaks at a random rate (words per minute) and pitch drawn from the ranges
    (seeded by `seed` and the voice name). Passing disjoint voice lists for training and validation (e.g.
    [`SPOKEN_DIGITS_TRAIN_VOICES`] and [`SPOKEN_DIGITS_VALIDATION_VOICES`], whose voice variants differ) makes a
    speaker-independent 10-class task.

    Args:
        output_dir (`str` or `os.PathLike`): created if needed.
        voices (`Sequence[str]`): espeak-ng voices, `accent+variant` (e.g. `en-gb-scotland+f3`).
        speed_range, pitch_range (`tuple[int, int]`): inclusive ranges of espeak-ng's `-s` and `-p`.
        sampling_rate (`int`, *optional*, defaults to 16000): output rate (espeak-ng speaks at 22050 Hz).
        seed (`int`, *optional*, defaults to 0): seed of the rates and pitches.
        executable (`str`, *optional*, defaults to `"espeak-ng"`): the synthesizer.

    Returns:
        `Path`: `output_dir`.

    Raises:
        `ValueError`: espeak-ng is not installed, or a voice is unknown to it.
    """
    if not espeak_ng_available(executable):
        raise ValueError(f"{executable} is not installed (Debian/Ubuntu: apt-get install espeak-ng).")
    if not voices:
        raise ValueError("synthesize_spoken_digits needs at least one voice.")
    output_dir = Path(output_dir)
    for name in DIGIT_NAMES:
        (output_dir / name).mkdir(parents=True, exist_ok=True)
    stems = [re.sub(r"[^A-Za-z0-9_.+-]", "_", voice) for voice in voices]
    if len(set(stems)) != len(stems):
        raise ValueError(f"synthesize_spoken_digits got duplicate voices: {sorted(voices)}")
    speak = functools.partial(
        _speak_digits,
        output_dir=output_dir,
        speed_range=speed_range,
        pitch_range=pitch_range,
        sampling_rate=sampling_rate,
        seed=seed,
        executable=executable,
    )
    # espeak-ng runs as a subprocess per voice, so threads overlap the calls; the output does not depend on them.
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        list(pool.map(speak, voices, stems))
    return output_dir


__all__ = [
    "ESPEAK_ENGLISH_ACCENTS",
    "ESPEAK_VOICE_VARIANTS",
    "SPOKEN_DIGITS_TRAIN_VOICES",
    "SPOKEN_DIGITS_VALIDATION_VOICES",
    "espeak_ng_available",
    "synthesize_spoken_digits",
]
