#!/bin/bash
# Plain sbatch + srun, for users who do not use hydra/launcher=slurm. One Slurm task per device:
# Lightning reads the ranks from Slurm (SLURM_PROCID, SLURM_NTASKS) and starts no processes itself.
#
#   sbatch scripts/slurm_sbatch.sh strategy=finetune seed=1                       # 1 node, 2 tasks, CPU (gloo)
#   sbatch --ntasks-per-node=4 --gpus-per-node=4 --partition=gpu scripts/slurm_sbatch.sh trainer=ddp
#   sbatch --nodes=2 --ntasks-per-node=4 --gpus-per-node=4 scripts/slurm_sbatch.sh trainer=ddp
#
# trainer.devices and trainer.num_nodes are taken from the allocation, so they always match.
# Requeue belongs to Lightning here: --signal=USR1@120 makes it save hpc_ckpt_<n>.ckpt and run
# `scontrol requeue`; the requeued job keeps its SLURM_JOB_ID, so it reuses its run dir and resume=auto
# continues from the newest of last.ckpt and hpc_ckpt_<n>.ckpt (same W&B run id).
#SBATCH --job-name=tl-lightning
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=1
#SBATCH --time=02:00:00
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/slurm/%j.out

set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-.}"
PYTHON=${PYTHON:-.venv/bin/python}
TRAINER=${TRAINER:-ddp_cpu}   # ddp for GPUs
srun "$PYTHON" train.py "trainer=$TRAINER" "trainer.devices=$SLURM_NTASKS_PER_NODE" "trainer.num_nodes=$SLURM_NNODES" \
    "hydra.run.dir=${RUN_DIR:-logs/slurm/$SLURM_JOB_ID}" resume=auto "$@"
