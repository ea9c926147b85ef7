"""The gateway's /metrics page: its own series about the work it served, plus the
cluster's, gathered at scrape time over the bus.

- ``syndicate_gateway_*``: observed by this gateway for the tasks and embeddings it
  served (tasks submitted by the CLI or other gateways are not in them).
- ``syndicate_queue_depth`` / ``syndicate_running_requests`` / ``syndicate_service_up``:
  from the HealthReply of every instance answering HEALTH_PING (per agent and service).
- Anything services keep in a ``shared.metrics.ServiceMetrics`` (engine tokens, sandbox
  verdicts, retrieval latency, ...): their METRICS_PING replies, re-labelled with
  ``service`` and ``instance``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import nats
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from pydantic import ValidationError

from shared import registry, subjects
from shared.bus import scatter
from shared.contracts import HealthPing, HealthReply, MetricsPing, MetricsReply, TaskResult
from shared.metrics import LATENCY_BUCKETS, RATE_BUCKETS, TASK_BUCKETS, TTFT_BUCKETS

AGENT_OF_KIND = {a.task_kind: a.name for a in registry.agents().values() if a.task_kind}


class GatewayMetrics:
    """Series this gateway observes itself, in its own registry (no global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("syndicate_gateway_requests", "HTTP requests by endpoint and status code", ("endpoint", "code"), registry=r)
        self.inflight = Gauge("syndicate_gateway_inflight_tasks", "Tasks this gateway is waiting on", registry=r)
        self.rejected = Counter("syndicate_gateway_rejected", "Requests refused with 429, by reason", ("reason",), registry=r)
        self.tasks = Counter("syndicate_gateway_tasks", "Outcomes of tasks served by this gateway", ("kind", "status"), registry=r)
        self.task_seconds = Histogram("syndicate_gateway_task_seconds", "Submit to final result", ("kind",), buckets=TASK_BUCKETS, registry=r)
        self.tokens = Counter("syndicate_gateway_tokens", "Tokens of tasks served (TaskResult.usage)", ("agent", "direction"), registry=r)
        self.gen_seconds = Counter("syndicate_gateway_generation_seconds", "Generation seconds of tasks served (TaskResult.usage)", ("agent",), registry=r)
        self.tokens_per_s = Histogram("syndicate_gateway_tokens_per_second", "Output tokens/s of one task (usage.output_tokens / usage.seconds)", ("agent",), buckets=RATE_BUCKETS, registry=r)
        self.ttft = Histogram("syndicate_gateway_time_to_first_token_seconds", "Submit to first streamed token, as the client sees it", ("model",), buckets=TTFT_BUCKETS, registry=r)
        self.engine_ttft = Histogram("syndicate_gateway_engine_time_to_first_token_seconds", "Engine-reported time to first token (TaskResult.usage.ttft_s)", ("agent",), buckets=TTFT_BUCKETS, registry=r)
        self.sandbox_runs = Counter("syndicate_gateway_sandbox_runs", "Sandbox runs in the attempts of tasks served, by verdict", ("verdict",), registry=r)
        self.embed_seconds = Histogram("syndicate_gateway_embed_seconds", "Retriever embedding requests (RETRIEVER_EMBED round trip)", ("outcome",), buckets=LATENCY_BUCKETS, registry=r)
        self.cancels = Counter("syndicate_gateway_client_cancels", "Tasks cancelled because the client went away", registry=r)
        self.model_requests = Counter("syndicate_gateway_model_requests", "Model requests (plain generations) served, by model and outcome", ("model", "outcome"), registry=r)

    def observe_result(self, result: TaskResult, model: str, seconds: float) -> None:
        """Everything a final TaskResult tells (outcome, usage, sandbox verdicts)."""
        self.tasks.labels(result.kind, result.status).inc()
        self.task_seconds.labels(result.kind).observe(seconds)
        agent = AGENT_OF_KIND.get(result.kind, result.kind)
        usage = result.usage
        self.tokens.labels(agent, "in").inc(max(0, usage.input_tokens))
        self.tokens.labels(agent, "out").inc(max(0, usage.output_tokens))
        self.gen_seconds.labels(agent).inc(max(0.0, usage.seconds))
        if usage.seconds > 0 and usage.output_tokens > 0:
            self.tokens_per_s.labels(agent).observe(usage.output_tokens / usage.seconds)
        if usage.ttft_s is not None:
            self.engine_ttft.labels(agent).observe(usage.ttft_s)
        for attempt in result.attempts:
            for run in attempt.verdicts:
                self.sandbox_runs.labels(run.status).inc()


class ClusterCollector(Collector):
    """Series of the other services, from the last health/metrics ping round."""

    def __init__(self) -> None:
        self.health: list[HealthReply] = []
        self.foreign: list[MetricsReply] = []
        self.refreshed_at = 0.0

    async def refresh(self, nc: nats.NATS | None, *, wait_s: float, cache_s: float) -> None:
        """Ping the bus (at most once per ``cache_s``); keep the last answers."""
        if nc is None or not nc.is_connected:
            self.health, self.foreign = [], []
            return
        if time.monotonic() - self.refreshed_at < cache_s:
            return
        health_raw, metrics_raw = await asyncio.gather(
            scatter(nc, subjects.HEALTH_PING, HealthPing().model_dump_json().encode(), wait_s=wait_s),
            scatter(nc, subjects.METRICS_PING, MetricsPing().model_dump_json().encode(), wait_s=wait_s),
        )
        self.health = _parse_all(health_raw, HealthReply)
        self.foreign = _parse_all(metrics_raw, MetricsReply)
        self.refreshed_at = time.monotonic()

    def collect(self) -> Iterator[Metric]:
        labels = ("service", "instance")
        depth = GaugeMetricFamily("syndicate_queue_depth", "Requests waiting in an instance's queue (HealthReply)", labels=labels)
        running = GaugeMetricFamily("syndicate_running_requests", "Requests an instance is running (HealthReply)", labels=labels)
        up = GaugeMetricFamily("syndicate_service_up", "1 for each instance that answered the last health ping", labels=(*labels, "state", "model"))
        for h in self.health:
            depth.add_metric((h.service, h.instance), h.queue_depth)
            running.add_metric((h.service, h.instance), h.running)
            up.add_metric((h.service, h.instance, h.state, h.model or ""), 1)
        yield from (depth, running, up)
        yield from merge_expositions(self.foreign)


def _parse_all(raw: list[bytes], model: type[Any]) -> list[Any]:
    out = []
    for data in raw:
        try:
            out.append(model.model_validate_json(data))
        except (ValidationError, json.JSONDecodeError):
            continue  # an ErrorReply or a newer contract: skip, never fail the scrape
    return out


def merge_expositions(replies: list[MetricsReply]) -> list[Metric]:
    """One family per metric name across instances, each sample labelled with its origin."""
    families: dict[str, Metric] = {}
    for reply in replies:
        try:
            parsed = list(text_string_to_metric_families(reply.exposition))
        except ValueError:
            continue
        for fam in parsed:
            if fam.name.endswith("_created"):
                continue
            merged = families.setdefault(fam.name, Metric(fam.name, fam.documentation, fam.type))
            if merged.type != fam.type:
                continue  # two services disagree on a series' type: keep the first
            for s in fam.samples:
                if s.name.endswith("_created"):
                    continue
                merged.add_sample(s.name, {**s.labels, "service": reply.service, "instance": reply.instance}, s.value, s.timestamp, s.exemplar)
    return list(families.values())


def render(metrics: GatewayMetrics, cluster: ClusterCollector) -> bytes:
    """The whole /metrics page (gateway series, then the cluster's)."""
    reg = CollectorRegistry()
    reg.register(cluster)
    return generate_latest(metrics.registry) + generate_latest(reg)
