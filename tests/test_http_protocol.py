"""hub.api.protocol: the writes of one loop turn leave as one, in order, and nothing is lost
when the connection closes right after them. Real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

from hub.api.protocol import _Corked


class Counting:
    """The real transport, with its write calls counted."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def test_writes_of_one_turn_leave_as_one_and_close_sends_what_is_pending() -> None:
    received = bytearray()
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await reader.read())  # until the client closes
        done.set()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
    counting = Counting(transport)  # type: ignore[arg-type]
    corked = _Corked(counting, loop)  # type: ignore[arg-type]

    corked.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n")
    corked.write(b"")
    corked.write(b"{}")
    assert counting.writes == []  # not yet: at the end of this turn
    await asyncio.sleep(0)
    assert counting.writes == [b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}"]

    corked.writelines([b"second ", b"turn"])
    corked.write(b"; closed at once")
    corked.close()  # before the turn ends: flushed first, not dropped
    await done.wait()
    server.close()
    assert counting.writes[1:] == [b"second turn; closed at once"]
    assert (
        bytes(received)
        == b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}second turn; closed at once"
    )
