"""gem-run batch as an archive sees it: a folder of real ECGs (pydicom's DICOM, the PTB WFDB record with its
.dat and .xyz, the Philips Sierra XML) and two malformed files in a nested folder, run by the real command
in a subprocess with the tiny bundle: one result per record at its relative path, errors.jsonl, exit 3; a
rerun that skips everything; a changed input redone; a run stopped by SIGTERM resumed to the same state."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clirun import run_main
from pydicom.data import get_testdata_file

from gem_runtime.batch import ERRORS_FILE, walk_records
from gem_runtime.cli import main

DICOM = Path(get_testdata_file("waveform_ecg.dcm"))
GOOD = ("philips/philips_129DYPRG.xml", "waveform_ecg.dcm", "wfdb/ptb/s0010_re.hea")
MALFORMED = {"broken/deeper/truncated.dcm": "not a readable DICOM file",
             "broken/notes.txt": "unknown ECG format (text)"}
# what differs between two runs of the same record: clocks, and whether the prompt prefix was already in the KV
RUN_DEPENDENT = {"timings_ms", "decode_tok_s", "load_ms", "prefix_cached"}


def _archive(root: Path, shared_data: Path, ptb: Path) -> Path:
    """The test folder: three real records (one a WFDB header with two signal files), two malformed files,
    a hidden file."""
    (root / "wfdb" / "ptb").mkdir(parents=True)
    (root / "philips").mkdir()
    (root / "broken" / "deeper").mkdir(parents=True)
    shutil.copy(DICOM, root / "waveform_ecg.dcm")
    for suffix in (".hea", ".dat", ".xyz"):
        shutil.copy(ptb.with_suffix(suffix), root / "wfdb" / "ptb")
    shutil.copy(shared_data / "vendor" / "philips_129DYPRG.xml", root / "philips")
    (root / "broken" / "deeper" / "truncated.dcm").write_bytes(DICOM.read_bytes()[:3000])
    (root / "broken" / "notes.txt").write_text("ECG of bed 4, see the paper copy\n")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    return root


def _batch(in_dir: Path, out_dir: Path, bundle: Path, *extra: str, popen: bool = False):
    args = [sys.executable, "-m", "gem_runtime.cli", "batch", str(in_dir), "--out", str(out_dir), "--bundle",
            str(bundle), "--max-new-tokens", "8", "--threads", "1", *extra]
    if popen:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(args, capture_output=True, text=True, timeout=300)


def _snapshot(out_dir: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under out_dir: (bytes, mtime in ns)."""
    return {p.relative_to(out_dir).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(out_dir.rglob("*")) if p.is_file()}


def _errors(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / ERRORS_FILE).read_text().splitlines()]


def _stable(result_file: Path) -> dict:
    return {k: v for k, v in json.loads(result_file.read_text()).items() if k not in RUN_DEPENDENT}


@pytest.fixture
def archive(tmp_path, shared_data, ptb) -> Path:
    return _archive(tmp_path / "in", shared_data, ptb)


def test_a_folder_becomes_results_and_refusals_and_a_rerun_skips_everything(archive, tmp_path, tiny_bundle,
                                                                            capsys):
    out = tmp_path / "out"
    p = _batch(archive, out, tiny_bundle)
    assert p.returncode == 3, p.stderr
    assert "3 done, 0 skipped, 2 refused" in p.stdout and "1 hidden file or folder not read" in p.stdout
    results = sorted(f.relative_to(out).as_posix() for f in out.rglob("*.json"))
    assert results == [f"{rel}.json" for rel in GOOD]                     # the .dat and .xyz are not records
    errors = _errors(out)
    assert [e["file"] for e in errors] == sorted(MALFORMED)
    for e in errors:
        assert e["error"].startswith(MALFORMED[e["file"]]) and "\n" not in e["error"]
        assert f"refused {e['file']}: {e['error']}" in p.stderr

    # each result is what `gem-run --json` prints for that file, plus its batch key
    code, cli_out, err = run_main(main, [str(archive / "waveform_ecg.dcm"), "--bundle", str(tiny_bundle), "--json",
                                         "--max-new-tokens", "8", "--threads", "1"], capsys)
    assert code == 0, err
    single = json.loads(cli_out)
    for rel in GOOD:
        res = json.loads((out / f"{rel}.json").read_text())
        assert set(res) == set(single) | {"batch"}
        assert res["batch"]["bundle_id"] == single["bundle_id"] and len(res["batch"]["input_sha256"]) == 64
        assert res["source"] == str(archive / rel) and res["new_tokens"] >= 1
    assert {k: v for k, v in single.items() if k not in RUN_DEPENDENT} == \
        {k: v for k, v in _stable(out / "waveform_ecg.dcm.json").items() if k != "batch"}

    before = _snapshot(out)
    again = _batch(archive, out, tiny_bundle)
    assert again.returncode == 3, again.stderr                             # the malformed are refused again
    assert "0 done, 3 skipped, 2 refused" in again.stdout
    assert _snapshot(out) == before                                        # no result rewritten, errors listed once

    # a changed input is redone, the others kept; a refused file that is gone leaves errors.jsonl
    with open(archive / "philips" / "philips_129DYPRG.xml", "a") as f:
        f.write("\n<!-- re-exported -->\n")
    (archive / "broken" / "notes.txt").unlink()
    third = _batch(archive, out, tiny_bundle)
    assert third.returncode == 3 and "1 done, 2 skipped, 1 refused" in third.stdout, third.stderr
    after = _snapshot(out)
    redone = "philips/philips_129DYPRG.xml.json"
    assert after[redone][1] != before[redone][1]
    sha = [json.loads(snap[redone][0])["batch"]["input_sha256"] for snap in (before, after)]
    assert sha[0] != sha[1]
    assert {k: v for k, v in after.items() if k not in (redone, ERRORS_FILE)} == \
        {k: v for k, v in before.items() if k not in (redone, ERRORS_FILE)}
    assert [e["file"] for e in _errors(out)] == ["broken/deeper/truncated.dcm"]

    # every file fixed: exit 0
    (archive / "broken" / "deeper" / "truncated.dcm").write_bytes(DICOM.read_bytes())
    fixed = _batch(archive, out, tiny_bundle)
    assert fixed.returncode == 0 and "1 done, 3 skipped, 0 refused" in fixed.stdout, fixed.stderr
    assert (out / ERRORS_FILE).read_text() == ""


