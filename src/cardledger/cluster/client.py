"""A blocking client of a node's gateway protocol that finds the leader: it sends a
write to any node it knows and, answered with NotLeaderError naming the leader,
sends it there. For tests, drills and scripts; a production client keeps its
connections open the same way.
"""

from __future__ import annotations

import itertools
import socket
from typing import Any

import msgpack

from .. import wire

#: How many redirects one write follows before giving up.
REDIRECTS_MAX = 5


class GatewayError(Exception):
    """A gateway answered with an error (`reply` holds the whole reply)."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(reply.get("error", "error"))
        self.reply = reply

    @property
    def not_leader(self) -> bool:
        """Whether the node refused the write as not the leader (nothing was applied)."""
        return str(self.reply.get("error", "")).startswith("NotLeaderError")


class GatewayClient:
    """Talks to the nodes at `addresses` ("host:port"), one connection per node."""

    def __init__(self, addresses: list[str], timeout_s: float = 10.0) -> None:
        self.addresses = list(addresses)
        self.timeout_s = timeout_s
        self.leader: str | None = None
        self._socks: dict[str, socket.socket] = {}
        self._req = itertools.count(1)

    def close(self) -> None:
        """Close every connection."""
        for s in self._socks.values():
            s.close()
        self._socks.clear()

    def call(self, address: str, message: dict[str, Any]) -> dict[str, Any]:
        """Send one request to `address` and return its reply (OSError if the node
        cannot be reached or the connection breaks: the outcome is then unknown)."""
        sock = self._socks.get(address)
        if sock is None:
            host, port = address.rsplit(":", 1)
            sock = socket.create_connection((host, int(port)), timeout=self.timeout_s)
            sock.settimeout(self.timeout_s)
            self._socks[address] = sock
        try:
            sock.sendall(wire.encode_frame(message))
            size = wire.FRAME_HEADER.unpack(_read(sock, wire.FRAME_HEADER.size))[0]
            reply = msgpack.unpackb(_read(sock, size), raw=False)
        except OSError:
            self._socks.pop(address, None)
            sock.close()
            raise
        return reply  # type: ignore[no-any-return]

    def write(self, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send the ops (one request) to the leader; return their results. A node that
        does not answer is skipped and the same request (the same ids) goes to the
        next: exactly-once makes that safe, and an op applied by the silent node comes
        back EXISTS. GatewayError for an error reply (`not_leader`: certainly not
        applied anywhere); OSError when no node answered, or one took the request and
        did not answer (unknown outcome)."""
        message = {"req": next(self._req), "ops": ops}
        candidates = ([self.leader] if self.leader else []) + [a for a in self.addresses if a != self.leader]
        last_error: BaseException | None = None
        # Once a node took the request and did not answer, its outcome is unknown:
        # a later refusal by another node no longer means "not applied".
        unanswered: OSError | None = None
        for _ in range(REDIRECTS_MAX):
            if not candidates:
                break
            address = candidates.pop(0)
            try:
                reply = self.call(address, message)
            except OSError as e:
                last_error = unanswered = e
                continue
            if "results" in reply:
                self.leader = address
                return reply["results"]  # type: ignore[no-any-return]
            error = GatewayError(reply)
            if not error.not_leader:
                raise error
            leader = reply.get("leader")
            if leader and leader != address:
                if leader in candidates:
                    candidates.remove(leader)
                candidates.insert(0, leader)
            last_error = error
        if isinstance(last_error, GatewayError) and unanswered is None:
            raise last_error
        raise OSError(f"no node answered the write, or one took it and did not answer: {unanswered or last_error}")

    def status(self, address: str) -> dict[str, Any]:
        """A node's status (role, leader, positions, lag)."""
        return self.call(address, {"req": 0, "query": "status"})["status"]  # type: ignore[no-any-return]


def _read(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the gateway closed the connection")
        buf += chunk
    return bytes(buf)
