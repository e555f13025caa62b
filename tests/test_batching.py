"""Group commit (hub.batching): callers that arrive while a write runs share the next one."""

from __future__ import annotations

import asyncio

import pytest

from hub.batching import GroupCommit


class Writes:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next = False

    async def __call__(self, items: list[int]) -> None:
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        self.batches.append(items)


async def test_a_lone_item_is_written_at_once_in_its_own_write() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    await group.add(1)
    assert writes.batches == [[1]]
    await group.add(2)
    assert writes.batches == [[1], [2]]


async def test_items_arriving_during_a_write_share_the_next_one() -> None:
    writes = Writes()
    writes.gate.clear()  # hold the first write open
    group = GroupCommit(writes)
    first = asyncio.create_task(group.add(0))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the first round has started and waits at the gate
    rest = [asyncio.create_task(group.add(i)) for i in range(1, 101)]
    await asyncio.sleep(0)
    assert not first.done()
    writes.gate.set()
    await asyncio.gather(first, *rest)
    assert writes.batches == [[0], list(range(1, 101))]


async def test_rounds_are_cut_at_max_batch_and_nothing_is_lost() -> None:
    writes = Writes()
    group = GroupCommit(writes, max_batch=7)
    await asyncio.gather(*(group.add(i) for i in range(50)))
    assert all(len(b) <= 7 for b in writes.batches)
    assert sorted(i for b in writes.batches for i in b) == list(range(50))


async def test_a_failed_write_fails_its_callers_and_the_next_round_works() -> None:
    writes = Writes()
    writes.fail_next = True
    group = GroupCommit(writes)
    results = await asyncio.gather(*(group.add(i) for i in range(5)), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    assert writes.batches == []
    await group.add(5)
    assert writes.batches == [[5]]


async def test_a_caller_that_is_cancelled_does_not_stop_the_others() -> None:
    writes = Writes()
    writes.gate.clear()
    group = GroupCommit(writes)
    a = asyncio.create_task(group.add(1))
    b = asyncio.create_task(group.add(2))
    await asyncio.sleep(0)
    a.cancel()
    writes.gate.set()
    await b
    with pytest.raises(asyncio.CancelledError):
        await a
    assert writes.batches == [[1, 2]]  # written all the same: the caller only stopped waiting
