"""The deployment's one configuration file (TOML, read with the standard library's tomllib) for `gem-run serve`
and `gem-run dicom-listen`: `load_config(path) -> DeployConfig`, typed frozen dataclasses, one section each.

    [model]   bundle, threads, quant, max_new_tokens, trusted_keys, revise_rhythm
    [audit]   log
    [serve]   host, port, token_file, allow_hosts, allow_origins, queue, timeout_s, max_bytes, state_mb, read_timeout_s,
              max_connections_per_host
    [dicom]   out, host, port, ae_title, allow_ae, max_associations, max_associations_per_host, max_bytes,
              message_timeout_s, min_free_mb, retries, backoff_s, [dicom.forward], [dicom.hl7]

deploy/gem-edge.toml is the commented example. Every key is checked against the dataclasses below: an unknown
key, a wrong type or a bad value is refused in one line naming the file and the key (`DeployConfigError`:
`gem-edge.toml: serve.port: expected an integer, got str '8717'`). Paths must be absolute (a service's working
folder is /). The token is a secret, so it is never in the file: `serve.token_file` names a file only its owner
may read (systemd's LoadCredential= gives one), read here; a group- or world-readable one is refused.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .errors import GemEdgeError
from .manifest import QUANTS

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")        # as gem-run serve's and dicom-listen's flags


class DeployConfigError(GemEdgeError, ValueError):
    """A configuration file that cannot be read, or a key in it that is unknown, of the wrong type or out of range."""


@dataclass(frozen=True)
class ModelSection:
    bundle: Path | None = None           # a bundle folder, or a symlink to one (bundles/current); default: the demo
    threads: int | None = None           # default: all cores, at most 8
    quant: str | None = None             # LLM type; default: what `gem-run tune` chose here, else the bundle's
    max_new_tokens: int = 256
    trusted_keys: Path | None = None     # a PEM file or folder of public keys: the bundle must be signed by one
    revise_rhythm: bool = False          # revise contradicted rhythm statements (gem_runtime.revise): serve's default,
                                         # the DICOM listener's setting


@dataclass(frozen=True)
class AuditSection:
    log: Path                            # one hash-chained line per interpretation (gem_runtime.audit)


@dataclass(frozen=True)
class ServeSection:
    host: str = "127.0.0.1"
    port: int = 8717
    token_file: Path | None = None       # required to bind beyond this machine
    allow_hosts: tuple[str, ...] = ()    # more Host header names to answer to
    allow_origins: tuple[str, ...] = ()  # browser origins allowed to post from another site
    queue: int = 8
    timeout_s: float | None = None
    max_bytes: int = 200 * 2**20
    state_mb: int = 512
    read_timeout_s: float = 60.0
    max_connections_per_host: int = 64   # connections one client address may hold at once (0: no cap)
    token: str | None = field(default=None, repr=False, metadata={"derived": True})    # read from token_file

    @property
    def token_id(self) -> str | None:
        """What an audit line names the caller by: `token:` and 12 hex digits of the token's sha256."""
        from .audit import token_id

        return None if self.token is None else "token:" + token_id(self.token)


@dataclass(frozen=True)
class PeerSection:
    host: str
    port: int
    ae_title: str = ""                   # DICOM destinations only


@dataclass(frozen=True)
class DicomSection:
    out: Path                            # OUT/<SOPInstanceUID>/: the one folder the listener writes
    host: str = "127.0.0.1"
    port: int = 11112
    ae_title: str = "GEMEDGE"
    allow_ae: tuple[str, ...] = ()       # calling AE titles allowed; required to bind beyond this machine
    max_associations: int = 10
    max_associations_per_host: int = 4  # connections one peer host may hold at once
    max_bytes: int = 200 * 2**20         # one DICOM message; a peer sending more is aborted while it sends
    message_timeout_s: float = 60.0      # one DICOM message must arrive within this of its first PDU
    min_free_mb: int = 512               # disk kept free under `out` for the reports of what is stored
    retries: int = 5
    backoff_s: float = 2.0
    forward: PeerSection | None = None   # the SR by C-STORE (ae_title required)
    hl7: PeerSection | None = None       # the ORU^R01 over MLLP


@dataclass(frozen=True)
class DeployConfig:
    model: ModelSection = ModelSection()
    audit: AuditSection | None = None
    serve: ServeSection | None = None
    dicom: DicomSection | None = None
    source: Path = field(default=Path(), metadata={"derived": True})     # the file it was read from


