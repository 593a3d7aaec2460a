"""The bundle: a folder with encoders (ONNX, TensorRT engines), GGUF LLM files, tokenizer and manifest.json.

The manifest (`manifest.Manifest`) lists every file with its size and sha256. Before a native loader touches
a file its hash is checked. A warm start need not re-hash gigabytes (sha256 runs at 1.0 GB/s on one core of
an Intel Xeon here: 4.0 s for a 4.08 GB GGUF, GEM-7B's Q4_K_M size), so a verified file is remembered by
what no write can keep: device, inode, size, mtime and ctime. A write that restores the mtime still moves
the ctime (the kernel sets it on every change and no call sets it back), so the file is hashed again.
`GEM_VERIFY=always` (or `Bundle.open(..., verify="always")`) hashes every file on every load, for media
where bits rot in place. With trusted keys (`Bundle.open(..., trusted_keys=PATH)` or $GEM_TRUSTED_KEYS) the
manifest's Ed25519 signature is checked before the manifest is parsed (signing.py).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import BundleError
from .files import PRIVATE_FILE_MODE, atomic_write, sha256_file
from .manifest import (FORMAT, LLM_TYPES, MANIFEST_FILE, QUANTS, SUPPORTED_VERSIONS, FileEntry, Manifest,
                       ManifestKeyError)
from .signing import SIGNATURE_FILE, TrustedKeys, notice_unchecked_once, trusted_keys_from, verify_manifest

VERIFY_MODES = ("cached", "always")


def file_entry(path: Path) -> FileEntry:
    return FileEntry(bytes=path.stat().st_size, sha256=sha256_file(path))


def default_bundle() -> Path:
    """The committed demo bundle (bundles/demo at the repository root), or $GEM_BUNDLE."""
    env = os.environ.get("GEM_BUNDLE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "bundles" / "demo"


@dataclass
class Bundle:
    root: Path
    manifest: Manifest
    verify: str = "cached"
    signer: str | None = None      # the key id of the signature checked at open; None: signatures not checked

    @classmethod
    def open(cls, root: str | Path, verify: str | None = None,
             trusted_keys: str | os.PathLike | TrustedKeys | bool | None = None) -> "Bundle":
        """Read and check the manifest. trusted_keys: a PEM file or folder of public keys (default
        $GEM_TRUSTED_KEYS); given, the bundle must be signed by one of them (signing.verify_manifest). False:
        signatures not checked and no notice (gem-export, which writes and signs bundles)."""
        root = Path(root)
        trusted = trusted_keys_from(trusted_keys)
        verify = verify or os.environ.get("GEM_VERIFY") or "cached"
        if verify not in VERIFY_MODES:
            raise BundleError(root, f"verify mode {verify!r} unknown; choose from {', '.join(VERIFY_MODES)}")
        path = root / MANIFEST_FILE
        if not root.is_dir():
            raise BundleError(root, "bundle folder not found")
        if not path.exists():
            raise BundleError(root, f"no {MANIFEST_FILE}: not a gem-edge bundle")
        raw = path.read_bytes()                       # read once: the bytes checked are the bytes parsed
        signer = verify_manifest(root, raw, trusted) if trusted else None
        try:
            m = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(path, f"unreadable manifest ({e})") from None
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise BundleError(path, f"not a {FORMAT} manifest")
        if m.get("format_version") not in SUPPORTED_VERSIONS:
            raise BundleError(path, f"format version {m.get('format_version')} not supported "
                                    f"(this runtime reads {', '.join(map(str, SUPPORTED_VERSIONS))})")
        if not m.get("complete"):
            raise BundleError(path, "bundle is marked incomplete (its export failed or was interrupted)")
        try:
            manifest = Manifest.from_dict(m)
        except ManifestKeyError as e:
            raise BundleError(path, f"bad manifest: {e}") from None
        if trusted is None:
            notice_unchecked_once()
        return cls(root, manifest, verify, signer)

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id

    def path(self, name: str) -> Path:
        """The path of a listed file, its size and sha256 checked first (see the module docstring)."""
        entry = self.manifest.files.get(name)
        if entry is None:
            raise BundleError(self.root, f"{name} is not listed in {MANIFEST_FILE}")
        p = self.root / name
        if not p.is_file():
            raise BundleError(p, "listed in the manifest but missing")
        st = p.stat()
        if st.st_size != entry.bytes:
            raise BundleError(p, f"size {st.st_size} bytes, manifest says {entry.bytes}")
        key = f"{p.resolve()}|{st.st_dev}:{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"
        cache = _load_cache() if self.verify == "cached" else {}
        if cache.get(key) != entry.sha256:
            _check_hash(p, entry)
            if self.verify == "cached":
                cache[key] = entry.sha256
                _save_cache(cache)
        return p

    def verify_all(self) -> list[str]:
        """Hash every listed file now (no cache). Returns the names checked; raises on the first bad one."""
        names = sorted(self.manifest.files)
        for name in names:
            p = self.root / name
            if not p.is_file():
                raise BundleError(p, "listed in the manifest but missing")
            _check_hash(p, self.manifest.files[name])
        return names

    def llm_quants(self) -> list[str]:
        return [q for q in QUANTS if q in self.manifest.llm]

    def llm_path(self, quant: str) -> Path:
        if quant not in LLM_TYPES:
            raise BundleError(self.root, f"unknown LLM type {quant!r}; choose from {', '.join(QUANTS)}")
        if quant not in self.manifest.llm:
            raise BundleError(self.root, f"no {quant} LLM in this bundle (has {', '.join(self.llm_quants())})")
        return self.path(self.manifest.llm[quant])

    def ngram_table(self):
        """Speculative decoding's draft table (speculate.NgramTable), None when the bundle has none."""
        if not self.manifest.ngram_file:
            return None
        from .speculate import NgramTable

        return NgramTable.load(self.path(self.manifest.ngram_file))

    def default_quant(self) -> str:
        have = self.llm_quants()
        return self.manifest.default_quant or ("q4_k_m" if "q4_k_m" in have else have[0])


