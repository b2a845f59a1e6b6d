"""A study pretraining run that is stopped part way resumes from its last checkpoint and ends as the run that was not
stopped; a run folder written under other settings is started over, not resumed."""

import json

import pytest
import torch
from safetensors.torch import load_file

from .fixtures import tiny_text_study_arguments
from study_arms import pretrain_arm  # noqa: E402
from study_config import StudyArguments  # noqa: E402
from study_data import prepare_data  # noqa: E402


pytestmark = pytest.mark.real_data

STEPS = 10


@pytest.fixture(scope="module")
def study(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    args = tiny_text_study_arguments(shared_data, root, probe_points=2)
    return args, prepare_data(args), root


def _weights(record):
    return load_file(f"{record['snapshots'][str(STEPS)]}/model.safetensors")


def test_a_stopped_run_resumes_from_its_last_checkpoint_and_ends_as_the_whole_run(study, monkeypatch, capsys):
    args, data, root = study
    whole = pretrain_arm(args, "text", "data2vec", 0, STEPS, data, str(root / "whole"), resume_key="k")

    import study_arms

    snapshot_callback = study_arms.SnapshotCallback

    class StoppingSnapshots(snapshot_callback):  # raises at step 7, as a kill would stop the run there
        def on_step_end(self, args, state, control, **kwargs):
            super().on_step_end(args, state, control, **kwargs)
            if state.global_step == 7:
                raise KeyboardInterrupt("stopped at step 7")

    monkeypatch.setattr(study_arms, "SnapshotCallback", StoppingSnapshots)
    with pytest.raises(KeyboardInterrupt):
        pretrain_arm(args, "text", "data2vec", 0, STEPS, data, str(root / "stopped"), resume_key="k")
    # a checkpoint every STEPS // 10 steps, the last two kept, the wall clock beside each (step 7 stopped first)
    kept = sorted(path.name for path in (root / "stopped").glob("checkpoint-*"))
    assert kept == ["checkpoint-5", "checkpoint-6"]
    elapsed = json.loads((root / "stopped" / "checkpoint-6" / "elapsed.json").read_text())["wall_time_s"]
    assert elapsed > 0

    trained = []

    class CountingSnapshots(snapshot_callback):
        def on_step_end(self, args, state, control, **kwargs):
            trained.append(state.global_step)
            super().on_step_end(args, state, control, **kwargs)

    monkeypatch.setattr(study_arms, "SnapshotCallback", CountingSnapshots)
    capsys.readouterr()
    resumed = pretrain_arm(args, "text", "data2vec", 0, STEPS, data, str(root / "stopped"), resume_key="k")
    assert trained == [7, 8, 9, 10], "the run resumes after its last checkpoint, not from step 0"
    # one progress line per logged step, naming the run (side by side with others in one console), not a bare dict
    printed = capsys.readouterr().out.splitlines()
    progress = [line for line in printed if line.startswith("text data2vec seed 0: step ")]
    assert "text data2vec seed 0: resumed at step 6/10" in printed
    assert [line.split()[5] for line in progress] == ["7/10", "8/10", "9/10", "10/10"]
    assert "(100%), loss " in progress[-1] and progress[0].endswith("min left")
    assert not any(line.startswith("{") for line in printed)
    assert resumed["wall_time_s"] > elapsed
    assert resumed["snapshots"] == {
        step: path.replace(str(root / "whole"), str(root / "stopped")) for step, path in whole["snapshots"].items()
    }
    assert resumed["loss_curve"] == whole["loss_curve"]
    for name, tensor in _weights(whole).items():
        torch.testing.assert_close(_weights(resumed)[name], tensor, rtol=0, atol=0, msg=name)
    assert not list((root / "stopped").glob("checkpoint-*")), "a finished run keeps no optimizer state"


def test_a_run_folder_of_other_settings_starts_over(tmp_path):
    import study_arms

    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "resume_key.json").write_text("other settings")
    (folder / "checkpoint-5").mkdir()
    (folder / "checkpoint-5" / "elapsed.json").write_text('{"wall_time_s": 1.0}')
    assert study_arms._checkpoint_to_resume(folder, "these settings") is None
    assert not (folder / "checkpoint-5").exists()
    assert (folder / "resume_key.json").read_text() == "these settings"
    # a checkpoint cut short (no elapsed.json) is passed over for the complete one before it
    for step in (3, 4):
        (folder / f"checkpoint-{step}").mkdir()
    (folder / "checkpoint-3" / "elapsed.json").write_text('{"wall_time_s": 1.0}')
    assert study_arms._checkpoint_to_resume(folder, "these settings") == str(folder / "checkpoint-3")


def test_resume_checkpoints_must_not_be_negative(tmp_path):
    with pytest.raises(ValueError, match="--resume_checkpoints -1"):
        StudyArguments(mode="quick", output_dir=str(tmp_path), resume_checkpoints=-1)
