"""The deployment's configuration file (gem_runtime.config): deploy/gem-edge.toml parses into typed frozen
sections; an unknown key, a wrong type or a bad value is refused in one line naming the key; the token is read
from a file only its owner may read, and never shown."""
import dataclasses
import os
from pathlib import Path

import pytest

from gem_runtime.config import DeployConfig, DeployConfigError, load_config
from gem_runtime.errors import GemEdgeError

EXAMPLE = Path(__file__).resolve().parents[1] / "deploy" / "gem-edge.toml"
TOKEN = "3f1c9a7e5b2d4c6a8e0f1b3d5c7a9e1f"


@pytest.fixture
def token_file(tmp_path) -> Path:
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    os.chmod(f, 0o600)
    return f


def _config(tmp_path, token_file, edit=lambda text: text) -> Path:
    text = EXAMPLE.read_text().replace("/run/credentials/gem-edge-serve.service/token", str(token_file))
    path = tmp_path / "gem-edge.toml"
    path.write_text(edit(text))
    return path


def test_the_example_parses_into_typed_sections(tmp_path, token_file):
    cfg = load_config(_config(tmp_path, token_file))
    assert isinstance(cfg, DeployConfig) and cfg.source == tmp_path / "gem-edge.toml"
    assert cfg.model.bundle == Path("/opt/gem-edge/bundles/current") and cfg.model.threads == 4
    assert cfg.model.trusted_keys == Path("/etc/gem-edge/trusted-keys") and cfg.model.quant is None
    assert cfg.model.revise_rhythm is False
    assert cfg.audit.log == Path("/var/lib/gem-edge/audit/audit.jsonl")
    assert cfg.serve.port == 8717 and cfg.serve.timeout_s == 120.0 and cfg.serve.allow_hosts == ()
    assert cfg.serve.token == TOKEN and cfg.serve.token_id.startswith("token:") and TOKEN not in repr(cfg)
    assert cfg.dicom.allow_ae == ("MUSE01", "CART7") and cfg.dicom.out == Path("/var/lib/gem-edge/inbox")
    assert (cfg.dicom.forward.host, cfg.dicom.forward.port, cfg.dicom.forward.ae_title) == (
        "archive.hospital.local", 104, "PACS")
    assert cfg.dicom.hl7.port == 2575 and cfg.dicom.hl7.ae_title == ""
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.serve.port = 1


@pytest.mark.parametrize("old, new, message", [
    ("queue = 8", "queue = 8\nqueu = 9", "serve.queu: unknown key (known: host, port, token_file"),
    ("port = 8717", 'port = "8717"', "serve.port: expected an integer, got str '8717'"),
    ("port = 8717", "port = 87170", "serve.port: 87170 is not a TCP port"),
    ("threads = 4", "threads = true", "model.threads: expected an integer, got bool True"),
    ("revise_rhythm = false", 'revise_rhythm = "yes"', "model.revise_rhythm: expected true or false, got str 'yes'"),
    ("backoff_s = 2.0", 'backoff_s = "2s"', "dicom.backoff_s: expected a number, got str '2s'"),
    ('allow_ae = ["MUSE01", "CART7"]', 'allow_ae = "CART7"', "dicom.allow_ae: expected a list of strings"),
    ('allow_ae = ["MUSE01", "CART7"]', 'allow_ae = ["A_TITLE_LONGER_THAN_16"]', "dicom.allow_ae[0]: 'A_TITLE_LONG"),
    ('out = "/var/lib/gem-edge/inbox"', "", "dicom.out: missing"),
    ('out = "/var/lib/gem-edge/inbox"', 'out = "inbox"', "dicom.out: 'inbox' is relative; give an absolute path"),
    ('# quant = "q4_k_m"', 'quant = "q3"', "model.quant: 'q3' unknown; choose from f16"),
    ('ae_title = "PACS"', "", "dicom.forward.ae_title: '': an AE title is 1-16"),
    ("[audit]", "[audit]\nrotate = true", "audit.rotate: unknown key"),
    ("[model]", "[modle]", "modle: unknown key (known: model, audit, serve, dicom)"),
    ('allow_ae = ["MUSE01", "CART7"]', "allow_ae = []", "dicom.host: 0.0.0.0 would accept any caller"),
    ("port = 11112", "port = 11112\nport = 11113", "not valid TOML (Cannot overwrite a value"),
])
def test_a_bad_key_is_refused_in_one_line_naming_it(tmp_path, token_file, old, new, message):
    path = _config(tmp_path, token_file, lambda text: text.replace(old, new, 1))
    with pytest.raises(DeployConfigError) as e:
        load_config(path)
    assert isinstance(e.value, GemEdgeError) and "\n" not in str(e.value)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value), str(e.value)


def test_a_public_bind_needs_a_token_file(tmp_path, token_file):
    path = _config(tmp_path, token_file, lambda t: t.replace('host = "127.0.0.1"', 'host = "0.0.0.0"').replace(
        f'token_file = "{token_file}"', ""))
    with pytest.raises(DeployConfigError, match="serve.host: 0.0.0.0 would let other machines in"):
        load_config(path)


@pytest.mark.parametrize("mode, content, message", [
    (0o640, TOKEN, "token file is open to group or others (mode 0640): anyone who reads it can send ECGs"),
    (0o604, TOKEN, "(mode 0604)"),
    (0o600, "", "must hold one token on one line"),
    (0o600, "short", "token of 5 characters; use at least 16"),
    (0o400, TOKEN, None)])
def test_the_token_file_must_be_private(tmp_path, token_file, mode, content, message):
    token_file.write_text(content)
    os.chmod(token_file, mode)
    path = _config(tmp_path, token_file)
    if message is None:
        assert load_config(path).serve.token == TOKEN
        return
    with pytest.raises(DeployConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{token_file}: ") and message in str(e.value)


def test_a_missing_file_and_a_serve_only_config(tmp_path):
    with pytest.raises(DeployConfigError, match="cannot be read"):
        load_config(tmp_path / "nope.toml")
    p = tmp_path / "serve.toml"
    p.write_text("[serve]\nport = 9000\n")
    cfg = load_config(p)
    assert cfg.serve.port == 9000 and cfg.serve.token is None and cfg.dicom is None and cfg.audit is None
    p.write_text("[model]\nthreads = 2\n")
    with pytest.raises(DeployConfigError, match="neither \\[serve\\] nor \\[dicom\\]"):
        load_config(p)
