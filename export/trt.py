"""TensorRT for the encoder graphs: a static check that runs anywhere, and fp16 engine building on a GPU.

`static_check` reads an exported encoder ONNX (only the `onnx` package needed) and says whether TensorRT 10's
ONNX parser would take it: ops, opset, static non-batch input axes, shape inputs TensorRT can compute at
build time, dtypes. `build_engines` turns the bundle's encoder graphs into engines when TensorRT and a CUDA
GPU are present (`pip install tensorrt cuda-python` on the target machine); engines are tied to the GPU's
compute capability and the TensorRT version, so both go in the file name (see gem_runtime.trt_engine).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from gem_runtime.manifest import ENCODERS
from gem_runtime.errors import BackendUnavailableError, BundleError
from gem_runtime.files import atomic_write
from gem_runtime.trt_engine import engine_name, gpu_info, installed_trt_version

# ---------------------------------------------------------------------------------------------- facts
# TensorRT 10.0's ONNX parser: opsets 9..20 and these ops (onnx-tensorrt docs/operators.md, the ops marked Y).
TRT_TARGET = "10.0"
OPSET_MIN, OPSET_MAX = 9, 20
TRT10_OPS = frozenset("""
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast CastLike Ceil
    Celu Clip Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div
    Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gelu Gemm
    GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU
    HardSigmoid HardSwish Hardmax Identity If ImageScaler InstanceNormalization IsInf IsNaN LayerNormalization
    LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max MaxPool Mean
    MeanVarianceNormalization Min Mish Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus
    Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal
    ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
    ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements
    ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
    Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
