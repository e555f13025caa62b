"""The real Tryton the connector's tests run against: the template holds what a sale needs.

These talk to Tryton by its JSON-RPC only (no hub code), so a failure here is the test
system's, not the connector's."""

from __future__ import annotations

import pytest

from tests.support.tryton import TrytonError, TrytonServer, setup


def test_the_hub_user_logs_in_and_a_wrong_password_is_refused(tryton: TrytonServer) -> None:
    user_id, session, *_ = tryton.call(
        "common.db.login", setup.HUB_LOGIN, {"password": setup.HUB_PASSWORD}, "en"
    )
    assert isinstance(user_id, int) and session
    with pytest.raises(Exception) as refused:
        tryton.call("common.db.login", setup.HUB_LOGIN, {"password": "not-the-password"}, "en")
    assert "401" in str(refused.value)


def test_the_template_holds_company_warehouse_payment_term_and_category(
    tryton: TrytonServer,
) -> None:
    (company,) = tryton.search_read("company.company", [], ["party.name", "currency.code"])
    assert company["party."]["name"] == setup.COMPANY
    assert company["currency."]["code"] == setup.CURRENCY
    (warehouse,) = tryton.search_read(
        "stock.location", [("code", "=", setup.WAREHOUSE), ("type", "=", "warehouse")], ["id"]
    )
    assert warehouse["id"]
    (config,) = tryton.search_read("account.configuration", [], ["default_customer_payment_term"])
    assert config["default_customer_payment_term"]
    (category,) = tryton.search_read(
        "product.category", [("name", "=", setup.ACCOUNT_CATEGORY)], ["accounting"]
    )
    assert category["accounting"] is True
    (user,) = tryton.search_read("res.user", [("login", "=", setup.HUB_LOGIN)], ["employee"])
    assert user["employee"]


def test_a_sale_made_by_rpc_is_quoted_and_confirmed(tryton: TrytonServer) -> None:
    """What a sale needs when made over RPC (no client on_change): the party's addresses, the
    line's unit and price. Confirming it runs its processing: a shipment waits."""
    (category,) = tryton.search_read(
        "product.category", [("name", "=", setup.ACCOUNT_CATEGORY)], ["id"]
    )
    (unit,) = tryton.search_read("product.uom", [("symbol", "=", "u")], ["id"])
    (template_id,) = tryton.rpc(
        "model.product.template.create",
        [
            {
                "name": "Probe widget",
                "type": "goods",
                "salable": True,
                "default_uom": unit["id"],
                "sale_uom": unit["id"],
                "list_price": {"__class__": "Decimal", "decimal": "12.50"},
                "account_category": category["id"],
                "products": [["create", [{"suffix_code": "PROBE-1"}]]],
            }
        ],
    )
    (product,) = tryton.search_read("product.product", [("template", "=", template_id)], ["id"])
    (party_id,) = tryton.rpc(
        "model.party.party.create",
        [{"name": "Probe Customer", "addresses": [["create", [{"street": "1 Probe Road"}]]]}],
    )
    (address,) = tryton.search_read("party.address", [("party", "=", party_id)], ["id"])
    (sale_id,) = tryton.rpc(
        "model.sale.sale.create",
        [
            {
                "party": party_id,
                "invoice_address": address["id"],
                "shipment_address": address["id"],
                "lines": [
                    [
                        "create",
                        [
                            {
                                "product": product["id"],
                                "quantity": 2.0,
                                "unit": unit["id"],
                                "unit_price": {"__class__": "Decimal", "decimal": "12.50"},
                            }
                        ],
                    ]
                ],
            }
        ],
    )
    tryton.rpc("model.sale.sale.quote", [sale_id])
    tryton.rpc("model.sale.sale.confirm", [sale_id])
    (sale,) = tryton.search_read(
        "sale.sale",
        [("id", "=", sale_id)],
        ["state", "shipment_state", "total_amount", "shipments", "confirmed_by"],
    )
    assert sale["state"] == "processing"
    assert sale["shipment_state"] == "waiting"
    assert sale["total_amount"] == {"__class__": "Decimal", "decimal": "25.00"}
    assert len(sale["shipments"]) == 1
    assert sale["confirmed_by"]


def test_a_user_error_comes_back_as_user_error(tryton: TrytonServer) -> None:
    with pytest.raises(TrytonError) as failed:
        tryton.rpc("model.sale.sale.create", [{"lines": []}])  # no party
    assert failed.value.error[0] == "UserError"
