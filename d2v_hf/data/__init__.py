"""Data loading for d2v_hf: text, audio and image datasets with a fixed column contract.

- text: [`load_text_dataset`] -> column `text` (or `text_column`); [`tokenize_and_group`] -> `input_ids`,
  `attention_mask` blocks of `max_seq_length`.
- audio: [`load_audio_folder`], [`spoken_digits_from_asterisk`] -> `input_values` (float32 array), `path`, `label`,
  `sampling_rate`; [`resample`] (scipy polyphase).
- images: [`load_image_folder`], [`load_fashion_mnist`] -> `image` (PIL), `label` (+ `path`, + `pixel_values` with a
  transform); [`image_transform`] -> `pixel_values` (3, H, W) float tensors.

- tokenizers and corpora: [`train_bpe_tokenizer`] (RoBERTa-style byte-level BPE), [`build_default_corpus`] (the
  embedded English corpus of the pretraining demo).
- spoken digits: [`synthesize_spoken_digits`] (espeak-ng voices, a class folder per digit).

Every loader raises a `ValueError` naming the offending file or value for bad input.
"""

from ._common import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS, folder_label_names
from .audio import DIGIT_NAMES, load_audio_folder, read_audio, resample, spoken_digits_from_asterisk
from .default_corpus import build_default_corpus, default_corpus_info
from .image import (
    FASHION_MNIST_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageTransform,
    image_transform,
    load_fashion_mnist,
    load_image_folder,
    pretraining_image_transform,
    read_idx,
)
from .spoken_digits import (
    SPOKEN_DIGITS_TRAIN_VOICES,
    SPOKEN_DIGITS_VALIDATION_VOICES,
    espeak_ng_available,
    synthesize_spoken_digits,
)
from .text import load_text_dataset, pack_samples, tokenize_and_group
from .tokenization import SPECIAL_TOKENS, train_bpe_tokenizer


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "pretraining_image_transform",
    "AUDIO_EXTENSIONS",
    "SPECIAL_TOKENS",
    "SPOKEN_DIGITS_TRAIN_VOICES",
    "SPOKEN_DIGITS_VALIDATION_VOICES",
    "build_default_corpus",
    "default_corpus_info",
    "espeak_ng_available",
    "synthesize_spoken_digits",
    "train_bpe_tokenizer",
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
    "pack_samples",
    "resample",
    "read_audio",
    "read_idx",
    "spoken_digits_from_asterisk",
    "tokenize_and_group",
]