""".split())
# Ops the parser learned after 10.0 (onnx-tensorrt CHANGELOG): rejected here, the engine machine may be 10.0.
TRT10_LATER_OPS = {"DeformConv": "10.1", "BlackmanWindow": "10.4", "HammingWindow": "10.4", "HannWindow": "10.4",
                   "STFT": "10.5", "Attention": "10.14", "RotaryEmbedding": "10.15", "RMSNormalization": "10.15",
                   "TensorScatter": "10.15"}

# ONNX TensorProto.DataType codes TensorRT has no type for (DOUBLE is only clamped down to float: reject it).
UNSUPPORTED_DTYPES = {11: "DOUBLE", 8: "STRING", 14: "COMPLEX64", 15: "COMPLEX128", 5: "INT16", 4: "UINT16",
                      12: "UINT32", 13: "UINT64"}

# Inputs TensorRT reads at build time. "shape": a shape tensor (constants, or computed from Shape outputs).
# "const": must fold to a constant (axes, K, depth).
SHAPE_INPUTS: dict[str, dict[int, str]] = {
    "Reshape": {1: "shape"}, "Expand": {1: "shape"}, "Tile": {1: "shape"}, "ConstantOfShape": {0: "shape"},
    "Slice": {1: "shape", 2: "shape", 3: "const", 4: "shape"}, "Pad": {1: "shape"}, "Split": {1: "shape"},
    "Squeeze": {1: "const"}, "Unsqueeze": {1: "const"}, "TopK": {1: "const"}, "CumSum": {1: "const"},
    "OneHot": {1: "const"},
    **{op: {1: "const"} for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
                                   "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")},
}
# Ops through which a shape tensor stays computable at build time (integer arithmetic on shapes).
SHAPE_ARITH_OPS = frozenset("""Gather Slice Concat Unsqueeze Squeeze Cast Add Sub Mul Div Mod Identity Reshape
    Max Min Neg Abs Equal Where Flatten ReduceProd ConstantOfShape Expand Range""".split())

ENGINE_PRECISION = "fp16"
TIMING_CACHE = "trt_timing.cache"
_INSTALL_HINT = "pip install tensorrt on the target GPU machine, then gem-export trt --bundle {bundle}"


# ----------------------------------------------------------------------------------------- static check
def static_check(onnx_path: Path) -> dict:
    """Would TensorRT 10's ONNX parser take this graph? Reads the graph only (external weights are not loaded).

    Returns {"ok", "opset", "ops", "unsupported", "dynamic_axes", "problems"}: every op type used (local
    functions inlined, If/Loop/Scan bodies included), the ones TensorRT lacks, each dynamic input axis as
    {"input", "axis", "dim"}, and one line per problem found.
    """
    import onnx
    from onnx import inliner, shape_inference

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"{onnx_path}: ONNX file not found")
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as e:
        raise ValueError(f"{onnx_path}: not a readable ONNX model ({e})") from None
    if model.functions:
        model = inliner.inline_local_functions(model)
    try:
        model = shape_inference.infer_shapes(model)          # value_info: dtypes of intermediate tensors
    except Exception:
        pass                                                  # the op/shape checks below do not need it

    problems: list[str] = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        problems.append("no default-domain opset import")
    elif not OPSET_MIN <= opset <= OPSET_MAX:
        problems.append(f"opset {opset} outside TensorRT {TRT_TARGET}'s range {OPSET_MIN}..{OPSET_MAX}")

    graphs = list(_graphs(model.graph))
    ops = sorted({_op_name(n) for g in graphs for n in g.node})
    unsupported = [op for op in ops if op not in TRT10_OPS]
    for op in unsupported:
        since = TRT10_LATER_OPS.get(op)
        problems.append(f"op {op}: " + (f"needs TensorRT >= {since}" if since else
                                         f"not supported by TensorRT {TRT_TARGET}'s ONNX parser"))

    dynamic_axes = _dynamic_axes(model.graph)
    for d in dynamic_axes:
        if d["axis"] != 0:
            problems.append(f"input {d['input']}: axis {d['axis']} is dynamic ({d['dim'] or '?'}); "
                            f"only the batch axis may be")
    problems += _dtype_problems(model.graph, graphs)
    problems += _shape_input_problems(model.graph)
    return {"ok": not problems, "opset": opset, "ops": ops, "unsupported": unsupported,
            "dynamic_axes": dynamic_axes, "problems": problems}


def _op_name(node) -> str:
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def _graphs(graph):
    """The graph and every subgraph in node attributes (If branches, Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graphs(sub)


def _dynamic_axes(graph) -> list[dict]:
    initializers = {t.name for t in graph.initializer}
    axes = []
    for inp in graph.input:
        if inp.name in initializers or not inp.type.HasField("tensor_type"):
            continue
        for i, dim in enumerate(inp.type.tensor_type.shape.dim):
            if not dim.HasField("dim_value"):
                axes.append({"input": inp.name, "axis": i, "dim": dim.dim_param})
    return axes


def _dtype_problems(graph, graphs) -> list[str]:
    typed = {}                                               # tensor name -> dtype code
    for vi in list(graph.input) + list(graph.output) + list(graph.value_info):
        if vi.type.HasField("tensor_type"):
            typed[vi.name] = vi.type.tensor_type.elem_type
    for g in graphs:
        typed.update((t.name, t.data_type) for t in g.initializer)
        for node in g.node:
            for attr in node.attribute:
                if node.op_type in ("Cast", "CastLike") and attr.name == "to":
                    typed[f"{node.name or node.op_type} (Cast to)"] = attr.i
                elif attr.HasField("t"):
                    typed[node.output[0] if node.output else node.name] = attr.t.data_type
    found: dict[str, list[str]] = {}
    for name, code in typed.items():
        if code in UNSUPPORTED_DTYPES:
            found.setdefault(UNSUPPORTED_DTYPES[code], []).append(name)
    return [f"dtype {dt} (no TensorRT type) on {', '.join(sorted(names)[:3])}"
            + (f" and {len(names) - 3} more" if len(names) > 3 else "") for dt, names in sorted(found.items())]


def _shape_input_problems(graph) -> list[str]:
    """Shape-like inputs must be computable at build time: constants, or integer arithmetic on Shape outputs.
    A shape input that depends on tensor values (data-dependent) is rejected by TensorRT's parser."""
    producer = {}
    for node in graph.node:
        for out in node.output:
            producer[out] = node
    constants = {t.name for t in graph.initializer}
    memo: dict[str, tuple[str, str]] = {}                    # tensor -> (kind, culprit): const < shape < data

    def kind(name: str, depth: int = 0) -> tuple[str, str]:
        if name in memo:
            return memo[name]
        node = producer.get(name)
        if name in constants or (node is not None and node.op_type == "Constant"):
            result = ("const", "")
        elif node is None:
            result = ("data", f"graph input {name}")
        elif node.op_type in ("Shape", "Size"):
            result = ("shape", "")
        elif node.op_type in SHAPE_ARITH_OPS and depth < 200:
            kinds = [kind(i, depth + 1) for i in node.input if i]
            data = [k for k in kinds if k[0] == "data"]
            result = data[0] if data else (("shape", "") if any(k[0] == "shape" for k in kinds) else ("const", ""))
        else:
            result = ("data", f"{node.op_type} node {node.name or name}")
        memo[name] = result
        return result

    problems = []
    for node in graph.node:
        for index, need in SHAPE_INPUTS.get(node.op_type, {}).items():
            if index >= len(node.input) or not node.input[index]:
                continue
            got, culprit = kind(node.input[index])
            if got == "data" or (need == "const" and got != "const"):
                what = f"depends on {culprit}" if got == "data" else "is computed from a runtime shape"
                problems.append(f"{node.op_type} {node.name or node.output[0]}: input {index} "
                                f"({node.input[index]}) must be {'a constant' if need == 'const' else 'a shape'}"
                                f" TensorRT can compute at build time, but it {what}")
    return problems


# ------------------------------------------------------------------------------------------ engines
def trt_unavailable_reason() -> str | None:
    """Why engines cannot be built here ("not installed", "no CUDA GPU found"), or None when they can."""
    if installed_trt_version() is None:
        return "not installed"
    if gpu_info() is None:
        return "no CUDA GPU found"
    return None


def build_engines(bundle_dir: Path, mode: str, log: Callable[[str], None] = print, max_batch: int = 4,
                  workspace_gb: float = 4.0) -> dict:
    """fp16 engines for the bundle's encoder graphs, named for this GPU and TensorRT version.

    mode "off": nothing. "auto": build when TensorRT and a CUDA GPU are here, else log one [skip] line.
    "on": as auto, but missing TensorRT/GPU or a failed build raises BackendUnavailableError.
    """
    if mode not in ("off", "auto", "on"):
        raise ValueError(f"TensorRT mode {mode!r}: expected one of off, auto, on")
    if max_batch < 1:
        raise ValueError(f"max_batch {max_batch}: must be >= 1")
    if mode == "off":
        return {"status": "off"}
    bundle_dir = Path(bundle_dir)
    reason = trt_unavailable_reason()
    if reason is not None:
        if mode == "on":
            raise BackendUnavailableError(f"TensorRT was requested (trt=on) but is unavailable here: {reason} "
                                          f"({_INSTALL_HINT.format(bundle=bundle_dir)})")
        log(f"[skip] TensorRT: {reason} ({_INSTALL_HINT.format(bundle=bundle_dir)})")
        return {"status": "skipped", "reason": reason}

    import tensorrt as trt

    gpu, version = gpu_info(), trt.__version__
    onnx_files = {n: bundle_dir / io.onnx_file() for n, io in ENCODERS.items() if (bundle_dir / io.onnx_file()).is_file()}
    if not onnx_files:
        raise BundleError(bundle_dir, f"no encoder ONNX files ({', '.join(io.onnx_file() for io in ENCODERS.values())})")
    engines, failures = {}, {}
    for name, onnx_path in onnx_files.items():
        dst = bundle_dir / engine_name(name, gpu.sm, version)
        t0 = time.time()
        log(f"[trt] {name}: building {ENGINE_PRECISION} engine for {gpu.name} (sm_{gpu.sm}), "
            f"TensorRT {version}, batch 1..{max_batch} ...")
        try:
            size = _build_engine(trt, onnx_path, dst, bundle_dir / TIMING_CACHE, max_batch, workspace_gb, log, name)
        except Exception as e:
            failures[name] = f"{type(e).__name__}: {e}"
            log(f"[x] {name}: TensorRT build failed: {failures[name]}")
            continue
        engines[name] = dst.name
        log(f"[ok] {dst.name}: {size / 2**20:.1f} MiB ({time.time() - t0:.1f} s)")
    if failures and mode == "on":
        raise BackendUnavailableError("TensorRT engine build failed: "
                                      + "; ".join(f"{n}: {m}" for n, m in failures.items()))
    result = {"status": "built" if not failures else "failed", "engines": engines, "gpu": gpu.name,
              "sm": gpu.sm, "tensorrt": version, "precision": ENGINE_PRECISION, "max_batch": max_batch}
    if failures:
        result["failures"] = failures
    return result


def _build_engine(trt, onnx_path: Path, dst: Path, cache_path: Path, max_batch: int, workspace_gb: float,
                  log: Callable[[str], None], label: str) -> int:
    """Parse, build, write `dst` and the shared timing cache (both via tmp + rename). Returns engine bytes."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)              # TensorRT 10 networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):   # the path lets it find external weight files
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"{onnx_path.name}: ONNX parser: {errors}")
    if network.num_inputs != 1:
        raise RuntimeError(f"{onnx_path.name}: expected one input, found {network.num_inputs}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * 2**30))
    config.set_flag(trt.BuilderFlag.FP16)
    inp = network.get_input(0)
    sample = tuple(inp.shape)[1:]                    # one sample: static, checked by static_check
    if any(d < 0 for d in sample):
        raise RuntimeError(f"{onnx_path.name}: input {inp.name} has dynamic non-batch axes {tuple(inp.shape)}")
    profile = builder.create_optimization_profile()
    profile.set_shape(inp.name, (1, *sample), (1, *sample), (max_batch, *sample))   # min, opt, max
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(cache_path.read_bytes() if cache_path.is_file() else b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        log(f"[trt] {TIMING_CACHE}: from another GPU or TensorRT version, starting a new one")
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)
    monitor = _progress_monitor(trt, log, label)     # must outlive the build
    if monitor is not None:
        config.progress_monitor = monitor

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"{onnx_path.name}: build_serialized_network returned nothing (see TensorRT log)")
    data = memoryview(serialized)
    atomic_write(dst, bytes(data))
    atomic_write(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    return data.nbytes


def _progress_monitor(trt, log: Callable[[str], None], label: str):
    """One log line per top-level builder phase (TensorRT 10's IProgressMonitor), None where absent."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class _Progress(base):
        def __init__(self):
            base.__init__(self)
            self.started: dict[str, float] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            if parent_phase is None:
                self.started[phase_name] = time.time()
                log(f"[trt] {label}: {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name, step):
            return True                              # False would cancel the build

        def phase_finish(self, phase_name):
            t0 = self.started.pop(phase_name, None)
            if t0 is not None:
                log(f"[trt] {label}: {phase_name} done ({time.time() - t0:.1f} s)")

    return _Progress()
