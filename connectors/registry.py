"""Connectors register themselves here by name; hub.yaml refers to them by that name."""

from __future__ import annotations

from typing import TypeVar

from .base import Connector

_REGISTRY: dict[str, type[Connector]] = {}

C = TypeVar("C", bound=type[Connector])


def register(cls: C) -> C:
    if cls.name in _REGISTRY:
        raise ValueError(f"connector {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Connector] | None:
    _load_builtin()
    return _REGISTRY.get(name)


def names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def _load_builtin() -> None:
    from . import file, http, shopify  # noqa: F401  (importing registers them)
