#!/usr/bin/env python
"""An example gateway: an asyncio TCP server that embeds the ledger through a Committer.

    python examples/gateway/server.py --ledger /tmp/ledger --port 7400

Clients send length-prefixed msgpack requests (protocol.py, README.md); each request's
ops are committed durably (single ops gathered with other clients' into one batch) and
the results sent back, tagged with the request id. A connection may pipeline requests;
replies come as their commits complete. Malformed frames get an error reply and never
reach the ledger; a frame over FRAME_BYTES_MAX closes the connection.

Built on asyncio's Protocol callbacks rather than streams, and a request's reply is
written from its future's done-callback rather than from a task: at a gateway's
request rates a task and two `readexactly` per request would be most of the work.
Runs on uvloop when it is installed (`pip install uvloop`), else on asyncio's loop.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import protocol  # noqa: E402

import cardledger  # noqa: E402

_HEADER = protocol.FRAME_HEADER.size
_LINKED = int(cardledger.OpFlags.LINKED)  # in the low byte of flags
_FLAGS_OFFSET = cardledger.OP_DTYPE.fields["flags"][1]


class Gateway:
    """Serves one ledger through one Committer."""

    def __init__(self, ledger: cardledger.Ledger, **committer_args: int) -> None:
        self.committer = cardledger.Committer(ledger, **committer_args)
        self.requests = 0
        self.refused = 0

    def connection(self) -> "Connection":
        """A protocol instance for one new connection (the server's protocol factory)."""
        return Connection(self)

    def request(self, conn: "Connection", payload: bytes) -> None:
        """Decode one request and submit it; its reply is sent when its commit is durable."""
        try:
            req, ops = protocol.decode_request(payload)
        except protocol.ProtocolError as e:
            self.refused += 1
            conn.send(protocol.encode_error(e.req, str(e)))
            return
        try:
            if len(ops) == 1 and not ops[0][_FLAGS_OFFSET] & _LINKED:
                fut = self.committer.apply_async(ops[0], conn.loop)
            else:
                fut = self.committer.apply_chain_async(protocol.ops_array(ops), conn.loop)
        except cardledger.LedgerError as e:
            conn.send(protocol.encode_error(req, f"{type(e).__name__}: {e}"))
            return
        fut.add_done_callback(functools.partial(self._reply, conn, req))

    def _reply(self, conn: "Connection", req: int, fut: asyncio.Future) -> None:
        if fut.cancelled():
            return
        error = fut.exception()
        if error is not None:
            conn.send(protocol.encode_error(req, f"{type(error).__name__}: {error}"))
            return
        self.requests += 1
        conn.send(protocol.encode_results(req, fut.result()))

    def close(self) -> None:
        """Commit everything accepted, then stop."""
        self.committer.close()


class Connection(asyncio.Protocol):
    """One client connection: splits the byte stream into frames, writes replies.

    Replies that become ready together (one commit resolves many requests) are joined
    into one write. While the socket's send buffer is full, reading stops: a client
    that does not read its replies cannot make the gateway hold unbounded replies.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.transport: asyncio.Transport | None = None
        # The loop serving this connection, looked up once: asyncio.get_running_loop()
        # costs a system call per call on Python 3.11 (see Committer.apply_async).
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:  # noqa: D102
        buf = self.buf
        if not buf and len(data) > _HEADER:
            # The usual case, one client request in flight: `data` is exactly one whole
            # frame, handled without copying it through the buffer.
            size = int.from_bytes(data[:_HEADER], "big")
            if len(data) == _HEADER + size and size <= protocol.FRAME_BYTES_MAX:
                self.gateway.request(self, data[_HEADER:])
                return
        buf += data
        start = 0
        while len(buf) - start >= _HEADER:
            size = int.from_bytes(buf[start : start + _HEADER], "big")
            if size > protocol.FRAME_BYTES_MAX:
                self.send(protocol.encode_error(None, f"frame of {size} bytes exceeds {protocol.FRAME_BYTES_MAX}"))
                self._flush()
                assert self.transport is not None
                self.transport.close()
                buf.clear()
                return
            end = start + _HEADER + size
            if len(buf) < end:
                break
            self.gateway.request(self, bytes(buf[start + _HEADER : end]))
            start = end
        if start:
            del buf[:start]

    def send(self, frame: bytes) -> None:
        """Queue a reply frame; all frames queued in this loop iteration go in one write."""
        if not self.out:
            self.loop.call_soon(self._flush)
        self.out.append(frame)

    def _flush(self) -> None:
        out, self.out = self.out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def pause_writing(self) -> None:  # noqa: D102
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:  # noqa: D102
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: D102
        # Requests already submitted are still committed; their replies have no reader.
        self.transport = None


async def serve_forever(ledger_path: str, host: str, port: int, ready=None) -> None:
    """Run the gateway until cancelled."""
    with cardledger.open(ledger_path, create=True) as led:
        gateway = Gateway(led)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(gateway.connection, host, port)
        if ready is not None:
            ready(server.sockets[0].getsockname()[1])
        try:
            async with server:
                await server.serve_forever()
        finally:
            gateway.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ledger", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7400)
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default=None,
                   help="event loop (default: uvloop when installed)")
    a = p.parse_args()
    if a.loop is None:
        a.loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    coro = serve_forever(a.ledger, a.host, a.port,
                         lambda port: print(f"listening on {a.host}:{port} ({a.loop})", flush=True))
    try:
        if a.loop == "uvloop":
            import uvloop

            uvloop.run(coro)
        else:
            asyncio.run(coro)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
