"""The two encoders (ECG, image) on TensorRT engines or ONNX Runtime (CUDA / CPU execution providers).

`auto` picks the fastest backend this machine has; asking for one it lacks is an error, never a silent fallback.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import Bundle
from .errors import BackendUnavailableError

BACKENDS = ("auto", "tensorrt", "cuda", "cpu")
IO_NAMES = {"ecg_encoder": ("ecg", "ecg_embeds"), "image_encoder": ("pixel_values", "image_embeds")}


def ort_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def available_backends(bundle: Bundle) -> list[str]:
    """Backends usable here, fastest first."""
    from .trt_engine import engine_file_for

    found = []
    if all(engine_file_for(bundle.root, n) for n in IO_NAMES):
        found.append("tensorrt")
    if "CUDAExecutionProvider" in ort_providers() and _cuda_device_present():
        found.append("cuda")
    found.append("cpu")
    return found


def _cuda_device_present() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists()


@dataclass
class Encoder:
    name: str
    backend: str
    run: object           # callable: np.ndarray (B, ...) -> np.ndarray (B, rows, H)


def load_encoders(bundle: Bundle, backend: str, threads: int) -> dict[str, Encoder]:
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    have = available_backends(bundle)
    if backend == "auto":
        backend = have[0]
    elif backend not in have:
        from .trt_engine import engine_mismatch_reason

        why = {"tensorrt": engine_mismatch_reason(bundle.root, "ecg_encoder") or "no engine for this GPU",
               "cuda": "onnxruntime has no CUDAExecutionProvider here or no NVIDIA GPU is present"}.get(backend, "")
        raise BackendUnavailableError(f"backend {backend!r} is not available here ({why}); available: {', '.join(have)}")
    return {name: _load_one(bundle, name, backend, threads) for name in IO_NAMES}


def _load_one(bundle: Bundle, name: str, backend: str, threads: int) -> Encoder:
    inp, out = IO_NAMES[name]
    if backend == "tensorrt":
        from .trt_engine import TrtEncoder, engine_file_for

        eng = TrtEncoder(bundle.path(engine_file_for(bundle.root, name).name), inp, out)
        return Encoder(name, "tensorrt", eng.run)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle ORT threads spin by default and steal the cores llama.cpp's prefill needs right after the encoders
    # (measured here: prefill 60-87 ms with spinning, 19-21 ms without).
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if backend == "cuda" else ["CPUExecutionProvider"]
    entry = bundle.manifest["encoders"][name]
    # GPUs run the fp16 graph (fp32 in and out); the CPU keeps fp32, which it computes faster and exactly.
    path = bundle.path(entry["fp16_file"] if backend == "cuda" and entry.get("fp16_file") else entry["file"])
    data = path.with_suffix(".onnx.data")
    if data.exists() and data.name in bundle.manifest["files"]:
        bundle.path(data.name)                        # external weights are verified too
    sess = ort.InferenceSession(str(path), so, providers=providers)
    used = sess.get_providers()[0]
    if backend == "cuda" and used != "CUDAExecutionProvider":
        raise BackendUnavailableError(f"onnxruntime could not start CUDA for {name} (got {used})")

    def run(x: np.ndarray) -> np.ndarray:
        return sess.run([out], {inp: np.ascontiguousarray(x, np.float32)})[0]

    return Encoder(name, "onnxruntime-cuda" if backend == "cuda" else "onnxruntime-cpu", run)
