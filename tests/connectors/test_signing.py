"""The signed-webhook helper (connectors/signing.py): each scheme against what its vendor
documents, forged and replayed requests refused, secrets rotated."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from connectors.signing import GITHUB, SHOPIFY, STANDARD_WEBHOOKS, TIMESTAMPED, HmacScheme
from hub.errors import BadSignature

BODY = b'{"id": 820982911946154508, "email": "jon@example.com"}'
NOW = 1_733_390_000


def at(scheme: HmacScheme, now: float = NOW) -> HmacScheme:
    from dataclasses import replace

    return replace(scheme, clock=lambda: now)


def test_standard_webhooks_published_test_vector() -> None:
    scheme = at(STANDARD_WEBHOOKS, 1614265330)
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert (
        scheme.sign(secret, body, timestamp=1614265330, msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek")
        == expected
    )
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": f"v1,bm9wZQ== {expected}",  # several signatures: any one may match
    }
    scheme.verify([secret], headers, body)
    with pytest.raises(BadSignature, match="does not match"):
        scheme.verify([secret], {**headers, "webhook-id": "msg_other"}, body)
    with pytest.raises(BadSignature, match="missing webhook-id"):
        scheme.verify([secret], {k: v for k, v in headers.items() if k != "webhook-id"}, body)


def test_shopify_is_base64_hmac_sha256_of_the_raw_body() -> None:
    digest = hmac.new(b"shpss_secret", BODY, hashlib.sha256).digest()
    assert SHOPIFY.sign("shpss_secret", BODY) == base64.b64encode(digest).decode()
    SHOPIFY.verify(
        ["shpss_secret"], {"x-shopify-hmac-sha256": SHOPIFY.sign("shpss_secret", BODY)}, BODY
    )


def test_github_is_prefixed_hex() -> None:
    value = "sha256=" + hmac.new(b"gh", BODY, hashlib.sha256).hexdigest()
    assert GITHUB.sign("gh", BODY) == value
    GITHUB.verify(["gh"], {"X-Hub-Signature-256": value}, BODY)
    with pytest.raises(BadSignature, match="does not start with 'sha256='"):
        GITHUB.verify(["gh"], {"X-Hub-Signature-256": value.removeprefix("sha256=")}, BODY)


def test_timestamped_signs_t_dot_body_in_hex_and_refuses_stale_and_future_requests() -> None:
    scheme = at(TIMESTAMPED.with_header("X-BottleCRM-Signature"))
    mac = hmac.new(b"crm-secret", f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    value = f"t={NOW},v1={mac}"
    assert scheme.sign("crm-secret", BODY) == value
    scheme.verify(["crm-secret"], {"x-bottlecrm-signature": value}, BODY)
    for skew in (301, -301):
        with pytest.raises(BadSignature, match="more than 300s from now"):
            at(scheme, NOW + skew).verify(["crm-secret"], {"x-bottlecrm-signature": value}, BODY)
    at(scheme, NOW + 299).verify(["crm-secret"], {"x-bottlecrm-signature": value}, BODY)
    for malformed in (f"v1={mac}", f"t=soon,v1={mac}", f"t={'9' * 40},v1={mac}"):
        with pytest.raises(BadSignature, match="malformed timestamp"):
            scheme.verify(["crm-secret"], {"x-bottlecrm-signature": malformed}, BODY)
    # the timestamp is signed: moving it forward breaks the signature
    moved = f"t={NOW + 10},v1={mac}"
    with pytest.raises(BadSignature, match="does not match"):
        scheme.verify(["crm-secret"], {"x-bottlecrm-signature": moved}, BODY)


@pytest.mark.parametrize("scheme", [SHOPIFY, GITHUB, at(TIMESTAMPED), at(STANDARD_WEBHOOKS)])
def test_forged_tampered_and_rotated(scheme: HmacScheme) -> None:
    def headers(secret: str, body: bytes = BODY) -> dict[str, str]:
        return {
            scheme.header.lower(): scheme.sign(secret, body, msg_id="msg_1"),
            "webhook-id": "msg_1",
            "webhook-timestamp": str(NOW),
        }

    scheme.verify(["new-secret", "old-secret"], headers("old-secret"), BODY)  # during rotation
    scheme.verify(["new-secret", None], headers("new-secret"), BODY)
    with pytest.raises(BadSignature, match="does not match"):
        scheme.verify(["new-secret"], headers("old-secret"), BODY)  # after it
    with pytest.raises(BadSignature, match="does not match"):
        scheme.verify(["new-secret"], headers("new-secret"), BODY + b" ")
    with pytest.raises(BadSignature, match="missing"):
        scheme.verify(["new-secret"], {}, BODY)
    with pytest.raises(BadSignature, match="no webhook secret"):
        scheme.verify([None, ""], headers("new-secret"), BODY)


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported HMAC algorithm"):
        HmacScheme("X-Sig", algorithm="md5")
