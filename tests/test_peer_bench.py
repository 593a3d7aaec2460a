"""gem-bench peer's wiring without building llama.cpp: the GGUF and mmproj writers (read back by gguf-py at a tiny
size, and the real shapes' tensor lists), the parse of llama-mtmd-cli's output (a stand-in CLI prints its lines),
the speed-up arithmetic, and both of our sides on the demo bundle. Nothing here asserts a speed."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.peer import Files, PeerArgs, parse_theirs, run_peer
from benchmarks.peer_build import render_page
from benchmarks.peer_models import (ClipShape, LlmShape, clip_specs, llm_specs, read_back, write_llm,
                                    write_mmproj)
from benchmarks.peer_report import markdown, speedup, summarize, targets, write

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "bundles" / "demo"
TINY_CLIP = ClipShape(width=64, ff=128, heads=4, layers=3, image=28, patch=14)


def _vocab_size(tokenizer: Path) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(tokenizer)).get_piece_size()


def test_llm_gguf_reads_back_in_llamas_layout(tmp_path):
    tok = DEMO / "tokenizer.model"
    shape = LlmShape(hidden=64, ff=128, heads=4, kv_heads=4, vocab=_vocab_size(tok))
    meta, tensors = read_back(write_llm(tmp_path / "llm.gguf", 2, tok, shape, log=lambda m: None))
    assert meta["general.architecture"] == "llama" and meta["llama.block_count"] == 2
    assert meta["llama.embedding_length"] == 64 and meta["llama.feed_forward_length"] == 128
    assert meta["tokenizer.ggml.model"] == "llama" and meta["tokenizer.ggml.bos_token_id"] == 1
    # llama.cpp's template detection reads "USER: " and "ASSISTANT: " as the vicuna template
    assert "USER: " in meta["tokenizer.chat_template"] and "ASSISTANT: " in meta["tokenizer.chat_template"]
    assert len(tensors) == 3 + 9 * 2
    assert tensors["token_embd.weight"] == ((64, shape.vocab), "F16")           # ggml order: (ne0, ne1)
    assert tensors["blk.1.ffn_down.weight"] == ((128, 64), "F16")
    assert tensors["blk.0.attn_norm.weight"] == ((64,), "F32") and "output.weight" in tensors


@pytest.mark.parametrize("ftype", ["f16", "q8_0"])
def test_mmproj_reads_back_as_the_llava_converter_writes_it(tmp_path, ftype):
    meta, tensors = read_back(write_mmproj(tmp_path / f"mmproj-{ftype}.gguf", ftype, TINY_CLIP, llm_width=96,
                                           log=lambda m: None))
    assert meta["general.architecture"] == "clip" and meta["clip.projector_type"] == "mlp"
    assert meta["clip.has_vision_encoder"] and meta["clip.has_llava_projector"] and not meta["clip.use_gelu"]
    assert meta["clip.vision.block_count"] == 2                    # layer -2: the last of 3 is dropped
    assert meta["clip.vision.image_size"] == 28 and meta["clip.vision.patch_size"] == 14
    assert len(meta["clip.vision.image_mean"]) == 3 and meta["general.file_type"] == {"f16": 1, "q8_0": 7}[ftype]
    assert "v.blk.1.ln2.bias" in tensors and "v.blk.2.ln1.weight" not in tensors and "v.post_ln.weight" not in tensors
    assert tensors["v.position_embd.weight"][0] == (64, 5)           # 2 x 2 patches + CLS
    assert tensors["mm.0.weight"][0] == (64, 96) and tensors["mm.2.weight"][0] == (96, 96)
    # fc1 is named ffn_down with ne0 == width: clip.cpp swaps up and down back for "mlp" projectors
    assert tensors["v.blk.0.ffn_down.weight"][0] == (64, 128) and tensors["v.blk.0.ffn_up.weight"][0] == (128, 64)
    matrix = "Q8_0" if ftype == "q8_0" else "F16"
    assert tensors["mm.0.weight"][1] == matrix and tensors["v.blk.0.attn_q.weight"][1] == matrix
    assert tensors["mm.0.bias"][1] == "F32" and tensors["v.class_embd"][1] == "F32"
    float_embd = "F32" if ftype == "q8_0" else "F16"
    assert tensors["v.patch_embd.weight"] == ((14, 14, 3, 64), float_embd)
    assert tensors["v.position_embd.weight"][1] == float_embd


def test_the_real_shapes():
    clip = {n: s for n, s, _ in clip_specs(ClipShape(), 4096)}
    assert clip["v.position_embd.weight"] == (577, 1024)            # 24 x 24 = 576 image tokens + CLS
    assert len([n for n in clip if n.endswith("attn_q.weight")]) == 23
    assert sum(int(np.prod(s)) for s in clip.values()) == pytest.approx(320e6, rel=0.03)   # CLIP-L 303M + 21M
    llm = {n: s for n, s, _ in llm_specs(LlmShape(), 32)}
    assert sum(int(np.prod(s)) for s in llm.values()) == 6_738_415_616                  # LLaMA-2-7B


LOG = ["0.03.636.536 I main: loading model: llm.gguf\n", "0.04.695.025 I encoding mtmd batch, n_chunks = 1\n",
       "0.05.895.025 I mtmd batch encoding done in 1200 ms\n",
       "decoding image batch 1/1, n_tokens_batch = 576\n", "image decoded (batch 1/1) in 1500 ms\n",
       "llama_perf_context_print:        load time =     900.00 ms\n",
       "llama_perf_context_print: prompt eval time =    2000.00 ms /   660 tokens (    3.03 ms per token)\n",
       "llama_perf_context_print:        eval time =     300.00 ms /     3 runs   (  100.00 ms per token)\n"]


def test_parse_theirs():
    err = [(10.0, line) for line in LOG[:5]] + [(13.5, line) for line in LOG[5:]]
    out = [(13.0, b" a"), (13.1, b" b"), (13.2, b" c"), (13.4, b" d")]
    s = parse_theirs(err, out)
    assert s["image_encoder"] == 1200 and s["image_prefill"] == 1500 and s["prefill"] == 2000 - 1200
    assert s["ttft"] == pytest.approx(3000) and s["decode"] == pytest.approx(400) and s["total"] == pytest.approx(3400)
    assert s["decode_tok_s"] == pytest.approx(2 / 0.4) and s["decode_tok_s_compute"] == pytest.approx(10)
    assert s["prompt_positions"] == 660 and s["peak_rss_mb"] is None
    with pytest.raises(RuntimeError, match="no request start"):
        parse_theirs(err[1:], out)


def test_speedups_from_the_medians():
    samples = {"theirs_f16": {"image_encoder": [400.0, 500.0, 600.0], "total": [3000.0] * 3,
                              "decode_tok_s": [10.0, 10.0, 12.0]},
               "ours_image": {"image_encoder": [100.0, 90.0, 110.0], "total": [1000.0] * 3,
                              "decode_tok_s": [11.0] * 3}}
    r = summarize(samples)
    st, sp = r["stages"], r["speedup"]["ours_image_vs_theirs_f16"]
    assert st["image_encoder"]["theirs_f16"]["median"] == 500 and st["image_encoder"]["ours_image"]["median"] == 100
    assert st["image_encoder"]["theirs_f16"]["p90"] == pytest.approx(580)
    assert sp == {"image_encoder": 5.0, "total": 3.0, "decode_tok_s": 1.1}
    assert "prefill" not in sp and list(r["speedup"]) == ["ours_image_vs_theirs_f16"]
    assert speedup(0.0, 5.0, "ms") is None and speedup(2.0, 4.0, "tok/s") == 0.5
    met = {goal: ok for goal, _, _, ok in targets(r)}
    assert met["image encoder vs their f16 mmproj"] and met["decode tok/s"]
    assert met["time to first token (f16 mmproj)"] is None           # not measured: neither met nor missed


FAKE_CLI = f"""#!{sys.executable}
import sys, time
for line in {LOG[:5]!r}:
    sys.stderr.write(line); sys.stderr.flush()
