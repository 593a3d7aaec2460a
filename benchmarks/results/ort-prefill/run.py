"""Issue 28's end-to-end target, the lever that is left: the prompt's prefill on ONNX Runtime's int8 kernels.

peer.md: at 32 layers the LLM is ~95% of a request on both sides, and both prefill with the same llama.cpp matmuls
on the same Q4_K_M file. ORT's u8 x s8 GEMM (`vpdpbusd` on VNNI) ran one LLaMA-7B layer's weight matmuls at 657
rows at 726 GOP/s on 2 Zen 4 threads; llama.cpp's Q4_K_M prefill runs ~430. This prototype measures what that is
worth end to end, and whether the hand-over is exact:

- every layer of the GGUF is dequantized (gguf-py) and requantized s8 per output channel into one ORT graph per
  layer (RMSNorm, fused QKV, llama.cpp's NORM RoPE, causal fp32 attention, fused gate/up, SiLU, down); the
  activations are quantized u8 at run time, with one scale per position (`--activations rows`) or one for the
  whole prompt (`tensor`, ORT's DynamicQuantizeMatMul);
- GEM's prompt (41 text ids, 576 image rows, 40 text ids; the rows random at the scale of token embeddings, the
  ids' rows from token_embd) runs through them; K (after RoPE) and V go into llama.cpp's sequence-state format
  (llama_kv_cache::state_write of the vendored llama.cpp) and llama_state_seq_set_data;
- llama.cpp decodes greedily from there (`LlamaLLM`, repacking off as tune keeps it on this CPU).

Against llama.cpp's own prefill of the same prompt (`LlamaLLM.prefill`, repacking off), interleaved rounds: the
prefill times, the hand-over, each layer's K and V against llama.cpp's (cosine), the first token's logits
(cosine, top-1) and how many of the greedy tokens agree, and both engines' K against the same layers with the
GGUF's weights in fp32. Random weights: the text means nothing, the agreement of logits and KV does. Results and
verdict: peer.md, "Prefill on ONNX Runtime's int8 kernels". (log.txt was made at commit fa91448, and
log-per-tensor.txt by the version before it, which had only the per-prompt scale; both handed ORT's logits to
`LlamaLLM.generate` through its private fields, where the same greedy loop now goes through public calls.)

    D=benchmarks/results/ort-prefill B=work/footprint/gem7b-L32/llm-q4_k_m.gguf
    python $D/run.py $B --rounds 2 > $D/log.txt
    python $D/run.py $B --rounds 2 --activations tensor > $D/log-per-tensor.txt
"""
from __future__ import annotations

import argparse
import statistics
import struct
import time

import gguf
import numpy as np
import onnxruntime as ort
from gguf.quants import dequantize
from onnx import TensorProto, helper, numpy_helper

from gem_runtime.llm import LlamaLLM, LlmTimings

F16 = 1                                            # ggml_type GGML_TYPE_F16
SEQ_MAGIC = 0xAF143CD8                              # llama_context's io_magic, then the seq id


def field(reader: gguf.GGUFReader, key: str):
    f = reader.fields[key]
    return f.parts[f.data[0]][0]


def weight(tensors: dict, name: str) -> np.ndarray:
    t = tensors[name]
    return dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)   # (n_out, n_in)


def s8_columns(w: np.ndarray, name: str) -> list:
    """(n_out, n_in) fp32 -> B (n_in, n_out) s8 with one scale per output column, DynamicQuantizeMatMul's layout."""
    scale = np.maximum(np.abs(w).max(1), 1e-12) / 127
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8).T.copy()
    return [numpy_helper.from_array(q, name + "_w"), numpy_helper.from_array(scale.astype(np.float32), name + "_s"),
            numpy_helper.from_array(np.zeros(w.shape[0], np.int8), name + "_z")]


def fp32_columns(w: np.ndarray, name: str) -> list:
    return [numpy_helper.from_array(np.ascontiguousarray(w.T), name + "_w")]


