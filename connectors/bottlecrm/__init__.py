"""BottleCRM (PyPI ``django-crm``): signed webhooks in, accounts and contacts written through
its REST API with a personal access token. See docs/connectors/bottlecrm.md.

One connector for both directions, since one BottleCRM organisation is one connection: the
webhook secret verifies what it sends, the token writes to it. A connection used only as a
destination needs no webhook secret (its webhooks are then refused).

**Webhooks in.** ``X-BottleCRM-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret,
"<t>.<body>")>`` (:data:`SIGNATURE`); a timestamp further than ``signature_tolerance_s`` from
now is refused. ``X-BottleCRM-Event`` is the event type (``contact.created``, ``deal.won``...),
``X-BottleCRM-Delivery`` the delivery id, the same on each of BottleCRM's retries: the key for
deduplication. The subject is the record's id (``data.id``).

**Sink.** Given the output of an outbound mapping (``mappings/bottlecrm/``), one of::

    {contact: {refs: [...], id: <BottleCRM id>, first_name, last_name, email, phone, ...}}
    {account: {refs: [...], id: <BottleCRM id>, name, email, phone, website, ...}}
    {deal: {id: deal:<uuid>, comment: <text>}}

it updates the record with that id when there is one (``id``, or the entry of ``refs``, the
canonical object's ``external_refs``, whose system is this connection), else the record found
by e-mail (a contact: BottleCRM refuses two contacts with one e-mail in an organisation) or by
name (an account), else creates it, and reports the id as ``contact:<uuid>`` or
``account:<uuid>``, the form the inbound mappings give it too, so the crosswalk links both
directions to one golden customer. Delivered twice, a customer is written twice to one
record: never a second record. A deal document adds its comment to the deal (once: a deal that
already has a comment with that text gets none); bottlecrm/order_to_deal writes the ERP's sale
number to the deal it came from this way.
"""

from __future__ import annotations

import email.utils
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import Field, HttpUrl

from hub.errors import (
    ConnectionCheckFailed,
    MalformedPayload,
    PollFailed,
    RequestFailed,
    RequestRefused,
    delivery_failed,
)

from ..auth import Bearer
from ..base import (
    Change,
    CreatedId,
    Delivery,
    DeliveryResult,
    InboundEvent,
    Page,
    PollingOptions,
    PollingSource,
    Secret,
    Sink,
    WebhookSource,
)
from ..registry import register
from ..rest import RestClient
from ..signing import HmacScheme

log = logging.getLogger(__name__)

SIGNATURE = HmacScheme("X-BottleCRM-Signature", layout="timestamped")
KINDS = {"contact": "contacts", "account": "accounts"}  # document key -> API collection
ADDRESS_FIELDS = ("address_line", "city", "state", "postcode", "country")
CONTACT_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone",
    "organization",
    "title",
    "department",
    *ADDRESS_FIELDS,
    "description",
)
ACCOUNT_FIELDS = ("name", "email", "phone", "website", "industry", *ADDRESS_FIELDS, "description")
FIELDS = {"contact": CONTACT_FIELDS, "account": ACCOUNT_FIELDS}
# What the hub receives of what the sink writes: BottleCRM's webhooks (its
# webhooks.events.contact_data and account_data, which leave out the department and the
# description) with the address the connector reads from the API (complete()): the part of a
# written record its echo can show (hub.sync).
REPORTED = {
    kind: tuple(f for f in fields if f not in ("department", "description"))
    for kind, fields in FIELDS.items()
}
# The record events completed with the record's address, and where the API shows the record.
ADDRESSED = {
    "contact.created": ("contacts", "contact_obj"),
    "contact.updated": ("contacts", "contact_obj"),
    "account.created": ("accounts", "account_obj"),
    "account.updated": ("accounts", "account_obj"),
}


LINE_FIELDS = (
    "id",
    "name",
    "description",
    "quantity",
    "unit_price",
    "discount_amount",
    "subtotal",
    "total",
    "order",
)


class BadDocument(RequestRefused):
    """The mapped document cannot be sent: names the field and what is wrong."""


