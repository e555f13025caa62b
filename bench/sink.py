"""A small, fast HTTP destination for the pipeline benchmark: records what the hub delivers.

Run in its own process (``python -m bench.sink --port N``). Plain asyncio protocol, HTTP/1.1
keep-alive, no framework, so it costs the machine little next to the hub. It answers:

* ``POST /ok/<name>`` - 200; ``POST /fail/<name>`` - 503 (a destination that is down).
  Either way it records the path, the ``Idempotency-Key`` and ``ce-correlationid`` and
  ``ce-time`` headers and the arrival time (``time.time()`` when the last byte of the request
  was read: the same clock the load generator uses, on the same machine).
* ``GET /readyz`` - 200; ``GET /stats`` - requests per path so far (JSON);
  ``GET /records`` - every record so far (JSON: ``[path, key, correlation id, ce-time,
  arrival]`` lists).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import time
from collections import Counter

Record = tuple[str, str, str, str, float]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
FAIL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n"
    b"Retry-After: 1\r\n\r\ndown"
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class Recorder:
    def __init__(self) -> None:
        self.records: list[Record] = []
        self.counts: Counter[str] = Counter()

    def json_response(self, value: object) -> bytes:
        body = json.dumps(value, separators=(",", ":")).encode()
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )


class SinkProtocol(asyncio.Protocol):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buffer
        buf += data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(buf[:end]).split(b"\r\n")
            method, _, rest = lines[0].partition(b" ")
            path = rest.partition(b" ")[0].decode(errors="replace")
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if b"transfer-encoding" in headers:
                self._send(BAD)
                self._close()
                return
            try:
                length = int(headers.get(b"content-length", b"0"))
            except ValueError:
                self._send(BAD)
                self._close()
                return
            if len(buf) < end + 4 + length:
                return  # the body is still coming
            del buf[: end + 4 + length]
            self._send(self.handle(method, path, headers, now))

    def handle(self, method: bytes, path: str, headers: dict[bytes, bytes], now: float) -> bytes:
        rec = self.recorder
        if method == b"POST" and (path.startswith("/ok/") or path.startswith("/fail/")):
            rec.counts[path] += 1
            rec.records.append(
                (
                    path,
                    headers.get(b"idempotency-key", b"").decode(errors="replace"),
                    headers.get(b"ce-correlationid", b"").decode(errors="replace"),
                    headers.get(b"ce-time", b"").decode(errors="replace"),
                    now,
                )
            )
            return OK if path.startswith("/ok/") else FAIL
        if method == b"GET":
            if path == "/readyz":
                return rec.json_response({"status": "ready"})
            if path == "/stats":
                return rec.json_response(dict(rec.counts))
            if path == "/records":
                return rec.json_response(rec.records)
        return NOT_FOUND

    def _send(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def serve(host: str, port: int) -> None:
    recorder = Recorder()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SinkProtocol(recorder), host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
