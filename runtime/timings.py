"""Per-request stage timings, from one clock: `with timings.stage("prefill"): ...`.

A request may be timed in more than one span (gem-run reads the file before the models load, then hands
the same Timings to `interpret`): `total` adds up the spans, and the time to first token is taken when the
first token is out, inside the span that makes it.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

# The stages of a request, in pipeline order.
STAGES = ("read", "preprocess", "render", "ecg_encoder", "image_encoder", "prefill", "decode", "measure")


class Timings:
    def __init__(self):
        self.stages_ms: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.ttft_ms: float | None = None           # request start -> first generated token
        self._spans_ms = 0.0                         # closed request spans
        self._span_start: float | None = None

    @contextmanager
    def request(self) -> Iterator["Timings"]:
        """One span of the request's wall clock (spans add up into `total_ms`)."""
        if self._span_start is not None:
            yield self                               # already inside a span: nested calls add nothing
            return
        self._span_start = time.perf_counter()
        try:
            yield self
        finally:
            self._spans_ms += (time.perf_counter() - self._span_start) * 1000
            self._span_start = None

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if name not in self.stages_ms:
            raise KeyError(f"unknown stage {name!r}; stages are {', '.join(STAGES)}")   # our bug
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages_ms[name] += (time.perf_counter() - t0) * 1000

    def first_token(self) -> None:
        """Record the time to first token now (once)."""
        if self.ttft_ms is None:
            self.ttft_ms = self.total_ms

    @property
    def total_ms(self) -> float:
        open_ms = (time.perf_counter() - self._span_start) * 1000 if self._span_start is not None else 0.0
        return self._spans_ms + open_ms

    def __getitem__(self, name: str) -> float:
        return self.stages_ms[name]

    def to_dict(self) -> dict[str, float]:
        """{stage: ms, ..., "total": ms, "ttft": ms}, rounded to 0.01 ms (gem-run --json's timings_ms)."""
        out = {k: round(v, 2) for k, v in self.stages_ms.items()}
        out["total"] = round(self.total_ms, 2)
        out["ttft"] = None if self.ttft_ms is None else round(self.ttft_ms, 2)
        return out
