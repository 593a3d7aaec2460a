"""int8 CPU encoders and `gem-run tune` on a copy of the tiny bundle: an int8 encoder that fails its parity gate
is kept in the bundle but never used (refused when asked for, passed over by tune and by auto); one that
passes is measured beside fp32, and gem-run uses what tune found fastest on this machine."""
from __future__ import annotations

import json
import shutil

import pytest
from clirun import run_main
from pydicom.data import get_testdata_file

from gem_export.cli import main as export_main
from gem_runtime import Interpreter
from gem_runtime.bundle import Bundle
from gem_runtime.cli import main
from gem_runtime.errors import BackendUnavailableError
from gem_runtime.manifest import FINDINGS_MIN_SHARE
from gem_runtime.tuning import (
    DRAFT_LENGTHS, kernels_key, machine_key, read_tuning, tuning_path,
)

DICOM = get_testdata_file("waveform_ecg.dcm")


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path):
    out = tmp_path / "tiny"
    shutil.copytree(tiny_bundle, out)
    return out


def _add_int8(bundle, checkpoint, min_cosine: str, capsys):
    code, out, err = run_main(export_main, ["int8", "--bundle", str(bundle), "--checkpoint", str(checkpoint),
                                            "--min-cosine", min_cosine], capsys)
    assert code == 0, err
    return out


def test_an_int8_encoder_that_fails_its_gate_is_never_selected(bundle_copy, tiny_gem7b_layout, capsys):
    out = _add_int8(bundle_copy, tiny_gem7b_layout, "1.0", capsys)       # int8 cannot reach cosine 1.0
    assert "ecg_encoder FAILED (not used)" in out and "image_encoder FAILED (not used)" in out
    b = Bundle.open(bundle_copy)
    assert b.verify_all() and not b.manifest.parity.encoders["ecg_encoder.int8"].ok
    assert (bundle_copy / "ecg_encoder.int8.onnx").is_file()

    code, _, err = run_main(main, [DICOM, "--bundle", str(bundle_copy), "--encoder-precision", "int8",
                                   "--max-new-tokens", "4"], capsys)
    assert code == 2 and err.count("\n") == 1 and "failed its parity gate (cosine" in err, err
    with pytest.raises(BackendUnavailableError, match="failed its parity gate"):
        Interpreter.load(bundle_copy, encoder_precision="int8", threads=1)

    code, out, err = run_main(main, ["tune", "--bundle", str(bundle_copy), "--threads", "1", "--runs", "1"], capsys)
    assert code == 0, err
    assert "int8: its int8 ecg_encoder failed its parity gate" in out and "-> fp32" in out
    tuning = read_tuning(b, 1)
    assert tuning is not None and tuning.machine == machine_key() and tuning.kernels == kernels_key()
    assert set(tuning.encoder_precision.values()) == {"fp32"}
    with Interpreter.load(bundle_copy, threads=1) as gem:                 # auto: the tuning's choice
        r = gem.interpret(DICOM, max_new_tokens=4)
    assert r.backends.ecg_encoder == r.backends.image_encoder == "onnxruntime-cpu"


def test_a_tune_file_of_other_kernels_or_another_bundle_build_is_not_used_and_says_so(bundle_copy, capsys):
    code, _, err = run_main(main, ["tune", "--bundle", str(bundle_copy), "--threads", "1", "--runs", "1"], capsys)
    assert code == 0, err
    b = Bundle.open(bundle_copy)
    path = tuning_path(b)
    good = json.loads(path.read_text())
    assert good["kernels"] == kernels_key() and "llama-cpp-python" in good["kernels"]
    assert read_tuning(b, 1) is not None and read_tuning(b, 2) is None      # another thread count: silently not
    assert capsys.readouterr().err == ""
    rebuilt = "llama-cpp-python 0.0.1 (AVX AVX2 FMA) | onnxruntime 0.0.1"     # an upgrade, rebuilt for AVX2
    older = {k: v for k, v in good.items() if k != "kernels"}                     # written before the key existed
    for data, why in (({**good, "kernels": rebuilt}, "other kernels"), (older, "other kernels"),
                      ({**good, "bundle_id": "0" * 16}, "another build of the bundle"),
                      ({**good, "machine": "Some CPU | avx2 | 2 cores", "kernels": rebuilt},
                       "another CPU and other kernels")):
        path.write_text(json.dumps(data))
        assert read_tuning(b, 1) is None
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"measured on {why}; not used (run gem-run tune again)" in err, err
        assert str(path) in err


