"""A stand-in for an ERP's order import, for trying the `http` destination (`make demo-erp`).

Listens on 127.0.0.1:9000 (``--port``), prints each request's method, path, the headers the hub
sends and the JSON body, and answers ``200 {"status": "received"}``. A request whose
``Authorization`` header differs from the ``ERP_AUTHORIZATION`` environment variable (when it is
set) gets ``401``, as a real system would refuse it; the header's value is never printed. A
repeated ``Idempotency-Key`` is answered 200 again and marked as a repeat.

Only the Python standard library: ``python3 examples/receiver.py [--port 9000]``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHOWN = ("content-type", "idempotency-key")


class Receiver(BaseHTTPRequestHandler):
    server_version = "demo-erp"
    seen: set[str] = set()
    expected = os.environ.get("ERP_AUTHORIZATION")

    def do_POST(self) -> None:
        self._receive()

    def do_PUT(self) -> None:
        self._receive()

    def _receive(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        key = self.headers.get("idempotency-key") or ""
        lines = [f"{self.command} {self.path}"]
        lines += [f"  {k}: {v}" for k, v in self.headers.items() if k.lower() in SHOWN]
        lines += [f"  {k}: {v}" for k, v in self.headers.items() if k.lower().startswith("ce-")]
        given = self.headers.get("authorization")
        if self.expected is not None and not hmac.compare_digest(
            (given or "").encode(), self.expected.encode()
        ):
            lines.append("  authorization: wrong or missing -> 401")
            print("\n".join(lines), flush=True)
            self._answer(401, {"error": "unauthorized"})
            return
        if given is not None:
            lines.append("  authorization: ok")
        if key in self.seen:
            lines.append("  (a repeat of an idempotency key already received)")
        self.seen.add(key)
        try:
            lines.append(json.dumps(json.loads(body), indent=2))
        except ValueError:
            lines.append(f"  (not JSON: {len(body)} bytes)")
        print("\n".join(lines), flush=True)
        self._answer(200, {"status": "received"})

    def _answer(self, status: int, payload: dict[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # each request is printed whole above


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Receiver)
    print(f"demo ERP listening on http://{args.host}:{args.port}; Ctrl-C to stop", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
