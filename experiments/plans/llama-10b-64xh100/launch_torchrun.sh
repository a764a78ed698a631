#!/usr/bin/env bash
# Run on each of the 8 node(s), with NODE_RANK=0..7 and MASTER_ADDR = node 0's address:
#   DATA=/data/shards MASTER_ADDR=10.0.0.1 NODE_RANK=0 RUN_ID=myrun bash launch_torchrun.sh
set -euo pipefail
: "${DATA:?set DATA to the prepared shards folder}"
export RUN_ID="${RUN_ID:-$(date +%Y-%m-%d_%H-%M-%S)}"
torchrun --nnodes=8 --nproc-per-node=8 --node-rank="${NODE_RANK:-0}" \
    --rdzv-backend=c10d --rdzv-endpoint="${MASTER_ADDR:-127.0.0.1}:${MASTER_PORT:-29500}" --rdzv-id="$RUN_ID" \
    -m scratchllm.train model=llama-10b ++model.checkpointing=none data=shards data.path=$DATA data.batch_size=1 trainer=fsdp trainer.strategy.sharding_strategy=FULL_SHARD compile=false trainer.num_nodes=8 trainer.devices=8 precision=bf16-mixed trainer.accumulate_grad_batches=19 trainer.max_steps=40002 optim.lr=0.000534 scheduler.warmup_steps=400 scheduler.min_lr_ratio=0.1 hydra.run.dir=logs/train/runs/$RUN_ID
