"""TensorRT support: the static ONNX check (runs anywhere), engine naming, build_engines without TensorRT,
and, on a GPU with TensorRT, an fp16 engine compared with ONNX Runtime."""
import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from gem_export.trt import build_engines, static_check, trt_unavailable_reason  # noqa: E402
from gem_runtime.errors import BackendUnavailableError  # noqa: E402
from gem_runtime.trt_engine import (engine_file_for, engine_mismatch_reason, engine_name,  # noqa: E402
                                    engines_in, parse_engine_name)

LEADS, SAMPLES = 12, 500


# ------------------------------------------------------------------------------------ tiny encoder
def _tiny_encoder():
    """The op mix of our encoders: Conv1d patches, CLS concat, LayerNorm, attention (MatMul, Softmax),
    erf-GELU MLP, QuickGELU (Sigmoid)."""
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self, width=16):
            super().__init__()
            self.conv = nn.Conv1d(LEADS, width, kernel_size=50, stride=50, bias=False)   # 500 -> 10 patches
            self.cls = nn.Parameter(torch.randn(width) * 0.1)
            self.ln = nn.LayerNorm(width)
            self.qkv = nn.Linear(width, 3 * width)
            self.fc1, self.fc2 = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)
            self.gelu = nn.GELU()

        def forward(self, ecg):                                       # (B, 12, 500)
            x = self.conv(ecg).transpose(1, 2)                        # (B, 10, W)
            x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], dim=1)   # (B, 11, W)
            q, k, v = self.qkv(self.ln(x)).chunk(3, dim=-1)
            att = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
            x = x + att @ v
            y = self.fc1(x)
            y = y * torch.sigmoid(1.702 * y)                          # QuickGELU
            return x + self.fc2(self.gelu(y))                         # (B, 11, W)

    torch.manual_seed(0)
    return Tiny().eval()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxscript")
    path = tmp_path_factory.mktemp("trt") / "ecg_encoder.onnx"
    x = torch.from_numpy(_ecg(2))
    batch = torch.export.Dim("batch", min=1, max=64)
    prog = torch.onnx.export(_tiny_encoder(), (x,), dynamo=True, opset_version=18, input_names=["ecg"],
                             output_names=["ecg_embeds"], dynamic_shapes=({0: batch},), optimize=True,
                             verbose=False)
    prog.save(str(path))
    return path


def _ecg(batch, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, LEADS, SAMPLES)).astype(np.float32)


def test_static_check_passes_on_exported_encoder(tiny_onnx):
    r = static_check(tiny_onnx)
    assert r["ok"], r["problems"]
    assert set(r) == {"ok", "opset", "ops", "unsupported", "dynamic_axes", "problems"}
    assert r["opset"] == 18
    assert {"Conv", "LayerNormalization", "MatMul", "Softmax", "Erf", "Sigmoid", "Concat"} <= set(r["ops"])
    assert r["ops"] == sorted(r["ops"])
    assert r["dynamic_axes"] == [{"input": "ecg", "axis": 0, "dim": r["dynamic_axes"][0]["dim"]}]
    assert r["unsupported"] == [] and r["problems"] == []


# ------------------------------------------------------------------------------- hand-built graphs
def _save(tmp_path, nodes, inputs, outputs, opset=18, initializers=(), functions=(), name="g.onnx"):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(f.domain, 1) for f in functions]
    model = helper.make_model(graph, opset_imports=imports, functions=list(functions))
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _vi(name, dims, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, dims)


def test_made_up_op_fails_and_is_named(tmp_path):
    p = _save(tmp_path, [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("FancyWarp", ["h"], ["y"])],
              [_vi("x", ["batch", 8])], [_vi("y", ["batch", 8])])
    r = static_check(p)
    assert not r["ok"]
    assert r["unsupported"] == ["FancyWarp"]
    assert any("FancyWarp" in line for line in r["problems"])


def test_string_normalizer_fails_on_op_and_dtype(tmp_path):
    p = _save(tmp_path, [helper.make_node("StringNormalizer", ["s"], ["t"], case_change_action="LOWER")],
              [_vi("s", [4], TensorProto.STRING)], [_vi("t", [4], TensorProto.STRING)])
    r = static_check(p)
    assert not r["ok"]
    assert r["unsupported"] == ["StringNormalizer"]
    assert any("STRING" in line for line in r["problems"])


def test_dynamic_non_batch_axis_fails(tmp_path):
    p = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["batch", "time", 8])],
              [_vi("y", ["batch", "time", 8])])
    r = static_check(p)
    assert not r["ok"] and r["unsupported"] == []
    assert [d["axis"] for d in r["dynamic_axes"]] == [0, 1]
    assert len(r["problems"]) == 1 and "axis 1" in r["problems"][0] and "time" in r["problems"][0]


