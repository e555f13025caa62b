"""The public JSON Schemas (draft 2020-12) in ``schemas/``: generated, never hand-edited.

Entity schemas come from the pydantic models in :mod:`hub.canonical`; the envelope schema is
written out here by hand from :meth:`hub.envelope.CloudEvent.attributes`. ``hub schemas export``
calls :func:`write_schemas`; ``tests/test_schemas.py`` calls :func:`check_schemas` so the
committed files cannot drift from the models.

Validation mode is used for the entity schemas: the schema is the gate for documents the hub
*receives*, and what the hub emits (:func:`hub.canonical.dump`) always satisfies it. (For these
models pydantic's validation and serialization schemas are identical anyway.)

Regex semantics: JSON Schema ``pattern`` is ECMA-262, where ``$`` matches only at the very end.
pydantic checks patterns with Rust's ``regex`` (same meaning), but ``jsonschema`` uses Python's
``re.search``, where ``$`` also matches before a trailing newline, so ``"19.90\\n"`` would pass
the schema and fail the model. :func:`compiled_validator` therefore overrides ``pattern`` with
ECMA end-of-input semantics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, ValidationError, validators

from .canonical import ENTITY_MODELS, SCHEMA_BASE

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ENVELOPE = "envelope"
SCHEMA_NAMES: tuple[str, ...] = (*ENTITY_MODELS, ENVELOPE)

_CONVENTIONS = (
    "Money is an exact decimal string next to an ISO 4217 currency; timestamps are RFC 3339 "
    "in UTC ('Z'); countries ISO 3166-1 alpha-2; phones E.164 where they could be normalised. "
    "Carries the hub's golden id and the object's external_refs [{system, id}]."
)


# -- entity schemas ----------------------------------------------------------------------------


def _auto_title(field_name: str) -> str:
    """The title pydantic makes up for a field that has none (noise in a public contract)."""
    return field_name.title().replace("_", " ")


def _strip_auto_titles(node: Any) -> None:
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for field_name, prop in props.items():
                if isinstance(prop, dict) and prop.get("title") == _auto_title(field_name):
                    del prop["title"]
        for value in node.values():
            _strip_auto_titles(value)
    elif isinstance(node, list):
        for item in node:
            _strip_auto_titles(item)


def entity_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one canonical entity, generated from its pydantic model."""
    try:
        model = ENTITY_MODELS[name]
    except KeyError:
        raise KeyError(f"unknown entity {name!r}; known: {', '.join(ENTITY_MODELS)}") from None
    schema = model.model_json_schema(mode="validation")
    _strip_auto_titles(schema)
    doc = (model.__doc__ or "").strip()
    schema.update(
        {
            "$schema": DIALECT,
            "$id": f"{SCHEMA_BASE}{name}.json",
            "title": f"Canonical {name}",
            "description": (
                f"{doc} Data of the events on Kafka topic hub.canonical.{name}, keyed by golden "
                f"id. {_CONVENTIONS}"
            ).strip(),
        }
    )
    return schema


# -- envelope schema ---------------------------------------------------------------------------

_RFC3339 = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)


