"""Golden ids through the MDM service, for the mapping engine: what the hub runs.

:class:`MdmResolver` is a :class:`~hub.mdm.CrosswalkResolver` (the same read-ahead: a worker
maps a consumed batch collecting the answers it does not have cached, loads them at once, and
maps again only the events whose answers differ) whose load goes through
:meth:`hub.mdm_service.MdmService.resolve_many` for the entities that have a match
configuration (``mdm:`` in hub.yaml, or ``HUB_MDM_CONFIG``): one transaction per consumed batch,
in which an unknown external id is *matched* against the golden records and linked to one, or
given its own.

**What a record is matched on.** A mapping does not pass attributes to ``golden_id()``: the
canonical object whose ``id`` is the ``golden_id()`` call supplies them. For a customer mapping
that is the canonical customer it produces (``email``, ``first_name``, ``last_name``,
``company``, ``phone``, and the first address's ``line1`` + ``line2`` as ``street``, ``city``,
``postal_code`` as ``postcode``, ``country``); for an order, the ``customer`` object
(``CustomerRef``: e-mail, names, phone) it embeds. So every source is compared on the same
canonical fields, whatever its own payload looks like (:func:`match_attributes`). A reference
with no such object around it (an id alone) is looked up, never created: it answers the golden
id the crosswalk links, or the deterministic one while nothing does.

**Steady state.** Answers are cached per process (LRU, ``HUB_CROSSWALK_CACHE_SIZE``) with a
fingerprint of the attributes last stored for each record: a record seen again with the same
attributes costs no database round trip; changed attributes are sent with the next batch
(the golden record's survivorship runs again). Canonical customers carry every external ref of
their golden record (:meth:`MdmResolver.complete`), cached with the golden id. Merges and
unmerges anywhere drop the cache, and a record linked to a golden record by another process
drops that golden record's refs (both within ``HUB_MDM_POLL_S``). If the MDM store cannot be
read or written, :class:`~hub.errors.MasterDataUnavailable`: the events park and are mapped
again later.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from .errors import MasterDataUnavailable
from .mdm import CrosswalkResolver, Miss, Ref, _derive

if TYPE_CHECKING:
    from .crosswalk import Crosswalk, Link
    from .mdm_service import Item, MdmService

T = TypeVar("T")

_FIELDS = ("email", "first_name", "last_name", "company", "phone", "date_of_birth", "tax_id")
_ADDRESS = (("city", "city"), ("postal_code", "postcode"), ("country", "country"))
_DEPTH = 4  # how deep in a mapping's output objects carrying a golden id are looked for


def match_attributes(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes a canonical customer (or an order's ``customer``) is matched on, named
    as in mdm.yaml's ``fields:``; empty or missing values left out."""
    out = {name: obj[name] for name in _FIELDS if obj.get(name) not in (None, "")}
    addresses = obj.get("addresses")
    if isinstance(addresses, list) and addresses and isinstance(addresses[0], Mapping):
        first = addresses[0]
        street = " ".join(str(first[k]) for k in ("line1", "line2") if first.get(k))
        if street:
            out["street"] = street
        for src, dst in _ADDRESS:
            if first.get(src) not in (None, ""):
                out[dst] = first[src]
        if "phone" not in out and first.get("phone"):
            out["phone"] = first["phone"]
    return out


def _fingerprint(attributes: Mapping[str, Any]) -> int:
    return hash(tuple(sorted((k, str(v)) for k, v in attributes.items())))