class BottleCrmOptions(PollingOptions):
    url: HttpUrl = Field(
        description="BottleCRM's base URL (its API is under /api/).",
        examples=["https://crm.example.com"],
    )
    token: Secret = Field(
        description="A personal access token (bcrm_pat_...) of a BottleCRM user allowed to "
        "read and write accounts and contacts (env:NAME or file:PATH)."
    )
    webhook_secret: Secret | None = Field(
        None,
        description="The signing secret (whsec_...) BottleCRM showed when the webhook was "
        "created; without it the connection's webhooks are refused.",
    )
    previous_webhook_secret: Secret | None = Field(
        None, description="Also accepted while a rotated secret is rolled out."
    )
    signature_tolerance_s: float = Field(
        300.0,
        gt=0,
        description="How far a webhook's signed timestamp may be from now, in seconds; older "
        "(or newer) requests are refused as replays.",
    )
    timeout_s: float = Field(30.0, gt=0, description="Timeout of one request to BottleCRM.")
    poll: list[Literal["contacts", "accounts"]] = Field(
        default_factory=list,
        description="What to poll for, as a fallback for webhooks missed (BottleCRM down, the hub "
        "down past BottleCRM's retries): contacts.updated / account.updated events for records "
        "changed after the cursor (updated_at, id). BottleCRM's lists cannot filter by "
        "updated_at: each poll reads every record, so poll rarely (poll_interval_s).",
    )
    settle_s: float = Field(
        5.0,
        ge=0,
        description="Changes younger than this (by BottleCRM's clock, its Date header) wait for "
        "a later poll: a transaction that commits late is not skipped.",
    )
    page_size: int = Field(100, gt=0, le=1000, description="Events one poll returns at most.")


