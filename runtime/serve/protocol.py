"""The request head's deadline, below the ASGI guard.

uvicorn reads a request's head (request line and headers) with no time limit: its keep-alive timer is cancelled by
every byte that arrives (uvicorn issue #157), so a client that sends a header line every few seconds held its
connection, and the head's buffer, as long as it liked (slowloris: measured here, still open after 40 s of one line
a second, with no token needed, since the token is read from the head). With a few hundred such connections a
service runs out of file descriptors. So each connection must complete a request head within `read_timeout_s` of
opening, or of its previous response on a kept-alive connection; past it the service answers 408 where part of a
head arrived (else closes) and closes the connection. The body's deadline is the guard's (guard.py), the head's size
is bounded by h11 (uvicorn's h11_max_incomplete_event_size, 16 KiB: 400 past it).

A deadline bounds how long a connection is held, not how many one client holds: with the service's 1024 file
descriptors (systemd's default soft limit) one machine opening a thousand connections would still shut everyone
out for as long as it kept reopening them. So one peer address holds at most `per_host` connections at once; one
more is closed as it opens, with one log line (0: no cap; a reverse proxy in front makes every client one address).

A refusal sent before the body was read (413 on a declared Content-Length, 408, 503) closes the connection while the
client is still sending. Closed at once, the kernel answers the unread bytes with a reset, and a client that sends its
whole body before it reads (http.client, so `requests` and urllib3) saw "connection reset by peer" instead of its 413:
measured here on 5 of 5 posts of 20 MB against a 1 MB limit. So such a connection is closed the way nginx and Apache
close it (a lingering close): our side is shut for writing after the answer, and what the client still sends is read
and thrown away until it closes, is silent for LINGER_IDLE_S, or has taken `read_timeout_s` (at most LINGER_MAX_S) or
LINGER_MAX_BYTES, then closed. Nothing of it is kept. (Any answer given before its request's body was read closes the
connection: guard.py.)
"""
from __future__ import annotations

import asyncio
from collections import Counter

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_MESSAGE = b"request head not complete within the read timeout\n"
LINGER_IDLE_S = 2.0            # a lingering close ends after this long without a byte from the client
LINGER_MAX_S = 30.0            # ... and after read_timeout_s in all, at most this long
LINGER_MAX_BYTES = 1 << 30     # ... and after this many bytes thrown away
_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(_MESSAGE), _MESSAGE))


def head_deadline_protocol(read_timeout_s: float, per_host: int = 0) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the head's deadline and the per-address cap (uvicorn.Config(http=...))."""
    open_by_host: Counter = Counter()           # the event loop's thread only: no lock

    class HeadDeadlineProtocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None
        _host: str | None = None                 # counted in open_by_host

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            # what uvicorn's request cycles write to and close
            self.transport = LingeringClose(transport, self, min(read_timeout_s, LINGER_MAX_S))
            host = self.client[0] if self.client else None
            if per_host and host is not None and open_by_host[host] >= per_host:
                self.logger.warning("closed a connection from %s: it holds %d already (--max-connections-per-host)",
                                    host, open_by_host[host])
                transport.close()
                return
            if host is not None:
                self._host = host
                open_by_host[host] += 1
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self.transport.lingering:
                self.transport.discard(len(data))
                return
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:       # a whole head arrived: the request runs as long as it must
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()                                 # the next request's head, on a kept-alive connection

        def shutdown(self) -> None:
            self.transport.stop()                           # the service is stopping: a refused body is not awaited
            super().shutdown()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self.transport.stop()
            if self._host is not None:
                open_by_host[self._host] -= 1
                if not open_by_host[self._host]:
                    del open_by_host[self._host]
                self._host = None
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(read_timeout_s, self._head_late)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_late(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            partial, _closed = self.conn.trailing_data
            if partial:
                self.logger.warning("408 to %s: request head not complete within %s s (%d bytes of it)",
                                    "%s:%d" % self.client if self.client else "a client", read_timeout_s,
                                    len(partial))
                self.transport.write(_TIMEOUT_408)
            self.transport.close()

    return HeadDeadlineProtocol


class LingeringClose:
    """The connection's transport as uvicorn sees it, whose close() lingers while the client's request body is still
    arriving (see the module's docstring); everything else is the asyncio transport's own."""

    def __init__(self, transport: asyncio.Transport, protocol: H11Protocol, max_s: float):
        self._transport, self._protocol, self._max_s = transport, protocol, max_s
        self.lingering = False
        self._stopping = False
        self._discarded, self._timer, self._deadline = 0, None, 0.0

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        if (self._stopping or self._protocol.conn.their_state is not h11.SEND_BODY
                or not self._transport.can_write_eof()):
            self._transport.close()
            return
        self.lingering = True
        self._deadline = self._protocol.loop.time() + self._max_s
        self._transport.write_eof()                 # the answer is flushed, then our side is shut: the client reads it
        self._transport.resume_reading()            # uvicorn may have paused reading under a large body
        self._restart_timer()

    def discard(self, n: int) -> None:
        """`n` more bytes of the refused body arrived and were dropped."""
        self._discarded += n
        if self._discarded > LINGER_MAX_BYTES or self._protocol.loop.time() > self._deadline:
            self.end()
        else:
            self._restart_timer()

    def stop(self) -> None:
        """No lingering from now on, and a lingering connection closed now: the service is stopping, or the
        connection is gone."""
        self._stopping = True
        if self.lingering:
            self.end()

    def end(self) -> None:
        self._cancel_timer()
        self._transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _restart_timer(self) -> None:
        self._cancel_timer()
        wait = min(LINGER_IDLE_S, max(0.0, self._deadline - self._protocol.loop.time()))
        self._timer = self._protocol.loop.call_later(wait, self.end)
