#!/usr/bin/env bash
# Build an offline installer for an air-gapped cart or hospital server, on a machine with the registries:
#
#   bash scripts/make-offline.sh OUT [--extras serve,hospital] [--bundle DIR]
#
# OUT/wheels/     every wheel gem-edge's runtime and the chosen extras need (the `deploy` extra, PyNaCl for
#                 signed bundles, always), gem-edge's own included; llama-cpp-python is the wheel pip's cache
#                 holds, built once with scripts/llama_cmake_args.sh (built here if the cache has none)
# OUT/bundles/    the bundle (default bundles/demo), with its manifest.sig when signed
# OUT/install.sh  `bash OUT/install.sh PREFIX` on the target: no network, nothing compiled
# OUT/deploy/     deploy/ of this repository: gem-edge.toml, the systemd units, the sysusers line
# OUT/BASELINE    the CPU flags the llama.cpp wheel needs (read from its machine code); install.sh checks them
# OUT/PYTHON      the Python version the wheels are for (3.11); install.sh checks it
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
usage="usage: bash scripts/make-offline.sh OUT [--extras serve,hospital] [--bundle DIR]"
out="" extras="serve,hospital" bundle="$repo/bundles/demo"
while [ $# -gt 0 ]; do
  case "$1" in
    --extras) extras=${2:?$usage}; shift 2 ;;
    --bundle) bundle=${2:?$usage}; shift 2 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "make-offline: error: unknown option $1; $usage" >&2; exit 2 ;;
    *) [ -z "$out" ] || { echo "make-offline: error: one OUT only; $usage" >&2; exit 2; }; out=$1; shift ;;
  esac
done
[ -n "$out" ] || { echo "make-offline: error: $usage" >&2; exit 2; }
[ -f "$bundle/manifest.json" ] || { echo "make-offline: error: $bundle: no manifest.json (not a bundle)" >&2; exit 2; }
for e in ${extras//,/ }; do
  case "$e" in serve|hospital|formats|deploy) ;; *)
    echo "make-offline: error: extra '$e' is not for a cart (choose from serve, hospital, formats)" >&2; exit 2 ;;
  esac
done
extras=$(echo "deploy,$extras" | tr ',' '\n' | awk 'NF && !seen[$0]++' | paste -sd, -)
python=${PYTHON:-python3}
start=$(date +%s)
mkdir -p "$out/wheels" "$out/bundles"
out=$(cd "$out" && pwd)

# gem-edge is built from a copy of its package folders, so the shared checkout gets no build/ folder
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
(cd "$repo" && git ls-files -co --exclude-standard -- pyproject.toml runtime export gem_train benchmarks \
  | grep -v '/__pycache__/' | tar cf - -T -) | tar xf - -C "$src"
CMAKE_ARGS="$(bash "$repo/scripts/llama_cmake_args.sh")" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
  "$python" -m pip wheel -q --wheel-dir "$out/wheels" "$src[$extras]" 2> >(grep -v "is ignored: it is neither" >&2)

# the CPU the llama.cpp wheel needs, read from its machine code: AVX-512 registers (zmm), VNNI dot products
llama=$(ls "$out"/wheels/llama_cpp_python-*.whl)
baseline="unknown"
if command -v objdump >/dev/null; then
  lib=$(mktemp -d)
  "$python" -m zipfile -e "$llama" "$lib"
  asm=$(objdump -d --no-show-raw-insn "$lib"/llama_cpp/lib/libggml-cpu.so)
  rm -rf "$lib"
  baseline="avx avx2 fma f16c"
  if grep -q zmm <<<"$asm"; then baseline="$baseline avx512f avx512cd avx512vl avx512dq avx512bw"; fi
  if grep -q 'vpdpbusd.*zmm' <<<"$asm"; then baseline="$baseline avx512_vnni"; fi
fi
echo "$baseline" > "$out/BASELINE"
"$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' > "$out/PYTHON"
echo "$extras" > "$out/EXTRAS"

name=$(basename "$(cd "$bundle" && pwd)")
rm -rf "${out:?}/bundles/$name"
cp -a "$bundle" "$out/bundles/$name"
rm -f "$out/bundles/$name"/*.tune.json        # a tune file is for the machine that measured it
cp "$repo/scripts/offline-install.sh" "$out/install.sh"
rm -rf "${out:?}/deploy"
cp -r "$repo/deploy" "$out/deploy"              # the example config, the systemd units, the sysusers line
chmod +x "$out/install.sh"
echo "make-offline: $out: $(ls "$out/wheels" | wc -l) wheels ($(du -sh "$out/wheels" | cut -f1)), bundle $name," \
     "extras $extras, llama.cpp CPU baseline: $baseline; $(( $(date +%s) - start )) s" >&2
