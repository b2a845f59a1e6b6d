"""
Checkpoints that survive a kill -9 in the middle of a save, "resume from the last checkpoint" that picks the last
complete one, and a NaN that stops training before it reaches the teacher.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers.trainer_utils import get_last_checkpoint

from d2v_hf import Data2VecForPretraining, Data2VecPretrainingArguments, Data2VecPretrainingTrainer, data_collator_for
from d2v_hf.trainer import Data2VecNonFiniteLossError
from d2v_hf.trainer.checkpointing import last_complete_checkpoint, resolve_resume_checkpoint

from .fixtures import EXAMPLES, NO_DROPOUT, REPO, build_tokenizer, load_example, tiny_config


run_pretraining = load_example("run_pretraining")
pretraining_utils = load_example("pretraining_utils")

TINY = "backbone.hidden_size=32,backbone.intermediate_size=64,backbone.num_hidden_layers=2,average_top_k_layers=2"
WORDS = "a student regresses what an ema teacher sees of the unmasked input at every masked position".split()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    generator = torch.Generator().manual_seed(0)
    lines = [" ".join(WORDS[i] for i in torch.randint(0, len(WORDS), (24,), generator=generator)) for _ in range(300)]
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def args(corpus, output_dir, *extra):
    return [
        f"--config_overrides={TINY}", "--modality=text", "--model_size=tiny", f"--train_file={corpus}",
        "--train_tokenizer", "--tokenizer_vocab_size=300", "--max_seq_length=32", f"--output_dir={output_dir}",
        "--per_device_train_batch_size=8", "--learning_rate=1e-3", "--logging_steps=1", "--use_cpu", "--seed=0",
        "--report_to=none", "--eval_strategy=no", "--max_steps=9", "--save_steps=3", *extra,
    ]  # fmt: skip


# Runs run_pretraining.py in a child process that SIGKILLs itself in the middle of saving checkpoint-6: after the
# weights are written, before the optimizer, scheduler, RNG states and trainer state.
KILLER = """
import os, signal, sys
sys.path.insert(0, {folder!r})
import run_pretraining
import torch
from transformers import Trainer

torch.set_num_threads(1)  # as the test process: the same float sums, so the resumed run can match bit for bit

save = Trainer._save_optimizer_and_scheduler

def save_or_die(self, output_dir):
    if self.state.global_step == 6:
        os.kill(os.getpid(), signal.SIGKILL)
    return save(self, output_dir)

