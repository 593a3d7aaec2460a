"""What the numbers were measured on: CPU model and SIMD flags, cache, RAM, library versions, and the
memory bandwidth measured in the same command (numpy read / copy, best of N).

No torch here: the roofline command runs without it.
"""
from __future__ import annotations

import os
import platform
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

# Flags that decide which kernels llama.cpp / ORT / torch can use.
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16",
              "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
PACKAGES = ("torch", "onnxruntime", "llama_cpp_python", "numpy", "gguf")


def cpu_info() -> dict:
    """Model name, logical cores, SIMD flags present (from /proc/cpuinfo on Linux)."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    have = set(flags.group(1).split()) if flags else set()
    return {"model": model.group(1).strip() if model else platform.processor() or "unknown",
            "logical_cores": os.cpu_count(), "flags": [f for f in SIMD_FLAGS if f in have],
            "machine": platform.machine(), "os": f"{platform.system()} {platform.release()}"}


def cache_levels() -> list[dict]:
    """Data/unified caches of cpu0 from /sys: level, size in bytes, CPUs sharing it."""
    out = []
    for d in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            kind = (d / "type").read_text().strip()
            if kind == "Instruction":
                continue
            out.append({"level": int((d / "level").read_text()), "type": kind,
                        "bytes": _size_bytes((d / "size").read_text().strip()),
                        "shared_cpus": (d / "shared_cpu_list").read_text().strip()})
        except OSError:
            continue
    return out


def llc_bytes() -> int | None:
    """Last-level cache size (the largest level's size), None where /sys does not say."""
    levels = cache_levels()
    return max(levels, key=lambda c: (c["level"], c["bytes"]))["bytes"] if levels else None


def ram_bytes() -> int | None:
    m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text()) if Path("/proc/meminfo").exists() else None
    return int(m.group(1)) * 1024 if m else None


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = None
    return out


def kernel_isas() -> dict:
    """The SIMD each library's kernels were built or capped for, which need not be all the CPU has.

    ggml's comes from llama.cpp's own system info (a build for AVX2 alone runs on an AVX-512 CPU, as
    `LLAMA_CPP_LIB_PATH` or a second llama_cpp package can load); torch's from its dispatch, which
    ATEN_CPU_CAPABILITY caps (read only where torch is already imported: the roofline runs without it). ONNX
    Runtime picks its kernels by CPUID at run time and has no cap.
    """
    out: dict = {"ggml": None, "ggml_library": None, "torch": None, "onnxruntime": "by CPUID (no cap)",
                 "caps_in_environment": {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA",
                                                                   "MKL_ENABLE_INSTRUCTIONS") if k in os.environ}}
    try:
        import llama_cpp
    except ImportError:
        pass
    else:
        from gem_runtime.tuning import ggml_isa

        out["ggml"] = ggml_isa()
        out["ggml_library"] = _loaded_from("libggml-cpu") or str(Path(llama_cpp.__file__).parent)
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.backends.cpu.get_cpu_capability()
    return out


def _loaded_from(name: str) -> str | None:
    """The folder of the shared library `name` this process has mapped (LLAMA_CPP_LIB_PATH can put ggml elsewhere
    than the llama_cpp package), or None where /proc is not readable or it is not loaded."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = {line.split(None, 5)[-1] for line in maps.splitlines() if name in line and "/" in line}
    return str(Path(min(paths)).parent) if paths else None


def machine_info() -> dict:
    return {"host": platform.node(), "cpu": cpu_info(), "caches": cache_levels(), "ram_bytes": ram_bytes(),
            "libraries": library_versions(), "kernels": kernel_isas()}


def machine_line(info: dict) -> str:
    cpu = info["cpu"]
    llc = max(info["caches"], key=lambda c: c["level"]) if info["caches"] else None
    ram = f"{info['ram_bytes'] / 2**30:.0f} GiB RAM" if info["ram_bytes"] else "RAM ?"
    cache = f"L{llc['level']} {llc['bytes'] / 2**20:.0f} MiB" if llc else "LLC ?"
    libs = ", ".join(f"{k} {v}" for k, v in info["libraries"].items() if v)
    line = (f"{cpu['model']} ({cpu['logical_cores']} logical cores, {cpu['machine']}), {cache}, {ram}; "
            f"flags: {' '.join(cpu['flags']) or 'none of ' + '/'.join(SIMD_FLAGS)}; {libs}")
    kernels = info.get("kernels") or {}
    if kernels.get("ggml") and "avx512f" in cpu["flags"] and "AVX512" not in kernels["ggml"]:
        line += f"; ggml built for {kernels['ggml']} only ({kernels['ggml_library']})"
    if kernels.get("caps_in_environment"):
        line += "; capped: " + " ".join(f"{k}={v}" for k, v in kernels["caps_in_environment"].items())
    return line


def measure_bandwidth(threads: int = 2, mib: int = 1024, repeats: int = 5) -> dict:
    """DRAM bandwidth in GB/s (1e9 B/s) with `threads` numpy workers, each on its own slice, best of `repeats`.

    read: float32 `max` over the array (bytes read / t; numpy releases the GIL in reductions).
    copy: `copyto` into a second array, counted as (read + write) bytes / t, as STREAM's copy does.
    `mib` should be several times the last-level cache, or this measures the cache.
    """
    n = mib * 2**20 // 4
    src = np.ones(n, np.float32)                   # touched, so page faults are not timed
    dst = np.zeros(n, np.float32)
    bounds = np.linspace(0, n, threads + 1).astype(int)
    parts = list(zip(bounds[:-1], bounds[1:]))

    def timed(fn) -> float:
        best = float("inf")
        with ThreadPoolExecutor(threads) as pool:
            for _ in range(repeats):
                t0 = time.perf_counter()
                list(pool.map(fn, parts))
                best = min(best, time.perf_counter() - t0)
        return best

    t_read = timed(lambda p: src[p[0]:p[1]].max())
    t_copy = timed(lambda p: np.copyto(dst[p[0]:p[1]], src[p[0]:p[1]]))
    return {"read_gb_s": round(src.nbytes / t_read / 1e9, 2), "copy_gb_s": round(2 * src.nbytes / t_copy / 1e9, 2),
            "array_mib": mib, "threads": threads, "repeats": repeats, "method": "numpy float32 max / copyto, best of N"}


def _size_bytes(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([KMG]?)B?", text.strip(), re.I)
    if not m:
        raise ValueError(f"cache size {text!r} not understood")
    return int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2).upper()]
