"""gem_train.real_corpus: the deterministic split of the shared labelled records, the corpus in the simulator
corpus's format, reports in its sentences that agree with the labels and with our measurements, held-out folders."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from gem_train import corpus
from gem_train.real_corpus import HELDOUT, TRAIN, split_headers, split_of, write_heldout, write_real_corpus
from gem_train.real_labels import NSR, SB, SR, STACH, RecordLabels, labelled_headers, read_labels
from gem_train.scoring import parse_diagnoses, parse_heart_rate, parse_rhythm


def _labels(record: str, source: str) -> RecordLabels:
    return RecordLabels(record, source, None, None, frozenset(), frozenset(), ())


def test_split_rule():
    assert [split_of(_labels(str(n), "ludb")) for n in (1, 3, 5, 7, 9, 11)] == [TRAIN, HELDOUT] * 3
    assert split_of(_labels("JS20000", "cinc")) == TRAIN and split_of(_labels("JS20001", "cinc")) == HELDOUT
    assert split_of(_labels("A0002", "cinc")) == TRAIN and split_of(_labels("A0001", "cinc")) == HELDOUT


def test_report_text_keeps_the_simulator_corpus():
    """report_text (the simulator's sentences, shared with the real corpus) writes the simulator's records as the
    code before it did: the texts of records 0-39 of seed 1 (10 with ST elevation), hashed before the refactor
    (e247fb02...f74d82ebf1) and again when issue 24 moved the simulator's truth to where the dipole leaves zero."""
    texts = "\n".join(corpus.make_record(i, corpus.record_rng(1, i))[2]["conversations"][1]["value"]
                      for i in range(40))
    assert hashlib.sha256(texts.encode()).hexdigest() == \
        "c71cb6670af925db1d5ab5b0e6262465d67956c27e6835e5a44ca7175ae0ab4e"


@pytest.fixture(scope="module")
def labelled(shared_data):
    path = shared_data / "real" / "labelled"
    if not path.is_dir():
        pytest.skip(f"labelled records not found in {path}")
    return path


def test_split_is_disjoint_and_complete(labelled):
    split = split_headers([labelled])
    names = lambda hs: {h.stem for h in hs}      # noqa: E731
    assert not names(split[TRAIN]) & names(split[HELDOUT])
    assert names(split[TRAIN]) | names(split[HELDOUT]) == {h.stem for h in labelled_headers(labelled)}
    assert "JS20000" in names(split[TRAIN]) and "JS20001" in names(split[HELDOUT])


def test_corpus_on_the_labelled_records(labelled, tmp_path):
    out = tmp_path / "real"
    summary = write_real_corpus([labelled], out, copies=2, seed=0)
    records = json.loads((out / "records.json").read_text())
    assert summary["examples"] == len(records) > 10
    assert not set(summary["train_records"]) & set(summary["heldout_records"])
    assert json.loads((out / "split.json").read_text())["heldout_records"] == summary["heldout_records"]
    for r in records:
        mm = r["machine_measurements"]
        assert mm["record"] in summary["train_records"]
        text = r["conversations"][1]["value"]
        assert (out / (r["ecg"] + ".hea")).is_file() and (out / r["image"]).is_file()
        assert parse_rhythm(text) == mm["rhythm"]                      # the scorer reads what the corpus says
        assert parse_heart_rate(text) == pytest.approx(mm["hr_bpm"], abs=0.5)
        assert set(parse_diagnoses(text)) == set(mm["conditions"])
        assert text.endswith(f"Impression: {', '.join(c for c in corpus.CONDITIONS if c in mm['conditions'])}.")
        assert f"{mm['qrs_ms']} ms" in text and str(mm["qrs_axis_deg"]) in text
        if mm["pr_ms"] is not None:
            assert f"{mm['pr_ms']} ms" in text
        assert not re.search(r"isoelectric|narrow", text)            # no claim the measurements do not back
    # the same seed writes the same corpus
    again = write_real_corpus([labelled], tmp_path / "again", copies=2, seed=0, images=False)
    assert again["examples"] == summary["examples"]
    assert (tmp_path / "again" / "corpus.txt").read_text() == (out / "corpus.txt").read_text()
    first = records[0]["ecg"].split("/")[1]
    a = np.fromfile(out / "ecg" / f"{first}.dat", "<i2")
    b = np.fromfile(tmp_path / "again" / "ecg" / f"{first}.dat", "<i2")
    assert np.array_equal(a, b)


def test_heldout_links(labelled, tmp_path):
    [folder] = write_heldout([labelled], tmp_path / "heldout")
    held = {h.stem for h in labelled_headers(folder)}
    assert held == {h.stem for h in split_headers([labelled])[HELDOUT]}
    assert all((folder / f"{s}.mat").exists() for s in held)
    assert Path(folder / "JS20001.hea").resolve() == (labelled / "JS20001.hea").resolve()


def test_mix_draws_its_share_and_trains(tiny_corpus, tmp_path, capsys):
    """`gem-train fit --mix DIR:SHARE`: that share of each batch from the other corpus; a bad one is one line."""
    import random

    from clirun import run_main
    from gem_train.cli import main
    from gem_train.train import _draw_mixed

    class Other:
        def __len__(self):
            return 5

    other = Other()
    rng = random.Random(0)
    picks = [p for _ in range(200) for p in _draw_mixed(rng, list(range(24)), 8, [], [(other, 0.3)])]
    assert 0.25 < sum(d is other for d, _ in picks) / len(picks) < 0.35
    assert all(0 <= i < 5 for d, i in picks if d is other)
    for bad in (f"{tmp_path}:0.3", f"{tiny_corpus}:1.5", str(tiny_corpus)):
        code, _, err = run_main(main, ["fit", "--preset", "tiny", "--data", str(tiny_corpus), "--out",
                                       str(tmp_path / "o"), "--mix", bad, "--max-steps", "1"], capsys)
        assert code == 2 and "--mix" in err, err
    code, out, err = run_main(main, ["fit", "--preset", "tiny", "--data", str(tiny_corpus), "--out",
                                     str(tmp_path / "o"), "--mix", f"{tiny_corpus}:0.5", "--max-steps", "2"], capsys)
    assert code == 0 and "24 mixed in at 50%" in err, err
    assert (tmp_path / "o" / "model.safetensors").is_file()


def test_a_record_continued_with_its_own_beats_keeps_its_rhythm(ludb):
    """continue_with_beats: the joined record has the recording's RR at the seam (no short or long beat) and its QRS
    shape, so a rate measured on it is the recording's."""
    from gem_runtime.measure import measure_ecg
    from gem_runtime.measure.detection import detect_r_peaks
    from gem_runtime.readers import read_ecg
    from gem_runtime.constants import LEADS
    from gem_train.real_corpus import continue_with_beats

    ecg = read_ecg(ludb / "131.hea")
    signal = ecg.signal[[ecg.leads.index(lead) for lead in LEADS]]
    longer = continue_with_beats(signal, ecg.fs, 7500)
    assert longer.shape[0] == 12 and longer.shape[1] >= 7500
    np.testing.assert_array_equal(longer[:, :4000], signal[:, :4000])        # the recording first, unchanged
    rr = np.diff(detect_r_peaks(longer, ecg.fs))
    rr0 = np.diff(detect_r_peaks(signal, ecg.fs))
    assert rr.min() >= 0.9 * rr0.min() and rr.max() <= 1.1 * rr0.max()       # no beat lost or doubled at the seam
    assert measure_ecg(longer[:, -5000:], ecg.fs).hr_bpm == pytest.approx(measure_ecg(signal, ecg.fs).hr_bpm,
                                                                          rel=0.03)
    assert continue_with_beats(np.zeros((12, 5000)), ecg.fs, 7500) is None   # no beats, nothing to continue with


def test_a_stretched_copy_moves_the_rate_and_names_the_sinus_class_from_it(ludb):
    """--stretch: copy k > 0 plays f x 10 s in 10 s, so the measured rate is f times the recording's, and a sinus
    rhythm's class follows the measured rate, not the label; copy 0 stays as recorded."""
    from gem_runtime.measure import measure_ecg
    from gem_runtime.readers import read_ecg
    from gem_runtime.constants import LEADS
    from gem_train.real_corpus import augment, copy_rng, report_for
    from gem_train.real_labels import NSR

    ecg = read_ecg(ludb / "131.hea")
    signal = ecg.signal[[ecg.leads.index(lead) for lead in LEADS]]
    x0, f0 = augment(signal, ecg.fs, 0, 4, copy_rng(0, "131", 0), stretch=(0.85, 0.9))
    hr0 = measure_ecg(x0, 500).hr_bpm
    assert f0 == 1.0
    for k in (1, 2, 3):
        x, f = augment(signal, ecg.fs, k, 4, copy_rng(0, "131", k), stretch=(0.85, 0.9))
        assert x.shape == (12, 5000) and 0.85 <= f <= 0.9
        assert measure_ecg(x, 500).hr_bpm == pytest.approx(hr0 * f, rel=0.03)
    # a 10 s record played faster is first continued with its own beats: the rate rises by f
    fast, f = augment(signal, ecg.fs, 1, 4, copy_rng(0, "131", 1), stretch=(1.1, 1.15))
    assert fast.shape == (12, 5000) and 1.1 <= f <= 1.15
    assert measure_ecg(fast, 500).hr_bpm == pytest.approx(hr0 * f, rel=0.03)
    # a normal sinus rhythm slowed below 60 bpm is written as a sinus bradycardia
    labels = RecordLabels("131", "ludb", None, NSR, frozenset(), frozenset(), ())
    slow, f = augment(signal, ecg.fs, 1, 4, copy_rng(0, "131", 1), stretch=(0.85, 0.85))
    hr = measure_ecg(slow, 500).hr_bpm
    text, mm = report_for(labels, slow, copy_rng(0, "131", 1), rate_class=True)
    assert hr0 >= 60 > hr                                # LUDB 131: a normal sinus rhythm at 66 bpm
    assert mm["rhythm"] == "sinus bradycardia" and parse_rhythm(text) == "sinus bradycardia"


def test_atrial_fibrillation_made_from_a_sinus_records_own_beats(ludb):
    """gem_train.real_af on LUDB 1 (sinus rhythm, training half): its complexes at irregularly irregular RR, no
    consistent P wave, Einthoven's relations kept, and our AF check supports what the copy will be labelled."""
    from gem_runtime.constants import ECG_FS
    from gem_runtime.diagnosis import SUPPORTED, check_diagnoses
    from gem_runtime.measure import measure_ecg
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg
    from gem_train.real_af import af_from_beats

    x, _ = preprocess_ecg(read_ecg(ludb / "1.hea"))
    before = measure_ecg(x, ECG_FS)
    y = af_from_beats(x, np.random.default_rng(3))
    assert y.shape == x.shape and np.isfinite(y).all()
    einthoven = lambda z: np.abs(z[2] - (z[1] - z[0])).max()                  # noqa: E731  III = II - I
    assert einthoven(y) <= einthoven(x) + 1e-4                                 # as well as the record holds it
    after = measure_ecg(y, ECG_FS)
    assert before.pr_ms is not None and after.pr_ms is None                   # the P wave is gone
    assert abs(after.qrs_ms - before.qrs_ms) <= 12                             # the same complexes
    [af] = check_diagnoses("atrial fibrillation", after)
    assert af.verdict == SUPPORTED, af.reason
    assert np.array_equal(y, af_from_beats(x, np.random.default_rng(3)))     # one generator, one copy


@pytest.mark.parametrize("kind, rhythm", [("af", "atrial fibrillation"), ("flutter", "atrial flutter")])
def test_made_rhythms_come_only_from_sinus_training_records(labelled, tmp_path, kind, rhythm):
    summary = write_real_corpus([labelled], tmp_path / kind, copies=1, seed=0, images=False, **{f"{kind}_copies": 2})
    records = json.loads((tmp_path / kind / "records.json").read_text())
    made = [r for r in records if re.search(rf"-{kind}\d$", r["id"])]
    rhythm_of = {h.stem: read_labels(h).rhythm for h in labelled_headers(labelled)}
    assert made and summary[f"{kind}_copies"] == 2
    for r in made:
        mm, text = r["machine_measurements"], r["conversations"][1]["value"]
        assert mm["rhythm"] == rhythm and mm["pr_ms"] is None and "PR" not in text
        assert mm["record"] in summary["train_records"]
        assert rhythm_of[mm["record"]] in (NSR, SB, STACH, SR)
        assert rhythm in text.lower() and f"Impression: {rhythm}" in text
