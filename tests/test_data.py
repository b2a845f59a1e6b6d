"""Tests for d2v_hf.data: text, audio and image loaders, BPE training, the default corpus, audio collation."""

import gzip
import json
import logging
import struct

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from d2v_hf.data import (
    DIGIT_NAMES,
    FASHION_MNIST_CLASSES,
    build_default_corpus,
    default_corpus_info,
    image_transform,
    load_audio_folder,
    load_fashion_mnist,
    load_image_folder,
    load_text_dataset,
    read_audio,
    read_idx,
    spoken_digits_from_asterisk,
    tokenize_and_group,
    train_bpe_tokenizer,
)
from d2v_hf.data_collator import pad_and_normalize_audio


LINES = ["The cat sat on the mat.", "", "A dog barked at the moon.", "   ", "Birds fly south in winter."]
EXPECTED = [line for line in LINES if line.strip()]


def write_lines(path, lines, compress=False):
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


@pytest.fixture(scope="module")
def corpus():
    return build_default_corpus()


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return train_bpe_tokenizer(corpus[:400], vocab_size=600)


# ----------------------------------------------------------------------------------------------------------- text


def test_load_txt_gz_csv_json(tmp_path):
    txt = write_lines(tmp_path / "a.txt", LINES)
    gz = write_lines(tmp_path / "b.txt.gz", LINES, compress=True)
    (tmp_path / "c.csv").write_text('text,label\n"Hello, world",1\n,0\n"two\nlines",1\n', encoding="utf-8")
    (tmp_path / "d.jsonl").write_text('{"text": "first"}\n\n{"text": "second", "x": 1}\n', encoding="utf-8")
    (tmp_path / "e.json").write_text(json.dumps([{"text": "list one"}, {"text": None}]), encoding="utf-8")
    (tmp_path / "f.json").write_text(json.dumps({"version": 1, "data": [{"text": "nested"}]}), encoding="utf-8")
    assert load_text_dataset(str(txt))["text"] == EXPECTED
    assert load_text_dataset([gz])["text"] == EXPECTED
    ds = load_text_dataset([tmp_path / n for n in ("c.csv", "d.jsonl", "e.json", "f.json")])
    assert ds.column_names == ["text"]
    assert ds["text"] == ["Hello, world", "two\nlines", "first", "second", "list one", "nested"]
    (tmp_path / "g.tsv").write_text("sentence\tlabel\nGood movie\t1\n", encoding="utf-8")
    assert load_text_dataset(tmp_path / "g.tsv", text_column="sentence")["sentence"] == ["Good movie"]


def test_text_streaming_matches(tmp_path):
    files = [write_lines(tmp_path / "a.txt", LINES), write_lines(tmp_path / "b.txt.gz", LINES[::-1], compress=True)]
    eager = load_text_dataset(files)
    streamed = load_text_dataset(files, streaming=True)
    assert [row["text"] for row in streamed] == eager["text"] == EXPECTED + EXPECTED[::-1]


