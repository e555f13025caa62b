"""Shopify: webhooks signed with the app's client secret.

Shopify signs each webhook with ``X-Shopify-Hmac-Sha256``: the base64 of the HMAC-SHA256 of the
raw request body, keyed with the app's client secret. ``X-Shopify-Topic`` names the event
(``orders/create``) and ``X-Shopify-Webhook-Id`` stays the same across Shopify's retries of one
delivery, so it is the key for deduplication.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from hub.errors import BadSignature, MalformedPayload

from .base import ConnectorOptions, InboundEvent, Secret, WebhookSource
from .registry import register
from .signing import SHOPIFY


class ShopifyOptions(ConnectorOptions):
    webhook_secret: Secret = Field(description="The app's client secret that signs webhooks.")
    previous_webhook_secret: Secret | None = Field(
        None, description="Also accepted while a rotated secret is rolled out."
    )
    shop_domain: str | None = Field(
        None,
        description="If set, X-Shopify-Shop-Domain must equal it (e.g. acme.myshopify.com).",
        examples=["acme.myshopify.com"],
    )


def sign(secret: str | bytes, body: bytes) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value for ``body``."""
    return SHOPIFY.sign(secret, body)


@register
class Shopify(WebhookSource):
    name = "shopify"
    title = "Shopify"
    description = "Shopify store: receives signed webhooks (orders, customers, products)."
    Options = ShopifyOptions
    options: ShopifyOptions

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        secrets = [self.options.webhook_secret, self.options.previous_webhook_secret]
        SHOPIFY.verify((s.get_secret_value() for s in secrets if s is not None), headers, body)
        domain = self.options.shop_domain
        if domain and headers.get("x-shopify-shop-domain", "").lower() != domain.lower():
            raise BadSignature("X-Shopify-Shop-Domain does not match this connection")

    def describe(self, headers: Mapping[str, str], payload: Any) -> InboundEvent:
        topic = headers.get("x-shopify-topic")
        if not topic:
            raise MalformedPayload("missing X-Shopify-Topic header")
        subject = None
        if isinstance(payload, dict) and payload.get("id") is not None:
            subject = str(payload["id"])
        return InboundEvent(
            type=topic, subject=subject, delivery_id=headers.get("x-shopify-webhook-id")
        )
