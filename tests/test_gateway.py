"""The example gateway: requests in, durable results out; malformed frames refused."""

from __future__ import annotations

import asyncio
import os
import sys

import msgpack

import cardledger

GATEWAY = os.path.join(os.path.dirname(__file__), "..", "examples", "gateway")
sys.path.insert(0, os.path.abspath(GATEWAY))

import protocol  # noqa: E402
import server  # noqa: E402


async def _exchange(port, frames):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    replies = []
    for frame in frames:
        writer.write(frame)
        await writer.drain()
        (size,) = protocol.FRAME_HEADER.unpack(await reader.readexactly(4))
        replies.append(msgpack.unpackb(await reader.readexactly(size), raw=False))
    writer.close()
    return replies


def _raw(payload: bytes) -> bytes:
    return protocol.FRAME_HEADER.pack(len(payload)) + payload


def test_gateway_commits_requests_and_refuses_malformed_frames(tmp_path):
    async def main():
        started = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(
            server.serve_forever(str(tmp_path / "ledger"), "127.0.0.1", 0, started.set_result)
        )
        port = await started
        ok = await _exchange(port, [
            protocol.encode_frame({"req": 1, "ops": [
                {"source": 1, "seq": 1, "kind": "OPEN", "account_id": 1, "account_kind": "CLEARING"},
                {"source": 1, "seq": 2, "kind": "OPEN", "account_id": 9, "account_kind": "CARD"},
                {"source": 1, "seq": 3, "kind": "TOPUP", "account_id": 9, "counterparty_id": 1, "amount_fen": 700}]}),
            protocol.encode_frame({"req": 2, "ops": [{"source": 1, "seq": 3, "kind": "TOPUP", "account_id": 9,
                                                      "counterparty_id": 1, "amount_fen": 700}]}),
        ])
        bad = await _exchange(port, [
            _raw(b"\xc1 not msgpack"),
            protocol.encode_frame({"req": 3}),
            protocol.encode_frame({"req": 4, "ops": [{"source": 1, "seq": 9, "kind": "SPEND", "amount": 5}]}),
            protocol.encode_frame({"req": 5, "ops": [{"source": -1, "seq": 9, "kind": "SPEND"}]}),
            protocol.encode_frame({"req": 6, "ops": [{"source": 1, "seq": 9, "kind": "NOPE"}]}),
            protocol.encode_frame({"req": 7, "ops": [{"source": 1, "seq": 9, "kind": 4, "amount_fen": "5"}]}),
        ])
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return ok, bad

    ok, bad = asyncio.run(main())
    assert "results" in ok[0], ok[0]
    assert [r["result"] for r in ok[0]["results"]] == ["OK", "OK", "OK"]
    assert ok[0]["results"][2]["balance_fen"] == 700
    assert ok[1]["results"][0]["result"] == "EXISTS"  # a resent request moves money once
    assert all("error" in r for r in bad)
    assert "unknown field" in bad[2]["error"] and "out of range" in bad[3]["error"]
    with cardledger.open(str(tmp_path / "ledger")) as led:
        assert led.balance(9) == 700
        assert led.journal_seq == 3  # nothing malformed reached the ledger
        assert led.verify().ok
