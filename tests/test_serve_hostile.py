"""gem-run serve against hostile and careless clients (issue 26), each as it was found: a real server process
on a loopback port with the tiny bundle, raw sockets where a client library would be too polite (a chunked
body that never ends, a body sent at one byte a second)."""
from __future__ import annotations

import http.client
import json
import select
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
from clirun import free_port, running, small_disk, terminate
from pydicom.data import get_testdata_file

DICOM = Path(get_testdata_file("waveform_ecg.dcm"))          # 291 kB
LIMIT = 1_000_000                                              # --max-bytes of the module's server


def _serving(bundle: Path, *args: str, token: str | None = None):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/v1/health", headers=headers, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    extra = ("--token", token) if token else ()
    return running(["serve", "--bundle", bundle, "--port", port, "--threads", "1", *args, *extra], ready,
                   "gem-run serve"), base, port


@pytest.fixture(scope="module")
def server(tiny_bundle):
    context, base, port = _serving(tiny_bundle, "--queue", "4", "--max-bytes", str(LIMIT))
    with context:
        yield base, port


def _upload(base: str, name: str, path: Path = DICOM, endpoint: str = "measure", **fields) -> httpx.Response:
    return httpx.post(f"{base}/v1/{endpoint}", files={"file": (name, path.read_bytes())}, data=fields, timeout=120)


def _chunked(port: int, path: str, first: bytes, content_type: str, total: int) -> tuple[int, bytes]:
    """POST `first`, then zeros in 64 KiB chunks up to `total` bytes, chunked, reading whenever the server says
    something: (body bytes sent before its answer, the answer's first bytes)."""
    chunk = b"a" * 65536
    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode() + b"%x\r\n%s\r\n" % (len(first), first))
        sent, deadline = 0, time.monotonic() + 120
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([s], [s] if sent < total else [], [], 1)
            if readable:
                return sent, s.recv(65536)
            if writable:
                s.sendall(frame)
                sent += len(chunk)
                if sent >= total:
                    s.sendall(b"0\r\n\r\n")                   # the end: wait for the answer
    raise AssertionError("no answer in 120 s")


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


# --- a full disk under TMPDIR: an upload was answered 500 "internal error (OSError)", logged as a bug ---
def test_an_upload_the_temporary_disk_has_no_room_for_is_507_with_retry_after(tiny_bundle, tmp_path, monkeypatch):
    with small_disk(tmp_path / "disk", "64k") as disk:               # the 291 kB upload cannot be written
        monkeypatch.setenv("TMPDIR", str(disk))
        context, base, _ = _serving(tiny_bundle)
        with context as proc:
            r = _upload(base, "ecg.dcm")
            health = httpx.get(f"{base}/v1/health", timeout=10).status_code
        terminate(proc)
        log = proc.stderr.read()
    assert r.status_code == 507 and r.headers["retry-after"] == "60", (r.status_code, r.text)
    assert r.json() == {"error": "no room on the service's disk for this request now; try again later"}
    assert health == 200
    assert "answered 507: No space left on device" in log and "bug" not in log and "Traceback" not in log, log


# --- defect 1: a 500 for an upload named "..", "x/.." or a name of 256 to ~7,000 characters ---
@pytest.mark.parametrize("name", ["..", "x/..", "a" * 256 + ".dcm", "b" * 4000 + ".dcm", ".", "..\\..\\x.dcm"])
def test_an_upload_named_dot_dot_or_past_the_name_limit_is_read(server, name):
    r = _upload(server[0], name)
    assert r.status_code == 200, r.text
    kept = r.json()["file"]
    assert kept not in ("", ".", "..") and "/" not in kept and len(kept) <= 128 and r.json()["hr_bpm"] > 50


def test_a_name_past_the_multipart_parsers_header_limit_is_400(server):
    r = _upload(server[0], "c" * 9000 + ".dcm")                      # python-multipart's limit, not ours
    assert r.status_code == 400 and "multipart" in r.json()["error"], r.text


