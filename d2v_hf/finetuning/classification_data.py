"""
Image and audio classification data of `run_image_classification.py` and `run_audio_classification.py`.

[`load_image_classification_datasets`] and [`load_audio_classification_datasets`] read class folders
(`--train_dir/--validation_dir`, the label is the parent folder's name), a folder of Fashion-MNIST IDX files (images
only), or a Hub dataset (`--dataset_name`); both go through one loader and return a [`ClassificationData`]: lazily
decoded `train` / `validation` datasets whose labels share one label list. Images become `pixel_values` with
[`~d2v_hf.data.image_transform`]; audio stays raw (mono float32 at the model's rate) until
[`AudioClassificationCollator`] cuts, normalises and pads it. Every input check raises a `ValueError` naming the
bad value.

```python
>>> from d2v_hf.finetuning import ImageDataArguments, load_image_classification_datasets
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
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import soundfile as sf
import torch
from datasets.utils.stratify import stratified_shuffle_split_generate_indices

from ..data import image_transform, load_audio_folder, load_fashion_mnist, load_image_folder, read_audio, resample
from ..data_collator import pad_and_normalize_audio
from .arguments import AudioDataArguments, ImageDataArguments, ModelArguments
from .checkpoints import AUDIO_SAMPLING_RATE
from .glue_data import MODEL_SELECTION_SEED, select_samples


logger = logging.getLogger(__name__)

FASHION_MNIST_TRAIN_GLOB = "train-images-idx3-ubyte*"
FASHION_MNIST_TEST_GLOB = "t10k-images-idx3-ubyte*"


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
    # The loaders keep `label` as a stored column under a lazy decoding transform: align the stored data, then
    # put the transform back.
    transform = dataset.format.get("format_kwargs", {}).get("transform")
    label2id = {name: i for i, name in enumerate(train_names)}
    base = dataset.with_format(None).align_labels_with_mapping(label2id, "label")
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
    """
    `train.train_test_split(test_size=fraction, seed=seed, stratify_by_column="label")`, the same rows: its own
    index generator on the label column read at once, because datasets >= 4 reads the column row by row there
    (seconds per split of Fashion-MNIST's 60,000 images). Unstratified when a class has too few examples.
    """
    if fraction <= 0:
        return train, None
    if isinstance(train.features.get("label"), datasets.ClassLabel):  # datasets stratifies by a ClassLabel only
        labels = np.asarray(train.with_format("numpy")["label"][:])
        n_test = math.ceil(fraction * len(train))
        generator = np.random.default_rng(seed)  # as train_test_split builds it from `seed`
        try:
            train_rows, test_rows = next(
                stratified_shuffle_split_generate_indices(labels, len(train) - n_test, n_test, rng=generator)
            )
            return train.select(train_rows), train.select(test_rows)
        except ValueError:  # too few examples per class to stratify
            pass
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
    if data_args.model_selection_fraction and train is not None:
        # the same held-out part in every run (not the run's seed), so that candidates are compared on equal data
        train, validation = _split_train(train, data_args.model_selection_fraction, MODEL_SELECTION_SEED)
        validation_split = "train (held out for model selection)"
    elif validation is None and train is not None:
        train, validation = _split_train(train, data_args.train_val_split, seed)
        validation_split = "train (held out)"
    train = _subsample(train, data_args.max_train_samples, seed)
    validation = _subsample(validation, data_args.max_eval_samples, seed)
    return ClassificationData(train, validation, names, validation_split=validation_split, **kwargs)


def _hub_data(data_args, model_args, seed, column: str, option: str, decode_train, decode_eval, prepare=None):
    """A `--dataset_name` dataset: labels as a `ClassLabel`, a validation split (or a held-out part), lazy decoding."""
    raw = _load_hub(data_args, model_args, column, option)
    if prepare is not None:
        raw = prepare(raw)
    raw, names = _hub_label_names(raw, data_args.label_column_name)
    _check_classes(names, f"Dataset {data_args.dataset_name}")
    train = raw.get("train")
    validation_split = next((s for s in ("validation", "valid", "val", "test") if s in raw), None)
    validation = raw[validation_split] if validation_split else None
    if train is not None and validation is None and not data_args.model_selection_fraction:
        train, validation = _split_train(train, data_args.train_val_split, seed)
        validation_split = "train (held out)"
    return _finish(
        data_args,
        train.with_transform(decode_train) if train is not None else None,
        validation.with_transform(decode_eval) if validation is not None else None,
        names,
        seed,
        validation_split=validation_split or "validation",
        **_hub_description(data_args.dataset_name, data_args.dataset_config_name),
    )


def _folder_data(
    data_args,
    seed: int,
    load_train: Callable[[str], datasets.Dataset],
    load_validation: Callable[[str], tuple[datasets.Dataset, str]],
    description: str,
    dataset_type: str,
) -> ClassificationData:
    """`--train_dir` / `--validation_dir`: the training classes, and the validation labels numbered like them."""
    _check_dir(data_args.train_dir, "--train_dir")
    _check_dir(data_args.validation_dir, "--validation_dir")
    train = validation = None
    names: list[str] | None = None
    validation_split = "validation"
    if data_args.train_dir is not None:
        train = load_train(data_args.train_dir)
        names = _label_names(train)
        _check_classes(names, f"--train_dir {data_args.train_dir!r}")
    if data_args.validation_dir is not None:
        validation, validation_split = load_validation(data_args.validation_dir)
        validation, names = _validation_labels(validation, names, data_args.validation_dir)
    return _finish(
        data_args,
        train,
        validation,
        names,
        seed,
        description=description,
        dataset_type=dataset_type,
        validation_split=validation_split,
    )


def _hub_image_batch(batch: dict, column: str, transform) -> dict:
    return {"pixel_values": [transform(image) for image in batch[column]], "label": batch["label"]}


def load_image_classification_datasets(
    data_args: ImageDataArguments,
    image_size: int,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    seed: int = 42,
    model_args: ModelArguments | None = None,
    train_augmentation: bool = True,
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
        train_augmentation (`bool`, *optional*, defaults to `True`): random resized crop and flip for training;
            `False` reads the training images as the evaluation ones (frozen-feature probes).

    Returns:
        [`ClassificationData`].

    Raises:
        `ValueError`: missing folders, no images, a single class, validation classes unknown to training.
    """
    crop_scale = (float(data_args.min_crop_scale), 1.0)
    if not 0 < crop_scale[0] <= 1:
        raise ValueError(f"--min_crop_scale must be in (0, 1], got {data_args.min_crop_scale}.")
    eval_tf = image_transform(image_size, mean, std, train=False)
    train_tf = image_transform(image_size, mean, std, train=True, crop_scale=crop_scale, seed=seed)
    train_tf = train_tf if train_augmentation else eval_tf

    if data_args.dataset_name is not None:
        column = data_args.image_column_name
        decode_train = functools.partial(_hub_image_batch, column=column, transform=train_tf)
        decode_eval = functools.partial(_hub_image_batch, column=column, transform=eval_tf)
        return _hub_data(data_args, model_args, seed, column, "--image_column_name", decode_train, decode_eval)

    idx = data_args.train_dir is not None and _is_idx_folder(data_args.train_dir)

    def load_train(folder):
        if idx:
            return load_fashion_mnist(folder, "train", transform=train_tf)
        return load_image_folder(folder, transform=train_tf)

    def load_validation(folder):
        if _is_idx_folder(folder) or any(Path(folder).glob(FASHION_MNIST_TEST_GLOB)):
            split = "test" if any(Path(folder).glob(FASHION_MNIST_TEST_GLOB)) else "train"
            return load_fashion_mnist(folder, split, transform=eval_tf), split
        return load_image_folder(folder, transform=eval_tf), "validation"

    source = Path(data_args.train_dir or data_args.validation_dir).name
    description = "Fashion-MNIST" if idx else f"image folder {source}"
    return _folder_data(
        data_args, seed, load_train, load_validation, description, "fashion_mnist" if idx else "imagefolder"
    )


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
        return resample(audio, int(value["sampling_rate"]), sampling_rate)
    if isinstance(value, dict) and value.get("bytes"):
        try:
            data, rate = sf.read(io.BytesIO(value["bytes"]), dtype="float32", always_2d=True)
        except Exception as err:
            raise ValueError(f"cannot decode audio {value.get('path') or '(bytes)'}: {err}") from None
        return resample(data.mean(axis=1), rate, sampling_rate)
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
        column = data_args.audio_column_name
        decode = functools.partial(_hub_audio_batch, column=column, sampling_rate=sampling_rate)

        def undecoded(raw):  # soundfile decodes it (no torchcodec needed)
            return raw.cast_column(column, datasets.Audio(decode=False))

        return _hub_data(data_args, model_args, seed, column, "--audio_column_name", decode, decode, undecoded)

    def load(folder):
        return load_audio_folder(folder, sampling_rate=sampling_rate)

    source = Path(data_args.train_dir or data_args.validation_dir).name
    return _folder_data(
        data_args, seed, load, lambda folder: (load(folder), "validation"), f"audio folder {source}", "audiofolder"
    )


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
    start otherwise. Then it is normalised to zero mean and unit variance
    (`Wav2Vec2FeatureExtractor(do_normalize=True)`) when `normalize`, and the batch is zero-padded to its longest clip
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
            clips.append(audio)
        input_values, attention_mask = pad_and_normalize_audio(clips, self.normalize, self.min_length)
        batch = {"input_values": input_values}
        if self.return_attention_mask:
            batch["attention_mask"] = attention_mask
        batch["labels"] = torch.tensor([int(example["label"]) for example in examples], dtype=torch.long)
        return batch


def align_labels_with_checkpoint(config, data: ClassificationData, ignore_mismatched_sizes: bool = False):
    """
    Keeps the ids of a checkpoint that already has a classification head over the data's classes in another order (e.g.
    a model fine-tuned elsewhere, evaluated with `--do_eval` only): the datasets' label ids are remapped to the head's
    `id2label`, so predictions are scored against the right classes. A head over other class names is left to
    [`~d2v_hf.finetuning.check_head_size`] and `--ignore_mismatched_sizes` (a warning is logged when its size matches).

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


__all__ = [
    "AudioClassificationCollator",
    "ClassificationData",
    "ImageClassificationCollator",
    "align_labels_with_checkpoint",
    "decode_audio_value",
    "load_audio_classification_datasets",
    "load_image_classification_datasets",
]
