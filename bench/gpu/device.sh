#!/usr/bin/env bash
# What the GPU machine runs (`bash bench/gpu/run.sh` prints the call): the GPU and its driver, then
# tinyrlhf on burn-wgpu against PyTorch on CUDA, preset by preset; the table lands in $OUT/gpu.md.
#   bash bench/gpu/device.sh                 # every part: tiny, smollm2 (135 M), qwen (0.5 B)
#   bash bench/gpu/device.sh smollm2 qwen    # some of them
#   bash bench/gpu/device.sh --smoke         # here, through run.sh --smoke: lavapipe, small settings
set -uo pipefail
cd "$(dirname "$0")/../.."
CARRY=bench/gpu/carry
OUT="${OUT:-$CARRY/out}"
mkdir -p "$OUT"
PYTHON="${TINYRLHF_TORCH_PYTHON:-python3}"
BIN="${TINYRLHF_BIN:-/tmp/tinyrlhf}"
if [ ! -x "$BIN" ]; then
  # The binary travels xz-compressed (run.sh); Python's lzma unpacks it where xz may be missing.
  "$PYTHON" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$CARRY/tinyrlhf.xz" "$BIN"
  chmod +x "$BIN"
fi
mode=(--device cuda)
parts=("$@")
if [ "${1:-}" = --smoke ]; then
  mode=(--smoke)
  parts=()
else
  # Vulkan's loader from the carried packages; the NVIDIA driver's own Vulkan manifest.
  for f in "$CARRY"/gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
  egl=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
  [ -f "$egl" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$egl"
fi
exec "$PYTHON" bench/gpu/report.py --bin "$BIN" --out "$OUT" "${mode[@]}" "${parts[@]}"