def test_text_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_text_dataset(tmp_path / "missing.txt")
    empty = write_lines(tmp_path / "empty.txt", ["", "  "])
    with pytest.raises(ValueError, match=r"empty\.txt.*empty"):
        load_text_dataset(empty)
    with pytest.raises(ValueError, match="empty"):
        load_text_dataset(write_lines(tmp_path / "empty.txt.gz", [""], compress=True))
    (tmp_path / "t.csv").write_text("sentence,label\nhi,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"t\.csv.*'text' not found.*\['label', 'sentence'\]"):
        load_text_dataset(tmp_path / "t.csv")
    (tmp_path / "t.jsonl").write_text('{"body": "hi"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"t\.jsonl.*columns found: \['body'\]"):
        load_text_dataset(tmp_path / "t.jsonl")
    (tmp_path / "t.parquet").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported"):
        load_text_dataset(tmp_path / "t.parquet")


@pytest.mark.parametrize("name", ["bad.txt", "bad.txt.gz", "bad.csv"])
def test_non_utf8_line_number(tmp_path, name):
    data = b"text\nok line\n" + b"caf\xe9 latin-1\n" + b"after\n"
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    with pytest.raises(ValueError, match=rf"{name}: line 3 is not valid UTF-8"):
        load_text_dataset(path)
    streamed = iter(load_text_dataset(path, streaming=True))
    first = next(streamed)["text"]  # the lines before the bad one still stream
    assert first in ("ok line", "text")
    with pytest.raises(ValueError, match=rf"{name}: line 3 is not valid UTF-8"):
        list(streamed)


def test_tokenize_and_group(tokenizer, corpus):
    ds = load_text_dataset_from(corpus[:200])
    blocks = tokenize_and_group(ds, tokenizer, max_seq_length=64)
    assert blocks.column_names == ["input_ids", "attention_mask"]
    assert len(blocks) > 10
    stream = []
    for text in corpus[:200]:
        stream += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    for i, ids in enumerate(blocks["input_ids"]):
        assert len(ids) == 64 and ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert ids[1:-1] == stream[i * 62 : (i + 1) * 62]
    assert all(all(m == 1 for m in mask) for mask in blocks["attention_mask"])
    streamed = tokenize_and_group(ds.to_iterable_dataset(), tokenizer, max_seq_length=64)
    assert [row["input_ids"] for row in streamed] == blocks["input_ids"]
    with pytest.raises(ValueError, match="no block"):
        tokenize_and_group(load_text_dataset_from(["tiny"]), tokenizer, max_seq_length=64)
    with pytest.raises(ValueError, match=r"'sentence' not found.*\['text'\]"):
        tokenize_and_group(ds, tokenizer, 64, text_column="sentence")
    with pytest.raises(ValueError, match="model_max_length"):
        tokenize_and_group(ds, tokenizer, 4096)


def load_text_dataset_from(texts):
    from datasets import Dataset

    return Dataset.from_dict({"text": list(texts)})


# ---------------------------------------------------------------------------------------------------------- audio


def sine(rate, seconds, freq=440.0):
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def audio_folder(tmp_path):
    (tmp_path / "low").mkdir()
    (tmp_path / "high" / "deep").mkdir(parents=True)
    sf.write(tmp_path / "low" / "a.wav", sine(8000, 0.5), 8000, subtype="PCM_16")
    stereo = np.stack([sine(16000, 0.25), sine(16000, 0.25)], axis=1)
    sf.write(tmp_path / "high" / "deep" / "b.flac", stereo, 16000)
    (tmp_path / "notes.txt").write_text("not audio")
    return tmp_path


def test_audio_folder_resamples(audio_folder, caplog):
    from d2v_hf.data import audio

    audio._LOGGED_RESAMPLING.clear()  # logged once per process: an earlier test may have resampled 8 kHz already
    with caplog.at_level(logging.INFO, logger="d2v_hf.data.audio"):
        ds = load_audio_folder(audio_folder, sampling_rate=16000)
    assert ds.column_names == ["path", "label"] and len(ds) == 2
    assert ds.features["label"].names == ["deep", "low"]
    b, a = ds[0], ds[1]  # sorted paths: high/deep/b.flac before low/a.wav
    assert a["path"].endswith("a.wav") and ds.features["label"].int2str(a["label"]) == "low"
    assert a["input_values"].dtype == np.float32 and a["input_values"].ndim == 1 and a["sampling_rate"] == 16000
    assert abs(len(a["input_values"]) - 8000) <= 1  # 0.5 s at 16 kHz
    assert np.corrcoef(a["input_values"][100:7900], sine(16000, 0.5)[100:7900])[0, 1] > 0.99
    assert len(b["input_values"]) == 4000 and b["input_values"].ndim == 1  # stereo -> mono, no resampling
    assert "8000 Hz to 16000 Hz" in caplog.text
    cropped = load_audio_folder(audio_folder, max_seconds=0.1)
    assert [len(x) for x in cropped[:]["input_values"]] == [1600, 1600]
    streamed = list(load_audio_folder(audio_folder, streaming=True))
    assert [s["path"] for s in streamed] == ds["path"]
    for s, e in zip(streamed, (b, a)):
        np.testing.assert_array_equal(s["input_values"], e["input_values"])
        assert s["label"] == e["label"]


def test_audio_errors(tmp_path, audio_folder):
    with pytest.raises(ValueError, match="does not exist"):
        load_audio_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="no audio files"):
        load_audio_folder(tmp_path / "empty")
    (audio_folder / "low" / "broken.flac").write_bytes(b"fLaC not really a flac file")
    with pytest.raises(ValueError, match=r"broken\.flac"):
        load_audio_folder(audio_folder)
    with pytest.raises(ValueError, match=r"broken\.flac"):
        list(load_audio_folder(audio_folder, streaming=True))


def test_pad_and_normalize_audio():
    """The collators' padding + normalisation (Wav2Vec2FeatureExtractor): statistics over the real samples only."""
    clips = [sine(8000, 0.1) + 0.3, np.zeros(10, dtype=np.float32), np.ones(5, dtype=np.float32)]
    values, attention_mask = pad_and_normalize_audio(clips, normalize=True, min_length=1200)
    assert values.shape == (3, 1200) and values.dtype == torch.float32
    assert attention_mask.sum(1).tolist() == [800, 10, 5]
    first = values[0, :800].numpy()
    assert abs(first.mean()) < 1e-5 and abs(first.std() - 1) < 1e-3
    assert torch.all(values[1:] == 0)  # silence and a constant clip stay finite, padding is zero
    raw, _ = pad_and_normalize_audio(clips, normalize=False)
    assert raw.shape == (3, 800) and torch.equal(raw[2, :5], torch.ones(5))


def test_spoken_digits_synthetic(tmp_path):
    digits = tmp_path / "audio" / "digits"
    digits.mkdir(parents=True)
    for name in [str(d) for d in range(10)] + ["10", "h-1", "oh"]:
        sf.write(digits / f"{name}.flac", sine(8000, 0.05), 8000)
    ds = spoken_digits_from_asterisk(tmp_path)
    assert ds["label"] == list(range(10)) and ds.features["label"].names == list(DIGIT_NAMES)
    assert all(row["path"].endswith(f"/{row['label']}.flac") for row in ds)
    (digits / "7.flac").unlink()
    with pytest.raises(ValueError, match=r"digit\(s\) \[7\]"):
        spoken_digits_from_asterisk(tmp_path)


# ---------------------------------------------------------------------------------------------------------- image


@pytest.fixture
def image_folder(tmp_path):
    for label, mode in (("cat", "L"), ("dog", "RGBA")):
        (tmp_path / label).mkdir()
        Image.new(mode, (10, 6), 255).save(tmp_path / label / "1.png")
    Image.new("RGB", (5, 5), (0, 0, 0)).save(tmp_path / "dog" / "2.jpg")
    return tmp_path


def test_image_folder(image_folder):
    ds = load_image_folder(image_folder, image_size=8, transform=image_transform(4))
    assert len(ds) == 3 and ds.features["label"].names == ["cat", "dog"]
    row = ds[0]
    assert row["image"].mode == "RGB" and row["image"].size == (8, 8) and row["label"] == 0
    assert row["pixel_values"].shape == (3, 4, 4) and torch.allclose(row["pixel_values"], torch.ones(3, 4, 4))
    assert [r["label"] for r in ds] == [0, 1, 1]
    streamed = list(load_image_folder(image_folder, image_size=8, streaming=True))
    assert [s["path"] for s in streamed] == ds["path"]
    assert all(np.array_equal(np.asarray(s["image"]), np.asarray(e["image"])) for s, e in zip(streamed, ds))


def test_image_errors(tmp_path, image_folder):
    with pytest.raises(ValueError, match="does not exist"):
        load_image_folder(tmp_path / "nope")
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_image_folder(tmp_path / "none")
    (image_folder / "cat" / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match=r"bad\.png"):
        load_image_folder(image_folder)


def write_idx(path, array, magic_type=0x08):
    header = bytes([0, 0, magic_type, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_fashion_mnist_idx(tmp_path):
    images = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 9, 3, 3, 1]))
    np.testing.assert_array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), images)
    ds = load_fashion_mnist(tmp_path, split="test", transform=image_transform(6))
    assert len(ds) == 5 and ds.features["label"].names == list(FASHION_MNIST_CLASSES)
    row = ds[1]
    assert row["label"] == 9 and row["image"].mode == "L" and row["image"].size == (3, 4)
    np.testing.assert_array_equal(np.asarray(row["image"]), images[1])
    assert row["pixel_values"].shape == (3, 6, 6)
    with pytest.raises(ValueError, match="train-images"):
        load_fashion_mnist(tmp_path, split="train")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04"))
    with pytest.raises(ValueError, match="not an IDX file"):
        load_fashion_mnist(tmp_path, split="test")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([0, 1]))
    with pytest.raises(ValueError, match="labels for 5 images"):
        load_fashion_mnist(tmp_path, split="test")


