"""Reports delivered on their own thread per destination, so that a destination that is down delays only itself.

The listener used to send the SR and the ORU on the thread that interprets: with the EMR's interface engine down,
each ECG waited out every try and back-off (~30 s at the defaults, ~80 s against one that accepts and never
answers) before the next ECG was interpreted, and a delivery that failed its tries waited for the next start. Now
the interpreting thread writes the reports and queues their deliveries; each destination's thread sends them in
order with their tries, and one that still fails is queued again `retry_after_s` later, for as long as the
listener runs. What is delivered is marked on disk (`sr.forwarded`, `hl7.sent`), so whatever is pending when the
listener stops is sent after the next start.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Callable

from ..errors import GemEdgeError, one_line
from .connections import bounded_ae

log = logging.getLogger("gem_runtime.hospital")


class Superseded(Exception):
    """The stored ECG was replaced (sent again) while its reports were being made; the new one is queued."""


class Deliveries:
    """One destination: `put(uid)` queues a delivery, `deliver(uid)` sends it (raising when its tries fail)."""

    def __init__(self, name: str, deliver: Callable[[str], None], retry_after_s: float):
        self.name, self._deliver, self.retry_after_s = name, deliver, retry_after_s
        self.delivered = self.failed = 0
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._later: list[tuple[float, int, str]] = []           # (when, order, uid): tries to make again
        self._order = itertools.count()
        self._stopping = threading.Event()
        self._down = False                                        # the last try failed
        self._thread = threading.Thread(target=self._run, name=f"gem-deliver-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, uid: str) -> None:
        self._queue.put(uid)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """What was queued before this call is delivered while the destination answers; once a try fails, the rest
        (and what waits to be tried again) stays on disk for the next start, so a destination that is down does
        not hold the stop."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            wait = max(0.0, self._later[0][0] - time.monotonic()) if self._later else None
            try:
                uid = self._queue.get(timeout=wait)
            except queue.Empty:
                uid = heapq.heappop(self._later)[2]
            if uid is None:
                return
            if self._stopping.is_set() and self._down:
                continue
            try:
                self._deliver(uid)
                self.delivered, self._down = self.delivered + 1, False
            except Superseded:
                pass                                              # the ECG sent again is queued on its own
            except Exception as exc:                              # noqa: BLE001 - logged, tried again later
                self.failed, self._down = self.failed + 1, True
                then = ("left for the next start" if self._stopping.is_set() else
                        f"trying again in {self.retry_after_s:g} s")
                if isinstance(exc, (GemEdgeError, OSError)):
                    log.warning("%s", one_line(f"{self.name} of {uid} failed: {exc}; {then}"))
                else:
                    log.exception("%s of %s failed; %s", self.name, uid, then)
                heapq.heappush(self._later, (time.monotonic() + self.retry_after_s, next(self._order), uid))


def send_sr(sr_path: Path, host: str, port: int, called: str, calling: str, retries: int, backoff_s: float) -> None:
    """The SR by C-STORE to an archive AE, retried with back-off; GemEdgeError after the last try."""
    from pydicom import dcmread

    ds = dcmread(sr_path)
    ae = bounded_ae(calling, log.warning)
    ae.add_requested_context(ds.SOPClassUID, [str(ds.file_meta.TransferSyntaxUID)])
    for attempt in range(1, retries + 1):
        assoc = ae.associate(host, port, ae_title=called)
        status = None
        if assoc.is_established:
            reply = assoc.send_c_store(ds)
            status = getattr(reply, "Status", None)
            assoc.release()
        if status == 0x0000:
            return
        why = "association refused or peer unreachable" if status is None else f"status 0x{status:04X}"
        log.warning("forwarding %s to %s@%s:%d: %s (try %d of %d)", sr_path.parent.name, called, host, port, why,
                    attempt, retries)
        if attempt < retries:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    raise GemEdgeError(f"forwarding {sr_path} failed after {retries} tries")