# --- defect 2: a chunked upload was written to disk in full before its 413 ---
def test_a_chunked_upload_over_the_limit_is_refused_while_it_arrives(server):
    head = (b'--XX\r\nContent-Disposition: form-data; name="file"; filename="big.dcm"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n")
    sent, answer = _chunked(server[1], "/v1/measure", head, "multipart/form-data; boundary=XX", 64 << 20)
    assert _status(answer) == 413 and b"connection: close" in answer.lower(), answer[:200]
    assert sent < 24 << 20, f"{sent} bytes were taken before the 413 (limit {LIMIT})"   # socket buffers aside
    assert httpx.get(f"{server[0]}/v1/health").status_code == 200


# --- defect 3: no size limit on /ask bodies ---
def test_a_follow_up_body_is_bounded_and_the_conversation_survives_it(server):
    ecg_id = _upload(server[0], "e.dcm", endpoint="interpret", max_new_tokens="4").json()["ecg_id"]
    ask = f"{server[0]}/v1/ecgs/{ecg_id}/ask"
    big = json.dumps({"question": "Is the rate normal? " * 100_000}).encode()            # 2 MB
    r = httpx.post(ask, content=big, headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 413 and "byte limit" in r.json()["error"], r.text
    sent, answer = _chunked(server[1], f"/v1/ecgs/{ecg_id}/ask", b'{"question": "', "application/json", 16 << 20)
    assert _status(answer) == 413 and sent < 8 << 20, (sent, answer[:120])
    r = httpx.post(ask, json={"question": "Is the rate normal?", "max_new_tokens": 4}, timeout=60)
    assert r.status_code == 200, r.text


# --- a question JSON decodes to an unpaired surrogate ("\\ud800"): 500, logged as our bug, from the tokenizer ---
def test_a_question_that_is_not_text_is_400_and_the_conversation_goes_on(server):
    ecg_id = _upload(server[0], "e.dcm", endpoint="interpret", max_new_tokens="4").json()["ecg_id"]
    ask = f"{server[0]}/v1/ecgs/{ecg_id}/ask"
    r = httpx.post(ask, content=b'{"question": "rate \\ud800?"}', headers={"content-type": "application/json"},
                   timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "the question holds '\\ud800' at 5, an unpaired surrogate, not text"
    r = httpx.post(ask, json={"question": "Is the rate normal?", "max_new_tokens": 4}, timeout=60)
    assert r.status_code == 200, r.text


# --- defect 4: the token compared with !=, /v1/health open, lowercase "bearer" refused ---
def test_the_token_scheme_any_case_health_included_and_odd_bytes_are_401(tiny_bundle):
    context, base, _ = _serving(tiny_bundle, token="s3cret")
    with context:
        assert httpx.get(f"{base}/v1/health").status_code == 401             # docs/serve-api.md: every /v1 call
        for scheme in ("Bearer", "bearer", "BEARER"):
            assert httpx.get(f"{base}/v1/health", headers={"Authorization": f"{scheme} s3cret"}).status_code == 200
        for wrong in (b"Bearer s3cre", b"Bearer s3cret2", b"Basic s3cret", b"Bearer \xff\xfe", b"s3cret"):
            r = httpx.get(f"{base}/metrics", headers=[(b"Authorization", wrong)])
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (wrong, r.text)
        assert httpx.get(f"{base}/").status_code == 200                       # the page: it reads ?token=


# --- defect 5: a client uploading at 1 byte/s kept the server from stopping on SIGTERM ---
def test_sigterm_stops_the_service_while_a_client_sends_one_byte_a_second(tiny_bundle):
    context, _base, port = _serving(tiny_bundle)
    with context as proc, socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"POST /v1/measure HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100000\r\n"
                  "Content-Type: multipart/form-data; boundary=XX\r\n\r\n--XX\r\n".encode())
        for _ in range(3):
            s.sendall(b"a")
            time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        while proc.poll() is None and time.monotonic() - t0 < 20:
            try:
                s.sendall(b"a")
            except OSError:
                pass
            time.sleep(1)
        assert proc.poll() == 0, f"still up {time.monotonic() - t0:.0f} s after SIGTERM"
        s.settimeout(2)
        assert b" 503 " in s.recv(200)                                # the body still arriving was cut


def test_a_body_slower_than_the_read_timeout_is_408(tiny_bundle):
    context, base, port = _serving(tiny_bundle, "--read-timeout", "2")
    with context, socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"POST /v1/measure HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 1000\r\n"
                  "Content-Type: multipart/form-data; boundary=XX\r\n\r\n--XX\r\n".encode())
        s.settimeout(10)
        t0 = time.monotonic()
        answer = s.recv(300)
        assert _status(answer) == 408 and time.monotonic() - t0 < 5, answer
        assert httpx.get(f"{base}/v1/health").status_code == 200


# --- a 413 for a body sent before its answer is read (http.client, so requests and urllib3) arrived as a reset ---
@pytest.mark.parametrize("path", ["/v1/measure", "/v1/ecgs/no-such-ecg/ask"])
def test_a_client_that_sends_its_whole_body_first_reads_its_answer(server, path):
    body = b"x" * (20 << 20)                                       # 20 MB against the 1 MB limit
    for _ in range(3):
        conn = http.client.HTTPConnection("127.0.0.1", server[1], timeout=60)
        conn.request("POST", path, body=body, headers={"Content-Type": "multipart/form-data; boundary=XX"})
        r = conn.getresponse()                                     # was ConnectionResetError on every try
        assert r.status == (413 if path == "/v1/measure" else 404) and r.getheader("connection") == "close"
        assert b"error" in r.read()
        conn.close()
    assert httpx.get(f"{server[0]}/v1/health").status_code == 200


def _send_until_cut(port: int, path: str, every_s: float, limit_s: float = 60) -> tuple[bytes, int, float]:
    """POST a body declared at 10 GB, 64 KiB every `every_s` (0: as fast as it goes), reading the answer, until the
    service closes the connection: (the answer, body bytes sent, seconds from the answer to the cut)."""
    chunk, answer, sent, answered = b"a" * 65536, b"", 0, None
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                  "Content-Length: 10000000000\r\n\r\n".encode())
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            readable, writable, _ = select.select([s], [s], [], 0.2)
            try:
                if readable and (data := s.recv(65536)):
                    answer += data
                    answered = answered or time.monotonic()
                if writable:
                    sent += s.send(chunk)
                    time.sleep(every_s)
            except (BrokenPipeError, ConnectionResetError):
                return answer, sent, time.monotonic() - (answered or t0)
    raise AssertionError(f"still open after {limit_s} s, {sent} bytes sent; answer {answer[:80]!r}")


