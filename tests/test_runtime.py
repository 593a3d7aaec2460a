"""gem-run on a tiny bundle: parity with PyTorch, streamed text, JSON, no torch, bad input and bad bundles."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clirun import run_main
from gem_runtime.cli import main
from gem_runtime.errors import BackendUnavailableError, BundleError


def _records(corpus: Path, n: int):
    return json.loads((corpus / "records.json").read_text())[:n]


def _run_cli(args, capsys):
    return run_main(main, args, capsys)


def test_greedy_text_equals_pytorch_token_for_token(tiny_bundle, tiny_checkpoint, tiny_corpus):
    import torch

    from gem_runtime import Interpreter
    from gem_runtime.constants import DEFAULT_QUESTION
    from gem_runtime.image import preprocess_image
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.prompt import build_prompt, prompt_ids
    from gem_runtime.readers import read_ecg
    from gem_runtime.render import render_ecg_image
    from gem_train.checkpoint import load_checkpoint
    from gem_train.tokenizer import SpTokenizer

    model = load_checkpoint(tiny_checkpoint)
    tok = SpTokenizer(tiny_checkpoint / "tokenizer.model")
    with Interpreter.load(tiny_bundle, quant="f16", threads=2) as gem:
        for r in _records(tiny_corpus, 3):
            path = tiny_corpus / (r["ecg"] + ".hea")
            res = gem.interpret(path, max_new_tokens=48)
            x, _ = preprocess_ecg(read_ecg(path))
            pix = preprocess_image(render_ecg_image(x), model.config.vision_image_size)
            ids = prompt_ids(build_prompt(DEFAULT_QUESTION), tok)
            ref = model.generate(ids, torch.from_numpy(x), torch.from_numpy(pix), 48, eos_id=tok.eos_id)
            assert res.token_ids == ref
            assert res.text == tok.decode(ref).strip() and res.new_tokens == len(ref)
            t = res.timings
            assert all(t[stage] > 0 for stage in ("read", "preprocess", "render", "ecg_encoder", "image_encoder",
                                                  "prefill", "decode", "measure"))
            before_decode = sum(t[s] for s in ("read", "preprocess", "render", "ecg_encoder", "image_encoder",
                                               "prefill"))
            assert before_decode + t["measure"] <= t.ttft_ms <= t.total_ms   # measured before the model; first
                                                                               # token after prefill
            assert res.backends.ecg_encoder == "onnxruntime-cpu" and res.quant == "f16"


def test_llama_tokenizer_matches_sentencepiece_per_chunk(tiny_bundle, tiny_checkpoint):
    from gem_runtime.constants import DEFAULT_QUESTION
    from gem_runtime.llm import LlamaLLM
    from gem_runtime.prompt import build_prompt, prompt_ids
    from gem_train.tokenizer import SpTokenizer

    sp = SpTokenizer(tiny_checkpoint / "tokenizer.model")
    llm = LlamaLLM(tiny_bundle / "llm-f16.gguf", n_ctx=512)
    try:
        for q in (DEFAULT_QUESTION, "What is the heart rate?", "Describe the QRS axis (degrees) and PR: 200 ms.",
                  "  two  spaces\tand a tab\n"):
            assert prompt_ids(build_prompt(q), llm.tokenize) == prompt_ids(build_prompt(q), sp)
    finally:
        llm.close()


def test_prefix_kv_reuse_gives_the_same_text(tiny_bundle, tiny_corpus):
    from gem_runtime import Interpreter

    path = tiny_corpus / (_records(tiny_corpus, 1)[0]["ecg"] + ".hea")
    with Interpreter.load(tiny_bundle, quant="f16", threads=2) as gem:
        a = gem.interpret(path, max_new_tokens=24)
        b = gem.interpret(path, max_new_tokens=24)
    assert not a.prefix_cached and b.prefix_cached and a.text == b.text


def test_cli_streams_text_and_prints_timings(tiny_bundle, tiny_corpus, tmp_path, capsys):
    path = tiny_corpus / (_records(tiny_corpus, 1)[0]["ecg"] + ".hea")
    img = tmp_path / "seen.png"
    code, out, err = _run_cli([str(path), "--bundle", str(tiny_bundle), "--max-new-tokens", "16",
                               "--save-image", str(img)], capsys)
    assert code == 0, err
    assert "prefill / TTFT" in out and "ecg encoder" in out and "tok/s" in out
    assert "measured: HR" in out and "grounding:" in out
    assert (tmp_path / "seen-median-beats.png").exists()
    from PIL import Image

    assert Image.open(img).size[0] > 500
    code, out, err = _run_cli([str(path), "--bundle", str(tiny_bundle), "--json", "--max-new-tokens", "8"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["new_tokens"] <= 8 and res["backends"]["llm"] == "llama.cpp-cpu" and res["bundle_id"]
    assert res["measurements"]["hr_bpm"] > 20
    assert all(g["verdict"] in ("agree", "disagree", "not measurable") and g["quantity"] for g in res["grounding"])
    assert res["timings_ms"]["ttft"] < res["timings_ms"]["total"]


def test_malformed_inputs_exit_2_with_one_line(tiny_bundle, tmp_path, capsys):
    from malformed import make_malformed_corpus

    cases = make_malformed_corpus(tmp_path)
    assert len(cases) >= 30
    for path, kwargs, expected in cases:
        args = [str(path), "--bundle", str(tiny_bundle)]
        if kwargs.get("fs"):
            args += ["--fs", str(kwargs["fs"])]
        if kwargs.get("max_bytes"):
            args += ["--max-bytes", str(kwargs["max_bytes"])]
        code, out, err = _run_cli(args, capsys)
        lines = err.strip().splitlines()
        assert code == 2, (path, err)
        assert len(lines) == 1 and Path(path).name in lines[0], (path, err)
        assert "Traceback" not in err and out == ""


def test_missing_ecg_and_bad_options_are_one_line(tiny_bundle, tmp_path, capsys):
    for args in (["nope.hea"], [str(tmp_path / "x.npy"), "--quant", "q3"], []):
        code, out, err = _run_cli(args, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err


def test_corrupted_bundle_refused_before_loading(tiny_bundle, tiny_corpus, tmp_path, capsys):
    import shutil

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    g = b / "llm-f16.gguf"
    data = bytearray(g.read_bytes())
    data[-100] ^= 0xFF
    g.write_bytes(bytes(data))
    path = tiny_corpus / (_records(tiny_corpus, 1)[0]["ecg"] + ".hea")
    code, out, err = _run_cli([str(path), "--bundle", str(b), "--quant", "f16"], capsys)
    assert code == 2 and "llm-f16.gguf" in err and "sha256" in err


def test_unavailable_backend_is_an_error_not_a_fallback(tiny_bundle):
    from gem_runtime import Interpreter

    with pytest.raises(BackendUnavailableError, match="cuda"):
        Interpreter.load(tiny_bundle, backend="cuda")


def test_runtime_never_imports_torch(tiny_bundle, tiny_corpus):
    path = tiny_corpus / (_records(tiny_corpus, 1)[0]["ecg"] + ".hea")
    code = (f"import sys; from gem_runtime import Interpreter\n"
            f"with Interpreter.load({str(tiny_bundle)!r}) as g: r = g.interpret({str(path)!r}, max_new_tokens=4)\n"
            f"bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
            f"assert not bad, bad; print('clean', r.new_tokens)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "clean" in p.stdout, p.stderr
