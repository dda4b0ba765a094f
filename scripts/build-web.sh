#!/usr/bin/env bash
# Builds everything the page needs into www/dist: the wasm32 target (via rustup) if missing, the
# `web` crate for wasm32 in release, its JS glue (wasm-bindgen as a library at exactly the crate's
# version, see xtask/), the npm packages (www/package-lock.json) and the front end (Vite).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tinyrlhf-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)"; exit 1; }
command -v npm >/dev/null || { echo "npm not found: install Node.js 20 or later (e.g. apt-get install nodejs npm)"; exit 1; }
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

echo "== wasm (release profile 'web'; the first build takes 10-25 minutes on 2 cores)"
cargo build --locked --profile web --target wasm32-unknown-unknown -p tinyrlhf-web
echo "== JS glue"
cargo run --locked --quiet -p tinyrlhf-xtask --bin bindgen -- \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/web/tinyrlhf_web.wasm" www/src/wasm
echo "== front end"
cd www
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
ls -l dist/assets/*.wasm | awk '{print "wasm: " $5 " bytes"}'