@pytest.mark.parametrize("opset", [8, 21])
def test_opset_out_of_range_fails(tmp_path, opset):
    p = _save(tmp_path, [helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["batch", 8])],
              [_vi("y", ["batch", 8])], opset=opset)
    r = static_check(p)
    assert not r["ok"] and r["opset"] == opset
    assert any(f"opset {opset}" in line and "9..20" in line for line in r["problems"])


def test_data_dependent_reshape_fails_shape_derived_passes(tmp_path):
    """Reshape's shape from ArgMax (tensor values) is rejected; from Shape -> Gather -> Concat it is fine."""
    axes = helper.make_tensor("zero", TensorProto.INT64, [1], [0])
    minus_one = helper.make_tensor("minus_one", TensorProto.INT64, [1], [-1])
    bad = _save(tmp_path, [helper.make_node("ArgMax", ["x"], ["idx"], axis=1, keepdims=0),
                           helper.make_node("Reshape", ["x", "idx"], ["y"], name="reshape_by_values")],
                [_vi("x", [2, 8])], [_vi("y", None)], name="bad.onnx")
    r = static_check(bad)
    assert not r["ok"]
    assert any("reshape_by_values" in line and "ArgMax" in line for line in r["problems"])

    good = _save(tmp_path, [helper.make_node("Shape", ["x"], ["s"]),
                            helper.make_node("Gather", ["s", "zero"], ["b"], axis=0),
                            helper.make_node("Concat", ["b", "minus_one"], ["shape"], axis=0),
                            helper.make_node("Reshape", ["x", "shape"], ["y"])],
                 [_vi("x", ["batch", 4, 2])], [_vi("y", ["batch", 8])], initializers=[axes, minus_one],
                 name="good.onnx")
    assert static_check(good)["ok"], static_check(good)["problems"]


def test_double_dtype_fails(tmp_path):
    p = _save(tmp_path, [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.DOUBLE)], [_vi("x", ["batch", 8])],
              [_vi("y", ["batch", 8], TensorProto.DOUBLE)])
    r = static_check(p)
    assert not r["ok"] and any("DOUBLE" in line for line in r["problems"])


def test_local_functions_are_inlined_and_subgraphs_checked(tmp_path):
    """A local function made of supported ops passes (its name is not an op); a bad op in an If branch fails."""
    gelu = helper.make_function(
        "local", "ErfGelu", ["a"], ["b"],
        [helper.make_node("Constant", [], ["r2"], value_float=math.sqrt(0.5)),
         helper.make_node("Mul", ["a", "r2"], ["t"]), helper.make_node("Erf", ["t"], ["e"]),
         helper.make_node("Constant", [], ["one"], value_float=1.0), helper.make_node("Add", ["e", "one"], ["p"]),
         helper.make_node("Constant", [], ["half"], value_float=0.5), helper.make_node("Mul", ["a", "half"], ["ah"]),
         helper.make_node("Mul", ["ah", "p"], ["b"])],
        [helper.make_opsetid("", 18)])
    p = _save(tmp_path, [helper.make_node("ErfGelu", ["x"], ["y"], domain="local")], [_vi("x", ["batch", 8])],
              [_vi("y", ["batch", 8])], functions=[gelu], name="fn.onnx")
    r = static_check(p)
    assert r["ok"], r["problems"]
    assert "Erf" in r["ops"] and not any("ErfGelu" in op for op in r["ops"])

    then_g = helper.make_graph([helper.make_node("FancyWarp", ["x"], ["t_out"])], "then", [], [_vi("t_out", None)])
    else_g = helper.make_graph([helper.make_node("Relu", ["x"], ["e_out"])], "else", [], [_vi("e_out", None)])
    p = _save(tmp_path, [helper.make_node("ReduceMax", ["x"], ["m"], keepdims=0),
                         helper.make_node("Constant", [], ["zero"], value_float=0.0),
                         helper.make_node("Greater", ["m", "zero"], ["c"]),
                         helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)],
              [_vi("x", ["batch", 8])], [_vi("y", None)], name="if.onnx")
    r = static_check(p)
    assert not r["ok"] and "FancyWarp" in r["unsupported"]


def test_missing_file_raises_with_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        static_check(tmp_path / "nope.onnx")


# ------------------------------------------------------------------------------------ build_engines
no_trt = pytest.mark.skipif(trt_unavailable_reason() is None, reason="TensorRT and a GPU are present here")


