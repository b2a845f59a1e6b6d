"""
The study's data, all from `data_dir` (`../shared/data`): the text corpus slice and the byte-level BPE tokenizer every
text arm shares, Fashion-MNIST, the unlabelled speech corpus (the recordings plus the training voices' digits), and
the evaluation protocol of the checkpoint comparison ([`comparison_arguments`]) that the probes and fine-tuning
runs share with `compare_checkpoints.py`.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from d2v_hf.atomic_io import atomic_write_dir, atomic_write_text
from d2v_hf.data import AUDIO_EXTENSIONS, espeak_ng_available, train_bpe_tokenizer
from d2v_hf.data._common import scan_folder
from d2v_hf.finetuning import load_glue_datasets, task_to_keys

from comparison import CompareArguments
from comparison_tasks import TASKS, task_data
from study_config import TEXT_CORPORA


def check_study_inputs(args) -> None:
    """Missing data or tools fail before anything runs or is written."""
    data = Path(args.data_dir)
    needed = {
        "text": [*text_corpus_files(data, args.text_corpus), data / "glue" / "sst2", data / "glue" / "stsb"],
        "vision": [data / "vision" / "fashion-mnist"],
        "audio": [data / "speech"],
    }
    if "xquad" in args.finetune_task_list:
        needed["text"].append(data / "xquad")
    missing = [str(path) for modality in args.modality_list for path in needed[modality] if not path.exists()]
    if missing:
        raise ValueError(f"--data_dir {args.data_dir}: missing {missing} (see ../shared/data/README.md).")
    if "audio" in args.modality_list and not espeak_ng_available():
        raise ValueError(
            "The speech arms are probed on spoken digits synthesized with espeak-ng, which is not installed "
            "(Debian/Ubuntu: apt-get install espeak-ng); install it or leave audio out of --modalities."
        )


def text_corpus_files(data_dir: str | os.PathLike, text_corpus: str) -> list[Path]:
    data = Path(data_dir)
    if text_corpus == "gcide":
        return [data / "corpus" / "gcide_en.txt.gz"]
    return [data / "glue" / "sst2" / "train.tsv", data / "glue" / "stsb" / "train.tsv"]


def read_text_corpus(data_dir: str | os.PathLike, text_corpus: str) -> list[str]:
    """The non-empty lines of `text_corpus` (a key of `TEXT_CORPORA`), in file order."""
    if text_corpus == "gcide":
        with gzip.open(text_corpus_files(data_dir, text_corpus)[0], "rt", encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        return [line for line in lines if line and not line.startswith("00-database")]
    lines = []
    for task, path in zip(("sst2", "stsb"), text_corpus_files(data_dir, text_corpus)):  # as run_glue.py reads them
        train = load_glue_datasets(task, train_file=str(path))["train"]
        columns = [train[key] for key in task_to_keys[task] if key is not None]  # stsb: both sentences of a pair
        lines += [text.strip() for row in zip(*columns) for text in row if text and text.strip()]
    return lines


def prepare_corpus(lines: list[str], source: str, output_file: str | os.PathLike, max_lines: int | None) -> dict:
    """
    Writes `max_lines` evenly spaced lines of `lines` to `output_file` (all when `max_lines` is `None`). GCIDE is
    sorted alphabetically, so even spacing keeps the whole vocabulary range. Returns a description (source, lines,
    words, characters).
    """
    if max_lines is not None and max_lines < len(lines):
        stride = len(lines) / max_lines
        lines = [lines[int(i * stride)] for i in range(max_lines)]
    if not lines:
        raise ValueError(f"{source}: no non-empty lines to pretrain on.")
    atomic_write_text(output_file, "\n".join(lines) + "\n")
    return {
        "source": source,
        "lines": len(lines),
        "words": sum(len(line.split()) for line in lines),
        "chars": sum(len(line) for line in lines),
    }


def comparison_arguments(args, modality: str | None = None, probes: bool = False) -> CompareArguments:
    """
    The probes' (`probes=True`: evaluated on `probe_eval_samples`) and fine-tuning runs' protocol, as
    `compare_checkpoints.py` runs it, with the study's sizes.
    """
    rates = ",".join(str(rate) for rate in args.learning_rates(modality)) if modality else None
    return CompareArguments(
        checkpoints="study=per-arm",  # the study passes each checkpoint itself
        output_dir=args.output_dir,
        data_dir=args.data_dir,
        seeds=args.seeds,
        learning_rates=rates,
        max_steps=args.finetune_steps,
        batch_size=args.finetune_batch_size,
        max_train_samples=args.finetune_train_samples,
        max_eval_samples=args.probe_eval_samples if probes else args.finetune_eval_samples,
        probe_train_samples=args.probe_train_samples,
        max_seq_length=args.max_seq_length,
        qa_max_seq_length=args.qa_max_seq_length,
        qa_doc_stride=args.qa_doc_stride,
        audio_clip_seconds=args.audio_clip_seconds,
        digit_voices=args.digit_voices,
    )


def prepare_data(args) -> dict:
    """Prepares what the modalities of the study read; returns the paths (and the corpus description)."""
    out = Path(args.output_dir)
    data: dict = {"fashion_mnist": str(Path(args.data_dir) / "vision" / "fashion-mnist")}
    if "text" in args.modality_list:
        data["corpus"], data["tokenizer"] = str(out / "corpus.txt"), str(out / "tokenizer")
        # the corpus and tokenizer are made once per setting: a resumed study with another corpus remakes them
        settings = {key: getattr(args, key) for key in ("text_corpus", "corpus_lines", "tokenizer_vocab_size")}
        made_for = out / "corpus_settings.json"
        if not made_for.is_file() or json.loads(made_for.read_text()).get("settings") != settings:
            # the record goes first and comes back last: a run stopped in between never leaves a record that
            # vouches for a corpus or tokenizer made for other settings
            made_for.unlink(missing_ok=True)
            source = read_text_corpus(args.data_dir, args.text_corpus)
            info = prepare_corpus(source, TEXT_CORPORA[args.text_corpus], data["corpus"], args.corpus_lines)
            lines = Path(data["corpus"]).read_text(encoding="utf-8").splitlines()
            tokenizer = train_bpe_tokenizer(lines, vocab_size=args.tokenizer_vocab_size)
            atomic_write_dir(data["tokenizer"], tokenizer.save_pretrained)
            atomic_write_text(made_for, json.dumps({"settings": settings, "corpus": info}, indent=1))
        data["corpus_info"] = json.loads(made_for.read_text())["corpus"]
    if "audio" in args.modality_list:
        digits = task_data(comparison_arguments(args), TASKS["spoken_digits"])  # synthesized once
        data.update(digits_train=digits["train_dir"], digits_validation=digits["validation_dir"])
        corpus = out / "data" / "speech_corpus"
        if not corpus.is_dir():
            recordings = scan_folder(Path(args.data_dir) / "speech", AUDIO_EXTENSIONS, "audio")
            corpus.mkdir(parents=True)
            for i, path in enumerate(recordings + scan_folder(digits["train_dir"], AUDIO_EXTENSIONS, "audio")):
                (corpus / f"{i:05d}{path.suffix}").symlink_to(path.resolve())
        data["speech_corpus"] = str(corpus)
    return data


__all__ = [
    "check_study_inputs",
    "comparison_arguments",
    "prepare_corpus",
    "prepare_data",
    "read_text_corpus",
    "text_corpus_files",
]
