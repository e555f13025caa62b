"""Master data: the interface through which mappings ask for golden ids.

The MDM service (its own issue) plugs in here with matching and merging across systems.
:class:`DeterministicResolver` gives every external object a stable golden id derived from
``(entity, system, id)``: the same object always gets the same id, but the same customer in two
systems gets two ids until something links them. :class:`CrosswalkResolver`, what the hub runs,
answers from the crosswalk first (:mod:`hub.crosswalk`: the ids destinations reported, later
master data's links) and falls back to the deterministic id, so existing golden ids stay valid.

``golden_id()`` and ``external_id()`` are synchronous calls inside a mapping's generated code,
so the crosswalk is read *ahead*, never during a mapping: a worker maps a batch with the resolver
*collecting* (:meth:`CrosswalkResolver.collect`): an answer not cached yet is noted as a miss
and the deterministic id (or no external id) stands in. The misses of the whole batch are then
loaded in one query (:meth:`CrosswalkResolver.load`), and only the events for which the
crosswalk answered something else are mapped again (:func:`resolve_ahead` does this for one
mapping call). At steady state an event costs no database round trip; a batch of new ids costs
one. Answers are kept in an LRU cache (``HUB_CROSSWALK_CACHE_SIZE`` entries); "not linked" is
kept for ``HUB_CROSSWALK_NEGATIVE_TTL_S`` only, as another process may link the id meanwhile.
A miss outside collecting raises :class:`~hub.errors.MasterDataUnavailable` (the event is parked
and mapped again later), as does a crosswalk that cannot be read.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from .envelope import uuid5_hex
from .errors import MasterDataUnavailable

if TYPE_CHECKING:
    from .crosswalk import Crosswalk, Link

T = TypeVar("T")
V = TypeVar("V")

_NAMESPACE = uuid.UUID("0b7f5a8e-3d2c-5e61-8f4a-9c1d2e3f4a5b")
PREFIX = {"customer": "cus", "product": "prd", "order": "ord", "inventory": "inv"}

Ref = tuple[str, str, str]
Miss = tuple[bool, str, str, str]
"""An answer a mapping asked for that was not cached: ``(reverse, entity, system, id)`` —
``reverse`` False for ``golden_id(entity, system, id)``, True for
``external_id(entity, system, golden id)``."""


class IdResolver(Protocol):
    def golden_id(self, entity: str, system: str, external_id: str) -> str:
        """The golden id of ``entity`` known in ``system`` as ``external_id``.

        Raise :class:`hub.errors.MasterDataUnavailable` when it cannot be answered now: the
        event is parked and mapped again later (and later events of its key wait)."""
        ...

    def external_id(self, entity: str, system: str, golden_id: str) -> str | None:
        """``system``'s id of the object ``golden_id`` (None: none known), e.g. to address an
        update to it. Raises like :meth:`golden_id`."""
        ...


class DeterministicResolver:
    def golden_id(self, entity: str, system: str, external_id: str) -> str:
        return _derive(entity, system, external_id)

    def external_id(self, entity: str, system: str, golden_id: str) -> str | None:
        return None


@lru_cache(maxsize=65_536)  # products and customers recur across orders
def _derive(entity: str, system: str, external_id: str) -> str:
    digest = uuid5_hex(_NAMESPACE, f"{entity}\x1f{system}\x1f{external_id}")[:24]
    return f"{PREFIX.get(entity, entity[:3])}_{digest}"


class CrosswalkResolver:
    """Golden ids through the crosswalk, then the deterministic id; external ids through the
    crosswalk's reverse lookup. See the module's docstring for how answers are loaded."""

    def __init__(
        self, crosswalk: Crosswalk, *, cache_size: int = 100_000, negative_ttl_s: float = 5.0
    ) -> None:
        self.crosswalk = crosswalk
        self.cache_size = cache_size
        self.negative_ttl_s = negative_ttl_s
        self.misses: set[Miss] | None = None  # collecting while set (see collect)
        self._golden: OrderedDict[Ref, str] = OrderedDict()
        self._external: OrderedDict[Ref, str] = OrderedDict()
        # not linked: (until this time.monotonic(), the answer meanwhile)
        self._no_golden: dict[Ref, tuple[float, str]] = {}
        self._no_external: dict[Ref, tuple[float, None]] = {}

    def golden_id(self, entity: str, system: str, external_id: str) -> str:
        key = (entity, system, external_id)
        golden = self._golden.get(key)
        if golden is not None:
            self._golden.move_to_end(key)
            return golden
        absent = self._no_golden.get(key)
        if absent is not None and absent[0] > time.monotonic():
            return absent[1]
        self._missed((False, entity, system, external_id))
        return _derive(entity, system, external_id)

    def linked(self, entity: str, system: str, external_id: str) -> str | None:
        """The golden id the crosswalk is known (cached) to link this id to; None when not
        known to be linked. Never a miss: for deciding whether a link must be written."""
        return self._golden.get((entity, system, external_id))

    def external_id(self, entity: str, system: str, golden_id: str) -> str | None:
        key = (entity, system, golden_id)
        external = self._external.get(key)
        if external is not None:
            self._external.move_to_end(key)
            return external
        absent = self._no_external.get(key)
        if absent is None or absent[0] < time.monotonic():
            self._missed((True, entity, system, golden_id))
        return None

    def _missed(self, miss: Miss) -> None:
        if self.misses is None:
            _, entity, system, value = miss
            raise MasterDataUnavailable(
                f"the crosswalk entry of {entity} {value!r} in {system} is not loaded yet"
            )
        self.misses.add(miss)

    def complete(self, entity: str, result: T) -> T:
        """A mapping's output for ``entity`` as the resolver completes it (the MDM resolver,
        :mod:`hub.mdm_resolver`, takes the attributes to match on from it and adds the golden
        record's external refs); here unchanged."""
        return result

    def collect(self, work: Callable[[], T], misses: set[Miss]) -> T:
        """``work()`` with answers not cached noted in ``misses`` (not raised); what they stand
        in for is what the crosswalk answers when nothing is linked."""
        previous, self.misses = self.misses, misses
        try:
            return work()
        finally:
            self.misses = previous

    async def load(self, misses: Iterable[Miss]) -> set[Miss]:
        """Read these answers from the crosswalk into the cache (one query per kind); the
        misses whose answer differs from what stood in for it. Raises
        :class:`MasterDataUnavailable` when the crosswalk cannot be read."""
        wanted = set(misses)
        forward = [(e, s, x) for reverse, e, s, x in wanted if not reverse]
        backward = [(e, s, g) for reverse, e, s, g in wanted if reverse]
        try:
            found = await self.crosswalk.lookup_many(forward) if forward else {}
            found_back = await self.crosswalk.reverse_many(backward) if backward else {}
        except (OSError, SQLAlchemyError) as exc:
            raise MasterDataUnavailable(
                f"the crosswalk cannot be read now: {type(exc).__name__}"
            ) from None
        until = time.monotonic() + self.negative_ttl_s
        changed: set[Miss] = set()
        for ref in forward:
            golden = found.get(ref)
            if golden is None:
                self._absent(self._no_golden, ref, (until, _derive(*ref)))
                continue
            self._remember(self._golden, ref, golden)
            if golden != _derive(*ref):
                changed.add((False, *ref))
        for ref in backward:
            external = found_back.get(ref)
            if external is None:
                self._absent(self._no_external, ref, (until, None))
                continue
            self._remember(self._external, ref, external)
            changed.add((True, *ref))
        return changed

    def learn(self, link: Link) -> None:
        """A link this process just made: its answers are cached at once (other processes
        learn it when their negative entry expires)."""
        forward = (link.entity, link.system, link.external_id)
        backward = (link.entity, link.system, link.golden_id)
        self._remember(self._golden, forward, link.golden_id)
        self._no_golden.pop(forward, None)
        if backward not in self._external:  # the first id linked answers a reverse lookup
            self._remember(self._external, backward, link.external_id)
        self._no_external.pop(backward, None)

    def forget(self) -> None:
        """Drop every cached answer (e.g. after master data merged or unmerged records)."""
        self._golden.clear()
        self._external.clear()
        self._no_golden.clear()
        self._no_external.clear()

    def _remember(self, cache: OrderedDict[Ref, str], ref: Ref, value: str) -> None:
        cache[ref] = value
        cache.move_to_end(ref)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    def _absent(self, cache: dict[Ref, tuple[float, V]], ref: Ref, entry: tuple[float, V]) -> None:
        cache.pop(ref, None)  # re-inserted last: the oldest entries come first
        cache[ref] = entry
        if len(cache) > self.cache_size:
            now = time.monotonic()
            for key in [k for k, (until, _) in cache.items() if until < now]:
                del cache[key]
            for key in list(cache)[: max(0, len(cache) - self.cache_size)]:
                del cache[key]


async def resolve_ahead(resolver: object, work: Callable[[], T]) -> T:
    """``work()`` (a mapping's ``apply``) with the crosswalk answers it asks for loaded first:
    mapped once collecting; if something was not cached, loaded, and mapped again only if the
    crosswalk answered differently from what stood in. For a resolver that needs no loading,
    just ``work()``."""
    if not isinstance(resolver, CrosswalkResolver):
        return work()
    misses: set[Miss] = set()
    try:
        result = resolver.collect(work, misses)
    except Exception:
        if not misses:
            raise
        try:
            await resolver.load(misses)
        except MasterDataUnavailable:
            pass
        return work()  # a miss now (not loaded, or evicted meanwhile) raises
    if not misses:
        return result
    try:
        changed = await resolver.load(misses)
    except MasterDataUnavailable:
        return work()  # raises where the mapping asks, as any unavailable answer does
    return work() if changed else result


__all__ = [
    "CrosswalkResolver",
    "DeterministicResolver",
    "IdResolver",
    "Miss",
    "resolve_ahead",
]
