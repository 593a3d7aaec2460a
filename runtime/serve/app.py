"""The HTTP service (Starlette): routes, uploads, errors as status codes, server-sent events (docs/serve-api.md).

Every request for the model becomes a `Job` on the one `ModelWorker`; the file is read (and refused, with the
reader's one line) before it queues, so a bad upload gets its 4xx at once, even when the model is busy.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import ConfigError, ContextOverflowError, ConversationNotFound, EcgReadError, GenerationStopped
from ..interpreter import Interpreter
from ..measure_report import measurement_report
from ..readers import DEFAULT_MAX_BYTES, read_ecg
from ..timings import Timings
from .metrics import Metrics
from .worker import Job, ModelWorker, QueueFull

STATIC = Path(__file__).parent / "static"
MAX_NEW_TOKENS = 2048
MAX_FILES = 16                   # a WFDB record: .hea and its signal files
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
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


class HttpError(Exception):
    def __init__(self, status: int, message: str, kind: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers or {}


def build_app(options: ServeOptions, interpreter: Interpreter | None = None) -> Starlette:
    """The app; it loads the Interpreter at startup (or takes one) and closes it at shutdown."""
    state: dict = {}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        gem = interpreter or await run_in_threadpool(
            Interpreter.load, options.bundle, quant=options.quant, threads=options.threads,
            state_bytes=options.state_mb << 20)
        state["worker"] = ModelWorker(gem, options.queue)
        state["metrics"] = Metrics(lambda: state["worker"].depth)
        state["recent_s"] = 1.0                         # a request's recent duration, for Retry-After
        yield
        await run_in_threadpool(state["worker"].stop)   # after what is in flight (uvicorn waits for it)

    def worker() -> ModelWorker:
        return state["worker"]

    def metrics() -> Metrics:
        return state["metrics"]

    # --- requests ---
    async def health(request: Request):
        gem = worker().interpreter
        return JSONResponse({"status": "ok", "bundle_id": gem.bundle.bundle_id, "quant": gem.quant,
                             "backends": {"ecg_encoder": gem.encoders["ecg_encoder"].backend,
                                          "image_encoder": gem.encoders["image_encoder"].backend,
                                          "llm": gem.llm_backend},
                             "threads": gem.threads, "queue_depth": worker().depth, "queue_limit": options.queue,
                             "states": len(gem.conversations)})

    async def interpret(request: Request):
        form = await _form(request, options.max_bytes)
        question = form.text("question") or None
        max_new = _int_field(form.text("max_new_tokens"), "max_new_tokens", 256, 1, MAX_NEW_TOKENS)
        fs = _float_field(form.text("fs"), "fs")
        timings = Timings()
        with form:
            record = await run_in_threadpool(form.read, fs, options.max_bytes, timings)

        def run(gem: Interpreter, emit):
            kwargs = {} if question is None else {"question": question}
            result = gem.interpret(record, max_new_tokens=max_new, stream=emit, keep_image=True, timings=timings,
                                   **kwargs)
            return {**result.to_dict(), "source": form.source, "ecg_id": result.ecg_id,
                    "image_url": f"/v1/ecgs/{result.ecg_id}/image.png"}, result.timings, result.new_tokens

        return await _answer(request, run, "interpret")

    async def ask(request: Request):
        ecg_id = request.path_params["ecg_id"]
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HttpError(400, "the body is not JSON: send {\"question\": ...}", "bad_request") from None
        if not isinstance(body, dict) or not isinstance(body.get("question"), str) or not body["question"].strip():
            raise HttpError(400, "the body needs a non-empty \"question\" string", "bad_request")
        max_new = _int_field(body.get("max_new_tokens"), "max_new_tokens", 256, 1, MAX_NEW_TOKENS)
        worker().interpreter.conversations.get(ecg_id)          # 404 now, not after waiting in the queue

        def run(gem: Interpreter, emit):
            answer = gem.ask(ecg_id, body["question"], max_new_tokens=max_new, stream=emit)
            return answer.to_dict(), answer.timings, answer.new_tokens

        return await _answer(request, run, "ask")

    async def image(request: Request):
        conv = worker().interpreter.conversations.get(request.path_params["ecg_id"])
        if conv.image_png is None:
            raise HttpError(404, "no image was kept for this ECG", "not_found")
        return Response(conv.image_png, media_type="image/png")

    async def measure(request: Request):
        form = await _form(request, options.max_bytes)
        fs = _float_field(form.text("fs"), "fs")
        with form:
            record = await run_in_threadpool(form.read, fs, options.max_bytes, Timings())
        _, _, report = await run_in_threadpool(measurement_report, record, form.source)
        return JSONResponse(report)

    async def metrics_text(request: Request):
        metrics().states.set(worker().interpreter.conversations.nbytes)
        body, content_type = metrics().exposition()
        return Response(body, media_type=content_type)

    async def index(request: Request):
        return FileResponse(STATIC / "index.html")

    # --- running a job, answering JSON or a stream ---
    async def _answer(request: Request, run, endpoint: str):
        loop = asyncio.get_running_loop()
        deadline = None if options.timeout_s is None else time.monotonic() + options.timeout_s
        if "text/event-stream" in request.headers.get("accept", ""):
            return await _stream(request, run, endpoint, loop, deadline)
        job = Job(run, loop, deadline)
        future = _submit(job)
        watcher = asyncio.create_task(_watch_disconnect(request, job))
        try:
            body, timings, new_tokens = await future
        except Exception as exc:
            err = _http_error(exc)
            if err is None:
                raise                                  # not a user's error: a bug, answered 500 and logged
            raise err from exc
        finally:
            watcher.cancel()
        _done(endpoint, timings, new_tokens)
        return JSONResponse(body)

    async def _stream(request: Request, run, endpoint: str, loop, deadline):
        pieces: asyncio.Queue = asyncio.Queue()
        job = Job(run, loop, deadline, on_text=pieces.put_nowait)
        future = _submit(job)                          # 429 before the stream starts
        future.add_done_callback(lambda f: pieces.put_nowait(None))

        async def events():
            try:
                while (piece := await pieces.get()) is not None:
                    yield _event("token", {"text": piece})
                try:
                    body, timings, new_tokens = future.result()
                except Exception as exc:               # noqa: BLE001 - becomes an error event
                    err = _http_error(exc)
                    if err is None:
                        log.exception("bug while streaming %s", request.url.path, exc_info=exc)
                        err = HttpError(500, f"internal error ({type(exc).__name__}); see the service log", "bug")
                    _count(endpoint, err.status, err.kind)
                    yield _event("error", {"error": err.message, "status": err.status})
                    return
                _done(endpoint, timings, new_tokens)
                yield _event("result", body)
            finally:
                if not future.done():                  # the client went away mid-stream
                    job.cancelled = True
                    metrics().errors.labels("client_disconnected").inc()

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    def _submit(job: Job) -> asyncio.Future:
        try:
            future = worker().submit(job)
        except QueueFull:
            retry = max(1, round(state["recent_s"] * worker().depth))
            raise HttpError(429, f"the model is busy ({worker().depth} requests queued or running); retry later",
                            "queue_full", {"Retry-After": str(retry)}) from None
        future.add_done_callback(lambda f: f.exception())    # retrieved even when nobody awaits it
        return future

    def _done(endpoint: str, timings, new_tokens: int) -> None:
        state["recent_s"] = 0.8 * state["recent_s"] + 0.2 * timings.total_ms / 1000
        metrics().observe(endpoint, timings, new_tokens)
        _count(endpoint, 200)

    def _count(endpoint: str, status: int, kind: str | None = None) -> None:
        metrics().requests.labels(endpoint, str(status)).inc()
        if kind:
            metrics().errors.labels(kind).inc()

    # --- errors: one JSON line each; a 5xx is a bug and is logged with its traceback ---
    async def on_http_error(request: Request, exc: HttpError):
        _count(_endpoint(request), exc.status, exc.kind)
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    async def on_not_found(request: Request, exc: ConversationNotFound):
        return await on_http_error(request, HttpError(404, str(exc), "not_found"))

    async def on_read_error(request: Request, exc: EcgReadError):
        return await on_http_error(request, HttpError(422, str(exc), "unreadable_ecg"))

    async def on_bug(request: Request, exc: Exception):
        log.exception("bug while answering %s %s", request.method, request.url.path, exc_info=exc)
        _count(_endpoint(request), 500, "bug")
        return JSONResponse({"error": f"internal error ({type(exc).__name__}); see the service log"},
                            status_code=500)

    def _check_token(request: Request) -> None:
        if options.token and request.url.path != "/v1/health" and (request.url.path.startswith("/v1/")
                                                                   or request.url.path == "/metrics"):
            if request.headers.get("authorization", "") != f"Bearer {options.token}":
                raise HttpError(401, "missing or wrong token (send Authorization: Bearer <token>)", "unauthorized")

    def guarded(handler):
        async def endpoint(request: Request):
            _check_token(request)
            return await handler(request)
        return endpoint

    routes = [Route("/", index), Route("/v1/health", guarded(health)),
              Route("/v1/interpret", guarded(interpret), methods=["POST"]),
              Route("/v1/ecgs/{ecg_id}/ask", guarded(ask), methods=["POST"]),
              Route("/v1/ecgs/{ecg_id}/image.png", guarded(image)),
              Route("/v1/measure", guarded(measure), methods=["POST"]),
              Route("/metrics", guarded(metrics_text)),
              Mount("/static", StaticFiles(directory=STATIC, check_dir=False), name="static")]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers={HttpError: on_http_error, ConversationNotFound: on_not_found,
                                         EcgReadError: on_read_error, Exception: on_bug})


def _http_error(exc: BaseException) -> HttpError | None:
    """A job's failure as the status the client gets; None for anything else (our bug: 500)."""
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
    return None


