"""Tryton's JSON-RPC, on the connectors' HTTP layer (:mod:`connectors.rest`).

Every call is one POST to ``{url}/{database}/rpc/`` with ``{"id", "method", "params"}``.
``common.db.login`` answers ``[user_id, session, ...]``; later calls carry
``Authorization: Session base64(login:user_id:session)`` and, as their last parameter, the
context a Tryton client sends (the user's preferences: company, language, ...). A 401 to a call
means the session expired or was removed: the client logs in again once and repeats the call.

Tryton answers a failed call with HTTP 200 and ``{"error": [name, args]}``. They are classified
here, once:

- ``UserError`` and ``UserWarning`` (validation, a missing field, access refused, a record
  that cannot change state) are refusals; the message is Tryton's own, with its description;
- ``ConcurrencyException`` (the record changed meanwhile) is retriable, and so is any other
  server exception whose text or type (the traceback's last line) names a lock, a serialization
  failure or a database operational error; an unexpected server exception otherwise is a
  refusal (the same call would fail again).

HTTP failures (refused connections, timeouts, 5xx, 429) are classified by :mod:`connectors.rest`.
Values cross JSON-RPC in Tryton's encoding: :func:`decimal` and :func:`date` build them,
:func:`plain` reads them back.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import itertools
from decimal import Decimal
from typing import Any

from hub.errors import RequestRefused, RequestRetriable

from ..rest import RestClient

RETRIABLE_WORDS = (
    "could not serialize",
    "deadlock",
    "lock",
    "DatabaseOperationalError",
    "DatabaseTimeoutError",
    "TimeOutException",
)


class LoginRefused(RequestRefused):
    """The login or password was refused."""


class TrytonRpc:
    def __init__(
        self,
        system: str,
        url: str,
        database: str,
        login: str,
        password: str,
        *,
        timeout_s: float = 30.0,
        language: str = "en",
    ) -> None:
        self.system = system
        self.database = database
        self.login_name = login
        self._password = password
        self.language = language
        self.client = RestClient(
            system, f"{url.rstrip('/')}/{database}/rpc/", timeout_s=timeout_s, max_connections=8
        )
        self.user_id: int | None = None
        self.context: dict[str, Any] = {}
        self._authorization: str | None = None
        self.server_now: dt.datetime | None = None  # Tryton's clock: its last answer's Date
        self._ids = itertools.count(1)
        self._login_lock = asyncio.Lock()

    async def open(self) -> None:
        await self.client.open()

    async def close(self) -> None:
        await self.client.close()
        self._authorization = None

    async def login(self) -> None:
        """A new session, and the user's preferences as the context of later calls."""
        answer = await self._post(
            "common.db.login",
            [self.login_name, {"password": self._password}, self.language],
            authorization=None,
        )
        if answer is None:
            raise LoginRefused(
                self.system,
                f"Tryton refused the login {self.login_name!r} on database "
                f"{self.database!r} (HTTP 401): check the login and the password",
                401,
            )
        user_id, session = answer[0], answer[1]
        token = base64.b64encode(f"{self.login_name}:{user_id}:{session}".encode()).decode()
        self.user_id = int(user_id)
        self._authorization = f"Session {token}"
        preferences = await self._post(
            "model.res.user.get_preferences", [True, {}], authorization=self._authorization
        )
        self.context = dict(preferences) if isinstance(preferences, dict) else {}

    async def call(self, method: str, *params: Any, context: dict[str, Any] | None = None) -> Any:
        """``method`` (``model.sale.sale.search``...) with ``params``; the user's context,
        updated with ``context``, is appended."""
        for attempt in (1, 2):
            if self._authorization is None:
                async with self._login_lock:
                    if self._authorization is None:
                        await self.login()
            authorization = self._authorization
            full = [*params, {**self.context, **(context or {})}]
            answer = await self._post(method, full, authorization=authorization, expired=True)
            if answer is _EXPIRED:
                if self._authorization == authorization:
                    self._authorization = None  # the session expired: log in again, once
                if attempt == 1:
                    continue
                raise RequestRefused(self.system, f"{method}: the new session was refused too", 401)
            return answer
        raise AssertionError("unreachable")

    async def _post(
        self,
        method: str,
        params: list[Any],
        *,
        authorization: str | None,
        expired: bool = False,
    ) -> Any:
        headers = {"authorization": authorization} if authorization else None
        response = await self.client.request(
            "POST",
            json={"id": next(self._ids), "method": method, "params": params},
            headers=headers,
            allow=(401,),
        )
        self.server_now = _http_date(response.headers.get("date")) or self.server_now
        if response.status == 401:
            if expired:
                return _EXPIRED
            return None
        reply = response.json()
        if not isinstance(reply, dict):
            raise RequestRefused(self.system, f"{method}: the answer is not a JSON-RPC reply")
        if reply.get("error") is not None:
            raise classify(self.system, method, reply["error"])
        return reply.get("result")


_EXPIRED: Any = object()


def classify(system: str, method: str, error: Any) -> RequestRefused | RequestRetriable:
    """The hub's error for Tryton's ``error`` member: ``[name, args]``."""
    name, args = (
        (error[0], error[1]) if isinstance(error, list) and len(error) == 2 else ("", error)
    )
    if name in ("UserError", "UserWarning"):
        parts = args if isinstance(args, list) else [args]
        if name == "UserWarning" and parts:
            parts = parts[1:]  # the warning's name, then its message
        text = " - ".join(str(p) for p in parts[:2] if p)
        return RequestRefused(system, f"{method}: Tryton {name}: {text}")
    if name == "ConcurrencyException":
        return RequestRetriable(system, f"{method}: Tryton ConcurrencyException: {args}")
    if name == "LoginException":
        return RequestRefused(system, f"{method}: Tryton asks for {args!r} to log in")
    text = str(name) if name else str(error)
    # an unexpected exception comes as [its text, its traceback]: the traceback's last line
    # names its type (the frames above it name Tryton's own lock() calls, whatever failed)
    lines = [line for line in str(args).splitlines() if line.strip()] if name else []
    last = lines[-1] if lines else ""
    if any(word.lower() in f"{text}\n{last}".lower() for word in RETRIABLE_WORDS):
        return RequestRetriable(system, f"{method}: Tryton server error: {_first_line(text)}")
    return RequestRefused(system, f"{method}: Tryton server error: {_first_line(text)}")


def _http_date(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= limit else line[:limit] + "…"


def decimal(value: Any) -> dict[str, str]:
    """A decimal as Tryton's JSON-RPC carries it."""
    return {"__class__": "Decimal", "decimal": str(Decimal(str(value)))}


def date(value: str | dt.date) -> dict[str, Any]:
    day = dt.date.fromisoformat(value[:10]) if isinstance(value, str) else value
    return {"__class__": "date", "year": day.year, "month": day.month, "day": day.day}


def plain(value: Any) -> Any:
    """Tryton's encoded values read back: Decimal, date and datetime (UTC, as Tryton stores
    them) become their Python values; lists and dicts are read through."""
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        kind = value.get("__class__")
        if kind == "Decimal":
            return Decimal(value["decimal"])
        if kind == "date":
            return dt.date(value["year"], value["month"], value["day"])
        if kind == "datetime":
            return dt.datetime(
                value["year"],
                value["month"],
                value["day"],
                value.get("hour", 0),
                value.get("minute", 0),
                value.get("second", 0),
                value.get("microsecond", 0),
                tzinfo=dt.UTC,
            )
        return {k: plain(v) for k, v in value.items()}
    return value
