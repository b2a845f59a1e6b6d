"""The accelerate config files of `examples/accelerate_configs/`: each builds its plugin and is accepted, and the
setups the EMA teacher cannot run under are refused with the setting named."""

import importlib.util
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin

from d2v_hf.trainer.parallelism import check_parallelism, parallelism_name

from .fixtures import REPO, accelerate_launch_env, load_example


CONFIGS = REPO / "examples" / "accelerate_configs"
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed")


def plugins(config_file, monkeypatch):
    """The FSDP / DeepSpeed plugin each process of `accelerate launch --config_file config_file` builds."""
    env = accelerate_launch_env(config_file)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    fsdp = FullyShardedDataParallelPlugin() if env.get("ACCELERATE_USE_FSDP") == "true" else None
    deepspeed = DeepSpeedPlugin() if env.get("ACCELERATE_USE_DEEPSPEED") == "true" else None
    return fsdp, deepspeed


def edited(name: str, tmp_path, **changes) -> str:
    config = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    for key, value in changes.items():
        section, _, field = key.rpartition(".")
        (config[section] if section else config)[field] = value
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize(
    "name, setup",
    [
        ("ddp", "replicated"),
        ("fsdp2", "fsdp2"),
        pytest.param("deepspeed_zero2", "deepspeed-zero2", marks=needs_deepspeed),
        pytest.param("deepspeed_zero3", "deepspeed-zero3", marks=needs_deepspeed),
    ],
)
def test_each_config_builds_and_is_accepted(name, setup, monkeypatch):
    fsdp, deepspeed = plugins(CONFIGS / f"{name}.yaml", monkeypatch)
    assert parallelism_name(fsdp, deepspeed) == setup
    check_parallelism(setup, "float32", deepspeed.deepspeed_config if deepspeed else None)
    if fsdp is not None:  # student and teacher layers wrapped alike: the model's _no_split_modules
        assert fsdp.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
        assert fsdp.state_dict_type.name == "SHARDED_STATE_DICT"
    if deepspeed is not None:
        assert deepspeed.deepspeed_config["gradient_clipping"] == "auto"  # the recipe's max_grad_norm


def test_fsdp1_is_refused(tmp_path, monkeypatch):
    # (no module-state broadcast: FSDP1's plugin asks for a GPU for it)
    changes = {"fsdp_config.fsdp_version": 1, "fsdp_config.fsdp_sync_module_states": False}
    fsdp, _ = plugins(edited("fsdp2", tmp_path, **changes), monkeypatch)
    assert parallelism_name(fsdp) == "fsdp1"
    with pytest.raises(ValueError, match="FSDP version 1 is not supported.*fsdp_version: 2"):
        check_parallelism("fsdp1", "float32")


def test_a_low_precision_teacher_under_fsdp_is_refused():
    with pytest.raises(ValueError, match="teacher_dtype=bfloat16 under FSDP"):
        check_parallelism("fsdp2", "bfloat16")
    check_parallelism("replicated", "bfloat16")
    check_parallelism("deepspeed-zero2", "bfloat16", {})


@needs_deepspeed
def test_zero3_without_gathered_weights_on_save_is_refused(tmp_path, monkeypatch):
    config = edited("deepspeed_zero3", tmp_path, **{"deepspeed_config.zero3_save_16bit_model": False})
    _, deepspeed = plugins(config, monkeypatch)
    with pytest.raises(ValueError, match="zero3_save_16bit_model: true"):
        check_parallelism(parallelism_name(None, deepspeed), "float32", deepspeed.deepspeed_config)


def launched_commands(text: str) -> list[tuple[list[str], list[str]]]:
    """Each `accelerate launch ... run_pretraining.py ...` line of `text`: (accelerate's arguments, the script's)."""
    commands = []
    for line in text.splitlines():
        words = shlex.split(line)
        if words[:2] != ["accelerate", "launch"]:
            continue
        script = next(i for i, word in enumerate(words) if word.endswith("run_pretraining.py"))
        commands.append((words[2 : script + 1], words[script + 1 :]))
    return commands


def check_launch(accelerate_args: list[str], script_args: list[str], tmp_path) -> None:
    """accelerate accepts the launch arguments with the config file, and run_pretraining.py its own arguments."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    args = launch_command_parser().parse_args(accelerate_args)
    assert Path(args.config_file).is_file(), args.config_file
    _validate_launch_command(args)
    run_pretraining = load_example("run_pretraining")
    output = script_args.index("--output_dir") + 1
    script_args = script_args[:output] + [str(tmp_path / "out")] + script_args[output + 1 :]
    run_pretraining.parse_args(script_args)


def test_gpu_smoke_script_runs_each_config_with_valid_arguments(tmp_path):
    script = CONFIGS / "gpu_smoke_test.sh"
    result = subprocess.run(["bash", str(script), str(tmp_path), "--dry_run"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    commands = launched_commands(result.stdout)
    configs = [Path(accelerate[accelerate.index("--config_file") + 1]).stem for accelerate, _ in commands]
    assert configs == ["fsdp2", "fsdp2", "deepspeed_zero2", "deepspeed_zero2", "deepspeed_zero3", "deepspeed_zero3"]
    for accelerate, script_args in commands:
        check_launch(accelerate, script_args, tmp_path)
    assert "--resume_from_checkpoint" in commands[1][1]


def test_slurm_script_launches_one_accelerate_per_node(tmp_path):
    """With `srun` and `scontrol` replaced by stand-ins, the command each node would run: accelerate's arguments
    (the node's rank from SLURM_NODEID, 2 nodes x 8 GPUs) and the script's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text('#!/bin/sh\nshift\nexec "$@"\n')  # drops --kill-on-bad-exit, runs bash -c ...
    (bin_dir / "scontrol").write_text("#!/bin/sh\necho node-a\necho node-b\n")
    (bin_dir / "accelerate").write_text('#!/bin/sh\nprintf "accelerate"; printf " %s" "$@"; echo\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_NNODES": "2", "SLURM_NODEID": "1"}
    env.update(SLURM_JOB_NODELIST="node-[a-b]", SLURM_JOB_ID="7", CONFIG=str(CONFIGS / "deepspeed_zero3.yaml"))
    script = REPO / "examples" / "pretraining" / "slurm_pretraining.sh"
    result = subprocess.run(
        ["bash", str(script), "--recipe", "data2vec-text-base", "--output_dir", "out dir"],
        capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    words = result.stdout.strip()
    assert words.startswith(f"accelerate launch --config_file {CONFIGS / 'deepspeed_zero3.yaml'} ")
    assert "--machine_rank 1" in words and "--num_processes 16" in words and "--main_process_ip node-a" in words
    assert words.endswith("--recipe data2vec-text-base --output_dir out dir")
