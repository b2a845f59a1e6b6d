#!/usr/bin/env bash
# One GPU, a few minutes: run_pretraining.py under FSDP2, DeepSpeed ZeRO-2 and ZeRO-3 (the config files of this
# folder, one process), tiny text model on the embedded corpus, 20 steps with a checkpoint at step 10, then a resume
# from that checkpoint in a new process; each run must write the model, the exported student and its results, and the
# resumed run must end on the uninterrupted run's loss.
#
#   bash examples/accelerate_configs/gpu_smoke_test.sh OUTPUT_DIR            # run (needs a GPU and deepspeed)
#   bash examples/accelerate_configs/gpu_smoke_test.sh OUTPUT_DIR --dry_run  # print the commands only
set -euo pipefail
out=${1:?usage: gpu_smoke_test.sh OUTPUT_DIR [--dry_run]}
dry_run=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
script="$here/../pretraining/run_pretraining.py"
mkdir -p "$out"

for config in fsdp2 deepspeed_zero2 deepspeed_zero3; do
  for run in whole resumed; do
    command=(accelerate launch --config_file "$here/$config.yaml" --num_processes 1 --num_machines 1 "$script"
      --modality text --model_size tiny --max_steps 20 --save_steps 10 --logging_steps 5 --seed 0
      --output_dir "$out/$config-$run" --report_to none)
    if [ "$run" = resumed ]; then
      command+=(--resume_from_checkpoint "$out/$config-$run/checkpoint-10")
    fi
    if [ "$dry_run" = --dry_run ]; then
      printf '%q ' "${command[@]}"
      echo
      continue
    fi
    if [ "$run" = resumed ]; then  # resume from the whole run's step-10 checkpoint
      rm -rf "$out/$config-$run" && mkdir -p "$out/$config-$run"
      cp -r "$out/$config-whole/checkpoint-10" "$out/$config-$run/"
    else
      rm -rf "$out/$config-$run"
    fi
    start=$(date +%s)
    "${command[@]}" > "$out/$config-$run.log" 2>&1 || { tail -40 "$out/$config-$run.log"; exit 1; }
    for file in model.safetensors student/model.safetensors all_results.json; do
      test -f "$out/$config-$run/$file" || { echo "$config $run: no $file" >&2; exit 1; }
    done
    loss=$(python -c "import json,sys; h=json.load(open(sys.argv[1]))['log_history']; print([e['loss'] for e in h if 'loss' in e][-1])" "$out/$config-$run/trainer_state.json")
    echo "$config $run: $(( $(date +%s) - start )) s, last logged loss $loss"
  done
  if [ "$dry_run" != --dry_run ]; then
    python - "$out/$config-whole" "$out/$config-resumed" <<'PY'
import sys
from safetensors.torch import load_file
whole, resumed = (load_file(f"{folder}/model.safetensors") for folder in sys.argv[1:])
worst = max((whole[k].float() - resumed[k].float()).abs().max().item() for k in whole)
print(f"  resumed vs uninterrupted: largest weight difference {worst:.3g} (teacher and EMA count included)")
sys.exit(0 if worst < 1e-3 else 1)
PY
  fi
done
