"""The corpus: texts that parse back to their truth, WFDB files that round-trip, stable output."""

import json
import re

import numpy as np
import pytest
import wfdb

from gem_runtime.constants import DEFAULT_QUESTION, IMAGE_TOKEN, LEADS
from gem_train.corpus import (
    QUESTIONS, make_record, record_rng, write_corpus, write_wfdb,
)
from gem_train.scoring import parse_diagnoses, parse_heart_rate, parse_rhythm, score
from gem_train.simulate import AF, CONDITIONS, NSR, SB, STACH

# generic words that must only appear when a condition containing them is present
GENERIC = ("ST elevation", "bundle branch block", "axis deviation", "hypertrophy", "fibrillation",
           "AV block", "bradycardia", "tachycardia")


@pytest.fixture(scope="module")
def records():
    """300 (truth, record dict) pairs."""
    out = []
    for i in range(300):
        _, truth, record = make_record(i, record_rng(3, i))
        out.append((truth, record))
    return out


def answer(record) -> str:
    return record["conversations"][1]["value"]


def test_text_cites_rate_and_impression_parses_to_truth(records):
    for truth, record in records:
        text = answer(record)
        assert "\n" not in text and 40 <= len(text.split()) <= 110, text
        assert re.search(rf"\b{round(truth.hr_bpm)} bpm\b", text)
        assert parse_heart_rate(text) == round(truth.hr_bpm)
        assert re.search(rf"\b{round(truth.qrs_ms)} ms\b", text)
        assert re.search(rf"{round(truth.qrs_axis_deg)} degrees", text)
        assert text.endswith(f"Impression: {', '.join(truth.conditions)}.")
        assert parse_diagnoses(text) == set(truth.conditions)
        assert parse_rhythm(text) == truth.rhythm


def test_absent_findings_are_never_named(records):
    for truth, record in records:
        text = answer(record).lower()
        for name in CONDITIONS:
            if name not in truth.conditions:
                assert name.lower() not in text, (name, text)
        for word in GENERIC:
            if not any(word.lower() in c.lower() for c in truth.conditions):
                assert word.lower() not in text, (word, text)


def test_wording_varies(records):
    openings = {answer(r).split(" ")[0] for _, r in records}
    assert len(openings) >= 4
    assert len({answer(r) for _, r in records}) == len(records)


def test_questions(records):
    assert QUESTIONS[0] == DEFAULT_QUESTION and len(set(QUESTIONS)) == len(QUESTIONS) >= 3
    asked = [r["conversations"][0]["value"] for _, r in records]
    assert all(q.startswith(IMAGE_TOKEN + "\n") for q in asked)
    share = np.mean([q == f"{IMAGE_TOKEN}\n{DEFAULT_QUESTION}" for q in asked])
    assert 0.4 < share < 0.6
    assert {q.split("\n", 1)[1] for q in asked} == set(QUESTIONS)


def test_score_is_perfect_on_truth_and_worse_when_shuffled(records):
    texts = [answer(r) for _, r in records]
    truths = [r["machine_measurements"] for _, r in records]
    perfect = score(texts, truths)
    assert perfect["n"] == 300
    assert perfect["diagnosis_macro_f1"] == 1.0 and perfect["hamming_loss"] == 0.0
    assert all(f == 1.0 for f in perfect["diagnosis_f1"].values())
    assert all(c["fp"] == c["fn"] == 0 for c in perfect["diagnosis_counts"].values())
    assert sum(c["tp"] for c in perfect["diagnosis_counts"].values()) == sum(len(t["conditions"]) for t in truths)
    assert perfect["rhythm_accuracy"] == 1.0 and perfect["hr_within_10pct"] == 1.0
    assert perfect["hr_mae_bpm"] <= 0.5
    shuffled = score(list(np.random.default_rng(0).permutation(texts)), truths)
    assert shuffled["diagnosis_macro_f1"] < 0.5
    assert sum(c["fp"] + c["fn"] for c in shuffled["diagnosis_counts"].values()) > 0
    assert shuffled["rhythm_accuracy"] < 0.6 and shuffled["hr_within_10pct"] < 0.5
    with pytest.raises(ValueError, match="2 predictions for 1"):
        score(["a", "b"], truths[:1])


