#!/usr/bin/env bash
# Reproduces server/demo_checkpoints/: the demo's pretrained `tiny` model, trained from scratch
# on the first 48 episodes of the demo world (seed 0; `beliefscope demo` generates 64, the last
# 16 are held out) with the memory recipe of docs/memory.md (synthetic occluders on the encoder's
# view, frame dropout, a heavier reward head). Same seed, same data, same torch build and one
# thread: the same weights. ~90 min on one free CPU core; rerun with the same WORKDIR to resume
# an interrupted run from its saved state.
# Usage: scripts/make-demo-checkpoints.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
[[ -d "$work/world" ]] || .venv/bin/beliefscope world generate --out "$work/world" \
  --episodes 48 --seed 0
resume=()
compgen -G "$work/run/ckpt-*.safetensors" >/dev/null && resume=(--resume)
.venv/bin/beliefscope train --replay "$work/world" --out "$work/run" --steps 3000 \
  --save-every 250 --preset tiny --seed 0 --threads 1 \
  --occlude 0.75 --dropout 0.5 --reward-scale 30 "${resume[@]}"
rm -f server/demo_checkpoints/ckpt-*.safetensors
for step in 00000500 00001000 00002000 00003000; do
  cp "$work/run/ckpt-$step.safetensors" server/demo_checkpoints/
done
echo "demo checkpoints written to server/demo_checkpoints/ (work files in $work)"
