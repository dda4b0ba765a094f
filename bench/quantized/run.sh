#!/usr/bin/env bash
# Memory and time of every stage on a quantized base against the same base in f32 (opt-in, not CI):
# random-weight GGUF files of Qwen2.5-0.5B's shape (and, with `llama3.2-1b` as an argument, Llama 3.2
# 1B's), Q4_0 projections with a Q8_0 embedding, and the same weights widened to F32.
#
#   TINYRLHF_TORCH_PYTHON=python bash bench/quantized/run.sh [MODEL ...]
#
# The Python needs numpy and the `gguf` package (PyPI). Per model and precision: sampling, LoRA DPO
# (2 rankings of 4 answers of about 240 tokens each, one step), a LoRA reward model, one LoRA GRPO
# iteration and one LoRA PPO iteration; each a separate process whose peak RSS (GNU time) and wall
# time are printed, with the DPO step's own time from its metrics. When the Python also has torch,
# transformers and PEFT, the peer's rows follow: the same LoRA DPO step on the same rankings by
# transformers + PEFT with an f32 and a bf16 base (peer.py). Work files: $TMPDIR/tinyrlhf-quantized.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
python="${TINYRLHF_TORCH_PYTHON:?set TINYRLHF_TORCH_PYTHON to a Python with numpy and gguf}"
models=("${@:-qwen2.5-0.5b}")
work="${TMPDIR:-/tmp}/tinyrlhf-quantized"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tinyrlhf-target}"
mkdir -p "$work"
cd "$work"

bin="${TINYRLHF_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release --locked -p tinyrlhf-cli)
  bin="$CARGO_TARGET_DIR/release/tinyrlhf"
fi
head -4 "$root/bench/smollm2/train.jsonl" > prompts.jsonl
"$python" "$here/rankings.py" prompts.jsonl 2 4 80 > rankings.jsonl

measure() { # name, command...: one table row
  local name=$1; shift
  /usr/bin/time -f "%M %e" -o time.txt "$@" > log.txt 2>&1 || { cat log.txt; exit 1; }
  read -r kb secs < time.txt
  printf '| %s | %s | %.2f GiB | %s s |\n' "$model" "$name" "$(echo "$kb / 1048576" | bc -l)" "$secs"
}

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
echo "| model | stage | peak RSS | wall |"
echo "|---|---|---|---|"
for name in "${models[@]}"; do
  [ -f "$name.q4_0.gguf" ] || "$python" "$here/make_models.py" . "$name" > /dev/null
  for precision in q4_0 f32; do
    model="$name.$precision.gguf ($(du -m "$name.$precision.gguf" | cut -f1) MB)"
    file="$name.$precision.gguf"
    measure "sample 4 prompts x 2, 48 tokens" "$bin" sample --model "$file" --prompts prompts.jsonl -k 2 --max-new-tokens 48 --out samples.jsonl --overwrite
    measure "LoRA DPO, 1 step" "$bin" dpo --policy "$file" --rankings rankings.jsonl --lora-rank 8 --epochs 1 --out dpo --overwrite
    step=$("$python" -c "import json; s=[json.loads(l) for l in open('dpo/metrics.jsonl')][-1]; print(f\"{s['tokens_per_sec']:.0f}\")")
    echo "| | (DPO step: $step tokens/s) | | |"
    measure "LoRA reward model, 1 epoch" "$bin" reward --model "$file" --rankings rankings.jsonl --lora-rank 8 --epochs 1 --out rm --overwrite
    measure "LoRA GRPO, 1 iteration (2 prompts x 4, 48 tokens)" "$bin" grpo --policy "$file" --reward rm --prompts prompts.jsonl --lora-rank 8 \
      --iterations 1 --prompts-per-iteration 2 -k 4 --max-new-tokens 48 --out grpo --overwrite
    measure "LoRA PPO, 1 iteration (4 prompts, 48 tokens)" "$bin" ppo --policy "$file" --reward rm --prompts prompts.jsonl --lora-rank 8 \
      --iterations 1 --batch 4 --max-new-tokens 48 --out ppo --overwrite
  done
  if "$python" -c 'import torch, transformers, peft' 2>/dev/null; then
    for dtype in f32 bf16; do
      "$python" "$here/peer.py" "$name" "$dtype" rankings.jsonl "$name.q4_0.gguf" 2> peer.log || { cat peer.log; exit 1; }
    done
  fi
done