def test_an_int8_encoder_that_passes_is_timed_and_gem_run_takes_the_tuned_choice(bundle_copy, tiny_gem7b_layout,
                                                                                capsys):
    _add_int8(bundle_copy, tiny_gem7b_layout, "0.9", capsys)
    b = Bundle.open(bundle_copy)
    assert b.manifest.parity.encoders["image_encoder.int8"].ok
    assert b.manifest.parity.encoders["image_encoder.int8"].cosine > 0.99

    code, out, err = run_main(main, ["tune", "--bundle", str(bundle_copy), "--threads", "1", "--runs", "2"], capsys)
    assert code == 0, err
    tuning = json.loads(bundle_copy.with_name("tiny.tune.json").read_text())
    gates = tuning["gates"]                 # no knob's findings compared on this copy: int8 and repack off not taken
    assert "int8_encoders" in gates and "findings not compared" in gates["int8_encoders"]
    for name, variants in tuning["encoders_ms"].items():
        assert isinstance(variants["fp32"], float) and isinstance(variants["int8"], float)
        assert tuning["encoder_precision"][name] == "fp32"
    llm = tuning["llm"]
    assert set(llm) == set(b.manifest.llm) and tuning["quant"] == min(
        (q for q in llm if llm[q]["parity_ok"]), key=lambda q: llm[q]["request_ms"])
    for t in llm.values():                  # each type timed with weight repacking on and off; off is gated
        assert t["repack"] is True and isinstance(t["request_ms_other_repack"], float)
    with Interpreter.load(bundle_copy, threads=1) as gem:
        assert gem.quant == tuning["quant"] and gem.llm.repack == llm[gem.quant]["repack"]
    assert "repack on" in out and "repack off" in out

    code, out, err = run_main(main, [DICOM, "--bundle", str(bundle_copy), "--threads", "1", "--json",
                                     "--max-new-tokens", "4"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["backends"]["image_encoder"] == "onnxruntime-cpu"
    assert result["quant"] == tuning["quant"]
    code, out, _ = run_main(main, [DICOM, "--bundle", str(bundle_copy), "--threads", "2", "--json",
                                   "--max-new-tokens", "4"], capsys)
    assert code == 0 and json.loads(out)["backends"]["image_encoder"] == "onnxruntime-cpu"   # tuned at 1 thread
    code, out, _ = run_main(main, [DICOM, "--bundle", str(bundle_copy), "--threads", "2", "--json",
                                   "--encoder-precision", "int8", "--max-new-tokens", "4"], capsys)
    assert code == 0 and json.loads(out)["backends"]["ecg_encoder"] == "onnxruntime-cpu-int8"


def test_findings_parity_decides_the_default_and_tune_passes_over_types_that_miss_it(bundle_copy, tiny_gem7b_layout,
                                                                                     capsys):
    code, out, err = run_main(export_main, ["findings", "--bundle", str(bundle_copy), "--checkpoint",
                                            str(tiny_gem7b_layout), "--n", "3", "--seed", "11"], capsys)
    assert code == 0, err
    m = Bundle.open(bundle_copy).manifest
    findings = {q: p.findings for q, p in m.parity.llm.items()}
    assert set(findings) == set(m.llm) and all(f.n == 3 and f.seed == 11 for f in findings.values())
    assert all(0 <= f.findings_match <= min(f.conditions_match, f.numbers_match) for f in findings.values())
    matching = [q for q, f in findings.items() if f.share >= FINDINGS_MIN_SHARE and m.parity.llm[q].ok]
    assert m.default_quant == (min(matching, key=lambda q: m.files[m.llm[q]].bytes) if matching else "f16")
    assert f"default LLM type {m.default_quant}" in out

    code, out, err = run_main(main, ["tune", "--bundle", str(bundle_copy), "--threads", "1", "--runs", "1"], capsys)
    assert code == 0, err
    tuning = json.loads(bundle_copy.with_name("tiny.tune.json").read_text())
    assert all(tuning["llm"][q]["parity_ok"] == (q in matching) for q in m.llm)   # findings missed: not usable
    assert tuning["quant"] in (matching or list(m.llm))
    ms = {int(k): v for k, v in tuning["request_ms_by_draft_len"].items()}
    assert set(ms) == set(DRAFT_LENGTHS)
    # no draft length's findings compared (gem-export knobs): each is timed, none taken, however fast
    assert tuning["draft_len"] == 0 and {f"draft_len_{k}" for k in DRAFT_LENGTHS if k} <= set(tuning["gates"])
    assert "request by draft length" in out


def test_every_knob_is_gated_by_its_findings_as_the_llm_types_are(bundle_copy, tiny_gem7b_layout, capsys):
    """`gem-export knobs` compares each knob's reports with plain decoding's by findings, the manifest keeps the
    counts, `gem-export inspect` shows them, and `gem-run tune` takes int8 encoders, repacking off and a draft length
    (or only decoding repacked) only where they passed (FINDINGS_MIN_SHARE), as it takes LLM types."""
    from dataclasses import replace

    from gem_runtime.bundle import write_manifest
    from gem_runtime.manifest import FindingsParity

    _add_int8(bundle_copy, tiny_gem7b_layout, "0.9", capsys)
    quant = Bundle.open(bundle_copy).default_quant()
    code, out, err = run_main(export_main, ["knobs", "--bundle", str(bundle_copy), "--type", quant, "--n", "3",
                                            "--seed", "12", "--threads", "1"], capsys)
    assert code == 0, err
    m = Bundle.open(bundle_copy).manifest
    knobs = m.parity.knobs[quant]
    assert {"int8_encoders", "repack_off", "decode_repacked", "flash_attn_off"} <= set(knobs)
    if m.ngram_file:
        assert {f"draft_len_{k}" for k in DRAFT_LENGTHS if k} <= set(knobs)
    for f in knobs.values():
        assert f.n == 3 and f.seed == 12 and 0 <= f.findings_match <= min(f.conditions_match, f.numbers_match) <= 3
    code, out, _ = run_main(export_main, ["inspect", str(bundle_copy)], capsys)
    assert code == 0 and f"knobs with {quant}, findings as plain decoding's: " in out and "int8_encoders " in out

    # every type: int8 encoders and repacking off miss the gate, every draft length meets it
    miss, meet = FindingsParity(3, 12, 0, 0, 0, 0), FindingsParity(3, 12, 3, 3, 3, 3)
    gated = {q: {"int8_encoders": miss, "repack_off": miss, "decode_repacked": miss,
                 **{f"draft_len_{k}": meet for k in DRAFT_LENGTHS if k}} for q in m.llm}
    write_manifest(bundle_copy, replace(m, parity=replace(m.parity, knobs=gated)))
    code, out, err = run_main(main, ["tune", "--bundle", str(bundle_copy), "--threads", "1", "--runs", "1"], capsys)
    assert code == 0, err
    tuning = json.loads(bundle_copy.with_name("tiny.tune.json").read_text())
    assert set(tuning["encoder_precision"].values()) == {"fp32"} and "0/3 ECGs" in tuning["gates"]["int8_encoders"]
    assert all(t["repack"] and not t["decode_repacked"] for t in tuning["llm"].values())
    assert not any(k.startswith("draft_len") for k in tuning["gates"])
    assert "not taken (findings gate): int8_encoders with" in out
    # the tune file and its printout show every knob's gate, passed or not
    assert tuning["knob_findings"] == {k: f"{f.findings_match}/{f.n}" for k, f in gated[tuning["quant"]].items()}
    assert f"findings gate with {tuning['quant']} " in out and "int8_encoders 0/3" in out and "draft_len_1 3/3" in out


def test_a_timing_only_bundle_is_tuned_by_speed_alone_whichever_gates_its_random_weights_passed(bundle_copy, capsys):
    """gem-bench make-7b's random weights pass or fail a parity gate by a rounding flip; with the manifest's note
    (timing only) tune times every type and takes the fastest, and no knob is held back, as where a trained model's
    gates all pass. Without the note, the same gates decide as for any bundle."""
    from dataclasses import replace

    from gem_runtime.bundle import write_manifest

    m = Bundle.open(bundle_copy).manifest
    code, out, err = run_main(main, ["tune", "--bundle", str(bundle_copy), "--threads", "1", "--runs", "1"], capsys)
    assert code == 0, err
    timed = json.loads(bundle_copy.with_name("tiny.tune.json").read_text())["llm"]
    passing = max(timed, key=lambda q: timed[q]["request_ms"])
    # only the slowest type passed its gate: a gated bundle takes it, a timing-only one the fastest it times
    llm = {q: replace(p, ok=q == passing) for q, p in m.parity.llm.items()}
    for note in (None, "random weights, timing only"):
        write_manifest(bundle_copy, replace(m, parity=replace(m.parity, llm=llm), note=note))
        code, out, err = run_main(main, ["tune", "--bundle", str(bundle_copy), "--threads", "1", "--runs", "1"],
                                  capsys)
        assert code == 0, err
        tuning = json.loads(bundle_copy.with_name("tiny.tune.json").read_text())
        fastest = min(tuning["llm"], key=lambda q: tuning["llm"][q]["request_ms"])
        assert tuning["quant"] == (passing if note is None else fastest), (note, tuning["llm"])
        assert ("findings gate" in out) == (note is None) and (not tuning["gates"]) == (note is not None)
