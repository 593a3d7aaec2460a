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
"""
from __future__ import annotations

import asyncio
from collections import Counter

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_MESSAGE = b"request head not complete within the read timeout\n"
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
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:       # a whole head arrived: the request runs as long as it must
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
                self._arm()                                 # the next request's head, on a kept-alive connection

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
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
