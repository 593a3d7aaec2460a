"""The bundle contract: the typed manifest, its one-line refusals, the integrity check that an mtime cannot
fool, and every LLM type the export writes loading in gem-run."""
import copy
import json
import os
import shutil
from pathlib import Path

import pytest

from clirun import run_main
from gem_runtime.bundle import Bundle, default_bundle, write_manifest
from gem_runtime.cli import main
from gem_runtime.errors import BundleError
from gem_runtime.manifest import LLM_TYPES, QUANTS, Manifest, ManifestKeyError

DEMO = default_bundle()


def _demo_dict() -> dict:
    return json.loads((DEMO / "manifest.json").read_text())


def _run(args, capsys):
    return run_main(main, args, capsys)


@pytest.fixture
def demo_copy(tmp_path, monkeypatch):
    """A private copy of the demo bundle and a private verified-file cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    dst = tmp_path / "demo"
    shutil.copytree(DEMO, dst)
    return dst


def test_demo_manifest_round_trips():
    m = Manifest.from_dict(_demo_dict())
    assert m.to_dict() == _demo_dict()
    assert Manifest.from_dict(m.to_dict()) == m
    assert m.rows == 165 and m.encoders["ecg_encoder"].fp16_file == "ecg_encoder.fp16.onnx"
    assert m.parity.llm["q8_0"].min_top1 == 0.95 and m.files["llm-f16.gguf"].bytes > 0


@pytest.mark.parametrize("path", [("prompt", "ecg_rows"), ("encoders", "image_encoder", "file"), ("files",),
                                  ("preprocessing", "image_size"), ("model", "hidden_size"),
                                  ("files", "llm-f16.gguf", "sha256")])
def test_a_missing_key_is_named_by_its_path(path):
    d = _demo_dict()
    node = d
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    with pytest.raises(ManifestKeyError) as e:
        Manifest.from_dict(d)
    assert e.value.path == "manifest." + ".".join(path) and "missing" in str(e.value)


def test_unknown_keys_types_and_files_are_refused():
    cases = [(("prompt", "extra"), 1, "manifest.prompt.extra: unknown key"),
             (("prompt", "ecg_rows"), "101", "manifest.prompt.ecg_rows: expected an integer"),
             (("complete",), "yes", "manifest.complete: expected true or false"),
             (("llm", "q3_k"), "llm-q3_k.gguf", "manifest.llm.q3_k: unknown LLM type"),
             (("llm", "q8_0"), "llm-q4_k_m.gguf", "manifest.llm.q8_0: file 'llm-q4_k_m.gguf'"),
             (("default_quant",), "q6_k", "manifest.default_quant: 'q6_k' is not one of")]
    for path, value, message in cases:
        d = copy.deepcopy(_demo_dict())
        node = d
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(ManifestKeyError, match=message.replace("(", r"\(")):
            Manifest.from_dict(d)


def test_gem_run_refuses_a_manifest_with_a_key_removed(demo_copy, capsys):
    d = _demo_dict()
    del d["encoders"]["ecg_encoder"]["rows"]
    (demo_copy / "manifest.json").write_text(json.dumps(d))
    code, out, err = _run([str(_dicom()), "--bundle", str(demo_copy)], capsys)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"gem-run: error: {demo_copy / 'manifest.json'}: bad manifest: "
                                        "manifest.encoders.ecg_encoder.rows: missing"]


@pytest.mark.parametrize("name", ["the default LLM file", "image_encoder.onnx"])
def test_flipped_byte_with_mtime_kept_is_refused_after_a_first_run(demo_copy, capsys, name):
    code, _, err = _run([str(_dicom()), "--bundle", str(demo_copy), "--json", "--max-new-tokens", "4"], capsys)
    assert code == 0, err                                   # verified and remembered
    d = _demo_dict()
    f = demo_copy / (d["llm"][d["default_quant"]] if name.endswith("LLM file") else name)
    st = f.stat()
    data = bytearray(f.read_bytes())
    data[len(data) // 3] ^= 0x01                            # bit rot, or a careful edit ...
    f.write_bytes(bytes(data))
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))        # ... that puts the mtime back
    assert f.stat().st_mtime_ns == st.st_mtime_ns and f.stat().st_size == st.st_size
    code, out, err = _run([str(_dicom()), "--bundle", str(demo_copy), "--json"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1
    assert f"{f}: sha256 mismatch" in lines[0]             # our check, before llama.cpp / ONNX Runtime open it


def test_cached_verification_is_skipped_only_for_the_same_file(demo_copy):
    b = Bundle.open(demo_copy)
    b.path("llm-q8_0.gguf")
    cache = json.loads((Path(os.environ["XDG_CACHE_HOME"]) / "gem-edge" / "verified.json").read_text())
    assert any("llm-q8_0.gguf" in k for k in cache)
    f = demo_copy / "llm-q8_0.gguf"
    data = f.read_bytes()
    f.unlink()
    f.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))     # a new file (new inode) with the same size
    with pytest.raises(BundleError, match="sha256 mismatch"):
        b.path("llm-q8_0.gguf")
    f.write_bytes(data)
    assert Bundle.open(demo_copy, verify="always").path("llm-q8_0.gguf") == f


def test_an_unlisted_external_weights_file_is_refused(demo_copy, capsys):
    (demo_copy / "ecg_encoder.onnx.data").write_bytes(b"\0" * 64)
    code, _, err = _run([str(_dicom()), "--bundle", str(demo_copy)], capsys)
    assert code == 2 and "ecg_encoder.onnx.data: external weights of ecg_encoder.onnx not listed" in err


def test_every_type_the_export_writes_runs_in_gem_run(tiny_bundle, capsys):
    from gem_export.build import QUANT_GATE

    assert set(QUANTS) == {"f16", *QUANT_GATE}            # one list, and a gate for every quantized type
    m = Bundle.open(tiny_bundle).manifest
    assert m.llm["q6_k"] == LLM_TYPES["q6_k"].file == "llm-q6_k.gguf"
    code, out, err = _run([str(_dicom()), "--bundle", str(tiny_bundle), "--quant", "q6_k", "--json",
                           "--max-new-tokens", "8"], capsys)
    assert code == 0, err
    res = json.loads(out)
    assert res["quant"] == "q6_k" and 1 <= res["new_tokens"] <= 8
    code, out, err = _run([str(_dicom()), "--bundle", str(tiny_bundle), "--quant", "q4_0"], capsys)
    assert code == 2 and err.strip().endswith("no q4_0 LLM in this bundle (has f16, q8_0, q6_k)")


def test_write_manifest_guards_its_format(tmp_path):
    m = Manifest.from_dict(_demo_dict())
    write_manifest(tmp_path, m)
    assert json.loads((tmp_path / "manifest.json").read_text()) == _demo_dict()
    bad = copy.deepcopy(m)
    object.__setattr__(bad.prompt, "ecg_rows", (101,))     # a tuple does not survive JSON as itself
    with pytest.raises(ManifestKeyError):
        write_manifest(tmp_path, bad)


def _dicom() -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("waveform_ecg.dcm"))
