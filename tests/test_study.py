"""A small slice of the study (examples/study.py) on real data: one seed, a few dozen steps, SST-2 only."""

import json
import math

import pytest

from d2v_hf.study import ARMS, StudyArguments, run_study, summarize_runs


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


@pytest.mark.real_data
def test_study_slice_end_to_end(shared_data, tmp_path):
    args = StudyArguments(
        mode="quick",
        data_dir=str(shared_data),
        output_dir=str(tmp_path / "out"),
        docs_dir=str(tmp_path / "docs"),
        model_cards_dir=str(tmp_path / "cards"),
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