# --- after a 404 for a body it never read, the service read and threw away a declared 10 GB, with no deadline ---
def test_a_body_that_goes_on_after_its_answer_is_cut_in_time_and_bytes(tiny_bundle):
    context, base, port = _serving(tiny_bundle, "--read-timeout", "3")
    with context:
        answer, sent, cut_after = _send_until_cut(port, "/v1/ecgs/nope/ask", every_s=0.5)   # never silent for 2 s
        assert _status(answer) == 404 and b"connection: close" in answer.lower(), answer[:200]
        assert 2.5 < cut_after < 6, cut_after                        # the read timeout, not the client, ends it
        answer, sent, cut_after = _send_until_cut(port, "/nope", every_s=0)
        assert _status(answer) == 404 and sent < 1.5 * 2**30 and cut_after < 5, (sent, cut_after)  # 1 GiB thrown away
        assert httpx.get(f"{base}/v1/health").status_code == 200


# --- slowloris: a request head trickled one header line a second held its connection for good ---
def test_a_request_head_slower_than_the_read_timeout_is_408_and_closed(tiny_bundle):
    context, base, port = _serving(tiny_bundle, "--read-timeout", "2")
    with context, socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
        t0, answer = time.monotonic(), b""
        while not answer and time.monotonic() - t0 < 15:
            if select.select([s], [], [], 0.5)[0]:
                answer = s.recv(300)
            else:
                s.sendall(b"X-Slow: 1\r\n")                  # never the blank line that ends the head
        assert answer and _status(answer) == 408 and time.monotonic() - t0 < 5, answer
        s.settimeout(5)
        assert s.recv(100) == b""                                     # and the connection closed
        with httpx.Client(base_url=base) as client:                  # a kept-alive connection: each head in time
            assert client.get("/v1/health").status_code == 200
            time.sleep(1.5)
            assert client.get("/v1/health").status_code == 200
            r = client.post("/v1/interpret", files={"file": ("e.dcm", DICOM.read_bytes())},
                            data={"max_new_tokens": "4"}, timeout=60)
            assert r.status_code == 200, r.text                      # the head's deadline ends with the head


def test_one_address_holds_at_most_its_connections_and_another_is_served(tiny_bundle):
    context, base, port = _serving(tiny_bundle, "--max-connections-per-host", "2")
    with context as proc:
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        for s in held:
            s.sendall(b"GET /v1/health HTTP/1.1\r\n")                 # a head begun, not ended
        with socket.create_connection(("127.0.0.1", port)) as third:
            third.settimeout(5)
            assert third.recv(100) == b""                            # closed as it opened
        other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
        assert other.get(f"{base}/v1/health").status_code == 200    # 127.0.0.2: another address on loopback
        for s in held:
            s.close()
        _wait_for(lambda: httpx.get(f"{base}/v1/health").status_code == 200)
    assert "closed a connection from 127.0.0.1: it holds 2 already" in proc.stderr.read()


def _wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "waited for the service"
        time.sleep(0.2)


