"""What every connector must do, checked the same way for each: the built-ins in
tests/connectors/test_conformance.py, and a third party's own connector by calling these
functions from its tests. Each returns the problems it found (empty: conforms).

- the options spec is complete: every option described, every required option with an example;
- secrets are marked: an option whose name says it holds a secret is a :data:`Secret` (a
  reference, ``env:NAME`` or ``file:PATH``, never a value in hub.yaml);
- a webhook source refuses forged requests: unsigned, wrongly signed, or signed for another body;
- a sink is idempotent per route: the same event delivered twice through one route has one
  effect in the destination, and through two routes two (one per ``idempotency_key``); what it
  reports is None or a :class:`DeliveryResult` of :class:`CreatedId` (ids as text);
- ``check_connection`` explains a failure: it raises ConnectionCheckFailed with a message that
  says what to do, and never shows a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import types
import typing
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from hub.errors import BadSignature, ConnectionCheckFailed

from .base import (
    Connector,
    CreatedId,
    Delivery,
    DeliveryResult,
    Sink,
    WebhookSource,
    _resolve_secret,
)

SECRET_WORDS = ("secret", "token", "password", "authorization", "api_key", "apikey", "key")
NOT_SECRET_SUFFIXES = ("_url", "_id", "_header", "_name", "_s", "_at", "_margin")


def spec_problems(cls: type[Connector]) -> list[str]:
    problems = []
    for attr in ("name", "title", "description"):
        if not getattr(cls, attr, ""):
            problems.append(f"{cls.__name__}: no {attr}")
    for path, info in _fields(cls.Options):
        if not (info.description or "").strip():
            problems.append(f"option {path}: no description")
        if info.is_required() and not info.examples and not _is_secret(info):
            problems.append(f"option {path}: required but has no example")
        name = path.rsplit(".", 1)[-1]
        secret_like = any(w in name.lower() for w in SECRET_WORDS) and not name.lower().endswith(
            NOT_SECRET_SUFFIXES
        )
        if secret_like and not _secret_or_nested(info):
            problems.append(f"option {path}: looks like a secret but is not a Secret reference")
    return problems


def example_options(cls: type[Connector], secret_ref: str) -> dict[str, Any]:
    """Options built from the spec: each required option's first example (secrets point at
    ``secret_ref``)."""
    options: dict[str, Any] = {}
    for name, info in cls.Options.model_fields.items():
        if not info.is_required():
            continue
        options[name] = secret_ref if _is_secret(info) else (info.examples or [None])[0]
    return options


async def forgery_problems(
    source: WebhookSource, body: bytes, signed_headers: dict[str, str]
) -> list[str]:
    """``signed_headers`` are a genuine request's headers for ``body`` (they must pass); each
    forgery built from them must be refused."""
    problems = []
    try:
        source.verify(signed_headers, body)
    except BadSignature as exc:
        problems.append(f"a genuine request was refused: {exc}")
    forged: dict[str, tuple[dict[str, str], bytes]] = {
        "unsigned": ({"content-type": "application/json"}, body),
        "another body": (signed_headers, body + b" "),
        "signed with another key": (
            {k: _resign(v) for k, v in signed_headers.items()},
            body,
        ),
    }
    for what, (headers, payload) in forged.items():
        try:
            source.verify(headers, payload)
        except BadSignature:
            continue
        problems.append(f"a forged request ({what}) was accepted")
    return problems


async def idempotency_problems(
    sink: Sink,
    delivery: Delivery,
    effects: Callable[[], Awaitable[int]],
    *,
    per_object: bool = False,
) -> list[str]:
    """Deliver ``delivery`` twice (as after a crash before the hub recorded it), then the same
    event through another route twice; ``effects()`` counts what the destination holds for the
    event: one effect per route.

    ``per_object``: the sink upserts the object by its own key (an ERP's party found by its
    code), so the same object through two routes is still one object: one effect in all."""
    other = delivery.on_route(f"{delivery.route}-other" if delivery.route else "other")
    await sink.open()
    try:
        results = [await sink.deliver(delivery), await sink.deliver(delivery)]
        once = await effects()
        results += [await sink.deliver(other), await sink.deliver(other)]
    finally:
        await sink.close()
    twice = await effects()
    problems = []
    if once != 1:
        problems.append(f"an event delivered twice through one route had {once} effects, not 1")
    if per_object and twice != 1:
        problems.append(
            f"an object delivered through two routes had {twice} effects, not 1 (one object)"
        )
    if not per_object and twice != 2:
        problems.append(
            f"an event delivered through two routes had {twice} effects, not 2 (one per route)"
        )
    return problems + [p for r in results for p in result_problems(r)]


def result_problems(result: object) -> list[str]:
    """What is wrong with what ``deliver`` returned: None, or a DeliveryResult whose ids are
    non-empty text."""
    if result is None:
        return []
    if not isinstance(result, DeliveryResult):
        return [f"deliver returned {type(result).__name__}, not a DeliveryResult or None"]
    problems = []
    for created in result.created:
        if not isinstance(created, CreatedId):
            problems.append(f"a created id is a {type(created).__name__}, not a CreatedId")
        elif not (isinstance(created.entity, str) and created.entity):
            problems.append(f"a created id has no entity: {created!r}")
        elif not (isinstance(created.external_id, str) and created.external_id):
            problems.append(f"a created id is not non-empty text: {created!r}")
        elif created.version is not None and not isinstance(created.version, str):
            problems.append(f"a created id's version is not text: {created!r}")
    return problems


async def check_problems(connector: Connector, secrets: list[str]) -> list[str]:
    """``connector`` is configured to fail (unreachable, refused); its check must say so."""
    try:
        result = await connector.check_connection()
    except ConnectionCheckFailed as exc:
        message = str(exc)
        problems = [] if len(message) > 20 else [f"the failure says too little: {message!r}"]
        problems += [f"the failure shows a secret: {message!r}" for s in secrets if s in message]
        return problems
    return [f"a failing connection passed its check: {result!r}"]


def _fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        yield path, info
        for nested in _models(info.annotation):
            tag = nested.model_fields.get("type")
            label = f"{path}[{typing.get_args(tag.annotation)[0]}]" if tag is not None else path
            yield from ((p, i) for p, i in _fields(nested, f"{label}.") if not p.endswith(".type"))


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def _is_secret(info: FieldInfo) -> bool:
    return any(getattr(m, "func", None) is _resolve_secret for m in info.metadata) or _secret_in(
        info.annotation
    )


def _secret_in(annotation: Any) -> bool:
    """``Secret`` somewhere in the type (``Secret | None`` keeps it inside the union)."""
    if typing.get_origin(annotation) is typing.Annotated:
        if any(getattr(m, "func", None) is _resolve_secret for m in annotation.__metadata__):
            return True
    return any(_secret_in(arg) for arg in typing.get_args(annotation))


def _secret_or_nested(info: FieldInfo) -> bool:
    return _is_secret(info) or bool(_models(info.annotation))


def _resign(value: str) -> str:
    """The same kind of value under another key: a forgery that is well-formed."""
    mac = hmac.new(b"not-the-secret", value.encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode() if value.endswith("=") else mac.hex()
