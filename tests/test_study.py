"""Slices of the study (examples/study/run_study.py) on real data (one seed, a few steps), and its building blocks."""

import json
import math

import numpy as np
import pytest
import torch

from d2v_hf.data import espeak_ng_available

from .fixtures import load_example  # noqa: F401  (puts examples/study on sys.path)
from study import run_study  # noqa: E402
from study_config import ARMS, StudyArguments  # noqa: E402
from study_utils import summarize_runs  # noqa: E402
from study_vision_audio import linear_probe_accuracy, mean_pooling_checkpoint  # noqa: E402


def test_study_arguments_presets():
    quick = StudyArguments(mode="quick")
    assert quick.model_size == "tiny" and len(quick.seed_list) >= 2
    assert StudyArguments(mode="full").model_size == "base"
    assert StudyArguments(mode="quick", pretrain_steps=7).pretrain_steps == 7
    with pytest.raises(ValueError, match="mode"):
        StudyArguments(mode="huge")
    with pytest.raises(ValueError, match="Unknown"):
        StudyArguments(tasks="sst2,mnli")
    with pytest.raises(ValueError, match="hub_org"):
        StudyArguments(push_to_hub=True)


def test_summarize_runs_average_and_spread():
    runs = [
        {"arm": "mlm", "task": "sst2", "seed": s, "scores": {"accuracy": a}} for s, a in ((0, 60.0), (1, 70.0))
    ] + [{"arm": "mlm", "task": "stsb", "seed": s, "scores": {"corr": c}} for s, c in ((0, 20.0), (1, 30.0))]
    summary = summarize_runs(runs)["mlm"]
    assert summary["sst2/accuracy"]["mean"] == 65.0
    assert math.isclose(summary["sst2/accuracy"]["std"], math.sqrt(50.0))
    assert summary["average"]["values"] == [40.0, 50.0]


def slice_arguments(shared_data, tmp_path, **kwargs) -> StudyArguments:
    """Quick-mode arguments on ../shared/data that write into `tmp_path` (out, docs, cards)."""
    folders = dict(
        output_dir=str(tmp_path / "out"), docs_dir=str(tmp_path / "docs"), model_cards_dir=str(tmp_path / "cards")
    )
    return StudyArguments(mode="quick", data_dir=str(shared_data), **folders, **kwargs)


@pytest.mark.real_data
def test_study_slice_end_to_end(shared_data, tmp_path):
    args = slice_arguments(
        shared_data,
        tmp_path,
        tasks="sst2",
        seeds="0",
        corpus_lines=1500,
        tokenizer_vocab_size=1000,
        pretrain_steps=12,
        pretrain_batch_size=8,
        pretrain_warmup_steps=2,
        finetune_steps=12,
        finetune_batch_size=16,
        glue_max_train_samples=192,
        glue_max_eval_samples=128,
        eval_points=2,
        workers=2,  # the pretraining and fine-tuning runs in two spawned processes
    )
    results = run_study(args, command="pytest slice")

    saved = json.loads((tmp_path / "docs" / "study_results.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(results["summary"]))
    for arm in ARMS:
        for key in ("sst2/accuracy", "average"):
            assert math.isfinite(saved["summary"][arm][key]["mean"]), (arm, key)
        assert len(saved["summary"][arm]["sst2/accuracy"]["values"]) == 1
    for arm in ("data2vec", "mlm"):
        assert math.isfinite(saved["pretraining"][arm]["final_loss"])
    assert set(saved["diagnostics"]["feature_spread"]) == set(ARMS)
    assert saved["diagnostics"]["unigram_entropy"] > 1.0

    report = (tmp_path / "docs" / "study.md").read_text()
    assert "pytest slice" in report
    for title in ("data2vec 1.0", "RoBERTa-style MLM", "random init"):
        row = next(line for line in report.splitlines() if line.startswith(f"| {title} |"))
        assert "nan" not in row and "–" not in row
    assert (tmp_path / "docs" / "img" / "study_finetuning_dev.png").is_file()
    assert (tmp_path / "docs" / "img" / "study_pretraining_loss.png").is_file()

    cards = sorted(p.parent.name for p in (tmp_path / "cards").glob("*/README.md"))
    assert len(cards) == 3
    card = (tmp_path / "cards" / "data2vec-text-tiny-gcide-study" / "README.md").read_text()
    assert "model-index" in card and "accuracy" in card and "GCIDE" in card


def test_study_rejects_bad_workers_and_missing_data(tmp_path):
    with pytest.raises(ValueError, match="--workers 0"):
        StudyArguments(workers=0)
    args = StudyArguments(data_dir=str(tmp_path), tasks="fashion_mnist", output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="fashion-mnist"):
        run_study(args)
    assert not (tmp_path / "out").exists()  # nothing written before the inputs are checked


def test_linear_probe_separates_what_is_separable():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 16)) * 3
    labels = rng.integers(0, 4, size=400)
    features = centers[labels] + rng.normal(size=(400, 16))
    train, test = (features[:300], labels[:300]), (features[300:], labels[300:])
    assert linear_probe_accuracy(train, test) > 0.95
    # the same features with labels that carry no information: near chance (0.25)
    shuffled = rng.permutation(labels)
    assert linear_probe_accuracy((features[:300], shuffled[:300]), (features[300:], shuffled[300:])) < 0.45


