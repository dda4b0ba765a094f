#!/usr/bin/env bash
# Builds the page (scripts/build-web.sh) and serves it on http://127.0.0.1:8080 (this machine only).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-web.sh
echo
echo "tinyrlhf is at http://127.0.0.1:8080  (Ctrl-C stops it)"
cd www && exec npx vite preview --host 127.0.0.1 --port 8080 --strictPort
