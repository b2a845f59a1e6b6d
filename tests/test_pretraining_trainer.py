"""Data2VecPretrainingTrainer: EMA per optimizer step, exact loss normalisation, logging, collapse guard."""

import pytest
import torch

from d2v_hf.trainer import Data2VecCollapseError, Data2VecPretrainingArguments, Data2VecPretrainingTrainer

from .fixtures import make_trainer


def test_ema_once_per_optimizer_step_and_logs(tmp_path):
    trainer = make_trainer(tmp_path, gradient_accumulation_steps=2, per_device_train_batch_size=4)
    teacher_before = [p.clone() for p in trainer.model.teacher.parameters()]
    student_before = [p.clone() for p in trainer.model.student.parameters()]
    trainer.train()
    model = trainer.model
    assert int(model.ema_num_updates) == trainer.state.global_step == 4
    assert any(not torch.equal(a, b) for a, b in zip(student_before, model.student.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(teacher_before, model.teacher.parameters()))
    assert any(not torch.equal(t, s) for t, s in zip(model.teacher.parameters(), model.student.parameters()))
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 4
    for key in ("loss", "target_var", "prediction_var", "ema_decay", "learning_rate"):
        assert all(key in entry for entry in logs), key
    assert logs[0]["ema_decay"] == model.ema_decay_at(1)  # the decay of step 1 at update 1, as fairseq
    assert "eval_loss" in trainer.evaluate()


def test_gradient_accumulation_equals_one_big_batch(tmp_path):
    """Normalising by the masked positions of the whole optimizer step makes GA=2 x 4 the same as 1 x 8."""
    big = make_trainer(tmp_path / "big", per_device_train_batch_size=8, max_steps=2)
    big.train()
    small = make_trainer(tmp_path / "small", per_device_train_batch_size=4, gradient_accumulation_steps=2, max_steps=2)
    small.train()
    for (name, a), b in zip(big.model.state_dict().items(), small.model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, msg=name)
    big_losses = [e["loss"] for e in big.state.log_history if "loss" in e]
    small_losses = [e["loss"] for e in small.state.log_history if "loss" in e]
    assert big_losses == pytest.approx(small_losses, rel=1e-5)


def test_collapse_guard_stops_with_a_clear_message(tmp_path):
    trainer = make_trainer(tmp_path, min_target_var=10.0, collapse_check_after_steps=2)
    with pytest.raises(Data2VecCollapseError, match="target_var=.* < min_target_var=10.0"):
        trainer.train()
    assert trainer.state.global_step == 2  # not before collapse_check_after_steps


def test_guard_disabled_and_bad_arguments(tmp_path):
    make_trainer(tmp_path, min_target_var=0, min_pred_var=0, collapse_check_after_steps=0, max_steps=1).train()
    with pytest.raises(ValueError, match="min_target_var=-1"):
        Data2VecPretrainingArguments(output_dir=str(tmp_path), min_target_var=-1)
    with pytest.raises(ValueError, match="trains a Data2VecForPretraining"):
        Data2VecPretrainingTrainer(model=torch.nn.Linear(2, 2), args=Data2VecPretrainingArguments(str(tmp_path)))