class MdmResolver(CrosswalkResolver):
    """See the module's docstring."""

    def __init__(
        self,
        crosswalk: Crosswalk,
        service: MdmService,
        *,
        cache_size: int = 100_000,
        negative_ttl_s: float = 5.0,
    ) -> None:
        super().__init__(crosswalk, cache_size=cache_size, negative_ttl_s=negative_ttl_s)
        self.service = service
        self._asked: dict[str, Ref] = {}  # this mapping's answers -> the refs asked (collecting)
        self._offered: dict[Ref, tuple[dict[str, Any], int]] = {}  # attributes for the load
        self._stored: OrderedDict[Ref, int] = OrderedDict()  # fingerprint of what is stored
        self._refs: OrderedDict[tuple[str, str], tuple[tuple[str, str], ...]] = OrderedDict()

    def golden_id(self, entity: str, system: str, external_id: str) -> str:
        answer = super().golden_id(entity, system, external_id)
        if self.misses is not None and self.service.matches(entity):
            self._asked[answer] = (entity, system, external_id)
        return answer

    def collect(self, work: Callable[[], T], misses: set[Miss]) -> T:
        self._asked.clear()
        try:
            return super().collect(work, misses)
        finally:
            self._asked.clear()

    def complete(self, entity: str, result: Any) -> Any:
        """A mapping's output, once mapped: while collecting, the objects carrying a golden id
        it asked for offer their attributes for matching (a miss when they are not stored as
        they are); a canonical customer gets every external ref of its golden record."""
        if self.misses is not None and self._asked:
            self._offer(result, _DEPTH)
        if not isinstance(result, dict) or not self.service.matches(entity):
            self._asked.clear()
            return result
        golden = result.get("id")
        if not isinstance(golden, str):
            self._asked.clear()
            return result
        refs = self._refs.get((entity, golden))
        if refs is None:
            ref = self._asked.get(golden)
            if ref is not None and self.misses is not None and ref in self._golden:
                self.misses.add((False, *ref))  # evicted: read again with the answer
            self._asked.clear()
            return result
        self._asked.clear()
        self._refs.move_to_end((entity, golden))
        own = result.get("external_refs") or []
        have = {(r.get("system"), r.get("id")) for r in own if isinstance(r, Mapping)}
        more = [{"system": s, "id": x} for s, x in refs if (s, x) not in have]
        return {**result, "external_refs": [*own, *more]} if more else result

    def _offer(self, node: Any, depth: int) -> None:
        if isinstance(node, Mapping):
            ident = node.get("id")
            ref = self._asked.get(ident) if isinstance(ident, str) else None
            if ref is not None:
                attributes = match_attributes(node)
                if attributes:
                    fingerprint = _fingerprint(attributes)
                    if self._stored.get(ref) != fingerprint and self.misses is not None:
                        self._offered[ref] = (attributes, fingerprint)
                        self.misses.add((False, *ref))
            children: Iterable[Any] = node.values()
        elif isinstance(node, list):
            children = node
        else:
            return
        if depth > 0:
            for child in children:
                if isinstance(child, (Mapping, list)):
                    self._offer(child, depth - 1)

    async def load(self, misses: Iterable[Miss]) -> set[Miss]:
        wanted = set(misses)
        matched: dict[str, tuple[list[Item], list[tuple[str, str]]]] = {}
        fingerprints: dict[Ref, int] = {}
        rest: list[Miss] = []
        # records with attributes in the order they were mapped: the first of two duplicates
        # in one batch gets the golden record, as it would in two batches
        for ref in [r for r in self._offered if (False, *r) in wanted]:
            entity, system, value = ref
            attributes, fingerprints[ref] = self._offered.pop(ref)
            matched.setdefault(entity, ([], []))[0].append((system, value, attributes))
        for miss in wanted:
            reverse, entity, system, value = miss
            if reverse or not self.service.matches(entity):
                rest.append(miss)
            elif (entity, system, value) not in fingerprints:
                matched.setdefault(entity, ([], []))[1].append((system, value))
        if len(self._offered) > self.cache_size:  # offered by events that were never loaded
            self._offered.clear()
        changed = await super().load(rest) if rest else set()
        for entity, (items, lookups) in matched.items():
            try:
                batch = await self.service.resolve_many(entity, items, lookups, with_refs=True)
            except (OSError, SQLAlchemyError) as exc:
                raise MasterDataUnavailable(
                    f"master data cannot be read now: {type(exc).__name__}"
                ) from None
            for golden, refs in batch.refs.items():
                self._remember_refs((entity, golden), tuple(refs))
            for (system, value), resolution in batch.resolutions.items():
                ref = (entity, system, value)
                self._remember(self._golden, ref, resolution.golden_id)
                self._no_golden.pop(ref, None)
                self._stored[ref] = fingerprints[ref]
                self._stored.move_to_end(ref)
                changed.add((False, *ref))  # its golden id, or its refs, may be new
            until = time.monotonic() + self.negative_ttl_s
            for system, value in lookups:
                ref = (entity, system, value)
                found = batch.found.get((system, value))
                if found is None:
                    self._absent(self._no_golden, ref, (until, _derive(*ref)))
                    continue
                self._remember(self._golden, ref, found)
                changed.add((False, *ref))
        while len(self._stored) > self.cache_size:
            self._stored.popitem(last=False)
        return changed

    def _remember_refs(self, key: tuple[str, str], refs: tuple[tuple[str, str], ...]) -> None:
        self._refs[key] = refs
        self._refs.move_to_end(key)
        while len(self._refs) > self.cache_size:
            self._refs.popitem(last=False)

    def learn(self, link: Link) -> None:
        super().learn(link)
        key = (link.entity, link.golden_id)
        refs = self._refs.get(key)
        if refs is not None and (link.system, link.external_id) not in refs:
            self._refs[key] = (*refs, (link.system, link.external_id))

    def forget(self) -> None:
        super().forget()
        self._refs.clear()

    def forget_refs(self, golden: Iterable[tuple[str, str]]) -> None:
        """Drop the cached external refs of these ``(entity, golden id)``: records were linked
        to them elsewhere. The next event of such a customer reads them again."""
        for key in golden:
            self._refs.pop(key, None)


__all__ = ["MdmResolver", "match_attributes"]
