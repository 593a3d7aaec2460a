"""TensorRT engines for the bundle encoders: which engine file fits this machine, and running one.

A serialized engine only runs on the GPU architecture (compute capability) and the exact TensorRT version
that built it, so both are in its file name: `ecg_encoder.sm90.trt10.8.0.43.engine`. The runtime picks the
file matching this machine, or explains why the ones present do not fit.

Needs `pip install tensorrt cuda-python` on a machine with an NVIDIA GPU. Only numpy is imported here;
tensorrt and cuda-python are imported when first used, never torch.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BackendUnavailableError

ENGINE_SUFFIX = ".engine"
_ENGINE_RE = re.compile(r"^(?P<name>.+)\.sm(?P<sm>\d+)\.trt(?P<version>\d+(?:\.\d+)*)\.engine$")


# ------------------------------------------------------------------------------ naming (pure logic)
@dataclass(frozen=True)
class EngineTag:
    name: str          # encoder name, e.g. "ecg_encoder"
    sm: str            # compute capability without the dot: "90" for 9.0, "120" for 12.0
    trt_version: str   # TensorRT version that built it: "10.8.0.43"


def engine_name(name: str, sm: str, trt_version: str) -> str:
    return f"{name}.sm{sm}.trt{trt_version}{ENGINE_SUFFIX}"


def parse_engine_name(filename: str) -> EngineTag | None:
    m = _ENGINE_RE.match(filename)
    return EngineTag(m["name"], m["sm"], m["version"]) if m else None


def engines_in(bundle_dir: Path, name: str) -> list[EngineTag]:
    """Every engine for `name` in the bundle, whatever GPU or TensorRT it was built for."""
    tags = (parse_engine_name(p.name) for p in Path(bundle_dir).glob(f"{name}.sm*{ENGINE_SUFFIX}"))
    return sorted((t for t in tags if t is not None and t.name == name), key=lambda t: (t.sm, t.trt_version))


def engine_file_for(bundle_dir: Path, name: str, sm: str | None = None,
                    trt_version: str | None = None) -> Path | None:
    """The engine for `name` built for this GPU's compute capability and this TensorRT version, or None.
    `sm` and `trt_version` default to what this machine has (None when it has no GPU or no TensorRT)."""
    sm = sm if sm is not None else _this_sm()
    trt_version = trt_version if trt_version is not None else installed_trt_version()
    if sm is None or trt_version is None:
        return None
    path = Path(bundle_dir) / engine_name(name, sm, trt_version)
    return path if path.is_file() else None


def engine_mismatch_reason(bundle_dir: Path, name: str, sm: str | None = None,
                           trt_version: str | None = None) -> str | None:
    """Why no engine in the bundle can run `name` here, in one line; None when one can."""
    sm = sm if sm is not None else _this_sm()
    trt_version = trt_version if trt_version is not None else installed_trt_version()
    found = engines_in(bundle_dir, name)
    if trt_version is None:
        return "TensorRT is not installed (pip install tensorrt cuda-python)"
    if sm is None:
        return "no CUDA GPU found"
    if engine_file_for(bundle_dir, name, sm, trt_version) is not None:
        return None
    here = f"this GPU is sm_{sm} with TensorRT {trt_version}"
    if not found:
        return f"no TensorRT engine for {name} in {bundle_dir} ({here}; build one with gem-export trt --bundle B)"
    built = ", ".join(f"sm_{t.sm} / TensorRT {t.trt_version}" for t in found)
    return f"{name} engine built for {built}, {here}"


# ------------------------------------------------------------------------------ machine probing
def installed_trt_version() -> str | None:
    """tensorrt.__version__, or None when TensorRT is not installed (the PyPI stub counts as not installed)."""
    try:
        import tensorrt
    except Exception:   # ImportError, or a stub/broken wheel raising at import
        return None
    return getattr(tensorrt, "__version__", None)


@dataclass(frozen=True)
class GpuInfo:
    name: str
    sm: str            # "90" for compute capability 9.0


def cuda_device_present() -> bool:
    """Whether an NVIDIA driver is loaded here (cheap: no CUDA library is opened). The one GPU probe of the
    runtime, the benchmarks and the tests."""
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia").exists()


def gpu_info(device: int = 0) -> GpuInfo | None:
    """The CUDA GPU's name and compute capability, from cuda-python or else nvidia-smi; None without a GPU."""
    cudart = _cudart(required=False)
    if cudart is not None:
        try:
            err, count = cudart.cudaGetDeviceCount()
            if err != cudart.cudaError_t.cudaSuccess or count <= device:
                return None
            err, props = cudart.cudaGetDeviceProperties(device)
        except Exception:   # cuda-python present but no usable driver library
            err = None
        if err == cudart.cudaError_t.cudaSuccess:
            raw = props.name
            name = raw.decode(errors="replace").rstrip("\x00") if isinstance(raw, bytes) else str(raw)
            return GpuInfo(name, f"{props.major}{props.minor}")
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    if len(out) <= device or "," not in out[device]:
        return None
    name, cap = (s.strip() for s in out[device].rsplit(",", 1))
    return GpuInfo(name, cap.replace(".", "")) if re.fullmatch(r"\d+\.\d+", cap) else None


