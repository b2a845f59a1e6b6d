"""run_image_classification.py and run_audio_classification.py (examples/) end to end, on tiny models built in code."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image
from transformers import (
    AutoModelForAudioClassification,
    AutoModelForImageClassification,
    Data2VecAudioConfig,
    Data2VecAudioModel,
    Data2VecTextConfig,
    Data2VecVisionConfig,
    Data2VecVisionForImageClassification,
    Data2VecVisionModel,
)

from d2v_hf.data import (
    DIGIT_NAMES,
    SPOKEN_DIGITS_TRAIN_VOICES,
    SPOKEN_DIGITS_VALIDATION_VOICES,
    espeak_ng_available,
    spoken_digits_from_asterisk,
    synthesize_spoken_digits,
)
from d2v_hf.finetuning import AudioClassificationCollator, AudioDataArguments

from .fixtures import load_example


run_image_classification = load_example("run_image_classification")
run_audio_classification = load_example("run_audio_classification")


# --------------------------------------------------------------------------------------------------------------------
# Tiny checkpoints and data, made in code
# --------------------------------------------------------------------------------------------------------------------


def vision_config(**kwargs):
    defaults = dict(image_size=28, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    defaults.update(intermediate_size=64, use_mean_pooling=True, drop_path_rate=0.0)
    return Data2VecVisionConfig(**{**defaults, **kwargs})


def audio_config(**kwargs):
    """A CNN of 4 layers (stride 160: 100 frames per second); `num_conv_pos_embeddings` is data2vec-audio's number of
    positional convolution layers (not a kernel size), kept small because they dominate the cost of tiny models."""
    defaults = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, layerdrop=0.0)
    defaults.update(conv_dim=(16,) * 4, conv_kernel=(10, 4, 4, 4), conv_stride=(5, 4, 4, 2), attention_dropout=0.0)
    defaults.update(num_conv_pos_embeddings=2, conv_pos_kernel_size=9, num_conv_pos_embedding_groups=2)
    return Data2VecAudioConfig(**{**defaults, **kwargs})


def save_backbone(model_class, config, path):
    torch.manual_seed(0)
    model_class(config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def vision_checkpoint(tmp_path_factory):
    """A plain Data2VecVisionModel, as run_pretraining.py exports the student."""
    return save_backbone(Data2VecVisionModel, vision_config(), tmp_path_factory.mktemp("vision") / "student")


@pytest.fixture(scope="module")
def audio_checkpoint(tmp_path_factory):
    return save_backbone(Data2VecAudioModel, audio_config(), tmp_path_factory.mktemp("audio") / "student")


@pytest.fixture(scope="module")
def text_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "student"
    Data2VecTextConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4).save_pretrained(path)
    return str(path)


def write_images(root, counts, size=32, seed=0):
    """Class folders: dark images with bright `horizontal` stripes, bright ones with dark `vertical` stripes (and
    mid-grey `plain` ones); PNG and JPEG, widths vary so that the transform's resize and crop are exercised."""
    rng = np.random.default_rng(seed)
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            noise = rng.integers(0, 60, (size, size + 4 * (i % 2)), dtype=np.uint8)
            if name == "horizontal":
                pixels = noise
                pixels[::4] = 255
            elif name == "vertical":
                pixels = 255 - noise
                pixels[:, ::4] = 0
            else:
                pixels = noise + 100
            Image.fromarray(pixels).save(root / name / f"{i}.{'png' if i % 3 else 'jpg'}")
    return str(root)


def write_tones(root, counts, sampling_rate=8000, seed=0):
    """Class folders of noisy tones (`low` 300 Hz, `high` 1500 Hz) at 8 kHz, 0.2-0.6 s long (resampled to 16 kHz)."""
    rng = np.random.default_rng(seed)
    frequencies = {"low": 300.0, "high": 1500.0, "mid": 800.0}
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            t = np.arange(int(sampling_rate * rng.uniform(0.2, 0.6))) / sampling_rate
            wave = 0.5 * np.sin(2 * np.pi * frequencies[name] * t) + 0.05 * rng.standard_normal(len(t))
            sf.write(root / name / f"{i}.{'wav' if i % 2 else 'flac'}", wave.astype(np.float32), sampling_rate)
    return str(root)


