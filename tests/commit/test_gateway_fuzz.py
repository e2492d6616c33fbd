"""The example gateway at its edges: random bytes and random msgpack go into its
decoder and into a live server. The decoder answers with a ProtocolError or a request,
never another exception; the server answers every well-framed request (a result or an
error reply) or closes the connection, and keeps serving others afterwards. (Issue 24's
"fuzzing the edges", for the gateway.)"""

from __future__ import annotations

import asyncio
import os
import sys

import msgpack
from helpers import HYPOTHESIS_EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

GATEWAY = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "gateway")
sys.path.insert(0, os.path.abspath(GATEWAY))

import protocol  # noqa: E402
import server  # noqa: E402

T0 = 1_767_225_600_000_000
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True),
                    st.text(max_size=12), st.binary(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                      max_leaves=20)
field_names = st.sampled_from(["req", "ops", "source", "seq", "kind", "account_id", "counterparty_id",
                               "amount_fen", "time_us", "flags", "account_kind", "user_data", "tap", "x"])
op_like = st.dictionaries(field_names, st.one_of(values, st.integers(0, 20), st.sampled_from(["TOPUP", "OPEN", "TAP"])),
                          max_size=8)
requests = st.one_of(values, st.fixed_dictionaries({"req": values, "ops": st.lists(op_like, max_size=5)}),
                     st.fixed_dictionaries({"req": st.integers(0, 99), "ops": st.lists(op_like, min_size=1, max_size=3)}))


@settings(max_examples=HYPOTHESIS_EXAMPLES * 10, deadline=None)
@given(st.one_of(st.binary(max_size=64), requests.map(lambda r: msgpack.packb(r, use_bin_type=True))))
def test_the_decoder_answers_any_payload_with_a_request_or_a_protocol_error(payload):
    try:
        req, rows = protocol.decode_request(payload)
    except protocol.ProtocolError:
        return
    assert isinstance(req, int) and 1 <= len(rows) <= protocol.REQUEST_OPS_MAX
    assert len(protocol.ops_array(rows)) == len(rows)


def test_a_live_server_survives_random_frames_and_keeps_serving(tmp_path):
    import random

    rnd = random.Random(2024)
    frames = []
    for _ in range(60):
        if rnd.random() < 0.5:
            body = os.urandom(rnd.randrange(0, 40))
        else:
            body = msgpack.packb({"req": rnd.randrange(100), "ops": [
                {k: rnd.choice([0, 1, -1, 2**64 - 1, -(2**63), "TOPUP", None, [], {}, 3.5]) for k in rnd.sample(
                    ["source", "seq", "kind", "account_id", "amount_fen", "time_us", "flags", "zz"], 4)}]})
        frames.append(protocol.FRAME_HEADER.pack(len(body)) + body)

    async def main():
        started = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(server.serve_forever(str(tmp_path / "ledger"), "127.0.0.1", 0, started.set_result, plain=True))
        port = await started
        answered = closed = 0
        for frame in frames:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(frame)
            await writer.drain()
            try:
                head = await asyncio.wait_for(reader.readexactly(4), 10)
                (size,) = protocol.FRAME_HEADER.unpack(head)
                reply = msgpack.unpackb(await reader.readexactly(size), raw=False)
                assert "error" in reply or "results" in reply
                answered += 1
            except asyncio.IncompleteReadError:
                closed += 1  # the server closed the connection: allowed
            writer.close()
        # ...and a good request afterwards is served.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(protocol.encode_frame({"req": 1, "ops": [
            {"time_us": T0, "source": 7, "seq": 1, "kind": "OPEN", "account_id": 1, "account_kind": "CLEARING"}]}))
        (size,) = protocol.FRAME_HEADER.unpack(await reader.readexactly(4))
        ok = msgpack.unpackb(await reader.readexactly(size), raw=False)
        writer.close()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        return answered, closed, ok

    answered, closed, ok = asyncio.run(main())
    assert answered + closed == len(frames) and answered > 0
    assert ok["results"][0]["result"] == "OK"
