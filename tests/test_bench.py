"""gem-bench on the tiny bundle: the latency harness's numbers and files, the roofline arithmetic.
Behaviour only: nothing here asserts a speed."""
import json
from pathlib import Path

import numpy as np
import pytest

from gem_runtime.errors import GemEdgeError
from gem_runtime.trt_engine import cuda_device_present
from PIL import Image

from benchmarks.cli import main
from benchmarks.latency import RATE_STAGES, TIME_STAGES, LatencyArgs, run_latency
from benchmarks.report import extrapolate, markdown, write_results
from benchmarks.roofline import decode_bytes, roofline


def _ecg(corpus: Path) -> Path:
    rec = json.loads((corpus / "records.json").read_text())[0]
    return corpus / (rec["ecg"] + ".hea")


@pytest.fixture(scope="module")
def latency_results(tiny_bundle, tiny_checkpoint, tiny_corpus):
    a = LatencyArgs(tiny_bundle, tiny_checkpoint, _ecg(tiny_corpus), runs=3, warmup=1, new_tokens=8,
                    quant="f16", threads=2, rss=True, label="tiny")
    return run_latency(a, log=lambda m: None)


def test_every_stage_has_well_formed_numbers(latency_results):
    st = latency_results["stages"]
    assert set(st) == {k for k, _ in TIME_STAGES + RATE_STAGES}
    for key, s in st.items():
        for side in ("ours", "ref"):
            runs = s[side]["runs"]
            assert len(runs) == 3                                      # warmup dropped
            assert s[side]["median"] == pytest.approx(float(np.median(runs)))
            if key == "measure" and side == "ref":                     # GEM measures nothing
                assert runs == [0.0, 0.0, 0.0] and s["speedup"] is None
                continue
            assert s[side]["median"] > 0, (key, side)
            assert s[side]["p90"] >= s[side]["median"]
    for side in ("ours", "ref"):                                       # parts never exceed the whole
        for run in range(3):
            # the measurements (ours only) run before the encoders, so a record without signal never reaches
            # the model: inside the time to first token
            parts = sum(st[k][side]["runs"][run] for k in ("read_preprocess", "render", "ecg_encoder",
                                                            "image_encoder", "prefill", "measure"))
            assert parts <= st["ttft"][side]["runs"][run] + 0.05          # timings are rounded to 0.01 ms
            # the first token is picked inside the decode stage, so TTFT and decode share that one argmax
            after = st["decode"][side]["runs"][run]
            assert st["ttft"][side]["runs"][run] + after <= st["total"][side]["runs"][run] + 0.5
            assert st["decode_tok_s"][side]["runs"][run] == pytest.approx(
                8 / (st["decode"][side]["runs"][run] / 1000), rel=0.02)


def test_speedups_come_from_the_same_runs(latency_results):
    st = latency_results["stages"]
    for key, _ in TIME_STAGES:
        if key == "measure":
            continue
        assert st[key]["speedup"] == pytest.approx(st[key]["ref"]["median"] / st[key]["ours"]["median"], rel=1e-12)
    tok = st["decode_tok_s"]
    assert tok["speedup"] == pytest.approx(tok["ours"]["median"] / tok["ref"]["median"], rel=1e-12)
    lm = latency_results["load_ms"]
    assert lm["ours"] > 0 and lm["ref"] > 0


def test_both_sides_see_the_same_request(latency_results):
    r = latency_results
    assert r["ours"]["prompt_positions"] == r["reference"]["prompt_positions"]
    assert r["ours"]["backends"]["llm"] == "llama.cpp-cpu" and r["ours"]["quant"] == "f16"
    assert r["config"]["llm_layers"] == 2 and r["config"]["threads"] == 2
    assert r["machine"]["libraries"]["torch"] and r["machine"]["cpu"]["logical_cores"] >= 1
    for side in ("ours", "ref"):                                       # a fresh process per side
        rss = r["peak_rss_mb"][side]
        assert 0 < rss["after_imports"] <= rss["after_load"] <= rss["after_request"]
    # ours never imports torch, so its fresh process stays below the reference's
    assert r["peak_rss_mb"]["ours"]["after_imports"] < r["peak_rss_mb"]["ref"]["after_imports"]


def test_reference_is_gems_hf_path_by_default_and_lean_on_request(latency_results, tiny_bundle, tiny_checkpoint,
                                                                  tiny_corpus):
    assert latency_results["config"]["reference"] == "hf"
    assert "LlamaForCausalLM.generate" in latency_results["reference"]["backend"]
    a = LatencyArgs(tiny_bundle, tiny_checkpoint, _ecg(tiny_corpus), runs=1, warmup=0, new_tokens=8,
                    quant="f16", threads=1, rss=False, reference="lean")
    lean = run_latency(a, log=lambda m: None)
    assert lean["reference"]["reference"] == "lean" and lean["stages"]["total"]["ref"]["median"] > 0
    assert lean["reference"]["prompt_positions"] == lean["ours"]["prompt_positions"]
    # transformers' CLIPVisionModel + LlamaForCausalLM.generate and our torch model write the same text:
    # the HF path holds the checkpoint's weights, selects the same CLIP layer and splices rows the same way
    assert latency_results["texts"]["ref"] == lean["texts"]["ref"] != ""


