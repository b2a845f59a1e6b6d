#!/usr/bin/env bash
# data2vec pretraining on several SLURM nodes: one `accelerate launch` per node (srun starts them), each starting one
# process per GPU, with one of the accelerate config files (DDP, FSDP2, DeepSpeed ZeRO-2 / ZeRO-3).
#
#   sbatch --nodes 2 examples/pretraining/slurm_pretraining.sh [run_pretraining.py arguments]
#   CONFIG=examples/accelerate_configs/deepspeed_zero3.yaml sbatch --nodes 4 examples/pretraining/slurm_pretraining.sh ...
#
# The global batch is nodes x GPUS_PER_NODE x --per_device_train_batch_size x --gradient_accumulation_steps; keep it
# at the recipe's (docs/recipes.md) when the number of GPUs changes. Resume a preempted job by submitting it again
# with --resume_from_checkpoint last.
#SBATCH --job-name=d2v-pretraining
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --output=%x-%j.out
set -euo pipefail

CONFIG=${CONFIG:-examples/accelerate_configs/fsdp2.yaml}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
NODES=${SLURM_NNODES:-1}
# sed reads every line: `head -n 1` may exit first and, under pipefail, SIGPIPE (141) scontrol and the script
MAIN_NODE=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-$(hostname)}" | sed -n 1p)
PORT=${PORT:-29500}
ARGS=("$@")
if [ ${#ARGS[@]} -eq 0 ]; then
  ARGS=(--recipe data2vec-text-base --output_dir "outputs/data2vec-text-base-$SLURM_JOB_ID")
fi

# every node runs the same command; accelerate takes its rank from SLURM_NODEID (escaped: expanded on each node)
srun --kill-on-bad-exit=1 bash -c "accelerate launch \
  --config_file $CONFIG \
  --num_machines $NODES \
  --num_processes $((NODES * GPUS_PER_NODE)) \
  --machine_rank \$SLURM_NODEID \
  --main_process_ip $MAIN_NODE \
  --main_process_port $PORT \
  --rdzv_backend c10d \
  examples/pretraining/run_pretraining.py $(printf '%q ' "${ARGS[@]}")"
