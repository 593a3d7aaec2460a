"""The one model and its queue: requests wait in a bounded queue and run one at a time on a worker thread.

A job is a function of the Interpreter. It reports text as it streams (`emit`) and checks, at every token,
whether its caller went away or its time ran out; either stops generation (GenerationStopped).
"""
from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import GenerationStopped
from ..interpreter import Interpreter


class QueueFull(Exception):
    """Every queue slot is taken: the caller should retry later."""


@dataclass
class Job:
    """One request for the model. `run(interpreter, emit)` returns the result (or raises)."""

    run: Callable[[Interpreter, Callable[[str], None]], Any]
    loop: asyncio.AbstractEventLoop
    deadline: float | None                          # time.monotonic() after which generation stops
    on_text: Callable[[str], None] | None = None    # called on the event loop with each piece of text
    future: asyncio.Future = field(init=False)
    cancelled: bool = False                         # the client went away

    def __post_init__(self):
        self.future = self.loop.create_future()

    def check(self) -> None:
        if self.cancelled:
            raise GenerationStopped("the client disconnected")
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise GenerationStopped("timeout")

    def emit(self, text: str) -> None:
        self.check()
        if self.on_text is not None:
            self.loop.call_soon_threadsafe(self.on_text, text)


class ModelWorker:
    """Owns the Interpreter; runs queued jobs in order on its own thread."""

    def __init__(self, interpreter: Interpreter, queue_limit: int):
        self.interpreter = interpreter
        self.queue_limit = queue_limit
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        self._waiting = 0                             # queued, not yet started
        self._busy = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="gem-model", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Requests waiting, plus the one running."""
        with self._lock:
            return self._waiting + int(self._busy)

    @property
    def alive(self) -> bool:
        """Whether the model's thread still runs (what the systemd watchdog is fed on)."""
        return self._thread.is_alive()

    def submit(self, job: Job) -> asyncio.Future:
        with self._lock:
            if self._waiting + int(self._busy) >= self.queue_limit + 1:
                raise QueueFull()
            self._waiting += 1
        self._jobs.put(job)
        return job.future

    def stop(self) -> None:
        """After the jobs queued so far: end the thread and close the model."""
        self._jobs.put(None)
        self._thread.join()
        self.interpreter.close()

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:
                self._waiting -= 1
                self._busy = True
            try:
                job.check()                            # it may have waited past its deadline, or been left
                result = job.run(self.interpreter, job.emit)
            except BaseException as exc:               # noqa: BLE001 - handed to the request, which decides
                self._settle(job, exc, failed=True)
            else:
                self._settle(job, result, failed=False)
            finally:
                with self._lock:
                    self._busy = False

    @staticmethod
    def _settle(job: Job, value, failed: bool) -> None:
        def settle():
            if job.future.done():
                return
            job.future.set_exception(value) if failed else job.future.set_result(value)
        job.loop.call_soon_threadsafe(settle)
