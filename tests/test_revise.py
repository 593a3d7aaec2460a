"""gem-run --revise-rhythm on the committed demo model and real cart files: a rhythm statement the measurements
contradict is revised to the model's own most likely report they allow; a report without one is left as the model
wrote it. GE MUSE example2 is a regular sinus rhythm at 65 bpm (12SL) that the demo model (step 2i) calls atrial
fibrillation (benchmarks/results/cart_diagnoses.json)."""
import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
from clirun import run_main
from pydicom.data import get_testdata_file

from gem_runtime.cli import main
from gem_runtime.constants import DEFAULT_QUESTION
from gem_runtime.prompt import build_prompt, prompt_ids, split_prompt
from gem_runtime.diagnosis import CONTRADICTED, RHYTHM_FINDINGS, check_diagnoses
from gem_runtime.revise import LlamaScorer, revise_rhythm, text_of

MUSE_AF_CALLED = "real/muse/example2.xml"


@pytest.fixture(scope="module")
def plain_and_revised(demo, shared_data):
    ecg = shared_data / MUSE_AF_CALLED
    return demo.interpret(ecg, max_new_tokens=160), demo.interpret(ecg, max_new_tokens=160, revise=True)


def _rhythm_contradicted(result) -> list:
    return [v for v in result.diagnoses if v.finding in RHYTHM_FINDINGS and v.verdict == CONTRADICTED]


def test_the_premise_the_model_calls_this_sinus_rhythm_atrial_fibrillation(plain_and_revised):
    plain, _ = plain_and_revised
    assert [v.finding for v in _rhythm_contradicted(plain)] == ["atrial_fibrillation"] * 2, plain.text


def test_the_revised_report_states_a_rhythm_the_measurements_allow(plain_and_revised):
    plain, revised = plain_and_revised
    assert revised.model_text == plain.text and revised.text != plain.text
    assert not _rhythm_contradicted(revised), revised.text
    [rev] = revised.revisions
    assert rev.original_finding == "atrial_fibrillation" and rev.reason and "RR regular" in rev.reason
    assert rev.revised_finding in ("normal_sinus_rhythm", "sinus_bradycardia", "sinus_tachycardia")
    assert rev.revised.lower() in revised.text.lower()
    # the ids are the text, and the model's own up to where the revision starts
    assert revised.token_ids[:rev.token_index] == plain.token_ids[:rev.token_index]
    assert revised.token_ids[rev.token_index] != plain.token_ids[rev.token_index]
    # what was tried is recorded: the model's next first words, each with its log-probability and what was wrong
    assert rev.tried and all(t["logprob"] <= 0 for t in rev.tried)
    assert rev.tried[-1]["contradicted"] == [] and all(t["contradicted"] for t in rev.tried[:-1])


def test_a_follow_up_continues_the_revised_report(demo, plain_and_revised):
    _, revised = plain_and_revised
    answer = demo.ask(revised, "What is the heart rate?", max_new_tokens=40)
    assert answer.new_tokens > 0 and answer.text
    assert demo.conversation(revised.ecg_id).turns[0][1] == revised.text


def test_the_name_alone_is_replaced_when_no_sentence_is_tried(demo, shared_data):
    """max_openers=0: the fallback, each contradicted name replaced by the one the model scores highest there."""
    result = demo.interpret(shared_data / MUSE_AF_CALLED, max_new_tokens=160)
    pos = result.prompt_positions
    last_prompt_id = split_prompt(prompt_ids(build_prompt(DEFAULT_QUESTION), demo.llm.tokenize))[1][-1]
    revised = revise_rhythm(LlamaScorer(demo.llm, pos, last_prompt_id, result.token_ids), result.token_ids,
                            result.measurements, device=result.device, max_new_tokens=160, max_openers=0)
    assert revised.revisions and all(r.method == "name" for r in revised.revisions)
    text, _ = text_of(LlamaScorer(demo.llm, pos, last_prompt_id, revised.ids), revised.ids)
    rhythm = [v for v in check_diagnoses(text, result.measurements, result.device)
              if v.finding in ("atrial_fibrillation", "normal_sinus_rhythm", "sinus_bradycardia", "sinus_tachycardia")]
    assert rhythm and not any(v.finding == "atrial_fibrillation" for v in rhythm), text
    for r in revised.revisions:
        scored = [t for t in r.tried if "logprob" in t]
        assert scored and r.revised.lower() == max(scored, key=lambda t: t["logprob"])["name"]
        assert {t["name"] for t in r.tried if t.get("contradicted")} >= {"atrial flutter"}


def test_a_report_the_measurements_do_not_contradict_is_left_as_written(demo):
    ecg = get_testdata_file("waveform_ecg.dcm")
    plain = demo.interpret(ecg, max_new_tokens=160)
    assert not _rhythm_contradicted(plain), plain.text
    revised = demo.interpret(ecg, max_new_tokens=160, revise=True)
    assert revised.text == plain.text and revised.revisions == [] and revised.model_text is None
    assert "revisions" not in revised.to_dict()


