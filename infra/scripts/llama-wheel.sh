#!/usr/bin/env bash
# Build (once per machine) and print the path of a llama-cpp-python wheel for this host.
# pip's own wheel cache ignores CMAKE_ARGS, so the wheel is kept in a user-level
# cache keyed by version + build flags; a fresh venv then installs it in seconds. It is
# built from the sha256-pinned sdist in the same cache, the source llama-server.sh builds
# the serving peer from. The flags and their reasons: llama-flags.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/llama-flags.sh"  # VERSION, target, FLAGS, KEY, CACHE
DIR="$CACHE/wheels/llama-cpp-python-$VERSION-$KEY"
WHEEL=$(ls "$DIR"/llama_cpp_python-*.whl 2>/dev/null | head -1 || true)
if [ -z "$WHEEL" ]; then
  # The compile needs a C++ compiler (a fresh Debian has none); cmake and ninja come
  # from PyPI as build requirements when missing.
  bash "$(dirname "${BASH_SOURCE[0]}")/install-system-deps.sh" build >&2
  SDIST=$(llama_sdist)
  mkdir -p "$DIR.tmp"
  echo "building llama-cpp-python $VERSION for $target ($FLAGS); once per machine, 5-10 min" >&2
  CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "${PYTHON:-python3}" -m pip wheel --no-deps --no-cache-dir -w "$DIR.tmp" "$SDIST" >&2
  echo "$target" > "$DIR.tmp/TARGET"
  rm -rf "$DIR"; mv "$DIR.tmp" "$DIR"
  WHEEL=$(ls "$DIR"/llama_cpp_python-*.whl | head -1)
fi
echo "$WHEEL"
