"""hub.sync: what the hub knows each system holds, and the echoes it drops (SQLite and
PostgreSQL). End to end with real systems: tests/bottlecrm/test_sync.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.db import Database
from hub.sync import SyncState, fingerprint
from tests.support.databases import database_url


@pytest.fixture(params=["sqlite", "postgresql"])
async def state(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SyncState]:
    async with database_url(request.param, tmp_path) as url:
        db = Database(url)
        await db.start()
        try:
            yield SyncState(db)
        finally:
            await db.close()


def test_a_fingerprint_ignores_empty_fields_and_key_order() -> None:
    a = {"contact": {"email": "a@x.org", "phone": None, "city": "", "tags": []}}
    b = {"contact": {"tags": None, "email": "a@x.org"}}
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint({"contact": {"email": "b@x.org"}})
    assert fingerprint({"l": [1, 2]}) != fingerprint({"l": [2, 1]})


async def test_what_the_hub_wrote_comes_back_as_an_echo_once_and_a_real_change_passes(
    state: SyncState,
) -> None:
    wrote, edited = fingerprint({"n": "Ada"}), fingerprint({"n": "Ada L."})
    await state.wrote("customer", "crm", "cus_1", "to-crm", wrote, "evt-1")
    echo = await state.reported("customer", "crm", "cus_1", {"to-crm": wrote}, "evt-2")
    assert echo is not None and (echo.golden_id, echo.source, echo.event_id) == (
        "cus_1",
        "wrote",
        "evt-1",
    )
    # the system reports it again (a save that changed nothing): still no change
    assert await state.reported("customer", "crm", "cus_1", {"to-crm": wrote}, "evt-3")
    # a person edits it: a change, and from now on what the system holds
    assert await state.reported("customer", "crm", "cus_1", {"to-crm": edited}, "evt-4") is None
    # a second delivery worker asking for the same event: not an echo of itself
    assert await state.reported("customer", "crm", "cus_1", {"to-crm": edited}, "evt-4") is None
    echo = await state.reported("customer", "crm", "cus_1", {"to-crm": edited}, "evt-5")
    assert echo is not None and echo.source == "reported"
    # edited back to what the hub once wrote: a change (the system held something else since)
    assert await state.reported("customer", "crm", "cus_1", {"to-crm": wrote}, "evt-6") is None


async def test_every_route_back_must_agree_and_objects_and_systems_are_apart(
    state: SyncState,
) -> None:
    a, b = fingerprint({"x": 1}), fingerprint({"x": 2})
    await state.wrote("customer", "crm", "cus_1", "contacts", a, "evt-1")
    await state.wrote("customer", "crm", "cus_1", "accounts", a, "evt-1")
    both = {"contacts": a, "accounts": b}
    assert await state.reported("customer", "crm", "cus_1", both, "evt-2") is None
    assert await state.reported("customer", "erp", "cus_1", {"contacts": a}, "evt-3") is None
    assert await state.reported("order", "crm", "cus_1", {"contacts": a}, "evt-4") is None
    assert await state.reported("customer", "crm", "cus_1", {}, "evt-5") is None


async def test_a_new_object_echoing_a_create_names_the_golden_id_it_was_written_for(
    state: SyncState,
) -> None:
    """BottleCRM's webhook of a contact the hub creates arrives before the crosswalk links
    it: mapped, it has a golden id of its own, but its content is what the hub just wrote."""
    written = fingerprint({"contact": {"email": "k@nasa.gov"}})
    await state.wrote("customer", "crm", "cus_hub", "to-crm", written, "evt-1")
    echo = await state.reported("customer", "crm", "cus_new", {"to-crm": written}, "evt-2")
    assert echo is not None and echo.golden_id == "cus_hub"
    other = fingerprint({"contact": {"email": "someone@else.org"}})
    assert await state.reported("customer", "crm", "cus_x", {"to-crm": other}, "evt-3") is None
    # a reported state is never taken for a create of the hub's
    assert await state.reported("customer", "crm", "cus_y", {"to-crm": other}, "evt-4") is None


async def test_an_old_create_is_not_compared_by_content(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    await db.start()
    try:
        state = SyncState(db, echo_window_s=0.0)
        written = fingerprint({"contact": {"email": "k@nasa.gov"}})
        await state.wrote("customer", "crm", "cus_hub", "to-crm", written, "evt-1")
        assert await state.reported("customer", "crm", "cus_n", {"to-crm": written}, "e2") is None
    finally:
        await db.close()


async def test_a_poll_that_read_between_two_writes_is_the_echo_of_the_first(
    state: SyncState,
) -> None:
    """Tryton polled the party after the hub created it and before the hub wrote the next
    change; the poll's event is judged after that write: the system is catching up."""
    created, changed = fingerprint({"phone": "0123"}), fingerprint({"phone": "0188"})
    await state.wrote("customer", "erp", "cus_1", "to-erp", created, "evt-1")
    await state.wrote("customer", "erp", "cus_1", "to-erp", changed, "evt-2")
    late = await state.reported("customer", "erp", "cus_1", {"to-erp": created}, "evt-3")
    assert late is not None
    # every delivery worker gets the same answer for that event
    assert await state.reported("customer", "erp", "cus_1", {"to-erp": created}, "evt-3")
    # the echo of the second write
    assert await state.reported("customer", "erp", "cus_1", {"to-erp": changed}, "evt-4")
    # caught up: the first write's content is now a person's edit
    assert await state.reported("customer", "erp", "cus_1", {"to-erp": created}, "evt-5") is None