def sign(secret: str | bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-BottleCRM-Signature`` value BottleCRM would send for ``body``."""
    return SIGNATURE.sign(secret, body, timestamp)


@register
class BottleCrm(WebhookSource, PollingSource, Sink):
    name = "bottlecrm"
    title = "BottleCRM"
    description = (
        "BottleCRM (django-crm): receives its signed webhooks (accounts, contacts, leads, "
        "deals) and creates or updates accounts and contacts through its REST API."
    )
    Options = BottleCrmOptions
    options: BottleCrmOptions

    _client: RestClient | None = None

    # --- webhooks ---------------------------------------------------------------------------

    def verify(self, headers: Any, body: bytes) -> None:
        o = self.options
        scheme = replace(SIGNATURE, tolerance_s=o.signature_tolerance_s)
        secrets = [o.webhook_secret, o.previous_webhook_secret]
        scheme.verify((s.get_secret_value() for s in secrets if s is not None), headers, body)

    def describe(self, headers: Any, payload: Any) -> InboundEvent:
        header = headers.get("x-bottlecrm-event") or headers.get("X-BottleCRM-Event")
        event = payload.get("event") if isinstance(payload, dict) else None
        if not header and not event:
            raise MalformedPayload("missing X-BottleCRM-Event header and event field")
        if header and event and header != event:
            raise MalformedPayload(
                f"X-BottleCRM-Event {header!r} does not match the body's event {event!r}"
            )
        data = payload.get("data") if isinstance(payload, dict) else None
        subject = None
        if isinstance(data, dict) and data.get("id") not in (None, ""):
            subject = str(data["id"])
        delivery = headers.get("x-bottlecrm-delivery") or headers.get("X-BottleCRM-Delivery")
        return InboundEvent(type=str(header or event), subject=subject, delivery_id=delivery)

    def completes(self, event_type: str) -> bool:
        return event_type == "deal.won" or event_type in ADDRESSED

    async def complete(self, inbound: InboundEvent, payload: Any) -> Any | None:
        """A ``deal.won`` webhook carries the deal's amount but not its lines: they are read
        from ``GET opportunities/<id>/`` and added to ``data`` as ``line_items`` (each its
        ``id``, ``name``, ``description``, ``quantity``, ``unit_price``, ``discount_amount``,
        ``subtotal``, ``total``, ``order`` and ``product`` ``{id, sku, name}`` or null; an empty
        list for a deal without lines), and its account from ``accounts/<id>/`` as ``account``
        (``id`` and :data:`ACCOUNT_FIELDS`; null if it is gone). A contact's or an account's
        webhook carries no address: it is read from ``contacts/<id>/`` (``accounts/<id>/``)
        and added to ``data`` (:data:`ADDRESS_FIELDS`), unless ``data`` has it already (a
        polled record). Other events are mapped as received. Called by the mapper: the webhook
        was stored as received, and while the API cannot be read the event waits and is tried
        again."""
        if inbound.subject is None:
            return None
        if inbound.type in ADDRESSED:
            return await self._with_address(inbound.type, inbound.subject, payload)
        if inbound.type != "deal.won":
            return None
        client = self._new_client()
        try:
            answer = await client.request(
                "GET",
                "opportunities/{id}/",
                path_params={"id": inbound.subject},
                allow=(404,),
            )
        finally:
            await client.close()
        if answer.status == 404:  # deleted since: map what the webhook says
            log.info("%s: deal %s is gone; its lines are unknown", self.connection, inbound.subject)
            return None
        body = answer.json()
        deal = body.get("opportunity_obj") if isinstance(body, dict) else None
        items = deal.get("line_items") if isinstance(deal, dict) else None
        if not isinstance(items, list):
            raise RequestRefused(
                self.connection,
                f"opportunities/{inbound.subject}/ answered without line_items: {body!r:.200}",
            )
        lines = [
            {
                **{k: item.get(k) for k in LINE_FIELDS},
                "product": _product(item.get("product")),
            }
            for item in sorted(
                (i for i in items if isinstance(i, dict)),
                key=lambda i: (i.get("order") or 0, str(i.get("id"))),
            )
        ]
        data = {**payload["data"], "line_items": lines}
        account_id = data.get("account_id")
        if account_id not in (None, ""):
            data["account"] = await self._account(str(account_id))
        return {**payload, "data": data}

    async def _with_address(self, event_type: str, their_id: str, payload: Any) -> Any | None:
        """``payload`` with the record's address as the API shows it now; None (mapped as
        received) when it has one already or the record is gone."""
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or "address_line" in data:
            return None
        record = await self._read(*ADDRESSED[event_type], their_id)
        if record is None:  # deleted since: map what the webhook says
            return None
        return {**payload, "data": {**data, **{f: record.get(f) for f in ADDRESS_FIELDS}}}

    async def _account(self, account_id: str) -> dict[str, Any] | None:
        """The deal's account as ``accounts/<id>/`` shows it (name, e-mail, phone, address):
        the ERP's party for it needs a name and an address. None if it is gone."""
        account = await self._read("accounts", "account_obj", account_id)
        if account is None:
            return None
        return {k: account.get(k) for k in ("id", *ACCOUNT_FIELDS)}

    async def _read(self, collection: str, key: str, their_id: str) -> dict[str, Any] | None:
        """The record ``<collection>/<id>/`` shows under ``key``; None if it is gone (404)."""
        client = self._new_client()
        try:
            answer = await client.request(
                "GET", f"{collection}/{{id}}/", path_params={"id": their_id}, allow=(404,)
            )
        finally:
            await client.close()
        if answer.status == 404:
            return None
        body = answer.json()
        record = body.get(key) if isinstance(body, dict) else None
        if not isinstance(record, dict):
            raise RequestRefused(
                self.connection, f"{collection}/{their_id}/ answered without {key}"
            )
        return record

    # --- REST -------------------------------------------------------------------------------

    def _new_client(self) -> RestClient:
        o = self.options
        return RestClient(
            self.connection,
            f"{str(o.url).rstrip('/')}/api/",
            auth=Bearer(o.token.get_secret_value()),
            headers={"accept": "application/json"},
            timeout_s=o.timeout_s,
            max_connections=8,
        )

    async def open(self) -> None:
        if self._client is None:
            self._client = self._new_client()
            await self._client.open()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def check_connection(self) -> str:
        """Lists one contact and one account with the token: BottleCRM is reachable, the token
        valid and allowed to read both; writes nothing. The webhook secret cannot be checked
        from here (BottleCRM shows it once): a webhook refused as forged says it is wrong."""
        o = self.options
        where = str(o.url).rstrip("/")
        client = self._new_client()
        try:
            for collection in ("contacts", "accounts"):
                try:
                    answer = await client.request(
                        "GET", f"{collection}/", params={"limit": 1}, allow=(401, 403, 404)
                    )
                except RequestFailed as exc:
                    raise ConnectionCheckFailed(
                        f"{where} cannot be reached: {exc.reason}; check the url option, that "
                        "BottleCRM is up, and any proxy (HTTPS_PROXY, NO_PROXY)"
                    ) from None
                # BottleCRM answers an unknown token 403 "Organization context is required"
                # (its middleware finds no organisation) rather than 401.
                refused = answer.status == 401 or (
                    answer.status == 403 and b"organization context" in answer.body.lower()
                )
                if refused:
                    raise ConnectionCheckFailed(
                        f"{where} refused the token (HTTP {answer.status}: "
                        f"{_detail(answer.body)}); check "
                        "the token option: a personal access token (bcrm_pat_...) that is not "
                        "revoked or expired, of an active user"
                    )
                if answer.status == 403:
                    raise ConnectionCheckFailed(
                        f"{where} accepted the token but denied reading {collection} (HTTP 403: "
                        f"{_detail(answer.body)}); give the token {collection}:read and "
                        f"{collection}:write, or no scopes"
                    )
                if answer.status == 404:
                    raise ConnectionCheckFailed(
                        f"{where} has no BottleCRM API at /api/{collection}/ (HTTP 404); check "
                        "the url option: BottleCRM's base URL, without /api"
                    )
                if not isinstance(answer.json(), dict):
                    raise ConnectionCheckFailed(
                        f"{where}/api/{collection}/ did not answer as BottleCRM does; check "
                        "the url option"
                    )
        finally:
            await client.close()
        secret = "set" if o.webhook_secret is not None else "not set (webhooks are refused)"
        return (
            f"{where}: the token reads contacts and accounts; webhook secret {secret}, "
            f"signatures accepted within {o.signature_tolerance_s:g}s"
        )

    # --- polling (a fallback for missed webhooks) -------------------------------------------

    async def poll(self, cursor: str | None) -> Page:
        """The contacts and accounts changed after ``cursor`` (per kind, ``(updated_at, id)``,
        the id breaking ties), oldest first, at most ``page_size``, leaving those changed in the
        last ``settle_s`` seconds. Events have the webhook's type and shape (``contact.updated``,
        ``{event, data}``), so the webhook's mappings take them. Their ids derive from the
        record and its ``updated_at`` (a page polled again is deduplicated); a change both
        received as a webhook and polled is mapped twice, and the second is dropped as no
        change by the echo rule (hub/sync.py), which knows the state the first reported."""
        if not self.options.poll:
            return Page([], None)
        await self.open()
        positions: dict[str, list[str]] = json.loads(cursor) if cursor else {}
        changes: list[Change] = []
        more = False
        try:
            for kind in self.options.poll:
                rows, upper = await self._all(kind)
                after = positions.get(kind)
                fresh = sorted(
                    (
                        (stamp, str(row["id"]), row)
                        for row in rows
                        if (stamp := _stamp(row.get("updated_at"))) is not None
                        and stamp <= upper
                        and (after is None or (stamp.isoformat(), str(row["id"])) > tuple(after))
                    ),
                    key=lambda t: (t[0], t[1]),
                )
                page = fresh[: self.options.page_size]
                more = more or len(fresh) > len(page)
                event = "contact.updated" if kind == "contacts" else "account.updated"
                for stamp, their_id, row in page:
                    body = {"event": event, "data": row}
                    changes.append(
                        Change(
                            type=event,
                            subject=their_id,
                            version=f"{stamp.isoformat()}/{their_id}",
                            data=json.dumps(body, separators=(",", ":"), default=str).encode(),
                        )
                    )
                if page:
                    positions[kind] = [page[-1][0].isoformat(), page[-1][1]]
        except RequestFailed as exc:
            raise PollFailed(self.connection, exc.reason) from None
        new = json.dumps(positions, sort_keys=True, separators=(",", ":")) if positions else None
        return Page(changes, new if new != cursor else None, more)

    async def _all(self, kind: str) -> tuple[list[dict[str, Any]], datetime]:
        """Every record of ``kind`` (pages of 100 by offset), and the newest ``updated_at``
        settled by BottleCRM's clock."""
        assert self._client is not None
        rows: list[dict[str, Any]] = []
        upper: datetime | None = None
        offset = 0
        while True:
            answer = await self._client.request(
                "GET", f"{kind}/", params={"limit": 100, "offset": offset}
            )
            if upper is None:
                date = answer.headers.get("date")
                now = email.utils.parsedate_to_datetime(date) if date else datetime.now(UTC)
                upper = now + timedelta(seconds=1) - timedelta(seconds=self.options.settle_s)
            listed = answer.json()
            page = listed.get("results") if isinstance(listed, dict) else None
            if page is None and isinstance(listed, dict):  # the accounts list names its halves
                page = [*(listed.get("active_accounts") or {}).get("open_accounts", [])]
                page += (listed.get("closed_accounts") or {}).get("close_accounts", [])
            page = [r for r in page or [] if isinstance(r, dict) and r.get("id")]
            rows += page
            count = listed.get("count") if isinstance(listed, dict) else None
            offset += len(page)
            if not page or not isinstance(count, int) or offset >= count:
                break
        assert upper is not None
        return rows, upper

    # --- delivery ---------------------------------------------------------------------------

    async def deliver(self, delivery: Delivery) -> DeliveryResult:
        await self.open()
        document = delivery.data
        try:
            if not isinstance(document, dict):
                raise self._bad("(root)", "is not an object: route events through a mapping")
            if "deal" in document and len(document) == 1:
                deal = document["deal"]
                if not isinstance(deal, dict):
                    raise self._bad("deal", "is not an object")
                their_id = await self.comment_on_deal(deal)
                return DeliveryResult((CreatedId("order", f"deal:{their_id}"),))
            kinds = [k for k in KINDS if k in document]
            if len(kinds) != 1:
                raise self._bad("(root)", "must have exactly one of contact, account, deal")
            kind = kinds[0]
            record = document[kind]
            if not isinstance(record, dict):
                raise self._bad(kind, "is not an object")
            their_id = await self.upsert(kind, record)
        except RequestFailed as exc:
            raise delivery_failed(exc) from None
        return DeliveryResult((CreatedId("customer", f"{kind}:{their_id}"),))

    def state_of(self, document: Any) -> Any:
        """The fields the sink writes that the hub hears back (:data:`REPORTED`: the webhooks'
        fields and the address; not ``refs`` or ``id``, which only find the record)."""
        if not isinstance(document, dict):
            return document
        if "deal" in document:
            return document
        return {
            kind: {f: record.get(f) for f in REPORTED[kind]}
            for kind, record in document.items()
            if kind in KINDS and isinstance(record, dict)
        }

    async def comment_on_deal(self, deal: dict[str, Any]) -> str:
        """Add ``comment`` to the deal ``id`` (``deal:<uuid>``) unless the deal already has a
        comment with that text: delivered twice, one comment. BottleCRM's deals have no free
        field to write a number to (their custom fields need an admin's definition), and the
        description is the sales people's own; a comment shows on the deal's page."""
        their = _their_id(deal.get("id"), "deal")
        if their is None:
            raise self._bad("deal.id", "is empty: the deal to comment on is unknown")
        text = deal.get("comment")
        if not isinstance(text, str) or not text.strip():
            raise self._bad("deal.comment", "is empty")
        text = text.strip()
        assert self._client is not None
        answer = await self._client.request(
            "GET", "opportunities/{id}/", path_params={"id": their}, allow=(404,)
        )
        if answer.status == 404:
            raise RequestRefused(self.connection, f"deal {their} does not exist (HTTP 404)")
        shown = answer.json()
        comments = shown.get("comments") if isinstance(shown, dict) else None
        if any(isinstance(c, dict) and c.get("comment") == text for c in comments or []):
            return their
        await self._call("POST", "opportunities/{id}/", their, {"comment": text})
        return their

    async def upsert(self, kind: str, record: dict[str, Any]) -> str:
        """Update the record by its id, else the one found by e-mail (contact) or name
        (account), else create it; returns BottleCRM's id."""
        collection = KINDS[kind]
        body = {f: record[f] for f in FIELDS[kind] if record.get(f) not in (None, "")}
        known = _their_id(record.get("id"), kind) or self._from_refs(record.get("refs"), kind)
        if known is not None:
            answer = await self._call("PATCH", f"{collection}/{{id}}/", known, body, allow=(404,))
            if answer.status != 404:
                return known
            log.info("%s: %s %s is gone; looking it up", self.connection, kind, known)
        found = await self.find(kind, record)
        if found is not None:
            await self._call("PATCH", f"{collection}/{{id}}/", found, body)
            return found
        if kind == "contact" and not body.get("email"):
            raise self._bad(
                "contact.email",
                "is empty and the contact has no BottleCRM id: it cannot be found again, so "
                "it is not created (a second delivery would make a duplicate)",
            )
        if kind == "account" and not body.get("name"):
            raise self._bad("account.name", "is empty: BottleCRM requires an account's name")
        created = (await self._call("POST", f"{collection}/", None, body)).json()
        their = created.get("id") if isinstance(created, dict) else None
        if not their:
            raise RequestRefused(
                self.connection, f"created a {kind} but the answer has no id: {created!r:.200}"
            )
        return str(their)

    async def find(self, kind: str, record: dict[str, Any]) -> str | None:
        """The id of the contact with this e-mail, or of the account with this name (both
        compared case-insensitively: BottleCRM's filters match parts of words)."""
        key = "email" if kind == "contact" else "name"
        value = record.get(key)
        if value in (None, ""):
            return None
        assert self._client is not None
        answer = await self._client.request(
            "GET", f"{KINDS[kind]}/", params={key: str(value), "limit": 100}
        )
        listed = answer.json()
        rows = listed.get("results") if isinstance(listed, dict) else None
        if rows is None and isinstance(listed, dict):  # the accounts list names its halves
            rows = [*(listed.get("active_accounts") or {}).get("open_accounts", [])]
            rows += (listed.get("closed_accounts") or {}).get("close_accounts", [])
        wanted = str(value).strip().casefold()
        for row in rows or []:
            if isinstance(row, dict) and str(row.get(key) or "").strip().casefold() == wanted:
                return str(row["id"])
        return None

    async def _call(
        self,
        method: str,
        path: str,
        their_id: str | None,
        body: dict[str, Any],
        allow: tuple[int, ...] = (),
    ) -> Any:
        assert self._client is not None
        params = {"id": their_id} if their_id is not None else None
        return await self._client.request(method, path, path_params=params, json=body, allow=allow)

    def _from_refs(self, refs: Any, kind: str) -> str | None:
        """BottleCRM's id in the canonical object's ``external_refs``: the entry whose system is
        this connection (the customer came from here, or was written here before)."""
        if not isinstance(refs, list):
            return None
        for ref in refs:
            if isinstance(ref, dict) and ref.get("system") == self.connection:
                found = _their_id(ref.get("id"), kind)
                if found is not None:
                    return found
        return None

    def _bad(self, field: str, problem: str) -> BadDocument:
        return BadDocument(self.connection, f"the document's {field} {problem}")


def _their_id(value: Any, kind: str) -> str | None:
    """BottleCRM's id from ``contact:<uuid>`` (as reported and crosswalked) or a bare id."""
    if value in (None, ""):
        return None
    text = str(value)
    prefix, sep, rest = text.partition(":")
    if sep:
        return rest if prefix == kind and rest else None
    return text


def _product(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    return {k: value.get(k) for k in ("id", "sku", "name")}


def _stamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _detail(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text[:200] if text else "no detail"


__all__ = ["SIGNATURE", "BottleCrm", "BottleCrmOptions", "sign"]
