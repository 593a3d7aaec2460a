#!/usr/bin/env bash
# llama-bench per LLM type and repacking, with ggml built for AVX-512 (+VNNI, as our wheel) and for AVX2 only
# (AVX-512 off at build time), on the 2-layer GEM-7B-shape GGUFs (issue 28's AVX2 question, on a Zen 4).
set -euo pipefail
# Run from the repository root after `gem-bench peer` has built work/peer (its llama-quantize and source tree).
cd "$(dirname "$0")/../../.."; . .venv/bin/activate
SRC=work/peer/src/llama_cpp_python-0.3.36/vendor/llama.cpp
W=work/avx2
echo "== $(date -u +%T) build avx512 llama-bench"
cmake --build work/peer/build --config Release -j 2 --target llama-bench > $W/build-avx512.log 2>&1
echo "== $(date -u +%T) configure + build avx2"
[ -x $W/build/bin/llama-bench ] || {
  cmake -S $SRC -B $W/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON \
    -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
    -DGGML_AVX512=OFF -DGGML_AVX512_VNNI=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF > $W/build-avx2.log 2>&1
  cmake --build $W/build --config Release -j 2 --target llama-bench >> $W/build-avx2.log 2>&1; }
echo "== $(date -u +%T) types"
L2=work/peer/gem7b-L2/bundle
mkdir -p $W/models
for t in q4_0 q4_k_m iq4_nl q5_k_m q6_k q8_0 f16; do
  f=$W/models/gem7b-L2-$t.gguf
  [ -f $f ] || { if [ -f $L2/llm-$t.gguf ]; then ln $L2/llm-$t.gguf $f; else
    work/peer/build/bin/llama-quantize $L2/llm-f16.gguf $f $(echo $t | tr a-z A-Z) 2 > /dev/null 2>&1; fi; }
done
echo "== $(date -u +%T) bench"
for isa in avx512 avx2; do
  bin=work/peer/build/bin/llama-bench; [ $isa = avx2 ] && bin=$W/build/bin/llama-bench
  for t in q4_0 q4_k_m iq4_nl q5_k_m q6_k q8_0 f16; do
    $bin -m $W/models/gem7b-L2-$t.gguf -p 640 -n 32 -t 2 -r 3 --repack 0,1 -o jsonl > $W/bench-$isa-$t.jsonl 2> $W/bench-$isa-$t.err || echo "failed $isa $t"
  done
done
echo "== $(date -u +%T) done"
