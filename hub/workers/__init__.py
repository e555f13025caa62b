"""Kafka consumer workers: the mapper (ingest -> canonical) and delivery (canonical -> sinks)."""