def layer_graph(tensors: dict, i: int, n_head: int, eps: float, int8: str = "rows") -> bytes:
    """The weight matmuls' activations quantized u8 "tensor" (DynamicQuantizeMatMul: one scale and zero point for
    the whole prompt) or "rows" (symmetric, one scale per position, zero point 128, through MatMulIntegerToFloat
    and a Mul by the row scales); "" runs fp32 MatMul (the reference the two engines are compared with)."""
    p = f"blk.{i}."
    d = int(tensors[p + "attn_q.weight"].shape[0])
    hd = d // n_head
    qkv = np.concatenate([weight(tensors, p + f"attn_{x}.weight") for x in "qkv"])
    up = np.concatenate([weight(tensors, p + "ffn_gate.weight"), weight(tensors, p + "ffn_up.weight")])
    cols = s8_columns if int8 else fp32_columns
    inits = [*cols(qkv, "qkv"), *cols(weight(tensors, p + "attn_output.weight"), "o"),
             *cols(up, "gu"), *cols(weight(tensors, p + "ffn_down.weight"), "down"),
             numpy_helper.from_array(weight(tensors, p + "attn_norm.weight"), "n1"),
             numpy_helper.from_array(weight(tensors, p + "ffn_norm.weight"), "n2"),
             numpy_helper.from_array(np.array(eps, np.float32), "eps"),
             numpy_helper.from_array(np.array(1 / np.sqrt(hd), np.float32), "kq_scale"),
             numpy_helper.from_array(np.array([0, n_head, hd // 2, 2], np.int64), "pairs"),
             numpy_helper.from_array(np.array([0, n_head, hd], np.int64), "heads"),
             numpy_helper.from_array(np.array([0, d], np.int64), "rows"),
             numpy_helper.from_array(np.array([d, d, d], np.int64), "qkv_split"),
             numpy_helper.from_array(np.array([up.shape[0] // 2] * 2, np.int64), "gu_split"),
             numpy_helper.from_array(np.array([1, 1], np.int64), "halves"),
             numpy_helper.from_array(np.array(1e-12, np.float32), "tiny"),
             numpy_helper.from_array(np.array(127, np.float32), "s127"),
             numpy_helper.from_array(np.array(128, np.float32), "f128"),
             numpy_helper.from_array(np.array(1, np.float32), "one"),
             numpy_helper.from_array(np.array(128, np.uint8), "u128")]
    N = helper.make_node

    def rms(x, w, o):
        return [N("Mul", [x, x], [o + "sq"]), N("ReduceMean", [o + "sq"], [o + "ms"], axes=[-1]),
                N("Add", [o + "ms", "eps"], [o + "mse"]), N("Sqrt", [o + "mse"], [o + "rt"]),
                N("Div", [x, o + "rt"], [o + "n"]), N("Mul", [o + "n", w], [o])]

    def dq(x, w, o):
        if not int8:
            return [N("MatMul", [x, w + "_w"], [o])]
        if int8 == "tensor":
            return [N("DynamicQuantizeMatMul", [x, w + "_w", w + "_s", w + "_z"], [o], domain="com.microsoft")]
        return [N("Abs", [x], [o + "abs"]), N("ReduceMax", [o + "abs"], [o + "max"], axes=[-1], keepdims=1),
                N("Max", [o + "max", "tiny"], [o + "maxt"]), N("Div", [o + "maxt", "s127"], [o + "rs"]),
                N("Div", [x, o + "rs"], [o + "xs"]), N("Round", [o + "xs"], [o + "xr"]),
                N("Add", [o + "xr", "f128"], [o + "xu"]), N("Cast", [o + "xu"], [o + "xq"], to=TensorProto.UINT8),
                N("MatMulIntegerToFloat", [o + "xq", w + "_w", "one", w + "_s", "u128", w + "_z"], [o + "y"],
                  domain="com.microsoft"),
                N("Mul", [o + "y", o + "rs"], [o])]

    def rope(x, o):                                   # llama.cpp's NORM mode: adjacent pairs (x[2i], x[2i+1])
        return [N("Reshape", [x, "pairs"], [o + "p"]), N("Split", [o + "p", "halves"], [o + "a", o + "b"], axis=-1),
                N("Mul", [o + "a", "cos"], [o + "ac"]), N("Mul", [o + "b", "sin"], [o + "bs"]),
                N("Sub", [o + "ac", o + "bs"], [o + "x0"]),
                N("Mul", [o + "a", "sin"], [o + "as"]), N("Mul", [o + "b", "cos"], [o + "bc"]),
                N("Add", [o + "as", o + "bc"], [o + "x1"]),
                N("Concat", [o + "x0", o + "x1"], [o + "r"], axis=-1), N("Reshape", [o + "r", "rows"], [o])]

    nodes = [*rms("h", "n1", "x1"), *dq("x1", "qkv", "qkv_y"),
             N("Split", ["qkv_y", "qkv_split"], ["q", "k", "v"], axis=-1),
             *rope("q", "qr"), *rope("k", "k_out"), N("Identity", ["v"], ["v_out"]),
             N("Reshape", ["qr", "heads"], ["qh"]), N("Transpose", ["qh"], ["qt"], perm=[1, 0, 2]),
             N("Reshape", ["k_out", "heads"], ["kh"]), N("Transpose", ["kh"], ["kt"], perm=[1, 2, 0]),
             N("Reshape", ["v", "heads"], ["vh"]), N("Transpose", ["vh"], ["vt"], perm=[1, 0, 2]),
             N("MatMul", ["qt", "kt"], ["kq"]), N("Mul", ["kq", "kq_scale"], ["kqs"]),
             N("Add", ["kqs", "mask"], ["kqm"]), N("Softmax", ["kqm"], ["pr"], axis=-1),
             N("MatMul", ["pr", "vt"], ["att"]), N("Transpose", ["att"], ["att_t"], perm=[1, 0, 2]),
             N("Reshape", ["att_t", "rows"], ["att_r"]), *dq("att_r", "o", "o_y"), N("Add", ["h", "o_y"], ["h2"]),
             *rms("h2", "n2", "x2"), *dq("x2", "gu", "gu_y"), N("Split", ["gu_y", "gu_split"], ["g", "u"], axis=-1),
             N("Sigmoid", ["g"], ["gs"]), N("Mul", ["g", "gs"], ["silu"]), N("Mul", ["silu", "u"], ["gated"]),
             *dq("gated", "down", "down_y"), N("Add", ["h2", "down_y"], ["h_out"])]
    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, f"layer{i}",
        [helper.make_tensor_value_info("h", f32, ["T", d]), helper.make_tensor_value_info("mask", f32, ["T", "T"]),
         helper.make_tensor_value_info("cos", f32, ["T", 1, hd // 2, 1]),
         helper.make_tensor_value_info("sin", f32, ["T", 1, hd // 2, 1])],
        [helper.make_tensor_value_info(o, f32, ["T", d]) for o in ("h_out", "k_out", "v_out")], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.microsoft", 1)])
    return model.SerializeToString()


class OrtPrefill:
    """The GGUF's layers on ORT int8: prompt rows in, every layer's K and V and the last row's logits out."""

    def __init__(self, path: str, threads: int, activations: str = "rows"):
        reader = gguf.GGUFReader(path)
        tensors = {t.name: t for t in reader.tensors}
        self.n_layer = int(field(reader, "llama.block_count"))
        self.n_head = int(field(reader, "llama.attention.head_count"))
        self.eps = float(field(reader, "llama.attention.layer_norm_rms_epsilon"))
        self.base = float(field(reader, "llama.rope.freq_base"))
        self.embd = weight(tensors, "token_embd.weight")
        self.out_norm = weight(tensors, "output_norm.weight")
        self.output = weight(tensors, "output.weight")
        self.tensors, self.threads, self.activations = tensors, threads, activations
        self.layers = [self.session(i) for i in range(self.n_layer)]
        self.d = self.embd.shape[1]

    def session(self, i: int, int8: str | None = None) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.enable_cpu_mem_arena = False        # an arena per layer keeps its ~400 MB of attention scores: 12 GB
        so.log_severity_level = 3              # the fp32 graphs leave the int8 constants unused, and ORT says so
        return ort.InferenceSession(layer_graph(self.tensors, i, self.n_head, self.eps,
                                                self.activations if int8 is None else int8), so,
                                    providers=["CPUExecutionProvider"])

    def reference_k(self, x: np.ndarray) -> list[np.ndarray]:
        """Every layer's K after RoPE with fp32 weights (the GGUF's, dequantized), one layer in memory at a time."""
        h, ks = x, []
        for i in range(self.n_layer):
            h, k, _ = self.session(i, int8="").run(None, self.feeds(h))
            ks.append(k)
        return ks

    def feeds(self, h: np.ndarray) -> dict:
        t = h.shape[0]
        hd = self.d // self.n_head
        theta = np.arange(t, dtype=np.float64)[:, None] * self.base ** (-2 * np.arange(hd // 2) / hd)
        return {"h": h, "mask": np.triu(np.full((t, t), -np.inf, np.float32), 1),
                "cos": np.cos(theta).astype(np.float32).reshape(t, 1, hd // 2, 1),
                "sin": np.sin(theta).astype(np.float32).reshape(t, 1, hd // 2, 1)}

    def run(self, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        feeds = self.feeds(x)
        h, ks, vs = x, [], []
        for layer in self.layers:
            feeds["h"] = h
            h, k, v = layer.run(None, feeds)
            ks.append(k.astype(np.float16))
            vs.append(v.astype(np.float16))
        last = h[-1] / np.sqrt(np.mean(h[-1] ** 2) + self.eps) * self.out_norm
        return ks, vs, self.output @ last


def seq_state(ks: list[np.ndarray], vs: list[np.ndarray]) -> bytes:
    """One sequence's KV as llama_state_seq_get_data writes it: the magic and seq id, then
    llama_kv_cache::state_write's layout: one stream, cells 0..T-1 of seq 0, K rows then
    V rows (flash attention on: V not transposed), f16."""
    t, d = ks[0].shape
    out = [struct.pack("<IiII", SEQ_MAGIC, 0, 1, t)]
    out += [struct.pack("<iIi", pos, 1, 0) for pos in range(t)]
    out.append(struct.pack("<II", 0, len(ks)))
    for rows in (ks, vs):
        for r in rows:
            out += [struct.pack("<iQ", F16, 2 * d), r.tobytes()]
    return b"".join(out)


def parse_state(state: bytes, n_layer: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    magic, seq, n_stream, t = struct.unpack_from("<IiII", state)
    assert (magic, seq) == (SEQ_MAGIC, 0)
    off = 16 + 12 * t
    v_trans, layers = struct.unpack_from("<II", state, off)
    assert (n_stream, v_trans, layers) == (1, 0, n_layer), (n_stream, v_trans, layers)
    off += 8
    kv: list[list[np.ndarray]] = [[], []]
    for which in (0, 1):
        for _ in range(n_layer):
            typ, row = struct.unpack_from("<iQ", state, off)
            assert typ == F16
            off += 12
            kv[which].append(np.frombuffer(state, np.float16, t * row // 2, off).reshape(t, row // 2))
            off += t * row
    assert off == len(state)
    return kv[0], kv[1]


def greedy(llm: LlamaLLM, logits: np.ndarray, pos: int, n: int) -> list[int]:
    """n greedy tokens from the prompt's last logits (ORT's), each fed to llama.cpp at its position."""
    out = [int(np.argmax(logits))]
    while len(out) < n:
        pos = llm.eval_tokens(out[-1:], pos)
        out.append(int(np.argmax(llm.logits())))
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--activations", choices=("rows", "tensor"), default="rows",
                    help="the int8 activations' scales: one per position, or one for the whole prompt")
    a = ap.parse_args()
    print(open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t"), flush=True)
    t0 = time.perf_counter()
    llm = LlamaLLM(a.gguf, n_ctx=2048, n_threads=a.threads, repack=False)
    print(f"llama.cpp load {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    eng = OrtPrefill(a.gguf, a.threads, a.activations)
    print(f"ORT int8 layers built {time.perf_counter() - t0:.1f} s", flush=True)
    rng = np.random.default_rng(0)
    prefix = llm.tokenize("A chat between a curious human and an artificial intelligence assistant. " * 2)[:41]
    suffix = llm.tokenize("Interpret the provided ECG image and time series, and state the rhythm, rate.",
                          bos=False)[:40]
    rows = (rng.standard_normal((576, llm.n_embd)) * eng.embd[prefix].std()).astype(np.float32)
    x = np.concatenate([eng.embd[prefix], rows, eng.embd[suffix]])
    pos = x.shape[0]
    times: dict[str, list[float]] = {"llama.cpp prefill": [], "ORT prefill": [], "hand-over": [],
                                     "decode (after llama.cpp)": [], "decode (after ORT)": []}
    for r in range(a.rounds):
        tm = LlmTimings()
        t0 = time.perf_counter()
        llm.prefill(prefix, rows, suffix, tm, reuse_prefix=False)
        times["llama.cpp prefill"].append(time.perf_counter() - t0)
        ref_logits, ref_state = llm.logits(), llm.save_state()
        ref_tokens = llm.generate(pos, a.new_tokens, tm, ignore_eos=True)
        times["decode (after llama.cpp)"].append(tm.decode_ms / 1000)

        t0 = time.perf_counter()
        ks, vs, logits = eng.run(x)
        t1 = time.perf_counter()
        llm.restore_state(seq_state(ks, vs), [])
        t2 = time.perf_counter()
        times["ORT prefill"].append(t1 - t0)
        times["hand-over"].append(t2 - t1)
        tokens = greedy(llm, logits, pos, a.new_tokens)
        times["decode (after ORT)"].append(time.perf_counter() - t2)
        print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), flush=True)
        if r == 0:
            ref_k, ref_v = parse_state(ref_state, eng.n_layer)
            kc = [cosine(a_, b_) for a_, b_ in zip(ks, ref_k)]
            vc = [cosine(a_, b_) for a_, b_ in zip(vs, ref_v)]
            same = next((i for i, (u, w) in enumerate(zip(tokens, ref_tokens)) if u != w), len(tokens))
            print(f"K cosine to llama.cpp's per layer: min {min(kc):.5f} median {statistics.median(kc):.5f}; "
                  f"V: min {min(vc):.5f} median {statistics.median(vc):.5f}")
            ref = eng.reference_k(x)
            for name, got in (("llama.cpp", ref_k), ("ORT int8", ks)):
                c = [cosine(a_, b_) for a_, b_ in zip(got, ref)]
                print(f"K cosine of {name} to fp32 weights, layers 1, 2, 4, 8, 16, 32: "
                      + " ".join(f"{c[i - 1]:.5f}" for i in (1, 2, 4, 8, 16, 32) if i <= len(c)), flush=True)
            print(f"first token's logits: cosine {cosine(logits, ref_logits):.5f}, top-1 "
                  f"{int(np.argmax(logits))} vs {int(np.argmax(ref_logits))}; greedy tokens equal for the first "
                  f"{same} of {len(tokens)}", flush=True)
    for k, v in times.items():
        print(f"{k:26s} median {statistics.median(v):6.2f} s  all {[round(t, 2) for t in v]}")
    lp, op = statistics.median(times["llama.cpp prefill"]), statistics.median(times["ORT prefill"])
    ho = statistics.median(times["hand-over"])
    print(f"prefill: llama.cpp / (ORT + hand-over) = {lp / (op + ho):.2f}x")


if __name__ == "__main__":
    main()
