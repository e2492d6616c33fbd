#!/usr/bin/env python
"""Load generator for the example gateway (loopback only).

    python examples/gateway/loadgen.py --port 7400 --clients 16 --ops 20000 [--window 1] [--batch 1] \
        --ca ca.pem --cert loadgen.pem --key loadgen.key --sources 4294967296:281474976710655

Connects over TLS with the client certificate --cert/--key, checking the server's
certificate against --ca; every op's source is drawn from --sources FIRST:LAST, which
must lie in the certificate's range in the server's clients file. `--plain` connects
over plain TCP instead, to a server started with --plain (local benchmarks).

Opens the accounts it needs through the gateway (a clearing account, a merchant, and
--cards cards topped up), then runs --clients connections. Each sends SPEND requests
of --batch ops (1: a terminal's single op; more: an upload of several independent,
unlinked ops, as an offline validator or a terminal concentrator sends them) and keeps
--window requests in flight (1: send, wait for the reply, send the next; more: a
connection multiplexing several terminals). --ops counts ops, not requests.
Stops after --ops requests or --seconds, whichever comes first. Prints ops/s, the
request latency p50/p99 and how many ops got each result code, in the setup and in
the load (JSON): a rerun against the same ledger shows its ACCOUNT_EXISTS there. Runs on uvloop when it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib.util
import ipaddress
import json
import os
import random
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import msgpack  # noqa: E402
import protocol  # noqa: E402

CARD_BASE = 5_000_000
_HEADER = protocol.FRAME_HEADER.size
#: Sources a run takes from --sources: one block, the setup's source and one per client.
SOURCE_BLOCK = 4096
#: --sources default: the load generator's ids before it had a range.
SOURCES_DEFAULT = (SOURCE_BLOCK, (1 << 52) - 1)


def client_tls(ca: str, cert: str, key: str) -> ssl.SSLContext:
    """A client TLS context: TLS 1.2 or later, the server checked against `ca` (its
    certificate must name the address connected to), `cert`/`key` presented."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


def source_base(sources: tuple[int, int], clients: int) -> int:
    """A random block of SOURCE_BLOCK sources inside `sources` (fresh ids on every run
    against the same ledger): the setup uses its first, the clients the next ones."""
    first, last = sources
    if clients + 1 > SOURCE_BLOCK:
        raise SystemExit(f"at most {SOURCE_BLOCK - 1} clients")
    blocks = (last - first + 1) // SOURCE_BLOCK
    if blocks < 1:
        raise SystemExit(f"--sources must span at least {SOURCE_BLOCK} sources")
    return first + random.randrange(blocks) * SOURCE_BLOCK


async def call(reader, writer, req: int, ops: list[dict]) -> dict:
    writer.write(protocol.encode_frame({"req": req, "ops": ops}))
    await writer.drain()
    (size,) = protocol.FRAME_HEADER.unpack(await reader.readexactly(protocol.FRAME_HEADER.size))
    return msgpack.unpackb(await reader.readexactly(size), raw=False)


