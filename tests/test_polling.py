"""Polling sources (hub.polling): a real change feed over HTTP, the real broker and database.

The cursor is stored only once every change of a page is in Kafka; a page polled again gives
the same event ids; one hub at a time polls a connection."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from hub.broker import EmbeddedBroker
from hub.envelope import derived_id
from hub.polling import CursorStore
from hub.runtime import Hub

from .support.feed import FeedServer, feed_config
from .support.harness import HubFactory, topic_records, until

INGRESS = frozenset({"ingress"})


async def stored_cursor(hub: Hub) -> str | None:
    return await CursorStore(hub.db).cursor("feed")


def event_id(i: int) -> str:
    return derived_id("poll", "feed", f"r{i}", "1")


async def ops(hub: Hub, path: str) -> Any:
    async with httpx.AsyncClient(base_url=hub.base_url, timeout=30) as client:
        response = await client.get(f"/api{path}")
    assert response.status_code == 200, response.text
    return response.json()


async def until_cursor(hub: Hub, cursor: str) -> None:
    async def there() -> bool:
        return await stored_cursor(hub) == cursor

    await until(there)


async def ingest_ids(hub: Hub) -> list[str]:
    records = await topic_records(hub.bootstrap, hub.settings.ingest_topic)
    return [dict(r.headers)["ce_id"].decode() for r in records]


async def test_changes_are_stored_in_order_and_then_the_cursor_moves(hubs: HubFactory) -> None:
    async with FeedServer(page_size=2) as feed:
        feed.add(5)
        hub = await hubs.start(config=feed_config(feed.url), roles=INGRESS)

        await until_cursor(hub, "5")
        assert await ingest_ids(hub) == [event_id(i) for i in range(5)]
        # Three pages one after the other (more: true), then the interval.
        assert feed.polls[:3] == ["0", "2", "4"]

        records = await topic_records(hub.bootstrap, hub.settings.ingest_topic)
        first = dict(records[0].headers)
        assert records[0].key == b"feed/r0"
        assert first["ce_type"] == b"test_feed.record.changed"
        assert first["ce_hubconnection"] == b"feed"
        assert first["ce_hubsystem"] == b"test_feed"  # the origin system: the connector's name
        assert first["ce_hubevent"] == b"record.changed"
        assert records[0].value == b'{"n": 0}'

        polls = len(feed.polls)

        async def polled_again() -> bool:
            return len(feed.polls) >= polls + 2

        await until(polled_again)  # nothing new: nothing published
        assert await ingest_ids(hub) == [event_id(i) for i in range(5)]

        feed.add(1)

        await until_cursor(hub, "6")
        assert await ingest_ids(hub) == [event_id(i) for i in range(6)]


async def test_a_failing_source_is_polled_again_from_the_same_cursor(hubs: HubFactory) -> None:
    async with FeedServer(page_size=10) as feed:
        feed.add(3)
        feed.fail = 2
        hub = await hubs.start(config=feed_config(feed.url), roles=INGRESS)

        await until_cursor(hub, "3")
        assert feed.polls[:3] == ["0", "0", "0"]  # two 503s, then the page
        assert await ingest_ids(hub) == [event_id(i) for i in range(3)]

        [source] = (await ops(hub, "/sources"))["items"]
        assert source["name"] == "feed" and source["connector"] == "test_feed"
        assert source["cursor"] == "3" and source["cursor_moved_at"]
        assert source["polled_here"] is True
        assert source["polls"] >= 1 and source["last_error"] is None
        # /metrics (and the dashboard's overview) have its last poll and that it is not failing
        assert hub.metrics.value("hub_source_last_poll_timestamp_seconds", source="feed") > 0
        assert hub.metrics.value("hub_source_poll_failing", source="feed") == 0


async def test_the_cursor_stays_until_the_broker_has_the_changes(hubs: HubFactory) -> None:
    own = EmbeddedBroker()
    own.start()
    try:
        async with FeedServer(page_size=10) as feed:
            feed.add(2)
            hubs.bootstrap = own.bootstrap_servers
            hub = await hubs.start(
                config=feed_config(feed.url), roles=INGRESS, ingress_publish_timeout_s=1.0
            )

            await until_cursor(hub, "2")
            own.stop()  # the broker is gone: nothing polled now can be stored
            feed.add(2)

            async def tried_twice() -> bool:
                return feed.polls.count("2") >= 2

            await until(tried_twice)
            assert await stored_cursor(hub) == "2"  # not moved past what Kafka does not have
            [source] = (await ops(hub, "/sources"))["items"]
            assert source["cursor"] == "2"
            assert "acknowledge" in source["last_error"] or "broker" in source["last_error"]
            assert hub.metrics.value("hub_source_poll_failing", source="feed") == 1
    finally:
        own.stop()


async def test_a_page_stored_but_not_committed_is_polled_again_with_the_same_ids(
    hubs: HubFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between publishing a page and storing the cursor (here: the cursor write fails
    once) repeats the page; its events keep their ids, so downstream they are duplicates of
    the same events, not new ones."""
    real = CursorStore.advance
    failures = 0

    async def advance_fails_once(
        self: CursorStore, connection: str, owner: str, cursor: str
    ) -> bool:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise OSError("disk I/O error")
        return await real(self, connection, owner, cursor)

    monkeypatch.setattr(CursorStore, "advance", advance_fails_once)
    async with FeedServer(page_size=10) as feed:
        feed.add(3)
        hub = await hubs.start(config=feed_config(feed.url), roles=INGRESS)

        await until_cursor(hub, "3")
        ids = await ingest_ids(hub)
        assert Counter(ids) == {event_id(i): 2 for i in range(3)}  # the page twice, same ids
        assert feed.polls[:2] == ["0", "0"]


async def test_one_hub_at_a_time_polls_a_connection(hubs: HubFactory) -> None:
    async with FeedServer(page_size=10) as feed:
        feed.add(4)
        first = await hubs.start(config=feed_config(feed.url), roles=INGRESS)
        second = await hubs.start(
            config=feed_config(feed.url), roles=INGRESS, settings=first.settings
        )

        await until_cursor(first, "4")
        polls = len(feed.polls)

        async def polled_more() -> bool:
            return len(feed.polls) >= polls + 4

        await until(polled_more)
        assert await ingest_ids(first) == [event_id(i) for i in range(4)]  # once each
        # Only the lease holder polled: every poll after the first page asked after "4".
        assert set(feed.polls[1:]) == {"4"}

        holder = first if first.pollers["feed"].polls else second
        other = second if holder is first else first
        assert other.pollers["feed"].polls == 0
        await holder.stop()  # its lease is released: the other takes over

        async def taken_over() -> bool:
            return other.pollers["feed"].polls > 0

        await until(taken_over)
