"""Byte-level BPE tokenizer training (RoBERTa layout) with the `tokenizers` library."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast


SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")  # ids 0..4, RoBERTa's first four plus <mask> = 4


def _iter_training_texts(texts_or_files) -> Iterator[str]:
    from datasets import Dataset, IterableDataset

    from .text import load_text_dataset

    if isinstance(texts_or_files, (str, os.PathLike)):
        texts_or_files = [texts_or_files]  # a single string is a path: training on one text makes no sense
        files = True
    elif isinstance(texts_or_files, (Dataset, IterableDataset)):
        column = "text" if "text" in (texts_or_files.column_names or ["text"]) else texts_or_files.column_names[0]
        yield from (row[column] for row in texts_or_files)
        return
    else:
        texts_or_files = list(texts_or_files)
        # Path objects are always files; plain strings are files only if every one of them names an existing file.
        files = bool(texts_or_files) and all(
            isinstance(x, os.PathLike) or (isinstance(x, str) and len(x) < 4096 and os.path.isfile(x))
            for x in texts_or_files
        )
    if files:
        yield from (row["text"] for row in load_text_dataset(texts_or_files, streaming=True))
    else:
        for text in texts_or_files:
            if not isinstance(text, str):
                raise ValueError(f"expected texts (str) or file paths, got {type(text).__name__}: {text!r:.80}")
            yield text


def train_bpe_tokenizer(
    texts_or_files: Iterable[str] | str | os.PathLike | Iterable[str | os.PathLike],
    vocab_size: int = 8000,
    min_frequency: int = 2,
    model_max_length: int = 512,
) -> PreTrainedTokenizerFast:
    """Trains a RoBERTa-style byte-level BPE tokenizer with the `tokenizers` library.

    Special tokens and ids: `<s>`=0 (bos/cls), `<pad>`=1, `</s>`=2 (eos/sep), `<unk>`=3, `<mask>`=4 (RoBERTa puts
    `<mask>` last; a fixed id 4 keeps it independent of `vocab_size`). `<mask>` strips the space on its left like
    RoBERTa's, so `"a <mask> b"` masks the word "b" would follow. The post-processor gives `<s> A </s>` and
    `<s> A </s></s> B </s>`. No prefix space is added, the 256 byte symbols are always in the vocabulary (no
    `<unk>` in practice), and training is deterministic for the same input.

    Args:
        texts_or_files: texts (an iterable of `str`), a `datasets.Dataset`/`IterableDataset` (column `text`), or
            files readable by [`~d2v_hf.data.load_text_dataset`] (one path, or a list of `Path`s / of strings that
            all name existing files).
        vocab_size (`int`, *optional*, defaults to 8000): the vocabulary size, specials included (at least 262).
        min_frequency (`int`, *optional*, defaults to 2): minimum count for a merge.
        model_max_length (`int`, *optional*, defaults to 512): stored as `tokenizer.model_max_length`.

    Returns:
        `PreTrainedTokenizerFast`: saveable with `save_pretrained`, reloadable with `AutoTokenizer.from_pretrained`.

    Raises:
        ValueError: no text, a too small `vocab_size`, or an unreadable file (from `load_text_dataset`).
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS) + 1:
        raise ValueError(
            f"vocab_size must be at least {256 + len(SPECIAL_TOKENS) + 1} (bytes + specials), got {vocab_size}"
        )
    specials = [AddedToken(t, special=True, normalized=False, lstrip=t == "<mask>") for t in SPECIAL_TOKENS]
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    count = 0

    def counted():
        nonlocal count
        for text in _iter_training_texts(texts_or_files):
            if text and not text.isspace():
                count += 1
                yield text

    tokenizer.train_from_iterator(counted(), trainer=trainer)
    if count == 0:
        raise ValueError("train_bpe_tokenizer got no non-empty text")
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=model_max_length,
    )


__all__ = ["SPECIAL_TOKENS", "train_bpe_tokenizer"]