for piece in (" It", " is", " sinus"):
    time.sleep(0.01); sys.stdout.write(piece); sys.stdout.flush()
for line in {LOG[5:]!r}:
    sys.stderr.write(line); sys.stderr.flush()
"""


@pytest.fixture(scope="module")
def demo_results(tiny_corpus, tmp_path_factory):
    """Both of our sides on the demo bundle and a stand-in for llama-mtmd-cli, through run_peer."""
    tmp = tmp_path_factory.mktemp("peer")
    rec = json.loads((tiny_corpus / "records.json").read_text())[0]
    ecg = tiny_corpus / (rec["ecg"] + ".hea")
    cli = tmp / "llama-mtmd-cli"
    cli.write_text(FAKE_CLI)
    cli.chmod(0o755)
    files = Files(bundle=DEMO, llm=DEMO / "llm-q4_k_m.gguf", mmproj={"f16": tmp / "m16", "q8_0": tmp / "m8"},
                  image=render_page(ecg, tmp / "page.png"), mtmd_cli=cli)
    a = PeerArgs(2, 2, tmp / "out", tmp, ecg, runs=2, warmup=1, new_tokens=4, rss=True, command="gem-bench peer")
    return run_peer(a, files, log=lambda m: None), tmp


def test_run_peer_on_the_demo_bundle(demo_results):
    r, tmp = demo_results
    st = r["stages"]
    for side in ("theirs_f16", "theirs_q8_0", "ours_image", "ours_gem"):
        for key in ("image_encoder", "prefill", "ttft", "decode", "total", "decode_tok_s"):
            assert len(st[key][side]["runs"]) == 2 and st[key][side]["median"] > 0, (key, side)
        assert r["peak_rss_mb"][side] > 0
    assert "ecg_encoder" in st and "theirs_f16" not in st["ecg_encoder"]   # theirs has no ECG tower
    assert st["prefill"]["theirs_f16"]["median"] == 800 and r["sides"]["theirs_f16"]["prompt_positions"] == 660
    for side in ("ours_image", "ours_gem"):
        for run in range(2):                                         # the parts never exceed the whole
            ttft, total = st["ttft"][side]["runs"][run], st["total"][side]["runs"][run]
            assert st["image_encoder"][side]["runs"][run] + st["prefill"][side]["runs"][run] <= ttft + 0.05
            assert ttft + st["decode"][side]["runs"][run] <= total + 0.5
            assert st["decode_tok_s"][side]["runs"][run] == pytest.approx(
                3 / (st["decode"][side]["runs"][run] / 1000), rel=0.02)
    demo = r["sides"]["ours_image"]["prompt_positions"]
    assert r["sides"]["ours_gem"]["prompt_positions"] == demo + 101  # the ECG tower's rows on top of the image's
    for ours in ("ours_image", "ours_gem"):
        for theirs in ("theirs_f16", "theirs_q8_0"):
            sp = r["speedup"][f"{ours}_vs_{theirs}"]
            assert sp["total"] == pytest.approx(st["total"][theirs]["median"] / st["total"][ours]["median"])
            assert sp["decode_tok_s"] == pytest.approx(st["decode_tok_s"][ours]["median"]
                                                       / st["decode_tok_s"][theirs]["median"])
    paths = write(r, tmp / "out")
    assert json.loads(paths["json"].read_text())["speedup"] == r["speedup"]
    text = markdown(r)
    assert "| end to end |" in text and "gem-bench peer" in text and "target (issue 28)" in text
    assert r["machine"]["cpu"]["model"]


def test_a_deep_llm_is_derived_from_a_bundles_gguf_with_llavas_name_and_template(tmp_path):
    """A 32-layer run takes the bundle's Q4_K_M of that depth instead of writing 13 GB of f16 and quantizing it:
    the tensors are copied, the name and the Vicuna template (llama-mtmd-cli formats its prompt with) are new."""
    from gguf import GGUFReader

    from benchmarks.peer_build import _block_count, derive_llm

    src = DEMO / "llm-q4_k_m.gguf"
    assert _block_count(src) == 4 and _block_count(tmp_path / "missing.gguf") is None
    out = derive_llm(src, tmp_path / "llava15-7b-L4-q4_k_m.gguf", 4, log=lambda m: None)
    meta, tensors = read_back(out)
    assert meta["general.name"] == "llava-1.5-7b-shape-4L-random"
    assert "USER: " in meta["tokenizer.chat_template"] and "ASSISTANT: " in meta["tokenizer.chat_template"]
    before = {t.name: (tuple(t.shape), t.tensor_type.name, bytes(t.data[:64])) for t in GGUFReader(src).tensors}
    after = {t.name: (tuple(t.shape), t.tensor_type.name, bytes(t.data[:64])) for t in GGUFReader(out).tensors}
    assert after == before and len(after) == len(tensors)
    assert not (tmp_path / "llava15-7b-L4-q4_k_m.part").exists()


@pytest.mark.parametrize("repack", ["on", "off", "split"])
def test_our_sides_take_the_repack_choice(tiny_corpus, tmp_path, repack):
    from benchmarks.peer import open_side

    rec = json.loads((tiny_corpus / "records.json").read_text())[0]
    ecg = tiny_corpus / (rec["ecg"] + ".hea")
    files = Files(bundle=DEMO, llm=DEMO / "llm-q4_k_m.gguf", mmproj={}, image=render_page(ecg, tmp_path / "p.png"))
    a = PeerArgs(2, 1, tmp_path, tmp_path, ecg, new_tokens=2, repack=repack)
    for side in ("ours_image", "ours_gem"):
        s = open_side(side, files, a)
        try:
            assert s.info["repack"] is (repack == "on") and s.info["decode_repacked"] is (repack == "split")
            assert s.run()["total"] > 0
        finally:
            s.close()
