#!/usr/bin/env bash
# gemm's f32 kernel — what burn's CPU backend multiplies with — on one native thread and in one
# wasm instance, the same shapes: the ceiling of a tab worker against a native thread.
#   bash bench/wasm_kernel/run.sh      (needs the wasm32 target and Node.js 20 or later)
# Two wasm builds: gemm as burn ships it (simd128), and gemm with wasm's relaxed-simd fused
# multiply-add (its simd128 `mul_add` made `f32x4_relaxed_madd` in a copy patched here, never
# committed; the lock file is put back after).
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tinyrlhf-target}/wasm-kernel"
cargo build --release --locked --quiet
"$CARGO_TARGET_DIR/release/tinyrlhf-wasm-kernel"

RUSTFLAGS="-C target-feature=+simd128" cargo build --release --locked --quiet --target wasm32-unknown-unknown
cp "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/tinyrlhf_wasm_kernel.wasm" "$CARGO_TARGET_DIR/simd128.wasm"
node run.cjs "$CARGO_TARGET_DIR/simd128.wasm" "wasm simd128"

patched="$CARGO_TARGET_DIR/gemm-f32-relaxed"
rm -rf "$patched" && cp -r "$(cargo metadata --format-version 1 --locked | python3 -c '
import json, sys
print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "gemm-f32").rsplit("/", 1)[0])')" "$patched"
python3 - "$patched/src/microkernel.rs" <<'PY'
import sys
path = sys.argv[1]
src = open(path).read()
at = src.index("pub mod simd128")
old = "add(c, mul(a, b))"
at = src.index(old, at)
src = src[:at] + "transmute(f32x4_relaxed_madd(transmute(a), transmute(b), transmute(c)))" + src[at + len(old):]
open(path, "w").write(src)
PY
cp Cargo.lock "$CARGO_TARGET_DIR/Cargo.lock.kept"
trap 'cp "$CARGO_TARGET_DIR/Cargo.lock.kept" Cargo.lock' EXIT
RUSTFLAGS="-C target-feature=+simd128,+relaxed-simd" cargo build --release --quiet --target wasm32-unknown-unknown \
  --config "patch.crates-io.gemm-f32.path=\"$patched\""
node --experimental-wasm-relaxed-simd run.cjs "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/tinyrlhf_wasm_kernel.wasm" "wasm relaxed-simd FMA"