def test_results_files_are_written(latency_results, tmp_path):
    paths = write_results(latency_results, tmp_path)
    assert json.loads(paths["json"].read_text())["stages"].keys() == latency_results["stages"].keys()
    md = paths["md"].read_text()
    for _, label in TIME_STAGES + RATE_STAGES:
        assert f"| {label}" in md
    assert "peak RSS" in md and "machine:" in md
    with Image.open(paths["chart"]) as img:
        assert img.format == "PNG" and img.width > 500 and img.height > 300


def test_cli_latency_writes_files(tiny_bundle, tiny_checkpoint, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "res"
    main(["latency", "--bundle", str(tiny_bundle), "--checkpoint", str(tiny_checkpoint), "--ecg",
          str(_ecg(tiny_corpus)), "--runs", "1", "--warmup", "0", "--new-tokens", "4", "--threads", "1",
          "--no-rss", "--out", str(out), "--repack", "off", "--encoder-precision", "fp32"])
    assert {p.name for p in out.iterdir()} == {"results.json", "results.md", "chart.png"}
    printed = capsys.readouterr().out
    assert "| end to end |" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["threads"] == 1
    # the configuration given on the command line is the one timed, and the table says it was given, not tuned
    assert (results["config"]["repack"], results["config"]["encoder_precision"]) == ("off", "fp32")
    assert results["ours"]["repack"] is False and "(weight repacking off, as given)" in printed
    assert results["ours"]["backends"]["ecg_encoder"].endswith("cpu")


def test_gpu_flag_without_a_gpu_is_one_line(tiny_bundle, tiny_checkpoint, tiny_corpus, capsys):
    if cuda_device_present():
        pytest.skip("this machine has a GPU")
    main(["latency", "--bundle", str(tiny_bundle), "--checkpoint", str(tiny_checkpoint), "--ecg",
          str(_ecg(tiny_corpus)), "--gpu"])
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["gem-bench: --gpu skipped: no CUDA GPU on this machine"]


def test_extrapolation_is_linear_in_depth(latency_results):
    a = latency_results
    b = json.loads(json.dumps(a))
    b["config"]["llm_layers"] = 4
    for side in ("ours", "ref"):                                       # LLM stages cost 2x at twice the depth
        for k in ("prefill", "decode"):
            b["stages"][k][side]["median"] *= 2
    e = extrapolate(a, b, 32)
    for side in ("ours", "ref"):
        for k in ("prefill", "decode"):
            assert e["stages"][k][side]["median"] == pytest.approx(16 * a["stages"][k][side]["median"])
        assert e["stages"]["render"][side]["median"] == pytest.approx(a["stages"]["render"][side]["median"])
        assert e["stages"]["total"][side]["median"] > e["stages"]["ttft"][side]["median"] + \
            e["stages"]["decode"][side]["median"] - 1e-6
    assert e["stages"]["total"]["speedup"] == pytest.approx(
        e["stages"]["total"]["ref"]["median"] / e["stages"]["total"]["ours"]["median"])
    assert "EXTRAPOLATED" in markdown(e)
    assert e["load_ms"]["ours"] is None and "load | not extrapolated" in markdown(e)   # one sample: disk state
    with pytest.raises(GemEdgeError, match="two different depths"):
        extrapolate(a, a, 32)


def _tiny_f16(bundle: Path) -> Path:
    return bundle / json.loads((bundle / "manifest.json").read_text())["llm"]["f16"]


def test_bytes_per_token_are_the_non_embedding_tensors(tiny_bundle, tiny_checkpoint):
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    L, H, I, V = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    m = decode_bytes(_tiny_f16(tiny_bundle))
    matrices = L * (4 * H * H + 3 * H * I) + V * H                     # f16 layers + output, 2 bytes each
    norms = (2 * L + 1) * H                                           # f32, 4 bytes each
    assert m["bytes_per_token"] == 2 * matrices + 4 * norms
    assert m["embedding_bytes"] == 2 * V * H and not m["tied_output"]
    assert m["tensors_read"] == m["tensors"] - 1


def test_roofline_bound_and_cache_fit(tiny_bundle):
    f16 = _tiny_f16(tiny_bundle)
    kw = dict(new_tokens=4, reps=1, bw_mib=32, bw_repeats=1)
    fits = roofline(f16, 1, llc=10**9, **kw)
    assert fits["fits_in_cache"] and fits["bound_tok_s"] is None
    assert "no DRAM bound" in fits["verdict"]
    dram = roofline(f16, 1, llc=1024, **kw)                            # pretend a 1 KiB cache
    per_tok = dram["model"]["bytes_per_token"]
    assert dram["bound_tok_s"] == pytest.approx(dram["bandwidth"]["read_gb_s"] * 1e9 / per_tok)
    assert dram["percent_of_bound"] == pytest.approx(100 * dram["decode"]["tok_s_median"] / dram["bound_tok_s"])
    assert dram["bandwidth"]["read_gb_s"] > 0 and dram["decode"]["tok_s_median"] > 0


def test_random_gguf_is_written_tensor_by_tensor_and_quantized(tiny_checkpoint, tmp_path):
    from gem_train.config import GemConfig

    from benchmarks.roofline import make_random_gguf

    cfg = GemConfig.from_name("tiny", num_hidden_layers=3)
    out = make_random_gguf(cfg, tiny_checkpoint / "tokenizer.model", tmp_path / "r.gguf", "q8_0", 1, log=lambda m: None)
    m = decode_bytes(out)
    assert m["tensors"] == 3 + 9 * 3 and "Q8_0" in m["tensor_types"]
    assert not (tmp_path / "r-f16.gguf").exists()                    # the f16 intermediate is removed
    r = roofline(out, 1, new_tokens=4, reps=1, bw_mib=32, bw_repeats=1, llc=10**9)
    assert r["decode"]["tok_s_median"] > 0 and r["fits_in_cache"]


def test_prefill_work_counts_each_position_once():
    from benchmarks.roof import LlmShape

    shape = LlmShape(layers=3, width=8, ffn=20, vocab=50)
    per_layer = 4 * 8 * 8 + 3 * 8 * 20
    for start, positions in ((0, 7), (4, 7), (6, 7)):
        brute = sum(3 * (2 * per_layer + 2 * 2 * 8 * (p + 1)) for p in range(start, positions)) + 2 * 8 * 50
        assert shape.prefill_flops(positions, start) == brute


def test_ceilings_are_measured_and_fractions_follow_from_the_runs(latency_results, tiny_checkpoint):
    from benchmarks.roof import llm_shape

    roof, frac, st = latency_results["roof"], latency_results["roof_fractions"], latency_results["stages"]
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    shape = llm_shape(Path(latency_results["ours"]["gguf"]))
    assert (shape.layers, shape.width) == (cfg["num_hidden_layers"], cfg["hidden_size"])
    assert roof["gemm"]["gflop_s"] > 1 and roof["bandwidth"]["read_gb_s"] > 0.5
    ours = latency_results["ours"]
    assert ours["prefill_start"] > 0          # the second request onwards reuses the system prompt's KV
    flops = shape.prefill_flops(ours["prompt_positions"], ours["prefill_start"])
    assert frac["ours"]["prefill_gflop_s"] == pytest.approx(
        flops / (st["prefill"]["ours"]["median"] / 1000) / 1e9, rel=1e-2)
    assert frac["ours"]["prefill_of_gemm"] == pytest.approx(frac["ours"]["prefill_gflop_s"] / roof["gemm"]["gflop_s"],
                                                            rel=1e-2)
    assert frac["ours"]["bytes_per_token"] == decode_bytes(Path(ours["gguf"]))["bytes_per_token"]
    assert frac["ref"]["bytes_per_token"] > frac["ours"]["bytes_per_token"] or ours["quant"] == "f16"
    assert frac["ours"]["decode_of_bandwidth"] == pytest.approx(
        st["decode_tok_s"]["ours"]["median"] * frac["ours"]["bytes_per_token"] / 1e9 / roof["bandwidth"]["read_gb_s"],
        rel=1e-2)
    md = markdown(latency_results)
    assert "of fp32 GEMM" in md and "goal at gem-7b shape" not in md       # the goals are for GEM-7B's width
    wide = json.loads(json.dumps(latency_results))
    wide["roof"]["shape"]["width"] = 4096
    goals = markdown(wide).split("goal at gem-7b shape")[1]
    ttft = wide["stages"]["ttft"]["speedup"]
    assert f"| time to first token | >= 2x | {ttft:.2f}x | {'yes' if ttft >= 2 else 'no'} |" in goals


def test_extrapolated_fractions_are_stated_at_the_new_depth(latency_results):
    a = latency_results
    b = json.loads(json.dumps(a))
    b["config"]["llm_layers"] = 4
    b["roof"]["ours_bytes_per_token"] = a["roof"]["ours_bytes_per_token"] + 1000
    e = extrapolate(a, b, 32)
    assert e["roof_fractions"]["ours"]["bytes_per_token"] == pytest.approx(a["roof"]["ours_bytes_per_token"] + 15000)
    assert e["roof_fractions"]["ours"]["decode_bound_tok_s"] < a["roof_fractions"]["ours"]["decode_bound_tok_s"]


def test_the_kernels_line_names_the_ggml_that_is_loaded():
    """LLAMA_CPP_LIB_PATH can load a ggml built for less than the CPU has; the machine line must name that one."""
    import llama_cpp

    from benchmarks.machine import kernel_isas

    k = kernel_isas()
    assert Path(llama_cpp.__file__).exists() and k["ggml"]
    assert any(Path(k["ggml_library"]).glob("libggml-cpu*")), k["ggml_library"]
    assert k["onnxruntime"] == "by CPUID (no cap)"
