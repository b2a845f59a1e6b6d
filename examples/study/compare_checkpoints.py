"""
Compare pretrained checkpoints on the same tasks with one protocol: linear probes on frozen features, a learning-rate
sweep on held-out training data, then fine-tuning over several seeds; a report with paired differences and the data2vec
paper's numbers beside them.

    # released base models (needs the Hub; see the README's GPU section for the cost)
    python examples/study/compare_checkpoints.py \\
        --checkpoints data2vec=facebook/data2vec-text-base,roberta=roberta-base,bert=bert-base-uncased \\
        --tasks sst2,stsb,xquad --output_dir comparisons/text

    # your own exported students against each other, offline, on ../shared/data
    python examples/study/compare_checkpoints.py --checkpoints d2v=out/d2v/student,mae=out/mae/student \\
        --tasks fashion_mnist --learning_rates 1e-4,3e-4,1e-3 --output_dir comparisons/images

A checkpoint of another modality than a task is skipped with a line in the report. Every finished step is saved in
`output_dir/results.json`: run the same command again to resume an interrupted comparison. The report
(`output_dir/comparison.md`, or `--report_path`) is regenerated from `results.json` at the end of every run.
"""

import shlex
import sys

from d2v_hf.argument_parsing import parse_arguments

from comparison import CompareArguments, run_comparison
from comparison_report import write_comparison_report


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    (args,) = parse_arguments((CompareArguments,), argv)
    command = "python examples/study/compare_checkpoints.py " + shlex.join(argv)
    results = run_comparison(args, command)
    report = write_comparison_report(results, args.report_path or f"{args.output_dir}/comparison.md", args.report_note)
    print(f"Report: {report}")
    return results


if __name__ == "__main__":
    main()
