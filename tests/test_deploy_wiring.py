"""The deployment pieces wired into the daemons: `--config FILE` gives `gem-run serve` and `gem-run dicom-listen`
every setting (a flag still wins), the token from its own file, and an audit trail that the service, the listener
and the batch each append to, one hash-chained line per interpretation, which `gem-run audit verify` accepts.
Real processes on loopback, dcmtk as the DICOM client."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
from clirun import free_port, run_main, running
from pydicom.data import get_testdata_file

from benchmarks.dicom_bench import dcmtk
from gem_runtime.audit import verify_log
from gem_runtime.cli import main
from gem_runtime.files import sha256_file

DICOM = Path(get_testdata_file("waveform_ecg.dcm"))


def _config(tmp_path: Path, bundle: Path, body: str) -> Path:
    (tmp_path / "audit").mkdir(mode=0o700, exist_ok=True)
    cfg = tmp_path / "gem-edge.toml"
    cfg.write_text(f'[model]\nbundle = "{bundle}"\nthreads = 1\nmax_new_tokens = 8\n\n'
                   f'[audit]\nlog = "{tmp_path / "audit" / "audit.jsonl"}"\n\n{body}')
    return cfg


def _lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_serve_from_a_config_file_with_a_token_file_and_an_audit_line(tiny_bundle, tmp_path, capsys):
    token = tmp_path / "token"
    token.write_text("s3cret-token-0123456789abcdef\n")
    token.chmod(0o600)
    port = free_port()
    cfg = _config(tmp_path, tiny_bundle, f'[serve]\nport = 1\ntoken_file = "{token}"\n')
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": "Bearer s3cret-token-0123456789abcdef"}

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/v1/health", headers=auth, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    # the file says port 1; the flag wins
    with running(["serve", "--config", cfg, "--port", port], ready, "gem-run serve --config"):
        assert httpx.get(f"{base}/v1/health", timeout=5).status_code == 401       # the token file's token is needed
        with open(DICOM, "rb") as f:
            r = httpx.post(f"{base}/v1/interpret", files={"file": (DICOM.name, f)}, data={"max_new_tokens": "8"},
                           headers=auth, timeout=120)
        assert r.status_code == 200, r.text
        with open(DICOM, "rb") as f:
            bad = httpx.post(f"{base}/v1/interpret", files={"file": ("x.dcm", b"not an ecg")}, headers=auth,
                             timeout=60)
        assert bad.status_code == 422
    log = tmp_path / "audit" / "audit.jsonl"
    entries = _lines(log)
    assert [e["outcome"] for e in entries] == ["ok", "error: HttpError"]
    ok = entries[0]
    assert ok["tool"] == "serve" and ok["caller"].startswith("token:") and ok["caller"].endswith("@127.0.0.1")
    assert "s3cret" not in log.read_text() and ok["output_sha256"] and ok["input_sha256"]
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    code, out, err = run_main(main, ["audit", "verify", str(log)], capsys)
    assert code == 0 and "2" in out, err


def test_a_bad_config_is_one_line_naming_the_key(tiny_bundle, tmp_path, capsys):
    cfg = _config(tmp_path, tiny_bundle, "[serve]\nport = 8717\nqueue = \"many\"\n")
    code, out, err = run_main(main, ["serve", "--config", str(cfg)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "queue" in err, err
    cfg = _config(tmp_path, tiny_bundle, "")
    code, out, err = run_main(main, ["dicom-listen", "--config", str(cfg)], capsys)
    assert code == 2 and "[dicom]" in err and len(err.strip().splitlines()) == 1, err


def test_dicom_listen_from_a_config_file_audits_each_ecg_with_its_caller(tiny_bundle, tmp_path):
    port = free_port()
    out = tmp_path / "inbox"
    cfg = _config(tmp_path, tiny_bundle, f'[dicom]\nout = "{out}"\nport = {port}\nae_title = "GEMEDGE"\n')
    log = tmp_path / "audit" / "audit.jsonl"

    def ready() -> bool:
        import subprocess
        return subprocess.run([dcmtk("echoscu"), "-aet", "CART7", "-aec", "GEMEDGE", "127.0.0.1", str(port)],
                              capture_output=True, timeout=30).returncode == 0

    import subprocess
    with running(["dicom-listen", "--config", cfg], ready, "gem-run dicom-listen --config"):
        subprocess.run([dcmtk("storescu"), "-aet", "CART7", "-aec", "GEMEDGE", "127.0.0.1", str(port), str(DICOM)],
                       capture_output=True, timeout=60, check=True)
        deadline = time.monotonic() + 120
        while not (log.exists() and log.read_text().strip()):
            assert time.monotonic() < deadline, "no audit line"
            time.sleep(0.2)
    entry = _lines(log)[0]
    assert entry["tool"] == "dicom-listen" and entry["caller"] == "ae:CART7@127.0.0.1" and entry["outcome"] == "ok"
    assert entry["study_uid"] and entry["input_sha256"] and entry["llm_type"]
    assert verify_log(log)[0] == 1


def test_batch_appends_one_line_per_record_interpreted(tiny_bundle, tmp_path, capsys):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    (in_dir / "a.dcm").write_bytes(DICOM.read_bytes())
    (in_dir / "b.dcm").write_bytes(DICOM.read_bytes())
    os.chmod(tmp_path, 0o700)
    log = tmp_path / "batch-audit.jsonl"
    code, out, err = run_main(main, ["batch", str(in_dir), "--out", str(out_dir), "--bundle", str(tiny_bundle),
                                     "--threads", "1", "--max-new-tokens", "8", "--audit", str(log)], capsys)
    assert code == 0, err
    entries = _lines(log)
    assert len(entries) == 2 and {e["tool"] for e in entries} == {"batch"}
    assert [e["input_sha256"] for e in entries] == [sha256_file(DICOM)] * 2     # as sha256sum, as every tool
    assert verify_log(log)[0] == 2
