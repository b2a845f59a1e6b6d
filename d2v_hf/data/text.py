"""Text loading (.txt / .txt.gz / .csv / .tsv / .json / .jsonl) and run_mlm-style tokenize-and-chunk."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from datasets import Dataset, Features, IterableDataset, Value, concatenate_datasets, load_dataset

from ._common import as_path_list, check_file, iter_utf8_lines


TEXT_SUFFIXES = (".txt", ".text")
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t"}
JSON_SUFFIXES = (".json", ".jsonl")


def _file_format(path: Path) -> str:
    name = path.name.lower()
    suffix = Path(name[:-3] if name.endswith(".gz") else name).suffix
    if suffix in TEXT_SUFFIXES or suffix in TABLE_SUFFIXES or suffix in JSON_SUFFIXES:
        return suffix
    supported = ", ".join(TEXT_SUFFIXES + tuple(TABLE_SUFFIXES) + JSON_SUFFIXES)
    raise ValueError(f"{path}: unsupported text file type {suffix!r} (supported: {supported}, optionally .gz)")


def _missing_column(path: Path, column: str, found: Iterable[str]) -> ValueError:
    return ValueError(f"{path}: text column {column!r} not found; columns found: {sorted(found)}")


def _as_text(value) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text.strip() or None


def _iter_table(path: Path, delimiter: str, column: str) -> Iterator[str | None]:
    # csv.reader consumes the line iterator itself, so quoted fields spanning lines still parse.
    reader = csv.DictReader((line for _, line in iter_utf8_lines(path)), delimiter=delimiter)
    try:
        if reader.fieldnames is None:
            return  # no header line at all: reported as an empty file by the caller
        if column not in reader.fieldnames:
            raise _missing_column(path, column, reader.fieldnames)
        for row in reader:
            yield _as_text(row.get(column))
    except csv.Error as err:
        raise ValueError(f"{path}: malformed CSV near line {reader.line_num}: {err}") from None


def _records_from_json_document(path: Path, doc, column: str) -> list[dict]:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        if doc and all(isinstance(v, list) for v in doc.values()) and column in doc:
            return [{column: v} for v in doc[column]]  # column-oriented {"text": [...], ...}
        nested = [v for v in doc.values() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)]
        if len(nested) == 1:
            return nested[0]  # {"data": [{...}, ...]}
        raise _missing_column(path, column, doc.keys())
    raise ValueError(f"{path}: expected a JSON list of objects or JSON lines, got a JSON {type(doc).__name__}")


def _iter_json(path: Path, column: str) -> Iterator[str | None]:
    lines = iter_utf8_lines(path)
    if path.name.lower().removesuffix(".gz").endswith(".json"):
        # A .json file is either one JSON document or JSON lines (datasets accepts both); decide by parsing it.
        content = "".join(line for _, line in lines)
        try:
            doc = json.loads(content) if content.strip() else []
        except json.JSONDecodeError:
            lines = enumerate(content.splitlines(keepends=True), start=1)
        else:
            records = _records_from_json_document(path, doc, column)
            lines = ((i, json.dumps(r)) for i, r in enumerate(records, start=1))
    checked = False
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: line {number} is not valid JSON ({err.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}: record {number} is a JSON {type(record).__name__}, expected an object")
        if not checked:  # like datasets, the first record defines the columns
            if column not in record:
                raise _missing_column(path, column, record.keys())
            checked = True
        yield _as_text(record.get(column))


def _iter_file_texts(path: Path, column: str) -> Iterator[str]:
    """Yields the non-empty texts of one file; raises ValueError for every problem, naming the file."""
    check_file(path, "text file")
    fmt = _file_format(path)
    if fmt in TEXT_SUFFIXES:
        values = (line.strip() or None for _, line in iter_utf8_lines(path))
    elif fmt in TABLE_SUFFIXES:
        values = _iter_table(path, TABLE_SUFFIXES[fmt], column)
    else:
        values = _iter_json(path, column)
    count = 0
    for text in values:
        if text is not None:
            count += 1
            yield text
    if count == 0:
        raise ValueError(f"{path}: the file is empty (no non-empty text{'' if fmt in TEXT_SUFFIXES else ' values'})")


def _text_generator(files: list[str], column: str) -> Iterator[dict]:
    for file in files:
        for text in _iter_file_texts(Path(file), column):
            yield {column: text}


# The `datasets` builder of each file type, and its arguments.
_BUILDERS = {".txt": "text", ".text": "text", ".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json"}


def _json_layout(path: Path, column: str) -> tuple[str | None, bool]:
    """`(field, column_oriented)` of a validated .json file: the key holding its records (`{"data": [...]}`), and
    whether it is one `{column: [values]}` object, which the json builder does not read."""
    if not path.name.lower().removesuffix(".gz").endswith(".json"):
        return None, False
    lines = "".join(line for _, line in iter_utf8_lines(path))
    try:
        doc = json.loads(lines)
    except json.JSONDecodeError:
        return None, False  # JSON lines
    if isinstance(doc, dict):
        if doc and all(isinstance(v, list) for v in doc.values()) and column in doc:
            return None, True
        return next(
            k for k, v in doc.items() if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)
        ), False
    return None, False


def _load_file(path: Path, column: str) -> Dataset:
    """One validated file through `datasets.load_dataset` (text / csv / json builders), as stripped non-empty texts."""
    fmt = _file_format(path)
    kwargs = {"delimiter": TABLE_SUFFIXES[fmt]} if fmt in TABLE_SUFFIXES else {}
    if fmt in JSON_SUFFIXES:
        field, column_oriented = _json_layout(path, column)
        if column_oriented:
            return Dataset.from_dict({column: list(_iter_file_texts(path, column))})
        kwargs["field"] = field
    source = "text" if fmt in TEXT_SUFFIXES else column
    dataset = load_dataset(_BUILDERS[fmt], data_files=str(path), split="train", **kwargs).select_columns([source])
    dataset = dataset.map(
        lambda batch: {column: [_as_text(value) for value in batch[source]]},
        batched=True,
        remove_columns=[source],
        features=Features({column: Value("string")}),
        desc=f"Reading {path.name}",
    )
    return dataset.filter(lambda batch: [text is not None for text in batch[column]], batched=True)


def load_text_dataset(
    files: str | os.PathLike | list[str | os.PathLike], text_column: str = "text", streaming: bool = False
) -> Dataset | IterableDataset:
    """Loads local text files into a one-column dataset of non-empty texts.

    Supported files (each optionally gzip-compressed with a `.gz` suffix): `.txt` (one example per non-empty line,
    stripped), `.csv` / `.tsv` (with a header row) and `.json` / `.jsonl` (JSON lines, a list of objects, or
    `{"data": [objects]}`), which must contain `text_column`. Empty and whitespace-only values are dropped. Files are
    read in the order given.

    The non-streaming dataset is read by `datasets.load_dataset` (the `text`, `csv` and `json` builders: an
    Arrow-backed, memory-mapped dataset in the `datasets` cache) after every file has been validated line by line,
    so that a bad file fails with a message naming the file and the line. The streaming dataset reads lazily, one
    shard per file, with the same reader as the validation: `datasets`' streaming builders cannot report the line
    of a bad record, so it raises the same ValueErrors when it reaches the offending line.

    Args:
        files (`str`, `os.PathLike` or a list of them): the files to read.
        text_column (`str`, *optional*, defaults to `"text"`): the column holding the text in csv/json files, and
            the name of the output column for every file type.
        streaming (`bool`, *optional*, defaults to `False`): return an `IterableDataset` that reads lazily.

    Returns:
        `datasets.Dataset` or `datasets.IterableDataset`: a single string column named `text_column`.

    Raises:
        ValueError: a missing file, an unsupported suffix, an empty file, a missing text column (the message lists the
            columns found), or a non-UTF-8 line (the message gives the file and the 1-based line number).
    """
    paths = as_path_list(files, "text file")
    for path in paths:  # cheap checks up front even when streaming, so typos fail before training starts
        check_file(path, "text file")
        _file_format(path)
    features = Features({text_column: Value("string")})
    str_paths = [str(p) for p in paths]
    if streaming:
        return IterableDataset.from_generator(
            _text_generator, features=features, gen_kwargs={"files": str_paths, "column": text_column}
        )
    for path in paths:  # every problem, named by file and line, before datasets reads anything
        for _ in _iter_file_texts(path, text_column):
            pass
    parts = [_load_file(path, text_column) for path in paths]
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def pack_samples(samples: list[list[int]], max_seq_length: int) -> dict:
    """
    Packs whole samples, in order, into rows of at most `max_seq_length` tokens (a row is closed when the next sample
    does not fit); `position_ids` count from 0 within each sample. Order-preserving rather than best-fit: one pass,
    the same rows for the same data, streaming included.
    """
    rows, positions, row, row_positions = [], [], [], []
    for sample in samples:
        if row and len(row) + len(sample) > max_seq_length:
            rows.append(row)
            positions.append(row_positions)
            row, row_positions = [], []
        row.extend(sample)
        row_positions.extend(range(len(sample)))
    if row:
        rows.append(row)
        positions.append(row_positions)
    return {"input_ids": rows, "attention_mask": [[1] * len(r) for r in rows], "position_ids": positions}


def tokenize_and_group(
    dataset: Dataset | IterableDataset,
    tokenizer,
    max_seq_length: int,
    text_column: str = "text",
    streaming: bool = False,
    batch_size: int = 1000,
    num_proc: int | None = None,
    sample_break_mode: str = "none",
    pack_documents: bool = False,
) -> Dataset | IterableDataset:
    """Tokenizes texts and packs them into blocks of exactly `max_seq_length` tokens (run_mlm's `group_texts`).

    Layout (`sample_break_mode="none"`, the default): texts are tokenized without special tokens and concatenated
    into one stream, with the tokenizer's eos (`</s>`) after every text as a document separator (as fairseq's
    data2vec 2.0 text task, `sample_break_mode: none`).
    The stream is cut into chunks of `max_seq_length - 2` tokens and each block is `<s> chunk </s>` (bos/cls first,
    eos/sep last; when the tokenizer has neither, chunks are `max_seq_length` tokens). A text ending right at the
    end of a chunk therefore gives `</s></s>`, as in RoBERTa sentence pairs. As in run_mlm, the tail of each batch
    of `batch_size` texts that does not fill a whole block is dropped, so every block is full and
    `attention_mask` is all ones.

    `sample_break_mode="complete_doc"` (the data2vec 1.0 text recipe's layout): a sample never crosses a text's
    boundary. Each text is cut into chunks of at most `max_seq_length - 2` tokens and each chunk is a sample
    `<s> chunk </s>` of its own length, padded by the collator. With `pack_documents=True` those samples are packed,
    whole and in order, into rows of at most `max_seq_length` tokens with a `position_ids` column that starts again at
    0 at every sample: the model lets each token attend only within its own sample (see
    [`Data2VecForPretraining.forward`]), so a packed batch gives the padded batch's targets and loss without
    computing the padding.

    Args:
        dataset (`Dataset` or `IterableDataset`): the texts, e.g. from [`load_text_dataset`].
        tokenizer (`PreTrainedTokenizerBase`): the tokenizer (fast tokenizers are much quicker).
        max_seq_length (`int`): the block length in tokens, at most `tokenizer.model_max_length`.
        text_column (`str`, *optional*, defaults to `"text"`): the column with the text.
        streaming (`bool`, *optional*, defaults to `False`): treat `dataset` as an `IterableDataset`; implied when it
            is one.
        batch_size (`int`, *optional*, defaults to 1000): texts concatenated together before chunking.
        num_proc (`int`, *optional*): processes for `Dataset.map` (ignored when streaming).
        sample_break_mode (`str`, *optional*, defaults to `"none"`): `"none"` (one stream cut into full blocks) or
            `"complete_doc"` (samples never cross a text's boundary), as fairseq's option of that name.
        pack_documents (`bool`, *optional*, defaults to `False`): with `"complete_doc"`, pack whole samples into rows
            of at most `max_seq_length` tokens, with `position_ids`.

    Returns:
        `Dataset` or `IterableDataset`: columns `input_ids` and `attention_mask` (lists of `max_seq_length` ints, or
        of at most that many with `"complete_doc"`), and `position_ids` when `pack_documents`; all other columns are
        removed.

    Raises:
        ValueError: an unusable `max_seq_length`, a missing `text_column` (lists the columns), or (non-streaming)
            text too short for a single block.
    """
    streaming = streaming or isinstance(dataset, IterableDataset)
    columns = dataset.column_names
    if columns is not None and text_column not in columns:
        raise ValueError(f"text column {text_column!r} not found in the dataset; columns found: {columns}")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.cls_token_id
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    prefix, suffix = ([bos] if bos is not None else []), ([eos] if eos is not None else [])
    budget = int(max_seq_length) - len(prefix) - len(suffix)
    if budget < 1:
        raise ValueError(f"max_seq_length={max_seq_length} leaves no room for text between the special tokens")
    model_max = getattr(tokenizer, "model_max_length", None)
    if model_max is not None and model_max < 1e9 and max_seq_length > model_max:
        raise ValueError(f"max_seq_length={max_seq_length} exceeds tokenizer.model_max_length={model_max}")

    if sample_break_mode not in ("none", "complete_doc"):
        raise ValueError(f"sample_break_mode={sample_break_mode!r}; expected 'none' or 'complete_doc'.")
    if pack_documents and sample_break_mode != "complete_doc":
        raise ValueError("pack_documents=True packs the samples of sample_break_mode='complete_doc'; set it.")

    def group(batch):
        texts = [t for t in batch[text_column] if t]
        # verbose=False: long unsplit texts are expected here and are chunked below, so skip the length warning.
        encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)["input_ids"]
        if sample_break_mode == "complete_doc":
            samples = [prefix + ids[i : i + budget] + suffix for ids in encoded for i in range(0, len(ids), budget)]
            if pack_documents:
                return pack_samples(samples, max_seq_length)
            return {"input_ids": samples, "attention_mask": [[1] * len(sample) for sample in samples]}
        stream = []
        for ids in encoded:
            stream.extend(ids)
            stream.extend(suffix)
        usable = len(stream) // budget * budget
        blocks = [prefix + stream[i : i + budget] + suffix for i in range(0, usable, budget)]
        return {"input_ids": blocks, "attention_mask": [[1] * len(b) for b in blocks]}

    remove = columns if columns is not None else [text_column]
    if streaming:
        return dataset.map(group, batched=True, batch_size=batch_size, remove_columns=remove)
    grouped = dataset.map(
        group,
        batched=True,
        batch_size=batch_size,
        remove_columns=remove,
        num_proc=num_proc,
        desc=f"Tokenizing and grouping into blocks of {max_seq_length}",
    )
    if len(grouped) == 0 and sample_break_mode == "complete_doc":
        raise ValueError("no sample could be made: every text is empty")
    if len(grouped) == 0:
        raise ValueError(
            f"no block of {max_seq_length} tokens could be made: each batch of {batch_size} texts has fewer than "
            f"{budget} tokens; use more text or a smaller max_seq_length"
        )
    return grouped


__all__ = ["load_text_dataset", "pack_samples", "tokenize_and_group"]