async def test_last_writer_wins_by_the_sources_own_timestamps(state: SyncState) -> None:
    """Edited in the CRM at 10:00:05 and in the ERP at 10:00:03: whichever the hub hears
    first, the CRM's change is the one delivered; the ERP's, heard later, is stale."""
    crm_at = datetime(2026, 12, 6, 10, 0, 5, tzinfo=UTC)
    erp_at = datetime(2026, 12, 6, 10, 0, 3, tzinfo=UTC)
    assert await state.last_writer("customer", "cus_1", "crm", crm_at, "evt-crm") is None
    stale = await state.last_writer("customer", "cus_1", "erp", erp_at, "evt-erp")
    assert stale is not None
    assert (stale.newer_system, stale.newer_at, stale.newer_event_id) == (
        "crm",
        crm_at,
        "evt-crm",
    )
    # every delivery worker asking about the CRM's event gets the same answer
    assert await state.last_writer("customer", "cus_1", "crm", crm_at, "evt-crm") is None
    # a later change from the ERP wins again; the same system's own order is not judged
    later = crm_at + timedelta(seconds=1)
    assert await state.last_writer("customer", "cus_1", "erp", later, "evt-erp-2") is None
    assert await state.last_writer("customer", "cus_1", "erp", erp_at, "evt-erp-3") is None
    assert await state.last_writer("customer", "cus_1", "crm", crm_at, "evt-crm-2") is not None
    # other objects are apart
    assert await state.last_writer("customer", "cus_2", "crm", erp_at, "evt-x") is None


async def test_the_echo_of_a_write_is_told_apart_from_later_saves_that_change_nothing(
    state: SyncState,
) -> None:
    """The first report equal to the hub's write is its echo (a change the destinations that
    had it have); later ones equal to it are the system's own saves of something else."""
    doc = fingerprint({"n": "Ada"})
    await state.wrote("customer", "crm", "cus_1", "to-crm", doc, "evt-1")
    held = await state.held("customer", "crm", "cus_1", "to-crm")
    assert held is not None and (held.source, held.event_id) == ("wrote", "evt-1")
    echo = await state.reported("customer", "crm", "cus_1", {"to-crm": doc}, "evt-2")
    assert echo is not None and (echo.source, echo.event_id, echo.catching_up) == (
        "wrote",
        "evt-1",
        False,
    )
    # another delivery worker asking about the same event: the same answer
    again = await state.reported("customer", "crm", "cus_1", {"to-crm": doc}, "evt-2")
    assert again == echo
    saved = await state.reported("customer", "crm", "cus_1", {"to-crm": doc}, "evt-3")
    assert saved is not None and saved.source == "reported"
    assert await state.reported("customer", "crm", "cus_1", {"to-crm": doc}, "evt-3") == saved


async def test_a_report_that_catches_up_says_so(state: SyncState) -> None:
    first, second = fingerprint({"phone": "1"}), fingerprint({"phone": "2"})
    await state.wrote("customer", "erp", "cus_1", "to-erp", first, "evt-1")
    await state.wrote("customer", "erp", "cus_1", "to-erp", second, "evt-2")
    late = await state.reported("customer", "erp", "cus_1", {"to-erp": first}, "evt-3")
    assert late is not None and late.catching_up
    assert await state.reported("customer", "erp", "cus_1", {"to-erp": first}, "evt-3") == late
    echo = await state.reported("customer", "erp", "cus_1", {"to-erp": second}, "evt-4")
    assert echo is not None and not echo.catching_up and echo.source == "wrote"


async def test_what_a_system_reported_before_is_kept_per_route_to_another(
    state: SyncState,
) -> None:
    a, b = fingerprint({"x": 1}), fingerprint({"x": 2})
    assert await state.seen("customer", "crm", "cus_1", "to-erp", a, "evt-1") is None
    assert await state.seen("customer", "crm", "cus_1", "to-erp", a, "evt-2") == a
    assert await state.seen("customer", "crm", "cus_1", "to-erp", b, "evt-3") == a
    # the same event asked again (a retry): the same answer
    assert await state.seen("customer", "crm", "cus_1", "to-erp", b, "evt-3") == a
    assert await state.seen("customer", "crm", "cus_1", "to-shop", b, "evt-3") is None
    assert await state.seen("customer", "erp", "cus_1", "to-erp", b, "evt-3") is None


async def test_a_refused_write_is_forgotten(state: SyncState) -> None:
    doc = fingerprint({"n": "Ada"})
    await state.wrote("customer", "crm", "cus_1", "to-crm", doc, "evt-1")
    await state.forget("customer", "crm", "cus_1", "to-crm", "evt-other")
    assert await state.held("customer", "crm", "cus_1", "to-crm") is not None
    await state.forget("customer", "crm", "cus_1", "to-crm", "evt-1")
    assert await state.held("customer", "crm", "cus_1", "to-crm") is None