def test_a_run_stopped_by_sigterm_resumes_to_the_state_of_an_uninterrupted_run(archive, tmp_path, tiny_bundle):
    many = archive / "many"           # enough records that the run is still going when the signal comes
    many.mkdir()
    for i in range(24):
        shutil.copy(DICOM, many / f"ecg{i:02d}.dcm")
    whole = tmp_path / "whole"
    p = _batch(archive, whole, tiny_bundle)
    assert p.returncode == 3 and "27 done, 0 skipped, 2 refused" in p.stdout, p.stderr

    out = tmp_path / "stopped"
    proc = _batch(archive, out, tiny_bundle, popen=True)
    deadline = time.monotonic() + 120
    while not any(out.rglob("*.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted by SIGTERM" in stdout and "not reached" in stdout and "SIGTERM: finishing" in stderr
    assert not [f for f in out.rglob("*") if f.name.endswith(".tmp")]
    n_written = len(list(out.rglob("*.json")))
    assert 1 <= n_written < 27
    for f in out.rglob("*.json"):                                       # each written whole
        assert json.loads(f.read_text())["batch"]

    resumed = _batch(archive, out, tiny_bundle)
    assert resumed.returncode == 3, resumed.stderr
    assert f"{27 - n_written} done, {n_written} skipped, 2 refused" in resumed.stdout
    files = sorted(f.relative_to(out).as_posix() for f in out.rglob("*") if f.is_file())
    assert files == sorted(f.relative_to(whole).as_posix() for f in whole.rglob("*") if f.is_file())
    assert (out / ERRORS_FILE).read_bytes() == (whole / ERRORS_FILE).read_bytes()
    for name in files:
        if name != ERRORS_FILE:
            assert _stable(out / name) == _stable(whole / name), name


def test_the_walk_groups_wfdb_files_and_decides_links_hidden_files_and_the_results_folder(tmp_path, ptb):
    root = tmp_path / "in"
    (root / "rec").mkdir(parents=True)
    for suffix in (".hea", ".dat", ".xyz"):
        shutil.copy(ptb.with_suffix(suffix), root / "rec")
    (root / "rec" / "s0010_re.atr").write_bytes(b"\0" * 16)       # annotations: read_ecg reads it as the record
    shutil.copy(DICOM, root / "rec" / "s0010_re.dcm")             # its own format: a record of its own
    (root / "rec" / "orphan.dat").write_bytes(b"\1" * 32)          # no header: a candidate (refused when read)
    (root / ".git").mkdir()
    (root / ".git" / "x.dcm").write_bytes(b"")
    os.symlink(root / "rec" / "s0010_re.dcm", root / "link.dcm")
    os.symlink(root / "rec", root / "linked-folder")
    os.symlink(root / "gone.dcm", root / "dangling.dcm")
    (root / "out").mkdir()
    (root / "out" / "old.json").write_text("{}")

    walk = walk_records(root, root / "out")
    assert [r.rel for r in walk.records] == ["link.dcm", "rec/orphan.dat", "rec/s0010_re.dcm", "rec/s0010_re.hea"]
    header = walk.records[-1]
    assert [f.name for f in header.files] == ["s0010_re.hea", "s0010_re.dat", "s0010_re.xyz"]
    assert walk.refused == [("dangling.dcm", "broken symbolic link"),
                            ("linked-folder", "symbolic link to a folder: not followed (pass the folder itself)")]
    assert walk.hidden == 1 and walk.count == 6


def test_ray_options_without_the_ray_engine_are_a_usage_error(tmp_path, capsys):
    for extra, says in ((["--workers", "4"], "--workers applies to --engine ray only"),
                        (["--address", "10.0.0.1:6379"], "--address applies to --engine ray only")):
        code, _, err = run_main(main, ["batch", str(tmp_path), "--out", str(tmp_path / "o"), *extra], capsys)
        assert code == 2 and err.count("\n") == 1 and says in err, err
    code, _, err = run_main(main, ["batch", str(tmp_path), "--out", str(tmp_path)], capsys)
    assert code == 2 and "--out must not be IN_DIR itself" in err
    assert not (tmp_path / "o").exists()
