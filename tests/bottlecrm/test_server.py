"""The real BottleCRM the connector's tests run against: its token API answers and its signed
webhooks reach a server on 127.0.0.1.

These talk to BottleCRM by its REST API only (no hub code but the signature check), so a
failure here is the test system's, not the connector's."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from connectors.signing import HmacScheme
from tests.support.bottlecrm import ApiError, BottleCrmServer

SIGNATURE = HmacScheme("X-BottleCRM-Signature", layout="timestamped")


class _Recorder(http.server.BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []
    handler = type("Recorder", (_Recorder,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/webhooks/crm", received
    finally:
        server.shutdown()
        server.server_close()


def test_the_token_reads_the_api_and_a_wrong_token_is_refused(bottlecrm: BottleCrmServer) -> None:
    listed = bottlecrm.api("GET", "contacts/")
    assert "contact_obj_list" in listed or "results" in listed
    with pytest.raises(ApiError) as refused:
        bottlecrm.api("GET", "contacts/", token="bcrm_pat_not-a-token-0123456789abcdef")
    assert refused.value.status in (401, 403)


def test_a_created_contact_is_sent_as_a_signed_webhook(
    bottlecrm: BottleCrmServer, receiver: tuple[str, list[tuple[dict[str, str], bytes]]]
) -> None:
    url, received = receiver
    bottlecrm.point_webhook(url)
    created = bottlecrm.api(
        "POST",
        "contacts/",
        {"first_name": "Ada", "last_name": "Lovelace", "email": "ada.server@example.com"},
    )
    # Celery runs eagerly: the webhook is sent when the request's transaction commits, before
    # the answer; the delivery log says so.
    deliveries = bottlecrm.deliveries()
    assert [(d["event"], d["status"], d["response_status"]) for d in deliveries] == [
        ("contact.created", "succeeded", 204)
    ], bottlecrm.log_tail()
    ((headers, body),) = received
    SIGNATURE.verify([bottlecrm.webhook_secret], headers, body)
    with pytest.raises(Exception, match="does not match"):
        SIGNATURE.verify(["whsec_another-secret-0123456789"], headers, body)
    assert headers["x-bottlecrm-event"] == "contact.created"
    assert headers["x-bottlecrm-delivery"] == deliveries[0]["id"]
    assert abs(int(headers["x-bottlecrm-signature"].split(",")[0][2:]) - time.time()) < 600

    payload = json.loads(body)
    assert payload["event"] == "contact.created"
    assert payload["data"]["id"] == created["id"]
    assert payload["data"]["email"] == "ada.server@example.com"
