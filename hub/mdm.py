"""Master data: the interface through which mappings ask for golden ids.

The MDM service (its own issue) plugs in here with matching and merging across systems. Until
then :class:`DeterministicResolver` gives every external object a stable golden id derived from
``(entity, system, id)``: the same object always gets the same id, but the same customer in two
systems gets two ids until MDM links them.
"""

from __future__ import annotations

import uuid
from functools import lru_cache
from typing import Protocol

from .envelope import uuid5_hex

_NAMESPACE = uuid.UUID("0b7f5a8e-3d2c-5e61-8f4a-9c1d2e3f4a5b")
PREFIX = {"customer": "cus", "product": "prd", "order": "ord", "inventory": "inv"}


class IdResolver(Protocol):
    def golden_id(self, entity: str, system: str, external_id: str) -> str:
        """The golden id of ``entity`` known in ``system`` as ``external_id``.

        Raise :class:`hub.errors.MasterDataUnavailable` when it cannot be answered now: the
        event is parked and mapped again later (and later events of its key wait)."""
        ...


class DeterministicResolver:
    def golden_id(self, entity: str, system: str, external_id: str) -> str:
        return _derive(entity, system, external_id)


@lru_cache(maxsize=65_536)  # products and customers recur across orders
def _derive(entity: str, system: str, external_id: str) -> str:
    digest = uuid5_hex(_NAMESPACE, f"{entity}\x1f{system}\x1f{external_id}")[:24]
    return f"{PREFIX.get(entity, entity[:3])}_{digest}"
