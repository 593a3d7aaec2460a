"""The audit trail: one hash-chained JSON line per interpretation from `gem-run ECG --audit FILE`, no patient
data in it, and `gem-run audit verify` naming the first bad line of a log with a line removed, edited or moved."""
import json
import os
import subprocess
import sys

import pytest

from clirun import run_main, small_disk
from gem_runtime.audit import GENESIS, AuditEntry, AuditError, AuditLog, verify_log
from gem_runtime.bundle import default_bundle
from gem_runtime.cli import main


def _dicom() -> str:
    from pydicom.data import get_testdata_file

    return get_testdata_file("waveform_ecg.dcm")


def _entry(i: int) -> AuditEntry:
    return AuditEntry(tool="serve", caller=f"token:t{i}", outcome="ok", input_sha256=f"{i:064x}",
                      bundle_id="b", llm_type="q4_k_m", settings={"max_new_tokens": 8})


@pytest.fixture
def log5(tmp_path):
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        heads = [log.append(_entry(i)) for i in range(5)]
    return path, heads


def _verify(path, capsys, *extra):
    return run_main(main, ["audit", "verify", str(path), *extra], capsys)


def test_lines_chain_from_genesis_and_the_file_is_private(log5, capsys):
    path, heads = log5
    assert path.stat().st_mode & 0o777 == 0o600
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["seq"] for x in lines] == [1, 2, 3, 4, 5] and lines[0]["prev"] == GENESIS
    assert [x["prev"] for x in lines[1:]] == heads[:-1] and lines[0]["time"].endswith("Z")
    assert verify_log(path)[:2] == (5, heads[-1])
    code, out, err = _verify(path, capsys, "--head", heads[2])
    assert code == 0 and out.strip() == f"ok: 5 lines, chain intact, head {heads[-1]}", err


def _rewrite(path, lines):
    path.write_text("".join(x + "\n" for x in lines))


@pytest.mark.parametrize("change, bad_line, why", [
    ("remove", 3, "seq 4, expected 3: a line removed, added or moved"),
    ("edit", 3, "its prev is not the hash of line 2 (line 2 or this line edited)"),
    ("swap", 2, "seq 3, expected 2"),
    ("forge", 3, "its prev is not the hash of line 2")])
def test_a_removed_edited_or_moved_line_is_named(log5, capsys, change, bad_line, why):
    path, _ = log5
    lines = path.read_text().splitlines()
    if change == "remove":
        del lines[2]
    elif change == "edit":
        lines[1] = lines[1].replace('"outcome":"ok"', '"outcome":"error: EcgReadError"')
    elif change == "swap":
        lines[1], lines[2] = lines[2], lines[1]
    else:                          # line 3 removed and the later seqs renumbered: the chain still breaks
        del lines[2]
        lines[2:] = [x.replace(f'"seq":{i + 4}', f'"seq":{i + 3}') for i, x in enumerate(lines[2:])]
    _rewrite(path, lines)
    code, out, err = _verify(path, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1, err
    assert lines[0].startswith(f"gem-run: error: {path}: line {bad_line}: {why}"), err


def test_lines_cut_off_the_end_show_against_a_kept_head(log5, capsys):
    path, heads = log5
    _rewrite(path, path.read_text().splitlines()[:3])
    assert _verify(path, capsys)[0] == 0                     # a chain alone cannot see it ...
    code, _, err = _verify(path, capsys, "--head", heads[-1])
    assert code == 2 and "is not in the log: lines cut off its end" in err   # ... a head kept elsewhere can


def test_a_torn_last_line_or_an_open_mode_is_refused_before_appending(log5, tmp_path):
    path, _ = log5
    with open(path, "ab") as f:
        f.write(b'{"seq":6,')
    with pytest.raises(AuditError, match="the last line is incomplete"):
        AuditLog(path)
    other = tmp_path / "open.jsonl"
    other.touch(mode=0o644)
    os.chmod(other, 0o644)
    with pytest.raises(AuditError, match=r"open to group or others \(mode 0644\)"):
        AuditLog(other)


def test_a_line_the_disk_cannot_take_leaves_no_torn_line(tmp_path, capsys):
    """On a full disk an append fails whole: before, part of the line stayed, and the log refused every later
    append and the next start ("the last line is incomplete")."""
    with small_disk(tmp_path / "disk", "64k") as disk:
        path = disk / "audit.jsonl"
        with AuditLog(path) as log:
            heads = [log.append(_entry(i)) for i in range(3)]
            filler = disk / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)        # the disk filled to its last byte
            try:
                while os.write(fd, b"x" * 512):
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
            with pytest.raises(OSError):
                for i in range(3, 20):
                    heads.append(log.append(_entry(i)))
            assert path.read_bytes().endswith(b"\n")
            filler.unlink()
            heads.append(log.append(_entry(99)))            # room again: the chain goes on
        code, out, err = _verify(path, capsys)
    assert code == 0 and heads[-1] in out, (out, err)


def test_processes_appending_together_keep_one_chain(tmp_path):
    path = tmp_path / "audit.jsonl"
    code = ("import sys\nfrom gem_runtime.audit import AuditEntry, AuditLog\nlog = AuditLog(sys.argv[1])\n"
            "for i in range(25):\n"
            "    log.append(AuditEntry(tool='batch', caller='cli:t', outcome='ok', input_sha256=str(i)))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)]) for _ in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert verify_log(path)[0] == 100


def test_gem_run_audits_each_interpretation_and_refusal(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    log = tmp_path / "audit.jsonl"
    code, out, err = run_main(main, [_dicom(), "--bundle", str(default_bundle()), "--json", "--max-new-tokens", "4",
                                     "--audit", str(log)], capsys)
    assert code == 0, err
    monkeypatch.setenv("GEM_AUDIT_LOG", str(log))
    bad = tmp_path / "Doe_Jane_1961.hea"            # a file name can be a patient's
    bad.write_text("garbage\n")
    code, _, err = run_main(main, [str(bad), "--bundle", str(default_bundle())], capsys)
    assert code == 2
    ok, refused = [json.loads(x) for x in log.read_text().splitlines()]
    text = json.loads(out)["text"]
    import hashlib

    assert ok["outcome"] == "ok" and ok["tool"] == "gem-run" and ok["caller"].startswith("cli:")
    assert ok["output_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert ok["input_sha256"] == hashlib.sha256(open(_dicom(), "rb").read()).hexdigest()
    assert ok["bundle_id"] == json.loads(out)["bundle_id"] and ok["llm_type"] == json.loads(out)["quant"]
    assert ok["encoder_precision"] and ok["settings"]["max_new_tokens"] == 4 and ok["study_uid"]
    assert refused["outcome"] == "error: EcgReadError" and refused["bundle_id"] is None
    assert "Doe" not in log.read_text() and "waveform_ecg" not in log.read_text()
    assert verify_log(log)[0] == 2


def test_an_unwritable_audit_log_is_one_line_before_any_work(tmp_path, capsys):
    code, out, err = run_main(main, [_dicom(), "--audit", str(tmp_path / "no" / "audit.jsonl")], capsys)
    assert code == 2 and err.strip().splitlines() == [
        f"gem-run: error: {tmp_path / 'no' / 'audit.jsonl'}: audit log folder {tmp_path / 'no'} does not exist"]