def test_image_transform():
    grey = Image.fromarray(np.full((20, 30), 255, dtype=np.uint8), "L")
    out = image_transform(16, mean=0.5, std=0.25)(grey)
    assert out.dtype == torch.float32 and out.shape == (3, 16, 16) and torch.allclose(out, torch.full_like(out, 2.0))
    array = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    train_a = image_transform(24, train=True, seed=3)
    train_b = image_transform(24, train=True, seed=3)
    for _ in range(3):
        a, b = train_a(array), train_b(array)
        assert a.shape == (3, 24, 24) and torch.equal(a, b)
        assert -1.0 <= a.min() and a.max() <= 1.0


# ------------------------------------------------------------------------------------------------ tokenizer/corpus


def test_tokenizer_roundtrip(tokenizer, corpus, tmp_path):
    from transformers import AutoTokenizer

    assert [tokenizer.convert_tokens_to_ids(t) for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>")] == list(range(5))
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert (tokenizer.unk_token_id, tokenizer.mask_token_id, len(tokenizer)) == (3, 4, 600)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.mask_token_id == 4 and reloaded.model_max_length == 512
    texts = corpus[400:420] + ["Return the <mask> of x."]
    assert reloaded(texts)["input_ids"] == tokenizer(texts)["input_ids"]
    ids = reloaded("Return the value.", "Second part.")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2 and ids.count(2) == 3  # <s> A </s></s> B </s>
    plain = [reloaded(t, add_special_tokens=False)["input_ids"] for t in ("the", " value")]
    # lstrip: the space before <mask> is absorbed (no separate "Ġ" token), as RoBERTa
    assert reloaded("the <mask> value", add_special_tokens=False)["input_ids"] == plain[0] + [4] + plain[1]
    assert reloaded.decode(reloaded("Plain text, réel.")["input_ids"], skip_special_tokens=True) == "Plain text, réel."
    again = train_bpe_tokenizer(corpus[:400], vocab_size=600)
    assert again.get_vocab() == tokenizer.get_vocab()  # deterministic


def test_tokenizer_from_files_and_errors(tmp_path, corpus):
    path = write_lines(tmp_path / "c.txt.gz", corpus[:100], compress=True)
    tok = train_bpe_tokenizer([path], vocab_size=300, min_frequency=1)
    assert len(tok) == 300 and tok.mask_token_id == 4
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe_tokenizer(["a b c"], vocab_size=100)
    with pytest.raises(ValueError, match="no non-empty text"):
        train_bpe_tokenizer(["", "  "])
    with pytest.raises(ValueError, match="does not exist"):
        train_bpe_tokenizer(str(tmp_path / "missing.txt"))


def test_default_corpus(corpus):
    from d2v_hf.data import default_corpus

    text = "".join(corpus)
    assert 500_000 < len(text) <= 2_000_000 and len(corpus) > 3000
    assert len(set(corpus)) == len(corpus)
    letters = sum(c.isascii() and (c.isalpha() or c.isspace()) for c in text)
    assert letters / len(text) > 0.85
    default_corpus._full_corpus.cache_clear()  # rebuild from scratch to check determinism, not the cache
    assert build_default_corpus() == corpus
    small = build_default_corpus(max_chars=10_000)
    assert small == corpus[: len(small)] and sum(map(len, small)) <= 10_000
    info = default_corpus_info()
    assert info["num_paragraphs"] == len(corpus) and info["num_chars"] == len(text) and info["python_version"]


# ------------------------------------------------------------------------------------------------------ real data


@pytest.mark.real_data
def test_real_gcide_first_lines(shared_data):
    path = shared_data / "corpus" / "gcide_en.txt.gz"
    rows = [row["text"] for row in load_text_dataset(path, streaming=True).take(1000)]
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        expected = []
        for line in handle:
            if line.strip():
                expected.append(line.strip())
            if len(expected) == 1000:
                break
    assert rows == expected and all(rows)


@pytest.mark.real_data
def test_real_asterisk_resampled(shared_data):
    folder = shared_data / "speech" / "asterisk-en"
    digits = spoken_digits_from_asterisk(folder)
    assert sorted(digits["label"]) == list(range(10))
    for row in digits.select(range(3)):
        original, rate = sf.read(row["path"])
        assert rate == 8000 and row["sampling_rate"] == 16000
        assert len(row["input_values"]) == 2 * len(original)
    letters = load_audio_folder(folder / "audio" / "letters", max_seconds=0.5)
    assert len(letters) > 20 and len(letters[0]["input_values"]) <= 8000
    np.testing.assert_allclose(read_audio(row["path"], 8000), original.astype(np.float32), atol=1e-6)


@pytest.mark.real_data
def test_real_fashion_mnist(shared_data):
    folder = shared_data / "vision" / "fashion-mnist"
    for split, count in (("train", 30000), ("test", 10000)):
        ds = load_fashion_mnist(folder, split)
        labels = ds.data.column("label").to_numpy()
        assert len(ds) == count and labels.min() == 0 and labels.max() == 9
        assert ds[0]["image"].size == (28, 28)