Trainer._save_optimizer_and_scheduler = save_or_die
run_pretraining.main({argv!r})
"""


@pytest.mark.slow
def test_kill_during_a_checkpoint_save_then_resume_the_last_complete_one(corpus, tmp_path):
    killed = tmp_path / "killed"
    script = KILLER.format(folder=str(EXAMPLES / "pretraining"), argv=args(corpus, killed))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True, timeout=600)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-3000:]

    # the save of step 6 was cut short: its files are in the staging folder, never in a checkpoint-6 folder
    names = sorted(path.name for path in killed.iterdir())
    assert "checkpoint-3" in names and "checkpoint-6" not in names, names
    staging = killed / ".incomplete-checkpoint-6" / "checkpoint-6"
    assert (staging / "model.safetensors").exists() and not (staging / "trainer_state.json").exists()
    pretraining_utils.check_checkpoint(str(killed / "checkpoint-3"), "text")  # the previous one loads
    assert get_last_checkpoint(str(killed)) == str(killed / "checkpoint-3")  # transformers' own "last" agrees
    assert resolve_resume_checkpoint("last", killed) == str(killed / "checkpoint-3")
    assert resolve_resume_checkpoint(str(killed), "unused") == str(killed / "checkpoint-3")

    run_pretraining.main(args(corpus, killed, "--resume_from_checkpoint=last"))
    uninterrupted = tmp_path / "uninterrupted"
    run_pretraining.main(args(corpus, uninterrupted))
    a, b = load_file(killed / "model.safetensors"), load_file(uninterrupted / "model.safetensors")
    assert a.keys() == b.keys() and int(a["ema_num_updates"]) == 9
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert not (killed / ".incomplete-checkpoint-6").exists()  # cleaned when step 6 was saved again
    assert last_complete_checkpoint(killed) == str(killed / "checkpoint-9")


def test_last_complete_checkpoint_skips_damaged_folders(tmp_path):
    for step, complete in ((2, True), (4, True), (6, False), (10, False)):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"weights")
        if complete:
            (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (tmp_path / "checkpoint-10" / "trainer_state.json").write_text("{ truncated")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")
    assert resolve_resume_checkpoint("latest", tmp_path) == str(tmp_path / "checkpoint-4")
    assert resolve_resume_checkpoint(str(tmp_path / "checkpoint-2"), "unused") == str(tmp_path / "checkpoint-2")
    assert resolve_resume_checkpoint(None, tmp_path) is None
    with pytest.raises(ValueError, match="no complete checkpoint-N folder in .*empty"):
        resolve_resume_checkpoint("last", tmp_path / "empty")


def test_an_fsdp_sharded_checkpoint_is_complete_once_its_metadata_is_written(tmp_path):
    """FSDP's SHARDED_STATE_DICT checkpoints hold `pytorch_model_fsdp_0/` (torch.distributed.checkpoint, whose
    `.metadata` is written last), not `model.safetensors`."""
    folder = tmp_path / "checkpoint-4"
    (folder / "pytorch_model_fsdp_0").mkdir(parents=True)
    (folder / "pytorch_model_fsdp_0" / "__0_0.distcp").write_bytes(b"shard")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    assert last_complete_checkpoint(tmp_path) is None
    (folder / "pytorch_model_fsdp_0" / ".metadata").write_bytes(b"metadata")
    assert last_complete_checkpoint(tmp_path) == str(folder)


def nan_trainer(tmp_path, nan_at_step: int):
    """A tiny text run whose loss turns NaN at one optimizer step (as a diverging run or a bad batch would)."""
    torch.manual_seed(0)
    model = Data2VecForPretraining(tiny_config("text", backbone_kwargs=NO_DROPOUT))
    generator = torch.Generator().manual_seed(0)
    dataset = Dataset.from_dict({"input_ids": torch.randint(5, 98, (64, 16), generator=generator).tolist()})
    arguments = Data2VecPretrainingArguments(
        output_dir=str(tmp_path), max_steps=6, save_steps=2, per_device_train_batch_size=4, learning_rate=1e-3,
        use_cpu=True, report_to="none", logging_steps=1, seed=0, collapse_check_after_steps=10_000,
    )  # fmt: skip
    trainer = Data2VecPretrainingTrainer(
        model=model,
        args=arguments,
        train_dataset=dataset,
        data_collator=data_collator_for(model.config, build_tokenizer(["a b"], vocab_size=300)),
    )
    forward = model.forward

    def forward_with_nan(*a, **kw):
        output = forward(*a, **kw)
        if model.training and trainer.state.global_step + 1 == nan_at_step:
            output.loss = output.loss * float("nan")
        return output

    model.forward = forward_with_nan
    return trainer


def test_nan_loss_stops_before_the_teacher_sees_it(tmp_path):
    trainer = nan_trainer(tmp_path, nan_at_step=5)
    with pytest.raises(Data2VecNonFiniteLossError, match="optimizer step 5"):
        trainer.train()
    model = trainer.model
    assert int(model.ema_num_updates) == 4  # the EMA never took step 5
    assert all(torch.isfinite(p).all() for p in model.teacher.parameters())
    assert all(torch.isfinite(p).all() for p in model.student.parameters())
    saved = load_file(tmp_path / "checkpoint-4" / "model.safetensors")
    assert int(saved["ema_num_updates"]) == 4 and all(torch.isfinite(t.float()).all() for t in saved.values())
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-4")


def bf16_teacher_trainer(output_dir, dataset):
    torch.manual_seed(0)
    model = Data2VecForPretraining(tiny_config("text", backbone_kwargs=NO_DROPOUT))
    model.teacher.to(torch.bfloat16)  # a low-precision teacher: the EMA accumulates in an fp32 shadow
    arguments = Data2VecPretrainingArguments(
        output_dir=str(output_dir), max_steps=6, save_steps=3, per_device_train_batch_size=4, learning_rate=1e-3,
        use_cpu=True, report_to="none", logging_steps=1, seed=0,
    )  # fmt: skip
    tokenizer = build_tokenizer(["a b"], vocab_size=300)
    collator = data_collator_for(model.config, tokenizer)
    return Data2VecPretrainingTrainer(model=model, args=arguments, train_dataset=dataset, data_collator=collator)


def test_bf16_teacher_resumes_bitwise_with_its_fp32_shadow(tmp_path):
    generator = torch.Generator().manual_seed(0)
    dataset = Dataset.from_dict({"input_ids": torch.randint(5, 98, (48, 16), generator=generator).tolist()})
    full = bf16_teacher_trainer(tmp_path / "full", dataset)
    full.train()
    assert (tmp_path / "full" / "checkpoint-3" / "ema_fp32.safetensors").exists()
    resumed = bf16_teacher_trainer(tmp_path / "resumed", dataset)
    resumed.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    for (name, a), b in zip(full.model.teacher.named_parameters(), resumed.model.teacher.parameters()):
        assert a.dtype == torch.bfloat16 and torch.equal(a, b), name
    shadow_full, shadow_resumed = full.model.ema_fp32_state(), resumed.model.ema_fp32_state()
    assert shadow_full.keys() == shadow_resumed.keys() and shadow_full
    for name in shadow_full:
        assert torch.equal(shadow_full[name], shadow_resumed[name]), name
    # what a resume without the shadow gives: the fp32 accumulator restarts from the bf16 weights, and drifts
    dropped = bf16_teacher_trainer(tmp_path / "dropped", dataset)
    (tmp_path / "full" / "checkpoint-3" / "ema_fp32.safetensors").unlink()
    dropped.train(resume_from_checkpoint=str(tmp_path / "full" / "checkpoint-3"))
    assert any(not torch.equal(shadow_full[n], dropped.model.ema_fp32_state()[n]) for n in shadow_full)
