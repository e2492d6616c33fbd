#!/usr/bin/env python
"""An example gateway: an asyncio TCP server that embeds the ledger through a Committer.

    python examples/gateway/server.py --ledger /tmp/ledger --port 7400

Clients send length-prefixed msgpack requests (protocol.py, README.md); each request's
ops are committed durably (single ops gathered with other clients' into one batch) and
the results sent back, tagged with the request id. A connection may pipeline requests;
replies come as their commits complete. Malformed frames get an error reply and never
reach the ledger; a frame over FRAME_BYTES_MAX closes the connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import protocol  # noqa: E402

import cardledger  # noqa: E402


class Gateway:
    """Serves one ledger through one Committer."""

    def __init__(self, ledger: cardledger.Ledger, **committer_args: int) -> None:
        self.committer = cardledger.Committer(ledger, **committer_args)
        self.requests = 0
        self.refused = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection until it closes."""
        lock = asyncio.Lock()
        tasks: set[asyncio.Task] = set()

        async def reply(frame: bytes) -> None:
            async with lock:
                writer.write(frame)
                await writer.drain()

        async def serve(payload: bytes) -> None:
            try:
                req, ops = protocol.decode_request(payload)
            except protocol.ProtocolError as e:
                self.refused += 1
                await reply(protocol.encode_error(None, str(e)))
                return
            try:
                if len(ops) == 1 and not int(ops[0]["flags"]) & cardledger.OpFlags.LINKED:
                    results = await self.committer.apply_async(ops[0])
                else:
                    results = await asyncio.wrap_future(self.committer.submit_chain(ops))
            except cardledger.LedgerError as e:
                await reply(protocol.encode_error(req, f"{type(e).__name__}: {e}"))
                return
            self.requests += 1
            await reply(protocol.encode_results(req, results))

        try:
            while True:
                header = await reader.readexactly(protocol.FRAME_HEADER.size)
                (size,) = protocol.FRAME_HEADER.unpack(header)
                if size > protocol.FRAME_BYTES_MAX:
                    await reply(protocol.encode_error(None, f"frame of {size} bytes exceeds {protocol.FRAME_BYTES_MAX}"))
                    break
                payload = await reader.readexactly(size)
                t = asyncio.create_task(serve(payload))
                tasks.add(t)
                t.add_done_callback(tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            pass
        finally:
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()

    def close(self) -> None:
        """Commit everything accepted, then stop."""
        self.committer.close()


async def serve_forever(ledger_path: str, host: str, port: int, ready=None) -> None:
    """Run the gateway until cancelled."""
    with cardledger.open(ledger_path) as led:
        gateway = Gateway(led)
        server = await asyncio.start_server(gateway.handle, host, port)
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
    p.add_argument("--switch-interval-us", type=int, default=250,
                   help="sys.setswitchinterval: the event loop and the commit thread hand the GIL "
                        "back and forth on every batch; Python's 5 ms default adds up to 5 ms to each")
    a = p.parse_args()
    sys.setswitchinterval(a.switch_interval_us / 1e6)
    try:
        asyncio.run(serve_forever(a.ledger, a.host, a.port, lambda port: print(f"listening on {a.host}:{port}", flush=True)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
