"""Prometheus metrics through prometheus_client, with fixed label sets: a model label is one of the
served ids (else "-"), an endpoint one of ENDPOINTS (else "other"), a status an HTTP code the server
itself chose. Nothing a client sends becomes label text, so no request can grow the metric set."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)
ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/classify": "classify",
             "/v1/models": "models", "/health": "health", "/metrics": "metrics"}
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self, models=()):
        self.models = frozenset(models)
        self.registry = CollectorRegistry(auto_describe=True)  # one per server: tests run several
        self.requests = Counter("tunewise_requests", "Requests answered, by model, endpoint and HTTP status.",
                                ["model", "endpoint", "status"], registry=self.registry)
        self.latency = Histogram("tunewise_request_seconds", "Latency of successful requests, arrival to answer.",
                                 ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batches = Histogram("tunewise_batch_size", "Requests per model batch.", buckets=BATCH_BUCKETS,
                                 registry=self.registry)
        self.queue = Gauge("tunewise_queue_depth", "Requests waiting for the model.", registry=self.registry)
        self.flight = Gauge("tunewise_in_flight", "Requests being handled.", registry=self.registry)
        self.restarts = Counter("tunewise_worker_restarts", "Times the batch worker died and was restarted.",
                                registry=self.registry)
        self.in_flight = 0

    def model(self, model: str) -> str:
        return model if model in self.models else "-"

    def observe_request(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        """``endpoint``: a path or a short name; anything not in ENDPOINTS is counted as "other"."""
        name = endpoint if endpoint in ENDPOINTS.values() else ENDPOINTS.get(endpoint, "other")
        self.requests.labels(self.model(model), name, str(int(status))).inc()
        if status < 400:
            self.latency.labels(self.model(model)).observe(seconds)

    def observe_batch(self, size: int) -> None:
        self.batches.observe(size)

    def render(self, queue_depth: int) -> str:
        self.queue.set(queue_depth)
        self.flight.set(self.in_flight)
        return generate_latest(self.registry).decode("utf-8")
