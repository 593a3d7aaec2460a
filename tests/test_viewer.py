"""The viewer page (`GET /`) in a real headless Chromium against a real `gem-run serve` on the tiny bundle:
upload pydicom's Mortara el250 ECG, watch the report stream in, the image load and the measurement table fill
(ours beside the cart's), ask a follow-up; upload a WFDB record as its several files; see a bad upload's error
line. The server runs with a token, so every call the page makes must carry it.

Chromium and chromedriver are Debian's (`apt-get install chromium chromium-driver`; .ci/run installs them):
a machine without them fails here rather than skips.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from clirun import terminate

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1600")
TOKEN = "viewer-test-token"
SERVER_START_S = 120      # bundle load on 2 busy cores
WAIT_S = 60               # one interpretation or follow-up on the page

# pydicom's waveform_ecg.dcm: a Mortara el250 12-lead at 500 Hz; the cart's own values are in the file
EL250_HR_BPM = 61
EL250_DEVICE_VALUES = ("982 ms", "161 ms")     # its RR and PR


# Counts text appended to #report one piece at a time: the streamed tokens (the final, marked text replaces
# them in one mutation that also removes nodes, so it is not counted).
COUNT_STREAMED_PIECES = """
window.streamedPieces = 0;
new MutationObserver((records) => {
  for (const r of records) {
    if (!r.removedNodes.length && r.addedNodes.length === 1 && r.addedNodes[0].nodeType === Node.TEXT_NODE) {
      window.streamedPieces++;
    }
  }
}).observe(document.getElementById("report"), {childList: true});
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(base: str, proc: subprocess.Popen, log: Path) -> None:
    request = urllib.request.Request(base + "/v1/health", headers={"Authorization": f"Bearer {TOKEN}"})
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gem-run serve exited {proc.returncode} before answering /v1/health:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if json.load(response).get("status") == "ok":
                    return
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.5)
    pytest.fail(f"gem-run serve did not answer {base}/v1/health within {SERVER_START_S} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory) -> str:
    yield from _serve(tiny_bundle, tmp_path_factory)


def _serve(bundle: Path, tmp_path_factory, *args: str):
    """A real `gem-run serve` on a free port, with a token; stopped with SIGTERM at the end."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    cmd = [sys.executable, "-m", "gem_runtime.cli", "serve", "--bundle", str(bundle),
           "--host", "127.0.0.1", "--port", str(port), "--token", TOKEN, *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(base, proc, log)
        yield base
    finally:
        if not terminate(proc, 30):
            pytest.fail(f"gem-run serve did not exit within 30 s of SIGTERM:\n{_tail(log)}")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through chromedriver; a machine that cannot start it fails with the reason."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"headless Chromium is needed and {', '.join(missing)} is missing: "
                    "apt-get install -y chromium chromium-driver (.ci/run does)")
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.fail(f"selenium is needed (the dev extra: pip install -e '.[dev]'): {e}")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    except (WebDriverException, OSError) as e:
        pytest.fail(f"could not start headless Chromium ({CHROMIUM}, {CHROMEDRIVER}): {type(e).__name__}: {e}")
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, what: str, timeout: float = WAIT_S, error_expected: bool = False):
    """Wait for condition(driver) to be truthy, or fail with what was awaited and the page's state: on
    timeout, or at once when the page shows an error line it should not."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    error_line = object()

    def done(d):
        return condition(d) or (not error_expected and _text(d, "error").strip() and error_line)

    try:
        value = WebDriverWait(driver, timeout, poll_frequency=0.2).until(done)
    except TimeoutException:
        value = None
    if value is None or value is error_line:
        state = {i: _text(driver, i)[:300] for i in ("status", "error", "report", "answers")}
        why = "the page showed an error" if value is error_line else f"timed out after {timeout} s"
        pytest.fail(f"waited for {what}: {why}; page: {state}")
    return value


def _text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def _uncaught_errors(driver) -> list[str]:
    """Uncaught exceptions, and anything the page's Content-Security-Policy blocked (issue 26: the viewer must
    work under the strict policy the service sends)."""
    return [e["message"] for e in driver.get_log("browser")
            if "Uncaught" in e["message"] or "Content Security Policy" in e["message"]]


def test_viewer_interprets_streams_and_answers(server, browser, tmp_path):
    from pydicom.data import get_testdata_file

    browser.get(f"{server}/?token={TOKEN}")
    assert browser.title == "gem-edge viewer"
    browser.execute_script(COUNT_STREAMED_PIECES)
    browser.find_element("id", "file").send_keys(get_testdata_file("waveform_ecg.dcm"))
    browser.find_element("id", "interpret").click()

    _wait(browser, lambda d: _text(d, "report").strip(), "the report to stream in")
    _wait(browser, lambda d: _row(d, "hr_bpm")[1], "the measurement table")
    heart_rate, device_rate = _row(browser, "hr_bpm")[1:]
    assert abs(float(heart_rate.split()[0]) - EL250_HR_BPM) < 2, heart_rate
    assert device_rate.endswith("bpm"), f"no device heart rate: {device_rate!r}"
    device_column = [_row(browser, key)[2] for key in ("rr_ms", "pr_ms")]
    assert any(v in device_column for v in EL250_DEVICE_VALUES), f"device RR, PR: {device_column}"
    assert "el250" in _text(browser, "device-name")
    assert _text(browser, "device-statements").strip()
    _wait(browser, lambda d: d.execute_script(
        "const i = document.getElementById('ecg-image'); return i.complete && i.naturalWidth > 0;"),
        "the 12-lead image to load")
    width, height = browser.execute_script(
        "const i = document.getElementById('ecg-image'); return [i.naturalWidth, i.naturalHeight];")
    assert width > 200 and height > 200, (width, height)
    pieces = browser.execute_script("return window.streamedPieces")
    assert pieces >= 2, f"the report came in {pieces} piece(s): not streamed"
    result_text = _text(browser, "report")
    marks = browser.find_elements("css selector", "#report mark")
    for mark in marks:      # every grounding mark says its verdict, in its class and its title
        assert mark.get_attribute("class") in ("agree", "disagree", "not-measurable",      # a stated number
                                                 "supported", "contradicted", "not-checkable")   # a diagnosis
        title, verdict = mark.get_attribute("title"), mark.get_attribute("class").replace("-", " ")
        assert "stated" in title or f": {verdict} - " in title, title      # a number's or a diagnosis' verdict
    assert _text(browser, "error") == ""

    follow_up = browser.find_element("id", "followup")
    _wait(browser, lambda d: follow_up.is_enabled(), "the follow-up box to open")
    follow_up.send_keys("What is the heart rate?")
    browser.find_element("id", "ask").click()
    _wait(browser, lambda d: d.find_elements("css selector", "#answers .qa .a")
          and d.find_element("css selector", "#answers .qa .a").text.strip()
          and d.find_element("id", "ask").is_enabled(), "an answer to the follow-up")
    assert "What is the heart rate?" in _text(browser, "answers")
    assert _text(browser, "report") == result_text, "the report changed when the follow-up was answered"
    assert _text(browser, "error") == ""

    # offline: nothing but this server was asked for anything
    urls = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith((server, "blob:")) for u in urls), urls
    assert not _uncaught_errors(browser)
    shot = tmp_path / "viewer.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {shot}")


