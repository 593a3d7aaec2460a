#!/usr/bin/env bash
# The demo model's whole recipe: corpus -> tokenizer -> training -> held-out evaluation -> committed checkpoint
# and bundle. Resumable: re-running continues training from work/demo-ckpt/trainer_state.pt.
# About 1 h 15 min on 2 cores (corpus ~8 min, preprocessing ~6 min, training ~60 min).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${WORK:-work}
[ -f $W/demo-data/records.json ] || gem-train data --n 8000 --out $W/demo-data --seed 1 --workers 2
[ -f $W/demo-data/tokenizer/tokenizer.model ] || gem-train tokenizer --data $W/demo-data --vocab-size 1024
gem-train fit --preset demo --data $W/demo-data --out $W/demo-ckpt --max-steps 1600 --batch-size 8 --lr 1e-3 \
    --warmup 100 --resume
[ -f $W/demo-eval/records.json ] || gem-train data --n 200 --out $W/demo-eval --seed 9001 --workers 2
gem-train eval --checkpoint $W/demo-ckpt --data $W/demo-eval --n 200 --out $W/demo-eval.json
mkdir -p checkpoints/demo
cp $W/demo-ckpt/{config.json,model.safetensors,tokenizer.model,tokenizer_config.json,special_tokens_map.json} checkpoints/demo/
gem-export build --checkpoint checkpoints/demo --out bundles/demo