@pytest.fixture(scope="module")
def image_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    train = write_images(root / "train", {"horizontal": 12, "vertical": 12})
    validation = write_images(root / "validation", {"horizontal": 4, "vertical": 4}, seed=1)
    return train, validation


@pytest.fixture(scope="module")
def audio_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("audio")
    train = write_tones(root / "train", {"high": 8, "low": 8})
    validation = write_tones(root / "validation", {"high": 3, "low": 3}, seed=1)
    return train, validation


COMMON = ["--use_cpu", "--report_to=none", "--seed=0", "--save_strategy=no", "--disable_tqdm=true"]
TRAIN = ["--do_train", "--do_eval", "--per_device_train_batch_size=8", "--learning_rate=1e-3", *COMMON]


def image_args(checkpoint, train, validation, output_dir, *extra):
    return [f"--model_name_or_path={checkpoint}", f"--train_dir={train}", f"--validation_dir={validation}"] + [
        f"--output_dir={output_dir}",
        "--max_steps=4",
        *TRAIN,
        *extra,
    ]


def audio_args(checkpoint, train, validation, output_dir, *extra):
    return [f"--model_name_or_path={checkpoint}", f"--train_dir={train}", f"--validation_dir={validation}"] + [
        f"--output_dir={output_dir}",
        "--max_steps=4",
        "--max_length_seconds=0.5",
        *TRAIN,
        *extra,
    ]


def card_front_matter(output_dir):
    card = (Path(output_dir) / "README.md").read_text()
    assert card.startswith("---\n")
    return card, card.split("---\n")[1]


# --------------------------------------------------------------------------------------------------------------------
# End-to-end runs
# --------------------------------------------------------------------------------------------------------------------


def test_image_script_from_json_args(vision_checkpoint, image_folders, tmp_path):
    output_dir = tmp_path / "out"
    train, validation = image_folders
    # HfArgumentParser reads a single .json argument as the file of all arguments.
    arguments = dict(model_name_or_path=vision_checkpoint, train_dir=train, validation_dir=validation, max_steps=4)
    arguments.update(output_dir=str(output_dir), do_train=True, do_eval=True, per_device_train_batch_size=8)
    arguments.update(learning_rate=1e-3, use_cpu=True, report_to="none", seed=0, save_strategy="no")
    (tmp_path / "args.json").write_text(json.dumps(arguments))
    metrics = run_image_classification.main([str(tmp_path / "args.json")])

    assert 0.0 <= metrics["eval_accuracy"] <= 1.0 and metrics["train_samples"] == 24 and metrics["eval_samples"] == 8
    model = AutoModelForImageClassification.from_pretrained(output_dir)
    assert isinstance(model, Data2VecVisionForImageClassification)
    assert model.config.id2label == {0: "horizontal", 1: "vertical"}
    assert model.config.label2id == {"horizontal": 0, "vertical": 1}
    processor = json.loads((output_dir / "preprocessor_config.json").read_text())
    assert processor["size"] == {"height": 28, "width": 28} and processor["image_mean"] == [0.5, 0.5, 0.5]
    card, front = card_front_matter(output_dir)
    assert "model-index" in front and "image-classification" in front and "type: accuracy" in front
    assert f"value: {metrics['eval_accuracy']}" in front or str(round(metrics["eval_accuracy"], 4)) in card
    # the fine-tuned model's predictions match the reported accuracy
    assert json.loads((output_dir / "eval_results.json").read_text())["eval_accuracy"] == metrics["eval_accuracy"]


def test_image_script_learns_the_stripes(vision_checkpoint, image_folders, tmp_path):
    """A task a working pipeline solves in a few steps; then the model, with its head's classes swapped, is evaluated
    alone (--do_eval): the data's label ids follow the checkpoint's id2label, so it still scores 1.0."""
    output_dir = tmp_path / "out"
    metrics = run_image_classification.main(
        image_args(vision_checkpoint, *image_folders, output_dir, "--max_steps=30", "--min_crop_scale=1.0")
        + ["--learning_rate=3e-3", "--warmup_steps=3"]
    )
    assert metrics["eval_accuracy"] == 1.0, metrics

    model = AutoModelForImageClassification.from_pretrained(output_dir)
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.flip(0))
        model.classifier.bias.copy_(model.classifier.bias.flip(0))
    model.config.id2label, model.config.label2id = {0: "vertical", 1: "horizontal"}, {"vertical": 0, "horizontal": 1}
    model.save_pretrained(tmp_path / "swapped")
    args = [f"--model_name_or_path={tmp_path / 'swapped'}", f"--validation_dir={image_folders[1]}", "--do_eval"]
    metrics = run_image_classification.main(args + [f"--output_dir={tmp_path / 'eval'}", *COMMON])
    assert metrics["eval_accuracy"] == 1.0, metrics


