"""Systems follow a steward's merge or unmerge: each golden record it leaves, as a canonical event.

A merge or unmerge (:mod:`hub.mdm_service`) changes which records are one customer, and so what
each linked system should show. Besides ``hub.customer.merged`` / ``unmerged`` (the change
itself, for consumers that keep per-id state), it publishes one **canonical customer** per
active golden record it leaves: the survivor after a merge; after an unmerge both the survivor
and the restored record. Each is an ordinary ``hub.customer`` event, keyed by its golden id,
whose data is the golden record as a canonical customer:

- ``id``: the golden id; ``external_refs``: every crosswalk row linked to it after the change,
  in the order they were linked;
- the survivorship values (the golden record's fields, docs/mdm.md "Survivorship rules"):
  ``first_name``, ``last_name``, ``company`` as the surviving record holds them; ``email`` and
  ``phone`` in the match configuration's normalised form where the value normalises (lower-case
  e-mail, E.164 phone: the coding standard), else as held; ``street``, ``city``, ``postcode``,
  ``country`` as the first address.

Its origin is the MDM itself (``ce_hubconnection`` and ``ce_hubsystem`` ``mdm``:
:data:`FOLLOW_ORIGIN`), so routes pick these events out with ``when: "meta.system == 'mdm'"``
and send each linked system its record (``bottlecrm/customer_to_contact``,
``shopify/customer_to_customer``, which find the record by its id among the refs). The document
is computed inside the merge's transaction and kept in its history row (``detail.golden``), so
an event published again after a crash is the same event (ids derived from the history row).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from .envelope import ORIGIN_CONNECTION, ORIGIN_SYSTEM, CloudEvent, derived_id
from .matching import Matcher

FOLLOW_ORIGIN = "mdm"
"""The connection and system of the golden records a merge or unmerge publishes."""

_AS_HELD = ("first_name", "last_name", "company")
_NORMALISED = ("email", "phone")
_ADDRESS = (("street", "line1"), ("city", "city"), ("postcode", "postal_code"))


def golden_customer(
    golden_id: str,
    fields: Mapping[str, Any],
    refs: Sequence[tuple[str, str]],
    matcher: Matcher | None,
) -> dict[str, Any] | None:
    """The canonical customer of golden record ``golden_id``: ``fields`` as stored (name ->
    ``{value, system, ...}``), ``refs`` its crosswalk rows ``(system, external id)``. None when
    no record is linked to it (nothing to send it to)."""
    if not refs:
        return None
    values = {
        name: held["value"]
        for name, held in fields.items()
        if isinstance(held, Mapping) and held.get("value") not in (None, "")
    }
    normalised: Mapping[str, str] = {}
    if matcher is not None:
        normalised, _ = matcher.normalise(values)
    out: dict[str, Any] = {
        "id": golden_id,
        "external_refs": [{"system": system, "id": external_id} for system, external_id in refs],
    }
    for name in _AS_HELD:
        if name in values:
            out[name] = str(values[name])
    for name in _NORMALISED:
        if name in values:
            out[name] = normalised.get(name) or str(values[name]).strip()
    address = {to: str(values[name]) for name, to in _ADDRESS if name in values}
    country = normalised.get("country")
    if country is not None and len(country) == 2:
        address["country"] = country
    if address:
        out["addresses"] = [address]
    return out


def follow_events(
    entity: str, history_id: int, detail: Mapping[str, Any], correlationid: str
) -> list[CloudEvent]:
    """The canonical events of the golden records a merge or unmerge left (``detail.golden``,
    golden id -> document, as :func:`golden_customer` made them in its transaction)."""
    events = []
    for golden_id, document in (detail.get("golden") or {}).items():
        event_id = derived_id("mdm", str(history_id), "golden", golden_id)
        events.append(
            CloudEvent(
                id=event_id,
                source="hub/mdm",
                type=f"hub.{entity}",
                data=orjson.dumps(document),
                subject=golden_id,
                key=golden_id,
                correlationid=correlationid,
                extensions={ORIGIN_CONNECTION: FOLLOW_ORIGIN, ORIGIN_SYSTEM: FOLLOW_ORIGIN},
            )
        )
    return events


__all__ = ["FOLLOW_ORIGIN", "follow_events", "golden_customer"]
