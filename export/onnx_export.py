"""Encoders -> ONNX, one declarative description per component (as optimum's exporters do).

Each encoder graph holds its tower, its projector(s) and a copy of the shared mm_projector, so the runtime
gets LLM-ready rows from one session call. Only the batch axis is dynamic.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gem_runtime.manifest import ECG_ENCODER, IMAGE_ENCODER, EncoderIO, EncoderParity
from gem_train.config import GemConfig
from gem_train.model import GemForCausalLM

OPSET = 18
EXTERNAL_DATA_BYTES = 2 * 2**30 - 2**20      # protobuf's 2 GB limit, minus headroom


@dataclass(frozen=True)
class EncoderExport:
    io: EncoderIO                               # file stem and tensor names, from the bundle contract
    method: str                                 # GemForCausalLM method the graph computes
    input_shape: Callable[[GemConfig], tuple]   # one sample, without the batch axis
    rows: Callable[[GemConfig], int]            # LLM rows per sample
    min_cosine: float = 0.9999
    example: Callable[[GemConfig, int, int], np.ndarray] | None = None

    @property
    def name(self) -> str:
        return self.io.name

    @property
    def input_name(self) -> str:
        return self.io.input

    @property
    def output_name(self) -> str:
        return self.io.output


def example_ecg(c: GemConfig, batch: int, seed: int) -> np.ndarray:
    """ECG-like input in mV: a 1.2 Hz spiky rhythm per lead plus noise (not a blank tensor)."""
    rng = np.random.default_rng(seed)
    t = np.arange(c.ecg_samples) / 500.0
    beat = np.exp(-((t % 0.8) - 0.3) ** 2 / 0.0004)
    gains = rng.uniform(-1.5, 1.5, (batch, c.ecg_leads, 1))
    return (gains * beat + 0.05 * rng.standard_normal((batch, c.ecg_leads, c.ecg_samples))).astype(np.float32)


def example_image(c: GemConfig, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.8, 2.1, (batch, 3, c.vision_image_size, c.vision_image_size)).astype(np.float32)


ENCODERS: dict[str, EncoderExport] = {
    ECG_ENCODER.name: EncoderExport(
        ECG_ENCODER, "encode_ecgs",
        input_shape=lambda c: (c.ecg_leads, c.ecg_samples), rows=lambda c: c.ecg_tokens, example=example_ecg),
    IMAGE_ENCODER.name: EncoderExport(
        IMAGE_ENCODER, "encode_images",
        input_shape=lambda c: (3, c.vision_image_size, c.vision_image_size), rows=lambda c: c.image_tokens,
        example=example_image),
}


class _Graph(torch.nn.Module):
    def __init__(self, model: GemForCausalLM, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x):
        return getattr(self.model, self.method)(x)


def export_encoder(model: GemForCausalLM, spec: EncoderExport, out: Path) -> dict:
    """torch.onnx.export(dynamo=True) with a batch-2 example (batch 1 would be specialized to a constant),
    checked with onnx.checker; external data when the weights pass 2 GB."""
    import onnx

    c = model.config
    x = torch.from_numpy(spec.example(c, 2, 0))
    t0 = time.time()
    batch = torch.export.Dim("batch", min=1, max=64)
    prog = torch.onnx.export(_Graph(model, spec.method).eval(), (x,), dynamo=True, opset_version=OPSET,
                             input_names=[spec.input_name], output_names=[spec.output_name],
                             dynamic_shapes=({0: batch},), optimize=True, verbose=False)
    external = _graph_bytes(prog) > EXTERNAL_DATA_BYTES
    tmp = out.with_suffix(".onnx.tmp")
    prog.save(str(tmp), external_data=external)
    if external:
        data_src = Path(str(tmp) + ".data")
        if data_src.exists():
            data_src.replace(out.with_suffix(".onnx.data"))
            _rename_external_location(tmp, data_src.name, out.with_suffix(".onnx.data").name)
    tmp.replace(out)
    onnx.checker.check_model(str(out))
    return {"file": out.name, "export_s": round(time.time() - t0, 2), "opset": OPSET, "external_data": external,
            "input": [spec.input_name, ["batch", *spec.input_shape(c)]],
            "output": [spec.output_name, ["batch", spec.rows(c), c.hidden_size]]}


def export_fp16(src: Path, dst: Path) -> dict:
    """The fp16 variant for GPUs (CUDA EP; TensorRT builds its fp16 engines from the fp32 graph): weights and
    compute in fp16, inputs and outputs kept fp32 so the runtime feeds both variants the same arrays."""
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    tmp = dst.with_suffix(".onnx.tmp")
    onnx.save(model, str(tmp), save_as_external_data=model.ByteSize() > EXTERNAL_DATA_BYTES,
              location=dst.name + ".data")
    tmp.replace(dst)
    onnx.checker.check_model(str(dst))
    return {"file": dst.name}


def export_int8(src: Path, dst: Path) -> dict:
    """The int8 variant for CPUs: MatMul/Gemm weights int8 per output channel, activations quantized per batch
    at run time (ONNX Runtime dynamic quantization: its VNNI / AMX kernels where the CPU has them). Inputs
    and outputs stay fp32."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import logging

    tmp = dst.with_name(dst.name + ".tmp.onnx")
    data = dst.name + ".data"
    logging.getLogger().setLevel(logging.ERROR)     # its advice to run shape pre-processing, on every call
    quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Gemm"], use_external_data_format=True)
    # quantize_dynamic names the weights file after the temporary graph: rename it to the final one
    written = tmp.with_name(tmp.name + ".data")
    if written.exists():
        written.replace(dst.with_name(data))
        _rename_external_location(tmp, written.name, data)
    tmp.replace(dst)
    return {"file": dst.name}


def _graph_bytes(prog) -> int:
    return sum(int(np.prod(v.shape)) * 4 for v in prog.model.graph.initializers.values() if v.shape is not None)


def _rename_external_location(onnx_path: Path, old: str, new: str) -> None:
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location" and e.value == old:
                e.value = new
    onnx.save(m, str(onnx_path))


def validate_encoder(model: GemForCausalLM, spec: EncoderExport, onnx_path: Path, threads: int = 2,
                     min_cosine: float | None = None) -> EncoderParity:
    """ONNX Runtime beside torch on batches 1 and 3 (not the export example): max |diff| and cosine."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    worst_cos, worst_diff, shapes = 1.0, 0.0, []
    for batch, seed in ((1, 11), (3, 12)):
        x = spec.example(model.config, batch, seed)
        with torch.inference_mode():
            want = getattr(model, spec.method)(torch.from_numpy(x)).float().numpy()
        got = sess.run([spec.output_name], {spec.input_name: x})[0]
        if got.shape != want.shape:
            return EncoderParity(ok=False, problem=f"shape {got.shape} != torch {want.shape}")
        shapes.append(list(got.shape))
        worst_diff = max(worst_diff, float(np.abs(got - want).max()))
        worst_cos = min(worst_cos, cosine(got, want))
    min_cosine = spec.min_cosine if min_cosine is None else min_cosine
    ok = worst_cos >= min_cosine
    return EncoderParity(ok=ok, max_abs_diff=worst_diff, cosine=worst_cos, min_cosine=min_cosine, shapes=shapes,
                         problem=None if ok else f"cosine {worst_cos:.7f} < {min_cosine}")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1).astype(np.float64), b.reshape(-1).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))
