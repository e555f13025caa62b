"""How the Tryton connector classifies what Tryton's JSON-RPC answers with an error (the
shapes are Tryton 8.2's: trytond/exceptions.py and protocols/jsonrpc.py). The behaviour against
a real Tryton is in tests/tryton/."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from connectors import Delivery
from connectors.tryton import Tryton
from connectors.tryton.rpc import classify, date, decimal, plain
from hub.errors import DeliveryFailed, RequestRefused, RequestRetriable
from tests.support.threaded import serve

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


# --- the sink against a stand-in of Tryton's JSON-RPC that fails as a real one can -----------


@pytest.mark.parametrize(
    ("failure", "retriable", "expected"),
    [
        ("503", True, "HTTP 503"),  # a proxy or Tryton overloaded
        ("500", True, "HTTP 500"),
        ("lock", True, "could not obtain lock"),  # a row locked by another transaction
        ("concurrency", True, "ConcurrencyException"),
        ("user_error", False, "the mapped document's party: model.party.party.create: Tryton"),
    ],
)
async def test_trytons_failures_are_retried_or_dead_lettered(
    failure: str, retriable: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def rpc(request: Request) -> Response:
        call = json.loads(await request.body())
        method = call["method"]
        if method == "common.db.login":
            return JSONResponse({"id": call["id"], "result": [1, "session-1"]})
        if method == "model.res.user.get_preferences":
            return JSONResponse({"id": call["id"], "result": {"language": "en"}})
        if method.endswith(".search_read") or method.endswith(".search"):
            return JSONResponse({"id": call["id"], "result": []})  # nothing exists yet
        if failure in ("503", "500"):
            return PlainTextResponse("unavailable", status_code=int(failure))
        errors = {
            "lock": ["could not obtain lock on row in relation party_party", TRACEBACK],
            "concurrency": ["ConcurrencyException", "Records were modified in the meanwhile"],
            "user_error": ["UserError", ['The value "" for field "Name" is not valid.', ""]],
        }
        return JSONResponse({"id": call["id"], "error": errors[failure]})

    monkeypatch.setenv("TEST_TRYTON_STUB_PASSWORD", "stub-password-0123456789")
    app = Starlette(routes=[Route("/stub/rpc/", rpc, methods=["POST"])])
    with serve(app, lifespan="off") as base:
        options = {
            "url": base,
            "database": "stub",
            "login": "hub",
            "password": "env:TEST_TRYTON_STUB_PASSWORD",
        }
        sink = Tryton("erp", Tryton.Options.model_validate(options))
        document = {"party": {"code": "cus_1", "name": "Ada"}}
        try:
            with pytest.raises(DeliveryFailed) as failed:
                await sink.deliver(Delivery("evt-1", "hub.customer", "cus_1", "c", {}, document))
        finally:
            await sink.close()
    assert failed.value.retriable is retriable
    assert expected in str(failed.value)
    assert "stub-password" not in str(failed.value)
