#!/usr/bin/env bash
# GGUF files of Qwen2.5-0.5B-Instruct's shape with random weights, quantized by llama.cpp's own
# `llama-quantize` to each TYPE: the tensors, types and bytes a real 0.5B file of that type has
# (Q4_K_M's mix included), for timing decoding at that size with run.sh and peer.spec.ts (the
# answers are noise). Opt-in, not CI.
#
#   bash bench/decode/shapes.sh OUT_DIR [TYPE...]        # default: Q4_K_M Q4_0 Q8_0
#
# Writes OUT_DIR/qwen2.5-0.5b.TYPE.gguf from an F16 file by `bench/quantized/make_models.py --f16`
# (seeded: every run writes the same files). llama.cpp and a Python environment with llama.cpp's
# gguf-py are made once in ${TMPDIR:-/tmp}/tinyrlhf-decode, beside run.sh's.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?usage: bash bench/decode/shapes.sh OUT_DIR [TYPE...]}"
shift
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(Q4_K_M Q4_0 Q8_0)
work="${TMPDIR:-/tmp}/tinyrlhf-decode"
mkdir -p "$work" "$out"

source "$here/llama-cpp.sh"
llama_cpp_build "$work" llama-quantize
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet "$work"/llama_cpp_python-0.3.36/vendor/llama.cpp/gguf-py
fi

f16="$out/qwen2.5-0.5b.f16.gguf"
[ -f "$f16" ] || "$work/venv/bin/python" "$here/../quantized/make_models.py" "$out" --f16 qwen2.5-0.5b
for type in "${types[@]}"; do
  "$work/build/bin/llama-quantize" "$f16" "$out/qwen2.5-0.5b.$type.gguf" "$type" >/dev/null 2>&1
  echo "$out/qwen2.5-0.5b.$type.gguf"
done
