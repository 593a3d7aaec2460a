"""Connections bounded before they are associations: per peer host, in time while a PDU is half sent, and in the
length a PDU may declare.

pynetdicom counts a connection against `max_associations` from the moment it is accepted, and reads a PDU for as
long as its bytes trickle in (the socket's timeout restarts with every recv, and the DUL checks none of its timers
while it is blocked in one). Measured: three connections that sent a 6-byte A-ASSOCIATE-RQ header and nothing more
kept a listener with --max-associations 2 refusing a cart; one that sent a byte every 2 s was open after 150 s. So:

- a host may hold at most `per_host` connections at once: one more is closed as it is accepted, before pynetdicom
  makes an association of it (`host_limited_server`, socketserver's verify_request), with one log line;
- a connection that completes no PDU for `stall_s` seconds while we are not busy with its request is shut down
  (`StallWatch`: its blocked read ends and pynetdicom closes it as lost). An idle association, between requests, is
  closed by pynetdicom itself after its network timeout, which the listener sets below `stall_s`;
- a PDU whose header declares more than we read is refused before its body is read (`PduBoundedSocket`), on the
  listener's connections and on those we open to an archive (`bounded_ae`): pynetdicom reads a PDU of the length its
  header states into memory whole, before any handler or limit of ours sees it. Measured: one connection, before it
  was an association, sent a header claiming 4 GiB and then zeros; the listener grew by 3.5 GB in 6 s. A P-DATA-TF PDU
  may be as long as the maximum length we state in the association (DICOM PS3.8 D.1, pynetdicom's
  `maximum_pdu_size`), any other PDU `MAX_CONTROL_PDU`.

The per-host limit and pynetdicom's own count only associations that still hold their peer (`holds_peer`).
pynetdicom counts an association against `maximum_associations` until its thread has ended, which comes after the
release: in CI a cart's third association within --max-associations 3 was rejected because the readiness probe's
released echo was still finishing. `counting_ae` is pynetdicom's AE with that limit counted the same way.
"""
from __future__ import annotations

import logging
import socket
import struct
import threading
import time
import weakref
from contextlib import contextmanager
from typing import Callable

CHECK_EVERY_S = 0.5
STALL_SLACK_S = 2.0           # the listener's stall limit: its message timeout plus this
MAX_CONTROL_PDU = 2**20       # bytes after the header of any PDU but P-DATA-TF: an A-ASSOCIATE-RQ with 128
                              # presentation contexts and a user identity of two 64 KiB fields stays well under it
P_DATA_TF = 0x04
PDU_NAMES = {0x01: "A-ASSOCIATE-RQ", 0x02: "A-ASSOCIATE-AC", 0x03: "A-ASSOCIATE-RJ", P_DATA_TF: "P-DATA-TF",
             0x05: "A-RELEASE-RQ", 0x06: "A-RELEASE-RP", 0x07: "A-ABORT"}


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


def bounded_ae(ae_title: str, log):
    """pynetdicom's AE for the associations we open (an SR to an archive), each read through a `PduBoundedSocket`
    (by pynetdicom 3.0's `AE._create_socket`, which makes the socket of every association this AE requests)."""
    from pynetdicom import AE

    class BoundedAE(AE):
        def _create_socket(self, assoc, address, tls_args):
            sock = super()._create_socket(assoc, address, tls_args)
            if tls_args is None:                 # ssl wraps a socket.socket, not ours: no TLS is configured here
                # the association's peer and the maximum length we state are set once this returns
                sock.socket = PduBoundedSocket(sock.socket, lambda: assoc.requestor.maximum_length or MAX_CONTROL_PDU,
                                               lambda: str(assoc.acceptor.address), log)
            return sock

    _quiet_refused_echo()
    return BoundedAE(ae_title=ae_title)


def host_limited_server(per_host: int, log, max_data_pdu: int = 0):
    """pynetdicom's threaded server class (for AE.make_server) that closes a host's connection past `per_host` and
    reads each connection through a `PduBoundedSocket`. `max_data_pdu` bounds a P-DATA-TF PDU where the AE states no
    maximum length (pynetdicom's `maximum_pdu_size` 0)."""
    from socketserver import TCPServer

    from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

    class BoundedRequestHandler(RequestHandler):
        def setup(self) -> None:
            """Before pynetdicom wraps the socket in an association (BaseRequestHandler calls this before handle)."""
            data_limit, host = self.server.ae.maximum_pdu_size or max_data_pdu, str(self.client_address[0])
            self.request = PduBoundedSocket(self.request, lambda: data_limit, lambda: host, log)

    class HostLimitedServer(ThreadedAssociationServer):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("request_handler", BoundedRequestHandler)
            _quiet_refused_echo()
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


class PduBoundedSocket:
    """A connection's socket that reads the header of each PDU as it passes and, when one declares a length past
    the limit, logs one line and reads nothing more: pynetdicom then finds the PDU short and closes the connection
    before it has held any of the body. Everything else is the socket's own (`raw`)."""

    def __init__(self, raw: socket.socket, max_data_pdu: Callable[[], int], peer: Callable[[], str], log):
        self.raw, self._max_data_pdu, self._peer, self._log = raw, max_data_pdu, peer, log
        self._header = b""         # the next PDU's header, as far as it has arrived
        self._body_left = 0        # bytes of the current PDU's body still to come
        self.refused = False

    def recv(self, bufsize: int, *flags) -> bytes:
        if self.refused:
            _refused_here.pdu = True
            return b""
        data = self.raw.recv(bufsize, *flags)
        self._follow(data)
        return data

    def _follow(self, data: bytes) -> None:
        i = 0
        while i < len(data) and not self.refused:
            if self._body_left:
                step = min(self._body_left, len(data) - i)
                self._body_left -= step
                i += step
                continue
            need = 6 - len(self._header)
            self._header += data[i:i + need]
            i += need
            if len(self._header) == 6:
                pdu_type, _, length = struct.unpack(">BBL", self._header)
                self._header, self._body_left = b"", length
                limit = self._max_data_pdu() if pdu_type == P_DATA_TF else MAX_CONTROL_PDU
                if pdu_type in PDU_NAMES and limit and length > limit:
                    self.refused = True
                    self._log(f"shut connection: {self._peer()}: {PDU_NAMES[pdu_type]} PDU of {length} bytes declared, "
                              f"over the {limit} we read"
                              + (" (the maximum length we state in the association)" if pdu_type == P_DATA_TF
                                 else ""))

    def __getattr__(self, name: str):
        return getattr(self.raw, name)


_refused_here = threading.local()      # set on the DUL thread whose connection a PduBoundedSocket refused


class _RefusedPduEcho(logging.Filter):
    """Drops pynetdicom's own error line for the PDU a PduBoundedSocket refused ("The received PDU is shorter than
    expected"): ours has said why, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(_refused_here, "pdu", False) and "PDU is shorter than expected" in record.getMessage())


def _quiet_refused_echo() -> None:
    dul_log = logging.getLogger("pynetdicom.dul")
    if not any(isinstance(f, _RefusedPduEcho) for f in dul_log.filters):
        dul_log.addFilter(_RefusedPduEcho())


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
    sock = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "socket", None)
    return getattr(sock, "raw", sock)


def _shut(assoc) -> None:
    """End a connection from another thread: its blocked read returns, and pynetdicom closes it as lost."""
    raw = _raw(assoc)
    if raw is not None:
        try:
            raw.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
