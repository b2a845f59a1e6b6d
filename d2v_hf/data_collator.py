"""
Data collators for data2vec 1.0 and 2.0 pretraining: they pad, build attention masks and draw the student's mask
(2.0: the masks of the `clone_batch` copies) with the library's masking functions. The model itself builds the
masked student input from the original one.

Masks are drawn from a private generator seeded by (collator seed, the example's content), one example at a time:
the global RNG is never touched (so resuming from a checkpoint replays the same masks and dropout), data-loader
workers need no coordination, and an example gets the same mask whatever batch or process it lands in.
"""

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase, Wav2Vec2FeatureExtractor
from transformers.data.data_collator import pad_without_fast_tokenizer_warning

from .configuration_data2vec_pretraining import Data2VecPretrainingConfig
from .masking import (
    audio_frame_attention_mask,
    audio_frame_lengths,
    audio_receptive_field,
    compute_audio_span_mask,
    compute_text_bert_mask,
    compute_text_span_mask,
    compute_vision_block_mask,
    trim_to_same_count,
)
from .masking_data2vec2 import compute_block_mask_1d, compute_inverse_block_mask, compute_random_mask


def example_generator(seed: int, *arrays) -> torch.Generator:
    """A generator seeded by `seed` and the bytes of the example, so that its mask does not depend on batching."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(str(seed).encode())
    for array in arrays:
        digest.update(np.ascontiguousarray(np.asarray(array)).tobytes())
    return torch.Generator().manual_seed(int.from_bytes(digest.digest(), "little") & ((1 << 63) - 1))


def check_examples(examples: list[dict], collator) -> None:
    """A clear error for an empty batch (a data loader over an empty dataset, or a filter that removed everything)."""
    if len(examples) == 0:
        raise ValueError(f"{type(collator).__name__} got an empty batch: the dataset (or its last shard) is empty.")


def pad_input_ids(tokenizer: PreTrainedTokenizerBase, examples: list[dict], pad_to_multiple_of: int | None):
    """Right-pads the examples' `input_ids` with `tokenizer.pad`: `(input_ids, attention_mask)` long tensors."""
    ids = [list(example["input_ids"]) for example in examples]
    if any(len(row) == 0 for row in ids):
        raise ValueError("An example has no tokens (empty input_ids); filter empty lines before collating.")
    batch = pad_without_fast_tokenizer_warning(
        tokenizer,
        {"input_ids": ids},
        padding=True,
        pad_to_multiple_of=pad_to_multiple_of,
        padding_side="right",  # the masks are drawn over each example's own leading positions
        return_attention_mask=True,
        return_tensors="pt",
    )
    return batch["input_ids"].long(), batch["attention_mask"].long()


def pad_position_ids(examples: list[dict], length: int) -> torch.Tensor:
    """The packed rows' `position_ids` (0 at the start of every sample), right-padded with 0 to `length`."""
    if any("position_ids" not in example for example in examples):
        raise ValueError("Some examples have position_ids and some do not: packed and unpacked rows cannot mix.")
    rows = [list(example["position_ids"]) for example in examples]
    for row, example in zip(rows, examples):
        if len(row) != len(example["input_ids"]):
            raise ValueError(
                f"An example has {len(row)} position_ids for {len(example['input_ids'])} input_ids; they must match."
            )
    return torch.tensor([row + [0] * (length - len(row)) for row in rows], dtype=torch.long)


def pad_and_normalize_audio(clips: list[np.ndarray], normalize: bool = True, min_length: int = 0):
    """
    Right-pads raw mono clips to the longest one (at least `min_length` samples) with `Wav2Vec2FeatureExtractor`,
    which also normalises each clip to zero mean and unit variance over its real samples (data2vec's
    `normalize: true`). Returns `(input_values, attention_mask)`: float32 and long tensors `(batch, length)`.
    """
    length = max(min_length, max(len(clip) for clip in clips))
    extractor = Wav2Vec2FeatureExtractor(feature_size=1, padding_value=0.0, do_normalize=normalize)
    batch = extractor(
        clips,
        sampling_rate=extractor.sampling_rate,
        padding="max_length",
        max_length=length,
        return_attention_mask=True,
        return_tensors="pt",
    )
    return batch["input_values"].float(), batch["attention_mask"].long()


