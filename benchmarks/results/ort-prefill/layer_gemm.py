"""One LLaMA-7B layer's seven weight matmuls at GEM's prompt length (657 rows) on ORT, random weights: int8
(DynamicQuantizeMatMul, s8 per channel) and 4-bit (MatMulNBits, block 32, accuracy_level 4 = int8 compute). The
rate that made `run.py` worth trying (peer.md, "Prefill on ONNX Runtime's int8 kernels").

    python benchmarks/results/ort-prefill/layer_gemm.py > benchmarks/results/ort-prefill/layer_gemm.log
"""
import time, statistics
import numpy as np, onnxruntime as ort
from onnx import helper, TensorProto, numpy_helper
M, D, F = 657, 4096, 11008
rng = np.random.default_rng(0)
shapes = {"q": (D, D), "k": (D, D), "v": (D, D), "o": (D, D), "gate": (D, F), "up": (D, F), "down": (F, D)}

def int8_graph():
    inits, nodes = [], []
    for name, (k, n) in shapes.items():
        w = rng.standard_normal((k, n), dtype=np.float32) * 0.02
        s = np.abs(w).max(0) / 127
        inits += [numpy_helper.from_array(np.round(w / s).astype(np.int8), name + "_w"),
                  numpy_helper.from_array(s.astype(np.float32), name + "_s"),
                  numpy_helper.from_array(np.zeros(n, np.int8), name + "_z")]
        src = "h" if name == "down" else "x"
        nodes.append(helper.make_node("DynamicQuantizeMatMul", [src, name + "_w", name + "_s", name + "_z"], [name + "_y"], domain="com.microsoft"))
    nodes.append(helper.make_node("Mul", ["gate_y", "up_y"], ["h"]))
    return graph(nodes, inits, "int8")

def nbits_graph():
    inits, nodes = [], []
    for name, (k, n) in shapes.items():
        blocks = k // 32
        q = rng.integers(0, 256, (n, blocks, 16), dtype=np.uint8)
        s = (rng.random((n, blocks), dtype=np.float32) * 0.002).astype(np.float32)
        inits += [numpy_helper.from_array(q, name + "_w"), numpy_helper.from_array(s.ravel(), name + "_s")]
        src = "h" if name == "down" else "x"
        nodes.append(helper.make_node("MatMulNBits", [src, name + "_w", name + "_s"], [name + "_y"], domain="com.microsoft",
                                      K=k, N=n, bits=4, block_size=32, accuracy_level=4))
    nodes.append(helper.make_node("Mul", ["gate_y", "up_y"], ["h"]))
    return graph(nodes, inits, "nbits")

def graph(nodes, inits, name):
    outs = [helper.make_tensor_value_info(n + "_y", TensorProto.FLOAT, None) for n in shapes]
    g = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [M, D])], outs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    return m.SerializeToString()

x = rng.standard_normal((M, D), dtype=np.float32)
gop = 2 * M * sum(k * n for k, n in shapes.values()) / 1e9
for threads in (1, 2):
    for name, make in (("int8", int8_graph), ("q4 MatMulNBits acc4", nbits_graph)):
        so = ort.SessionOptions(); so.intra_op_num_threads = threads
        s = ort.InferenceSession(make(), so, providers=["CPUExecutionProvider"])
        s.run(None, {"x": x})
        t = []
        for _ in range(5):
            t0 = time.perf_counter(); s.run(None, {"x": x}); t.append(time.perf_counter() - t0)
        med = statistics.median(t)
        print(f"{threads}t {name:22s} {1000*med:7.1f} ms/layer  {gop/med:6.0f} GOP/s  x32 layers {32*med:5.1f} s", flush=True)
