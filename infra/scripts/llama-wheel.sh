#!/usr/bin/env bash
# Build (once per machine) and print the path of a llama-cpp-python wheel for this host.
# pip's own wheel cache ignores CMAKE_ARGS, so the wheel is kept in a user-level
# cache keyed by version + build flags; a fresh venv then installs it in seconds.
#
# The target is read from the host's CPU flags (SYNDICATE_LLAMA_TARGET overrides it):
#   avx512  AVX-512 F/BW/VL (+ VBMI, VNNI, BF16, AVX-VNNI where present). Measured on a
#           Xeon here: 0.5B decode 27.4 vs 24.3 tok/s, 1.5B first token 0.54 vs 0.92 s.
#   avx2    the portable AVX2 + FMA + F16C build: the right one for Zen 2 (EPYC 7502P).
# Never AMX and never ggml's native detection: the native build crashes on these hosts
# (AMX matmul, illegal instruction). A host without AVX2 is refused: ggml would fall
# back to SSE and run several times slower without a word (SYNDICATE_LLAMA_TARGET=sse
# builds it anyway). llama-cpp-python 0.3.36 loads one libggml-cpu, so ggml's runtime
# CPU-variant dispatch (GGML_BACKEND_DL) is not used.
set -euo pipefail
VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { [[ "$flags" == *" $1 "* ]]; }

target="${SYNDICATE_LLAMA_TARGET:-}"
if [ -z "$target" ]; then
  if has avx512f && has avx512bw && has avx512vl; then target=avx512
  elif has avx2 && has fma && has f16c; then target=avx2
  else
    echo "llama-wheel: this CPU has no AVX2 (flags: ${flags:0:200}...); llama.cpp would run on SSE," >&2
    echo "  several times slower. Set SYNDICATE_LLAMA_TARGET=sse to build it anyway." >&2
    exit 1
  fi
fi
case "$target" in
  avx2) FLAGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF" ;;
  avx512)
    FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX512=ON"
    has avx512vbmi && FLAGS="$FLAGS -DGGML_AVX512_VBMI=ON"
    has avx512_vnni && FLAGS="$FLAGS -DGGML_AVX512_VNNI=ON"
    has avx512_bf16 && FLAGS="$FLAGS -DGGML_AVX512_BF16=ON"
    has avx_vnni && FLAGS="$FLAGS -DGGML_AVX_VNNI=ON"
    FLAGS="$FLAGS -DLLAVA_BUILD=OFF" ;;
  sse) FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DLLAVA_BUILD=OFF" ;;
  *) echo "llama-wheel: unknown SYNDICATE_LLAMA_TARGET=$target (avx2|avx512|sse)" >&2; exit 2 ;;
esac
KEY=$(printf '%s|%s' "$VERSION" "$FLAGS" | sha256sum | cut -c1-16)
DIR="${XDG_CACHE_HOME:-$HOME/.cache}/syndicate/wheels/llama-cpp-python-$VERSION-$KEY"
WHEEL=$(ls "$DIR"/llama_cpp_python-*.whl 2>/dev/null | head -1 || true)
if [ -z "$WHEEL" ]; then
  # The compile needs a C++ compiler (a fresh Debian has none); cmake and ninja come
  # from PyPI as build requirements when missing.
  bash "$(dirname "$0")/install-system-deps.sh" build >&2
  mkdir -p "$DIR.tmp"
  echo "building llama-cpp-python $VERSION for $target ($FLAGS); once per machine, 5-10 min" >&2
  CMAKE_ARGS="$FLAGS" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "${PYTHON:-python3}" -m pip wheel --no-deps --no-cache-dir -w "$DIR.tmp" "llama-cpp-python==$VERSION" >&2
  echo "$target" > "$DIR.tmp/TARGET"
  rm -rf "$DIR"; mv "$DIR.tmp" "$DIR"
  WHEEL=$(ls "$DIR"/llama_cpp_python-*.whl | head -1)
fi
echo "$WHEEL"
