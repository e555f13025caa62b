"""Adapters for external systems. Each module registers one connector under its name."""

from .base import (
    Connector,
    ConnectorOptions,
    Delivery,
    InboundEvent,
    Secret,
    Sink,
    WebhookSource,
)
from .registry import get, names, register

__all__ = [
    "Connector",
    "ConnectorOptions",
    "Delivery",
    "InboundEvent",
    "Secret",
    "Sink",
    "WebhookSource",
    "get",
    "names",
    "register",
]
