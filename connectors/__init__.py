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
    "names",
    "problems",
    "register",
]
