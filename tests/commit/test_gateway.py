"""The example gateway: requests in, durable results out; malformed frames refused."""

from __future__ import annotations

import asyncio
import os
import sys

import msgpack

import cardledger

T0 = 1_767_225_600_000_000  # every op's time_us (2026-01-01 UTC): it must be positive
GATEWAY = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "gateway")
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
            server.serve_forever(str(tmp_path / "ledger"), "127.0.0.1", 0, started.set_result, plain=True)
        )
        port = await started
        ok = await _exchange(port, [
            protocol.encode_frame({"req": 1, "ops": [
                {"time_us": T0, "source": 1, "seq": 1, "kind": "OPEN", "account_id": 1, "account_kind": "CLEARING"},
                {"time_us": T0, "source": 1, "seq": 2, "kind": "OPEN", "account_id": 9, "account_kind": "CARD"},
                {"time_us": T0, "source": 1, "seq": 3, "kind": "TOPUP", "account_id": 9, "counterparty_id": 1, "amount_fen": 700}]}),
            protocol.encode_frame({"req": 2, "ops": [{"time_us": T0, "source": 1, "seq": 3, "kind": "TOPUP", "account_id": 9,
                                                      "counterparty_id": 1, "amount_fen": 700}]}),
        ])
        bad = await _exchange(port, [
            _raw(b"\xc1 not msgpack"),
            protocol.encode_frame({"req": 3}),
            protocol.encode_frame({"req": 4, "ops": [{"time_us": T0, "source": 1, "seq": 9, "kind": "SPEND", "amount": 5}]}),
            protocol.encode_frame({"req": 5, "ops": [{"time_us": T0, "source": -1, "seq": 9, "kind": "SPEND"}]}),
            protocol.encode_frame({"req": 6, "ops": [{"time_us": T0, "source": 1, "seq": 9, "kind": "NOPE"}]}),
            protocol.encode_frame({"req": 7, "ops": [{"time_us": T0, "source": 1, "seq": 9, "kind": 4, "amount_fen": "5"}]}),
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
    with cardledger.open(str(tmp_path / "ledger"), create=True) as led:
        assert led.balance(9) == 700
        assert led.journal_seq == 3  # nothing malformed reached the ledger
        assert led.verify().ok


async def _serve(tmp_path):
    started = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(server.serve_forever(str(tmp_path / "ledger"), "127.0.0.1", 0, started.set_result, plain=True))
    return task, await started


async def _stop(task):
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


async def _read_replies(reader, n):
    replies = []
    for _ in range(n):
        (size,) = protocol.FRAME_HEADER.unpack(await reader.readexactly(4))
        replies.append(msgpack.unpackb(await reader.readexactly(size), raw=False))
    return replies


async def _open_card_9(port, fen):
    """Through the gateway: clearing 1, merchant 2, card 9 topped up with `fen`."""
    setup = [{"time_us": T0, "source": 1, "seq": 1, "kind": "OPEN", "account_id": 1, "account_kind": "CLEARING"},
             {"time_us": T0, "source": 1, "seq": 2, "kind": "OPEN", "account_id": 2, "account_kind": "MERCHANT"},
             {"time_us": T0, "source": 1, "seq": 3, "kind": "OPEN", "account_id": 9, "account_kind": "CARD"},
             {"time_us": T0, "source": 1, "seq": 4, "kind": "TOPUP", "account_id": 9, "counterparty_id": 1, "amount_fen": fen}]
    assert "results" in (await _exchange(port, [protocol.encode_frame({"req": 0, "ops": setup})]))[0]


def test_pipelined_requests_on_one_connection_each_get_their_reply(tmp_path):
    """A client may send many requests without waiting; every reply carries its req."""
    async def main():
        task, port = await _serve(tmp_path)
        await _open_card_9(port, 10_000)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        frames = [protocol.encode_frame({"req": 100 + s, "ops": [
            {"time_us": T0, "source": 2, "seq": s, "kind": "SPEND", "account_id": 9, "counterparty_id": 2, "amount_fen": 10}]})
            for s in range(1, 51)]
        # Plus one request of several independent (unlinked) ops, and a malformed one.
        frames.append(protocol.encode_frame({"req": 7, "ops": [
            {"time_us": T0, "source": 3, "seq": s, "kind": "SPEND", "account_id": 9, "counterparty_id": 2, "amount_fen": 1}
            for s in range(1, 4)]}))
        frames.append(protocol.encode_frame({"req": 8, "ops": [{"time_us": T0, "source": 3, "seq": 9, "kind": "SPEND", "x": 1}]}))
        writer.write(b"".join(frames))
        replies = await _read_replies(reader, len(frames))
        writer.close()
        await _stop(task)
        return replies

    replies = asyncio.run(main())
    by_req = {r["req"]: r for r in replies if "results" in r}
    assert sorted(by_req) == [7] + list(range(101, 151))
    assert all(by_req[101 + i]["results"][0]["result"] == "OK" for i in range(50))
    assert [r["result"] for r in by_req[7]["results"]] == ["OK"] * 3
    assert sum(1 for r in replies if "error" in r) == 1
    with cardledger.open(str(tmp_path / "ledger"), create=True) as led:
        assert led.balance(9) == 10_000 - 50 * 10 - 3
        assert led.verify().ok


def test_an_oversized_frame_gets_an_error_and_closes_the_connection(tmp_path):
    async def main():
        task, port = await _serve(tmp_path)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(protocol.FRAME_HEADER.pack(protocol.FRAME_BYTES_MAX + 1) + b"\0" * 16)
        (reply,) = await _read_replies(reader, 1)
        rest = await reader.read()  # the server closed the connection
        writer.close()
        await _stop(task)
        return reply, rest

    reply, rest = asyncio.run(main())
    assert "exceeds" in reply["error"] and rest == b""


def test_a_request_split_across_reads_and_one_sent_whole_both_get_their_reply(tmp_path):
    """The server handles a frame that arrives whole in one read without buffering it,
    and reassembles one that arrives in pieces (header split, body split)."""
    async def main():
        task, port = await _serve(tmp_path)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        whole = protocol.encode_frame({"req": 1, "ops": [
            {"time_us": T0, "source": 1, "seq": 1, "kind": "OPEN", "account_id": 1, "account_kind": "CLEARING"}]})
        writer.write(whole)
        first = await _read_replies(reader, 1)
        split = protocol.encode_frame({"req": 2, "ops": [
            {"time_us": T0, "source": 1, "seq": 2, "kind": "OPEN", "account_id": 9, "account_kind": "CARD"}]})
        for piece in (split[:2], split[2:7], split[7:]):
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)  # each piece its own read on the server
        second = await _read_replies(reader, 1)
        writer.close()
        await _stop(task)
        return first + second

    replies = asyncio.run(main())
    assert [(r["req"], r["results"][0]["result"]) for r in replies] == [(1, "OK"), (2, "OK")]


def test_a_request_whose_chain_stays_open_is_refused_and_fails_no_other_request(tmp_path):
    """Request 1 ends with a LINKED op (an open chain); request 2, sent in the same write,
    is an independent spend. Request 1 gets an error reply carrying its id; request 2
    commits (an open chain gathered into the same batch would have failed it)."""
    async def main():
        task, port = await _serve(tmp_path)
        await _open_card_9(port, 500)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        linked = int(cardledger.OpFlags.LINKED)
        writer.write(protocol.encode_frame({"req": 1, "ops": [
            {"time_us": T0, "source": 2, "seq": 1, "kind": "SPEND", "account_id": 9, "counterparty_id": 2, "amount_fen": 10**6,
             "flags": linked}]}) + protocol.encode_frame({"req": 2, "ops": [
            {"time_us": T0, "source": 2, "seq": 2, "kind": "SPEND", "account_id": 9, "counterparty_id": 2, "amount_fen": 100}]})
            + protocol.encode_frame({"req": 3, "ops": [{"time_us": T0, "source": 2, "seq": 3, "kind": "SPEND", "amount_fen": 1.5}]}))
        replies = await _read_replies(reader, 3)
        writer.close()
        await _stop(task)
        return {r["req"]: r for r in replies}

    by_req = asyncio.run(main())
    assert "last op of a chain" in by_req[1]["error"]
    assert by_req[2]["results"][0]["result"] == "OK"
    assert "must be an integer" in by_req[3]["error"]  # a malformed op's reply names its request
    with cardledger.open(str(tmp_path / "ledger"), create=True) as led:
        assert led.balance(9) == 400
        assert led.verify().ok


def test_the_load_generator_reports_its_result_codes_and_a_rerun_shows_account_exists(tmp_path):
    import types

    import loadgen

    async def main():
        task, port = await _serve(tmp_path)
        try:
            args = types.SimpleNamespace(host="127.0.0.1", port=port, cards=40, clients=2, window=2, batch=3,
                                         ops=60, seconds=30.0, loop="asyncio", tls=None,
                                         sources=loadgen.SOURCES_DEFAULT)
            first = await loadgen.run(args)
            second = await loadgen.run(args)
        finally:
            await _stop(task)
        return first, second

    first, second = asyncio.run(main())
    assert first["results"] == {"OK": 60} and first["ops"] == 60
    assert first["setup_results"] == {"OK": 2 + 2 * 40}
    # The same accounts opened again: the rerun says so instead of hiding it.
    assert second["setup_results"]["ACCOUNT_EXISTS"] == 2 + 40
