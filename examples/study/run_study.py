#!/usr/bin/env python
"""The study: data2vec 1.0 and 2.0 against each modality's own self-supervised objective (RoBERTa-style MLM, MAE,
wav2vec 2.0) and random initialisation, at equal training FLOPs, on the real data of `../shared/data`.

    # Quick mode: tiny models, 3 seeds, probes along every run, Fashion-MNIST and spoken-digit fine-tuning; 30 minutes
    # on a 2-core CPU; writes docs/study.md, docs/study_results.json, docs/img/study_*.png and model_cards/
    python examples/study/run_study.py --mode quick --data_dir ../shared/data

    # Standard mode (sized for about 3 hours on a 2-core CPU, not yet timed end to end: 10x the pretraining,
    # every fine-tuning task)
    python examples/study/run_study.py --mode standard --data_dir ../shared/data --output_dir outputs/study-standard

    # Full mode (base-size backbones, for one GPU); --dry_run builds every arm at that size and runs 2 steps of each
    python examples/study/run_study.py --mode full --data_dir ../shared/data --output_dir outputs/study-full
    python examples/study/run_study.py --mode full --dry_run --output_dir outputs/study-dry-run
    # What the full mode's pretraining costs (FLOPs counted at base size on this machine, no training)
    python examples/study/run_study.py --mode full --plan_only --output_dir outputs/study-full

    # A slice, and uploading the produced models with their cards
    python examples/study/run_study.py --modalities vision --seeds 0,1,2 --vision_steps 100 --finetune_tasks ''
    python examples/study/run_study.py --push_to_hub --hub_org my-org

The logic lives in `study.py` and the `study_*.py` modules beside this script.
"""

import logging
import shlex
import sys

from d2v_hf.argument_parsing import parse_arguments

from study import StudyArguments, run_study
from study_config import MAIN_PROBE
from study_report import decide
from study_utils import signed


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    (args,) = parse_arguments([StudyArguments], argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    command = shlex.join(["python", "examples/study/run_study.py", *argv])
    results = run_study(args, command=command)
    if "plan" in results:
        print_plan(results["plan"], len(args.seed_list), args.plan_tflops)
    for key, record in results.get("dry_run", {}).items():
        print(f"dry run {key}: {record['class']}, {record['steps']} steps, losses {record['loss_curve']}")
    for modality in results.get("modalities", {}):
        for arm, decision in decide(results, modality).items():
            verdict = "beats" if decision["beats_random"] else "does not beat"
            print(
                f"{modality} {arm}: {verdict} random init on the {MAIN_PROBE[modality]} probe "
                f"({signed(decision['margin'])}, seed spread {decision['spread']:.1f})"
            )
    return results


def print_plan(plan: dict, seeds: int, tflops: float) -> None:
    """The pretraining compute of `--plan_only`: per arm, then over every arm and seed, with its hours at `tflops`."""
    total = 0
    for modality, entry in plan.items():
        for arm, arm_plan in entry["arms"].items():
            print(
                f"plan {modality} {arm} ({arm_plan['class']}): {arm_plan['steps']} steps of {arm_plan['batch_size']} "
                f"samples, {arm_plan['flops_per_step'] / 1e12:.3g} TFLOPs a step, "
                f"{arm_plan['total_flops'] / 1e15:.3g} PFLOPs a run"
            )
            total += arm_plan["total_flops"] * seeds
    print(
        f"plan: {total / 1e15:.3g} PFLOPs of pretraining over {seeds} seed(s), {total / (tflops * 1e12) / 3600:.3g} "
        f"hours at {tflops:g} TFLOP/s sustained (an assumption; probes and fine-tuning come on top)"
    )


if __name__ == "__main__":
    main()
