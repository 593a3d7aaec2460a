"""The bundle: a folder with encoders (ONNX, TensorRT engines), GGUF LLM files, tokenizer and manifest.json.

The manifest lists every file with its size and sha256. Before a native loader touches a file, its hash is
checked; results are cached by (path, size, mtime) so a warm start does not re-hash gigabytes.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import BundleError

FORMAT = "gem-edge-bundle"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.model"
ENCODERS = ("ecg_encoder", "image_encoder")
QUANTS = ("f16", "q8_0", "q4_k_m")


def llm_file(quant: str) -> str:
    return f"llm-{quant}.gguf"


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def file_entry(path: Path) -> dict:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def default_bundle() -> Path:
    """The committed demo bundle (bundles/demo at the repository root), or $GEM_BUNDLE."""
    env = os.environ.get("GEM_BUNDLE")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "bundles" / "demo"


def _cache_file() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "gem-edge" / "verified.json"


@dataclass
class Bundle:
    root: Path
    manifest: dict

    @classmethod
    def open(cls, root: Path) -> "Bundle":
        root = Path(root)
        path = root / MANIFEST
        if not root.is_dir():
            raise BundleError(root, "bundle folder not found")
        if not path.exists():
            raise BundleError(root, f"no {MANIFEST}: not a gem-edge bundle")
        try:
            m = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(path, f"unreadable manifest ({e})") from None
        if not isinstance(m, dict) or m.get("format") != FORMAT:
            raise BundleError(path, f"not a {FORMAT} manifest")
        if m.get("format_version") not in SUPPORTED_VERSIONS:
            raise BundleError(path, f"format version {m.get('format_version')} not supported "
                                    f"(this runtime reads {', '.join(map(str, SUPPORTED_VERSIONS))})")
        if not m.get("complete"):
            raise BundleError(path, "bundle is marked incomplete (its export failed or was interrupted)")
        for key in ("model", "prompt", "preprocessing", "files", "llm", "encoders"):
            if key not in m:
                raise BundleError(path, f"manifest lacks {key!r}")
        return cls(root, m)

    @property
    def bundle_id(self) -> str:
        return self.manifest.get("bundle_id", "")

    def path(self, name: str, verify: bool = True) -> Path:
        """The path of a listed file, its sha256 checked first (cached by size and mtime)."""
        entry = self.manifest["files"].get(name)
        if entry is None:
            raise BundleError(self.root, f"{name} is not listed in {MANIFEST}")
        p = self.root / name
        if not p.exists():
            raise BundleError(p, "listed in the manifest but missing")
        st = p.stat()
        if st.st_size != entry["bytes"]:
            raise BundleError(p, f"size {st.st_size} bytes, manifest says {entry['bytes']}")
        if verify:
            key = f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"
            cache = _load_cache()
            if cache.get(key) != entry["sha256"]:
                digest = sha256_file(p)
                if digest != entry["sha256"]:
                    raise BundleError(p, f"sha256 mismatch (file {digest[:12]}..., manifest "
                                         f"{entry['sha256'][:12]}...): corrupted or modified")
                cache[key] = digest
                _save_cache(cache)
        return p

    def verify_all(self) -> list[str]:
        """Hash every listed file now (no cache). Returns the names checked; raises on the first bad one."""
        names = sorted(self.manifest["files"])
        for name in names:
            p = self.root / name
            if not p.exists():
                raise BundleError(p, "listed in the manifest but missing")
            if sha256_file(p) != self.manifest["files"][name]["sha256"]:
                raise BundleError(p, "sha256 mismatch: corrupted or modified")
        return names

    def llm_quants(self) -> list[str]:
        return [q for q in QUANTS if q in self.manifest["llm"]]


def _load_cache() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(cache: dict) -> None:
    f = _cache_file()
    try:
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(f)
    except OSError:
        pass  # a read-only home only costs re-hashing next time