def test_gem_run_shows_the_revision_in_text_and_json(shared_data, capsys):
    ecg = str(shared_data / MUSE_AF_CALLED)
    code, out, err = run_main(main, [ecg, "--revise-rhythm", "--json", "--threads", "2", "--max-new-tokens", "160"],
                              capsys)
    assert code == 0, err
    body = json.loads(out)
    assert body["model_text"] != body["text"] and body["revisions"][0]["original_finding"] == "atrial_fibrillation"
    code, out, err = run_main(main, [ecg, "--revise-rhythm", "--threads", "2", "--max-new-tokens", "160"], capsys)
    assert code == 0, err
    assert '\nrevised: "atrial fibrillation" -> ' in out and f"revised report: {body['text']}" in out


def _batch(in_dir, out_dir, *extra: str) -> dict[str, dict]:
    p = subprocess.run([sys.executable, "-m", "gem_runtime.cli", "batch", str(in_dir), "--out", str(out_dir),
                        "--max-new-tokens", "160", "--threads", "2", *extra], capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr
    assert "2 done, 0 skipped, 0 refused" in p.stdout, p.stdout
    return {f.name: json.loads(f.read_text()) for f in sorted(out_dir.glob("*.json"))}


def _two_records(shared_data, folder):
    """GE MUSE example2 (its rhythm statement contradicted, revised) and pydicom's normal cart ECG (not)."""
    folder.mkdir()
    shutil.copy(shared_data / MUSE_AF_CALLED, folder / "example2.xml")
    shutil.copy(get_testdata_file("waveform_ecg.dcm"), folder / "waveform_ecg.dcm")
    return folder


def test_gem_run_batch_revises_alone_and_decoded_together(shared_data, tmp_path):
    """--revise-rhythm in gem-run batch: one record at a time, and with --decode-batch (the contradicted record
    revised from its sequence's KV, first or second in the batch): the same revised report either way; the other
    record as without the flag."""
    folder = _two_records(shared_data, tmp_path / "in")
    plain = _batch(folder, tmp_path / "plain", "--decode-batch", "2")
    alone = _batch(folder, tmp_path / "alone", "--revise-rhythm")
    trail = tmp_path / "audit.jsonl"
    together = _batch(folder, tmp_path / "together", "--revise-rhythm", "--decode-batch", "2", "--audit", str(trail))
    entries = [json.loads(line) for line in trail.read_text().splitlines()]
    assert len(entries) == 2 and all(e["settings"]["revise_rhythm"] is True for e in entries), entries
    af, normal = "example2.xml.json", "waveform_ecg.dcm.json"
    assert "atrial fibrillation" in plain[af]["text"].lower() and "revisions" not in plain[af]
    for revised in (alone, together):
        assert revised[af]["model_text"] == plain[af]["text"] != revised[af]["text"]
        assert revised[af]["revisions"][0]["original_finding"] == "atrial_fibrillation"
        assert not [d for d in revised[af]["diagnoses"]
                    if d["finding"] in RHYTHM_FINDINGS and d["verdict"] == CONTRADICTED], revised[af]["text"]
        assert revised[af]["batch"]["revise_rhythm"] is True and "revise_rhythm" not in plain[af]["batch"]
        assert revised[normal]["text"] == plain[normal]["text"] and "revisions" not in revised[normal]
    assert together[af]["token_ids"] == alone[af]["token_ids"]
    # each record's decode is the shared loop's; the revised one adds its revision's
    assert together[af]["timings_ms"]["decode"] > together[normal]["timings_ms"]["decode"]
    # the contradicted record decoded as the second sequence: revised from its own KV, copied into sequence 0
    (folder / "waveform_ecg.dcm").rename(folder / "0_waveform_ecg.dcm")
    second = _batch(folder, tmp_path / "second", "--revise-rhythm", "--decode-batch", "2")
    assert second[af]["token_ids"] == alone[af]["token_ids"] and second[af]["text"] == alone[af]["text"]
    assert second["0_waveform_ecg.dcm.json"]["text"] == plain[normal]["text"]


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the scale extra")
def test_gem_run_batch_on_ray_revises_as_the_local_engine(shared_data, tmp_path):
    folder = _two_records(shared_data, tmp_path / "in")
    local = _batch(folder, tmp_path / "local", "--revise-rhythm")
    ray = _batch(folder, tmp_path / "ray", "--revise-rhythm", "--engine", "ray", "--workers", "1")
    assert ray["example2.xml.json"]["revisions"] and ray["example2.xml.json"]["batch"]["revise_rhythm"] is True
    for name, result in local.items():
        assert ray[name]["token_ids"] == result["token_ids"] and ray[name]["text"] == result["text"], name
        assert ray[name].get("revisions") == result.get("revisions"), name


def test_a_name_the_model_never_writes_is_not_put_in(demo, ludb):
    """LUDB 103, a typical flutter: the demo model says sinus tachycardia, the flutter waves contradict every sinus
    name and fibrillation, and the one name left, atrial flutter, is one the model never learned (its score is far
    under MIN_NAME_LOGPROB): the statement stays as written and flagged, not replaced by words the model would
    continue as nonsense."""
    plain = demo.interpret(ludb / "103.hea", max_new_tokens=160)
    revised = demo.interpret(ludb / "103.hea", max_new_tokens=160, revise=True)
    flagged = _rhythm_contradicted(plain)
    assert flagged and all("flutter waves" in v.reason for v in flagged), plain.text
    assert revised.revisions == [] and revised.text == plain.text
    assert "flutter" not in revised.text.lower()
