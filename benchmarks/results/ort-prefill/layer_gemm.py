"""One LLaMA-7B layer's seven weight matmuls at GEM's prompt length (657 rows) on ORT, random weights: int8
(DynamicQuantizeMatMul, s8 per channel) and 4-bit (MatMulNBits, block 32, accuracy_level 4 = int8 compute). The
rate that made `run.py` worth trying (peer.md, "Prefill on ONNX Runtime's int8 kernels").

    python benchmarks/results/ort-prefill/layer_gemm.py > benchmarks/results/ort-prefill/layer_gemm.log
"""
from __future__ import annotations

import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from run import s8_columns

M, D, F = 657, 4096, 11008
SHAPES = {"q": (D, D), "k": (D, D), "v": (D, D), "o": (D, D), "gate": (D, F), "up": (D, F), "down": (F, D)}
rng = np.random.default_rng(0)


def matmul(name: str, k: int, n: int, four_bit: bool) -> tuple[list, object]:
    """The initializers and the node of one weight matmul: x (or h, the gated product, for down) times (k, n)."""
    src = "h" if name == "down" else "x"
    if not four_bit:
        w = rng.standard_normal((n, k), dtype=np.float32) * 0.02
        return s8_columns(w, name), helper.make_node(
            "DynamicQuantizeMatMul", [src, name + "_w", name + "_s", name + "_z"], [name + "_y"],
            domain="com.microsoft")
    blocks = k // 32
    q = rng.integers(0, 256, (n, blocks, 16), dtype=np.uint8)
    s = rng.random((n, blocks), dtype=np.float32) * 0.002
    inits = [numpy_helper.from_array(q, name + "_w"), numpy_helper.from_array(s.ravel(), name + "_s")]
    return inits, helper.make_node("MatMulNBits", [src, name + "_w", name + "_s"], [name + "_y"],
                                   domain="com.microsoft", K=k, N=n, bits=4, block_size=32, accuracy_level=4)


def layer(four_bit: bool) -> bytes:
    inits, nodes = [], []
    for name, (k, n) in SHAPES.items():
        i, node = matmul(name, k, n, four_bit)
        inits += i
        nodes.append(node)
    nodes.append(helper.make_node("Mul", ["gate_y", "up_y"], ["h"]))
    outs = [helper.make_tensor_value_info(n + "_y", TensorProto.FLOAT, None) for n in SHAPES]
    g = helper.make_graph(nodes, "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, D])], outs,
                          inits)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(g, opset_imports=opsets).SerializeToString()


def main() -> None:
    x = rng.standard_normal((M, D), dtype=np.float32)
    gop = 2 * M * sum(k * n for k, n in SHAPES.values()) / 1e9
    for threads in (1, 2):
        for name, four_bit in (("int8", False), ("q4 MatMulNBits acc4", True)):
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            s = ort.InferenceSession(layer(four_bit), so, providers=["CPUExecutionProvider"])
            s.run(None, {"x": x})
            t = []
            for _ in range(5):
                t0 = time.perf_counter()
                s.run(None, {"x": x})
                t.append(time.perf_counter() - t0)
            med = statistics.median(t)
            print(f"{threads}t {name:22s} {1000 * med:7.1f} ms/layer  {gop / med:6.0f} GOP/s  "
                  f"x32 layers {32 * med:5.1f} s", flush=True)


if __name__ == "__main__":
    main()