def test_audio_script_end_to_end(audio_checkpoint, audio_folders, tmp_path):
    output_dir = tmp_path / "out"
    metrics = run_audio_classification.main(
        audio_args(audio_checkpoint, *audio_folders, output_dir, "--max_train_samples=12", "--max_eval_samples=5")
    )
    assert metrics["train_samples"] == 12 and metrics["eval_samples"] == 5 and 0 <= metrics["eval_accuracy"] <= 1
    model = AutoModelForAudioClassification.from_pretrained(output_dir)
    assert model.config.id2label == {0: "high", 1: "low"}
    extractor = json.loads((output_dir / "preprocessor_config.json").read_text())
    assert extractor["sampling_rate"] == 16000 and extractor["do_normalize"] and extractor["return_attention_mask"]
    _, front = card_front_matter(output_dir)
    assert "audio-classification" in front and "type: accuracy" in front


def test_audio_script_learns_the_tones(audio_checkpoint, audio_folders, tmp_path):
    metrics = run_audio_classification.main(
        audio_args(audio_checkpoint, *audio_folders, tmp_path / "out", "--max_steps=25", "--learning_rate=3e-3")
    )
    assert metrics["eval_accuracy"] == 1.0, metrics


@pytest.mark.parametrize("modality", ["vision", "audio"])
def test_lora_saves_adapters_and_merged_model(modality, vision_checkpoint, audio_checkpoint, image_folders, tmp_path):
    output_dir = tmp_path / "lora"
    if modality == "vision":
        main, auto_class = run_image_classification.main, AutoModelForImageClassification
        args = image_args(vision_checkpoint, *image_folders, output_dir, "--use_peft", "--lora_r=4")
    else:
        audio_folders = (write_tones(tmp_path / "tr", {"high": 4, "low": 4}), write_tones(tmp_path / "va", {"low": 2}))
        main, auto_class = run_audio_classification.main, AutoModelForAudioClassification
        args = audio_args(audio_checkpoint, *audio_folders, output_dir, "--use_peft", "--lora_r=4")
    metrics = main(args)
    assert "eval_accuracy" in metrics
    adapter = json.loads((output_dir / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == ({"query", "value"} if modality == "vision" else {"q_proj", "v_proj"})
    merged = auto_class.from_pretrained(output_dir / "merged")
    assert merged.config.num_labels == 2 and not any("lora" in name for name, _ in merged.named_parameters())
    _, front = card_front_matter(output_dir)
    assert "type: accuracy" in front


def test_push_to_hub_uploads_the_card_with_results(vision_checkpoint, image_folders, tmp_path, monkeypatch):
    """--push_to_hub: the last upload carries our model card (eval accuracy in its model-index), not Trainer's."""
    import transformers.trainer

    uploads = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            return type("RepoUrl", (), {"repo_id": f"user/{repo_id.split('/')[-1]}"})()

        def upload_folder(self, repo_id, folder_path, **kwargs):
            uploads.append((repo_id, kwargs.get("commit_message"), (Path(folder_path) / "README.md").read_text()))

    monkeypatch.setattr(transformers.trainer, "hf_api", FakeApi)
    output_dir = tmp_path / "out"
    metrics = run_image_classification.main(
        image_args(vision_checkpoint, *image_folders, output_dir, "--push_to_hub", "--hub_model_id=user/tiny-d2v")
    )
    repo_id, _, card = uploads[-1]
    assert repo_id == "user/tiny-d2v" and "model-index" in card and "type: accuracy" in card
    assert card == (output_dir / "README.md").read_text() and "eval_accuracy" in metrics


def test_image_hub_dataset_path(vision_checkpoint, tmp_path):
    """--dataset_name through datasets.load_dataset: a local folder with train/ and validation/ (imagefolder)."""
    write_images(tmp_path / "data" / "train", {"horizontal": 6, "vertical": 6})
    write_images(tmp_path / "data" / "validation", {"horizontal": 2, "vertical": 2}, seed=1)
    metrics = run_image_classification.main(
        [f"--model_name_or_path={vision_checkpoint}", f"--dataset_name={tmp_path / 'data'}"]
        + [f"--output_dir={tmp_path / 'out'}", "--max_steps=2", *TRAIN]
    )
    assert metrics["train_samples"] == 12 and metrics["eval_samples"] == 4


def test_audio_hub_dataset_path_decodes_without_torchcodec(audio_checkpoint, tmp_path):
    """
    --dataset_name through datasets.load_dataset: a local JSON-lines dataset with audio file paths and string labels.
    The audio column is cast to `Audio(decode=False)` and decoded with soundfile (datasets' own decoding needs
    torchcodec); string labels become a sorted ClassLabel.
    """
    write_tones(tmp_path / "wavs", {"high": 5, "low": 5})
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"audio": str(p), "label": p.parent.name} for p in sorted((tmp_path / "wavs").rglob("*.*"))]
    (data / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    metrics = run_audio_classification.main(
        [f"--model_name_or_path={audio_checkpoint}", f"--dataset_name={data}", "--train_val_split=0.2"]
        + [f"--output_dir={tmp_path / 'out'}", "--max_steps=2", "--max_length_seconds=0.5", *TRAIN]
    )
    assert metrics["train_samples"] == 8 and metrics["eval_samples"] == 2
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["id2label"] == {"0": "high", "1": "low"}


def test_audio_collator_cuts_normalizes_and_pads():
    rng = np.random.default_rng(0)
    examples = [{"input_values": 3 + 2 * rng.standard_normal(n), "label": i} for i, n in enumerate((100, 2500, 40))]
    batch = AudioClassificationCollator(max_length=2000, min_length=500, train=True, seed=0)(examples)
    assert batch["input_values"].shape == (3, 2000) and batch["labels"].tolist() == [0, 1, 2]
    assert batch["attention_mask"].sum(1).tolist() == [100, 2000, 40]
    first = batch["input_values"][0, :100]
    assert abs(first.mean()) < 1e-4 and abs(first.std(unbiased=False) - 1) < 1e-3
    assert torch.all(batch["input_values"][0, 100:] == 0)
    short = AudioClassificationCollator(max_length=2000, min_length=500)([examples[0], examples[2]])
    assert short["input_values"].shape == (2, 500)
    # evaluation cuts the start of a long clip: the same window every time
    long = [{"input_values": np.arange(3000, dtype=np.float32), "label": 0}]
    evaluation = AudioClassificationCollator(max_length=1000, normalize=False)
    assert evaluation(long)["input_values"][0, -1] == 999


def test_held_out_split_is_datasets_stratified_split():
    """The held-out part is the rows of `train_test_split(stratify_by_column="label")`, read faster."""
    import datasets

    from d2v_hf.finetuning.classification_data import _split_train

    labels = np.random.default_rng(1).integers(0, 10, 600).tolist()
    train = datasets.Dataset.from_dict({"row": list(range(600)), "label": labels})
    train = train.cast_column("label", datasets.ClassLabel(num_classes=10)).shuffle(seed=3).select(range(500))
    for fraction, seed in ((0.1, 0), (0.25, 42)):
        reference = train.train_test_split(test_size=fraction, seed=seed, stratify_by_column="label")
        kept, held_out = _split_train(train, fraction, seed)
        assert kept["row"][:] == reference["train"]["row"][:] and held_out["row"][:] == reference["test"]["row"][:]
    one_each = datasets.Dataset.from_dict({"row": [0, 1, 2], "label": [0, 1, 2]})
    one_each = one_each.cast_column("label", datasets.ClassLabel(num_classes=3))
    kept, held_out = _split_train(one_each, 0.34, 0)  # too few per class to stratify: a plain random split
    assert sorted(kept["row"][:] + held_out["row"][:]) == [0, 1, 2] and len(held_out) == 2


# --------------------------------------------------------------------------------------------------------------------
# Clear errors
# --------------------------------------------------------------------------------------------------------------------


def test_missing_folders(vision_checkpoint, audio_checkpoint, image_folders, tmp_path):
    with pytest.raises(ValueError, match="--train_dir .*does not exist"):
        run_image_classification.main(image_args(vision_checkpoint, tmp_path / "nope", image_folders[1], tmp_path))
    with pytest.raises(ValueError, match="--validation_dir .*does not exist"):
        run_audio_classification.main(audio_args(audio_checkpoint, image_folders[0], tmp_path / "nope", tmp_path))
    with pytest.raises(ValueError, match="--train_dir.*or --dataset_name"):
        AudioDataArguments()


def test_single_class_folder(vision_checkpoint, audio_checkpoint, tmp_path):
    images = write_images(tmp_path / "images", {"horizontal": 3})
    with pytest.raises(ValueError, match="single class \\('horizontal'\\).*at least two"):
        run_image_classification.main(image_args(vision_checkpoint, images, images, tmp_path / "out"))
    tones = write_tones(tmp_path / "tones", {"low": 3})
    with pytest.raises(ValueError, match="single class \\('low'\\)"):
        run_audio_classification.main(audio_args(audio_checkpoint, tones, tones, tmp_path / "out"))


def test_validation_class_unknown_to_training(vision_checkpoint, image_folders, tmp_path):
    validation = write_images(tmp_path / "val", {"horizontal": 2, "plain": 2})
    with pytest.raises(ValueError, match="class\\(es\\) \\['plain'\\] that the training data lacks"):
        run_image_classification.main(image_args(vision_checkpoint, image_folders[0], validation, tmp_path / "out"))


def test_validation_labels_follow_training_ids(vision_checkpoint, tmp_path):
    """A validation folder with a subset of the classes gets the training ids, not its own."""
    train = write_images(tmp_path / "train", {"horizontal": 3, "plain": 3, "vertical": 3})
    validation = write_images(tmp_path / "val", {"vertical": 2})
    from d2v_hf.finetuning import ImageDataArguments, load_image_classification_datasets

    data = load_image_classification_datasets(ImageDataArguments(train_dir=train, validation_dir=validation), 28)
    assert data.label_names == ["horizontal", "plain", "vertical"]
    assert [example["label"] for example in data.validation] == [2, 2]
    assert data.validation[0]["pixel_values"].shape == (3, 28, 28)


@pytest.mark.parametrize(
    "script, checkpoint, found",
    [
        ("image", "text_checkpoint", "text"),
        ("image", "audio_checkpoint", "audio"),
        ("audio", "vision_checkpoint", "vision"),
        ("audio", "text_checkpoint", "text"),
    ],
)
def test_checkpoint_of_another_modality(script, checkpoint, found, image_folders, request, tmp_path):
    path = request.getfixturevalue(checkpoint)
    main, build = (
        (run_image_classification.main, image_args)
        if script == "image"
        else (run_audio_classification.main, audio_args)
    )
    with pytest.raises(ValueError, match=f"is a {found} model"):
        main(build(path, *image_folders, tmp_path / "out"))


def test_pretraining_checkpoint_points_to_the_student(image_folders, tmp_path):
    from .fixtures import tiny_config

    tiny_config("vision").save_pretrained(tmp_path / "pretraining")
    with pytest.raises(ValueError, match="full data2vec pretraining checkpoint.*student/"):
        run_image_classification.main(image_args(tmp_path / "pretraining", *image_folders, tmp_path / "out"))


def test_image_size_not_divisible_by_patch_size(image_folders, tmp_path):
    checkpoint = save_backbone(Data2VecVisionModel, vision_config(image_size=30), tmp_path / "ckpt")
    with pytest.raises(ValueError, match="image size 30 is not divisible by the patch size 4"):
        run_image_classification.main(image_args(checkpoint, *image_folders, tmp_path / "out"))


def test_head_of_another_size(image_folders, tmp_path):
    config = vision_config(num_labels=3)
    checkpoint = save_backbone(Data2VecVisionForImageClassification, config, tmp_path / "ckpt")
    with pytest.raises(ValueError, match="3-label classification head.*--ignore_mismatched_sizes"):
        run_image_classification.main(image_args(checkpoint, *image_folders, tmp_path / "out"))
    metrics = run_image_classification.main(
        image_args(checkpoint, *image_folders, tmp_path / "out", "--ignore_mismatched_sizes", "--max_steps=1")
    )
    assert "eval_accuracy" in metrics


# --------------------------------------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.real_data
def test_fashion_mnist_above_chance(shared_data, tmp_path):
    """Fashion-MNIST IDX files (train-* for training, t10k-* for evaluation), a tiny data2vec-vision from scratch."""
    folder = shared_data / "vision" / "fashion-mnist"
    checkpoint = save_backbone(
        Data2VecVisionModel, vision_config(patch_size=7, hidden_size=64, intermediate_size=128), tmp_path / "ckpt"
    )
    metrics = run_image_classification.main(
        [f"--model_name_or_path={checkpoint}", f"--train_dir={folder}", f"--validation_dir={folder}"]
        + [f"--output_dir={tmp_path / 'out'}", "--max_train_samples=3000", "--max_eval_samples=1000"]
        + ["--num_train_epochs=3", "--per_device_train_batch_size=32", "--learning_rate=3e-3", "--warmup_steps=0.1"]
        + ["--min_crop_scale=1.0", "--do_train", "--do_eval", *COMMON]
    )
    # 10 balanced classes: chance is 0.1; measured 0.63 (seed 0) and 0.64 (seed 1)
    assert metrics["eval_accuracy"] > 0.45, metrics
    card = (tmp_path / "out" / "README.md").read_text()
    assert "on Fashion-MNIST" in card and "split: test" in card and "type: fashion_mnist" in card


@pytest.mark.real_data
@pytest.mark.skipif(not espeak_ng_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_spoken_digits_above_chance(shared_data, tmp_path):
    """
    Ten spoken digits synthesized by espeak-ng: 64 voices for training, 16 other voices (accent + variant
    combinations that training never hears, each at its own rate and pitch) for evaluation; a tiny data2vec-audio
    from scratch. The model is then also run on the real recorded digits of ../shared/data (one human speaker).
    """
    train = synthesize_spoken_digits(tmp_path / "train", SPOKEN_DIGITS_TRAIN_VOICES)
    validation = synthesize_spoken_digits(tmp_path / "validation", SPOKEN_DIGITS_VALIDATION_VOICES)
    # a 3-layer CNN with a wide first kernel (40 samples, stride 20): 4x cheaper per clip than a 5-layer one
    config = audio_config(
        hidden_size=64, intermediate_size=128, conv_dim=(64,) * 3, conv_kernel=(40, 4, 2), conv_stride=(20, 4, 2)
    )
    checkpoint = save_backbone(Data2VecAudioModel, config, tmp_path / "student")
    output_dir = tmp_path / "out"
    metrics = run_audio_classification.main(
        [f"--model_name_or_path={checkpoint}", f"--train_dir={train}", f"--validation_dir={validation}"]
        + [f"--output_dir={output_dir}", "--max_length_seconds=0.8", "--num_train_epochs=4"]
        + ["--per_device_train_batch_size=16", "--learning_rate=2e-3", "--warmup_steps=0.1", "--do_train", "--do_eval"]
        + ["--freeze_feature_encoder=false", *COMMON]
    )
    assert metrics["train_samples"] == 640 and metrics["eval_samples"] == 160
    # 10 balanced classes, 160 clips: chance is 0.1 (a chance-level model exceeds 0.25 with p < 1e-5); measured
    # 0.419, 0.569 and 0.450 with --seed 0, 1, 2 (the same synthesized data and initial weights; 5 epochs: 0.525,
    # 0.525, 0.644)
    assert metrics["eval_accuracy"] > 0.25, metrics

    # Transfer to real human speech is measured, not asserted: 10 clips of one speaker, another domain.
    recorded = spoken_digits_from_asterisk(shared_data / "speech" / "asterisk-en")
    model = AutoModelForAudioClassification.from_pretrained(output_dir).eval()
    batch = AudioClassificationCollator(max_length=int(0.8 * 16000))(list(recorded))
    with torch.no_grad():
        predicted = model(input_values=batch["input_values"], attention_mask=batch["attention_mask"]).logits.argmax(-1)
    names = [model.config.id2label[int(i)] for i in predicted]
    accuracy = float(np.mean([name == DIGIT_NAMES[label] for name, label in zip(names, batch["labels"].tolist())]))
    print(f"spoken digits: synthetic held-out voices {metrics['eval_accuracy']:.3f}, recorded speech {accuracy:.2f}")
    assert set(names) <= set(DIGIT_NAMES)
