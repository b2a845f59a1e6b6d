"""Data loading for d2v_hf: text, audio and image datasets with a fixed column contract.

- text: [`load_text_dataset`] -> column `text` (or `text_column`); [`tokenize_and_group`] -> `input_ids`,
  `attention_mask` blocks of `max_seq_length`.
- audio: [`load_audio_folder`], [`spoken_digits_from_asterisk`] -> `input_values` (float32 array), `path`, `label`,
  `sampling_rate`; [`normalize_audio`] for data2vec's `normalize: true`.
- images: [`load_image_folder`], [`load_fashion_mnist`] -> `image` (PIL), `label` (+ `path`, + `pixel_values` with a
  transform); [`image_transform`] -> `pixel_values` (3, H, W) float tensors.

Every loader raises a `ValueError` naming the offending file or value for bad input.
"""

from ._common import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, folder_label_names
from .audio import DIGIT_NAMES, load_audio_folder, normalize_audio, read_audio, spoken_digits_from_asterisk
from .image import (
    FASHION_MNIST_CLASSES,
    ImageTransform,
    image_transform,
    load_fashion_mnist,
    load_image_folder,
    read_idx,
)
from .text import load_text_dataset, tokenize_and_group


__all__ = [
    "AUDIO_EXTENSIONS",
    "DIGIT_NAMES",
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "ImageTransform",
    "folder_label_names",
    "image_transform",
    "load_audio_folder",
    "load_fashion_mnist",
    "load_image_folder",
    "load_text_dataset",
    "normalize_audio",
    "read_audio",
    "read_idx",
    "spoken_digits_from_asterisk",
    "tokenize_and_group",
]
