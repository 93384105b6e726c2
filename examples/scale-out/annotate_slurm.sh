#!/bin/bash
# Score a VCF on 2 nodes x 4 GPUs with SLURM + torchrun: the genes are shared between the 8
# processes (sharded by gene, so no two processes need the same window) and rank 0 writes the
# merged output, identical to a single-process run. The VCF, FASTA, model bundle and output
# directory must be on a filesystem every node sees.
#
#   sbatch examples/scale-out/annotate_slurm.sh input.vcf.gz MODEL scored.vcf.gz
#
# On one machine, `varscore annotate ... --devices 4` does the same without torchrun.
#SBATCH --job-name=varscore-annotate
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
set -euo pipefail

vcf=$1
model=$2
output=$3
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)

srun torchrun \
    --nnodes "$SLURM_NNODES" \
    --nproc-per-node 4 \
    --rdzv-id "$SLURM_JOB_ID" \
    --rdzv-backend c10d \
    --rdzv-endpoint "$head_node:29500" \
    -m varscore annotate "$vcf" --model "$model" --device cuda --bf16 --no-progress -o "$output"
