"""Library logic of the image and audio classification scripts (`examples/run_image_classification.py`,
`examples/run_audio_classification.py`).

- Data: [`load_image_classification_datasets`] and [`load_audio_classification_datasets`] read class folders
  (`--train_dir/--validation_dir`, the label is the parent folder's name), a folder of Fashion-MNIST IDX files
  (images only), or a Hub dataset (`--dataset_name`). Both return a [`ClassificationData`]: lazily decoded `train` /
  `validation` datasets whose labels share one label list.
- Inputs: images become `pixel_values` with [`~d2v_hf.data.image_transform`] (random resized crop + flip for
  training); audio is resampled to 16 kHz, randomly cropped (training) or cut (evaluation) to `max_length_seconds`,
  normalised per utterance ([`~d2v_hf.data.normalize_audio`]) and padded with an attention mask by
  [`AudioClassificationCollator`].
- Models: [`build_classification_model`] loads any checkpoint (a data2vec student exported by
  `run_pretraining.py`, ViT / BEiT / data2vec-vision, wav2vec2 / data2vec-audio, ...) with a new head of the
  dataset's labels (`label2id` / `id2label`), after checking the checkpoint's modality, its head size and, for
  images, that the image size is a multiple of the patch size.
- Spoken digits: [`synthesize_spoken_digits`] makes a labelled 10-class speech set with `espeak-ng` (many accents
  and voices), so that training and validation can use different voices.

Every input check raises a `ValueError` naming the bad value.

```python
>>> from d2v_hf.finetuning_vision_audio import ImageDataArguments, load_image_classification_datasets
>>> folder = "../shared/data/vision/fashion-mnist"  # IDX files: train-* for training, t10k-* for validation
>>> data = load_image_classification_datasets(ImageDataArguments(train_dir=folder, validation_dir=folder), 28)
>>> data.label_names[:2], data.validation_split
(['T-shirt/top', 'Trouser'], 'test')
```
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from math import gcd
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly
from transformers import Trainer

from .data import (
    DIGIT_NAMES,
    image_transform,
    load_audio_folder,
    load_fashion_mnist,
    load_image_folder,
    normalize_audio,
    read_audio,
)
from .finetuning import (
    ModelArguments,
    apply_lora,
    detect_modality,
    maybe_merge_lora,
    push_to_hub_with_model_card,
    select_samples,
)
from .metrics import make_glue_compute_metrics
from .modelcard import build_model_card, save_model_card, training_details_from_args


logger = logging.getLogger(__name__)

AUDIO_SAMPLING_RATE = 16000
FASHION_MNIST_TRAIN_GLOB = "train-images-idx3-ubyte*"
FASHION_MNIST_TEST_GLOB = "t10k-images-idx3-ubyte*"

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


# --------------------------------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ClassificationModelArguments(ModelArguments):
    """[`~d2v_hf.finetuning.ModelArguments`] plus the options of the image and audio scripts."""

    image_processor_name: str | None = field(
        default=None,
        metadata={"help": "Image processor / feature extractor to read normalisation settings from (default: model)."},
    )
    freeze_feature_encoder: bool = field(
        default=True, metadata={"help": "Audio: do not train the convolutional feature encoder (as HF's script)."}
    )


@dataclass
class _ClassificationDataArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset (or a local dataset folder)."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Configuration of the Hub dataset."})
    train_dir: str | None = field(
        default=None, metadata={"help": "Training folder: one sub-folder per class (the label is the folder name)."}
    )
    validation_dir: str | None = field(default=None, metadata={"help": "Validation folder, laid out as train_dir."})
    train_val_split: float = field(
        default=0.15, metadata={"help": "Fraction of the training data held out when there is no validation data."}
    )
    label_column_name: str = field(default="label", metadata={"help": "Label column of a Hub dataset."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep N training examples (a seeded random subset, as HF's scripts)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Keep N evaluation examples."})

    def __post_init__(self):
        if self.dataset_name is None and self.train_dir is None and self.validation_dir is None:
            raise ValueError("Give --train_dir (and --validation_dir) or --dataset_name.")
        if self.dataset_name is not None and (self.train_dir or self.validation_dir):
            raise ValueError("Give either --dataset_name or --train_dir/--validation_dir, not both.")
        if not 0.0 <= self.train_val_split < 1.0:
            raise ValueError(f"--train_val_split must be in [0, 1), got {self.train_val_split}.")


@dataclass
class ImageDataArguments(_ClassificationDataArguments):
    """What images to train and evaluate on. A `--train_dir` holding Fashion-MNIST IDX files is detected."""

    image_column_name: str = field(default="image", metadata={"help": "Image column of a Hub dataset."})
    min_crop_scale: float = field(
        default=0.08, metadata={"help": "Smallest area fraction of the training random resized crop (1 = no crop)."}
    )


@dataclass
class AudioDataArguments(_ClassificationDataArguments):
    """What audio to train and evaluate on (any sampling rate: resampled to the model's, 16 kHz by default)."""

    audio_column_name: str = field(default="audio", metadata={"help": "Audio column of a Hub dataset."})
    max_length_seconds: float = field(
        default=20.0, metadata={"help": "Longer clips are cut: a random window in training, the start in evaluation."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.max_length_seconds <= 0:
            raise ValueError(f"--max_length_seconds must be positive, got {self.max_length_seconds}.")


# --------------------------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class ClassificationData:
    """The datasets of a classification run and their labels.

    Attributes:
        train (`datasets.Dataset` or `None`): training examples (`label` = id in `label_names`).
        validation (`datasets.Dataset` or `None`): evaluation examples, same label ids.
        label_names (`list[str]`): class names; id `i` is `label_names[i]`.
        description (`str`): a human-readable name of the data (for logs and the model card).
        dataset_type (`str`): the model-index dataset id (a Hub id, `fashion_mnist`, `imagefolder`, `audiofolder`).
        validation_split (`str`): the split evaluated on (`validation`, `test`, or `train` for a held-out part).
        hub_dataset (`str` or `None`): the Hub dataset id when the data came from the Hub.
    """

    train: datasets.Dataset | None
    validation: datasets.Dataset | None
    label_names: list[str]
    description: str
    dataset_type: str
    validation_split: str = "validation"
    hub_dataset: str | None = None


def _is_idx_folder(folder: str | os.PathLike) -> bool:
    return Path(folder).is_dir() and any(Path(folder).glob(FASHION_MNIST_TRAIN_GLOB))


def _check_dir(folder: str | None, option: str) -> None:
    if folder is None:
        return
    path = Path(folder)
    if not path.exists():
        raise ValueError(f"{option} {folder!r} does not exist.")
    if not path.is_dir():
        raise ValueError(f"{option} {folder!r} is not a directory (give a folder with one sub-folder per class).")


def _label_names(dataset: datasets.Dataset, column: str = "label") -> list[str]:
    return list(dataset.features[column].names)


def _check_classes(names: Sequence[str], where: str) -> None:
    if len(names) < 2:
        found = repr(names[0]) if names else "none"
        raise ValueError(
            f"{where} holds a single class ({found}); classification needs at least two. Put the files of each "
            "class in their own sub-folder (the label is the sub-folder's name)."
        )


def _align_labels(dataset: datasets.Dataset, names: list[str], train_names: list[str], where: str):
    """Maps `dataset`'s label ids (over `names`) onto the ids of `train_names`; unknown classes are an error."""
    unknown = sorted(set(names) - set(train_names))
    if unknown:
        raise ValueError(f"{where} has class(es) {unknown} that the training data lacks (classes: {train_names}).")
    if list(names) == list(train_names):
        return dataset
    mapping = [train_names.index(name) for name in names]
    # The loaders keep `label` as a stored column, so a map over it keeps their lazy decoding transform.
    transform = dataset.format.get("format_kwargs", {}).get("transform")
    base = dataset.with_format(None)
    base = base.cast_column("label", datasets.Value("int64")).map(
        lambda batch: {"label": [mapping[x] for x in batch["label"]]}, batched=True
    )
    base = base.cast_column("label", datasets.ClassLabel(names=train_names))
    return base.with_transform(transform) if transform is not None else base


def _validation_labels(validation: datasets.Dataset, names: list[str] | None, folder: str):
    """
    `(validation, label names)`: the validation folder's own classes (checked) when there is no training data,
    else the validation labels re-numbered to the training ones (`names`).
    """
    where = f"--validation_dir {folder!r}"
    val_names = _label_names(validation)
    if names is None:
        _check_classes(val_names, where)
        return validation, val_names
    return _align_labels(validation, val_names, names, where), names


def _subsample(dataset, max_samples: int | None, seed: int):
    if max_samples is None or dataset is None:
        return dataset
    if max_samples <= 0:
        raise ValueError(f"max samples must be positive, got {max_samples}.")
    if max_samples >= len(dataset):
        return dataset
    return select_samples(dataset.shuffle(seed=seed), max_samples)


def _split_train(train: datasets.Dataset, fraction: float, seed: int):
    if fraction <= 0:
        return train, None
    try:
        split = train.train_test_split(test_size=fraction, seed=seed, stratify_by_column="label")
    except ValueError:  # too few examples per class to stratify
        split = train.train_test_split(test_size=fraction, seed=seed)
    return split["train"], split["test"]


def _hub_label_names(dataset: datasets.DatasetDict, column: str) -> tuple[datasets.DatasetDict, list[str]]:
    """Renames `column` to `label` and makes it a `ClassLabel` (sorted distinct values when it is not one)."""
    first = next(iter(dataset.values()))
    if column not in first.column_names:
        raise ValueError(f"Label column {column!r} not found; columns: {first.column_names} (--label_column_name).")
    if column != "label":
        dataset = dataset.rename_column(column, "label")
        first = next(iter(dataset.values()))
    feature = first.features["label"]
    if isinstance(feature, datasets.ClassLabel):
        return dataset, list(feature.names)
    names = sorted({str(v) for split in dataset.values() for v in split.unique("label")})
    dataset = dataset.map(lambda batch: {"label": [names.index(str(v)) for v in batch["label"]]}, batched=True)
    return dataset.cast_column("label", datasets.ClassLabel(names=names)), names


def _load_hub(data_args, model_args, input_column: str, option: str) -> datasets.DatasetDict:
    raw = datasets.load_dataset(
        data_args.dataset_name,
        data_args.dataset_config_name,
        cache_dir=model_args.cache_dir if model_args else None,
        token=model_args.token if model_args else None,
    )
    first = next(iter(raw.values()))
    if input_column not in first.column_names:
        raise ValueError(
            f"Column {input_column!r} not found in {data_args.dataset_name}; columns: {first.column_names} ({option})."
        )
    return raw


def _hub_description(name: str, config_name: str | None) -> dict:
    """Card fields of a `--dataset_name`: a Hub id is listed in the card's `datasets`; a local folder is not."""
    if Path(name).exists():
        return {
            "description": f"local dataset {Path(name).name}",
            "dataset_type": Path(name).name,
            "hub_dataset": None,
        }
    description = f"{name} ({config_name})" if config_name else name
    return {"description": description, "dataset_type": name, "hub_dataset": name}


def _finish(data_args, train, validation, names, seed, **kwargs) -> ClassificationData:
    validation_split = kwargs.pop("validation_split", "validation")
    if validation is None and train is not None:
        train, validation = _split_train(train, data_args.train_val_split, seed)
        validation_split = "train (held out)"
    train = _subsample(train, data_args.max_train_samples, seed)
    validation = _subsample(validation, data_args.max_eval_samples, seed)
    return ClassificationData(train, validation, names, validation_split=validation_split, **kwargs)


def _hub_image_batch(batch: dict, column: str, transform) -> dict:
    return {"pixel_values": [transform(image) for image in batch[column]], "label": batch["label"]}


def load_image_classification_datasets(
    data_args: ImageDataArguments,
    image_size: int,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    seed: int = 42,
    model_args: ModelArguments | None = None,
) -> ClassificationData:
    """
    Loads an image classification dataset whose examples carry `pixel_values` (3, image_size, image_size) and `label`.

    - `--train_dir` / `--validation_dir`: class folders ([`~d2v_hf.data.load_image_folder`]), or a folder with the
      Fashion-MNIST IDX files ([`~d2v_hf.data.load_fashion_mnist`]: `train-*` files for training, the `t10k-*` test
      files, when present, for validation).
    - `--dataset_name`: `datasets.load_dataset(dataset_name, dataset_config_name)` with `image_column_name` /
      `label_column_name` columns (a local folder works too: the `imagefolder` builder).

    Without validation data, `train_val_split` of the training data (stratified) is held out. `max_train_samples` /
    `max_eval_samples` keep a seeded random subset.

    Args:
        data_args ([`ImageDataArguments`]): the data options.
        image_size (`int`): output size (the model's `config.image_size`).
        mean, std (`Sequence[float]`): normalisation (the checkpoint's image processor, else 0.5 as data2vec-vision).
        seed (`int`, *optional*, defaults to 42): seed of the split, the subsets and the augmentation.
        model_args ([`~d2v_hf.finetuning.ModelArguments`], *optional*): Hub cache directory and token.

    Returns:
        [`ClassificationData`].

    Raises:
        `ValueError`: missing folders, no images, a single class, validation classes unknown to training.
    """
    crop_scale = (float(data_args.min_crop_scale), 1.0)
    if not 0 < crop_scale[0] <= 1:
        raise ValueError(f"--min_crop_scale must be in (0, 1], got {data_args.min_crop_scale}.")
    train_tf = image_transform(image_size, mean, std, train=True, crop_scale=crop_scale, seed=seed)
    eval_tf = image_transform(image_size, mean, std, train=False)

    if data_args.dataset_name is not None:
        raw = _load_hub(data_args, model_args, data_args.image_column_name, "--image_column_name")
        raw, names = _hub_label_names(raw, data_args.label_column_name)
        _check_classes(names, f"Dataset {data_args.dataset_name}")
        column = data_args.image_column_name
        train = raw.get("train")
        validation_split = next((s for s in ("validation", "valid", "val", "test") if s in raw), None)
        validation = raw[validation_split] if validation_split else None

        def hub(ds, transform):
            return ds.with_transform(functools.partial(_hub_image_batch, column=column, transform=transform))

        if train is not None and validation is None:
            train, validation = _split_train(train, data_args.train_val_split, seed)
            validation_split = "train (held out)"
        return _finish(
            data_args,
            hub(train, train_tf) if train is not None else None,
            hub(validation, eval_tf) if validation is not None else None,
            names,
            seed,
            validation_split=validation_split or "validation",
            **_hub_description(data_args.dataset_name, data_args.dataset_config_name),
        )

    _check_dir(data_args.train_dir, "--train_dir")
    _check_dir(data_args.validation_dir, "--validation_dir")
    train = validation = None
    names: list[str] | None = None
    validation_split = "validation"
    idx = data_args.train_dir is not None and _is_idx_folder(data_args.train_dir)
    if data_args.train_dir is not None:
        if idx:
            train = load_fashion_mnist(data_args.train_dir, "train", transform=train_tf)
        else:
            train = load_image_folder(data_args.train_dir, transform=train_tf)
        names = _label_names(train)
        _check_classes(names, f"--train_dir {data_args.train_dir!r}")
    if data_args.validation_dir is not None:
        folder = data_args.validation_dir
        if _is_idx_folder(folder) or any(Path(folder).glob(FASHION_MNIST_TEST_GLOB)):
            split = "test" if any(Path(folder).glob(FASHION_MNIST_TEST_GLOB)) else "train"
            validation = load_fashion_mnist(folder, split, transform=eval_tf)
            validation_split = split
        else:
            validation = load_image_folder(folder, transform=eval_tf)
        validation, names = _validation_labels(validation, names, folder)
    source = data_args.train_dir or data_args.validation_dir
    return _finish(
        data_args,
        train,
        validation,
        names,
        seed,
        description="Fashion-MNIST" if idx else f"image folder {Path(source).name}",
        dataset_type="fashion_mnist" if idx else "imagefolder",
        validation_split=validation_split,
    )


def _resample(audio: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    if source_rate == target_rate:
        return audio.astype(np.float32, copy=False)
    divisor = gcd(int(source_rate), int(target_rate))
    return resample_poly(audio, target_rate // divisor, source_rate // divisor).astype(np.float32)


def decode_audio_value(value: Any, sampling_rate: int = AUDIO_SAMPLING_RATE) -> np.ndarray:
    """
    Decodes one value of a Hub `Audio` column read with `decode=False` (`{"bytes", "path"}`), a decoded
    `{"array", "sampling_rate"}` dict, or a file path, to a mono float32 waveform at `sampling_rate`.

    soundfile does the decoding, so no torchcodec is needed.
    """
    if isinstance(value, (str, os.PathLike)):
        return read_audio(value, sampling_rate)
    if isinstance(value, dict) and value.get("array") is not None:
        audio = np.asarray(value["array"], dtype=np.float32)
        audio = audio.mean(axis=0) if audio.ndim > 1 else audio
        return _resample(audio, int(value["sampling_rate"]), sampling_rate)
    if isinstance(value, dict) and value.get("bytes"):
        try:
            data, rate = sf.read(io.BytesIO(value["bytes"]), dtype="float32", always_2d=True)
        except Exception as err:
            raise ValueError(f"cannot decode audio {value.get('path') or '(bytes)'}: {err}") from None
        return _resample(data.mean(axis=1), rate, sampling_rate)
    if isinstance(value, dict) and value.get("path"):
        return read_audio(value["path"], sampling_rate)
    raise ValueError(f"cannot decode audio value of type {type(value).__name__}: {str(value)[:100]}")


def _hub_audio_batch(batch: dict, column: str, sampling_rate: int) -> dict:
    values = [decode_audio_value(v, sampling_rate) for v in batch[column]]
    return {"input_values": values, "label": batch["label"]}


def load_audio_classification_datasets(
    data_args: AudioDataArguments,
    sampling_rate: int = AUDIO_SAMPLING_RATE,
    seed: int = 42,
    model_args: ModelArguments | None = None,
) -> ClassificationData:
    """
    Loads an audio classification dataset whose examples carry `input_values` (mono float32 at `sampling_rate`, not
    yet normalised or cut: [`AudioClassificationCollator`] does it) and `label`.

    - `--train_dir` / `--validation_dir`: class folders of audio files ([`~d2v_hf.data.load_audio_folder`]).
    - `--dataset_name`: `datasets.load_dataset(...)` with `audio_column_name` / `label_column_name`; the audio column
      is read undecoded and decoded with soundfile (a local folder works too: the `audiofolder` builder).

    Args:
        data_args ([`AudioDataArguments`]): the data options.
        sampling_rate (`int`, *optional*, defaults to 16000): the model's sampling rate.
        seed (`int`, *optional*, defaults to 42): seed of the held-out split and of the subsets.
        model_args ([`~d2v_hf.finetuning.ModelArguments`], *optional*): Hub cache directory and token.

    Returns:
        [`ClassificationData`].

    Raises:
        `ValueError`: missing folders, no audio files, a single class, validation classes unknown to training.
    """
    if data_args.dataset_name is not None:
        raw = _load_hub(data_args, model_args, data_args.audio_column_name, "--audio_column_name")
        column = data_args.audio_column_name
        raw = raw.cast_column(column, datasets.Audio(decode=False))
        raw, names = _hub_label_names(raw, data_args.label_column_name)
        _check_classes(names, f"Dataset {data_args.dataset_name}")
        decode = functools.partial(_hub_audio_batch, column=column, sampling_rate=sampling_rate)
        train = raw.get("train")
        validation_split = next((s for s in ("validation", "valid", "val", "test") if s in raw), None)
        validation = raw[validation_split] if validation_split else None
        if train is not None and validation is None:
            train, validation = _split_train(train, data_args.train_val_split, seed)
            validation_split = "train (held out)"
        return _finish(
            data_args,
            train.with_transform(decode) if train is not None else None,
            validation.with_transform(decode) if validation is not None else None,
            names,
            seed,
            validation_split=validation_split or "validation",
            **_hub_description(data_args.dataset_name, data_args.dataset_config_name),
        )

    _check_dir(data_args.train_dir, "--train_dir")
    _check_dir(data_args.validation_dir, "--validation_dir")
    train = validation = None
    names = None
    if data_args.train_dir is not None:
        train = load_audio_folder(data_args.train_dir, sampling_rate=sampling_rate)
        names = _label_names(train)
        _check_classes(names, f"--train_dir {data_args.train_dir!r}")
    if data_args.validation_dir is not None:
        validation = load_audio_folder(data_args.validation_dir, sampling_rate=sampling_rate)
        validation, names = _validation_labels(validation, names, data_args.validation_dir)
    source = data_args.train_dir or data_args.validation_dir
    return _finish(
        data_args,
        train,
        validation,
        names,
        seed,
        description=f"audio folder {Path(source).name}",
        dataset_type="audiofolder",
    )


# --------------------------------------------------------------------------------------------------------------------
# Collators
# --------------------------------------------------------------------------------------------------------------------


class ImageClassificationCollator:
    """Stacks `pixel_values` and `label` of the examples into `{"pixel_values", "labels"}` (other keys are ignored)."""

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        pixel_values = torch.stack([torch.as_tensor(example["pixel_values"]) for example in examples])
        labels = torch.tensor([int(example["label"]) for example in examples], dtype=torch.long)
        return {"pixel_values": pixel_values, "labels": labels}


class AudioClassificationCollator:
    """
    Turns examples with `input_values` (raw mono waveform) and `label` into a padded batch.

    Each clip longer than `max_length` samples is cut: a random window when `train` (HF's `random_subsample`), its
    start otherwise. Then it is normalised to zero mean and unit variance ([`~d2v_hf.data.normalize_audio`], as
    `Wav2Vec2FeatureExtractor(do_normalize=True)`) when `normalize`, and the batch is zero-padded to its longest clip
    (at least `min_length` samples) with an `attention_mask` (1 = real sample).

    Args:
        max_length (`int`): the longest clip in samples (`max_length_seconds * sampling_rate`).
        train (`bool`, *optional*, defaults to `False`): random windows instead of the start.
        normalize (`bool`, *optional*, defaults to `True`): per-utterance normalisation.
        min_length (`int`, *optional*): pad batches to at least this many samples (defaults to `min(max_length,
            16000)`: the convolutional encoder and SpecAugment need a minimum number of frames).
        return_attention_mask (`bool`, *optional*, defaults to `True`): include `attention_mask`.
        seed (`int`, *optional*): seed of the random windows.
    """

    def __init__(
        self,
        max_length: int,
        train: bool = False,
        normalize: bool = True,
        min_length: int | None = None,
        return_attention_mask: bool = True,
        seed: int | None = None,
    ):
        if max_length <= 0:
            raise ValueError(f"max_length must be positive, got {max_length}.")
        self.max_length = int(max_length)
        self.train, self.normalize, self.return_attention_mask = train, normalize, return_attention_mask
        self.min_length = min(self.max_length, AUDIO_SAMPLING_RATE) if min_length is None else int(min_length)
        self.rng = np.random.default_rng(seed)

    def _cut(self, audio: np.ndarray) -> np.ndarray:
        if len(audio) <= self.max_length:
            return audio
        start = int(self.rng.integers(0, len(audio) - self.max_length + 1)) if self.train else 0
        return audio[start : start + self.max_length]

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        clips = []
        for example in examples:
            audio = self._cut(np.asarray(example["input_values"], dtype=np.float32).reshape(-1))
            if len(audio) == 0:
                raise ValueError(f"empty audio clip {example.get('path', '')}".strip())
            clips.append(normalize_audio(audio) if self.normalize else audio)
        length = max(self.min_length, max(len(clip) for clip in clips))
        input_values = torch.zeros(len(clips), length)
        attention_mask = torch.zeros(len(clips), length, dtype=torch.long)
        for i, clip in enumerate(clips):
            input_values[i, : len(clip)] = torch.from_numpy(clip)
            attention_mask[i, : len(clip)] = 1
        batch = {"input_values": input_values}
        if self.return_attention_mask:
            batch["attention_mask"] = attention_mask
        batch["labels"] = torch.tensor([int(example["label"]) for example in examples], dtype=torch.long)
        return batch


# --------------------------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------------------------


_MODALITY_EXAMPLES = {
    "text": "a data2vec-text/RoBERTa/BERT model and run_glue.py",
    "vision": "a data2vec-vision/ViT/BEiT model and run_image_classification.py",
    "audio": "a data2vec-audio/wav2vec2/HuBERT model and run_audio_classification.py",
}


def check_checkpoint_modality(config, expected: str, script: str) -> None:
    """
    Raises a `ValueError` naming the modality found when `config` belongs to a model of another modality than
    `expected` (`"vision"` or `"audio"`), or is a whole `Data2VecForPretraining` checkpoint (its `student/` folder
    is the model to fine-tune). Unknown model types pass.
    """
    name = getattr(config, "_name_or_path", "") or "the checkpoint"
    if getattr(config, "model_type", None) == "data2vec-pretraining":
        raise ValueError(
            f"{name!r} is a full data2vec pretraining checkpoint (student, teacher and regression head); fine-tune "
            "the plain backbone that run_pretraining.py exports to its `student/` folder (or export it with "
            "`Data2VecForPretraining.from_pretrained(...).export_student(dir)`)."
        )
    found = detect_modality(config)
    if found is not None and found != expected:
        raise ValueError(
            f"{script} fine-tunes {expected} models, but {name!r} is a {found} model (model_type="
            f"{config.model_type!r}, architectures={getattr(config, 'architectures', None)}). Use "
            f"{_MODALITY_EXAMPLES[expected].split(' and ')[0]}, or {_MODALITY_EXAMPLES[found]} for this checkpoint."
        )


def check_image_size(config) -> int:
    """Returns the model's square image size, or raises a `ValueError` when it is not a multiple of the patch size."""
    image_size, patch_size = getattr(config, "image_size", None), getattr(config, "patch_size", None)
    sizes = list(image_size) if isinstance(image_size, (list, tuple)) else [image_size]
    patches = list(patch_size) if isinstance(patch_size, (list, tuple)) else [patch_size] * len(sizes)
    if image_size is None or any(s is None for s in sizes):
        raise ValueError(f"The checkpoint's config ({type(config).__name__}) has no image_size.")
    if len(set(sizes)) != 1:
        raise ValueError(f"Only square images are supported; the checkpoint's image_size is {image_size}.")
    for size, patch in zip(sizes, patches):
        if patch and size % patch != 0:
            raise ValueError(
                f"The image size {size} is not divisible by the patch size {patch} ({type(config).__name__}); "
                "choose an image_size that is a multiple of patch_size."
            )
    return int(sizes[0])


def check_classifier_head(config, num_labels: int, ignore_mismatched_sizes: bool = False) -> None:
    """Raises a `ValueError` when the checkpoint's classification head has another number of labels."""
    architectures = getattr(config, "architectures", None) or []
    has_head = any(name.endswith("Classification") for name in architectures)
    if has_head and config.num_labels != num_labels and not ignore_mismatched_sizes:
        raise ValueError(
            f"The checkpoint {getattr(config, '_name_or_path', '')!r} has a {config.num_labels}-label classification "
            f"head ({architectures[0]}), but the data has {num_labels} classes; pass --ignore_mismatched_sizes to "
            "train a new head."
        )


def load_checkpoint_config(model_args: ModelArguments, expected: str, script: str):
    """`AutoConfig.from_pretrained` of the checkpoint, checked with [`check_checkpoint_modality`]."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(
        model_args.config_name or model_args.model_name_or_path, **_hub_kwargs(model_args)
    )
    check_checkpoint_modality(config, expected, script)
    return config


def _hub_kwargs(model_args: ModelArguments) -> dict:
    return dict(
        cache_dir=model_args.cache_dir,
        revision=model_args.model_revision,
        token=model_args.token,
        trust_remote_code=model_args.trust_remote_code,
    )


def load_processor_settings(model_args: ModelArguments, modality: str) -> dict:
    """
    Reads the checkpoint's image processor (`image_mean`, `image_std`) or feature extractor (`sampling_rate`,
    `do_normalize`, `return_attention_mask`) when it has one; a data2vec student exported by `run_pretraining.py`
    has none, and gets data2vec's settings (mean = std = 0.5; 16 kHz, normalised, with attention mask).
    """
    from transformers import AutoFeatureExtractor, AutoImageProcessor

    name = model_args.image_processor_name or model_args.model_name_or_path
    settings = (
        {"image_mean": [0.5] * 3, "image_std": [0.5] * 3}
        if modality == "vision"
        else {"sampling_rate": AUDIO_SAMPLING_RATE, "do_normalize": True, "return_attention_mask": True}
    )
    try:
        loader = AutoImageProcessor if modality == "vision" else AutoFeatureExtractor
        processor = loader.from_pretrained(name, **_hub_kwargs(model_args))
    except (OSError, ValueError, KeyError) as err:
        logger.info(f"No {modality} processor found for {name} ({type(err).__name__}); using data2vec's defaults.")
        return settings
    for key in settings:
        value = getattr(processor, key, None)
        if value is not None:
            settings[key] = list(value) if isinstance(value, (list, tuple)) else value
    return settings


def make_processor(modality: str, settings: dict, image_size: int | None = None):
    """The image processor / feature extractor saved with the fine-tuned model (so pipelines can use it)."""
    if modality == "vision":
        from transformers import ViTImageProcessor

        return ViTImageProcessor(
            size={"height": image_size, "width": image_size},
            image_mean=settings["image_mean"],
            image_std=settings["image_std"],
            resample=3,  # bicubic, as the transform
        )
    from transformers import Wav2Vec2FeatureExtractor

    return Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=settings["sampling_rate"],
        padding_value=0.0,
        do_normalize=settings["do_normalize"],
        return_attention_mask=settings["return_attention_mask"],
    )


def align_labels_with_checkpoint(config, data: ClassificationData, ignore_mismatched_sizes: bool = False):
    """
    Keeps the ids of a checkpoint that already has a classification head over the data's classes in another order
    (e.g. a model fine-tuned elsewhere, evaluated with `--do_eval` only): the datasets' label ids are remapped to
    the head's `id2label`, so predictions are scored against the right classes. A head over other class names is
    left to [`check_classifier_head`] and `--ignore_mismatched_sizes` (a warning is logged when its size matches).

    Returns:
        [`ClassificationData`]: `data`, or a copy whose `label_names` follow the checkpoint's head.
    """
    architectures = getattr(config, "architectures", None) or []
    if ignore_mismatched_sizes or not any(name.endswith("Classification") for name in architectures):
        return data
    head = [str(config.id2label[i]) for i in range(config.num_labels)]
    if head == data.label_names:
        return data
    if sorted(head) != sorted(data.label_names):
        if len(head) == len(data.label_names) and head != [f"LABEL_{i}" for i in range(len(head))]:
            logger.warning(f"The checkpoint's head predicts {head}; the data's classes are {data.label_names}.")
        return data
    logger.info(f"Label ids follow the checkpoint's head: {head}")
    train, validation = data.train, data.validation
    if train is not None:
        train = _align_labels(train, data.label_names, head, "the training data")
    if validation is not None:
        validation = _align_labels(validation, data.label_names, head, "the validation data")
    return dataclasses.replace(data, train=train, validation=validation, label_names=head)


def build_classification_model(config, model_args: ClassificationModelArguments, label_names: Sequence[str]):
    """
    Loads `AutoModelForImageClassification` or `AutoModelForAudioClassification` (chosen by the config's modality)
    from `model_args.model_name_or_path` with a head over `label_names` (`label2id` / `id2label` set), then wraps it
    in LoRA adapters with `--use_peft` ([`~d2v_hf.finetuning.apply_lora`]). The audio feature encoder is frozen
    with `--freeze_feature_encoder`.
    """
    from transformers import AutoModelForAudioClassification, AutoModelForImageClassification

    label_names = [str(name) for name in label_names]
    check_classifier_head(config, len(label_names), model_args.ignore_mismatched_sizes)
    config.num_labels = len(label_names)
    config.label2id = {name: i for i, name in enumerate(label_names)}
    config.id2label = dict(enumerate(label_names))
    modality = detect_modality(config)
    config.finetuning_task = "audio-classification" if modality == "audio" else "image-classification"
    auto_class = AutoModelForAudioClassification if modality == "audio" else AutoModelForImageClassification
    model = auto_class.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **_hub_kwargs(model_args),
    )
    expected_input = "input_values" if modality == "audio" else "pixel_values"
    if model.main_input_name != expected_input:
        raise ValueError(
            f"{type(model).__name__} takes {model.main_input_name!r}, but this script feeds {expected_input!r} "
            f"({'raw waveforms' if modality == 'audio' else 'normalised images'}); use "
            f"{_MODALITY_EXAMPLES[modality].split(' and ')[0]}."
        )
    if modality == "audio" and model_args.freeze_feature_encoder and hasattr(model, "freeze_feature_encoder"):
        model.freeze_feature_encoder()
    if model_args.use_peft:
        model = apply_lora(
            model, model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout, model_args.lora_target_modules
        )
    return model


@dataclasses.dataclass
class ClassificationSetup:
    """What [`prepare_classification`] returns: the data, the model and the processor settings of the checkpoint."""

    data: ClassificationData
    model: Any
    settings: dict
    image_size: int | None = None


def prepare_classification(modality: str, model_args, data_args, training_args) -> ClassificationSetup:
    """
    The shared start of `run_image_classification.py` and `run_audio_classification.py`: the checkpoint's config
    first (another modality or a bad image size fails before any data is read), its processor settings, the
    datasets, the training arguments, the labels aligned with the checkpoint, then the model.
    """
    script = "run_image_classification.py" if modality == "vision" else "run_audio_classification.py"
    config = load_checkpoint_config(model_args, modality, script)
    image_size = check_image_size(config) if modality == "vision" else None
    settings = load_processor_settings(model_args, modality)
    if modality == "vision":
        mean, std = settings["image_mean"], settings["image_std"]
        data = load_image_classification_datasets(data_args, image_size, mean, std, training_args.seed, model_args)
    else:
        rate = int(settings["sampling_rate"])
        data = load_audio_classification_datasets(data_args, rate, training_args.seed, model_args)
    prepare_training_arguments(training_args, data)
    data = align_labels_with_checkpoint(config, data, model_args.ignore_mismatched_sizes)
    logger.info(f"{data.description}: {len(data.label_names)} classes {data.label_names}")
    model = build_classification_model(config, model_args, data.label_names)
    return ClassificationSetup(data=data, model=model, settings=settings, image_size=image_size)


# --------------------------------------------------------------------------------------------------------------------
# Training, evaluation, model card
# --------------------------------------------------------------------------------------------------------------------


class ClassificationTrainer(Trainer):
    """
    A [`~transformers.Trainer`] that collates evaluation and prediction batches with `eval_data_collator` (e.g.
    [`AudioClassificationCollator`] with `train=False`: clips cut at their start instead of random windows) and
    training batches with `data_collator`.
    """

    def __init__(self, *args, eval_data_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator

    def _with_eval_collator(self, build, dataset):
        train_collator = self.data_collator
        self.data_collator = self.eval_data_collator or train_collator
        try:
            return build(dataset)
        finally:
            self.data_collator = train_collator

    def get_eval_dataloader(self, eval_dataset=None):
        return self._with_eval_collator(super().get_eval_dataloader, eval_dataset)

    def get_test_dataloader(self, test_dataset):
        return self._with_eval_collator(super().get_test_dataloader, test_dataset)


def prepare_training_arguments(training_args, data: ClassificationData) -> None:
    """
    Adjusts [`~transformers.TrainingArguments`]: `remove_unused_columns=False` (the lazily decoded datasets need
    their stored columns), `average_tokens_across_devices=False` (classification losses are means over examples)
    and no evaluation during training without validation data.
    """
    if training_args.remove_unused_columns:
        logger.info("Setting remove_unused_columns=False: the datasets decode their stored columns on access.")
        training_args.remove_unused_columns = False
    if getattr(training_args, "average_tokens_across_devices", False):
        # A per-clip / per-image mean loss has no tokens to average; with it on, transformers 5 reports the eval
        # loss multiplied by the number of processes under DDP (checked with 2 CPU processes).
        training_args.average_tokens_across_devices = False
    if training_args.do_train and data.train is None:
        raise ValueError("--do_train needs training data (--train_dir or a dataset with a train split).")
    if training_args.do_eval and data.validation is None:
        raise ValueError("--do_eval needs validation data (--validation_dir, a validation split, --train_val_split).")
    if data.validation is None and training_args.eval_strategy != "no":
        logger.warning("No validation data: evaluation during training is turned off.")
        training_args.eval_strategy = "no"


def accuracy_compute_metrics():
    """`compute_metrics` for the Trainer: accuracy of the argmax of the logits ([`~d2v_hf.metrics`], offline)."""
    return make_glue_compute_metrics(None, is_regression=False)


def train_evaluate_and_save_card(
    trainer,
    model_args: ModelArguments,
    data: ClassificationData,
    task_type: str,
    extra_details: dict | None = None,
) -> dict[str, float]:
    """
    The end of both scripts, as transformers' examples: train (`--do_train`, resuming with
    `--resume_from_checkpoint`), save the model, metrics and state, evaluate (`--do_eval`), merge LoRA adapters
    (`--use_peft --merge_lora`), write the model card (the evaluation results in its model-index) to `output_dir`
    and push to the Hub with `--push_to_hub`. The trainer's `processing_class` (image processor / feature
    extractor) is saved with the model.

    Returns:
        `dict[str, float]`: the train and eval metrics.
    """
    args = trainer.args
    all_metrics: dict[str, float] = {}
    if args.do_train:
        result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        trainer.save_model()
        metrics = dict(result.metrics, train_samples=len(data.train))
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
        all_metrics.update(metrics)
    eval_metrics = None
    if args.do_eval:
        eval_metrics = dict(trainer.evaluate(), eval_samples=len(data.validation))
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        all_metrics.update(eval_metrics)

    merged_dir = maybe_merge_lora(trainer, model_args, trainer.processing_class)
    card = build_model_card(
        model_name=os.path.basename(os.path.normpath(args.output_dir)),
        base_model=model_args.model_name_or_path,
        task_type=task_type,
        dataset_name=data.description,
        dataset_type=data.dataset_type,
        dataset_config=None,
        dataset_split=data.validation_split,
        datasets=[data.hub_dataset] if data.hub_dataset else None,
        eval_results=eval_metrics,
        training_details=training_details_from_args(
            args,
            num_labels=len(data.label_names),
            labels=", ".join(data.label_names) if len(data.label_names) <= 20 else f"{len(data.label_names)} classes",
            lora=f"r={model_args.lora_r}, alpha={model_args.lora_alpha}" if model_args.use_peft else "no",
            merged_model=os.path.relpath(merged_dir, args.output_dir) if merged_dir else None,
            **(extra_details or {}),
        ),
    )
    if trainer.is_world_process_zero():
        save_model_card(card, args.output_dir)
    if args.push_to_hub:
        push_to_hub_with_model_card(trainer, card, finetuned_from=model_args.model_name_or_path)
    return all_metrics


# --------------------------------------------------------------------------------------------------------------------
# Spoken digits with espeak-ng
# --------------------------------------------------------------------------------------------------------------------


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
        sf.write(output_dir / name / f"{stem}.wav", _resample(word, rate, sampling_rate), sampling_rate)


def synthesize_spoken_digits(
    output_dir: str | os.PathLike,
    voices: Sequence[str] = SPOKEN_DIGITS_TRAIN_VOICES,
    speed_range: tuple[int, int] = (130, 200),
    pitch_range: tuple[int, int] = (25, 75),
    sampling_rate: int = AUDIO_SAMPLING_RATE,
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
    "AUDIO_SAMPLING_RATE",
    "ESPEAK_ENGLISH_ACCENTS",
    "ESPEAK_VOICE_VARIANTS",
    "SPOKEN_DIGITS_TRAIN_VOICES",
    "SPOKEN_DIGITS_VALIDATION_VOICES",
    "AudioClassificationCollator",
    "AudioDataArguments",
    "ClassificationData",
    "ClassificationModelArguments",
    "ClassificationSetup",
    "ClassificationTrainer",
    "ImageClassificationCollator",
    "ImageDataArguments",
    "accuracy_compute_metrics",
    "align_labels_with_checkpoint",
    "build_classification_model",
    "check_checkpoint_modality",
    "check_classifier_head",
    "check_image_size",
    "decode_audio_value",
    "espeak_ng_available",
    "load_audio_classification_datasets",
    "load_checkpoint_config",
    "load_image_classification_datasets",
    "load_processor_settings",
    "make_processor",
    "prepare_classification",
    "prepare_training_arguments",
    "synthesize_spoken_digits",
    "train_evaluate_and_save_card",
]