def envelope_schema() -> dict[str, Any]:
    """The CloudEvents 1.0 context attributes the hub puts on every Kafka record."""

    def text(description: str, **extra: Any) -> dict[str, Any]:
        return {"type": "string", "minLength": 1, "description": description, **extra}

    return {
        "$schema": DIALECT,
        "$id": f"{SCHEMA_BASE}{ENVELOPE}.json",
        "title": "Hub event envelope (CloudEvents 1.0)",
        "description": (
            "The context attributes of every event the hub publishes or consumes, as a JSON "
            "object of strings. On Kafka (CloudEvents Kafka protocol binding, binary content "
            "mode) each attribute travels as a ce_<name> record header (UTF-8), e.g. ce_id, "
            "ce_correlationid; datacontenttype travels as the content-type header; the data is "
            "the record value (for canonical topics a document valid against the entity's "
            "schema) and the partition key (the golden id on canonical topics) is the record "
            "key. Other lowercase alphanumeric names are CloudEvents extension attributes."
        ),
        "type": "object",
        "required": ["id", "source", "type", "specversion"],
        "properties": {
            "id": text(
                "Event id; unique per source. On HTTP destinations: the ce-id header (the "
                "Idempotency-Key is another value, one per event and outbound route).",
                examples=["5b0c7a9e-3f7b-5d0e-8a51-0d6f1f3c2b7a"],
            ),
            "source": text(
                "URI-reference naming the producer (connection or hub stage).",
                format="uri-reference",
            ),
            "type": text("Event type, reverse-DNS style."),
            "specversion": {
                "const": "1.0",
                "description": "CloudEvents specification version.",
            },
            "time": {
                "type": "string",
                "format": "date-time",
                "pattern": _RFC3339,
                "description": "When the occurrence happened, RFC 3339 (the hub writes UTC, Z).",
                "examples": ["2026-11-22T10:15:00.000Z"],
            },
            "subject": text(
                "The subject of the event within the source, e.g. the object's id there.",
            ),
            "datacontenttype": text(
                "Media type of the data (on Kafka: the content-type header).",
                default="application/json",
                examples=["application/json"],
            ),
            "correlationid": text(
                "Id of the event that started this chain; equal to id for the first event. "
                "Follow it to trace an order from webhook to destination.",
            ),
            "causationid": text("Id of the event this one was derived from."),
            "hubconnection": text(
                "Extension: the connection the event came from (set on the raw event, kept by "
                "every event derived from it; in mappings meta.origin).",
                examples=["shop"],
            ),
            "hubsystem": text(
                "Extension: the system the event came from: its connection's system in "
                "hub.yaml, by default the connector's name (kept like hubconnection; in "
                "mappings meta.system).",
                examples=["shopify"],
            ),
        },
        "propertyNames": {
            "pattern": "^[a-z0-9]+$",
            "description": "CloudEvents attribute names: lowercase a-z and 0-9.",
        },
        "additionalProperties": {
            "type": "string",
            "description": "Extension attribute (ce_<name> header).",
        },
    }


# -- files -------------------------------------------------------------------------------------


def schema(name: str) -> dict[str, Any]:
    """Any published schema by name: an entity name or ``"envelope"``."""
    return envelope_schema() if name == ENVELOPE else entity_schema(name)


def render(name: str) -> str:
    """The exact text of ``<name>.json`` as committed."""
    return json.dumps(schema(name), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    """Write every schema to ``directory`` (created if needed); returns the paths written."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SCHEMA_NAMES:
        path = directory / f"{name}.json"
        path.write_text(render(name), encoding="utf-8", newline="\n")
        written.append(path)
    return written


def check_schemas(directory: Path) -> list[str]:
    """File names in ``directory`` that are missing or differ from what the models generate."""
    stale = []
    for name in SCHEMA_NAMES:
        path = Path(directory) / f"{name}.json"
        try:
            current = path.read_text(encoding="utf-8")  # universal newlines: CRLF checkouts pass
        except FileNotFoundError:
            current = None
        if current != render(name):
            stale.append(path.name)
    return stale


# -- validation --------------------------------------------------------------------------------


def ecma_pattern(pattern: str) -> str:
    """Rewrite an ECMA-262 pattern for Python's ``re``: an unescaped ``$`` outside a character
    class means end of input (``\\Z``), not "end or before a final newline"."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "$":
            char = r"\Z"
        out.append(char)
        i += 1
    return "".join(out)


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(ecma_pattern(pattern))


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _compiled(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


HubValidator: Any = validators.extend(Draft202012Validator, {"pattern": _pattern})
"""Draft 2020-12 with ECMA-262 ``$`` in ``pattern``; everything else as Draft202012Validator."""


@cache
def compiled_validator(name: str) -> Any:
    """A cached draft 2020-12 validator (with format checking) for ``<name>.json``.

    It is a :func:`jsonschema.validators.extend` of ``Draft202012Validator`` that differs only
    in ``pattern`` (see the module docstring). Formats are checked when jsonschema's optional
    format dependencies are installed; the entity contract relies on ``pattern`` alone.
    """
    return HubValidator(schema(name), format_checker=Draft202012Validator.FORMAT_CHECKER)