async def setup(host: str, port: int, cards: int, source: int, tls: ssl.SSLContext | None) -> collections.Counter:
    """Open the accounts the load needs; return how many setup ops got each result."""
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    seq = 0
    counts: collections.Counter = collections.Counter()

    async def send(ops):
        nonlocal seq
        for op in ops:
            seq += 1
            op.update(source=source, seq=seq, time_us=time.time_ns() // 1_000)  # event time: now
        reply = await call(reader, writer, seq, ops)
        counts.update(r["result"] for r in reply.get("results", []))
        bad = [r for r in reply.get("results", []) if r["result"] not in ("OK", "EXISTS", "ACCOUNT_EXISTS", "EXCEEDS_CAP")]
        if "error" in reply or bad:
            raise SystemExit(f"setup failed: {str(reply)[:300]}")

    await send([{"kind": "OPEN", "account_id": 1, "account_kind": "CLEARING"},
                {"kind": "OPEN", "account_id": 2, "account_kind": "MERCHANT"}])
    for lo in range(0, cards, 32):
        ops = []
        for c in range(lo, min(cards, lo + 32)):
            ops.append({"kind": "OPEN", "account_id": CARD_BASE + c, "account_kind": "CARD"})
            ops.append({"kind": "TOPUP", "account_id": CARD_BASE + c, "counterparty_id": 1, "amount_fen": 400_000})
        await send(ops)
    writer.close()
    return counts


class Client(asyncio.Protocol):
    """One connection sending SPEND requests, `window` in flight; records latencies."""

    def __init__(self, source: int, cards: int, quota: int, window: int, batch: int, deadline: float,
                 lat: list[float]) -> None:
        self.source, self.cards, self.quota, self.window, self.batch = source, cards, quota, window, batch
        self.deadline, self.lat = deadline, lat
        self.sent_at: dict[int, float] = {}
        self.seq = 0
        self.ops_done = 0
        self.codes: collections.Counter = collections.Counter()  # result name -> ops
        self.buf = bytearray()
        self.done = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:  # noqa: D102
        self.transport = transport
        self._send(min(self.window, self.quota))

    def _send(self, k: int) -> None:
        frames = []
        now = time.perf_counter()
        for _ in range(k):
            if self.seq >= self.quota or time.monotonic() > self.deadline:
                break
            ops = []
            for seq in range(self.seq + 1, min(self.quota, self.seq + self.batch) + 1):
                ops.append({"source": self.source, "seq": seq, "kind": "SPEND",
                            "account_id": CARD_BASE + (self.source * 7919 + seq) % self.cards,
                            "counterparty_id": 2, "amount_fen": 1, "time_us": time.time_ns() // 1_000})
            self.seq += len(ops)
            frames.append(protocol.encode_frame({"req": self.seq, "ops": ops}))
            self.sent_at[self.seq] = now
        if frames:
            self.transport.write(b"".join(frames))
        elif not self.sent_at and not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:  # noqa: D102
        buf = self.buf
        buf += data
        start, replies = 0, 0
        now = time.perf_counter()
        while len(buf) - start >= _HEADER:
            end = start + _HEADER + int.from_bytes(buf[start : start + _HEADER], "big")
            if len(buf) < end:
                break
            reply = msgpack.unpackb(bytes(buf[start + _HEADER : end]), raw=False)
            start = end
            if "error" in reply:
                self.done.set_exception(SystemExit(f"request refused: {reply}"))
                self.transport.close()
                return
            self.lat.append(now - self.sent_at.pop(reply["req"]))
            self.ops_done += len(reply["results"])
            self.codes.update(r["result"] for r in reply["results"])
            replies += 1
        if start:
            del buf[:start]
        if replies:
            self._send(replies)

    def connection_lost(self, exc) -> None:  # noqa: D102
        if not self.done.done():
            self.done.set_exception(ConnectionError(f"connection lost: {exc}"))


async def client(host, port, tls, source, cards, quota, window, batch, deadline, lat) -> collections.Counter:
    """Run one connection to the end; return how many of its ops got each result."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(
        lambda: Client(source, cards, quota, window, batch, deadline, lat), host, port, ssl=tls)
    try:
        await proto.done
    finally:
        transport.close()
    return proto.codes


async def run(a) -> dict:
    base = source_base(a.sources, a.clients)
    setup_codes = await setup(a.host, a.port, a.cards, base, a.tls)
    lat: list[float] = []
    deadline = time.monotonic() + a.seconds
    per = max(1, a.ops // a.clients)
    t = time.perf_counter()
    done = await asyncio.gather(*(client(a.host, a.port, a.tls, base + 1 + i, a.cards, per, a.window, a.batch,
                                         deadline, lat) for i in range(a.clients)))
    dt = time.perf_counter() - t
    codes: collections.Counter = sum(done, collections.Counter())
    ops = sum(codes.values())
    lat.sort()
    return {
        "clients": a.clients,
        "window": a.window,
        "ops_per_request": a.batch,
        "loop": a.loop,
        "transport": "plain TCP" if a.tls is None else "TLS",
        "requests": len(lat),
        "ops": ops,
        "ops_per_s": ops / dt,
        "latency_ms_p50": lat[len(lat) // 2] * 1e3,
        "latency_ms_p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
        "setup_results": dict(sorted(setup_codes.items())),
        "results": dict(sorted(codes.items())),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7400)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--window", type=int, default=1, help="requests in flight per connection")
    p.add_argument("--batch", type=int, default=1, help="ops per request (independent, not linked)")
    p.add_argument("--ops", type=int, default=20_000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--cards", type=int, default=1_000)
    p.add_argument("--ca", help="the CA the server's certificate must be signed by (PEM)")
    p.add_argument("--cert", help="this client's certificate (PEM)")
    p.add_argument("--key", help="this client's private key (PEM)")
    p.add_argument("--sources", default=f"{SOURCES_DEFAULT[0]}:{SOURCES_DEFAULT[1]}", metavar="FIRST:LAST",
                   help="the sources the ops may use (within the certificate's range in the server's clients file)")
    p.add_argument("--plain", action="store_true", help="plain TCP, to a server started with --plain")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default=None,
                   help="event loop (default: uvloop when installed)")
    a = p.parse_args()
    try:
        first, last = (int(x) for x in a.sources.split(":"))
    except ValueError:
        raise SystemExit("--sources wants FIRST:LAST") from None
    a.sources = (first, last)
    tls_args = (a.ca, a.cert, a.key)
    if a.plain:
        if any(tls_args):
            raise SystemExit("--plain takes none of --ca, --cert, --key")
        a.tls = None
    elif not all(tls_args):
        raise SystemExit("--ca, --cert and --key are required (or --plain, against a server started with --plain)")
    else:
        try:
            a.tls = client_tls(a.ca, a.cert, a.key)
        except OSError as e:  # ssl.SSLError included
            raise SystemExit(f"cannot load --ca {a.ca}, --cert {a.cert} or --key {a.key}: {e}") from None
    if a.window < 1:
        raise SystemExit("--window must be at least 1")
    if not 1 <= a.batch <= protocol.REQUEST_OPS_MAX:
        raise SystemExit(f"--batch must be in 1..{protocol.REQUEST_OPS_MAX}")
    if not ipaddress.ip_address(a.host if a.host != "localhost" else "127.0.0.1").is_loopback:
        raise SystemExit("the load generator only targets loopback addresses")
    if a.loop is None:
        a.loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    if a.loop == "uvloop":
        import uvloop

        report = uvloop.run(run(a))
    else:
        report = asyncio.run(run(a))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
