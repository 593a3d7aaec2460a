"""gem-run serve as a client sees it: a real uvicorn process on a free localhost port with the tiny bundle, real
uploads (pydicom's DICOM, a WFDB record as two files), server-sent events, follow-ups from cached state, metrics,
and every failure as its status code: 401, 404, 413, 422, 429, 504; SIGTERM finishes what is in flight."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from pydicom.data import get_testdata_file

from clirun import free_port, running

DICOM = Path(get_testdata_file("waveform_ecg.dcm"))


@contextmanager
def serving(bundle: Path, *args: str):
    """`gem-run serve --bundle B ARGS` in a subprocess; yields (base url, process); SIGTERM at the end."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {args[args.index('--token') + 1]}"} if "--token" in args else {}

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/v1/health", headers=headers, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    with running(["serve", "--bundle", bundle, "--port", port, "--threads", "1", *args], ready, "gem-run serve") as proc:
        yield base, proc


@pytest.fixture(scope="module")
def server(tiny_bundle):
    with serving(tiny_bundle, "--queue", "4") as (base, proc):
        yield base


def _interpret(base: str, path: Path = DICOM, **fields) -> httpx.Response:
    with open(path, "rb") as f:
        return httpx.post(f"{base}/v1/interpret", files={"file": (path.name, f)},
                          data={"max_new_tokens": "24", **fields}, timeout=120)


def _sse(response: httpx.Response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[6:])))
    return events


def test_health_names_the_bundle_and_the_queue(server):
    h = httpx.get(f"{server}/v1/health").json()
    assert h["status"] == "ok" and len(h["bundle_id"]) == 16 and h["queue_limit"] == 4
    assert h["backends"]["llm"].startswith("llama.cpp") and h["threads"] == 1


def test_interpret_answers_gem_runs_json_plus_an_ecg_id_and_the_image(server, tiny_bundle):
    r = _interpret(server)
    assert r.status_code == 200, r.text
    body = r.json()
    cli = subprocess.run([sys.executable, "-m", "gem_runtime.cli", str(DICOM), "--bundle", str(tiny_bundle),
                          "--json", "--max-new-tokens", "24", "--threads", "1"], capture_output=True, text=True)
    expected = json.loads(cli.stdout)
    assert set(body) == set(expected) - {"load_ms"} | {"ecg_id", "image_url"}
    assert body["text"] == expected["text"] and body["measurements"] == expected["measurements"]
    assert body["device"]["model"] == "el250" and abs(body["measurements"]["hr_bpm"] - 61.1) < 1
    png = httpx.get(server + body["image_url"])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_streamed_tokens_make_the_final_text(server):
    with open(DICOM, "rb") as f, httpx.stream("POST", f"{server}/v1/interpret", files={"file": ("e.dcm", f)},
                                              data={"max_new_tokens": "16"},
                                              headers={"Accept": "text/event-stream"}, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r)
    tokens = [d["text"] for name, d in events if name == "token"]
    assert len(tokens) >= 2 and events[-1][0] == "result"
    assert "".join(tokens).strip() == events[-1][1]["text"] and events[-1][1]["ecg_id"]


def test_a_follow_up_evaluates_only_the_new_turn_and_survives_another_ecg(server):
    first = _interpret(server).json()
    ask = lambda ecg_id: httpx.post(f"{server}/v1/ecgs/{ecg_id}/ask", timeout=120,     # noqa: E731
                                    json={"question": "Is the QT interval prolonged?", "max_new_tokens": 12})
    a = ask(first["ecg_id"])
    assert a.status_code == 200, a.text
    answer = a.json()
    assert answer["prompt_positions"] < 40 < first["prompt_positions"]          # the turn, not the ECG again
    t = answer["timings_ms"]
    assert t["read"] == t["render"] == t["ecg_encoder"] == t["image_encoder"] == 0.0 and answer["new_tokens"] > 0
    # the same first turn again, another ECG in between: its parked state restored gives the same answer
    again = _interpret(server).json()
    _interpret(server, max_new_tokens="8")
    b = ask(again["ecg_id"]).json()
    assert again["text"] == first["text"] and b["text"] == answer["text"] and b["token_ids"] == answer["token_ids"]


def test_unknown_and_evicted_ecgs_are_404_with_the_reason(tiny_bundle):
    with serving(tiny_bundle, "--state-mb", "0") as (base, _):
        old = _interpret(base).json()["ecg_id"]
        _interpret(base)                                          # parks nothing: no memory for it
        gone = httpx.post(f"{base}/v1/ecgs/{old}/ask", json={"question": "rate?"})
        unknown = httpx.post(f"{base}/v1/ecgs/0123/ask", json={"question": "rate?"})
    assert gone.status_code == 404 and "evicted" in gone.json()["error"]
    assert unknown.status_code == 404 and "not known" in unknown.json()["error"]