@dataclass
class DataCollatorForData2VecText:
    """
    Pads `input_ids` (lists from a tokenizer), adds `attention_mask` and `mask`; with `text_mask_strategy="bert"`
    also `student_input_ids` (80% `<mask>`, 10% random, 10% unchanged). Padding and special tokens are never masked
    when `mask_special_tokens` is False; fairseq masks `<s>`/`</s>` too, which is the default here.
    """

    tokenizer: PreTrainedTokenizerBase
    config: Data2VecPretrainingConfig
    pad_to_multiple_of: int | None = None
    mask_special_tokens: bool = True
    seed: int = 0

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        check_examples(examples, self)
        input_ids, attention_mask = pad_input_ids(self.tokenizer, examples, self.pad_to_multiple_of)
        ids = [list(example["input_ids"]) for example in examples]
        special = None
        if not self.mask_special_tokens:
            special_ids = torch.tensor(self.tokenizer.all_special_ids)
            special = torch.isin(input_ids, special_ids).long()

        config = self.config
        masks, students = [], []
        for i, row in enumerate(ids):
            generator = example_generator(self.seed, np.asarray(row, dtype=np.int64))
            row_special = None if special is None else special[i : i + 1]
            if config.text_mask_strategy == "span":
                masks.append(
                    compute_text_span_mask(
                        attention_mask[i : i + 1], config.mask_prob, config.mask_length, row_special, generator
                    )
                )
            else:
                mask, student = compute_text_bert_mask(
                    input_ids[i : i + 1],
                    attention_mask[i : i + 1],
                    config.mask_token_id,
                    config.backbone_config.vocab_size,
                    mask_prob=config.mask_prob,
                    random_token_prob=config.mask_random_token_prob,
                    leave_unmasked_prob=config.mask_leave_unmasked_prob,
                    special_tokens_mask=row_special,
                    generator=generator,
                    special_token_ids=self.tokenizer.all_special_ids,
                )
                masks.append(mask)
                students.append(student)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "mask": torch.cat(masks)}
        if students:
            batch["student_input_ids"] = torch.cat(students)
        if "position_ids" in examples[0]:  # packed samples (tokenize_and_group's pack_documents)
            batch["position_ids"] = pad_position_ids(examples, input_ids.shape[1])
        return batch


