"""The service's app: options, the lifespan that loads the one model, the token check, one error handler,
and the route table (routes in `routes.py`, uploads in `uploads.py`, the error mapping in `errors.py`).

Every request for the model becomes a `Job` on the one `ModelWorker`; the file is read (and refused, with the
reader's one line) before it queues, so a bad upload gets its 4xx at once, even when the model is busy.
"""
from __future__ import annotations

import contextlib
import hmac
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..audit import AuditLog
from ..errors import GemEdgeError
from ..interpreter import Interpreter
from ..readers import DEFAULT_MAX_BYTES
from ..tuning import LoadPlan
from . import routes
from .errors import BUG_MESSAGE, HttpError, http_error
from .guard import GuardPolicy, RequestGuard
from .metrics import Metrics
from .worker import ModelWorker

log = logging.getLogger("gem_runtime.serve")


@dataclass(frozen=True)
class ServeOptions:
    bundle: str | None = None              # default: the demo bundle
    quant: str | None = None
    threads: int | None = None
    queue: int = 8                         # requests that may wait while one runs
    token: str | None = None               # required as "Authorization: Bearer <token>" when set
    timeout_s: float | None = None         # a request still generating after this gets 504
    max_bytes: int = DEFAULT_MAX_BYTES     # upload limit (all files of one request)
    state_mb: int = 512                    # memory for follow-up states of earlier ECGs
    host: str = "127.0.0.1"                # the bound address: the Host header must name it (guard.py)
    allow_hosts: tuple[str, ...] = ()      # more Host names to answer to
    allow_origins: tuple[str, ...] = ()    # browser origins allowed to post from another site
    read_timeout_s: float = 60.0           # a request's body must arrive within this
    audit_log: Path | None = None          # one hash-chained line per interpretation (gem_runtime.audit)
    revise_rhythm: bool = False            # a request's revise_rhythm when it does not say

    def guard_policy(self, stopping: threading.Event) -> GuardPolicy:
        return GuardPolicy(bound_host=self.host, allow_hosts=self.allow_hosts, allow_origins=self.allow_origins,
                           upload_limit=self.max_bytes, read_timeout_s=self.read_timeout_s, stopping=stopping)

    def load_plan(self) -> LoadPlan:
        return LoadPlan.resolve(self.bundle, quant=self.quant, threads=self.threads, state_bytes=self.state_mb << 20)


def build_app(options: ServeOptions, interpreter: Interpreter | None = None) -> Starlette:
    """The app; it loads the Interpreter at startup (or takes one) and closes it at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        gem = interpreter or await run_in_threadpool(lambda: Interpreter(options.load_plan()))
        app.state.worker = ModelWorker(gem, options.queue)
        app.state.metrics = Metrics(lambda: app.state.worker.depth)
        app.state.recent_s = 1.0                         # a request's recent duration, for Retry-After
        app.state.audit = None if options.audit_log is None else AuditLog(options.audit_log)
        yield
        await run_in_threadpool(app.state.worker.stop)   # after what is in flight (uvicorn waits for it)
        if app.state.audit is not None:
            app.state.audit.close()

    def guarded(handler):
        async def endpoint(request: Request):
            _check_token(request, options.token)
            return await handler(request)
        return endpoint

    table = [Route("/", routes.index), Route("/v1/health", guarded(routes.health)),
             Route("/v1/interpret", guarded(routes.interpret), methods=["POST"]),
             Route("/v1/ecgs/{ecg_id}/ask", guarded(routes.ask), methods=["POST"]),
             Route("/v1/ecgs/{ecg_id}/image.png", guarded(routes.image)),
             Route("/v1/measure", guarded(routes.measure), methods=["POST"]),
             Route("/metrics", guarded(routes.metrics_text)),
             Mount("/static", StaticFiles(directory=routes.STATIC, check_dir=False), name="static")]
    handlers = {HttpError: error_response, GemEdgeError: error_response, Exception: error_response}
    stopping = threading.Event()                  # set on SIGTERM: bodies still arriving are cut (guard.py)
    guard = Middleware(RequestGuard, policy=options.guard_policy(stopping), on_error=error_response)
    app = Starlette(routes=table, lifespan=lifespan, exception_handlers=handlers, middleware=[guard])
    app.state.options = options
    app.state.stopping = stopping
    return app


def _check_token(request: Request, token: str | None) -> None:
    """Every /v1 call and /metrics (the routes `guarded` wraps) needs the token when one is set: the scheme's
    name in any case (RFC 9110), the token compared in constant time."""
    if not token:
        return
    scheme, _, given = request.headers.get("authorization", "").strip().partition(" ")
    # headers arrive as latin-1 text: back to their bytes, so that any byte compares and none raises
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("latin-1"), token.encode()):
        raise HttpError(401, "missing or wrong token (send Authorization: Bearer <token>)", "unauthorized",
                        {"WWW-Authenticate": "Bearer"})


async def error_response(request: Request, exc: Exception):
    """The one error builder: a client's failure as its status and one JSON line; anything else is a bug,
    logged with its traceback and answered 500."""
    err = http_error(exc)
    if err is None:
        log.exception("bug while answering %s %s", request.method, request.url.path, exc_info=exc)
        err = HttpError(500, BUG_MESSAGE.format(type(exc).__name__), "bug")
    routes.count(request, routes.endpoint_name(request), err.status, err.kind)
    return JSONResponse({"error": err.message}, status_code=err.status, headers=err.headers)
