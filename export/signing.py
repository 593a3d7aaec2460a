"""`gem-export keygen` and `gem-export sign`: Ed25519 keys (PEM, RFC 8410) and a bundle's manifest.sig.

The runtime checks what is written here (gem_runtime.signing); the private key never leaves the machine that
builds bundles. PyNaCl is the `deploy` extra.
"""
from __future__ import annotations

import os
from pathlib import Path

from gem_runtime.bundle import Bundle
from gem_runtime.errors import GemEdgeError
from gem_runtime.files import PRIVATE_FILE_MODE, atomic_write
from gem_runtime.manifest import MANIFEST_FILE
from gem_runtime.signing import (INSTALL_HINT, SIGNATURE_FILE, SIGNED_PREFIX, Signature, TrustedKeys, key_id,
                                 pem_keys, private_key_pem, public_key_pem)

PRIVATE_KEY_FILE = "gem-edge-signing.key"
PUBLIC_KEY_FILE = "gem-edge-signing.pub"


def _nacl():
    try:
        from nacl import signing
    except ImportError:
        raise GemEdgeError(f"signing needs PyNaCl: {INSTALL_HINT}") from None
    return signing


def keygen(out: Path) -> tuple[Path, Path, str]:
    """A new key pair in `out`: the private key 0600 (never overwritten), the public key beside it."""
    signing = _nacl()
    out.mkdir(parents=True, exist_ok=True)
    private, public = out / PRIVATE_KEY_FILE, out / PUBLIC_KEY_FILE
    for p in (private, public):
        if p.exists():
            raise GemEdgeError(f"{p}: already exists (a key is never overwritten; move it away first)")
    key = signing.SigningKey.generate()
    raw_public = bytes(key.verify_key)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "w") as f:
        f.write(private_key_pem(bytes(key)))
        f.flush()
        os.fsync(f.fileno())
    atomic_write(public, public_key_pem(raw_public))
    return private, public, key_id(raw_public)


def read_private_key(path: Path):
    """The signing key of a PEM file; refused when group or others may read it."""
    signing = _nacl()
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise GemEdgeError(f"{path}: private key is readable by group or others (mode {mode:04o}): chmod 600 it")
    seeds = pem_keys(path.read_text(), "PRIVATE KEY", path)
    if len(seeds) != 1:
        raise GemEdgeError(f"{path}: expected one Ed25519 PRIVATE KEY block, found {len(seeds)}")
    return signing.SigningKey(seeds[0])


def sign_bundle(bundle_dir: Path, key_path: Path) -> tuple[str, int]:
    """Re-hash every file against the manifest, then sign the manifest's bytes. Returns (key id, files)."""
    key = read_private_key(key_path)
    names = Bundle.open(bundle_dir, verify="always", trusted_keys=False).verify_all()
    raw = (bundle_dir / MANIFEST_FILE).read_bytes()
    raw_public = bytes(key.verify_key)
    sig = Signature(key_id(raw_public), key.sign(SIGNED_PREFIX + raw).signature)
    atomic_write(bundle_dir / SIGNATURE_FILE, sig.to_json())
    # read back through the runtime's own check, with this key as the only trusted one
    Bundle.open(bundle_dir, trusted_keys=TrustedKeys({sig.key_id: raw_public}, str(key_path)))
    return sig.key_id, len(names)
