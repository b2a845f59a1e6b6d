"""
The distributed setups the EMA teacher works under, checked when the trainer is built (before any step).

| setup (accelerate)           | teacher update                                                              |
|------------------------------|-----------------------------------------------------------------------------|
| DDP / one process            | every process updates its whole copy (identical on all, checked at the end) |
| FSDP2 (`fsdp_version: 2`)    | each process updates its teacher shard from the same student shard          |
| DeepSpeed ZeRO-0/1/2         | parameters are replicated: as DDP                                           |
| DeepSpeed ZeRO-3             | student and teacher gathered whole for the update (one all-gather per step) |

Refused: FSDP version 1 (flat parameters: a teacher shard and a student shard need not hold the same parameters),
a low-precision `teacher_dtype` under FSDP (FSDP's own mixed precision already gathers bf16 copies of fp32 shards),
and ZeRO-3 without `stage3_gather_16bit_weights_on_model_save` (the final model and the exported student need the
gathered weights).

[`end_distributed_run`] is the example scripts' teardown of the process group, the same for every script.
"""


def parallelism_name(fsdp_plugin=None, deepspeed_plugin=None) -> str:
    """
    `"fsdp1"`, `"fsdp2"`, `"deepspeed-zero<stage>"` or `"replicated"` (DDP, one process), from the plugin of the
    accelerator state (`state.fsdp_plugin` under FSDP, `state.deepspeed_plugin`).
    """
    if fsdp_plugin is not None:
        return f"fsdp{fsdp_plugin.fsdp_version}"
    if deepspeed_plugin is not None:
        return f"deepspeed-zero{deepspeed_plugin.zero_stage}"
    return "replicated"


def check_parallelism(setup: str, teacher_dtype: str, deepspeed_config: dict | None = None) -> None:
    """Raises a `ValueError` naming the setting when data2vec pretraining cannot run under `setup` as configured."""
    if setup == "fsdp1":
        raise ValueError(
            "FSDP version 1 is not supported: it shards flattened groups of parameters, so a teacher shard and a "
            "student shard need not hold the same parameters for the EMA. Use FSDP2 (fsdp_version: 2, as "
            "examples/accelerate_configs/fsdp2.yaml)."
        )
    if setup == "fsdp2" and teacher_dtype != "float32":
        raise ValueError(
            f"teacher_dtype={teacher_dtype} under FSDP: FSDP keeps fp32 shards and gathers them in the mixed "
            "precision dtype for each forward already (mixed_precision: bf16), so keep teacher_dtype=float32."
        )
    if setup == "deepspeed-zero3":
        zero = (deepspeed_config or {}).get("zero_optimization", {})
        if not zero.get("stage3_gather_16bit_weights_on_model_save", False):
            raise ValueError(
                "DeepSpeed ZeRO-3 without stage3_gather_16bit_weights_on_model_save (accelerate config: "
                "zero3_save_16bit_model: true): the final model.safetensors and the exported student need the "
                "gathered weights."
            )


def end_distributed_run() -> None:
    """
    The example scripts' last call: every rank waits for the others, then the process group is torn down explicitly.
    A gloo/NCCL thread outliving the interpreter's shutdown can abort a finished rank, and a rank that tore down while
    another still wrote its artifacts did so in CI. Without a process group (one process) both steps do nothing.
    """
    from accelerate import PartialState

    state = PartialState()
    state.wait_for_everyone()
    state.destroy_process_group()


__all__ = ["check_parallelism", "end_distributed_run", "parallelism_name"]
