"""Issue 28's image target, one more lever measured: the attention's two activation x activation matmuls in int8.

The int8 image graph (`gem_export.onnx_export.export_int8`) quantizes the 140 weight matmuls; each layer's
scores (Q K^T) and values (P V) stay fp32 (peer.md: 25% of the time). ORT's u8 x u8 batched matmul was no faster
than fp32 there; this rewrite feeds its u8 x s8 kernel instead (the one `vpdpbusd` runs): Q and P quantized u8 per
tensor at run time (DynamicQuantizeLinear), K and V s8 symmetric per tensor (max |x| / 127), each product through
com.microsoft MatMulIntegerToFloat, the softmax scale folded into K's scale. CLIP-L/336 of a random GEM-7B-shape
model (1 LLM layer: the image graph does not use it), pydicom's ECG rendered as GEM sees it, interleaved rounds.

    python benchmarks/results/int8-attention/run.py work/attn > benchmarks/results/int8-attention/log.txt
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper


def make_graphs(out: Path) -> None:
    import torch

    from gem_export.onnx_export import ENCODERS, export_encoder, export_int8
    from gem_runtime.manifest import IMAGE_ENCODER
    from gem_train.config import GemConfig
    from gem_train.model import GemForCausalLM

    torch.manual_seed(0)
    model = GemForCausalLM(GemConfig.from_name("gem-7b", num_hidden_layers=1)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    export_encoder(model, ENCODERS[IMAGE_ENCODER.name], out / "image_fp32.onnx")
    export_int8(out / "image_fp32.onnx", out / "image_int8.onnx")


def int8_attention(src: Path, dst: Path) -> int:
    """Each Softmax's producer chain MatMul(Q, K^T) -> Mul(scale) and its consumer MatMul(P, V), rewritten."""
    m = onnx.load(str(src), load_external_data=False)
    g = m.graph
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    g.initializer.extend([numpy_helper.from_array(np.array(127.0, np.float32), "attn8_127"),
                          numpy_helper.from_array(np.array(0, np.int8), "attn8_zero")])

    def s8(x: str, p: str):
        return [helper.make_node("Abs", [x], [p + "abs"]),
                helper.make_node("ReduceMax", [p + "abs"], [p + "max"], keepdims=0),
                helper.make_node("Div", [p + "max", "attn8_127"], [p + "scale"]),
                helper.make_node("QuantizeLinear", [x, p + "scale", "attn8_zero"], [p + "q"])], p + "q", p + "scale"

    replace: dict[str, list] = {}
    for k, softmax in enumerate(n for n in g.node if n.op_type == "Softmax"):
        mul = producer[softmax.input[0]]
        qk = producer[mul.input[0]]
        pv = consumers[softmax.output[0]][0]
        assert (mul.op_type, qk.op_type, pv.op_type) == ("Mul", "MatMul", "MatMul"), "not CLIP's attention"
        p = f"attn8_{k}_"
        k_nodes, k_q, k_scale = s8(qk.input[1], p + "k_")
        v_nodes, v_q, v_scale = s8(pv.input[1], p + "v_")
        replace[qk.name] = []
        replace[mul.name] = [
            helper.make_node("DynamicQuantizeLinear", [qk.input[0]], [p + "q", p + "q_scale", p + "q_zero"]),
            *k_nodes, helper.make_node("Mul", [k_scale, mul.input[1]], [p + "k_scaled"]),
            helper.make_node("MatMulIntegerToFloat", [p + "q", k_q, p + "q_scale", p + "k_scaled", p + "q_zero",
                                                      "attn8_zero"], [mul.output[0]], domain="com.microsoft")]
        replace[pv.name] = [
            helper.make_node("DynamicQuantizeLinear", [softmax.output[0]], [p + "p", p + "p_scale", p + "p_zero"]),
            *v_nodes,
            helper.make_node("MatMulIntegerToFloat", [p + "p", v_q, p + "p_scale", v_scale, p + "p_zero",
                                                      "attn8_zero"], [pv.output[0]], domain="com.microsoft")]
    nodes = [new for n in g.node for new in replace.get(n.name, [n])]
    del g.node[:]
    g.node.extend(nodes)
    if not any(o.domain == "com.microsoft" for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(m, str(dst))          # beside src: the same external weights file
    return len(replace) // 3


def rendered_ecg() -> np.ndarray:
    from pydicom.data import get_testdata_file

    from gem_runtime.image import preprocess_image
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers.dispatch import read_ecg
    from gem_runtime.render import render_ecg_image

    signal = preprocess_ecg(read_ecg(get_testdata_file("waveform_ecg.dcm")))[0]
    return preprocess_image(render_ecg_image(signal), 336)[None]


def compare(files: list[Path], threads: int, rounds: int, x: np.ndarray) -> None:
    from gem_runtime.encoders import OrtEncoder
    from gem_runtime.manifest import IMAGE_ENCODER

    encoders = {f.name: OrtEncoder(IMAGE_ENCODER, f, "cpu", threads) for f in files}
    outs = {name: e.run(x).ravel().astype(np.float64) for name, e in encoders.items()}
    ref = outs[files[0].name]
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(rounds):
        for name, e in encoders.items():
            t0 = time.perf_counter()
            e.run(x)
            times[name].append(1000 * (time.perf_counter() - t0))
    base = statistics.median(times[files[1].name])
    for name, t in times.items():
        cos = float(ref @ outs[name] / np.linalg.norm(ref) / np.linalg.norm(outs[name]))
        print(f"{threads} thread(s) {name:28s} median {statistics.median(t):7.1f} ms  "
              f"({base / statistics.median(t):.2f}x image_int8)  cosine vs fp32 {cos:.6f}  "
              f"all {[round(v) for v in t]}", flush=True)
    for e in encoders.values():
        e.close()


if __name__ == "__main__":
    work = Path(sys.argv[1])
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "image_int8.onnx").exists():
        make_graphs(work)
    print("rewritten attention layers:", int8_attention(work / "image_int8.onnx", work / "image_int8_attn8.onnx"))
    files = [work / "image_fp32.onnx", work / "image_int8.onnx", work / "image_int8_attn8.onnx"]
    x = rendered_ecg()
    for threads in (1, 2):
        compare(files, threads, 7, x)
