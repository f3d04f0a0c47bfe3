"""Prometheus metrics, `/metrics`, across every process of one machine.

prometheus-client's multiprocess mode: each process (every Sanic worker, the job worker)
writes its values to its own files in one directory, and `/metrics` in any API worker reads
them all. The directory (`PROMETHEUS_MULTIPROC_DIR`, else `<data dir>/metrics`) must be in
the environment before prometheus_client is first imported, so `haodian serve` and `haodian
worker` call `use_directory` first thing, and nothing imports prometheus_client at module
level. Files of processes no longer running are removed then: their counters start again
from zero, which Prometheus reads as a counter reset.

What is measured: requests by route template, method and status, with latency; each Lua
script's latency; stream lag and pending entries of the consumers; job runs and failures;
the age of the oldest outbox event not yet delivered.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

ENV = "PROMETHEUS_MULTIPROC_DIR"
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_PID_FILE = re.compile(r"_(\d+)\.db$")


def use_directory(data_dir: Path) -> Path:
    """Point this process (and the processes it starts) at the metrics directory."""
    path = Path(os.environ.get(ENV) or data_dir / "metrics")
    path.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = str(path)
    for f in path.glob("*.db"):
        m = _PID_FILE.search(f.name)
        if m and not _alive(int(m.group(1))):
            f.unlink(missing_ok=True)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Metrics:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "haodian_http_requests", "HTTP requests answered", ["route", "method", "status"]
        )
        self.latency = Histogram(
            "haodian_http_request_seconds",
            "time from request to answer",
            ["route", "method"],
            buckets=_BUCKETS,
        )
        self.scripts = Histogram(
            "haodian_lua_script_seconds", "a Lua script's round trip", ["script"], buckets=_BUCKETS
        )
        self.stream_lag = Gauge(
            "haodian_stream_lag",
            "stream entries not yet read by the consumer group",
            ["kind"],
            multiprocess_mode="livemax",
        )
        self.stream_pending = Gauge(
            "haodian_stream_pending",
            "stream entries read but not yet acknowledged",
            ["kind"],
            multiprocess_mode="livemax",
        )
        self.jobs = Counter("haodian_job_runs", "job runs by outcome", ["job", "outcome"])
        self.job_seconds = Histogram(
            "haodian_job_seconds", "a job run's duration", ["job"], buckets=_BUCKETS
        )
        self.outbox_lag = Gauge(
            "haodian_outbox_lag_seconds",
            "age of the oldest outbox event due and not yet delivered",
            multiprocess_mode="livemax",
        )
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}
        self._script_children: dict[str, Any] = {}

    def request_done(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, method, str(status))
        child.inc()
        timing = self._latency_children.get(key[:2])
        if timing is None:
            timing = self._latency_children[key[:2]] = self.latency.labels(route, method)
        timing.observe(seconds)

    def script_done(self, script: str, seconds: float) -> None:
        child = self._script_children.get(script)
        if child is None:
            child = self._script_children[script] = self.scripts.labels(script)
        child.observe(seconds)


_metrics: _Metrics | None = None


def metrics() -> _Metrics:
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
    return _metrics


def script_timer(script: str) -> Any:
    """A done-callback for a script reply's future: observes the time since this call."""
    start = time.perf_counter()

    def done(_: Any) -> None:
        metrics().script_done(script, time.perf_counter() - start)

    return done


def exposition() -> tuple[bytes, str]:
    """Every process's values, in the text format, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if os.environ.get(ENV):
        MultiProcessCollector(registry)
    else:  # a process started without `use_directory` (e.g. an app made in a test)
        from prometheus_client import REGISTRY

        registry = REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST
