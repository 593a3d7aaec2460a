"""Each DICOM message bounded in bytes and time while it arrives, not once it is whole.

pynetdicom gathers a C-STORE's P-DATA fragments in memory and hands the dataset over only when its last fragment
came, and it bounds neither their sum nor how long they take: a peer could send an endless dataset (measured here:
a 300 MiB one took the listener from 198 MB to 805 MB before it was refused) or trickle fragments just inside the
network timeout and keep an association, one of --max-associations, for good. `ReceiptGuard` reads each P-DATA-TF
PDU as it arrives (pynetdicom's EVT_DATA_RECV) and aborts the association once the message part under way (a command
or a dataset: the bytes since the last PDV marked "last fragment", PS3.8 E.2) passes `max_bytes` or is still
arriving `timeout_s` after its first PDU. What stays unbounded is one PDU: pynetdicom reads a whole PDU, whatever
length its header declares, before any handler sees it (a peer must still send those bytes; PS3.8 caps a PDU at the
maximum length we offer, pynetdicom does not check it).
"""
from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass

P_DATA_TF = 0x04
_LAST_FRAGMENT = 0x02          # bit 1 of a PDV's message control header


@dataclass
class _Part:
    received: int = 0
    started: float | None = None
    aborted: bool = False


def ends_a_part(pdu: bytes) -> bool:
    """Whether a P-DATA-TF PDU holds a PDV marked as the last fragment of a command or dataset (PS3.8 9.3.5)."""
    pos = 6
    while pos + 6 <= len(pdu):
        length = int.from_bytes(pdu[pos:pos + 4], "big")
        if length < 2:
            return False
        if pdu[pos + 5] & _LAST_FRAGMENT:
            return True
        pos += 4 + length
    return False


class ReceiptGuard:
    """pynetdicom EVT_DATA_RECV handler: `on_data(event)`; calls `abort(event, reason)` past a bound."""

    def __init__(self, max_bytes: int, timeout_s: float, abort):
        self.max_bytes, self.timeout_s, self._abort = max_bytes, timeout_s, abort
        self._parts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()    # association -> _Part
        self._lock = threading.Lock()

    def on_data(self, event) -> None:
        pdu = event.data
        if not pdu or pdu[0] != P_DATA_TF:
            return
        now = time.monotonic()
        with self._lock:
            part = self._parts.setdefault(event.assoc, _Part())
            if part.aborted:
                return
            part.received += len(pdu)
            part.started = now if part.started is None else part.started
            reason = None
            if part.received > self.max_bytes:
                reason = f"a DICOM message of more than {self.max_bytes / 2**20:.1f} MiB (--max-bytes)"
            elif now - part.started > self.timeout_s:
                reason = (f"a DICOM message still arriving after {now - part.started:.0f} s (--message-timeout "
                          f"{self.timeout_s:g})")
            if reason:
                part.aborted = True
            elif ends_a_part(pdu):
                del self._parts[event.assoc]
        if reason:
            self._abort(event, reason)
