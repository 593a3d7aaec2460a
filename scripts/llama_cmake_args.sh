#!/usr/bin/env bash
# CMake flags for building llama-cpp-python here. Not GGML_NATIVE: some VMs advertise AMX in cpuid without
# enabling it (ggml's AMX kernels then die with SIGILL on quantized models), and a native wheel in pip's cache
# breaks on the next, different CPU. AVX-512 + VNNI where the CPU has them, else AVX2.
flags="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
if grep -q avx512f /proc/cpuinfo 2>/dev/null && grep -q avx512_vnni /proc/cpuinfo 2>/dev/null; then
  flags="$flags -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON"
fi
echo "$flags"
