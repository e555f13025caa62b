"""Kafka consumer workers: the mapper (ingest -> canonical) and delivery (canonical -> sinks)."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily

from .base import Worker
from .retrying import RetryingWorker


def gauges(workers: Iterable[Worker]) -> list[GaugeMetricFamily]:
    """The workers' state as Prometheus gauges, read when /metrics is scraped."""
    lag = GaugeMetricFamily(
        "hub_consumer_lag",
        "Records in Kafka not yet read by this process's worker, per consumer group and "
        "partition (as of its last fetch, at most a second old).",
        labels=["group", "topic", "partition"],
    )
    circuit = GaugeMetricFamily(
        "hub_circuit_open",
        "1 while a destination's circuit breaker is open or probing (its events wait in Kafka).",
        labels=["destination"],
    )
    paused = GaugeMetricFamily(
        "hub_destination_paused",
        "1 while an operator has paused a destination (POST /api/destinations/<name>/pause): "
        "nothing is sent to it, its events wait in Kafka.",
        labels=["destination"],
    )
    for worker in workers:
        for tp, behind in sorted(worker.lag.items()):
            lag.add_metric([worker.group, tp.topic, str(tp.partition)], behind)
        destination = getattr(worker, "destination", None)
        if isinstance(worker, RetryingWorker) and worker.breaker and destination:
            circuit.add_metric([destination], 0.0 if worker.breaker.closed else 1.0)
        shared = getattr(worker, "circuit", None)  # a delivery worker's SharedCircuit
        if shared is not None and destination:
            paused.add_metric([destination], 0.0 if shared.pause is None else 1.0)
    return [lag, circuit, paused]
