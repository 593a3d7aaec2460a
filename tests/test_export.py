"""gem-export build on a tiny checkpoint in the GEM-7B layout, end to end: files, hashes, the parity gate."""
import json
import shutil

import numpy as np
import pytest

from gem_runtime.bundle import Bundle
from gem_runtime.files import sha256_file
from gem_runtime.errors import BundleError


def test_bundle_holds_every_file_with_its_hash(tiny_bundle):
    m = json.loads((tiny_bundle / "manifest.json").read_text())
    assert m["complete"] is True
    names = set(m["files"])
    assert {"ecg_encoder.onnx", "image_encoder.onnx", "ecg_encoder.fp16.onnx", "image_encoder.fp16.onnx",
            "llm-f16.gguf", "llm-q8_0.gguf", "tokenizer.model"} <= names
    for name, entry in m["files"].items():
        p = tiny_bundle / name
        assert p.stat().st_size == entry["bytes"] and sha256_file(p) == entry["sha256"], name
    assert Bundle.open(tiny_bundle).verify_all() == sorted(names)
    assert m["prompt"]["image_token_index"] == -200 and m["prompt"]["ecg_rows"] == 101
    assert m["preprocessing"]["ecg_samples"] == 5000 and m["preprocessing"]["leads"][6] == "V1"
    assert m["tensorrt"]["status"] in ("skipped", "built")


def test_parity_gate_numbers(tiny_bundle):
    p = json.loads((tiny_bundle / "manifest.json").read_text())["parity"]
    for name in ("ecg_encoder", "image_encoder"):
        from gem_export.build import FP16_MIN_COSINE
        from gem_export.onnx_export import ENCODERS

        for variant, gate in ((name, ENCODERS[name].min_cosine), (name + ".fp16", FP16_MIN_COSINE)):
            r = p["encoders"][variant]                    # the gate's own threshold, recorded and met
            assert r["ok"] and r["min_cosine"] == gate and r["cosine"] >= gate, variant
        assert p["encoders"][name]["shapes"][1][0] == 3            # validated at a batch other than the export's
    f16 = p["llm"]["f16"]
    assert f16["ok"] and f16["greedy_tokens"] >= 32 and f16["identical_prefix"] == f16["greedy_tokens"]
    assert f16["cosine"] > 0.999
    from gem_export.build import QUANT_GATE

    for q in ("q8_0", "q6_k"):                  # the gate's own thresholds, recorded and met
        r, gate = p["llm"][q], QUANT_GATE[q]
        assert r["ok"] and (r["min_cosine"], r["min_top1"]) == (gate.min_cosine, gate.min_top1)
        assert r["cosine"] >= gate.min_cosine and r["top1_agreement"] >= gate.min_top1


def test_gguf_tensors_and_vocab(tiny_bundle, tiny_checkpoint):
    import gguf
    import sentencepiece as spm

    r = gguf.GGUFReader(str(tiny_bundle / "llm-f16.gguf"))
    names = {t.name for t in r.tensors}
    assert {"token_embd.weight", "output.weight", "output_norm.weight", "blk.1.attn_q.weight",
            "blk.1.ffn_down.weight"} <= names and not any("proj" in n or "tower" in n for n in names)
    assert len(names) == 3 + 9 * 2
    sp = spm.SentencePieceProcessor(model_file=str(tiny_checkpoint / "tokenizer.model"))
    tokens = r.fields["tokenizer.ggml.tokens"]
    assert len(tokens.data) == sp.get_piece_size()
    assert bytes(tokens.parts[tokens.data[100]]).decode() == sp.id_to_piece(100)


def test_flipped_byte_in_any_file_is_caught(tiny_bundle, tmp_path):
    from gem_export.cli import main

    for name in json.loads((tiny_bundle / "manifest.json").read_text())["files"]:
        b = tmp_path / name.replace(".", "_")
        shutil.copytree(tiny_bundle, b)
        data = bytearray((b / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (b / name).write_bytes(bytes(data))
        with pytest.raises(SystemExit) as e:
            main(["verify", "--bundle", str(b)])
        assert e.value.code == 2
        with pytest.raises(BundleError, match=name):
            Bundle.open(b).verify_all()
        shutil.rmtree(b)


def test_failed_gate_leaves_bundle_incomplete(tiny_gem7b_layout, tmp_path, monkeypatch):
    from gem_export import build as build_mod

    monkeypatch.setitem(build_mod.QUANT_GATE, "q8_0", build_mod.QuantGate(1.01, 1.01))   # unreachable: cosine <= 1
    out = tmp_path / "b"
    with pytest.raises(build_mod.ExportGateError, match="q8_0"):
        build_mod.build_bundle(tiny_gem7b_layout, out, build_mod.BuildOptions(quants=("q8_0",), log=lambda m: None))
    assert json.loads((out / "manifest.json").read_text())["complete"] is False
    with pytest.raises(BundleError, match="incomplete"):
        Bundle.open(out)
