"""CloudEvents on Kafka (binary mode): encode, decode, derive."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import envelope
from hub.envelope import (
    SPECVERSION,
    CloudEvent,
    EnvelopeError,
    derived_id,
    from_kafka,
    new_id,
    now_rfc3339,
    to_kafka,
)
from hub.errors import ProcessingError


def full_event() -> CloudEvent:
    return CloudEvent(
        id="evt-2",
        source="hub/mapper",
        type="hub.order.upserted",
        data=b'{"id":"ord_1","name":"Gr\xc3\xbc\xc3\x9fe"}',
        subject="ord_1",
        time="2026-11-22T10:15:00.000Z",
        datacontenttype="application/json; charset=utf-8",
        correlationid="evt-0",
        causationid="evt-1",
        key="ord_1",
        extensions={"hubconnection": "shop", "hubevent": "orders/create"},
    )


def test_round_trip_keeps_every_attribute() -> None:
    event = full_event()
    key, value, headers = to_kafka(event)
    assert key == b"ord_1"
    assert value == event.data
    names = [name for name, _ in headers]
    assert len(names) == len(set(names))
    assert dict(headers) == {
        "ce_id": b"evt-2",
        "ce_source": b"hub/mapper",
        "ce_type": b"hub.order.upserted",
        "ce_specversion": b"1.0",
        "ce_time": b"2026-11-22T10:15:00.000Z",
        "ce_correlationid": b"evt-0",
        "ce_subject": b"ord_1",
        "ce_causationid": b"evt-1",
        "ce_hubconnection": b"shop",
        "ce_hubevent": b"orders/create",
        "content-type": b"application/json; charset=utf-8",
    }
    assert from_kafka(key, value, headers) == event


def test_round_trip_of_a_minimal_event() -> None:
    event = CloudEvent(id="e", source="s", type="t", data=b"{}")
    assert event.correlationid == "e"  # a chain starts with itself
    key, value, headers = to_kafka(event)
    assert key is None
    names = {name for name, _ in headers}
    assert "ce_subject" not in names and "ce_causationid" not in names
    back = from_kafka(key, value, headers)
    assert back == event
    assert back.subject is None and back.causationid is None and back.key is None
    assert back.extensions == {}


def test_decoding_fills_defaults() -> None:
    headers = [
        ("ce_id", b"e1"),
        ("ce_source", b"s"),
        ("ce_type", b"t"),
        ("ce_specversion", b"1.0"),
        ("other", b"ignored"),
    ]
    event = from_kafka(b"k", None, headers)
    assert event.data == b""
    assert event.correlationid == "e1"
    assert event.datacontenttype == "application/json"
    assert event.time.endswith("Z")
    assert event.key == "k"
    assert event.extensions == {}


@pytest.mark.parametrize("missing", ["id", "source", "type", "specversion"])
def test_a_missing_required_attribute_is_refused(missing: str) -> None:
    _key, value, headers = to_kafka(full_event())
    headers = [(n, v) for n, v in headers if n != f"ce_{missing}"]
    with pytest.raises(EnvelopeError, match=f"missing headers ce_{missing}"):
        from_kafka(None, value, headers)


def test_not_a_cloudevent_at_all() -> None:
    with pytest.raises(EnvelopeError) as info:
        from_kafka(None, b"{}", [])
    assert "ce_id, ce_source, ce_type, ce_specversion" in str(info.value)
    assert isinstance(info.value, ProcessingError)
    assert info.value.retriable is False


def test_wrong_specversion_is_refused() -> None:
    _key, value, headers = to_kafka(full_event())
    headers = [(n, b"0.3" if n == "ce_specversion" else v) for n, v in headers]
    with pytest.raises(EnvelopeError, match=r"unsupported CloudEvents specversion '0\.3'"):
        from_kafka(None, value, headers)


def test_non_utf8_header_is_refused() -> None:
    _key, value, headers = to_kafka(full_event())
    headers.append(("ce_hubbad", b"\xff\xfe"))
    with pytest.raises(EnvelopeError, match="header ce_hubbad is not UTF-8"):
        from_kafka(None, value, headers)


def test_derive_keeps_correlation_and_names_the_cause() -> None:
    raw = CloudEvent(
        id="raw-1",
        source="hub/ingress/shop",
        type="orders/create",
        data=b"{}",
        subject="820982911946154508",
        time="2020-01-01T00:00:00.000Z",
        key="shop",
        extensions={"hubconnection": "shop"},
    )
    mapped = raw.derive(
        id="mapped-1", source="hub/mapper", type="hub.order.upserted", data=b"{}", key="ord_1"
    )
    assert mapped.correlationid == "raw-1"
    assert mapped.causationid == "raw-1"
    assert mapped.key == "ord_1"
    assert mapped.time != raw.time
    assert mapped.extensions == {"hubconnection": "shop"}
    assert mapped.subject == raw.subject

    delivered = mapped.derive(id="out-1", source="hub/deliver/erp", type="t", data=b"")
    assert delivered.correlationid == "raw-1"  # the chain keeps its first id
    assert delivered.causationid == "mapped-1"  # and names its direct parent
    # the original is not changed
    assert raw.causationid is None and raw.id == "raw-1"


def test_derived_id_is_deterministic() -> None:
    a = derived_id("raw-1", "shopify/orders_create", "v1")
    assert a == derived_id("raw-1", "shopify/orders_create", "v1")
    assert uuid.UUID(a).version == 5
    assert a != derived_id("raw-1", "shopify/orders_create", "v2")
    assert a != derived_id("raw-2", "shopify/orders_create", "v1")
    # parts are separated, not concatenated
    assert derived_id("ab", "c") != derived_id("a", "bc")


def test_new_ids_are_unique_and_time_is_rfc3339_utc() -> None:
    assert new_id() != new_id()
    assert uuid.UUID(new_id()).version == 4
    stamp = now_rfc3339()
    assert stamp.endswith("Z") and "+" not in stamp
    assert len(stamp) == len("2026-11-22T10:15:00.000Z")
    assert SPECVERSION == "1.0"


def test_now_is_the_clock_to_the_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    """now_rfc3339 formats each second once; every call must still give its own time."""
    for clock in (1795086299.9995, 1795086300.0004, 1795086300.25, 1795086299.5):
        monkeypatch.setattr(envelope.time, "time", lambda clock=clock: clock)
        expected = datetime.fromtimestamp(clock, UTC).isoformat(timespec="milliseconds")
        assert now_rfc3339() == expected.replace("+00:00", "Z")
    monkeypatch.undo()
    before = datetime.now(UTC)
    at = datetime.fromisoformat(now_rfc3339())
    assert before - timedelta(milliseconds=1) <= at <= datetime.now(UTC)


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)))


@given(st.lists(_TEXT, min_size=1, max_size=4))
def test_derived_ids_are_uuid5_of_the_joined_parts(parts: list[str]) -> None:
    """Ids must never change between versions: the fast uuid5 is uuid.uuid5, bit for bit."""
    from hub.envelope import HUB_NAMESPACE, derived_id

    assert derived_id(*parts) == str(uuid.uuid5(HUB_NAMESPACE, "\x1f".join(parts)))


@given(_TEXT)
def test_golden_ids_keep_their_uuid5_digest(external_id: str) -> None:
    from hub import mdm

    expected = uuid.uuid5(mdm._NAMESPACE, f"customer\x1fshop\x1f{external_id}").hex[:24]
    assert mdm._derive("customer", "shop", external_id) == f"cus_{expected}"
