"""What the hub counts, in Prometheus's format (prometheus-client), served at ``GET /metrics``.

Each ``Hub`` has its own registry, so hubs started in one process (the tests) keep apart, and
every process serves its own figures: scrape each (``hub up --role workers`` processes serve
``/metrics`` on ``HUB_METRICS_PORT``). The ops dashboard reads the same objects.

Counters, by stage (``ingest``, ``route``, ``map``, ``validate``, ``deliver``), route and
destination, whichever apply::

    hub_webhooks_total{connection,status}                 webhook requests by answer
    hub_events_ingested_total{connection}                 raw events stored (webhooks, polls)
    hub_events_mapped_total{route,entity}                 canonical events published
    hub_events_delivered_total{route,destination}         accepted by a destination
    hub_events_failed_total{stage,route,destination,error_class}   attempts that failed
    hub_events_parked_total{stage,route,destination}      parked for a retry
    hub_events_dead_lettered_total{stage,route,destination,error_class}
    hub_crosswalk_links_total{destination,outcome}        ids a destination reported, by what
                                                          became of them: linked|conflict|failed
    hub_echoes_dropped_total{system,destination}          changes a system reported that equal
                                                          what the hub knows it holds (hub.sync)

Histograms: ``hub_webhook_seconds{connection}`` (receipt to answer) and
``hub_delivery_seconds{destination}`` (one destination call). Gauges, read when scraped:
``hub_consumer_lag{group,topic,partition}`` (records not yet read by this process's workers)
, ``hub_circuit_open{destination}`` and ``hub_destination_paused{destination}`` (an
operator's pause); the configuration this process runs:
``hub_mapping_version_info{mapping,version}`` (1 per mapping live),
``hub_config_reload_timestamp_seconds`` and ``hub_config_reload_ok`` (0 while the last change
was refused); polling: ``hub_source_last_poll_timestamp_seconds{source}`` and
``hub_source_poll_failing{source}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.webhooks = Counter(
            "hub_webhooks",
            "Webhook requests, by connection and HTTP status of the answer.",
            ["connection", "status"],
            registry=registry,
        )
        self.ingested = Counter(
            "hub_events_ingested",
            "Raw events stored in the ingest topic (webhooks and polls).",
            ["connection"],
            registry=registry,
        )
        self.mapped = Counter(
            "hub_events_mapped",
            "Canonical events published by inbound routes.",
            ["route", "entity"],
            registry=registry,
        )
        self.delivered = Counter(
            "hub_events_delivered",
            "Events accepted by a destination, per outbound route.",
            ["route", "destination"],
            registry=registry,
        )
        self.failed = Counter(
            "hub_events_failed",
            "Attempts that failed, retriable or not.",
            ["stage", "route", "destination", "error_class"],
            registry=registry,
        )
        self.parked = Counter(
            "hub_events_parked",
            "Events parked in the retry table after a retriable failure.",
            ["stage", "route", "destination"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "hub_events_dead_lettered",
            "Events sent to the dead-letter topic.",
            ["stage", "route", "destination", "error_class"],
            registry=registry,
        )
        self.crosswalk_links = Counter(
            "hub_crosswalk_links",
            "Ids a destination reported having assigned, by what became of them: linked, "
            "conflict (linked to another golden id already) or failed (e.g. the database).",
            ["destination", "outcome"],
            registry=registry,
        )
        self.echoes_dropped = Counter(
            "hub_echoes_dropped",
            "Changes a system reported that equal what the hub knows it holds (the echo of the "
            "hub's own write, or a save that changed nothing synced): not delivered (hub.sync).",
            ["system", "destination"],
            registry=registry,
        )
        self.webhook_seconds = Histogram(
            "hub_webhook_seconds",
            "Time from a webhook's arrival to the hub's answer.",
            ["connection"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.delivery_seconds = Histogram(
            "hub_delivery_seconds",
            "Time one call to a destination took (successful or not).",
            ["destination"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )

    def watch(self, collect: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        """Add gauges computed when scraped (consumer lag, circuit state)."""
        self.registry.register(_Computed(collect))

    def expose(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0 if never counted): for tests and the dashboard."""
        found = self.registry.get_sample_value(name, labels)
        return 0.0 if found is None else found


class _Computed(Collector):
    def __init__(self, collect: Callable[[], Iterable[GaugeMetricFamily]]) -> None:
        self._collect = collect

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._collect()

    def describe(self) -> list[Any]:
        return []


def gauge(name: str, documentation: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


__all__ = ["CONTENT_TYPE", "Metrics", "gauge"]