def _this_sm() -> str | None:
    info = gpu_info()
    return info.sm if info else None


def _cudart(required: bool = True):
    """cuda-python's runtime module: `cuda.bindings.runtime` (cuda-python >= 12.6) or the older `cuda.cudart`."""
    try:
        from cuda.bindings import runtime as cudart
        return cudart
    except ImportError:
        pass
    try:
        from cuda import cudart
        return cudart
    except ImportError:
        if required:
            raise BackendUnavailableError("TensorRT encoders need cuda-python: pip install cuda-python") from None
        return None


def _check(cudart, result):
    """cuda-python returns (err, *values): raise on err, return the values (one value unwrapped)."""
    err, *values = result
    if err != cudart.cudaError_t.cudaSuccess:
        _, msg = cudart.cudaGetErrorString(err)
        raise RuntimeError(f"CUDA error {int(err)}: {msg.decode() if isinstance(msg, bytes) else msg}")
    return values[0] if len(values) == 1 else values


# ------------------------------------------------------------------------------ running an engine
class TrtEncoder:
    """One encoder engine: float32 numpy in, float32 numpy out (fp16 inside the engine).

    Uses TensorRT 10's tensor API (set_input_shape, set_tensor_address, execute_async_v3) on one CUDA
    stream; device buffers are allocated with cuda-python and grown when a larger batch comes. Batches
    larger than the engine's profile maximum run in chunks.
    """

    def __init__(self, engine_path: Path, input_name: str, output_name: str):
        try:
            import tensorrt as trt
        except Exception as e:
            raise BackendUnavailableError(f"{engine_path}: TensorRT is not installed ({e}); "
                                          f"pip install tensorrt cuda-python") from None
        self._trt, self._cudart = trt, _cudart()
        self.path, self.input_name, self.output_name = Path(engine_path), input_name, output_name
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise BackendUnavailableError(f"{self.path}: TensorRT could not load this engine "
                                          f"(built for another GPU or TensorRT version?)")
        names = {self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)}
        for n in (input_name, output_name):
            if n not in names:
                raise BackendUnavailableError(f"{self.path}: engine has no tensor {n!r} (has {sorted(names)})")
        self.context = self.engine.create_execution_context()
        _, _, max_shape = self.engine.get_tensor_profile_shape(input_name, 0)
        self.max_batch = int(max_shape[0])
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(output_name)))
        self._stream = _check(self._cudart, self._cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}       # tensor name -> (device pointer, bytes)

    def run(self, x: np.ndarray) -> np.ndarray:
        """x (B, ...) float32 -> (B, rows, H) float32."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        parts = [self._run_chunk(x[i:i + self.max_batch]) for i in range(0, x.shape[0], self.max_batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def _run_chunk(self, x: np.ndarray) -> np.ndarray:
        cudart, ctx = self._cudart, self.context
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        if not ctx.set_input_shape(self.input_name, tuple(x.shape)):
            raise ValueError(f"{self.path}: input shape {tuple(x.shape)} is outside the engine's profile")
        out = np.empty(tuple(ctx.get_tensor_shape(self.output_name)), dtype=self.out_dtype)
        d_in = self._buffer(self.input_name, x.nbytes)
        d_out = self._buffer(self.output_name, out.nbytes)
        ctx.set_tensor_address(self.input_name, d_in)
        ctx.set_tensor_address(self.output_name, d_out)
        _check(cudart, cudart.cudaMemcpyAsync(d_in, x.ctypes.data, x.nbytes, h2d, self._stream))
        if not ctx.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"{self.path}: TensorRT execution failed")
        _check(cudart, cudart.cudaMemcpyAsync(out.ctypes.data, d_out, out.nbytes, d2h, self._stream))
        _check(cudart, cudart.cudaStreamSynchronize(self._stream))
        return out.astype(np.float32, copy=False)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart, self._cudart.cudaFree(ptr))
            ptr, size = int(_check(self._cudart, self._cudart.cudaMalloc(nbytes))), nbytes
            self._buffers[name] = (ptr, size)
        return ptr

    def close(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for ptr, _ in self._buffers.values():
            cudart.cudaFree(ptr)
        self._buffers.clear()
        if getattr(self, "_stream", None) is not None:
            cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self.context = self.engine = None

    def __enter__(self) -> "TrtEncoder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