@dataclass
class DataCollatorForData2VecAudio:
    """
    Batches raw 16 kHz audio (`input_values` lists or arrays). As fairseq's unlabeled audio pretraining, every
    example is randomly cropped to the shortest one of the batch (`crop_to_shortest=True`, no padding); otherwise
    examples are right-padded with an `attention_mask`. `max_samples` crops longer examples to a random window.
    Each example is normalised to zero mean and unit variance when `normalize` (data2vec's `task.normalize`).
    """

    config: Data2VecPretrainingConfig
    crop_to_shortest: bool = True
    max_samples: int | None = None
    normalize: bool = True
    seed: int = 0

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        check_examples(examples, self)
        backbone = self.config.backbone_config
        waves = [np.asarray(example["input_values"], dtype=np.float32).reshape(-1) for example in examples]
        field = audio_receptive_field(backbone.conv_kernel, backbone.conv_stride)
        short = [len(w) for w in waves if len(w) < field]
        if short:
            raise ValueError(
                f"An audio example has {short[0]} samples, fewer than the feature encoder's receptive field of "
                f"{field} samples; filter out clips shorter than {field / 16000:.3f} s at 16 kHz."
            )
        target = min(len(w) for w in waves) if self.crop_to_shortest else max(len(w) for w in waves)
        if self.max_samples:
            target = min(target, self.max_samples)
        generators = [example_generator(self.seed, w[:: max(1, len(w) // 4096)]) for w in waves]
        cropped = []
        for wave, generator in zip(waves, generators):
            if len(wave) > target:
                start = int(torch.randint(0, len(wave) - target + 1, (1,), generator=generator))
                wave = wave[start : start + target]
            cropped.append(wave)
        input_values, attention_mask = pad_and_normalize_audio(cropped, self.normalize)
        num_frames = int(audio_frame_lengths(target, backbone.conv_kernel, backbone.conv_stride))
        frames = audio_frame_attention_mask(attention_mask, num_frames, backbone.conv_kernel, backbone.conv_stride)
        # one draw per example, then fairseq's require_same_masks trimming across the batch
        rows = [
            compute_audio_span_mask(
                frames[i : i + 1],
                self.config.mask_prob,
                self.config.mask_length,
                require_same_masks=False,
                generator=generator,
            )
            for i, generator in enumerate(generators)
        ]
        mask = trim_to_same_count(torch.cat(rows), generators)
        batch = {"input_values": input_values, "mask": mask}
        if not bool(attention_mask.all()):
            batch["attention_mask"] = attention_mask
        return batch


@dataclass
class DataCollatorForData2VecVision:
    """Stacks `pixel_values` (C, H, W tensors) and draws BEiT block-wise masks over the patch grid."""

    config: Data2VecPretrainingConfig
    seed: int = 0

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        check_examples(examples, self)
        pixel_values = torch.stack([torch.as_tensor(example["pixel_values"]) for example in examples])
        patch = self.config.backbone_config.patch_size
        grid = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
        masks = [
            compute_vision_block_mask(
                1,
                grid,
                self.config.num_mask_patches,
                min_num_patches=self.config.min_mask_patches_per_block,
                generator=example_generator(self.seed, image.numpy()[:, ::4, ::4]),
            )
            for image in pixel_values
        ]
        return {"pixel_values": pixel_values, "mask": torch.cat(masks)}


@dataclass
class DataCollatorForData2Vec2Text:
    """
    Pads `input_ids`, adds `attention_mask` `(batch, seq)` and `mask` `(batch * clone_batch, seq)`: the
    `config.clone_batch` masks of each example, drawn from a generator seeded by (seed, the example's tokens), so an
    example gets the same masks whatever batch or process it lands in.
    """

    tokenizer: PreTrainedTokenizerBase
    config: Data2VecPretrainingConfig
    pad_to_multiple_of: int | None = None
    seed: int = 0

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        check_examples(examples, self)
        if "position_ids" in examples[0]:
            raise ValueError(
                "These examples pack several samples per row (position_ids, pack_documents=True), a data2vec 1.0 "
                "layout; data2vec 2.0 trains on unpacked rows: drop pack_documents."
            )
        input_ids, attention_mask = pad_input_ids(self.tokenizer, examples, self.pad_to_multiple_of)
        ids = [list(example["input_ids"]) for example in examples]
        clone_batch = self.config.clone_batch
        mask = torch.zeros((len(ids) * clone_batch, input_ids.shape[1]), dtype=torch.bool)
        for i, row in enumerate(ids):
            # drawn over the example's own length, so that padding to another batch's length changes nothing
            generator = example_generator(self.seed, np.asarray(row, dtype=np.int64))
            rows = compute_random_mask(torch.ones(1, len(row)), self.config.mask_prob, clone_batch, generator)
            mask[i * clone_batch : (i + 1) * clone_batch, : len(row)] = rows
        return {"input_ids": input_ids, "attention_mask": attention_mask, "mask": mask}


@dataclass
class DataCollatorForData2Vec2Vision:
    """
    Stacks `pixel_values` `(batch, C, H, W)` and adds `mask` `(batch * clone_batch, num_patches)`: the
    `config.clone_batch` inverse block masks of each image, drawn from a generator seeded by (seed, the image).
    """

    config: Data2VecPretrainingConfig
    seed: int = 0

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        check_examples(examples, self)
        pixel_values = torch.stack([torch.as_tensor(example["pixel_values"]) for example in examples])
        grid_size = pixel_values.shape[-1] // self.config.backbone_config.patch_size
        masks = [
            compute_inverse_block_mask(
                grid_size,
                self.config.mask_prob,
                self.config.mask_length,
                self.config.mask_prob_adjust,
                self.config.clone_batch,
                example_generator(self.seed, image.numpy()[:, ::4, ::4]),
            )
            for image in pixel_values
        ]
        return {"pixel_values": pixel_values, "mask": torch.cat(masks)}


class DataCollatorForData2Vec2Audio(DataCollatorForData2VecAudio):
    """
    The data2vec audio collator (random crop of every clip to the shortest of the batch, normalisation), with
    `mask` `(batch * clone_batch, num_frames)`: the `config.clone_batch` block masks of each clip, drawn from a
    generator seeded by (seed, the cropped clip). data2vec 2.0 needs `crop_to_shortest=True` (no padding).
    """

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        check_examples(examples, self)
        if not self.crop_to_shortest:
            raise ValueError("crop_to_shortest=False: data2vec 2.0 audio needs unpadded batches of equal length.")
        batch = super().__call__(examples)
        values, config = batch["input_values"], self.config
        num_frames = batch["mask"].shape[1]
        masks = [
            compute_block_mask_1d(
                num_frames,
                config.mask_prob,
                config.mask_length,
                config.mask_prob_adjust,
                config.clone_batch,
                example_generator(self.seed + 1, wave.numpy()[:: max(1, len(wave) // 4096)]),
            )
            for wave in values
        ]
        return {"input_values": values, "mask": torch.cat(masks)}


def _data2vec2_collator_for(config: Data2VecPretrainingConfig, tokenizer=None, **kwargs):
    """The data2vec 2.0 collator of the config's modality."""
    if config.modality == "vision":
        return DataCollatorForData2Vec2Vision(config, **kwargs)
    if config.modality == "audio":
        return DataCollatorForData2Vec2Audio(config, **kwargs)
    if tokenizer is None:
        raise ValueError("The text collator needs a tokenizer.")
    return DataCollatorForData2Vec2Text(tokenizer, config, **kwargs)


def data_collator_for(config: Data2VecPretrainingConfig, tokenizer=None, **kwargs):
    """The collator of the config's modality (and of data2vec 2.0 when `config.mode == "data2vec2"`)."""
    if config.mode == "data2vec2":
        return _data2vec2_collator_for(config, tokenizer, **kwargs)
    if config.modality == "text":
        if tokenizer is None:
            raise ValueError("The text collator needs a tokenizer.")
        return DataCollatorForData2VecText(tokenizer, config, **kwargs)
    if config.modality == "audio":
        return DataCollatorForData2VecAudio(config, **kwargs)
    return DataCollatorForData2VecVision(config, **kwargs)


__all__ = [
    "DataCollatorForData2Vec2Audio",
    "DataCollatorForData2Vec2Text",
    "DataCollatorForData2Vec2Vision",
    "DataCollatorForData2VecAudio",
    "DataCollatorForData2VecText",
    "DataCollatorForData2VecVision",
    "data_collator_for",
    "check_examples",
    "example_generator",
    "pad_and_normalize_audio",
    "pad_input_ids",
]
