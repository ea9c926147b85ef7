#!/usr/bin/env bash
# Build (once per machine) and print the path of llama.cpp's own `llama-server`: the
# serving peer that bench/serving_peer.py measures the gateway against. Only benchmarks
# need it (`make llama-server`); `make test` and `make run` never build it.
#
# Same source and same instruction sets as the binding: the vendored llama.cpp of the
# sha256-pinned llama-cpp-python sdist (vendor/llama.cpp) and the CMake flags of
# llama-flags.sh (never ggml's native detection: it picks AMX and crashes on some hosts).
# A static build, so the cache holds one self-contained file, keyed by version + flags
# like the wheel and checked against the sha256 recorded when it was built.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/llama-flags.sh"  # VERSION, target, FLAGS, KEY, CACHE
DIR="$CACHE/bin/llama-server-$VERSION-$KEY"
BIN="$DIR/llama-server"

verify() {
  [ -x "$BIN" ] && [ -f "$DIR/llama-server.sha256" ] && (cd "$DIR" && sha256sum --status -c llama-server.sha256)
}

if ! verify; then
  if [ -e "$BIN" ]; then echo "llama-server: $BIN does not match its recorded sha256; rebuilding" >&2; fi
  command -v cmake >/dev/null && command -v c++ >/dev/null ||
    { echo "llama-server: building it needs cmake and a C++ compiler (apt-get install cmake g++)" >&2; exit 1; }
  GEN=(); if command -v ninja >/dev/null; then GEN=(-G Ninja); fi
  SDIST=$(llama_sdist)
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/llama-server-build.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  echo "building llama-server (llama.cpp of llama-cpp-python $VERSION) for $target ($FLAGS); once per machine, 5-10 min" >&2
  tar xzf "$SDIST" -C "$WORK" "llama_cpp_python-$VERSION/vendor/llama.cpp"
  SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
  # No web UI (its assets come from a hub or npm), no HTTPS, no tests or examples: the
  # server's HTTP API and the same ggml as the wheel.
  # shellcheck disable=SC2086  # FLAGS is a list of -D options
  cmake -S "$SRC" -B "$WORK/build" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release $FLAGS \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >&2
  cmake --build "$WORK/build" --target llama-server -j "$(nproc)" >&2
  "$WORK/build/bin/llama-server" --version >&2  # it runs on this host
  mkdir -p "$DIR.tmp"
  cp "$WORK/build/bin/llama-server" "$DIR.tmp/llama-server"
  echo "$target" > "$DIR.tmp/TARGET"
  echo "$FLAGS" > "$DIR.tmp/FLAGS"
  (cd "$DIR.tmp" && sha256sum llama-server > llama-server.sha256)
  rm -rf "$DIR"; mv "$DIR.tmp" "$DIR"
  verify
fi
echo "$BIN"
