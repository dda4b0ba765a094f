#!/usr/bin/env bash
# Reproduces the models the page ships, on CPU: the instruction world (seed 0), the tokenizer, the
# tiny base model (pretraining) and the tiny SFT model, then evaluates both on the held-out prompts.
# Writes www/public/models/{tokenizer.json, heldout.jsonl, base/, sft/}; work files go to
# ${WORK:-target/make-models}. About 25 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tinyrlhf-target}"
WORK="${WORK:-target/make-models}"
OUT=www/public/models
SEED="${SEED:-0}"

cargo build --release --locked -p tinyrlhf-cli
T="$CARGO_TARGET_DIR/release/tinyrlhf"
mkdir -p "$WORK" "$OUT"

"$T" data --out "$WORK/world" --seed "$SEED" --overwrite
"$T" tokenizer --corpus "$WORK/world/pretrain.txt" --demos "$WORK/world/demos.jsonl" --vocab 1024 --out "$WORK/tokenizer.json" --overwrite
"$T" pretrain --tokenizer "$WORK/tokenizer.json" --corpus "$WORK/world/pretrain.txt" --preset tiny \
  --steps 2000 --batch 16 --seq-len 128 --lr 2e-3 --seed "$SEED" --save-every 250 --out "$WORK/base" --resume
"$T" sft --model "$WORK/base" --demos "$WORK/world/demos.jsonl" \
  --steps 1500 --batch 16 --seed "$SEED" --save-every 250 --out "$WORK/sft" --resume

for stage in base sft; do
  "$T" eval --model "$WORK/$stage" --prompts "$WORK/world/heldout.jsonl" -k 4 --temperature 1 \
    --max-new-tokens 64 --labeler correct --json "$WORK/$stage/eval.json" --overwrite
  mkdir -p "$OUT/$stage"
  cp "$WORK/$stage"/{config.json,model.safetensors,tokenizer.json,manifest.json,eval.json} "$OUT/$stage/"
done
cp "$WORK/tokenizer.json" "$OUT/tokenizer.json"
cp "$WORK/world/heldout.jsonl" "$OUT/heldout.jsonl"
echo "models written to $OUT"
