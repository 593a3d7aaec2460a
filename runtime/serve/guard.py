"""What every request passes before a route sees it, and what every response carries. A pure ASGI layer, so
that a body is bounded while it streams in, not after it has landed in memory or on disk:

- the Host header must name this service: the bound address (and localhost's names where that is loopback)
  or an `--allow-host` name; otherwise 421, so that a page on another site whose name resolves to this
  machine (DNS rebinding) cannot reach the service. A service bound to every address (0.0.0.0, ::) takes
  any Host unless `--allow-host` names some; it has a token then. A request without a Host header (HTTP/1.0:
  never a browser's) is not refused for it;
- a browser's request from another origin (an `Origin` that is not the Host's own, `Origin: null`, or
  `Sec-Fetch-Site: cross-site`) that would change something (any method but GET, HEAD, OPTIONS) is refused
  with 403 unless its origin is in `--allow-origin`: a page elsewhere cannot post an ECG to a local service.
  Clients that are not browsers send no Origin and are not affected;
- (the request head's own deadline is below this layer, in protocol.py: a route never sees a request whose head
  has not arrived)
- a body is counted as it arrives: a declared Content-Length over the limit, or more bytes than the limit
  (chunked), is 413; a body not complete within `--read-timeout` seconds of the request is 408; once the
  service is stopping, a body still arriving is cut with 503. These answers close the connection, and so does
  any answer given before its request's body was read to the end (a 404, a 400 for a body that is not a form):
  uvicorn would otherwise read and throw away whatever body the client declared, 10 GB at 3 GB/s here, with no
  deadline; closed, it is bounded by protocol.py's lingering close;
- every response carries a strict Content-Security-Policy, nosniff, frame denial and no referrer (the
  viewer's address holds the token), and `Cache-Control: no-store` on the API (patient data).

Refusals made here are built by the app's one error handler (`on_error`), so they are counted as every
other failure is.
"""
from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field

from starlette.requests import Request

from .errors import HttpError

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
ANY_ADDRESS = ("0.0.0.0", "::", "")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
POLL_S = 0.25                  # how often a body read looks at the clock and at the stopping flag
FORM_SLACK = 64 * 2**10        # a multipart body's boundaries, part headers and small fields, besides its files
CLOSE = {"Connection": "close"}
SECURITY_HEADERS = (
    (b"content-security-policy", (b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: "
                                  b"data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
                                  b"frame-ancestors 'none'")),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)


@dataclass(frozen=True)
class GuardPolicy:
    """The guard's settings (from ServeOptions)."""

    bound_host: str = "127.0.0.1"
    allow_hosts: tuple[str, ...] = ()        # more Host names to answer to (a DNS name of this machine)
    allow_origins: tuple[str, ...] = ()      # browser origins allowed to post ("https://emr.example.org")
    upload_limit: int = 200 * 2**20          # bytes of a multipart body (uploads and their form fields)
    json_limit: int = 256 * 2**10            # bytes of any other body (a follow-up's JSON)
    read_timeout_s: float = 60.0             # seconds for a whole body to arrive
    upload_paths: tuple[str, ...] = ("/v1/interpret", "/v1/measure")
    stopping: threading.Event = field(default_factory=threading.Event, compare=False)

    def host_names(self) -> set[str] | None:
        """The Host names answered to; None: any (bound to every address, no --allow-host)."""
        names = {h.lower() for h in self.allow_hosts}
        if self.bound_host in ANY_ADDRESS:
            return names or None
        names.add(self.bound_host.lower().strip("[]"))
        if self.bound_host in LOOPBACK_NAMES:
            names.update(LOOPBACK_NAMES)
        return names

    def body_limit(self, path: str) -> tuple[int, int]:
        """(bytes a body to `path` may have, the limit its refusal names): an upload may have its form's
        boundaries and fields besides --max-bytes of files."""
        if path in self.upload_paths:
            return self.upload_limit + FORM_SLACK, self.upload_limit
        return self.json_limit, self.json_limit


