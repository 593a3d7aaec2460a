"""The service's routes, module-level as in vLLM's api_router: each reads the worker, the metrics and the
options from `request.app.state` (set by app.lifespan). A model request becomes a `Job` on the one
`ModelWorker` and answers JSON or server-sent events (docs/serve-api.md)."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from ..audit import files_sha256, interpretation_entry, token_id
from ..interpreter import Interpreter
from ..measure_report import measurement_report
from ..timings import Timings
from .errors import BUG_MESSAGE, HttpError, http_error
from .metrics import Metrics
from .uploads import bool_field, float_field, int_field, read_form
from .worker import Job, ModelWorker, QueueFull

STATIC = Path(__file__).parent / "static"
MAX_NEW_TOKENS = 2048
log = logging.getLogger("gem_runtime.serve")


@dataclass(frozen=True)
class JobResult:
    """What a model job hands back to its request: the JSON body, its timings and how many tokens it made."""
    body: dict
    timings: Timings
    new_tokens: int


class _Trail:
    """The audit line of one interpretation request (gem_runtime.audit), when the service keeps a trail: the
    caller (its token's id, else its address), the upload's sha256, then what came of it."""

    def __init__(self, request: Request, paths: list[Path]):
        self.log = getattr(request.app.state, "audit", None)
        if self.log is None:
            return
        options = request.app.state.options
        address = request.client.host if request.client else "?"
        self.caller = f"token:{token_id(options.token)}@{address}" if options.token else f"ip:{address}"
        self.input_sha256 = files_sha256(paths)

    def append(self, gem, result, error, settings: dict | None = None) -> None:
        if self.log is not None:
            self.log.append(interpretation_entry("serve", self.caller, self.input_sha256, gem, result, error,
                                                 settings))


def _worker(request: Request) -> ModelWorker:
    return request.app.state.worker


def _metrics(request: Request) -> Metrics:
    return request.app.state.metrics


# --- routes ---
async def health(request: Request):
    gem, worker = _worker(request).interpreter, _worker(request)
    count(request, "health", 200)
    return JSONResponse({"status": "ok", "bundle_id": gem.bundle.bundle_id, "quant": gem.quant,
                         "backends": gem.backends.to_dict(), "threads": gem.threads,
                         "queue_depth": worker.depth, "queue_limit": request.app.state.options.queue,
                         "revise_rhythm": request.app.state.options.revise_rhythm,
                         "states": gem.conversation_count})


async def interpret(request: Request):
    options = request.app.state.options
    form = await read_form(request, options.max_bytes)
    question = form.text("question") or None
    max_new = int_field(form.text("max_new_tokens"), "max_new_tokens", 256, 1, MAX_NEW_TOKENS)
    fs = float_field(form.text("fs"), "fs")
    revise = bool_field(form.text("revise_rhythm"), "revise_rhythm", options.revise_rhythm)
    timings = Timings()
    trail = _Trail(request, form.paths)
    with form:
        try:
            record = await run_in_threadpool(form.read, fs, options.max_bytes, timings)
        except HttpError as exc:
            await run_in_threadpool(trail.append, None, None, exc)
            raise

    def run(gem: Interpreter, emit) -> JobResult:
        kwargs = {} if question is None else {"question": question}
        try:
            result = gem.interpret(record, max_new_tokens=max_new, stream=emit, keep_image=True, timings=timings,
                                   revise=revise, **kwargs)
        except BaseException as exc:
            trail.append(gem, None, exc)
            raise
        trail.append(gem, result, None, {"max_new_tokens": max_new, "revise_rhythm": revise})
        body = {**result.to_dict(), "source": form.source, "ecg_id": result.ecg_id,
                "image_url": f"/v1/ecgs/{result.ecg_id}/image.png"}
        return JobResult(body, result.timings, result.new_tokens)

    return await _answer(request, run, "interpret")


async def ask(request: Request):
    ecg_id = request.path_params["ecg_id"]
    _worker(request).interpreter.conversation(ecg_id)      # 404 before the body is read, and before queueing
    try:
        body = await request.json()                        # bounded as it arrives (guard.py)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise HttpError(400, "the body is not JSON: send {\"question\": ...}", "bad_request") from None
    if not isinstance(body, dict) or not isinstance(body.get("question"), str) or not body["question"].strip():
        raise HttpError(400, "the body needs a non-empty \"question\" string", "bad_request")
    max_new = int_field(body.get("max_new_tokens"), "max_new_tokens", 256, 1, MAX_NEW_TOKENS)

    def run(gem: Interpreter, emit) -> JobResult:
        answer = gem.ask(ecg_id, body["question"], max_new_tokens=max_new, stream=emit)
        return JobResult(answer.to_dict(), answer.timings, answer.new_tokens)

    return await _answer(request, run, "ask")


async def image(request: Request):
    conv = _worker(request).interpreter.conversation(request.path_params["ecg_id"])
    if conv.image_png is None:
        raise HttpError(404, "no image was kept for this ECG", "not_found")
    count(request, "image", 200)
    return Response(conv.image_png, media_type="image/png")


async def measure(request: Request):
    options = request.app.state.options
    form = await read_form(request, options.max_bytes)
    fs = float_field(form.text("fs"), "fs")
    with form:
        record = await run_in_threadpool(form.read, fs, options.max_bytes, Timings())
    meas, _, report = await run_in_threadpool(measurement_report, record, form.source)
    if not meas.has_signal:
        why = meas.quality.reasons.get("hr_bpm") or "no usable signal"
        raise HttpError(422, f"{form.source}: {why}", "unreadable_ecg")
    count(request, "measure", 200)
    return JSONResponse(report)


async def metrics_text(request: Request):
    metrics = _metrics(request)
    metrics.states.set(_worker(request).interpreter.conversation_bytes)
    count(request, "metrics", 200)
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


async def index(request: Request):
    return FileResponse(STATIC / "index.html")


# --- running a job, answering JSON or a stream ---
async def _answer(request: Request, run, endpoint: str):
    loop = asyncio.get_running_loop()
    timeout_s = request.app.state.options.timeout_s
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    if "text/event-stream" in request.headers.get("accept", ""):
        return await _stream(request, run, endpoint, loop, deadline)
    job = Job(run, loop, deadline)
    future = _submit(request, job)
    watcher = asyncio.create_task(_watch_disconnect(request, job))
    try:
        result: JobResult = await future
    except Exception as exc:
        err = http_error(exc)
        if err is None:
            raise                                  # not a user's error: a bug, answered 500 and logged
        raise err from exc
    finally:
        watcher.cancel()
        if not future.done():                      # cancelled (a shutdown past its bound): stop generating
            job.cancelled = True
    _done(request, endpoint, result)
    return JSONResponse(result.body)


async def _stream(request: Request, run, endpoint: str, loop, deadline):
    pieces: asyncio.Queue = asyncio.Queue()
    job = Job(run, loop, deadline, on_text=pieces.put_nowait)
    future = _submit(request, job)                 # 429 before the stream starts
    future.add_done_callback(lambda f: pieces.put_nowait(None))

    async def events():
        try:
            while (piece := await pieces.get()) is not None:
                yield _event("token", {"text": piece})
            try:
                result: JobResult = future.result()
            except Exception as exc:               # noqa: BLE001 - becomes an error event
                err = http_error(exc)
                if err is None:
                    log.exception("bug while streaming %s", request.url.path, exc_info=exc)
                    err = HttpError(500, BUG_MESSAGE.format(type(exc).__name__), "bug")
                count(request, endpoint, err.status, err.kind)
                yield _event("error", {"error": err.message, "status": err.status})
                return
            _done(request, endpoint, result)
            yield _event("result", result.body)
        finally:
            if not future.done():                  # the client went away mid-stream
                job.cancelled = True
                _metrics(request).errors.labels("client_disconnected").inc()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _submit(request: Request, job: Job) -> asyncio.Future:
    worker, state = _worker(request), request.app.state
    try:
        future = worker.submit(job)
    except QueueFull:
        retry = max(1, round(state.recent_s * worker.depth))
        raise HttpError(429, f"the model is busy ({worker.depth} requests queued or running); retry later",
                        "queue_full", {"Retry-After": str(retry)}) from None
    future.add_done_callback(lambda f: f.exception())    # retrieved even when nobody awaits it
    return future


def _done(request: Request, endpoint: str, result: JobResult) -> None:
    state = request.app.state
    state.recent_s = 0.8 * state.recent_s + 0.2 * result.timings.total_ms / 1000
    _metrics(request).observe(endpoint, result.timings, result.new_tokens)
    count(request, endpoint, 200)


def count(request: Request, endpoint: str, status: int, kind: str | None = None) -> None:
    metrics = _metrics(request)
    metrics.requests.labels(endpoint, str(status)).inc()
    if kind:
        metrics.errors.labels(kind).inc()


async def _watch_disconnect(request: Request, job: Job) -> None:
    """A client that goes away while its JSON answer is being made cancels the generation."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            job.cancelled = True
            return


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def endpoint_name(request: Request) -> str:
    path = request.url.path
    return {"/v1/interpret": "interpret", "/v1/measure": "measure", "/v1/health": "health",
            "/metrics": "metrics"}.get(path, "ask" if path.endswith("/ask") else "image" if path.endswith(".png")
                                       else "other")
