"""Training and validation data of `run_pretraining.py`: local files or folders, Hub datasets, the embedded default."""

import sys
from pathlib import Path

import numpy as np

from d2v_hf.data import (
    build_default_corpus,
    load_audio_folder,
    load_fashion_mnist,
    load_image_folder,
    load_text_dataset,
    pretraining_image_transform,
    tokenize_and_group,
)


def _split(dataset, data_args, seed: int):
    """Holds out `validation_split_percentage` of a map-style dataset (streaming data needs --validation_file)."""
    if data_args.streaming or not data_args.validation_split_percentage or len(dataset) < 20:
        return dataset, None
    split = dataset.train_test_split(test_size=data_args.validation_split_percentage / 100, seed=seed)
    return split["train"], split["test"]


def _truncate(dataset, limit):
    if dataset is None or limit is None:
        return dataset
    if hasattr(dataset, "take") and not hasattr(dataset, "select"):
        return dataset.take(limit)
    return dataset.select(range(min(limit, len(dataset))))


def _split_and_truncate(train, validation, data_args, seed: int):
    if validation is None:
        train, validation = _split(train, data_args, seed)
    return _truncate(train, data_args.max_train_samples), _truncate(validation, data_args.max_eval_samples)


def _hub_dataset(data_args, model_args, split):
    from datasets import load_dataset

    return load_dataset(
        data_args.dataset_name,
        data_args.dataset_config_name,
        split=split,
        streaming=data_args.streaming,
        cache_dir=model_args.cache_dir,
        token=model_args.token,
    )


def text_sources(data_args, model_args):
    """Raw texts (column `text_column`): train and optional validation, plus a description for the model card."""
    if data_args.uses_embedded_default:
        from datasets import Dataset

        corpus = build_default_corpus()
        texts = Dataset.from_dict({data_args.text_column: corpus})
        chars = sum(len(text) for text in corpus)
        description = (
            f"the embedded default corpus: English documentation of the Python {sys.version.split()[0]} standard "
            f"library, built offline from the installed interpreter ({len(corpus):,} paragraphs, {chars:,} chars)"
        )
        return texts, None, description
    if data_args.train_file:
        train = load_text_dataset(data_args.train_file, data_args.text_column, streaming=data_args.streaming)
        validation = None
        if data_args.validation_file:
            validation = load_text_dataset(data_args.validation_file, data_args.text_column, data_args.streaming)
        return train, validation, f"local file {Path(data_args.train_file).name}"
    train = _hub_dataset(data_args, model_args, "train")
    if data_args.text_column not in (train.column_names or []):
        raise ValueError(
            f"{data_args.dataset_name} has no text column {data_args.text_column!r}; its columns are "
            f"{train.column_names}. Pass --text_column."
        )
    return train, None, f"{data_args.dataset_name} ({data_args.dataset_config_name or 'default'})"


def build_text_datasets(texts, validation, tokenizer, data_args, seed: int):
    if validation is None:
        texts, validation = _split(texts, data_args, seed)
    group = dict(
        max_seq_length=data_args.max_seq_length,
        text_column=data_args.text_column,
        sample_break_mode=data_args.sample_break_mode,
        pack_documents=data_args.pack_documents,
    )
    train = tokenize_and_group(texts, tokenizer, streaming=data_args.streaming, **group)
    if validation is not None:
        validation = tokenize_and_group(validation, tokenizer, streaming=data_args.streaming, **group)
    return _split_and_truncate(train, validation, data_args, seed)


def build_audio_datasets(data_args, model_args, seed: int):
    """Raw 16 kHz audio in `input_values`; other sampling rates are resampled (and logged)."""
    if data_args.uses_embedded_default:
        raise ValueError("Audio pretraining needs --train_file (a folder of audio files) or --dataset_name.")
    read = dict(sampling_rate=16000, max_seconds=data_args.max_audio_seconds, streaming=data_args.streaming)
    if data_args.train_file:
        train = load_audio_folder(data_args.train_file, **read)
        validation = load_audio_folder(data_args.validation_file, **read) if data_args.validation_file else None
        description = f"audio folder {Path(data_args.train_file).name}, resampled to 16 kHz"
    else:
        from datasets import Audio

        def to_values(example):
            return {"input_values": np.asarray(example[data_args.audio_column]["array"], dtype=np.float32)}

        train = _hub_dataset(data_args, model_args, "train")
        train = train.cast_column(data_args.audio_column, Audio(sampling_rate=16000)).map(to_values)
        validation = None
        description = f"{data_args.dataset_name} ({data_args.dataset_config_name or 'default'}) at 16 kHz"
    return (*_split_and_truncate(train, validation, data_args, seed), description)


def _image_folder(folder, image_size, streaming, transform):
    """A folder of images, or a folder holding the Fashion-MNIST IDX files."""
    if any(Path(folder).glob("train-images-idx3-ubyte*")):
        return load_fashion_mnist(folder, "train", transform=transform)
    return load_image_folder(folder, image_size=image_size, streaming=streaming, transform=transform)


def build_vision_datasets(data_args, model_args, image_size: int, seed: int, mode: str = "data2vec"):
    """
    `pixel_values` (3, image_size, image_size) with the released augmentation of `mode` (data2vec 1.0: crop 0.08-1,
    flip, colour jitter 0.4; 2.0: crop 0.2-1, flip), normalised with the ImageNet statistics as both releases.
    """
    if data_args.uses_embedded_default:
        raise ValueError("Vision pretraining needs --train_file (a folder of images) or --dataset_name.")
    train_tf = pretraining_image_transform(mode, image_size, train=True, seed=seed)
    eval_tf = pretraining_image_transform(mode, image_size, train=False)
    if data_args.train_file:
        train = _image_folder(data_args.train_file, image_size, data_args.streaming, train_tf)
        validation = None
        if data_args.validation_file:
            validation = _image_folder(data_args.validation_file, image_size, data_args.streaming, eval_tf)
        description = f"images from {Path(data_args.train_file).name} at {image_size}px"
    else:
        train = _hub_dataset(data_args, model_args, "train")
        column = data_args.image_column

        def transform(batch):
            return {"pixel_values": [train_tf(image) for image in batch[column]]}

        train = train.map(transform, batched=True) if data_args.streaming else train.with_transform(transform)
        validation = None
        description = f"{data_args.dataset_name} ({data_args.dataset_config_name or 'default'}) at {image_size}px"
    return (*_split_and_truncate(train, validation, data_args, seed), description)


__all__ = ["build_audio_datasets", "build_text_datasets", "build_vision_datasets", "text_sources"]