async def _watch_disconnect(request: Request, job: Job) -> None:
    """A client that goes away while its JSON answer is being made cancels the generation."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            job.cancelled = True
            return


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _endpoint(request: Request) -> str:
    path = request.url.path
    return {"/v1/interpret": "interpret", "/v1/measure": "measure", "/v1/health": "health",
            "/metrics": "metrics"}.get(path, "ask" if path.endswith("/ask") else "image" if path.endswith(".png")
                                       else "other")


class _Upload:
    """The files of one multipart request, written under a temporary folder with their (sanitised) names."""

    def __init__(self, form, folder: tempfile.TemporaryDirectory, paths: list[Path]):
        self._form, self._folder, self.paths = form, folder, paths
        self.source = ", ".join(p.name for p in paths)

    def text(self, name: str) -> str:
        value = self._form.get(name)
        return value.strip() if isinstance(value, str) else ""

    def ecg_path(self) -> Path:
        """The WFDB header if one came, else the one file."""
        headers = [p for p in self.paths if p.suffix.lower() == ".hea"]
        return headers[0] if headers else self.paths[0]

    def read(self, fs: float | None, max_bytes: int, timings: Timings):
        """read_ecg on the upload; a refusal names the file as uploaded, not our temporary folder."""
        try:
            with timings.request(), timings.stage("read"):
                return read_ecg(self.ecg_path(), fs=fs, max_bytes=max_bytes)
        except EcgReadError as exc:
            raise HttpError(422, str(exc).replace(self._folder.name + "/", ""), "unreadable_ecg") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._folder.cleanup()


async def _form(request: Request, max_bytes: int) -> _Upload:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes + 64 * 1024:
        raise HttpError(413, f"upload of {int(length)} bytes is over the {max_bytes} byte limit", "too_large")
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=16)
    except Exception as exc:                                   # noqa: BLE001 - a malformed multipart body
        raise HttpError(400, f"not a multipart form upload: {exc}", "bad_request") from None
    files = [f for f in form.getlist("file") if hasattr(f, "filename")]
    if not files:
        raise HttpError(400, "no ECG in the upload: send it as the multipart field \"file\"", "bad_request")
    if sum(f.size or 0 for f in files) > max_bytes:
        raise HttpError(413, f"upload is over the {max_bytes} byte limit", "too_large")
    folder = tempfile.TemporaryDirectory(prefix="gem-upload-")
    paths = []
    for k, f in enumerate(files):
        name = _SAFE_NAME.sub("_", Path(f.filename or f"ecg{k}").name) or f"ecg{k}"
        path = Path(folder.name) / name
        path.write_bytes(await f.read())
        paths.append(path)
    return _Upload(form, folder, paths)


def _int_field(value, name: str, default: int, lo: int, hi: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise HttpError(400, f"{name} is {value!r}, not a whole number", "bad_request") from None
    if not lo <= number <= hi:
        raise HttpError(400, f"{name} is {number}, outside {lo}..{hi}", "bad_request")
    return number


def _float_field(value: str, name: str) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise HttpError(400, f"{name} is {value!r}, not a number", "bad_request") from None
