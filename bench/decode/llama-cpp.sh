# Sourced by the scripts beside it: `llama_cpp_build WORK_DIR TARGET...` builds llama.cpp's named
# tools (CPU only, for this machine's SIMD) into WORK_DIR/build/bin, once, from the source the PyPI
# package llama-cpp-python 0.3.36 ships (its sdist vendors llama.cpp).
llama_cpp_build() {
  local work="$1"
  shift
  local missing=()
  for target in "$@"; do [ -x "$work/build/bin/$target" ] || missing+=("$target"); done
  [ ${#missing[@]} -eq 0 ] && return
  command -v cmake >/dev/null || python3 -m pip install --quiet cmake
  if [ ! -d "$work"/llama_cpp_python-0.3.36 ]; then
    (cd "$work" && python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python -d sdist llama-cpp-python==0.3.36)
    tar -xzf "$work"/sdist/llama_cpp_python-*.tar.gz -C "$work"
  fi
  cmake -S "$work"/llama_cpp_python-0.3.36/vendor/llama.cpp -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF >/dev/null
  cmake --build "$work/build" --target "${missing[@]}" -j "$(nproc)" >/dev/null
}
