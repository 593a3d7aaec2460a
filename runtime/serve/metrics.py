"""The service's Prometheus metrics (text format at GET /metrics), in a registry of its own."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from ..timings import STAGES

STAGE_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self, queue_depth):
        self.registry = CollectorRegistry()
        self.requests = Counter("gem_requests", "Requests answered, by endpoint and status code",
                                ["endpoint", "status"], registry=self.registry)
        self.errors = Counter("gem_errors", "Requests that failed, by kind", ["kind"], registry=self.registry)
        self.stage_seconds = Histogram("gem_stage_seconds", "Time spent in each pipeline stage", ["stage"],
                                       buckets=STAGE_BUCKETS_S, registry=self.registry)
        self.request_seconds = Histogram("gem_request_seconds", "Time from start to last token, by endpoint",
                                         ["endpoint"], buckets=STAGE_BUCKETS_S, registry=self.registry)
        self.tokens = Counter("gem_generated_tokens", "Tokens generated", registry=self.registry)
        self.queue_depth = Gauge("gem_queue_depth", "Requests waiting or running on the model",
                                 registry=self.registry)
        self.queue_depth.set_function(queue_depth)
        self.states = Gauge("gem_conversation_states_bytes", "Bytes of kept follow-up states",
                            registry=self.registry)

    def observe(self, endpoint: str, timings, new_tokens: int) -> None:
        stages = timings.to_dict()
        for stage in STAGES:
            if stages[stage]:
                self.stage_seconds.labels(stage).observe(stages[stage] / 1000)
        self.request_seconds.labels(endpoint).observe(stages["total"] / 1000)
        self.tokens.inc(new_tokens)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
