"""Group commit: concurrent callers that each need one small write share one transaction.

``await group.add(item)`` returns once ``item`` is written. The first caller starts a write;
callers that arrive while it runs wait for the next one, which takes all of them at once. Nobody
waits on a timer, so a lone caller pays one transaction, as it would alone, and a busy worker
pays one per round instead of one per item (delivery records: bench/README.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommit(Generic[T]):
    def __init__(self, write: Callable[[list[T]], Awaitable[None]], max_batch: int = 1000) -> None:
        self._write = write
        self.max_batch = max_batch
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: T) -> None:
        """Write ``item`` (with whatever else is waiting); raises what the write raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="group-commit")
        await future

    async def _run(self) -> None:
        await asyncio.sleep(0)  # let the callers already in hand join this round
        while self._pending:
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            try:
                await self._write([item for item, _ in batch])
            except Exception as exc:  # each caller of this round fails with it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
