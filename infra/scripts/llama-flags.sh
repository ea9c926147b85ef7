# Sourced by llama-wheel.sh and llama-server.sh: the llama.cpp version and the CMake flags
# for this host, so the binding and the serving peer are built from one source with one
# instruction-set choice. Sets VERSION, target, FLAGS and KEY (the cache key of a build).
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
VERSION="${LLAMA_CPP_VERSION:-0.3.36}"
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { [[ "$flags" == *" $1 "* ]]; }

target="${SYNDICATE_LLAMA_TARGET:-}"
if [ -z "$target" ]; then
  if has avx512f && has avx512bw && has avx512vl; then target=avx512
  elif has avx2 && has fma && has f16c; then target=avx2
  else
    echo "llama.cpp: this CPU has no AVX2 (flags: ${flags:0:200}...); llama.cpp would run on SSE," >&2
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
  *) echo "llama.cpp: unknown SYNDICATE_LLAMA_TARGET=$target (avx2|avx512|sse)" >&2; exit 2 ;;
esac
KEY=$(printf '%s|%s' "$VERSION" "$FLAGS" | sha256sum | cut -c1-16)
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/syndicate"

# The sdist both builds start from (it vendors llama.cpp under vendor/llama.cpp), fetched
# once by pip into the cache and checked against its pinned sha256 on every use. Only this
# package as source: with `--no-binary :all:` pip built its build tools (cmake!) from source
# too, 30+ min on a fresh 2-core machine (make fresh-check).
declare -A SDIST_SHA256=([0.3.36]=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e)
llama_sdist() {
  local want="${LLAMA_CPP_SDIST_SHA256:-${SDIST_SHA256[$VERSION]:-}}"
  local file="$CACHE/sdists/llama_cpp_python-$VERSION.tar.gz"
  if [ -z "$want" ]; then
    echo "llama.cpp: no sha256 pinned for llama-cpp-python $VERSION's sdist; set LLAMA_CPP_SDIST_SHA256" >&2
    return 1
  fi
  if [ ! -f "$file" ]; then
    mkdir -p "$CACHE/sdists/tmp.$$"
    "${PYTHON:-python3}" -m pip download -q --no-deps --no-binary llama-cpp-python -d "$CACHE/sdists/tmp.$$" \
      "llama-cpp-python==$VERSION" >&2
    mv "$CACHE/sdists/tmp.$$/llama_cpp_python-$VERSION.tar.gz" "$file.part"
    rm -rf "$CACHE/sdists/tmp.$$"
    mv "$file.part" "$file"
  fi
  if [ "$(sha256sum "$file" | cut -d' ' -f1)" != "$want" ]; then
    echo "llama.cpp: $file does not match its sha256 $want; deleted it, run again" >&2
    rm -f "$file"
    return 1
  fi
  echo "$file"
}
