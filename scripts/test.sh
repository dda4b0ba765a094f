#!/usr/bin/env bash
# Runs every test of tinyrlhf on a fresh machine: installs what the tests need (the wasm32 target,
# a Python venv with the interop peers), then the Rust tests, then proves the libraries build for wasm.
set -euo pipefail
cd "$(dirname "$0")/.."

# One warm target dir outside the clone: burn takes many minutes to build cold on 2 cores.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tinyrlhf-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
step() { printf '\n== %s (%ss)\n' "$1" "$SECONDS"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)"; exit 1; }
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

step "python peers (.venv)"
if ! .venv/bin/python -c 'import tokenizers' 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
export TINYRLHF_PYTHON="$PWD/.venv/bin/python"

step "rust tests"
cargo test --workspace --locked

step "library crates build for wasm32-unknown-unknown"
cargo check --locked --target wasm32-unknown-unknown -p tinyrlhf-tokenizer -p tinyrlhf-data -p tinyrlhf-model -p tinyrlhf-rlhf

step "done"
