"""A destination's rate limit, held across every delivery process: one token bucket per
destination in the ``rate_buckets`` table.

The bucket fills at ``rate`` tokens a second up to ``burst``; an attempt takes one token. A
process does not go to the database per attempt: it takes up to :attr:`RateLimiter.batch`
tokens in one statement (about 50 ms worth at the configured rate, at most the burst) and
spends them locally; an empty bucket is asked again once a whole batch has refilled. Tokens are
taken from the shared bucket before they are spent, so all processes together never exceed
``burst + rate x elapsed``; a process that stops loses the few tokens it held (the destination
gets a little less, never more).

The take is one ``UPDATE .. RETURNING`` (SQLite 3.35+, PostgreSQL): the refill, the grant and
the new level computed from the row's old values in one atomic statement, so concurrent
processes never grant the same token twice, without a lock held between statements. When the
bucket is empty, the answer says how long until a token is there, and the process sleeps that
long before asking again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Float, Integer, bindparam, cast, func, literal, update
from sqlalchemy.engine import Connection

from .db import Database, rate_buckets

BATCH_S = 0.05
"""A take asks for about this many seconds' worth of tokens."""


class RateLimiter:
    """At most ``rate`` attempts per second to ``destination`` across processes, bursts up to
    ``burst``."""

    def __init__(
        self,
        db: Database,
        destination: str,
        rate: float,
        burst: int | None = None,
        batch: int | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.db = db
        self.destination = destination
        self.rate = rate
        self.burst = float(burst or max(1, int(rate)))
        self.batch = batch or max(1, min(int(self.burst), math.ceil(rate * BATCH_S)))
        self._clock = clock
        self._sleep = sleep
        self._tokens = 0  # taken from the bucket, not yet spent
        self._lock = asyncio.Lock()
        self._take = _take_statement(db.dialect)
        self._created = False
        self.takes = 0  # database round trips, for the figures in the docs and the tests

    async def acquire(self) -> None:
        async with self._lock:
            while self._tokens < 1:
                granted, left = await self._take_tokens()
                self._tokens += granted
                if granted == 0:  # until a whole batch is there: a take per batch, not per token
                    await self._sleep(max(min(self.batch, self.burst) - left, 0.0) / self.rate)
            self._tokens -= 1

    async def _take_tokens(self) -> tuple[int, float]:
        """Take up to :attr:`batch` tokens from the shared bucket: (granted, tokens left)."""
        now = self._clock()
        params = {
            "b_destination": self.destination,
            "now": now,
            "rate": self.rate,
            "burst": self.burst,
            "want": self.batch,
        }
        create = not self._created

        def take(conn: Connection) -> tuple[int, float]:
            if create:
                row = {
                    "destination": self.destination,
                    "tokens": self.burst,
                    "updated_at": now,
                    "granted": 0,
                }
                conn.execute(self.db.insert_ignore(rate_buckets), [row])
            granted, left = conn.execute(self._take, params).one()
            return int(granted), float(left)

        self.takes += 1
        result = await self.db.run(take)
        self._created = True
        return result


def _take_statement(dialect: str) -> Any:
    """The refill-and-take as one UPDATE. Each SET expression reads the row's old values."""
    c = rate_buckets.c
    postgres = dialect == "postgresql"
    least, greatest = (func.least, func.greatest) if postgres else (func.min, func.max)
    now, rate = bindparam("now", type_=Float), bindparam("rate", type_=Float)
    burst, want = bindparam("burst", type_=Float), bindparam("want", type_=Integer)
    available = least(burst, c.tokens + greatest(literal(0.0), now - c.updated_at) * rate)
    # float error (0.05 s x 20/s = 0.9999..) must not make it wait for a token that is there
    nearly = available + literal(1e-9)
    whole = func.floor(nearly) if postgres else cast(nearly, Integer)
    granted = least(want, whole)
    return (
        update(rate_buckets)
        .where(c.destination == bindparam("b_destination"))
        .values(
            tokens=available - granted,
            updated_at=greatest(c.updated_at, now),
            granted=granted,
        )
        .returning(c.granted, c.tokens)
    )
