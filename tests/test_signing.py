"""Signed bundles: gem-export keygen / sign, and gem-run refusing, with trusted keys configured, a bundle that is
unsigned, signed by another key, or altered (its manifest, or a file it pins), in one line and exit 2, before any
native loader opens a file; a good signature accepted; without trusted keys, today's behaviour and one notice."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from clirun import run_main, run_without
from gem_export.cli import main as export_main
from gem_runtime.bundle import Bundle, default_bundle, write_manifest
from gem_runtime.cli import main
from gem_runtime.errors import BundleError

DEMO = default_bundle()


def _dicom() -> str:
    from pydicom.data import get_testdata_file

    return get_testdata_file("waveform_ecg.dcm")


@pytest.fixture
def signed(tmp_path, monkeypatch, capsys):
    """A signed copy of the demo bundle, its key pair, and GEM_TRUSTED_KEYS naming the public key's folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("GEM_TRUSTED_KEYS", raising=False)
    bundle, keys = tmp_path / "demo", tmp_path / "keys"
    shutil.copytree(DEMO, bundle)
    code, out, err = run_main(export_main, ["keygen", "--out", str(keys)], capsys)
    assert code == 0, err
    code, out, err = run_main(export_main, ["sign", "--bundle", str(bundle), "--key",
                                            str(keys / "gem-edge-signing.key")], capsys)
    assert code == 0 and "signed" in out and "10 files verified" in out, err
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    shutil.copy(keys / "gem-edge-signing.pub", trusted / "release.pub")
    monkeypatch.setenv("GEM_TRUSTED_KEYS", str(trusted))
    return bundle, keys


def _run(bundle, capsys, *extra):
    return run_main(main, [_dicom(), "--bundle", str(bundle), "--json", "--max-new-tokens", "4", *extra], capsys)


def _refused(bundle, capsys) -> str:
    code, out, err = _run(bundle, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1, err
    return lines[0]


def test_keygen_writes_a_private_key_only_its_owner_reads(signed):
    _, keys = signed
    assert (keys / "gem-edge-signing.key").stat().st_mode & 0o777 == 0o600
    assert "BEGIN PUBLIC KEY" in (keys / "gem-edge-signing.pub").read_text()


def test_a_good_signature_is_accepted(signed, capsys):
    bundle, _ = signed
    code, out, err = _run(bundle, capsys)
    assert code == 0 and '"new_tokens"' in out, err
    assert "notice" not in err
    assert Bundle.open(bundle).signer == out_key_id(signed[1])


def out_key_id(keys) -> str:
    from gem_runtime.signing import TrustedKeys

    (kid,) = TrustedKeys.load(keys / "gem-edge-signing.pub").keys
    return kid


def test_an_unsigned_bundle_is_refused(signed, capsys):
    bundle, _ = signed
    (bundle / "manifest.sig").unlink()
    assert "unsigned bundle (no manifest.sig)" in _refused(bundle, capsys)


def test_a_bundle_signed_by_another_key_is_refused(signed, tmp_path, capsys):
    bundle, _ = signed
    run_main(export_main, ["keygen", "--out", str(tmp_path / "other")], capsys)
    run_main(export_main, ["sign", "--bundle", str(bundle), "--key",
                           str(tmp_path / "other" / "gem-edge-signing.key")], capsys)
    assert "which is not among the 1 trusted key(s)" in _refused(bundle, capsys)


def test_a_manifest_altered_after_signing_is_refused(signed, capsys):
    bundle, _ = signed
    m = bundle / "manifest.json"
    default = json.loads(m.read_text())["default_quant"]
    other = "q4_0" if default != "q4_0" else "f16"
    altered = m.read_text().replace(f'"default_quant": "{default}"', f'"default_quant": "{other}"')
    assert altered != m.read_text()
    m.write_text(altered)
    assert "manifest.json: altered after signing" in _refused(bundle, capsys)


def test_a_file_altered_after_signing_is_refused_before_it_is_loaded(signed, capsys):
    bundle, _ = signed
    default = json.loads((bundle / "manifest.json").read_text())["default_quant"]
    f = bundle / f"llm-{default}.gguf"               # the demo's default type: the file gem-run loads
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    assert f"{f}: sha256 mismatch" in _refused(bundle, capsys)


def test_a_missing_or_empty_trusted_keys_setting_is_refused_not_ignored(signed, tmp_path, monkeypatch, capsys):
    bundle, _ = signed
    monkeypatch.setenv("GEM_TRUSTED_KEYS", str(tmp_path / "no-such-keys"))
    assert "trusted keys not found" in _refused(bundle, capsys)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("GEM_TRUSTED_KEYS", str(tmp_path / "empty"))
    assert "no Ed25519 public key found" in _refused(bundle, capsys)


def test_trusted_keys_as_an_argument(signed, tmp_path, monkeypatch):
    bundle, keys = signed
    monkeypatch.delenv("GEM_TRUSTED_KEYS")
    b = Bundle.open(bundle, trusted_keys=keys / "gem-edge-signing.pub")
    assert b.signer and b.path("tokenizer.model").is_file()
    (bundle / "manifest.sig").unlink()
    with pytest.raises(BundleError, match="unsigned bundle"):
        Bundle.open(bundle, trusted_keys=str(keys / "gem-edge-signing.pub"))


def test_rewriting_the_manifest_drops_the_old_signature(signed):
    bundle, _ = signed
    write_manifest(bundle, Bundle.open(bundle).manifest)
    assert not (bundle / "manifest.sig").exists()


def test_sign_refuses_a_private_key_others_can_read(signed, capsys):
    bundle, keys = signed
    os.chmod(keys / "gem-edge-signing.key", 0o644)
    code, _, err = run_main(export_main, ["sign", "--bundle", str(bundle), "--key",
                                          str(keys / "gem-edge-signing.key")], capsys)
    assert code == 2 and "readable by group or others (mode 0644)" in err


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_an_openssl_key_signs_too(signed, tmp_path, monkeypatch, capsys):
    bundle, _ = signed
    key, pub = tmp_path / "ossl.key", tmp_path / "ossl.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    os.chmod(key, 0o600)
    code, _, err = run_main(export_main, ["sign", "--bundle", str(bundle), "--key", str(key)], capsys)
    assert code == 0, err
    assert Bundle.open(bundle, trusted_keys=pub).signer


def test_without_pynacl_trusted_keys_are_refused_in_one_line(signed):
    bundle, _ = signed
    p = run_without("nacl", [_dicom(), "--bundle", str(bundle)])
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "signatures cannot be checked: pip install 'gem-edge[deploy]'" in p.stderr


def test_without_trusted_keys_one_notice_per_process(tmp_path):
    code = ("from gem_runtime.bundle import Bundle, default_bundle\n"
            "for _ in range(3):\n"
            "    Bundle.open(default_bundle())\n")
    env = {k: v for k, v in os.environ.items() if k != "GEM_TRUSTED_KEYS"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0 and p.stderr.splitlines() == [
        "gem-edge: notice: bundle signatures are not checked (no trusted keys: set GEM_TRUSTED_KEYS)"], p.stderr
    quiet = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                           env={**env, "GEM_TRUSTED_KEYS": ""})               # set but empty: deliberately off
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
