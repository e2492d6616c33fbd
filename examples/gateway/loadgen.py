#!/usr/bin/env python
"""Load generator for the example gateway (loopback only).

    python examples/gateway/loadgen.py --port 7400 --clients 16 --ops 20000

Opens the accounts it needs through the gateway (a clearing account, a merchant, and
--cards cards topped up), then runs --clients connections, each sending single SPEND
requests one after another and waiting for each reply. Stops after --ops requests or
--seconds, whichever comes first. Prints ops/s and the request latency p50/p99 (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import msgpack  # noqa: E402
import protocol  # noqa: E402

CARD_BASE = 5_000_000


async def call(reader, writer, req: int, ops: list[dict]) -> dict:
    writer.write(protocol.encode_frame({"req": req, "ops": ops}))
    await writer.drain()
    (size,) = protocol.FRAME_HEADER.unpack(await reader.readexactly(protocol.FRAME_HEADER.size))
    return msgpack.unpackb(await reader.readexactly(size), raw=False)


async def setup(host: str, port: int, cards: int, source: int) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    seq = 0

    async def send(ops):
        nonlocal seq
        for op in ops:
            seq += 1
            op.update(source=source, seq=seq)
        reply = await call(reader, writer, seq, ops)
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


async def client(host, port, source, cards, quota, deadline, lat):
    reader, writer = await asyncio.open_connection(host, port)
    for seq in range(1, quota + 1):
        if time.monotonic() > deadline:
            break
        op = {"source": source, "seq": seq, "kind": "SPEND", "account_id": CARD_BASE + (source * 7919 + seq) % cards,
              "counterparty_id": 2, "amount_fen": 1}
        t = time.perf_counter()
        reply = await call(reader, writer, seq, [op])
        lat.append(time.perf_counter() - t)
        if "error" in reply:
            raise SystemExit(f"request refused: {reply}")
    writer.close()


async def run(a) -> dict:
    source_base = int.from_bytes(os.urandom(5), "big") << 12  # fresh ids on every run against the same ledger
    await setup(a.host, a.port, a.cards, source_base)
    lat: list[float] = []
    deadline = time.monotonic() + a.seconds
    per = max(1, a.ops // a.clients)
    t = time.perf_counter()
    await asyncio.gather(*(client(a.host, a.port, source_base + 1 + i, a.cards, per, deadline, lat)
                           for i in range(a.clients)))
    dt = time.perf_counter() - t
    lat.sort()
    return {
        "clients": a.clients,
        "requests": len(lat),
        "ops_per_s": len(lat) / dt,
        "latency_ms_p50": lat[len(lat) // 2] * 1e3,
        "latency_ms_p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7400)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--ops", type=int, default=20_000)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--cards", type=int, default=1_000)
    a = p.parse_args()
    if not ipaddress.ip_address(a.host if a.host != "localhost" else "127.0.0.1").is_loopback:
        raise SystemExit("the load generator only targets loopback addresses")
    print(json.dumps(asyncio.run(run(a)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
