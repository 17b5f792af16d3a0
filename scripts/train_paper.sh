#!/usr/bin/env bash
# Train the paper preset (24 layers, width 2048, ~1.74B parameters) on multi-GPU nodes:
# torchrun + FSDP2 (fully_shard per block, fp32 master weights, bf16 compute, fp32 gradient
# reduction) + bf16 autocast. Rerunning the same command resumes from the last checkpoint.
#
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 scripts/train_paper.sh \
#       --data /data/unif2ace130k --tokenizer /ckpt/magvit2-256 --text-tokenizer /ckpt/phi-1_5 \
#       --out /runs/paper [train.optim.lr=5e-5 ...]
#
# Memory per GPU (see docs/training.md, unif2ace.train.unified.memory_per_gpu_gb): fp32 master
# weights + fp32 grads + AdamW moments + EMA = 20 B/param sharded over all GPUs, plus gathered
# bf16 weights, activations and logits. 1.74B params, seq ~390, micro-batch 8:
#   8 GPUs ~15.7 GiB, 16 GPUs ~13.6 GiB, 32 GPUs ~12.6 GiB (micro-batch 4: 10.2 / 8.2 / 7.2).
# Global batch = train.batch_size (256) = micro_batch_size x accumulation x world size.
set -euo pipefail

GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"
export PYTORCH_CUDA_ALLOC_CONF="${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}"

exec torchrun \
    --nnodes "$NNODES" --node-rank "$NODE_RANK" --nproc-per-node "$GPUS_PER_NODE" \
    --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
    -m unif2ace.cli train model --preset paper train.parallel=fsdp train.autocast=bf16 "$@"