def test_stated_numbers_are_scored_against_the_truth(records):
    """Every text states rate, QRS, QT, QTc and axis (PR unless AF), each read back within tolerance; numbers
    from another record's text are mostly not."""
    texts = [answer(r) for _, r in records]
    truths = [r["machine_measurements"] for _, r in records]
    stated = score(texts, truths)["stated_numbers"]
    for quantity in ("hr_bpm", "qrs_ms", "qt_ms", "qtc_ms", "qrs_axis_deg"):
        assert stated[quantity]["stated"] == 1.0 and stated[quantity]["within_tolerance"] == 1.0, quantity
        assert stated[quantity]["mean_abs_error"] <= 0.5, quantity
    n_af = sum(t["rhythm"] == AF for t in truths)
    assert stated["pr_ms"]["stated"] == pytest.approx(1 - n_af / len(truths))
    assert stated["pr_ms"]["within_tolerance"] == 1.0
    shuffled = score(list(np.random.default_rng(0).permutation(texts)), truths)["stated_numbers"]
    assert shuffled["qrs_axis_deg"]["within_tolerance"] < 0.5 and shuffled["qrs_axis_deg"]["mean_abs_error"] > 20
    assert shuffled["pr_ms"]["within_tolerance"] < 1.0   # a PR stated for an AF record has no truth to meet


def test_parsers_without_impression():
    assert parse_diagnoses("Sinus rhythm with left axis deviation.") == {"left axis deviation"}
    assert parse_diagnoses("normal sinus rhythm ... Impression: sinus bradycardia.") == {SB}
    assert parse_rhythm("Sinus rhythm at 48 bpm.") == SB
    assert parse_rhythm("Sinus rhythm at 120 bpm.") == STACH
    # atrial flutter is in the corpus's language (real_corpus's made flutters): a report that names it names a rhythm
    assert parse_rhythm("Regular rhythm at 115 bpm, consistent with atrial flutter. Impression: atrial flutter.") \
        == "atrial flutter"
    assert parse_rhythm("Sinus rhythm at 75 bpm.") == NSR
    assert parse_rhythm("Irregularly irregular at 90 bpm.") == AF
    assert parse_rhythm("No idea.") is None and parse_heart_rate("No idea.") is None
    assert parse_heart_rate("rate 72.5 bpm") == 72.5


def test_fast_wfdb_writer_matches_wfdb_wrsamp(tmp_path):
    for i in range(3):
        signal, _, _ = make_record(i, record_rng(11, i))
        write_wfdb(signal, "ours", tmp_path)
        wfdb.wrsamp("ref", fs=500, units=["mV"] * 12, sig_name=list(LEADS),
                    p_signal=signal.T.astype(np.float64), fmt=["16"] * 12, adc_gain=[1000.0] * 12,
                    baseline=[0] * 12, write_dir=str(tmp_path))
        assert (tmp_path / "ours.dat").read_bytes() == (tmp_path / "ref.dat").read_bytes()
        ours = (tmp_path / "ours.hea").read_text().replace("ours", "ref")
        assert ours == (tmp_path / "ref.hea").read_text()


def test_write_corpus_round_trips_and_is_deterministic(tmp_path):
    n = 12
    path = write_corpus(tmp_path / "a", n, seed=5, images=False, progress=False)
    assert path == tmp_path / "a" / "records.json"
    written = json.loads(path.read_text())
    assert [r["id"] for r in written] == sorted({r["id"] for r in written}) and len(written) == n
    for i, record in enumerate(written):
        assert set(record) == {"id", "ecg", "image", "conversations", "machine_measurements"}
        assert record["image"] == f"images/{record['id']}.png"
        assert [t["from"] for t in record["conversations"]] == ["human", "gpt"]
        signal, fields = wfdb.rdsamp(str(tmp_path / "a" / record["ecg"]))
        assert signal.shape == (5000, 12) and fields["fs"] == 500
        assert fields["sig_name"] == list(LEADS) and fields["units"] == ["mV"] * 12
        expected, truth, _ = make_record(i, record_rng(5, i))
        assert np.abs(signal - expected.T).max() <= 0.0005 + 1e-9      # 1 uV resolution
        assert record["machine_measurements"] == json.loads(json.dumps(truth.to_dict()))
    lines = (tmp_path / "a" / "corpus.txt").read_text().splitlines()
    assert len(lines) == 2 * n and lines[1] == written[0]["conversations"][1]["value"]
    assert IMAGE_TOKEN not in "".join(lines)

    again = write_corpus(tmp_path / "b", n, seed=5, images=False, progress=False, workers=2)
    assert again.read_bytes() == path.read_bytes()
    assert (tmp_path / "b" / "corpus.txt").read_bytes() == (tmp_path / "a" / "corpus.txt").read_bytes()
    other = write_corpus(tmp_path / "c", n, seed=6, images=False, progress=False)
    assert other.read_bytes() != path.read_bytes()


def test_write_corpus_renders_images(tmp_path):
    pytest.importorskip("gem_runtime.render")
    from PIL import Image
    path = write_corpus(tmp_path, 2, seed=1, images=True, progress=False)
    for record in json.loads(path.read_text()):
        with Image.open(tmp_path / record["image"]) as image:
            assert image.format == "PNG" and image.width > image.height > 300


def test_bad_n_raises(tmp_path):
    with pytest.raises(ValueError, match="n must be >= 1"):
        write_corpus(tmp_path, 0, seed=1, progress=False)
