"""Signed bundles: an Ed25519 signature over manifest.json, which pins every file's size and sha256.

    manifest.sig  {"format": "gem-edge-signature", "version": 1, "algorithm": "ed25519",
                   "key_id": "3f9c0a1b2c3d4e5f", "signature": "<base64 of 64 bytes>"}

The signed message is SIGNED_PREFIX + the exact bytes of manifest.json, so a manifest cannot be re-serialized
into a different, equally valid one. Keys are PEM (RFC 8410: `openssl genpkey -algorithm ed25519` makes them
too); a key id is the first 16 hex digits of the sha256 of the 32 raw public-key bytes.

Trusted keys come from `Bundle.open(..., trusted_keys=PATH)` (the config file's `trusted_keys`) or
$GEM_TRUSTED_KEYS: a PEM file (one or more public keys) or a folder of them (`*.pub`, `*.pem`). With trusted
keys configured, a bundle that is unsigned, signed by another key, or whose manifest changed after signing is
refused in one line (BundleError) before its manifest is parsed; every file is then checked against the signed
manifest's sha256 before a native loader opens it (Bundle.path). Without them nothing changes, and a one-line
notice says so, once per process ($GEM_TRUSTED_KEYS set but empty: not checked, deliberately, and no notice). Verifying needs PyNaCl (`pip install 'gem-edge[deploy]'`: 3.9 MB installed,
against 15 MB for `cryptography`); it is imported only when trusted keys are configured.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import BundleError, GemEdgeError

SIGNATURE_FILE = "manifest.sig"
SIGNATURE_FORMAT = "gem-edge-signature"
SIGNATURE_VERSION = 1
SIGNED_PREFIX = b"gem-edge bundle manifest v1\n"     # domain separation: this key signs nothing else by accident
TRUSTED_KEYS_ENV = "GEM_TRUSTED_KEYS"
INSTALL_HINT = "pip install 'gem-edge[deploy]' (PyNaCl)"

# DER prefixes of RFC 8410 Ed25519 keys: SubjectPublicKeyInfo, and PKCS#8 PrivateKeyInfo; the 32 key bytes follow
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM = re.compile(r"-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----", re.S)

_notice_given = False


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def public_key_pem(public_key: bytes) -> str:
    return _pem("PUBLIC KEY", _SPKI_PREFIX + public_key)


def private_key_pem(seed: bytes) -> str:
    return _pem("PRIVATE KEY", _PKCS8_PREFIX + seed)


def _pem(label: str, der: bytes) -> str:
    b64 = base64.b64encode(der).decode()
    return f"-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n"


def pem_keys(text: str, label: str, source: Path) -> list[bytes]:
    """The 32-byte Ed25519 keys of every `label` block ("PUBLIC KEY" or "PRIVATE KEY") of a PEM text."""
    prefix = _SPKI_PREFIX if label == "PUBLIC KEY" else _PKCS8_PREFIX
    keys = []
    for found, body in _PEM.findall(text):
        if found != label:
            continue
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except binascii.Error:
            raise GemEdgeError(f"{source}: a {label} block that is not base64") from None
        if len(der) != len(prefix) + 32 or not der.startswith(prefix):
            raise GemEdgeError(f"{source}: a {label} that is not an Ed25519 key (RFC 8410)")
        keys.append(der[len(prefix):])
    return keys


@dataclass(frozen=True)
class TrustedKeys:
    """The public keys a bundle may be signed by: {key id: 32 raw bytes}, and where they were read from."""

    keys: dict[str, bytes]
    source: str

    @classmethod
    def load(cls, path: str | os.PathLike) -> "TrustedKeys":
        """A PEM file or a folder of `*.pub` / `*.pem` files. Configured but empty or unreadable is refused: a
        typo must not turn the check off."""
        p = Path(path)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix in (".pub", ".pem") and f.is_file())
        elif p.is_file():
            files = [p]
        else:
            raise BundleError(p, "trusted keys not found (a PEM file or a folder of *.pub files)")
        keys = {}
        for f in files:
            try:
                text = f.read_text()
            except (OSError, UnicodeDecodeError) as e:
                raise BundleError(f, f"trusted key unreadable ({e})") from None
            for k in pem_keys(text, "PUBLIC KEY", f):
                keys[key_id(k)] = k
        if not keys:
            raise BundleError(p, "no Ed25519 public key found in the trusted keys")
        return cls(keys, str(p))


def trusted_keys_from(arg: "str | os.PathLike | TrustedKeys | bool | None") -> TrustedKeys | bool | None:
    """The argument, else $GEM_TRUSTED_KEYS, loaded. None where neither is set: signatures are not checked, and
    the notice says so. False (the argument, or $GEM_TRUSTED_KEYS set but empty): not checked, deliberately, so no
    notice (the tool about to sign the bundle; a site that does not sign; the tests)."""
    if isinstance(arg, TrustedKeys) or arg is False:
        return arg
    if arg not in (None, ""):
        return TrustedKeys.load(arg)
    env = os.environ.get(TRUSTED_KEYS_ENV)
    if env is None:
        return None
    return TrustedKeys.load(env) if env else False


@dataclass(frozen=True)
class Signature:
    key_id: str
    signature: bytes          # 64 bytes

    def to_json(self) -> str:
        return json.dumps({"format": SIGNATURE_FORMAT, "version": SIGNATURE_VERSION, "algorithm": "ed25519",
                           "key_id": self.key_id, "signature": base64.b64encode(self.signature).decode()},
                          indent=2) + "\n"

    @classmethod
    def read(cls, path: Path) -> "Signature":
        try:
            d = json.loads(path.read_text())
            if d.get("format") != SIGNATURE_FORMAT or d.get("algorithm") != "ed25519":
                raise ValueError("not a gem-edge Ed25519 signature")
            if d.get("version") != SIGNATURE_VERSION:
                raise ValueError(f"signature version {d.get('version')!r} not supported")
            sig = base64.b64decode(d["signature"], validate=True)
            if len(sig) != 64 or not isinstance(d["key_id"], str):
                raise ValueError("malformed signature")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, binascii.Error) as e:
            raise BundleError(path, f"unreadable signature ({e})") from None
        return cls(d["key_id"], sig)


def verify_manifest(root: Path, manifest_bytes: bytes, trusted: TrustedKeys) -> str:
    """The signer's key id, or BundleError: unsigned, signed by a key not trusted, or altered since signing."""
    sig_path = root / SIGNATURE_FILE
    if not sig_path.is_file():
        raise BundleError(root, f"unsigned bundle (no {SIGNATURE_FILE}) and trusted keys are configured "
                                f"({trusted.source}): sign it with gem-export sign")
    sig = Signature.read(sig_path)
    key = trusted.keys.get(sig.key_id)
    if key is None:
        raise BundleError(root, f"signed by key {sig.key_id}, which is not among the {len(trusted.keys)} trusted "
                                f"key(s) of {trusted.source}")
    try:
        from nacl.exceptions import BadSignatureError
        from nacl.signing import VerifyKey
    except ImportError:
        raise BundleError(root, f"trusted keys are configured ({trusted.source}) but signatures cannot be "
                                f"checked: {INSTALL_HINT}") from None
    try:
        VerifyKey(key).verify(SIGNED_PREFIX + manifest_bytes, sig.signature)
    except BadSignatureError:
        raise BundleError(root / "manifest.json", f"altered after signing: the signature of key {sig.key_id} "
                                                  "does not match it") from None
    return sig.key_id


def notice_unchecked_once() -> None:
    """One line on stderr, once per process: signatures are not checked."""
    global _notice_given
    if not _notice_given:
        _notice_given = True
        print(f"gem-edge: notice: bundle signatures are not checked (no trusted keys: set {TRUSTED_KEYS_ENV})",
              file=sys.stderr, flush=True)
