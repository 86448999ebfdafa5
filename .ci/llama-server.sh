#!/usr/bin/env bash
# Builds llama-server from the llama.cpp sources vendored in the pinned llama-cpp-python sdist (never a
# downloaded binary), for the same AVX2 baseline as the wheel; cached like the wheel, by version and flags
# ("avx2": change the name when FLAGS change). Prints its path. About 9 minutes on 2 cores.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/meditron-bot/llama-server-$VERSION-avx2"
BIN="$CACHE/llama-server"
if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi
PYTHON="${PYTHON:-$(command -v python3)}"
# CMake and Ninja from PyPI when the machine has none (their wheels ship the binaries).
if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
  "$PYTHON" -m pip install --quiet cmake ninja >&2
  PATH="$(dirname "$("$PYTHON" -c 'import sys; print(sys.executable)')"):$PATH"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "== building llama-server from the llama-cpp-python $VERSION sdist (AVX2 baseline)" >&2
"$PYTHON" -m pip download --quiet --no-binary :all: --no-deps -d "$WORK" "llama-cpp-python==$VERSION" >&2
tar -xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
# shellcheck disable=SC2086
cmake -S "$SRC" -B "$WORK/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
  $FLAGS >&2
cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$CACHE"
cp "$WORK/build/bin/llama-server" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "$BIN"
