#!/usr/bin/env bash
# The GPU benchmark: tinyrlhf on burn-wgpu (Vulkan, with fusion) against PyTorch on CUDA, same shapes.
#
#   bash bench/gpu/run.sh           # here: builds and packs what the GPU machine needs into
#                                   # bench/gpu/carry/ (ignored by git), then prints the one
#                                   # device `run` to make (the session calls the device tool)
#   bash bench/gpu/run.sh --smoke   # here, on lavapipe (software Vulkan) and PyTorch on the CPU:
#                                   # the same binary and commands, small settings (not in CI)
#
# The GPU machine reaches no registry: the binary is built here (release, stripped) and Vulkan's
# loader travels as Debian packages; PyTorch, transformers and PEFT are on it already.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tinyrlhf-target}"
CARRY=bench/gpu/carry
mkdir -p "$CARRY/gl"

echo "== build: tinyrlhf, release, --features wgpu (burn's fusion on)"
cargo build --release --locked -p tinyrlhf-cli --features wgpu
# Stripped, it is about 77 MB: over a device call's 64 MiB with the working tree, so it travels
# xz-compressed (about 13 MB) and device.sh unpacks it there.
BIN="$CARGO_TARGET_DIR/release/tinyrlhf-stripped"
strip -o "$BIN" "$CARGO_TARGET_DIR/release/tinyrlhf"
rm -f "$CARRY/tinyrlhf"
xz -T0 -6 -c "$BIN" > "$CARRY/tinyrlhf.xz"
echo "$CARRY/tinyrlhf.xz: $(du -h "$BIN" | cut -f1) stripped, $(du -h "$CARRY/tinyrlhf.xz" | cut -f1) compressed"

if [ "${1:-}" = --smoke ]; then
  echo "== smoke run here: lavapipe and PyTorch on the CPU"
  if ! ldconfig -p | grep -q libvulkan.so.1 || [ -z "$(ls /usr/share/vulkan/icd.d/lvp_icd*.json 2>/dev/null)" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && apt-get install -y -qq libvulkan1 mesa-vulkan-drivers >/dev/null
    else
      echo "the smoke run needs Vulkan's loader and lavapipe (Debian: apt-get install libvulkan1 mesa-vulkan-drivers)"; exit 1
    fi
  fi
  PYTHON="${TINYRLHF_TORCH_PYTHON:-python3}"
  "$PYTHON" -c 'import torch, transformers, peft' 2>/dev/null || {
    echo "the smoke run needs a Python with tests/python/requirements-peft.txt: set TINYRLHF_TORCH_PYTHON"; exit 1; }
  export VK_DRIVER_FILES="$(ls /usr/share/vulkan/icd.d/lvp_icd*.json | head -1)"
  exec env TINYRLHF_TORCH_PYTHON="$PYTHON" TINYRLHF_BIN="$BIN" bash bench/gpu/device.sh --smoke
fi

# The NVIDIA driver's Vulkan manifest names libGLX_nvidia, which needs glvnd's dispatch libraries:
# the loader alone finds no adapter (seen on an H100, 2026-11-25).
echo "== Vulkan's loader and glvnd for the GPU machine (amd64 Debian packages)"
lists=/tmp/tinyrlhf-amd64-lists
mkdir -p "$lists/partial"
apt=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
[ -n "$(ls "$CARRY"/gl/libglvnd0_*.deb 2>/dev/null)" ] || {
  apt-get "${apt[@]}" update -qq
  (cd "$CARRY/gl" && apt-get "${apt[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
}
ls "$CARRY/gl"
echo "carried: $(du -sh "$CARRY" | cut -f1) (a device call carries at most 64 MiB with the working tree)"
cat <<'HOW'

== now, from the session, one call of the device tool:
   run(command: "bash bench/gpu/device.sh", carry: ["bench/gpu/carry"], timeout_s: 600)
   Its table comes back in $OUT (gpu.md, *.json); put it in docs/gpu.md with the date and the device.
   `bash bench/gpu/device.sh tiny` (or smollm2, qwen) runs one part if the whole does not fit in a call.
HOW