def test_measure_answers_gem_run_measure_json(server):
    with open(DICOM, "rb") as f:
        r = httpx.post(f"{server}/v1/measure", files={"file": ("waveform_ecg.dcm", f)}, timeout=60)
    cli = subprocess.run([sys.executable, "-m", "gem_runtime.cli", "measure", str(DICOM), "--json"],
                         capture_output=True, text=True)
    ours, theirs = r.json(), json.loads(cli.stdout)
    assert r.status_code == 200 and {**ours, "file": ""} == {**theirs, "file": ""}


def test_a_wfdb_record_comes_as_its_header_and_signal_file(server, ptb):
    files = [("file", (p.name, p.read_bytes())) for p in (ptb, ptb.with_suffix(".dat"), ptb.with_suffix(".xyz"))]
    r = httpx.post(f"{server}/v1/measure", files=files, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["file"] == "s0010_re.hea, s0010_re.dat, s0010_re.xyz" and r.json()["hr_bpm"] > 70


def test_client_file_names_do_not_reach_outside_the_upload_folder(server, tmp_path):
    with open(DICOM, "rb") as f:
        r = httpx.post(f"{server}/v1/measure", files={"file": ("../../../../tmp/evil.dcm", f)}, timeout=60)
    assert r.status_code == 200 and r.json()["file"] == "evil.dcm"
    assert not Path("/tmp/evil.dcm").exists()


def test_bad_input_is_a_4xx_with_one_line(server, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("I, II, V1\n0.1, 0.2, 0.3\n")
    r = _interpret(server, text)
    assert r.status_code == 422 and r.json()["error"].startswith("notes.txt: unknown ECG format")
    assert "gem-upload" not in r.json()["error"]                  # the user's name, not our temporary folder
    assert httpx.post(f"{server}/v1/interpret", data={"question": "hi"}).status_code == 400
    r = _interpret(server, max_new_tokens="many")
    assert r.status_code == 400 and "max_new_tokens" in r.json()["error"]
    ecg_id = _interpret(server, max_new_tokens="2").json()["ecg_id"]      # an unknown id is 404 before its body
    r = httpx.post(f"{server}/v1/ecgs/{ecg_id}/ask", content=b"not json",
                   headers={"content-type": "application/json"})
    assert r.status_code == 400
    metrics = httpx.get(f"{server}/metrics").text
    assert 'gem_requests_total{endpoint="interpret",status="422"}' in metrics
    assert 'gem_errors_total{kind="unreadable_ecg"}' in metrics


def test_metrics_are_prometheus_text(server):
    _interpret(server)
    text = httpx.get(f"{server}/metrics").text
    for needle in ('gem_requests_total{endpoint="interpret",status="200"}',
                   'gem_stage_seconds_bucket{le="0.005",stage="prefill"}', "gem_queue_depth 0.0", "gem_generated_tokens_total",
                   "gem_conversation_states_bytes"):
        assert needle in text, needle


def test_limits_413_429_504_and_the_token(tiny_bundle):
    with serving(tiny_bundle, "--max-bytes", "1000") as (base, _):
        r = _interpret(base)
        assert r.status_code == 413 and "1000 byte limit" in r.json()["error"]
    with serving(tiny_bundle, "--queue", "0") as (base, _):
        answers: list[httpx.Response] = []
        threads = [threading.Thread(target=lambda: answers.append(_interpret(base, max_new_tokens="64")))
                   for _ in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        codes = sorted(r.status_code for r in answers)
        busy = [r for r in answers if r.status_code == 429]
        assert codes[0] == 200 and busy and int(busy[0].headers["Retry-After"]) >= 1, codes
    with serving(tiny_bundle, "--timeout", "0.001") as (base, _):
        r = _interpret(base)
        assert r.status_code == 504 and "timeout" in r.json()["error"]
    with serving(tiny_bundle, "--token", "s3cret") as (base, _):
        assert httpx.get(f"{base}/v1/health").status_code == 401             # a probe sends the token too
        assert httpx.get(f"{base}/metrics").status_code == 401
        assert _interpret(base).status_code == 401
        with open(DICOM, "rb") as f:
            r = httpx.post(f"{base}/v1/interpret", files={"file": ("e.dcm", f)}, data={"max_new_tokens": "4"},
                           headers={"Authorization": "Bearer s3cret"}, timeout=120)
        assert r.status_code == 200


def test_binding_beyond_this_machine_needs_a_token(tiny_bundle):
    p = subprocess.run([sys.executable, "-m", "gem_runtime.cli", "serve", "--bundle", str(tiny_bundle),
                        "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.strip().count("\n") == 0 and "--token" in p.stderr


def test_a_client_that_leaves_cancels_its_generation(server):
    with open(DICOM, "rb") as f, httpx.stream("POST", f"{server}/v1/interpret", files={"file": ("e.dcm", f)},
                                              data={"max_new_tokens": "2048"},
                                              headers={"Accept": "text/event-stream"}, timeout=120) as r:
        next(r.iter_lines())                                      # the first token is out: leave
    for _ in range(100):
        metrics = httpx.get(f"{server}/metrics").text
        if 'gem_errors_total{kind="client_disconnected"} 1.0' in metrics and "gem_queue_depth 0.0" in metrics:
            break
        time.sleep(0.1)
    assert 'gem_errors_total{kind="client_disconnected"} 1.0' in metrics and "gem_queue_depth 0.0" in metrics


def test_sigterm_finishes_the_request_in_flight_and_exits_0(tiny_bundle):
    with serving(tiny_bundle) as (base, proc):
        events: list = []

        def stream():
            with open(DICOM, "rb") as f, httpx.stream(
                    "POST", f"{base}/v1/interpret", files={"file": ("e.dcm", f)}, data={"max_new_tokens": "64"},
                    headers={"Accept": "text/event-stream"}, timeout=120) as r:
                for line in r.iter_lines():
                    events.append(line)

        client = threading.Thread(target=stream)
        client.start()
        while not any(line.startswith("event: token") for line in events):
            time.sleep(0.01)
        proc.send_signal(signal.SIGTERM)
        client.join(60)
        assert proc.wait(timeout=60) == 0
    assert "event: result" in events
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/v1/health", timeout=2)


def test_gem_run_chat_answers_follow_ups_in_a_terminal(tiny_bundle):
    p = subprocess.run([sys.executable, "-m", "gem_runtime.cli", "chat", str(DICOM), "--bundle", str(tiny_bundle),
                        "--max-new-tokens", "12", "--threads", "1"],
                       input="Is the rhythm regular?\nWhat is the rate?\n\n", capture_output=True, text=True,
                       timeout=180, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("gem> ") == 2 and p.stdout.count("you> ") == 3


def test_gem_run_chat_refuses_a_question_past_the_context_or_not_text_and_goes_on(tiny_bundle):
    """It said "the conversation is kept, ask a shorter question" and exited 2, the conversation gone; a question
    that is not UTF-8 (a surrogate-escaped byte) was a UnicodeEncodeError from the tokenizer."""
    p = subprocess.run([sys.executable, "-m", "gem_runtime.cli", "chat", str(DICOM), "--bundle", str(tiny_bundle),
                        "--max-new-tokens", "12", "--threads", "1"],
                       input=b"why " * 5000 + b"\nrate \xff?\nWhat is the rate?\n\n", capture_output=True, timeout=180,
                       env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8:surrogateescape"})
    err, out = p.stderr.decode(errors="replace"), p.stdout.decode(errors="replace")
    assert p.returncode == 0, err
    refusals = [line for line in err.splitlines() if line.startswith("gem-run chat: ")]
    assert len(refusals) == 2 and refusals[0].startswith("gem-run chat: the question's turn is ") \
        and refusals[0].endswith("ask a shorter question"), err
    assert refusals[1].endswith("an unpaired surrogate, not text"), err           # a byte that is not UTF-8
    assert out.count("gem> ") == 3 and out.count("you> ") == 4 and "Traceback" not in err


def test_a_short_soak_answers_every_request_and_holds_its_memory(tiny_bundle):
    from benchmarks.serve_bench import soak

    result = soak(tiny_bundle, requests=60, clients=4, max_new_tokens=8, log=lambda m: None)
    assert sum(result.statuses.values()) == 60 and result.server_exit_code == 0
    assert set(result.statuses) <= {"200", "422"} and result.by_kind["malformed"] == {"422": sum(
        result.by_kind["malformed"].values())}
    assert result.by_kind["followup"].get("200", 0) >= 1 and result.tokens > 0
    assert result.rss_growth < 0.25                         # 60 requests: the 1,000-request run is the benchmark


def test_revise_rhythm_revises_the_report_a_client_gets(shared_data):
    """The demo bundle on GE MUSE example2 (a regular sinus rhythm the demo model calls atrial fibrillation): with
    revise_rhythm the service answers the revised report, the model's own text beside it; a bad flag is a 400."""
    from gem_runtime.bundle import default_bundle

    muse = shared_data / "real" / "muse" / "example2.xml"
    with serving(default_bundle()) as (base, _):
        r = _interpret(base, muse, max_new_tokens="160", revise_rhythm="true")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_text"] != body["text"] and body["revisions"][0]["original_finding"] == "atrial_fibrillation"
        rhythm = ("atrial_fibrillation", "normal_sinus_rhythm", "sinus_bradycardia", "sinus_tachycardia")
        assert not [d for d in body["diagnoses"] if d["finding"] in rhythm and d["verdict"] == "contradicted"]
        plain = _interpret(base, muse, max_new_tokens="160").json()
        assert plain["text"] == body["model_text"] and "revisions" not in plain
        r = _interpret(base, muse, max_new_tokens="8", revise_rhythm="perhaps")
        assert r.status_code == 400 and "revise_rhythm" in r.json()["error"]


def test_serve_revise_rhythm_makes_it_the_default_a_request_may_turn_off(shared_data):
    from gem_runtime.bundle import default_bundle

    muse = shared_data / "real" / "muse" / "example2.xml"
    with serving(default_bundle(), "--revise-rhythm") as (base, _):
        revised = _interpret(base, muse, max_new_tokens="160").json()
        plain = _interpret(base, muse, max_new_tokens="160", revise_rhythm="false").json()
    assert revised["revisions"] and revised["model_text"] == plain["text"] and "revisions" not in plain