def load_config(path: str | Path) -> DeployConfig:
    """Read and check a configuration file (and the token file it names); DeployConfigError on the first
    problem, naming the key."""
    path = Path(path)
    try:
        import tomllib
    except ImportError:                  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise DeployConfigError(f"{path}: reading a config needs Python 3.11+ (tomllib) or tomli") from None
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise DeployConfigError(f"{path}: cannot be read ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise DeployConfigError(f"{path}: not valid TOML ({e})") from None
    cfg = dataclasses.replace(_build(DeployConfig, data, "", path), source=path)
    _check(cfg, path)
    if cfg.serve is not None and cfg.serve.token_file is not None:
        cfg = dataclasses.replace(cfg, serve=dataclasses.replace(cfg.serve, token=read_token(cfg.serve.token_file)))
    return cfg


def read_token(path: Path) -> str:
    """The secret in a token file only its owner may read (mode 0600 or 0400)."""
    try:
        st = path.stat()
    except OSError as e:
        raise DeployConfigError(f"{path}: token file cannot be read ({e.strerror})") from None
    if st.st_mode & 0o077:
        raise DeployConfigError(f"{path}: token file is open to group or others (mode {st.st_mode & 0o777:04o}): "
                                "anyone who reads it can send ECGs to the service; chmod 600 it")
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise DeployConfigError(f"{path}: token file cannot be read ({e})") from None
    if not token or len(token.split()) != 1:
        raise DeployConfigError(f"{path}: token file must hold one token on one line")
    if len(token) < 16:
        raise DeployConfigError(f"{path}: token of {len(token)} characters; use at least 16 (e.g. openssl rand "
                                "-hex 32)")
    return token


# --- checked construction ------------------------------------------------------------------------------------

def _fail(file: Path, key: str, problem: str):
    raise DeployConfigError(f"{file}: {key}: {problem}")


def _build(tp, value, key: str, file: Path):
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        return _build(inner, value, key, file)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            _fail(file, key, f"expected a table, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp) if not f.metadata.get("derived")}
        for name in value:
            if name not in fields:
                _fail(file, f"{key}.{name}".lstrip("."), f"unknown key (known: {', '.join(fields)})")
        kwargs = {}
        for name, f in fields.items():
            sub = f"{key}.{name}".lstrip(".")
            if name in value:
                kwargs[name] = _build(hints[name], value[name], sub, file)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                _fail(file, sub, "missing")
        return tp(**kwargs)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            _fail(file, key, f"expected a list of strings, got {_shown(value)}")
        return tuple(value)
    if tp is Path:
        if not isinstance(value, str) or not value:
            _fail(file, key, f"expected a path (a string), got {_shown(value)}")
        if not Path(value).is_absolute():
            _fail(file, key, f"{value!r} is relative; give an absolute path (a service runs in /)")
        return Path(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(file, key, f"expected a number, got {_shown(value)}")
        return float(value)
    if tp is bool and not isinstance(value, bool):
        _fail(file, key, f"expected true or false, got {_shown(value)}")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        _fail(file, key, f"expected an integer, got {_shown(value)}")
    if tp is str and not isinstance(value, str):
        _fail(file, key, f"expected a string, got {_shown(value)}")
    return value


def _shown(value) -> str:
    return f"{type(value).__name__} {value!r:.40}"


def _check(cfg: DeployConfig, file: Path) -> None:
    """Values, once types are right: ranges, choices, and the rules gem-run's flags also enforce."""
    m = cfg.model
    if m.quant is not None and m.quant not in QUANTS:
        _fail(file, "model.quant", f"{m.quant!r} unknown; choose from {', '.join(QUANTS)}")
    _at_least(file, "model.threads", m.threads, 1)
    _at_least(file, "model.max_new_tokens", m.max_new_tokens, 1)
    if cfg.serve is None and cfg.dicom is None:
        _fail(file, "serve", "neither [serve] nor [dicom] is configured: nothing to run")
    if (s := cfg.serve) is not None:
        _port(file, "serve.port", s.port)
        for k in ("queue", "max_bytes", "state_mb", "max_connections_per_host"):
            _at_least(file, f"serve.{k}", getattr(s, k), 0 if k in ("state_mb", "max_connections_per_host") else 1)
        for k in ("read_timeout_s", "timeout_s"):
            _positive(file, f"serve.{k}", getattr(s, k))
        if s.host not in LOCAL_HOSTS and s.token_file is None:
            _fail(file, "serve.host", f"{s.host} would let other machines in: set serve.token_file too")
    if (d := cfg.dicom) is not None:
        _port(file, "dicom.port", d.port)
        _ae(file, "dicom.ae_title", d.ae_title)
        for i, ae in enumerate(d.allow_ae):
            _ae(file, f"dicom.allow_ae[{i}]", ae)
        if d.host not in LOCAL_HOSTS and not d.allow_ae:
            _fail(file, "dicom.host", f"{d.host} would accept any caller: set dicom.allow_ae too")
        _at_least(file, "dicom.max_associations", d.max_associations, 1)
        _at_least(file, "dicom.max_bytes", d.max_bytes, 1)
        _at_least(file, "dicom.max_associations_per_host", d.max_associations_per_host, 1)
        _at_least(file, "dicom.min_free_mb", d.min_free_mb, 0)
        _positive(file, "dicom.message_timeout_s", d.message_timeout_s)
        for name, peer in (("forward", d.forward), ("hl7", d.hl7)):
            if peer is not None:
                _port(file, f"dicom.{name}.port", peer.port)
        if d.forward is not None:
            _ae(file, "dicom.forward.ae_title", d.forward.ae_title)
        if d.hl7 is not None and d.hl7.ae_title:
            _fail(file, "dicom.hl7.ae_title", "an HL7 (MLLP) destination has no AE title")


def _positive(file: Path, key: str, value) -> None:
    if value is not None and not value > 0:
        _fail(file, key, f"{value} is not above 0")


def _at_least(file: Path, key: str, value, low: int) -> None:
    if value is not None and value < low:
        _fail(file, key, f"{value} is below {low}")


def _port(file: Path, key: str, port: int) -> None:
    if not 1 <= port <= 65535:
        _fail(file, key, f"{port} is not a TCP port (1-65535)")


def _ae(file: Path, key: str, title: str) -> None:
    if not (1 <= len(title) <= 16) or not title.strip() or not title.isascii() or "\\" in title:
        _fail(file, key, f"{title!r}: an AE title is 1-16 ASCII characters, not all spaces, no backslash")
