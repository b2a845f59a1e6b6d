#!/usr/bin/env python
"""The study: data2vec text pretraining against RoBERTa-style MLM pretraining and random initialisation.

    # Quick mode: a tiny model, under 30 minutes on a 2-core CPU; writes docs/study.md, docs/study_results.json,
    # docs/img/study_*.png and model_cards/<name>/README.md
    python examples/study/run_study.py --mode quick --data_dir ../shared/data

    # Full mode (RoBERTa-base backbone, whole corpus, 50k pretraining steps, 5 seeds): for a GPU
    python examples/study/run_study.py --mode full --data_dir ../shared/data --output_dir outputs/study-full

    # A smaller slice, and uploading the produced models with their cards
    python examples/study/run_study.py --tasks sst2 --seeds 0 --pretrain_steps 50 --finetune_steps 50
    python examples/study/run_study.py --push_to_hub --hub_org my-org

Same compute budget for the pretrained arms (steps x batch x tokens), same tokenizer, same backbone, same corpus;
identical fine-tuning for every arm. The logic lives in `study.py` and the `study_*.py` modules beside this script.
"""

import logging
import shlex
import sys

from d2v_hf.argument_parsing import parse_arguments

from study import StudyArguments, run_study


def main(argv=None):
    argv = sys.argv[1:] if argv is None else [str(arg) for arg in argv]
    (args,) = parse_arguments([StudyArguments], argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    command = shlex.join(["python", "examples/study/run_study.py", *argv])
    results = run_study(args, command=command)
    for arm, scores in results["summary"].items():
        average = scores.get("average")
        if average:
            print(f"{arm}: average {average['mean']:.2f} ± {average['std']:.2f}")
    return results


if __name__ == "__main__":
    main()