@no_trt
def test_build_engines_auto_skips_with_one_line(tmp_path):
    lines = []
    r = build_engines(tmp_path, "auto", log=lines.append)
    assert r["status"] == "skipped" and r["reason"] == trt_unavailable_reason()
    assert len(lines) == 1
    assert lines[0].startswith(f"[skip] TensorRT: {r['reason']} (pip install tensorrt on the target GPU machine")
    assert f"gem-export trt --bundle {tmp_path}" in lines[0]
    assert list(tmp_path.iterdir()) == []


@no_trt
def test_build_engines_on_raises(tmp_path):
    with pytest.raises(BackendUnavailableError, match="TensorRT"):
        build_engines(tmp_path, "on", log=lambda s: None)


def test_build_engines_off_and_bad_mode(tmp_path):
    assert build_engines(tmp_path, "off", log=pytest.fail) == {"status": "off"}
    with pytest.raises(ValueError, match="'fast'"):
        build_engines(tmp_path, "fast")


# ------------------------------------------------------------------------------- engine file names
def test_engine_name_round_trip():
    name = engine_name("ecg_encoder", "90", "10.8.0.43")
    assert name == "ecg_encoder.sm90.trt10.8.0.43.engine"
    tag = parse_engine_name(name)
    assert (tag.name, tag.sm, tag.trt_version) == ("ecg_encoder", "90", "10.8.0.43")
    assert parse_engine_name("image_encoder.sm120.trt10.15.1.engine").sm == "120"
    assert parse_engine_name("ecg_encoder.onnx") is None
    assert parse_engine_name("ecg_encoder.engine") is None


def test_engine_pick_and_mismatch_reasons(tmp_path):
    for f in ("ecg_encoder.sm80.trt10.3.0.engine", "image_encoder.sm90.trt10.8.0.engine", "ecg_encoder.onnx"):
        (tmp_path / f).write_bytes(b"x")
    # this machine: sm_90, TensorRT 10.8.0
    want = tmp_path / "image_encoder.sm90.trt10.8.0.engine"
    assert engine_file_for(tmp_path, "image_encoder", "90", "10.8.0") == want
    assert engine_mismatch_reason(tmp_path, "image_encoder", "90", "10.8.0") is None
    assert engine_file_for(tmp_path, "ecg_encoder", "90", "10.8.0") is None
    assert engine_mismatch_reason(tmp_path, "ecg_encoder", "90", "10.8.0") == \
        "ecg_encoder engine built for sm_80 / TensorRT 10.3.0, this GPU is sm_90 with TensorRT 10.8.0"
    # same GPU, other TensorRT patch version: engines do not move between versions either
    assert engine_file_for(tmp_path, "image_encoder", "90", "10.8.1") is None
    assert "sm_90 / TensorRT 10.8.0" in engine_mismatch_reason(tmp_path, "image_encoder", "90", "10.8.1")
    assert [t.sm for t in engines_in(tmp_path, "ecg_encoder")] == ["80"]
    (tmp_path / "ecg_encoder.sm80.trt10.3.0.engine").unlink()
    assert "no TensorRT engine for ecg_encoder" in engine_mismatch_reason(tmp_path, "ecg_encoder", "90", "10.8.0")


# ----------------------------------------------------------------------------------------- on a GPU
@pytest.mark.gpu
@pytest.mark.skipif(trt_unavailable_reason() is not None, reason=f"TensorRT: {trt_unavailable_reason()}")
def test_engine_matches_onnxruntime(tiny_onnx):
    import onnxruntime as ort

    from gem_runtime.trt_engine import TrtEncoder

    bundle = tiny_onnx.parent
    r = build_engines(bundle, "on", log=print, max_batch=4, workspace_gb=1.0)
    assert r["status"] == "built" and set(r["engines"]) == {"ecg_encoder"}
    engine = engine_file_for(bundle, "ecg_encoder")
    assert engine is not None and engine.name == r["engines"]["ecg_encoder"]
    assert (bundle / "trt_timing.cache").is_file() and not list(bundle.glob("*.tmp"))
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    with TrtEncoder(engine, "ecg", "ecg_embeds") as enc:
        for batch in (1, 3, 6):                                       # 6 > max_batch: runs in two chunks
            x = _ecg(batch, seed=batch)
            want = sess.run(["ecg_embeds"], {"ecg": x})[0]
            got = enc.run(x)
            assert got.shape == want.shape and got.dtype == np.float32
            cos = float(got.ravel() @ want.ravel() / (np.linalg.norm(got) * np.linalg.norm(want)))
            assert cos >= 0.999, f"batch {batch}: cosine {cos}"
