"""Prometheus series a service keeps about its own work, exported over the bus.

Services have no HTTP port, so they do not serve ``/metrics`` themselves: each keeps a
``ServiceMetrics`` (its own ``CollectorRegistry``) and ``add_metrics_responder`` answers
the ``METRICS_PING`` broadcast with a ``MetricsReply`` holding the Prometheus text. The
gateway's ``/metrics`` pings at scrape time, adds ``service`` / ``instance`` labels and
serves everything in one page. Where each series comes from:

    series                                         kept by            how
    syndicate_queue_depth, syndicate_running_requests,
    syndicate_service_up                           gateway            HealthReply of every instance (HEALTH_PING)
    syndicate_gateway_*                            gateway            the tasks / embeddings it served itself
    syndicate_engine_tokens_total{direction}       agents             ServiceMetrics.observe_generation
    syndicate_engine_generation_seconds_total      agents             ServiceMetrics.observe_generation
    syndicate_engine_time_to_first_token_seconds   agents             ServiceMetrics.observe_generation
    syndicate_engine_tokens_per_second             agents             ServiceMetrics.observe_generation
    syndicate_engine_waiting_requests, syndicate_engine_running_requests,
    syndicate_engine_slots, syndicate_engine_throughput_tokens_per_second
                                                   agents             ServiceMetrics.watch_engine (read at scrape)
    syndicate_sandbox_runs_total{verdict}          code-sandbox       ServiceMetrics.observe_sandbox
    syndicate_retrieval_seconds{op}                retriever          ServiceMetrics.observe_retrieval
    syndicate_task_outcomes_total{kind,status}     router             ServiceMetrics.observe_task

A service's series appear only once that service creates a ``ServiceMetrics`` and calls
``add_metrics_responder``; until then the gateway's own ``syndicate_gateway_*`` series
cover the tasks that went through it (and nothing else).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from faststream.nats import NatsBroker
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from shared import subjects
from shared.bus import instance_id
from shared.contracts import MetricsPing, MetricsReply

# Buckets sized for CPU inference: a first token within 50 ms .. 2 min, 1..200 tok/s.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0)
RATE_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
TASK_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def _stat(stats: Callable[[], dict[str, Any]], key: str) -> float:
    """One numeric field of an engine's ``stats()``, 0 when missing or None."""
    return float(stats().get(key, 0) or 0)

class ServiceMetrics:
    """One process's own Prometheus series (standard names, so dashboards line up).

    Series are created on first use: a code-sandbox never shows empty engine series.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._made: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _get(self, name: str, factory: Any) -> Any:
        with self._lock:
            if name not in self._made:
                self._made[name] = factory()
            return self._made[name]

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return self._get(name, lambda: Counter(name, doc, labels, registry=self.registry))

    def histogram(self, name: str, doc: str, labels: tuple[str, ...] = (), buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Histogram:
        return self._get(name, lambda: Histogram(name, doc, labels, registry=self.registry, buckets=buckets))

    def observe_generation(self, input_tokens: int, output_tokens: int, seconds: float, ttft_s: float | None) -> None:
        """One llama.cpp generation (an agent calls this with its GenerationResult's numbers)."""
        tokens = self.counter("syndicate_engine_tokens", "Tokens processed by this engine", ("direction",))
        tokens.labels("in").inc(max(0, input_tokens))
        tokens.labels("out").inc(max(0, output_tokens))
        self.counter("syndicate_engine_generation_seconds", "Wall seconds spent generating").inc(max(0.0, seconds))
        if ttft_s is not None:
            self.histogram(
                "syndicate_engine_time_to_first_token_seconds", "Engine time to first token", buckets=TTFT_BUCKETS,
            ).observe(ttft_s)
        if seconds > 0 and output_tokens > 0:
            self.histogram(
                "syndicate_engine_tokens_per_second", "Output tokens per second of one generation", buckets=RATE_BUCKETS,
            ).observe(output_tokens / seconds)

    def gauge(self, name: str, doc: str) -> Gauge:
        return self._get(name, lambda: Gauge(name, doc, registry=self.registry))

    def watch_engine(self, stats: Callable[[], dict[str, Any]]) -> None:
        """Gauges of an engine's live state, read from ``stats()`` at every scrape: requests
        waiting and running, batching slots, output tokens/s of all its sequences."""
        for name, key, doc in (
            ("syndicate_engine_waiting_requests", "queue_depth", "Requests waiting for a slot of this engine"),
            ("syndicate_engine_running_requests", "running", "Requests this engine is generating (batched)"),
            ("syndicate_engine_slots", "slots", "Requests this engine can generate at once"),
            ("syndicate_engine_throughput_tokens_per_second", "tokens_per_s",
             "Output tokens/s of all sequences over the engine's recent window"),
        ):
            self.gauge(name, doc).set_function(functools.partial(_stat, stats, key))

    def observe_sandbox(self, verdict: str) -> None:
        """One code-sandbox run by its ExecResult.status."""
        self.counter("syndicate_sandbox_runs", "Sandbox runs by verdict", ("verdict",)).labels(verdict).inc()

    def observe_retrieval(self, op: str, seconds: float) -> None:
        """One retriever operation (op: search, embed, ingest) and its latency."""
        self.histogram("syndicate_retrieval_seconds", "Retriever latency", ("op",)).labels(op).observe(seconds)

    def observe_task(self, kind: str, status: str, seconds: float) -> None:
        """One finished task (router)."""
        self.counter("syndicate_task_outcomes", "Finished tasks by status", ("kind", "status")).labels(kind, status).inc()
        self.histogram("syndicate_task_seconds", "Task wall time", ("kind",), buckets=TASK_BUCKETS).labels(kind).observe(seconds)

    def exposition(self) -> str:
        return generate_latest(self.registry).decode()


def add_metrics_responder(broker: NatsBroker, service: str, metrics: ServiceMetrics, instance: str | None = None) -> None:
    """Every instance answers the METRICS_PING broadcast (no queue group) with its series."""
    name = instance or instance_id(service)

    @broker.subscriber(subjects.METRICS_PING)
    async def _metrics(_: MetricsPing) -> MetricsReply:
        return MetricsReply(service=service, instance=name, exposition=metrics.exposition())
