"""deploy/'s systemd units: `systemd-analyze verify` clean, `systemd-analyze security --offline=true` at or below the
exposure measured when they were written, the hardening the issue asks for present, and what MemoryDenyWriteExecute
forbids (writable executable memory) not needed by an interpretation (run under the kernel's PR_SET_MDWE)."""
import ctypes
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
UNITS = ("gem-edge-serve.service", "gem-edge-dicom.service")
GEM_RUN = "/opt/gem-edge/venv/bin/gem-run"
EXPOSURE_MAX = 1.0            # measured on systemd 252 (Debian 12): both units 1.0 "OK"
ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(ANALYZE is None, reason="needs systemd-analyze")


@pytest.fixture
def units(tmp_path) -> list[Path]:
    """The units with ExecStart pointed at a stub that exists (verify checks the binary is there)."""
    stub = tmp_path / "gem-run"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    out = []
    for name in UNITS:
        text = (DEPLOY / name).read_text()
        assert f"ExecStart={GEM_RUN} " in text
        (tmp_path / name).write_text(text.replace(GEM_RUN, str(stub)))
        out.append(tmp_path / name)
    return out


@needs_systemd
def test_systemd_analyze_verify_is_clean(units):
    p = subprocess.run([ANALYZE, "verify", *map(str, units)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "" and p.stderr.strip() == "", p.stdout + p.stderr


@needs_systemd
@pytest.mark.parametrize("i", range(len(UNITS)))
def test_exposure_score_is_at_most_the_measured_one(units, i):
    p = subprocess.run([ANALYZE, "security", "--offline=true", "--no-pager", str(units[i])], capture_output=True,
                       text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout)
    assert m, p.stdout + p.stderr
    assert float(m.group(1)) <= EXPOSURE_MAX, p.stdout


@pytest.mark.parametrize("name", UNITS)
def test_the_hardening_asked_for_is_there(name):
    text = (DEPLOY / name).read_text()
    settings = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    for key, value in [("User", "gem-edge"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("NoNewPrivileges", "yes"), ("PrivateTmp", "yes"), ("CapabilityBoundingSet", ""),
                       ("MemoryDenyWriteExecute", "yes")]:
        assert settings.get(key) == [value], (name, key, settings.get(key))
    assert settings["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert all(p.startswith("/var/lib/gem-edge/") for p in settings["ReadWritePaths"][0].split())
    assert re.fullmatch(r"\d+G", settings["MemoryMax"][0])
    assert "--config /etc/gem-edge/gem-edge.toml" in settings["ExecStart"][0] and settings["Type"] == ["notify"]


def _mdwe_available() -> bool:
    return sys.platform == "linux" and ctypes.CDLL(None).prctl(66, 0, 0, 0, 0) >= 0   # PR_GET_MDWE


@pytest.mark.skipif(not _mdwe_available(), reason="needs Linux 6.3+ (PR_SET_MDWE)")
def test_an_interpretation_runs_without_writable_executable_memory(tmp_path):
    from pydicom.data import get_testdata_file

    code = ("import ctypes, sys\n"
            "assert ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) == 0\n"      # PR_SET_MDWE, REFUSE_EXEC_GAIN
            "from gem_runtime.cli import main\n"
            "main(sys.argv[1:])\n")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-c", code, get_testdata_file("waveform_ecg.dcm"), "--json",
                        "--max-new-tokens", "4"], capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0 and '"new_tokens": 4' in p.stdout, p.stderr
