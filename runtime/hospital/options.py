"""What a DICOM listener is told (`ListenerOptions`, `Peer`) and what it counts (`ListenerStats`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..readers.dispatch import DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class Peer:
    """Where reports go on: a DICOM AE (host, port, AE title) or an MLLP endpoint (host, port)."""

    host: str
    port: int
    ae_title: str = ""


@dataclass(frozen=True)
class ListenerOptions:
    out: Path
    port: int = 11112
    host: str = "127.0.0.1"
    ae_title: str = "GEMEDGE"
    allow_ae: tuple[str, ...] = ()                # calling AE titles allowed; empty: any
    max_associations: int = 10                    # at once; more are refused (logged)
    max_associations_per_host: int = 4           # connections one peer host may hold at once (connections.py)
    max_bytes: int = DEFAULT_MAX_BYTES            # one DICOM message (an ECG's dataset); past it, aborted
    message_timeout_s: float = 60.0               # one DICOM message must arrive within this of its first PDU
    min_free_mb: int = 512                        # disk kept free under `out`: an ECG that would go below is refused
    forward: Peer | None = None                   # the SR by C-STORE
    hl7: Peer | None = None                       # the ORU over MLLP
    max_new_tokens: int = 256
    retries: int = 5
    backoff_s: float = 2.0
    audit_log: Path | None = None                 # one hash-chained line per interpretation (gem_runtime.audit)
    revise_rhythm: bool = False                   # revise contradicted rhythm statements (gem_runtime.revise)


@dataclass
class ListenerStats:
    stored: int = 0
    refused: int = 0                                          # objects refused with a failure status
    rejected: int = 0                                         # associations refused
    aborted: int = 0                                          # associations aborted mid-message (receipt.py)
    interpreted: int = 0
    failed: int = 0
    latency_ms: list[float] = field(default_factory=list)     # C-STORE received -> SR written
