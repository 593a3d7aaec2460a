#!/usr/bin/env bash
# The runtime's wave delineator (runtime/measure/wave_delineator.onnx): a 1-D U-Net trained on the tune half of the
# shared LUDB records (numbers mod 4 == 1; the other half and the cart files are only evaluated) and 250 simulated
# records, 3000 steps of 32 four-second crops. On a 2-vCPU AMD EPYC about 6 minutes. Then:
#   gem-bench delineation --label delineator --md benchmarks/delineation.md
set -euo pipefail
cd "$(dirname "$0")/.."
LUDB=${LUDB:-../shared/data/real/ludb}
gem-train delineator --ludb "$LUDB" --out runtime/measure/wave_delineator.onnx \
  --steps "${STEPS:-3000}" --simulated "${SIMULATED:-250}" --seed "${SEED:-24}"
