#!/usr/bin/env python
"""An example gateway: an asyncio TLS server that embeds the ledger through a Committer.

    python examples/gateway/server.py --ledger /tmp/ledger --port 7400 \
        --cert server.pem --key server.key --ca ca.pem --clients clients.toml

Every client authenticates with a certificate signed by the CA in --ca (TLS 1.2 or
later); --clients maps each certificate, by its SHA-256 fingerprint, to the range of
sources it may use (mapping.py, README.md). A connection whose certificate is missing,
signed by another CA, expired or not in the mapping never reaches the protocol: its
handshake fails, or it is closed right after the handshake before any of its bytes is
read. `--plain` serves plain TCP without any authentication instead, on a loopback
address only: for local benchmarking.

Clients send length-prefixed msgpack requests (protocol.py, README.md); each request's
ops are committed durably (single ops gathered with other clients' into one batch) and
the results sent back, tagged with the request id. A connection may pipeline requests;
replies come as their commits complete. Malformed frames, and requests with an op whose
source is outside the connection's range, get an error reply and never reach the
ledger; a frame over FRAME_BYTES_MAX closes the connection.

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
import ipaddress
import logging
import os
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import protocol  # noqa: E402
from mapping import ClientMap, MappingError  # noqa: E402

import cardledger  # noqa: E402

_HEADER = protocol.FRAME_HEADER.size
_LINKED = int(cardledger.OpFlags.LINKED)  # in the low byte of flags
_FLAGS_OFFSET = cardledger.OP_DTYPE.fields["flags"][1]
#: Seconds a client has to finish its TLS handshake.
HANDSHAKE_SECONDS_MAX = 10.0
#: Connections served at once by default; one more is closed as it arrives. Each holds
#: at most a partial frame and its unsent replies, so this bounds the gateway's memory.
CONNECTIONS_MAX_DEFAULT = 4096
log = logging.getLogger("gateway")


def tls_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """The server's TLS context: TLS 1.2 or later, its certificate `cert`/`key`, and a
    client certificate required, signed by the CA(s) in `ca` (chain and validity
    period checked by OpenSSL during the handshake)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca)
    ctx.options |= ssl.OP_NO_RENEGOTIATION
    return ctx


class Gateway:
    """Serves one ledger through one Committer.

    `clients` (a ClientMap) makes it an authenticated gateway: each connection must
    present a mapped certificate (served over TLS with `tls_context`) and may use only
    its sources. None serves every connection with any source (plain TCP, for local
    benchmarks). `connections_max`: connections served at once; one more is closed as
    soon as it is accepted (after its handshake), counted in `refused_busy`."""

    def __init__(self, ledger: cardledger.Ledger, clients: ClientMap | None = None, *,
                 connections_max: int = CONNECTIONS_MAX_DEFAULT, **committer_args: int) -> None:
        if connections_max < 1:
            raise ValueError(f"connections_max must be at least 1, got {connections_max}")
        self.committer = cardledger.Committer(ledger, **committer_args)
        self.clients = clients
        self.connections_max = connections_max
        self.refused_busy = 0  # connections closed on arrival: connections_max were open
        self.connections: set[Connection] = set()
        self.requests = 0
        self.refused = 0  # requests refused: malformed, or an op outside the connection's sources
        self.refused_sources = 0  # of which: an op outside the connection's sources
        self.refused_connections = 0  # connections closed after the handshake: certificate not mapped
        self.served_connections = 0  # connections that reached the protocol

    def connection(self) -> "Connection":
        """A protocol instance for one new connection (the server's protocol factory)."""
        return Connection(self)

    def buffered_bytes(self) -> int:
        """Bytes of partial frames held for all open connections (each at most a frame)."""
        return sum(len(c.buf) for c in self.connections)

    def request(self, conn: "Connection", payload: bytes) -> None:
        """Decode one request and submit it; its reply is sent when its commit is durable."""
        try:
            req, ops = protocol.decode_request(payload, conn.sources)
        except protocol.ProtocolError as e:
            self.refused += 1
            if isinstance(e, protocol.SourceNotAllowedError):
                self.refused_sources += 1
                log.warning("%s: request %s refused: %s", conn.peer, e.req, e)
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
        self.authorized = False
        self.sources: tuple[int, int] | None = None  # None: any source (plain TCP)
        self.peer = "?"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # noqa: D102
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        if len(self.gateway.connections) >= self.gateway.connections_max:
            self.gateway.refused_busy += 1
            log.warning("%s: closed: %d connections are open already", self.peer, self.gateway.connections_max)
            transport.close()
            return
        clients = self.gateway.clients
        if clients is None:
            self.authorized = True
        else:
            # Called after the TLS handshake: the certificate's chain and validity were
            # checked there. What is left is whether this certificate is one we know.
            ssl_object = transport.get_extra_info("ssl_object")
            client = clients.lookup(ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None)
            if client is None:
                self.gateway.refused_connections += 1
                log.warning("%s: closed: its certificate is not in the clients file", self.peer)
                transport.close()
                return
            self.authorized, self.sources = True, client.sources
            self.peer += f" ({client.name})"
        self.gateway.served_connections += 1
        self.gateway.connections.add(self)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        if not self.authorized:
            return  # closing: not one byte of an unmapped client reaches the protocol
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
        self.authorized = False
        self.buf = bytearray()
        self.gateway.connections.discard(self)


