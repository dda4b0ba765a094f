#!/usr/bin/env bash
# Runs every test of tinyrlhf on a fresh machine: installs what the tests need (the wasm32 target,
# a Python venv with the interop peers, Debian's Chromium for the browser tests), then the Rust
# tests, the wasm32 builds, and the page in the browser (Playwright).
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

step "format (rustfmt.toml)"
cargo fmt --all --check

step "rust tests"
cargo test --workspace --locked --exclude tinyrlhf-web --exclude tinyrlhf-xtask

# The web crate links every library crate, so this build is also the proof that they build for wasm32,
# and, with the page's WebGPU backend, that the model crate's GPU kernels (features wgpu, fusion)
# compile. The native GPU build is not checked here (4-10 minutes of a cold run, for the CLI's few
# lines of device choice): `bench/gpu/run.sh` builds it before a GPU is used.
step "the page: wasm, glue, front end"
bash scripts/build-web.sh

step "browser tests (Playwright, the machine's Chromium)"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq chromium >/dev/null
  else
    echo "Chromium not found at $CHROMIUM: install it (Debian: apt-get install chromium) or set CHROMIUM"; exit 1
  fi
fi
(cd www && npx playwright test)

step "done"
