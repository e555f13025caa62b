"""How the Tryton connector classifies what Tryton's JSON-RPC answers with an error (the
shapes are Tryton 8.2's: trytond/exceptions.py and protocols/jsonrpc.py). The behaviour against
a real Tryton is in tests/tryton/."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from connectors.tryton.rpc import classify, date, decimal, plain
from hub.errors import RequestRefused, RequestRetriable

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "trytond/model/modelsql.py", line 900, in create\n'
    "    cls.lock()\n"
    '  File "trytond/modules/sale/sale.py", line 10, in on_change\n'
    "TypeError: unsupported operand type(s) for +: 'int' and 'str'\n"
)


def test_a_user_error_is_refused_with_trytons_message() -> None:
    error = ["UserError", ["The value of field Type is not valid.", "Choose goods.", None]]
    failure = classify("erp", "model.product.template.create", error)
    assert isinstance(failure, RequestRefused)
    assert failure.reason == (
        "model.product.template.create: Tryton UserError: "
        "The value of field Type is not valid. - Choose goods."
    )


def test_a_user_warning_is_refused_with_its_message_not_its_name() -> None:
    error = ["UserWarning", ["sale_confirm_12", "The sale has no lines.", ""]]
    failure = classify("erp", "model.sale.sale.confirm", error)
    assert isinstance(failure, RequestRefused)
    assert failure.reason.endswith("Tryton UserWarning: The sale has no lines.")


def test_a_concurrent_change_is_retriable() -> None:
    error = ["ConcurrencyException", "Records were modified in the meanwhile"]
    assert isinstance(classify("erp", "m", error), RequestRetriable)


def test_a_lock_or_serialization_failure_is_retriable() -> None:
    locked = ["could not obtain lock on row in relation sale_sale", TRACEBACK]
    assert isinstance(classify("erp", "m", locked), RequestRetriable)
    typed = ["x", "Traceback ...\npsycopg.errors.SerializationFailure: could not serialize\n"]
    assert isinstance(classify("erp", "m", typed), RequestRetriable)


def test_an_unexpected_server_error_is_refused_though_its_frames_call_lock() -> None:
    failure = classify("erp", "model.sale.sale.create", ["unsupported operand", TRACEBACK])
    assert isinstance(failure, RequestRefused)
    assert failure.reason == "model.sale.sale.create: Tryton server error: unsupported operand"


def test_values_cross_in_trytons_encoding() -> None:
    assert decimal("4.50") == {"__class__": "Decimal", "decimal": "4.50"}
    assert date("2026-11-22T10:15:00Z") == {
        "__class__": "date",
        "year": 2026,
        "month": 11,
        "day": 22,
    }
    stamp = {"__class__": "datetime", "year": 2026, "month": 12, "day": 6, "hour": 1}
    assert plain([{"a": decimal("1.10")}, stamp]) == [
        {"a": Decimal("1.10")},
        dt.datetime(2026, 12, 6, 1, tzinfo=dt.UTC),
    ]
