"""Signed webhooks: one HMAC scheme declared per connector, verified the same way everywhere.

A :class:`HmacScheme` says where the signature is, how it is encoded, what bytes were signed and
how old a signed timestamp may be. Verification takes several secrets, so a rotated secret and
its predecessor are both accepted while the rotation rolls out, and compares in constant time.

The schemes of the systems the hub meets::

    SHOPIFY            X-Shopify-Hmac-Sha256: base64(HMAC-SHA256(secret, body))
    GITHUB             X-Hub-Signature-256: sha256=hex(HMAC-SHA256(secret, body))
    TIMESTAMPED        <header>: t=<unix time>,v1=hex(HMAC-SHA256(secret, "t.body"))
                       (Stripe's Stripe-Signature, BottleCRM's X-BottleCRM-Signature)
    STANDARD_WEBHOOKS  webhook-signature: v1,base64(HMAC-SHA256(key, "id.timestamp.body")),
                       with webhook-id and webhook-timestamp headers (standardwebhooks.com)

A signed timestamp further than ``tolerance_s`` from now, in either direction, is refused: a
captured request cannot be replayed later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from hub.errors import BadSignature

Encoding = Literal["base64", "hex"]
Layout = Literal["plain", "timestamped", "standard"]


@dataclass(frozen=True)
class HmacScheme:
    header: str
    """The header that carries the signature, as the vendor writes it (looked up in any case)."""
    layout: Layout = "plain"
    """plain: the header is the signature (after ``prefix``); timestamped: ``t=..,v1=..`` pairs,
    the payload ``t.body``; standard: space-separated ``v1,<sig>``, the payload
    ``id.timestamp.body`` from ``id_header`` and ``timestamp_header``."""
    algorithm: str = "sha256"
    encoding: Encoding = "hex"
    prefix: str = ""
    """Text before the signature in the header, e.g. GitHub's ``sha256=``."""
    timestamp_key: str = "t"
    signature_key: str = "v1"
    id_header: str = "webhook-id"
    timestamp_header: str = "webhook-timestamp"
    tolerance_s: float | None = 300.0
    """How far a signed timestamp may be from now; None: not checked (plain has none)."""
    clock: Callable[[], float] = time.time

    def __post_init__(self) -> None:
        if self.algorithm not in {"sha1", "sha256", "sha384", "sha512"}:
            raise ValueError(f"unsupported HMAC algorithm {self.algorithm!r}")

    def with_header(self, header: str) -> HmacScheme:
        return replace(self, header=header)

    def verify(
        self, secrets: Iterable[str | bytes | None], headers: Mapping[str, str], body: bytes
    ) -> None:
        """Return if one of ``secrets`` signed the request; else raise BadSignature saying
        what is wrong (never which secret, nor any expected value)."""
        keys = [self._key(s) for s in secrets if s]
        if not keys:
            raise BadSignature("no webhook secret configured")
        value = _header(headers, self.header)
        if not value:
            raise BadSignature(f"missing {self.header} header")
        payload, given = self._payload_and_signatures(headers, value, body)
        for key in keys:
            expected = self._digest(key, payload)
            if any(hmac.compare_digest(expected, candidate) for candidate in given):
                return
        raise BadSignature(f"{self.header} does not match the body")

    def sign(
        self, secret: str | bytes, body: bytes, timestamp: int | None = None, msg_id: str = ""
    ) -> str:
        """The header value the sender would put on ``body`` (for tests and tools)."""
        key = self._key(secret)
        if self.layout == "plain":
            return self.prefix + self._digest(key, body).decode()
        when = int(self.clock()) if timestamp is None else timestamp
        if self.layout == "timestamped":
            signed = self._digest(key, f"{when}.".encode() + body).decode()
            return f"{self.timestamp_key}={when},{self.signature_key}={signed}"
        signed = self._digest(key, f"{msg_id}.{when}.".encode() + body).decode()
        return f"{self.signature_key},{signed}"

    def _payload_and_signatures(
        self, headers: Mapping[str, str], value: str, body: bytes
    ) -> tuple[bytes, list[bytes]]:
        if self.layout == "plain":
            value = value.strip()
            if not value.startswith(self.prefix):
                raise BadSignature(f"{self.header} does not start with {self.prefix!r}")
            return body, [value.removeprefix(self.prefix).encode()]
        if self.layout == "timestamped":
            stamp, given = None, []
            for part in value.split(","):
                key, _, item = part.strip().partition("=")
                if key == self.timestamp_key:
                    stamp = item
                elif key == self.signature_key:
                    given.append(item.encode())
            when = self._timestamp(stamp)
            return f"{when}.".encode() + body, given
        msg_id = _header(headers, self.id_header)
        if not msg_id:
            raise BadSignature(f"missing {self.id_header} header")
        when = self._timestamp(_header(headers, self.timestamp_header))
        given = [
            sig.encode()
            for version, _, sig in (p.partition(",") for p in value.split())
            if version == self.signature_key
        ]
        return f"{msg_id}.{when}.".encode() + body, given

    def _timestamp(self, stamp: str | None) -> int:
        if stamp is None or not stamp.isdigit() or len(stamp) > 12:
            raise BadSignature(f"{self.header}: missing or malformed timestamp")
        when = int(stamp)
        if self.tolerance_s is not None and abs(self.clock() - when) > self.tolerance_s:
            raise BadSignature(
                f"{self.header}: timestamp is more than {self.tolerance_s:g}s from now "
                "(a replayed or delayed request, or a clock out of sync)"
            )
        return when

    def _key(self, secret: str | bytes) -> bytes:
        if isinstance(secret, bytes):
            return secret
        if self.layout == "standard" and secret.startswith("whsec_"):
            return base64.b64decode(secret.removeprefix("whsec_"))
        return secret.encode()

    def _digest(self, key: bytes, payload: bytes) -> bytes:
        mac = hmac.new(key, payload, getattr(hashlib, self.algorithm)).digest()
        return base64.b64encode(mac) if self.encoding == "base64" else mac.hex().encode()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


SHOPIFY = HmacScheme("X-Shopify-Hmac-Sha256", encoding="base64", tolerance_s=None)
GITHUB = HmacScheme("X-Hub-Signature-256", prefix="sha256=", tolerance_s=None)
TIMESTAMPED = HmacScheme("X-Signature", layout="timestamped")
STANDARD_WEBHOOKS = HmacScheme("webhook-signature", layout="standard", encoding="base64")

__all__ = ["GITHUB", "SHOPIFY", "STANDARD_WEBHOOKS", "TIMESTAMPED", "HmacScheme"]
