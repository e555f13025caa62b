"""The committed JSON Schemas match hub/canonical.py, and schema and model agree on documents."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import ValidationError

from hub.canonical import ENTITY_MODELS, SCHEMA_BASE, dump
from hub.envelope import CloudEvent, derived_id, new_id
from hub.schemas import (
    SCHEMA_NAMES,
    check_schemas,
    compiled_validator,
    entity_schema,
    write_schemas,
)

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"

Doc = dict[str, Any]


# -- the files -----------------------------------------------------------------------------------


def test_committed_schemas_match_the_models() -> None:
    stale = check_schemas(SCHEMAS_DIR)
    assert not stale, (
        f"schemas/ is out of date with hub/canonical.py ({', '.join(stale)}): "
        "run `hub schemas export` and commit the result"
    )


def test_check_schemas_reports_missing_and_changed_files(tmp_path: Path) -> None:
    written = write_schemas(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{n}.json" for n in SCHEMA_NAMES)
    assert check_schemas(tmp_path) == []
    (tmp_path / "order.json").unlink()
    product = tmp_path / "product.json"
    product.write_text(product.read_text().replace('"name"', '"title"'))
    assert sorted(check_schemas(tmp_path)) == ["order.json", "product.json"]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_schema_is_valid_draft_2020_12(name: str) -> None:
    text = (SCHEMAS_DIR / f"{name}.json").read_text(encoding="utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"{SCHEMA_BASE}{name}.json"
    assert schema["title"] and schema["description"]
    assert text.endswith("}\n")


def test_entity_schema_is_deterministic_and_forbids_unknown_fields() -> None:
    for name in ENTITY_MODELS:
        assert entity_schema(name) == entity_schema(name)
        assert entity_schema(name)["additionalProperties"] is False


# -- schema and model agree ------------------------------------------------------------------------

EXT = [{"system": "shop", "id": "5123456789"}, {"system": "erp", "id": "SO-2026-00042"}]

ADDRESS: Doc = {
    "name": "Anna Schmidt",
    "line1": "Torstraße 12",
    "city": "Berlin",
    "postal_code": "10119",
    "country": "DE",
    "phone": "+4930123456",
}

ORDER: Doc = {
    "id": "ord_7f3c9a1e2b",
    "external_refs": EXT,
    "number": "#1001",
    "status": "paid",
    "currency": "EUR",
    "created_at": "2026-11-22T10:15:00Z",
    "updated_at": "2026-11-22T10:16:30.250Z",
    "customer": {
        "id": "cus_41d2e8b0aa",
        "external_refs": [{"system": "shop", "id": "7001"}],
        "email": "anna.schmidt@example.de",
        "first_name": "Anna",
        "last_name": "Schmidt",
        "phone": "+4915112345678",
    },
    "billing_address": ADDRESS,
    "shipping_address": {**ADDRESS, "company": "Schmidt GmbH"},
    "lines": [
        {
            "line_id": "11001",
            "product_id": "prd_0a9b8c7d6e",
            "sku": "MUG-BLK",
            "name": "Mug, black",
            "quantity": "2",
            "unit_price": "12.50",
            "discount": "0",
            "tax": "3.99",
            "total": "25.00",
        },
        {
            "line_id": "11002",
            "sku": "TEE-M",
            "name": "T-shirt, size M",
            "quantity": "1",
            "unit_price": "19.90",
            "tax": "3.18",
            "total": "19.90",
        },
    ],
    "subtotal": "44.90",
    "shipping_total": "4.90",
    "discount_total": "0",
    "tax_total": "7.95",
    "total": "49.80",
    "note": "Please leave at the door.",
    "tags": ["web", "gift"],
}

CUSTOMER: Doc = {
    "id": "cus_41d2e8b0aa",
    "external_refs": [{"system": "shop", "id": "7001"}, {"system": "crm", "id": "0035g00000XyZ"}],
    "email": "anna.schmidt@example.de",
    "first_name": "Anna",
    "last_name": "Schmidt",
    "phone": "+4915112345678",
    "addresses": [ADDRESS],
    "created_at": "2025-03-01T08:00:00Z",
    "updated_at": "2026-11-22T10:15:00Z",
}

PRODUCT: Doc = {
    "id": "prd_0a9b8c7d6e",
    "external_refs": [{"system": "shop", "id": "889900"}, {"system": "erp", "id": "MUG-BLK"}],
    "sku": "MUG-BLK",
    "name": "Mug, black",
    "description": "Stoneware, 330 ml.",
    "price": "12.50",
    "currency": "EUR",
    "unit": "each",
    "active": True,
}

INVENTORY: Doc = {
    "id": "inv_prd_0a9b8c7d6e_BER1",
    "external_refs": [{"system": "wms", "id": "MUG-BLK@BER1"}],
    "product_id": "prd_0a9b8c7d6e",
    "sku": "MUG-BLK",
    "location": "BER1",
    "on_hand": "120",
    "available": "97",
    "unit": "each",
}

VALID: dict[str, Doc] = {
    "order": ORDER,
    "customer": CUSTOMER,
    "product": PRODUCT,
    "inventory": INVENTORY,
}


def changed(doc: Doc, edit: Callable[[Doc], object]) -> Doc:
    new = copy.deepcopy(doc)
    edit(new)
    return new


def model_accepts(name: str, doc: Doc, *, strict: bool) -> bool:
    """As the hub reads canonical data off Kafka: JSON text into the model."""
    try:
        # strict=None, not False: an explicit False would override field-level StrictBool.
        ENTITY_MODELS[name].model_validate_json(json.dumps(doc), strict=strict or None)
    except ValidationError:
        return False
    return True


def schema_accepts(name: str, doc: Doc) -> bool:
    return bool(compiled_validator(name).is_valid(doc))


CASES = (
    [pytest.param(name, doc, True, id=f"{name}-valid") for name, doc in VALID.items()]
    + [
        pytest.param("order", doc, False, id=case_id)
        for case_id, doc in {
            "order-float-money": changed(ORDER, lambda d: d["lines"][1].update(unit_price=19.9)),
            "order-float-total": changed(ORDER, lambda d: d.update(total=49.8)),
            "order-lowercase-currency": changed(ORDER, lambda d: d.update(currency="eur")),
            "order-country-name": changed(
                ORDER, lambda d: d["shipping_address"].update(country="Germany")
            ),
            "order-offset-timestamp": changed(
                ORDER, lambda d: d.update(created_at="2026-11-22T12:15:00+02:00")
            ),
            "order-no-lines": changed(ORDER, lambda d: d.update(lines=[])),
            "order-unknown-field": changed(ORDER, lambda d: d.update(channel="web")),
            "order-unknown-line-field": changed(ORDER, lambda d: d["lines"][0].update(weight="1")),
            "order-unknown-status": changed(ORDER, lambda d: d.update(status="shipped")),
            "order-missing-total": changed(ORDER, lambda d: d.pop("total")),
            "order-comma-decimal": changed(ORDER, lambda d: d.update(subtotal="44,90")),
            # Python's re.search lets `$` match before a final newline; ECMA-262 and pydantic don't.
            "order-money-trailing-newline": changed(ORDER, lambda d: d.update(total="49.80\n")),
        }.items()
    ]
    + [
        pytest.param(name, doc, False, id=case_id)
        for case_id, name, doc in [
            (
                "customer-no-external-refs",
                "customer",
                changed(CUSTOMER, lambda d: d.update(external_refs=[])),
            ),
            (
                "customer-lowercase-country",
                "customer",
                changed(CUSTOMER, lambda d: d["addresses"][0].update(country="de")),
            ),
            ("product-comma-price", "product", changed(PRODUCT, lambda d: d.update(price="12,50"))),
            ("product-empty-name", "product", changed(PRODUCT, lambda d: d.update(name=""))),
            (
                "inventory-number-quantity",
                "inventory",
                changed(INVENTORY, lambda d: d.update(on_hand=120)),
            ),
            ("inventory-no-location", "inventory", changed(INVENTORY, lambda d: d.pop("location"))),
        ]
    ]
)


@pytest.mark.parametrize(("name", "doc", "valid"), CASES)
def test_schema_and_model_agree(name: str, doc: Doc, valid: bool) -> None:
    verdicts = {
        "model": model_accepts(name, doc, strict=False),
        "model (strict)": model_accepts(name, doc, strict=True),
        "schema": schema_accepts(name, doc),
    }
    assert verdicts == dict.fromkeys(verdicts, valid)


def test_schema_and_model_agree_on_non_boolean_active() -> None:
    test_schema_and_model_agree(
        "product", changed(PRODUCT, lambda d: d.update(active="yes")), False
    )


@pytest.mark.parametrize("name", ENTITY_MODELS)
def test_what_the_hub_emits_validates(name: str) -> None:
    model = ENTITY_MODELS[name].model_validate(VALID[name])
    assert compiled_validator(name).is_valid(dump(model))
    assert compiled_validator(name).is_valid(model.model_dump(mode="json"))


# -- envelope --------------------------------------------------------------------------------------


def test_envelope_schema_accepts_real_attributes_and_requires_id() -> None:
    first = CloudEvent(
        id=new_id(),
        source="/connections/shop",
        type="hub.ingest",
        data=b"{}",
        subject="orders/5123456789",
        key="ord_7f3c9a1e2b",
        extensions={"partitionkey": "ord_7f3c9a1e2b"},
    )
    derived = first.derive(
        id=derived_id(first.id, "order"),
        source="/hub/mapper",
        type="hub.canonical.order",
        data=json.dumps(ORDER).encode(),
    )
    validator = compiled_validator("envelope")
    for event in (first, derived):
        attributes = event.attributes()
        assert validator.is_valid(attributes), list(validator.iter_errors(attributes))
        assert validator.is_valid({**attributes, "datacontenttype": event.datacontenttype})
    no_id = {k: v for k, v in first.attributes().items() if k != "id"}
    assert not validator.is_valid(no_id)
    assert not validator.is_valid({**first.attributes(), "specversion": "0.3"})