def test_mean_pooling_checkpoint_keeps_the_pretrained_encoder(tmp_path):
    from transformers import Data2VecVisionConfig, Data2VecVisionModel

    config = Data2VecVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=28,
        patch_size=4,
        use_mean_pooling=False,
    )
    torch.manual_seed(0)
    Data2VecVisionModel(config).save_pretrained(tmp_path / "student")
    args = StudyArguments(mode="quick")
    path = mean_pooling_checkpoint(args, "vision", str(tmp_path / "student"), str(tmp_path / "pooled"), seed=0)
    pooled = Data2VecVisionModel.from_pretrained(path)
    student = Data2VecVisionModel.from_pretrained(tmp_path / "student")
    assert pooled.config.use_mean_pooling and not student.config.use_mean_pooling
    for (name, a), (_, b) in zip(pooled.encoder.named_parameters(), student.encoder.named_parameters()):
        assert torch.equal(a, b), name
    # random init: the study's backbone, one per seed
    one = mean_pooling_checkpoint(args, "vision", None, str(tmp_path / "r1"), seed=1)
    two = mean_pooling_checkpoint(args, "vision", None, str(tmp_path / "r2"), seed=2)
    w1 = Data2VecVisionModel.from_pretrained(one).encoder.layer[0].attention.attention.query.weight
    w2 = Data2VecVisionModel.from_pretrained(two).encoder.layer[0].attention.attention.query.weight
    assert not torch.equal(w1, w2)


@pytest.mark.real_data
@pytest.mark.skipif(not espeak_ng_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_study_images_and_speech_slice(shared_data, tmp_path):
    args = slice_arguments(
        shared_data,
        tmp_path,
        tasks="fashion_mnist,spoken_digits",
        seeds="0",
        workers=1,
        vision_pretrain_steps=6,
        vision_batch_size=8,
        vision_finetune_steps=6,
        vision_train_samples=200,
        vision_eval_samples=100,
        audio_pretrain_steps=4,
        audio_batch_size=4,
        audio_finetune_steps=6,
        eval_points=2,
    )
    results = run_study(args, command="pytest modality slice")
    runs = {(r["arm"], r["task"]): r["scores"] for r in results["runs"]}
    assert set(runs) == {(a, t) for a in ("data2vec", "random") for t in ("fashion_mnist", "spoken_digits")}
    for (arm, task), scores in runs.items():
        assert 0 <= scores["probe_accuracy"] <= 100 and 0 <= scores["finetune_accuracy"] <= 100, (arm, task)
    assert all("recorded_accuracy" in runs[(a, "spoken_digits")] for a in ("data2vec", "random"))
    assert set(results["pretraining"]) == {"data2vec_vision", "data2vec_audio"}

    report = (tmp_path / "docs" / "study.md").read_text()
    assert "### Fashion-MNIST" in report and "### Spoken digits" in report
    saved = json.loads((tmp_path / "docs" / "study_results.json").read_text())
    value = saved["summary"]["data2vec"]["fashion_mnist/probe_accuracy"]["mean"]
    assert f"| data2vec 1.0 | {value:.1f} ± 0.0 |" in report  # the report's numbers are the run's
    cards = sorted(p.parent.name for p in (tmp_path / "cards").glob("*/README.md"))
    assert cards == [
        "data2vec-audio-tiny-speech-study",
        "data2vec-vision-tiny-fashion-mnist-study",
        "random-init-audio-tiny-study",
        "random-init-vision-tiny-study",
    ]
    card = (tmp_path / "cards" / "data2vec-vision-tiny-fashion-mnist-study" / "README.md").read_text()
    assert "model-index" in card and "Fashion-MNIST" in card and "run_pretraining.py --modality vision" in card

    # a second call finds every run done: it only rewrites the report (and keeps the first call's wall clock)
    again = run_study(args, command="pytest modality slice")
    assert json.loads(json.dumps(again["runs"])) == json.loads(json.dumps(results["runs"]))
    assert again["wall_time_s"] >= results["wall_time_s"]


def test_study_without_espeak_ng_names_the_tool(tmp_path, monkeypatch):
    import study

    (tmp_path / "speech").mkdir()
    monkeypatch.setattr(study, "espeak_ng_available", lambda executable="espeak-ng": False)
    args = StudyArguments(data_dir=str(tmp_path), tasks="spoken_digits", output_dir=str(tmp_path / "out"))
    with pytest.raises(ValueError, match="espeak-ng, which is not installed"):
        run_study(args)
    assert not (tmp_path / "out").exists()


def test_push_refuses_missing_checkpoints_before_uploading(tmp_path, monkeypatch):
    import huggingface_hub

    from study_report import push_study_models

    calls = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, *a, **k: calls.append(a))
    results = {
        "config": {"model_size": "tiny"},
        "checkpoints": {"data2vec": str(tmp_path), "random": str(tmp_path / "gone")},
    }
    with pytest.raises(ValueError, match="gone"):
        push_study_models(results, hub_org="org")
    assert calls == []  # nothing uploaded, not even the folders that exist
