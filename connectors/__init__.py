"""Adapters for external systems. Each module registers one connector under its name."""

from .base import (
    Change,
    Connector,
    ConnectorOptions,
    CreatedId,
    Delivery,
    DeliveryResult,
    InboundEvent,
    Page,
    PollingOptions,
    PollingSource,
    Secret,
    Sink,
    WebhookSource,
    idempotency_key_for,
)
from .registry import get, names, problems, register

__all__ = [
    "Change",
    "Connector",
    "ConnectorOptions",
    "CreatedId",
    "Delivery",
    "DeliveryResult",
    "InboundEvent",
    "Page",
    "PollingOptions",
    "PollingSource",
    "Secret",
    "Sink",
    "WebhookSource",
    "get",
    "idempotency_key_for",
    "names",
    "problems",
    "register",
]
