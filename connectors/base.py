"""The connector SPI: what an adapter for one external system declares and implements.

A connector knows its system (how to verify its webhooks, how to write to it); it knows nothing
of Kafka. A *connection* in hub.yaml is a configured instance of a connector.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    model_validator,
)

from hub.canonical import decode
from hub.envelope import derived_id
from hub.schedule import Window, parse_window

log = logging.getLogger(__name__)

MIN_SECRET_BYTES = 8
"""A secret shorter than this is refused: an empty key makes a signature anyone can compute,
and a few bytes are guessed."""

ADVISED_SECRET_BYTES = 16
"""A secret shorter than this is accepted with a warning. The sending system chooses a webhook
secret, not the hub, and a legacy system's key may not be changeable; Shopify's app secrets are
32 characters (38 since 2020: ``shpss_`` and 32)."""


GENERATE_SECRET = "python -c 'import secrets; print(secrets.token_hex(32))'"
"""A command that prints a random secret long enough (as ``openssl rand -hex 32`` does)."""


def _resolve_secret(value: Any, info: ValidationInfo) -> SecretStr:
    """Secrets are referenced, never inlined: ``env:NAME`` or ``file:PATH``; what the reference
    resolves to must be at least :data:`MIN_SECRET_BYTES` long (shorter than
    :data:`ADVISED_SECRET_BYTES`: a warning). Errors name the reference,
    never the value.

    Validation context: ``base_dir`` (what ``file:`` paths are relative to);
    ``resolve_secrets=False`` checks the reference only and reads nothing (a connection no
    enabled route uses: its secrets are read when one does), the value is then empty;
    ``needed_by`` says what uses the connection, in the error when a secret is missing."""
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str):
        raise ValueError("a secret must be a reference: 'env:NAME' or 'file:PATH'")
    context = info.context or {}
    kind, sep, ref = value.partition(":")
    if not (sep and kind in ("env", "file") and ref):
        raise ValueError(
            "secrets must not be written inline: use 'env:NAME' (an environment variable) "
            "or 'file:PATH' (relative to hub.yaml)"
        )
    if context.get("resolve_secrets") is False:
        return SecretStr("")
    needed = context.get("needed_by")
    why = f" ({needed} needs it: set it, or disable that route)" if needed else ""
    if kind == "env":
        if ref not in os.environ:
            raise ValueError(f"environment variable {ref} is not set{why}")
        return _long_enough(value, os.environ[ref])
    base = Path(context.get("base_dir", "."))
    path = (base / ref).expanduser()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {path}: {exc.strerror}{why}") from None
    return _long_enough(value, text.strip())


def _long_enough(reference: str, secret: str) -> SecretStr:
    if not secret:
        raise ValueError(f"the secret {reference} is empty: set it to the system's secret")
    size = len(secret.encode())
    advice = (
        "use the system's own secret (e.g. a Shopify app's client secret), or generate one with "
        f"`{GENERATE_SECRET}` or `openssl rand -hex 32` and give the system the same value"
    )
    if size < MIN_SECRET_BYTES:
        raise ValueError(
            f"the secret {reference} is shorter than {MIN_SECRET_BYTES} bytes, which is too "
            f"easy to guess: {advice}"
        )
    if size < ADVISED_SECRET_BYTES:
        log.warning(
            "the secret %s is %d bytes, shorter than the %d advised: it is used, but a short "
            "key is easier to guess; %s",
            reference,
            size,
            ADVISED_SECRET_BYTES,
            advice,
        )
    return SecretStr(secret)


Secret = Annotated[SecretStr, BeforeValidator(_resolve_secret)]
"""A connector option holding a secret; its value in hub.yaml is a reference."""


class ConnectorOptions(BaseModel):
    """Base of every connector's options; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class InboundEvent:
    """What a connector reads off one verified webhook request."""

    type: str
    subject: str | None
    delivery_id: str | None