# --- defect 6: a too-long question destroyed the ECG's conversation ---
def test_a_too_long_question_is_422_and_the_conversation_stays(server):
    ecg_id = _upload(server[0], "e.dcm", endpoint="interpret", max_new_tokens="4").json()["ecg_id"]
    ask = f"{server[0]}/v1/ecgs/{ecg_id}/ask"
    r = httpx.post(ask, json={"question": "x" * 20_000, "max_new_tokens": 4}, timeout=60)
    assert r.status_code == 422 and "conversation is kept" in r.json()["error"], r.text
    assert "/" not in r.json()["error"]                                  # no server path in the answer
    r = httpx.post(ask, json={"question": "Is the rate normal?", "max_new_tokens": 4}, timeout=60)
    assert r.status_code == 200, r.text


def test_a_turn_cut_short_drops_the_conversation_and_says_so_not_evicted(tiny_bundle):
    from gem_runtime import Interpreter
    from gem_runtime.errors import ConversationNotFound, GenerationStopped

    def leave(_text):
        raise GenerationStopped("the client disconnected")

    with Interpreter.load(tiny_bundle, threads=1) as gem:
        result = gem.interpret(DICOM, max_new_tokens=4)
        with pytest.raises(GenerationStopped):
            gem.ask(result, "Is the rate normal?", max_new_tokens=8, stream=leave)
        with pytest.raises(ConversationNotFound, match="cut short") as gone:
            gem.ask(result, "Is the rate normal?", max_new_tokens=4)
        assert "evicted" not in str(gone.value)


# --- smaller: security headers, Host, cross-origin posts, metrics, strict numbers ---
def test_every_answer_carries_the_security_headers(server):
    for r in (httpx.get(f"{server[0]}/"), httpx.get(f"{server[0]}/v1/health"),
              httpx.get(f"{server[0]}/v1/ecgs/nope/image.png"), httpx.get(f"{server[0]}/static/viewer.js")):
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert (r.headers["x-content-type-options"], r.headers["x-frame-options"],
                r.headers["referrer-policy"]) == ("nosniff", "DENY", "no-referrer")
    assert httpx.get(f"{server[0]}/v1/health").headers["cache-control"] == "no-store"


def test_a_foreign_host_is_421_and_a_cross_origin_post_is_403(server):
    base, port = server
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.2"):
        r = httpx.get(f"{base}/v1/health", headers={"Host": host})
        assert r.status_code == 421 and "--allow-host" in r.json()["error"], (host, r.text)
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "LOCALHOST"):
        assert httpx.get(f"{base}/v1/health", headers={"Host": host}).status_code == 200
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        r = httpx.post(f"{base}/v1/measure", files={"file": ("e.dcm", DICOM.read_bytes())}, headers=headers)
        assert r.status_code == 403 and "--allow-origin" in r.json()["error"], (headers, r.text)
    same = httpx.post(f"{base}/v1/measure", files={"file": ("e.dcm", DICOM.read_bytes())},
                      headers={"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200, same.text


def test_an_allowed_origin_may_post(tiny_bundle):
    context, base, _ = _serving(tiny_bundle, "--allow-origin", "https://emr.example.org", "--allow-host", "gem.local")
    with context:
        r = httpx.post(f"{base}/v1/measure", files={"file": ("e.dcm", DICOM.read_bytes())},
                       headers={"Origin": "https://emr.example.org", "Host": "gem.local"}, timeout=60)
        assert r.status_code == 200, r.text
        assert httpx.post(f"{base}/v1/measure", files={"file": ("e.dcm", b"x")},
                          headers={"Origin": "https://other.example.org"}).status_code == 403


def test_successes_of_every_endpoint_are_counted_and_numbers_are_strict(server):
    base = server[0]
    ecg_id = _upload(base, "e.dcm", endpoint="interpret", max_new_tokens="4").json()["ecg_id"]
    assert httpx.get(f"{base}/v1/ecgs/{ecg_id}/image.png").status_code == 200
    assert _upload(base, "e.dcm").status_code == 200
    for value in (True, 3.7, "3.7", [4], -1):
        r = httpx.post(f"{base}/v1/ecgs/{ecg_id}/ask", json={"question": "rate?", "max_new_tokens": value})
        assert r.status_code == 400 and "max_new_tokens" in r.json()["error"], (value, r.text)
    text = httpx.get(f"{base}/metrics").text
    for endpoint in ("measure", "image", "health", "interpret"):
        assert f'gem_requests_total{{endpoint="{endpoint}",status="200"}}' in text, endpoint


def test_a_short_hostile_soak_gets_the_statuses_it_must_and_no_5xx(tiny_bundle, tmp_path):
    from benchmarks.soak import soak, write

    result = soak(tiny_bundle, requests=60, clients=3, seconds=90, threads=1, log=lambda m: None)
    write(result, tmp_path / "soak.md", "test")
    assert result.ok, (tmp_path / "soak.md").read_text()
    assert result.requests >= 40 and len(result.by_kind) >= 12, result.by_kind
