"""
Run by `torchrun --nproc_per_node 2` from `test_deepspeed.py`: `run_pretraining.py`'s `main()` on two CPU processes
under an accelerate config file of `examples/accelerate_configs/` (the environment `accelerate launch` would give),
in fp32. DeepSpeed runs on CPU with gloo, but accelerate picks no process group backend for DeepSpeed on a machine
without GPUs, so the process state is set up here with gloo and the Trainer is told to use it
(`use_configured_state`).

    python -m torch.distributed.run --nproc_per_node 2 tests/deepspeed_worker.py CONFIG_FILE -- RUN_PRETRAINING_ARGS
"""

import json
import os
import sys
import tempfile
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests` as a package, run as a script
from tests.fixtures import accelerate_launch_env, load_example  # noqa: E402


def main(config_file: str, argv: list[str]) -> None:
    os.environ.update(accelerate_launch_env(config_file))
    # fp32 on CPU, comparable with the DDP run, unless the test asks for DeepSpeed's bf16 (the whole module in bf16)
    os.environ["ACCELERATE_MIXED_PRECISION"] = os.environ.get("D2V_TEST_MIXED_PRECISION", "no")
    from accelerate import PartialState
    from accelerate.utils import DeepSpeedPlugin

    PartialState(backend="gloo")
    # the DeepSpeed config the accelerate config file gives, with one change: ZeRO-3 keeps parameters under 1e5
    # elements whole on every process (all of a tiny model's); 0 partitions every one, as a base model's matrices are
    config = DeepSpeedPlugin().deepspeed_config
    if os.environ["ACCELERATE_MIXED_PRECISION"] == "bf16":
        config["bf16"] = {"enabled": True}
    if config["zero_optimization"]["stage"] == 3:
        config["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    for name in [name for name in os.environ if name.startswith(("ACCELERATE_DEEPSPEED_", "ACCELERATE_CONFIG_DS"))]:
        del os.environ[name]  # the file now says it all (accelerate refuses both)
    # one file per launch (every process writes the same content)
    deepspeed_file = Path(tempfile.gettempdir()) / f"d2v_hf-deepspeed-{os.environ['MASTER_PORT']}.json"
    deepspeed_file.write_text(json.dumps(config))
    run_pretraining = load_example("run_pretraining")
    configured = json.dumps({"use_configured_state": True})
    run_pretraining.main(argv + ["--deepspeed", str(deepspeed_file), "--accelerator_config", configured])


if __name__ == "__main__":
    separator = sys.argv.index("--")
    main(sys.argv[1], sys.argv[separator + 1 :])
    # the script has written everything and torn its process group down (`end_distributed_run`); skip the
    # interpreter's teardown, where a C++ thread of the gloo / DeepSpeed stack still joinable when its owner is
    # destroyed aborted a finished rank once in CI on a loaded machine ("terminate called without an active
    # exception"): the test checks the script's outputs, not the interpreter's exit
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