class Connector:
    """Base class: a connector is registered under ``name`` and declares its ``Options``.

    ``system`` names the system a connection talks to (hub.yaml's ``system:``, by default the
    connector's name, e.g. ``shopify``): the origin system of the events that come from it, the
    system whose ids the crosswalk keeps for it, and what a route's ``skip_origin`` compares."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type[ConnectorOptions]] = ConnectorOptions

    def __init__(self, connection: str, options: ConnectorOptions) -> None:
        self.connection = connection
        self.options = options
        self.system: str = self.name

    async def check_connection(self) -> str:
        """Reach the system with these options without changing anything in it. Returns what
        was checked; raises :class:`hub.errors.ConnectionCheckFailed` saying what failed and
        what to do (never a secret's value)."""
        return "options are valid; this connector has nothing to call"

    def fingerprint(self) -> str:
        """A digest of the connector, its system and its options, secrets included (compared on
        a reload to see whether a connection changed; the secrets themselves are never kept)."""
        options = json.dumps(self.options.model_dump(), default=_reveal, sort_keys=True)
        return hashlib.sha256(f"{self.name}\n{self.system}\n{options}".encode()).hexdigest()


class WebhookSource(Connector):
    """A connector whose system pushes changes as signed webhooks."""

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise :class:`hub.errors.BadSignature` unless the request is authentic."""
        raise NotImplementedError

    def describe(self, headers: Mapping[str, str], payload: Any) -> InboundEvent:
        """Name the event type, its subject and the source's delivery id for dedup."""
        raise NotImplementedError

    def completes(self, event_type: str) -> bool:
        """Whether events of ``event_type`` need :meth:`complete` (default: none do)."""
        return False

    async def complete(self, inbound: InboundEvent, payload: Any) -> Any | None:
        """What the system's webhook leaves out, read from its API (e.g. a deal's lines): the
        payload to map instead, or None to map it as received. Called by the mapper, before
        mapping, for the event types :meth:`completes` names; the webhook itself was stored as
        received, so the system being down loses nothing. Raise
        :class:`hub.errors.RequestFailed` when the system cannot be read: a retriable one
        parks the event and it is tried again later (its inbound route's ``retry:``), any
        other makes a dead letter."""
        return None


class PollingOptions(ConnectorOptions):
    """Options every polling connector has (its own Options extend these): its schedule."""

    poll_interval_s: float = Field(
        60.0, gt=0, description="Seconds between polls when the last one found nothing more."
    )
    poll_window: str | None = Field(
        None,
        description="Only poll within this daily window, HH:MM-HH:MM in poll_timezone (may "
        "cross midnight: 22:00-06:00); outside it the poller waits for the window to open.",
        examples=["06:00-22:00"],
    )
    poll_timezone: str | None = Field(
        None,
        description="IANA time zone of poll_window (required with it), e.g. Europe/Berlin or "
        "UTC; daylight saving time is applied.",
        examples=["Europe/Berlin"],
    )

    @model_validator(mode="after")
    def _window(self) -> PollingOptions:
        if self.poll_window is not None:
            parse_window(self.poll_window, self.poll_timezone)
        elif self.poll_timezone is not None:
            raise ValueError("poll_timezone is set without poll_window: set both or neither")
        return self

    def window(self) -> Window | None:
        """The daily window polls are made in (None: all day)."""
        if self.poll_window is None:
            return None
        return parse_window(self.poll_window, self.poll_timezone)


@dataclass(frozen=True)
class Change:
    """One changed record, as a polling source reports it."""

    type: str  # the event type, e.g. "sale.changed"
    subject: str | None  # the record's id in its system
    version: str  # what tells this state of the record from others (e.g. its write date)
    data: bytes  # the record as JSON, kept as the raw event's data


@dataclass(frozen=True)
class Page:
    """What one poll found: the changes, where the next poll starts, and whether more are
    ready at once (a full page)."""

    changes: list[Change]
    cursor: str | None  # None: the cursor stays where it was
    more: bool = False


class PollingSource(Connector):
    """A connector whose system is asked for its changes on a schedule.

    ``poll(cursor)`` returns the changes after ``cursor`` (None: from the start) and the cursor
    after them. The hub stores the new cursor only once every change of the page is stored in
    Kafka, so a crash repeats a page, never skips one; the events of a repeated page get the
    same ids (connection, subject, version), so they are deduplicated downstream. A failure
    should raise :class:`hub.errors.PollFailed`."""

    options: PollingOptions

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def poll(self, cursor: str | None) -> Page:
        raise NotImplementedError


_UNSET: Any = object()


def _reveal(value: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value)


def idempotency_key_for(event_id: str, route: str) -> str:
    """The idempotency key of one event on one route: ``uuid5(HUB_NAMESPACE, "delivery" 0x1F
    event_id 0x1F route)`` as text (:func:`hub.envelope.derived_id`).

    Stable (the same event on the same route always gets the same key, across redeliveries,
    retries and restarts) and distinct per route: two routes to one destination send one event
    twice with two keys, so a destination that honours the key keeps both. The event's own id
    travels beside it (``ce-id``)."""
    return derived_id("delivery", event_id, route)


class Delivery:
    """One canonical event to be written to a destination through one route.

    Its data is given either parsed (``data``) or as the compact UTF-8 JSON the canonical event
    carries on the bus (``body``); each form is made from the other only when a sink asks for
    it. An event that no route changes is thus never parsed nor encoded again on its way to an
    HTTP destination (bench/pipeline: ~10% of the delivery worker's CPU).

    ``route`` is the outbound route it goes through ('' when there is none, e.g. in a test);
    ``idempotency_key`` is :func:`idempotency_key_for` of the event and the route (made when
    first asked for): a sink must have one effect per key, not per event id. ``origin`` and
    ``origin_system`` say where the event came from: the connection of its raw event and that
    connection's system (None when unknown)."""

    __slots__ = (
        "_body",
        "_data",
        "_key",
        "correlation_id",
        "event_id",
        "event_type",
        "headers",
        "origin",
        "origin_system",
        "route",
        "subject",
    )

    def __init__(
        self,
        event_id: str,
        event_type: str,
        subject: str | None,
        correlation_id: str,
        headers: Mapping[str, str],
        data: Any = _UNSET,
        body: bytes | None = None,
        route: str = "",
        origin: str | None = None,
        origin_system: str | None = None,
    ) -> None:
        if data is _UNSET and body is None:
            raise TypeError("Delivery needs data or body (or both, when they agree)")
        self.event_id = event_id
        self.event_type = event_type
        self.subject = subject
        self.correlation_id = correlation_id
        self.headers = headers
        self.route = route
        self.origin = origin
        self.origin_system = origin_system
        self._data = data
        self._body = body
        self._key: str | None = None

    @property
    def idempotency_key(self) -> str:
        if self._key is None:
            self._key = idempotency_key_for(self.event_id, self.route)
        return self._key

    @property
    def data(self) -> Any:
        if self._data is _UNSET:
            assert self._body is not None
            self._data = decode(self._body)
        return self._data

    @property
    def body(self) -> bytes:
        """``data`` as compact UTF-8 JSON."""
        if self._body is None:
            self._body = json.dumps(self._data, separators=(",", ":"), ensure_ascii=False).encode()
        return self._body

    def on_route(self, route: str) -> Delivery:
        """The same event through another route (another idempotency key)."""
        return Delivery(
            self.event_id,
            self.event_type,
            self.subject,
            self.correlation_id,
            self.headers,
            self._data,
            self._body,
            route=route,
            origin=self.origin,
            origin_system=self.origin_system,
        )

    def __repr__(self) -> str:
        return (
            f"Delivery({self.event_id!r}, {self.event_type!r}, subject={self.subject!r}, "
            f"route={self.route!r})"
        )


@dataclass(frozen=True, slots=True)
class CreatedId:
    """An id the destination assigned to an object the hub wrote: ``entity`` is the canonical
    entity it stands for (``customer``), ``external_id`` the destination's id for it (``"c-42"``),
    ``version`` the destination's version of it where the system has one (an ETag, a revision)."""

    entity: str
    external_id: str
    version: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What a destination reported about one delivery: the ids it assigned. The hub links each
    to the event's golden id in its crosswalk (:mod:`hub.crosswalk`), so later events from that
    system about the object resolve to the same golden id, and outbound mappings can address it
    by the destination's id (an update rather than a second create)."""

    created: tuple[CreatedId, ...] = ()


class Sink(Connector):
    """A connector the hub writes to. ``deliver`` must be idempotent per
    ``delivery.idempotency_key`` (one event and route): the same key delivered again has no
    second effect; the same event on another route is another delivery. It may return a
    :class:`DeliveryResult` with the ids the destination assigned (None: nothing to report)."""

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def deliver(self, delivery: Delivery) -> DeliveryResult | None:
        """Write one event; raise DeliveryRetriable or DeliveryRejected on failure."""
        raise NotImplementedError

    def state_of(self, document: Any) -> Any:
        """What of a mapped document the destination will hold: compared with what it reports
        back, to recognise the echo of the hub's own write (hub.sync). By default the whole
        document; a sink whose documents carry what only finds the record (ids, references)
        leaves that out."""
        return document