class RequestGuard:
    """The ASGI layer described in the module docstring, around the Starlette app's routes."""

    def __init__(self, app, policy: GuardPolicy, on_error):
        self.app, self.policy, self.on_error = app, policy, on_error
        self.hosts = policy.host_names()
        self.origins = {o.lower().rstrip("/") for o in policy.allow_origins}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        send = SecureHeaders(send, scope["path"].startswith("/v1/") or scope["path"] == "/metrics")
        request = Request(scope)
        refusal = self.refusal(request)
        if refusal is not None:
            return await (await self.on_error(request, refusal))(scope, receive, send)
        limit, stated = self.policy.body_limit(scope["path"])
        body = BoundedBody(receive, (limit, stated), self.policy.read_timeout_s, self.policy.stopping,
                           request.headers.get("content-length"), "transfer-encoding" in request.headers)
        send.body = body
        return await self.app(scope, body, send)

    def refusal(self, request: Request) -> HttpError | None:
        host = request.headers.get("host", "")
        if self.hosts is not None and host and host_name(host) not in self.hosts:     # none: not a browser
            return HttpError(421, f"the Host header {host[:100]!r} does not name this service (start it with "
                                  "--allow-host NAME to answer to another name)", "bad_host")
        if request.method in SAFE_METHODS:
            return None
        origin = request.headers.get("origin")
        site = request.headers.get("sec-fetch-site", "")
        if origin is None and site != "cross-site":
            return None
        if origin is not None and origin.lower().rstrip("/") in self.origins:
            return None
        if origin is not None and origin.lower() == f"{request.url.scheme}://{host}".lower():
            return None
        return HttpError(403, f"a request from another origin ({(origin or site)[:100]}) is refused (start the "
                              "service with --allow-origin ORIGIN to accept it)", "cross_origin")


def host_name(host: str) -> str:
    """The name in a Host header, without its port: "[::1]:8717" -> "::1", "LocalHost:80" -> "localhost"."""
    if host.startswith("["):
        return host[1:host.find("]")].lower() if "]" in host else host.lower()
    return (host.rsplit(":", 1)[0] if host.count(":") == 1 else host).lower()


class SecureHeaders:
    """`send`, with the security headers added to the response's start, and `Connection: close` where the request's
    body has not been read to its end."""

    def __init__(self, send, api: bool):
        self.send, self.api = send, api
        self.body: BoundedBody | None = None

    async def __call__(self, message):
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            present = {k.lower() for k, _ in headers}
            headers += [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            if self.api and b"cache-control" not in present:
                headers.append((b"cache-control", b"no-store"))
            if self.body is not None and self.body.unread and b"connection" not in present:
                headers.append((b"connection", b"close"))
            message = {**message, "headers": headers}
        await self.send(message)


class BoundedBody:
    """`receive`, bounded: at most `limit` body bytes (a declared Content-Length is checked before any is read),
    all of them within `timeout_s` of the request, none once the service is stopping. Once the body is complete
    it passes messages through (a route waits on it for the client's disconnect)."""

    def __init__(self, receive, limits: tuple[int, int], timeout_s: float, stopping: threading.Event,
                 declared: str | None, chunked: bool):
        self.receive, (self.limit, self.stated), self.stopping = receive, limits, stopping
        self.deadline = asyncio.get_running_loop().time() + timeout_s
        self.timeout_s = timeout_s
        self.declared = int(declared) if declared is not None and declared.isdigit() else None
        self.seen = 0
        self.complete = False
        self.expected = chunked or bool(self.declared)

    @property
    def unread(self) -> bool:
        """The request carries body bytes that have not been read (the route answered without them)."""
        return self.expected and not self.complete

    async def __call__(self):
        if self.complete:
            return await self.receive()
        if self.declared is not None and self.declared > self.limit:
            raise self.too_large(self.declared)
        message = await self.next_message()
        if message["type"] == "http.request":
            self.seen += len(message.get("body", b""))
            if self.seen > self.limit:
                raise self.too_large(None)
            self.complete = not message.get("more_body", False)
        else:
            self.complete = True
        return message

    async def next_message(self):
        loop = asyncio.get_running_loop()
        while True:
            if self.stopping.is_set():
                raise HttpError(503, "the service is stopping; the request's body was still arriving", "stopping",
                                CLOSE)
            left = self.deadline - loop.time()
            if left <= 0:
                raise HttpError(408, f"the request's body did not arrive within {self.timeout_s:g} s "
                                     "(--read-timeout)", "read_timeout", CLOSE)
            try:
                async with asyncio.timeout(min(left, POLL_S)):
                    return await self.receive()
            except TimeoutError:
                continue

    def too_large(self, declared: int | None) -> HttpError:
        size = f"{declared} bytes" if declared is not None else f"more than {self.limit} bytes, still coming"
        return HttpError(413, f"the request's body ({size}) is over the {self.stated} byte limit", "too_large",
                         CLOSE)