def _check_hash(p: Path, entry: FileEntry) -> None:
    digest = sha256_file(p)
    if digest != entry.sha256:
        raise BundleError(p, f"sha256 mismatch (file {digest[:12]}..., manifest {entry.sha256[:12]}...): "
                             "corrupted or modified")


# --- writing (gem-export) ---------------------------------------------------------------------------------

def list_files(root: Path) -> dict[str, FileEntry]:
    """Every file of a bundle folder with its size and sha256 (the manifest, its signature and temporaries left
    out)."""
    return {p.name: file_entry(p) for p in sorted(Path(root).iterdir())
            if p.is_file() and p.name not in (MANIFEST_FILE, SIGNATURE_FILE) and not p.name.endswith(".tmp")}


def bundle_id_of(files: dict[str, FileEntry]) -> str:
    h = hashlib.sha256("".join(f"{k}:{v.sha256}" for k, v in sorted(files.items())).encode())
    return h.hexdigest()[:16]


def write_manifest(root: Path, manifest: Manifest | dict) -> None:
    """Atomically (tmp + rename). A typed manifest is checked by reading it back before it is written. A
    signature of the old manifest is removed: the bundle is unsigned until `gem-export sign` signs it again."""
    data = manifest.to_dict() if isinstance(manifest, Manifest) else manifest
    if isinstance(manifest, Manifest) and Manifest.from_dict(data) != manifest:
        raise AssertionError("manifest does not survive its own round trip")       # our bug
    (Path(root) / SIGNATURE_FILE).unlink(missing_ok=True)
    atomic_write(Path(root) / MANIFEST_FILE, json.dumps(data, indent=2))


# --- the verified-file cache --------------------------------------------------------------------------------

def _cache_file() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "gem-edge" / "verified.json"


def _load_cache() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(cache: dict) -> None:
    f = _cache_file()
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(f, json.dumps(cache), durable=False, mode=PRIVATE_FILE_MODE)
    except OSError:
        pass  # a read-only home only costs re-hashing next time
