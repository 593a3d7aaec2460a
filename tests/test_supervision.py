"""What systemd sees of the daemons: READY=1 once the port answers, WATCHDOG=1 while the model's thread lives,
STOPPING=1 on SIGTERM, over a real notify socket; and --log-json gives one JSON object per line on stdout, with
no patient field of the ECG it stored. Real processes on loopback; dcmtk sends."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from clirun import free_port, terminate
from pydicom.data import get_testdata_file

from benchmarks.dicom_bench import dcmtk

DICOM = Path(get_testdata_file("waveform_ecg.dcm"))


def _notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(1.0)
    return sock, path


def _messages(sock: socket.socket, until: str, timeout: float) -> list[str]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(sock.recv(4096).decode())
        except socket.timeout:
            continue
        if until in seen[-1]:
            break
    return seen


def _start(args: list[str], notify_path: str) -> subprocess.Popen:
    env = {**os.environ, "NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "400000"}
    return subprocess.Popen([sys.executable, "-m", "gem_runtime.cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_serve_tells_systemd_it_is_ready_alive_and_stopping(tiny_bundle, tmp_path):
    sock, path = _notify_socket(tmp_path)
    proc = _start(["serve", "--bundle", tiny_bundle, "--port", free_port(), "--threads", "1", "--log-json"], path)
    try:
        seen = _messages(sock, "READY=1", 120)
        assert "READY=1" in seen, (seen, proc.poll())
        assert "WATCHDOG=1" in _messages(sock, "WATCHDOG=1", 5)
        proc.send_signal(15)
        assert "STOPPING=1" in _messages(sock, "STOPPING=1", 30)
        assert proc.wait(60) == 0
    finally:
        terminate(proc, 30)
        sock.close()


def test_dicom_listen_logs_json_lines_without_patient_data(tiny_bundle, tmp_path):
    sock, path = _notify_socket(tmp_path)
    port, out = free_port(), tmp_path / "inbox"
    proc = _start(["dicom-listen", "--port", port, "--out", out, "--bundle", tiny_bundle, "--threads", "1",
                   "--max-new-tokens", "8", "--log-json"], path)
    try:
        assert "READY=1" in _messages(sock, "READY=1", 120), proc.poll()
        subprocess.run([dcmtk("storescu"), "-aet", "CART7", "-aec", "GEMEDGE", "127.0.0.1", str(port), str(DICOM)],
                       capture_output=True, timeout=60, check=True)
        deadline = time.monotonic() + 120
        while not (out.exists() and any(out.glob("*/report.hl7"))):
            assert time.monotonic() < deadline, "no report"
            time.sleep(0.2)
        proc.send_signal(15)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        terminate(proc, 30)
        sock.close()
    events = [json.loads(line) for line in stdout.splitlines()]       # every line is one JSON object
    assert any("stored" in e["event"] for e in events) and {"time", "level", "logger", "event"} <= set(events[0])
    ds = pydicom.dcmread(DICOM)
    for field in (str(ds.PatientName), str(ds.PatientID)):
        if field.strip():
            assert field not in stdout, field
    assert stderr.strip() == "" or all(not line.startswith("{") for line in stderr.splitlines())