def test_viewer_uploads_a_wfdb_record_as_several_files(server, browser, ptb):
    """A WFDB record is a header and its signal files: the picker takes them together (PTB: .hea, .dat, .xyz)."""
    files = [ptb, ptb.with_suffix(".dat"), ptb.with_suffix(".xyz")]
    browser.get(f"{server}/?token={TOKEN}")
    browser.find_element("id", "file").send_keys("\n".join(str(f) for f in files))
    browser.find_element("id", "interpret").click()
    _wait(browser, lambda d: _row(d, "hr_bpm")[1] and d.find_element("id", "ask").is_enabled(),
          "the measurement table")
    assert _row(browser, "hr_bpm")[1].endswith(" bpm"), _row(browser, "hr_bpm")
    assert _row(browser, "hr_bpm")[2] == "", "PTB's WFDB files carry no device measurements"
    assert "no device measurements" in _text(browser, "device-name")
    assert _text(browser, "report").strip() and _text(browser, "error") == ""


def test_viewer_shows_a_bad_upload_error(server, browser, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an ECG, only words\n")
    browser.get(f"{server}/?token={TOKEN}")
    browser.find_element("id", "file").send_keys(str(notes))
    browser.find_element("id", "interpret").click()
    error = _wait(browser, lambda d: _text(d, "error").strip(), "the upload's error line", error_expected=True)
    assert "notes.txt" in error and "422" in error, error
    assert len(error.splitlines()) == 1, error
    assert _text(browser, "report") == "" and not _uncaught_errors(browser)
    assert browser.find_element("id", "interpret").is_enabled()


def _row(driver, key: str) -> tuple[str, str, str]:
    """(label, measured, device) of the measurement table's row for `key`, or empty strings."""
    cells = driver.find_elements("css selector", f"#measurements tr[data-key='{key}'] > *")
    return tuple(c.text for c in cells) if len(cells) == 3 else ("", "", "")


def test_viewer_shows_a_revised_rhythm_and_the_models_own_text(browser, tmp_path_factory, shared_data):
    """The demo bundle served with --revise-rhythm (the box starts checked) on GE MUSE example2, a regular sinus
    rhythm the demo model calls atrial fibrillation: the report shown is the revised one, the revision is listed
    with its reason, and the model's own text is one click away."""
    from gem_runtime.bundle import default_bundle

    for base in _serve(default_bundle(), tmp_path_factory, "--revise-rhythm"):
        browser.get(f"{base}/?token={TOKEN}")
        _wait(browser, lambda d: d.find_element("id", "revise").is_selected(), "the revise box to take the default")
        browser.find_element("id", "file").send_keys(str(shared_data / "real" / "muse" / "example2.xml"))
        browser.find_element("id", "interpret").click()
        _wait(browser, lambda d: d.find_element("id", "revisions").is_displayed(), "the revision to be listed")
        revisions = _text(browser, "revisions")
        assert 'revised \u201catrial fibrillation\u201d to' in revisions and "RR regular" in revisions
        assert "atrial fibrillation" not in _text(browser, "report").lower()
        own = browser.execute_script("return document.querySelector('#revisions .model-text').textContent")
        assert "atrial fibrillation" in own
        assert _text(browser, "error") == "" and not _uncaught_errors(browser)
