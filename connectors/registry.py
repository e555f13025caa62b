"""Connectors by name; hub.yaml refers to them by that name.

The built-in connectors register themselves when their module is imported. Any installed
package can add its own through an entry point in the ``hub.connectors`` group, named after the
connector and pointing at its class::

    [project.entry-points."hub.connectors"]
    acme-erp = "acme_hub.erp:AcmeErp"

A package that fails to load is reported by :func:`problems` (and by ``hub check`` where a
connection uses it); the other connectors keep working.
"""

from __future__ import annotations

import importlib.metadata
import logging
from typing import TypeVar

from .base import Connector

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "hub.connectors"

_REGISTRY: dict[str, type[Connector]] = {}
_PROBLEMS: dict[str, str] = {}
_loaded = False

C = TypeVar("C", bound=type[Connector])


def register(cls: C) -> C:
    known = _REGISTRY.get(cls.name)
    if known is not None and known is not cls:
        raise ValueError(
            f"connector {cls.name!r} registered twice: {_where(known)} and {_where(cls)}"
        )
    _REGISTRY[cls.name] = cls
    return cls


def get(name: str) -> type[Connector] | None:
    _load()
    return _REGISTRY.get(name)


def names() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def problems() -> dict[str, str]:
    """Entry points that could not be loaded: name -> why."""
    _load()
    return dict(_PROBLEMS)


def reload() -> None:
    """Look at the installed entry points again (after installing a connector package)."""
    global _loaded
    _loaded = False
    _PROBLEMS.clear()
    _load()


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from . import (  # noqa: F401  (importing registers them)
        bottlecrm,
        file,
        http,
        shopify,
        shopify_admin,
        tryton,
    )

    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry.load()
            if not (isinstance(cls, type) and issubclass(cls, Connector)):
                raise TypeError(f"{entry.value} is not a connectors.Connector subclass")
            if cls.name != entry.name:
                raise ValueError(f"{entry.value} is named {cls.name!r}, not {entry.name!r}")
            register(cls)
        except Exception as exc:  # a broken plugin must not take the others down
            _PROBLEMS[entry.name] = f"{entry.value}: {type(exc).__name__}: {exc}"
            log.error("connector %r could not be loaded (%s)", entry.name, _PROBLEMS[entry.name])


def _where(cls: type[Connector]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
