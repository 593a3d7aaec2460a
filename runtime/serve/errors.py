"""The service's errors: every failure a client can cause becomes one `HttpError` (status, one-line message,
kind for the metrics) in one place, `http_error`; anything else is a bug, answered 500 and logged."""
from __future__ import annotations

import logging

from ..errors import ConfigError, ContextOverflowError, ConversationNotFound, EcgReadError, GenerationStopped, one_line
from ..files import is_disk_full

log = logging.getLogger("gem_runtime.serve")


class HttpError(Exception):
    def __init__(self, status: int, message: str, kind: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, one_line(message), kind, headers or {}


def http_error(exc: BaseException) -> HttpError | None:
    """The status a client gets for `exc`; None for anything else (our bug: 500)."""
    if isinstance(exc, HttpError):
        return exc
    if isinstance(exc, GenerationStopped):
        if exc.reason == "timeout":
            return HttpError(504, "the request ran past the service's --timeout; generation stopped", "timeout")
        return HttpError(499, f"generation stopped: {exc.reason}", "client_disconnected")
    if isinstance(exc, ConversationNotFound):
        return HttpError(404, str(exc), "not_found")
    if isinstance(exc, ContextOverflowError):
        return HttpError(422, f"the conversation no longer fits the model's context: {exc}", "context_full")
    if isinstance(exc, EcgReadError):
        return HttpError(422, str(exc), "unreadable_ecg")
    if isinstance(exc, ConfigError):
        return HttpError(400, str(exc), "bad_request")
    if is_disk_full(exc):
        return disk_full(exc)
    return None


def disk_full(exc: OSError) -> HttpError:
    """507 for a request the disk has no room for (an upload's temporary files, most often), and one log line:
    the operator's to free, neither the client's mistake nor our bug."""
    log.error("%s", one_line(f"answered 507: {exc.strerror}: {exc.filename or 'a temporary file'}"))
    return HttpError(507, "no room on the service's disk for this request now; try again later",
                     "insufficient_storage", {"Retry-After": "60"})


BUG_MESSAGE = "internal error ({}); see the service log"
