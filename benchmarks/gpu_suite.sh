#!/usr/bin/env bash
# Every GPU throughput measurement in one command: bash benchmarks/gpu_suite.sh OUTPUT_DIR [--smoke] [flags]
set -euo pipefail
usage="usage: bash benchmarks/gpu_suite.sh OUTPUT_DIR [--smoke] [--compile_regions] [--time_budget_s S] [...]
(the flags of python benchmarks/gpu_suite.py --help)"
if [ $# -lt 1 ] || [[ $1 == -* ]]; then echo "$usage" >&2; exit 2; fi
output_dir=$1
shift
exec python "$(dirname "$0")/gpu_suite.py" --output_dir "$output_dir" "$@"
