#!/usr/bin/env bash
# Every GPU throughput measurement in one command: bash benchmarks/gpu_suite.sh OUTPUT_DIR [--smoke]
set -euo pipefail
if [ $# -lt 1 ]; then echo "usage: bash benchmarks/gpu_suite.sh OUTPUT_DIR [--smoke]" >&2; exit 2; fi
output_dir=$1
shift
exec python "$(dirname "$0")/gpu_suite.py" --output_dir "$output_dir" "$@"
