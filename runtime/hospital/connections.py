"""Connections bounded before they are associations: per peer host, and in time while a PDU is half sent.

pynetdicom counts a connection against `max_associations` from the moment it is accepted, and reads a PDU for as
long as its bytes trickle in (the socket's timeout restarts with every recv, and the DUL checks none of its timers
while it is blocked in one). Measured: three connections that sent a 6-byte A-ASSOCIATE-RQ header and nothing more
kept a listener with --max-associations 2 refusing a cart; one that sent a byte every 2 s was open after 150 s. So:

- a host may hold at most `per_host` connections at once: one more is closed as it is accepted, before pynetdicom
  makes an association of it (`host_limited_server`, socketserver's verify_request), with one log line;
- a connection that completes no PDU for `stall_s` seconds while we are not busy with its request is shut down
  (`StallWatch`: its blocked read ends and pynetdicom closes it as lost). An idle association, between requests, is
  closed by pynetdicom itself after its network timeout, which the listener sets below `stall_s`.

Both limits count only associations that still hold their peer (`holds_peer`). pynetdicom counts an association
against `maximum_associations` until its thread has ended, which comes after the release: in CI a cart's third
association within --max-associations 3 was rejected because the readiness probe's released echo was still
finishing. `counting_ae` is pynetdicom's AE with that limit counted the same way.
"""
from __future__ import annotations

import socket
import threading
import time
import weakref
from contextlib import contextmanager

CHECK_EVERY_S = 0.5
STALL_SLACK_S = 2.0           # the listener's stall limit: its message timeout plus this


def holds_peer(assoc) -> bool:
    """An association we accepted that is not over (released, aborted or rejected): one that holds a slot."""
    return assoc.is_acceptor and not (assoc.is_released or assoc.is_aborted or assoc.is_rejected)


def counting_ae(ae_title: str):
    """pynetdicom's AE, whose association limit leaves out the associations that are over but whose threads are
    still finishing (pynetdicom compares every live acceptor thread with `maximum_associations`)."""
    from pynetdicom import AE

    class CountingAE(AE):
        @property
        def maximum_associations(self) -> int:
            over = sum(a.is_acceptor and not holds_peer(a) for a in self.active_associations)
            return AE.maximum_associations.fget(self) + over

        @maximum_associations.setter
        def maximum_associations(self, value: int) -> None:
            AE.maximum_associations.fset(self, value)

    return CountingAE(ae_title=ae_title)


def host_limited_server(per_host: int, log):
    """pynetdicom's threaded server class (for AE.make_server) that closes a host's connection past `per_host`."""
    from socketserver import TCPServer

    from pynetdicom.transport import ThreadedAssociationServer

    class HostLimitedServer(ThreadedAssociationServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.pending: dict = {}     # accepted sockets not yet (or never) an association's: {socket: host}

        def verify_request(self, request, client_address) -> bool:
            """On the accepting thread, before pynetdicom makes an association of the connection."""
            host = str(client_address[0])
            acceptors = [a for a in self.ae.active_associations if a.is_acceptor]
            owned = {id(_raw(a)) for a in acceptors}
            self.pending = {s: h for s, h in self.pending.items() if s.fileno() != -1 and id(s) not in owned}
            held = (sum(str(a.requestor.address) == host for a in acceptors if holds_peer(a))
                    + list(self.pending.values()).count(host))
            if held < per_host:
                self.pending[request] = host
                return True
            log(f"refused connection: {host}: it holds {held} already (--max-associations-per-host {per_host})")
            return False

        def shutdown(self) -> None:
            """Stop serving and close the socket (pynetdicom's own also takes the server off its AE's list, which
            only AE.start_server puts it on)."""
            TCPServer.shutdown(self)
            self.server_close()

    return HostLimitedServer


class StallWatch:
    """pynetdicom handlers (`handlers(evt)`) and a watchdog thread (`start()`, `stop()`); `busy(assoc)` marks the
    time our own handler works on a request, which is not the peer stalling."""

    def __init__(self, stall_s: float, log):
        self.stall_s, self._log = stall_s, log
        self._last: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()     # association -> last PDU (monotonic)
        self._busy: weakref.WeakSet = weakref.WeakSet()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="gem-dicom-stalls", daemon=True)

    def handlers(self, evt) -> list:
        return [(evt.EVT_CONN_OPEN, self._seen), (evt.EVT_PDU_RECV, self._seen), (evt.EVT_CONN_CLOSE, self._gone)]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    @contextmanager
    def busy(self, assoc):
        with self._lock:
            self._busy.add(assoc)
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard(assoc)
                if assoc in self._last:
                    self._last[assoc] = time.monotonic()

    def _seen(self, event) -> None:
        with self._lock:
            self._last[event.assoc] = time.monotonic()

    def _gone(self, event) -> None:
        with self._lock:
            self._last.pop(event.assoc, None)

    def _watch(self) -> None:
        while not self._stop.wait(CHECK_EVERY_S):
            now = time.monotonic()
            with self._lock:
                stalled = [(a, now - t) for a, t in list(self._last.items())
                           if now - t > self.stall_s and a not in self._busy]
                for assoc, _ in stalled:
                    self._last.pop(assoc, None)
            for assoc, quiet in stalled:
                self._log(f"shut connection: {assoc.requestor.address}: no complete PDU for {quiet:.0f} s "
                          "(--message-timeout)")
                _shut(assoc)


def _raw(assoc):
    """The association's TCP socket (None once pynetdicom has closed it)."""
    return getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)


def _shut(assoc) -> None:
    """End a connection from another thread: its blocked read returns, and pynetdicom closes it as lost."""
    raw = _raw(assoc)
    if raw is not None:
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
