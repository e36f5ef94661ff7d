#!/usr/bin/env bash
# Reproduces server/demo_checkpoints/: the demo's pretrained `tiny` model, trained on the first
# 48 episodes of the demo world (seed 0; `beliefscope demo` generates 64, the last 16 are held
# out). Same seed, same data, same torch build and one thread: the same weights. ~50 min on one
# free CPU core.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
.venv/bin/beliefscope world generate --out "$work/world" --episodes 48 --seed 0
.venv/bin/beliefscope train --replay "$work/world" --out "$work/run" --steps 2000 \
  --save-every 250 --preset tiny --seed 0 --threads 1
for step in 00000500 00001000 00001500 00002000; do
  cp "$work/run/ckpt-$step.safetensors" server/demo_checkpoints/
done
echo "demo checkpoints written to server/demo_checkpoints/ (work files in $work)"
