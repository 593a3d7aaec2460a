"""gem-run batch on a careless archive (issue 26): a results folder it may not write (at the start, and a
subfolder in the middle of a run) is one line and exit 2, not three chained tracebacks; a file over --max-bytes
is refused by its size before a byte of it is hashed; results are 0600 in 0700 folders. The real command in a
subprocess with the tiny bundle. As root, write permission is taken away by dropping CAP_DAC_OVERRIDE
(setpriv), since root writes into a 0555 folder otherwise."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

DICOM = Path(get_testdata_file("waveform_ecg.dcm"))
# gem-run batch, reporting at exit how many bytes the process read (rchar: every read(), page cache included)
WITH_RCHAR = ("import atexit, sys\n"
              "atexit.register(lambda: sys.stderr.write([l for l in open('/proc/self/io') if l.startswith('rchar')][0]))\n"
              "from gem_runtime.cli import main\n"
              "main(sys.argv[1:])\n")


def _unprivileged() -> list[str]:
    """A prefix that makes a root process obey file permission bits; nothing for any other user."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.fail("running as root: setpriv (util-linux) is needed to take away CAP_DAC_OVERRIDE")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def _batch(in_dir: Path, out_dir: Path, bundle: Path, *extra: str, prefix: list[str] = (), code: str | None = None):
    run = [sys.executable, "-c", code, "batch"] if code else [sys.executable, "-m", "gem_runtime.cli", "batch"]
    return subprocess.run([*prefix, *run, str(in_dir), "--out", str(out_dir), "--bundle", str(bundle),
                           "--max-new-tokens", "4", "--threads", "1", *extra],
                          capture_output=True, text=True, timeout=300, check=False)


# --- defect 10: a read-only results folder crashed gem-run batch with three chained tracebacks ---
def test_a_read_only_results_folder_is_one_line_and_exit_2(tiny_bundle, tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    shutil.copy(DICOM, in_dir / "a.dcm")
    out_dir.mkdir()
    out_dir.chmod(0o555)
    try:
        p = _batch(in_dir, out_dir, tiny_bundle, prefix=_unprivileged())
    finally:
        out_dir.chmod(0o755)
    assert p.returncode == 2, p.stderr
    lines = [line for line in p.stderr.splitlines() if "error" in line]
    assert "Traceback" not in p.stderr and len(lines) == 1, p.stderr
    assert lines[0].startswith("gem-run: error: ") and str(out_dir) in lines[0] and "writable" in lines[0]
    assert not list(out_dir.iterdir())


def test_a_results_subfolder_made_read_only_is_one_line_and_exit_2(tiny_bundle, tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    (in_dir / "ward").mkdir(parents=True)
    shutil.copy(DICOM, in_dir / "ward" / "a.dcm")
    (out_dir / "ward").mkdir(parents=True)
    (out_dir / "ward").chmod(0o555)                  # the top is writable: the run starts, the write fails
    try:
        p = _batch(in_dir, out_dir, tiny_bundle, prefix=_unprivileged())
    finally:
        (out_dir / "ward").chmod(0o755)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "gem-run: error: " in p.stderr and "ward/a.dcm.json" in p.stderr and "writable" in p.stderr


# --- smaller: a file over --max-bytes was hashed in full before its size was refused ---
def test_a_file_over_the_size_limit_is_refused_before_it_is_read(tiny_bundle, tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    with open(in_dir / "huge.dcm", "wb") as f:      # sparse: 1 GiB that costs no disk
        f.truncate(1 << 30)
    p = _batch(in_dir, out_dir, tiny_bundle, "--max-bytes", "1000000", code=WITH_RCHAR)
    assert p.returncode == 3, p.stderr
    assert "refused huge.dcm: 1073741824 bytes, over the 1000000 byte limit" in p.stderr, p.stderr
    read = int(p.stderr.rsplit("rchar:", 1)[1].split()[0])
    assert read < 256 << 20, f"the batch read {read} bytes for a 1 GiB file it refuses by its size"


def test_results_are_private_to_the_user(tiny_bundle, tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out" / "results"
    (in_dir / "ward").mkdir(parents=True)
    shutil.copy(DICOM, in_dir / "ward" / "a.dcm")
    (in_dir / "ward" / "notes.txt").write_text("not an ECG\n")
    p = _batch(in_dir, out_dir, tiny_bundle, "--save-images")
    assert p.returncode == 3, p.stderr
    for folder in (out_dir, out_dir / "ward"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    files = [f for f in out_dir.rglob("*") if f.is_file()]
    assert {f.name for f in files} >= {"a.dcm.json", "a.dcm.png", "errors.jsonl"}
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