async def start_server(gateway: Gateway, host: str, port: int, tls: ssl.SSLContext | None) -> asyncio.AbstractServer:
    """Listen for `gateway` on (host, port): over TLS with `tls` (the gateway must then
    have its clients map), or plain TCP when `tls` is None (loopback only, no clients map)."""
    if (tls is None) != (gateway.clients is None):
        raise ValueError("a TLS gateway needs a clients map, and a plain one has none")
    if tls is None and not ipaddress.ip_address("127.0.0.1" if host == "localhost" else host).is_loopback:
        raise ValueError("plain TCP (no authentication) is served on a loopback address only")
    loop = asyncio.get_running_loop()
    if tls is None:
        return await loop.create_server(gateway.connection, host, port)
    return await loop.create_server(gateway.connection, host, port, ssl=tls,
                                    ssl_handshake_timeout=HANDSHAKE_SECONDS_MAX)


async def serve_forever(ledger_path: str, host: str, port: int, ready=None, *, tls: ssl.SSLContext | None = None,
                        clients: ClientMap | None = None, plain: bool = False,
                        connections_max: int = CONNECTIONS_MAX_DEFAULT) -> None:
    """Run the gateway until cancelled: over TLS (`tls` and `clients` given), or over
    plain TCP when asked for with `plain=True`; at most `connections_max` connections
    served at once."""
    if plain == (tls is not None) or (tls is None) != (clients is None):
        raise ValueError("serve with tls= and clients=, or plain=True")
    with cardledger.open(ledger_path, create=True) as led:
        gateway = Gateway(led, clients, connections_max=connections_max)
        server = await start_server(gateway, host, port, tls)
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
    p.add_argument("--cert", help="the server's certificate (PEM)")
    p.add_argument("--key", help="the server's private key (PEM)")
    p.add_argument("--ca", help="the CA certificate(s) client certificates must be signed by (PEM)")
    p.add_argument("--clients", help="the clients file: certificate fingerprint -> sources (TOML)")
    p.add_argument("--plain", action="store_true",
                   help="plain TCP, no TLS and no authentication: any client, any source (loopback only; "
                        "for local benchmarks)")
    p.add_argument("--connections-max", type=int, default=CONNECTIONS_MAX_DEFAULT,
                   help=f"connections served at once; one more is closed on arrival (default {CONNECTIONS_MAX_DEFAULT})")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default=None,
                   help="event loop (default: uvloop when installed)")
    a = p.parse_args()
    if a.connections_max < 1:
        p.error(f"--connections-max must be at least 1, got {a.connections_max}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    tls_args = (a.cert, a.key, a.ca, a.clients)
    if a.plain:
        if any(tls_args):
            p.error("--plain takes none of --cert, --key, --ca, --clients")
        tls, clients = None, None
    else:
        if not all(tls_args):
            p.error("--cert, --key, --ca and --clients are required (or --plain, for local benchmarks)")
        try:
            clients = ClientMap.load(a.clients)
        except MappingError as e:
            p.error(str(e))
        try:
            tls = tls_context(a.cert, a.key, a.ca)
        except OSError as e:  # ssl.SSLError included
            p.error(f"cannot load --cert {a.cert}, --key {a.key} or --ca {a.ca}: {e}")
    if a.loop is None:
        a.loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    mode = "plain TCP, unauthenticated" if a.plain else f"TLS, {len(clients)} client certificate(s)"
    coro = serve_forever(a.ledger, a.host, a.port,
                         lambda port: print(f"listening on {a.host}:{port} ({a.loop}, {mode})", flush=True),
                         tls=tls, clients=clients, plain=a.plain, connections_max=a.connections_max)
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
