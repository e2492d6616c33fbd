"""A node's gateway: the example gateway's protocol (length-prefixed msgpack, see
examples/gateway/README.md) on the node's `--listen` address, in a thread of its
own (`cardledger-gateway`).

Writes: the leader commits them through its Committer (replicated: see node.py) and
answers with the results. A follower does not forward: it answers every write with
an error naming the leader's gateway address,

    {"req": 7, "error": "NotLeaderError: ...", "leader": "127.0.0.1:7402"}

("leader" is "" while no leader is known), and the client sends it there. Nothing
was applied. Reads, which any node answers from its own ledger:

    {"req": 8, "query": "status"}                -> {"req": 8, "status": {...}}
    {"req": 9, "query": "balance", "account": 10} -> {"req": 9, "balance_fen": 1234,
                                                     "journal_seq": ..., "lag_s": ...}
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

import msgpack

from .. import wire
from ..errors import AccountNotFoundError, NotLeaderError

if TYPE_CHECKING:
    from .node import Node

_HEADER = wire.FRAME_HEADER.size


class NodeGateway:
    """Serves one node's gateway protocol on its own event loop thread."""

    def __init__(self, node: "Node") -> None:
        self.node = node
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="cardledger-gateway", daemon=True)
        self._server: Any = None

    def start(self, listen: tuple[str, int]) -> str:
        """Listen on (host, port); return the address bound, "host:port"."""
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, listen[0], listen[1]), self.loop)
        self._server = fut.result(10)
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    def stop(self) -> None:
        """Stop listening and end the loop thread."""
        async def close() -> None:
            """Close the listening socket (in the loop's thread)."""
            if self._server is not None:
                self._server.close()

        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pending: set[asyncio.Task] = set()
        try:
            while True:
                header = await reader.readexactly(_HEADER)
                size = wire.FRAME_HEADER.unpack(header)[0]
                if size > wire.FRAME_BYTES_MAX:
                    writer.write(wire.encode_error(None, f"frame of {size} bytes exceeds {wire.FRAME_BYTES_MAX}"))
                    break
                payload = await reader.readexactly(size)
                task = asyncio.ensure_future(self._request(payload, writer))
                pending.add(task)
                task.add_done_callback(pending.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            writer.close()

    async def _request(self, payload: bytes, writer: asyncio.StreamWriter) -> None:
        node = self.node
        query = _query_of(payload)
        if query is not None:
            writer.write(wire.encode_frame(await self._answer(query)))
            return
        try:
            req, rows = wire.decode_request(payload)
        except wire.ProtocolError as e:
            writer.write(wire.encode_error(e.req, str(e)))
            return
        if node.role != "leader":
            writer.write(_not_leader(req, NotLeaderError(f"node {node.name} is not the leader", node.leader_address)))
            return
        try:
            results = await node.committer.apply_chain_async(wire.ops_array(rows), self.loop)
        except NotLeaderError as e:
            writer.write(_not_leader(req, e))
            return
        except Exception as e:
            writer.write(wire.encode_error(req, f"{type(e).__name__}: {e}"))
            return
        writer.write(wire.encode_results(req, results))

    async def _answer(self, query: dict) -> dict:
        node = self.node
        req = query.get("req")
        what = query.get("query")
        loop = asyncio.get_running_loop()
        if what == "status":
            return {"req": req, "status": await loop.run_in_executor(None, node.status)}
        if what == "balance":
            account = query.get("account")
            if type(account) is not int:
                return {"req": req, "error": '"account" must be an integer'}
            try:
                balance = await loop.run_in_executor(None, node.ledger.balance, account)
            except AccountNotFoundError as e:
                return {"req": req, "error": f"AccountNotFoundError: {e}"}
            status = node.status()
            return {"req": req, "balance_fen": balance, "journal_seq": status["journal_seq"], "lag_s": status["lag_s"]}
        return {"req": req, "error": f"unknown query {what!r}: status or balance"}


def _query_of(payload: bytes) -> dict | None:
    """The request as a query map if it is one ({"req", "query", ...}), else None."""
    try:
        msg = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception:
        return None
    if type(msg) is dict and "query" in msg:
        return msg
    return None


def _not_leader(req: int, e: NotLeaderError) -> bytes:
    """The error reply for a write this node does not take: names the leader."""
    return wire.encode_frame({"req": req, "error": f"NotLeaderError: {e}", "leader": e.leader})
