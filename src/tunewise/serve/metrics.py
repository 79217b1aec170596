"""Prometheus text exposition (format 0.0.4), hand-written: a few counters and two histograms."""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Histogram:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.sum += value
        self.count += 1
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1

    def lines(self, name: str, labels: str = "") -> list[str]:
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts, strict=True)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        suffix = f"{{{labels}}}" if labels else ""
        return [*out, f"{name}_sum{suffix} {self.sum}", f"{name}_count{suffix} {self.count}"]


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple, int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batches = Histogram(BATCH_BUCKETS)
        self.in_flight = 0

    def observe_request(self, model: str, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(model, endpoint, status)] += 1
            if status < 400:
                self.latency.setdefault(model, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, size: int) -> None:
        with self._lock:
            self.batches.observe(size)

    def render(self, queue_depth: int) -> str:
        with self._lock:
            lines = ["# HELP tunewise_requests_total Requests answered, by model, endpoint and HTTP status.",
                     "# TYPE tunewise_requests_total counter"]
            for (model, endpoint, status), n in sorted(self.requests.items()):
                lines.append(f'tunewise_requests_total{{model="{_esc(model)}",endpoint="{endpoint}",status="{status}"}} {n}')
            lines += ["# HELP tunewise_request_seconds Latency of successful requests, arrival to answer.",
                      "# TYPE tunewise_request_seconds histogram"]
            for model, h in sorted(self.latency.items()):
                lines += h.lines("tunewise_request_seconds", f'model="{_esc(model)}"')
            lines += ["# HELP tunewise_batch_size Requests per model batch.", "# TYPE tunewise_batch_size histogram",
                      *self.batches.lines("tunewise_batch_size"),
                      "# HELP tunewise_queue_depth Requests waiting for the model.", "# TYPE tunewise_queue_depth gauge",
                      f"tunewise_queue_depth {queue_depth}",
                      "# HELP tunewise_in_flight Requests being handled.", "# TYPE tunewise_in_flight gauge",
                      f"tunewise_in_flight {self.in_flight}"]
        return "\n".join(lines) + "\n"
