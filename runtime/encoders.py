"""The two encoders (ECG, image) on TensorRT engines or ONNX Runtime (CUDA / CPU execution providers).

`auto` picks the fastest backend this machine has; asking for one it lacks is an error, never a silent fallback.
Every encoder is an `Encoder`: `run` a batch, `close` its native resources, say its `backend`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from .bundle import Bundle
from .errors import BackendUnavailableError, BundleError
from .manifest import ENCODERS, EncoderIO

BACKENDS = ("auto", "tensorrt", "cuda", "cpu")


class Encoder(Protocol):
    name: str
    backend: str           # "tensorrt", "onnxruntime-cuda", "onnxruntime-cpu", "onnxruntime-cpu-int8"

    def run(self, x: np.ndarray) -> np.ndarray:
        """(B, ...) float32 -> (B, rows, H) float32: LLM-ready rows."""

    def close(self) -> None:
        """Free the session / engine / device buffers; run must not be called after."""


def ort_providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def available_backends(bundle: Bundle) -> list[str]:
    """Backends usable here, fastest first."""
    from .trt_engine import cuda_device_present, engine_file_for

    found = []
    if all(engine_file_for(bundle.root, n) for n in ENCODERS):
        found.append("tensorrt")
    if "CUDAExecutionProvider" in ort_providers() and cuda_device_present():
        found.append("cuda")
    found.append("cpu")
    return found


class OrtEncoder:
    """One encoder graph in an ONNX Runtime session."""

    def __init__(self, io: EncoderIO, path: Path, backend: str, threads: int):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle ORT threads spin by default and steal the cores llama.cpp's prefill needs right after the
        # encoders (measured here: prefill 60-87 ms with spinning, 19-21 ms without).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if backend == "cuda" else ["CPUExecutionProvider"]
        self.io, self.name = io, io.name
        self._session = ort.InferenceSession(str(path), so, providers=providers)
        used = self._session.get_providers()[0]
        if backend == "cuda" and used != "CUDAExecutionProvider":
            self.close()
            raise BackendUnavailableError(f"onnxruntime could not start CUDA for {io.name} (got {used})")
        self.backend = "onnxruntime-cuda" if backend == "cuda" else "onnxruntime-cpu"

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run([self.io.output], {self.io.input: np.ascontiguousarray(x, np.float32)})[0]

    def close(self) -> None:
        self._session = None          # ORT frees the session (and its CUDA memory) with the last reference


class TrtBundleEncoder:
    """A TensorRT engine of the bundle as an Encoder."""

    backend = "tensorrt"

    def __init__(self, io: EncoderIO, path: Path):
        from .trt_engine import TrtEncoder

        self.io, self.name = io, io.name
        self._engine = TrtEncoder(path, io.input, io.output)

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._engine.run(x)

    def close(self) -> None:
        self._engine.close()


def resolve_backend(bundle: Bundle, backend: str) -> str:
    """The encoders' backend as one of "tensorrt", "cuda", "cpu": "auto" is the fastest this machine has; one asked
    for and not available here is refused, with the reason, never a silent fallback."""
    if backend not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    have = available_backends(bundle)
    if backend == "auto":
        return have[0]
    if backend not in have:
        from .trt_engine import engine_mismatch_reason

        why = {"tensorrt": engine_mismatch_reason(bundle.root, "ecg_encoder") or "no engine for this GPU",
               "cuda": "onnxruntime has no CUDAExecutionProvider here or no NVIDIA GPU is present"}.get(backend, "")
        raise BackendUnavailableError(f"backend {backend!r} is not available here ({why}); available: {', '.join(have)}")
    return backend


def load_encoders(bundle: Bundle, backend: str, threads: int, precision: dict[str, str] | None = None
                  ) -> dict[str, Encoder]:
    """Both encoders on `backend` (one resolve_backend returned); on failure, those already loaded are closed
    again. precision: per encoder "fp32" (default) or "int8" (CPU only)."""
    loaded: dict[str, Encoder] = {}
    try:
        for name, io in ENCODERS.items():
            loaded[name] = _load_one(bundle, io, backend, threads, (precision or {}).get(name, "fp32"))
    except BaseException:
        for enc in loaded.values():
            enc.close()
        raise
    return loaded


def _load_one(bundle: Bundle, io: EncoderIO, backend: str, threads: int, precision: str = "fp32") -> Encoder:
    if backend == "tensorrt":
        from .trt_engine import engine_file_for

        return TrtBundleEncoder(io, bundle.path(engine_file_for(bundle.root, io.name).name))
    entry = bundle.manifest.encoders[io.name]
    # GPUs run the fp16 graph (fp32 in and out); the CPU keeps fp32, which it computes faster and exactly.
    int8 = backend == "cpu" and precision == "int8"
    path = bundle.path(entry.fp16_file if backend == "cuda" else entry.int8_file if int8 else entry.file)
    data = path.with_suffix(".onnx.data")
    if data.name in bundle.manifest.files:
        bundle.path(data.name)                        # external weights are verified too
    elif data.exists():                               # ONNX Runtime would load it unchecked
        raise BundleError(data, f"external weights of {path.name} not listed in the manifest")
    encoder = OrtEncoder(io, path, backend, threads)
    if int8:
        encoder.backend = "onnxruntime-cpu-int8"
    return encoder
