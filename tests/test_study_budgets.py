"""The study at every budget (examples/study/study_budgets.py): runs grouped by arm and setting, the smallest budget
at which each arm beats random init, and the inputs it refuses."""

import json
from pathlib import Path

import pytest

from .fixtures import vision_study_results  # (fixtures puts examples/study on sys.path)
from study_budgets import main as study_budgets  # noqa: E402
from study_budgets import run_setting, setting_style  # noqa: E402


RANDOM = {0: [60.0, 61.0, 62.0]}


def _save_run(root: Path, name: str, scores: dict, steps: int, **config) -> Path:
    """A vision run of `steps` data2vec 1.0 steps (the quick mode's batch), saved as run_study.py saves it."""
    folder = root / name
    config = {"mode": "quick", "vision_steps": steps, "vision_batch_size": 64, "docs_dir": str(folder), **config}
    results = vision_study_results({**scores, "random": RANDOM}, budget=steps * 1e9, **config)
    folder.mkdir(parents=True)
    (folder / "study_results.json").write_text(json.dumps(results))
    return folder / "study_results.json"


def test_runs_at_several_budgets_give_the_smallest_budget_of_each_arm_and_setting(tmp_path):
    level, ahead = [60.0, 62.0, 61.0], [70.0, 71.0, 72.0]
    _save_run(tmp_path / "runs", "quick", {"mae": {150: level, 300: level}, "data2vec": {300: ahead}}, 300)
    # 4x: MAE is level halfway through, ahead from three quarters on; data2vec 1.0 is far ahead halfway through, then
    # falls back to random init's level
    peak = [73.0, 74.0, 75.0]
    longer = {"mae": {600: level, 900: ahead, 1200: ahead}, "data2vec": {600: peak, 1200: level}}
    _save_run(tmp_path / "runs", "longer", longer, 1200)
    # a third of the learning rate, at 4x: a setting of its own, never ahead
    _save_run(tmp_path / "runs", "lr", {"mae": {1200: level}}, 1200, vision_learning_rate=3e-4)
    _save_run(tmp_path / "runs", "seeds", {"mae": {300: ahead}}, 300, seeds="3,4,5")  # other seeds: not pooled
    dry = _save_run(tmp_path / "runs", "dry", {"mae": {2: ahead}}, 300, dry_run=True)  # 2 steps: no budget
    output = tmp_path / "docs" / "study_budgets.md"
    study_budgets(["--results", f"{tmp_path}/runs/*/study_results.json", "--output", output, "--modalities", "vision"])

    report = output.read_text()
    assert (
        "- MAE (quick mode's settings): between 1x (not ahead by more than the seed spread at the end of that run) "
        "and 4x (ahead from 3x on" in report
    )
    assert "- MAE (vision_learning_rate=0.0003 settings): not by 4x, the largest budget measured." in report
    assert "- MAE (seeds=3,4,5 settings): by 1x, the smallest budget measured" in report
    assert f"Left out, as `--dry_run` runs (2 steps of each arm): {dry}." in report
    assert len([line for line in report.splitlines() if line.startswith("| MAE |")]) == 4
    assert (
        "- data2vec 1.0 (quick mode's settings): by 1x, the smallest budget measured (ahead from 1x on in that run); "
        "yet not ahead at the end of the 4x run(s)." in report
    )
    # over all its runs: the largest lead is read along the runs (halfway through the 4x one), not only at their ends
    assert (
        "- data2vec 1.0: 2 run(s) from 1x to 4x (up to 1.2 TFLOPs a run); ahead of random init at the end of 1; "
        "paired difference at the end from +0.0 to +10.0; largest lead at any probed point +13.0." in report
    )
    assert "- MAE: 4 run(s) from 1x to 4x (up to 1.2 TFLOPs a run); ahead of random init at the end of 2;" in report
    row = next(line for line in report.splitlines() if line.startswith("| MAE | quick mode's | 4x"))
    assert (
        "| 71.0 ± 1.0 | 61.0 ± 1.0 | +10.0" in row and "| yes (+10.0 vs spread 1.0) | 3x | 61.0, 71.0, 71.0 |" in row
    )
    assert "[../runs/longer/study.md]" not in row and "(../runs/longer/study.md)" in row  # a link from docs/
    assert (tmp_path / "docs" / "img" / "study_budgets_vision.png").stat().st_size > 0
    assert "study_budgets.py --results" in report  # the command that made it


def test_a_setting_is_what_the_run_changed_for_that_arm():
    config = {"mode": "quick", "text_mask_strategy": "bert", "text_corpus": "glue", "corpus_lines": None}
    config.update(data2vec_overrides="loss_beta=0", data2vec2_overrides="clone_batch=1")
    results = {"config": config}
    # the masks and the first recipe overrides are data2vec 1.0's alone, the second data2vec 2.0's; None: every line
    lines, glue = ("corpus_lines", "all"), ("text_corpus", "glue")
    one = (lines, ("data2vec_overrides", "loss_beta=0"), glue, ("text_mask_strategy", "bert"))
    assert run_setting(results, "text", "data2vec") == one
    assert run_setting(results, "text", "data2vec2") == (lines, ("data2vec2_overrides", "clone_batch=1"), glue)
    assert run_setting(results, "text", "mlm") == (lines, glue)
    # a run saved before a field existed ran its mode's preset: the quick mode's, so no setting
    assert run_setting({"config": {"mode": "quick"}}, "text", "data2vec") == ()
    assert run_setting({"config": {"mode": "standard"}}, "text", "data2vec") == (
        ("corpus_lines", "60000"),
        ("max_seq_length", "128"),
        ("probe_eval_samples", "all"),
        ("probe_train_samples", "4000"),
        ("tokenizer_vocab_size", "8000"),
    )


def test_settings_of_one_arm_draw_alike_in_no_two_lines():
    # the text plot has 5 settings of data2vec 1.0: with one cycle of 4 styles the fifth drew as the first
    styles = [(s["linestyle"], s["marker"]) for s in (setting_style(0, index) for index in range(12))]
    assert len(set(styles)) == 12
    assert {setting_style(arm, 0)["color"] for arm in range(3)} == {"C0", "C1", "C2"}


def test_bad_inputs_are_named_before_anything_is_written(tmp_path):
    run = _save_run(tmp_path, "run", {"mae": {300: [60.0, 61.0, 62.0]}}, 300)
    (tmp_path / "notes.json").write_text("[]")
    output = tmp_path / "out" / "study_budgets.md"
    bad = [
        (["--results", str(tmp_path / "missing.json")], "--results .*missing.json: no such file"),
        (["--results", f"{tmp_path}/nothing/*.json"], r"--results .*nothing/\*.json: no such file"),
        (["--results", f"{run},{tmp_path / 'notes.json'}"], "notes.json: not the study_results.json of a study run"),
        (["--results", str(run), "--modalities", "video"], "--modalities 'video'"),
        (
            ["--results", str(run), "--modalities", "text"],
            r"no run \(--dry_run runs aside\) trained any of --modalities 'text'",
        ),
    ]
    for argv, message in bad:
        with pytest.raises(ValueError, match=message):
            study_budgets([*argv, "--output", output])
    assert not output.parent.exists()
