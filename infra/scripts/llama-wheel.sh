#!/usr/bin/env bash
# Build (once per machine) and print the path of a llama-cpp-python wheel.
# pip's own wheel cache ignores CMAKE_ARGS, so the wheel is kept in a user-level
# cache keyed by version + build flags; a fresh venv then installs it in seconds.
set -euo pipefail
VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
# The default native build crashes on these hosts (AMX matmul, illegal instruction).
# Default: the portable AVX2 build (same generation speed here, the right one for
# EPYC 7502P / Zen 2); SYNDICATE_LLAMA_TARGET=avx512 for AVX-512 hosts.
case "${SYNDICATE_LLAMA_TARGET:-avx2}" in
  avx2) FLAGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" ;;
  avx512) FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON -DLLAVA_BUILD=OFF" ;;
  *) echo "unknown SYNDICATE_LLAMA_TARGET (avx2|avx512)" >&2; exit 2 ;;
esac
KEY=$(printf '%s|%s' "$VERSION" "$FLAGS" | sha256sum | cut -c1-16)
DIR="${XDG_CACHE_HOME:-$HOME/.cache}/syndicate/wheels/llama-cpp-python-$VERSION-$KEY"
WHEEL=$(ls "$DIR"/llama_cpp_python-*.whl 2>/dev/null | head -1 || true)
if [ -z "$WHEEL" ]; then
  mkdir -p "$DIR.tmp"
  echo "building llama-cpp-python $VERSION ($FLAGS); once per machine, 5-10 min" >&2
  CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "${PYTHON:-python3}" -m pip wheel --no-deps --no-cache-dir -w "$DIR.tmp" "llama-cpp-python==$VERSION" >&2
  rm -rf "$DIR"; mv "$DIR.tmp" "$DIR"
  WHEEL=$(ls "$DIR"/llama_cpp_python-*.whl | head -1)
fi
echo "$WHEEL"
