"""Shopify webhooks: HMAC verification (with secret rotation) and event description."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.shopify import Shopify, ShopifyOptions, sign
from hub.errors import BadSignature, MalformedPayload

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "shopify" / "orders_create.json"
BODY = FIXTURE.read_bytes()


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_SECRET", "new-shopify-secret")
    monkeypatch.setenv("SHOP_OLD_SECRET", "old-shopify-secret")


def shop(**options: Any) -> Shopify:
    return Shopify(
        "shop", ShopifyOptions.model_validate({"webhook_secret": "env:SHOP_SECRET", **options})
    )


def headers(body: bytes = BODY, secret: str = "new-shopify-secret", **extra: str) -> dict[str, str]:
    return {"x-shopify-hmac-sha256": sign(secret, body), **extra}


def test_sign_is_base64_hmac_sha256_of_the_body() -> None:
    expected = base64.b64encode(hmac.new(b"k", b"{}", hashlib.sha256).digest()).decode()
    assert sign("k", b"{}") == expected
    assert sign(b"k", b"{}") == expected
    assert sign("k", b"{ }") != expected


def test_correct_signature_passes() -> None:
    shop().verify(headers(), BODY)


def test_signature_with_surrounding_whitespace_passes() -> None:
    shop().verify({"x-shopify-hmac-sha256": f" {sign('new-shopify-secret', BODY)}\n"}, BODY)


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(BadSignature, match="does not match the body") as info:
        shop().verify(headers(secret="other-secret"), BODY)
    assert info.value.status_code == 401


def test_tampered_body_is_refused() -> None:
    tampered = BODY.replace(b'"total_price":', b'"total_price": ', 1)
    assert tampered != BODY
    with pytest.raises(BadSignature):
        shop().verify(headers(), tampered)


@pytest.mark.parametrize("given", [{}, {"x-shopify-hmac-sha256": ""}])
def test_missing_signature_is_refused(given: dict[str, str]) -> None:
    with pytest.raises(BadSignature, match="missing X-Shopify-Hmac-Sha256"):
        shop().verify(given, BODY)


def test_previous_secret_is_accepted_during_rotation() -> None:
    rotating = shop(previous_webhook_secret="env:SHOP_OLD_SECRET")
    rotating.verify(headers(secret="new-shopify-secret"), BODY)
    rotating.verify(headers(secret="old-shopify-secret"), BODY)
    with pytest.raises(BadSignature):
        rotating.verify(headers(secret="older-secret"), BODY)
    # without the rotation option the old secret is no longer good
    with pytest.raises(BadSignature):
        shop().verify(headers(secret="old-shopify-secret"), BODY)


def test_shop_domain_must_match_when_configured() -> None:
    bound = shop(shop_domain="acme.myshopify.com")
    bound.verify(headers(**{"x-shopify-shop-domain": "ACME.myshopify.com"}), BODY)
    with pytest.raises(BadSignature, match="Shop-Domain"):
        bound.verify(headers(**{"x-shopify-shop-domain": "evil.myshopify.com"}), BODY)
    with pytest.raises(BadSignature, match="Shop-Domain"):
        bound.verify(headers(), BODY)
    # an unbound connection ignores the header
    shop().verify(headers(**{"x-shopify-shop-domain": "evil.myshopify.com"}), BODY)


def test_bad_signature_takes_precedence_over_domain() -> None:
    bound = shop(shop_domain="acme.myshopify.com")
    with pytest.raises(BadSignature, match="does not match the body"):
        bound.verify(
            headers(secret="wrong", **{"x-shopify-shop-domain": "acme.myshopify.com"}), BODY
        )


def test_describe_reads_topic_subject_and_delivery_id() -> None:
    payload = json.loads(BODY)
    event = shop().describe(
        {
            "x-shopify-topic": "orders/create",
            "x-shopify-webhook-id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        },
        payload,
    )
    assert event.type == "orders/create"
    assert event.subject == str(payload["id"]) == "820982911946154508"
    assert event.delivery_id == "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"


def test_describe_without_id_or_webhook_id() -> None:
    event = shop().describe({"x-shopify-topic": "shop/update"}, {"name": "x"})
    assert (event.type, event.subject, event.delivery_id) == ("shop/update", None, None)
    event = shop().describe({"x-shopify-topic": "app/uninstalled"}, [1, 2])
    assert event.subject is None


@pytest.mark.parametrize("given", [{}, {"x-shopify-topic": ""}])
def test_describe_without_topic_is_malformed(given: dict[str, str]) -> None:
    with pytest.raises(MalformedPayload, match="missing X-Shopify-Topic") as info:
        shop().describe(given, {"id": 1})
    assert info.value.status_code == 400


def test_secret_is_not_shown_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    options = ShopifyOptions.model_validate({"webhook_secret": "env:SHOP_SECRET"})
    assert "new-shopify-secret" not in repr(options)
    assert "new-shopify-secret" not in str(options)
