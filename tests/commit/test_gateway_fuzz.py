"""The example gateway at its edges: random bytes and random msgpack go into its
decoder and into a live server, plain and TLS. The decoder answers with a ProtocolError
or a request, never another exception, and never lets an op outside its source range
through; the server answers every well-framed request (a result or an error reply) or
closes the connection, holds at most one frame's bytes per connection, and keeps serving
others afterwards. A longer run against a server process, checking its memory, is under
the `soak` marker. (Issue 24's "fuzzing the edges", for the gateway.)"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
import subprocess
import sys
import time

import msgpack
import pytest
from helpers import HYPOTHESIS_EXAMPLES
from helpers.gateway_pki import POS_SOURCES, make_pki
from hypothesis import given, settings
from hypothesis import strategies as st

import cardledger

GATEWAY = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "gateway")
sys.path.insert(0, os.path.abspath(GATEWAY))

import protocol  # noqa: E402
import server  # noqa: E402
from mapping import ClientMap  # noqa: E402

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


# --- The authenticated gateway (TLS, client certificates mapped to sources) ---------

#: Most bytes the server may hold for one connection's partial frame.
CONNECTION_BUFFER_MAX = protocol.FRAME_HEADER.size + protocol.FRAME_BYTES_MAX
FUZZ_SECONDS = float(os.environ.get("GATEWAY_FUZZ_SECONDS", "3"))
SOAK_SECONDS = float(os.environ.get("GATEWAY_FUZZ_SOAK_SECONDS", "120"))
#: How much a soaked server's resident memory may grow after its warm-up.
SOAK_RSS_GROWTH_MAX = 64 << 20


@settings(max_examples=HYPOTHESIS_EXAMPLES * 10, deadline=None)
@given(st.one_of(st.binary(max_size=64), requests.map(lambda r: msgpack.packb(r, use_bin_type=True))),
       st.integers(0, 30), st.integers(0, 30))
def test_the_decoder_with_a_source_range_never_lets_an_op_outside_it_through(payload, first, span):
    """decode_request(payload, sources): a request comes back only if every op's source
    is in the range; otherwise a ProtocolError (SourceNotAllowedError when that is why)."""
    sources = (first, first + span)
    try:
        req, rows = protocol.decode_request(payload, sources)
    except protocol.ProtocolError:
        return
    assert all(first <= s <= first + span for s in protocol.ops_array(rows)["source"])


def random_payload(rnd: random.Random) -> bytes:
    """A frame payload: random bytes, random msgpack, a request of random op maps, or a
    well-formed request whose sources lie in, at the edge of, or outside POS_SOURCES."""
    pick = rnd.random()
    if pick < 0.25:
        return rnd.randbytes(rnd.randrange(0, 64))
    if pick < 0.45:
        value = rnd.choice([None, True, 1.5, "x" * rnd.randrange(9), b"\0" * rnd.randrange(9), [], {}, -1, 2**64 - 1,
                            [1, [2, {"a": None}]], {"req": 1}, {"req": 1, "ops": None}, {"ops": [], "req": -5}])
        return msgpack.packb(value, use_bin_type=True)
    fields = ["source", "seq", "kind", "flags", "account_id", "counterparty_id", "amount_fen", "time_us",
              "account_kind", "limit_fen", "ref_source", "ref_seq", "route", "tap", "zz"]
    sources = [POS_SOURCES[0], POS_SOURCES[1], POS_SOURCES[0] - 1, POS_SOURCES[1] + 1, 0, 2**64 - 1,
               rnd.randrange(*POS_SOURCES)]
    ops = []
    for _ in range(rnd.randrange(1, 6)):
        if pick < 0.7:
            op = {k: rnd.choice([0, 1, -1, 7, 2**63, 2**64 - 1, -(2**63), "SPEND", "CARD", None, 2.5, "x"])
                  for k in rnd.sample(fields, rnd.randrange(0, 7))}
        else:
            op = {"time_us": T0 + rnd.randrange(10**6), "seq": rnd.randrange(1, 50), "kind": "OPEN",
                  "account_id": rnd.randrange(1, 10**6), "account_kind": rnd.choice(["CARD", "MERCHANT"])}
        op["source"] = rnd.choice(sources)
        ops.append(op)
    return msgpack.packb({"req": rnd.randrange(2**63), "ops": ops}, use_bin_type=True)


async def _read_frame_or_eof(reader, timeout=10.0):
    """A reply frame, or None once the server closed the connection."""
    try:
        (size,) = protocol.FRAME_HEADER.unpack(await asyncio.wait_for(reader.readexactly(4), timeout))
        return msgpack.unpackb(await asyncio.wait_for(reader.readexactly(size), timeout), raw=False)
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        return None


async def fuzz_tls_server(pki, port, seconds, rnd, check=lambda: None):
    """Until `seconds` pass, rounds of three kinds against a TLS gateway on `port`:
    pipelined frames of random payloads on a `pos` connection (each answered, or the
    connection closed); random unframed bytes on one (a random length header: a frame
    over the limit closes it, a partial frame waits); random bytes instead of a TLS
    handshake. `check()` runs after every round (the caller's bound on the server).
    Returns (frames answered, connections closed by the server, rounds)."""
    answered = closed = rounds = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        kind = rnd.random()
        if kind < 0.6:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context("pos"))
            payloads = [random_payload(rnd) for _ in range(rnd.randrange(1, 20))]
            writer.write(b"".join(protocol.FRAME_HEADER.pack(len(p)) + p for p in payloads))
            for _ in payloads:
                reply = await _read_frame_or_eof(reader)
                if reply is None:
                    closed += 1
                    break
                assert "results" in reply or "error" in reply, reply
                answered += 1
            writer.close()
        elif kind < 0.85:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context("pos"))
            data = rnd.randbytes(rnd.randrange(1, 4096))
            if rnd.random() < 0.5:  # a length the server accepts, then part of a frame or more
                size = rnd.randrange(protocol.FRAME_BYTES_MAX + 2)
                data = protocol.FRAME_HEADER.pack(size) + rnd.randbytes(rnd.randrange(1, 1 << 16))
            writer.write(data)
            await writer.drain()
            try:  # replies (the garbage may hold whole frames), a close, or nothing yet
                while (reply := await _read_frame_or_eof(reader, timeout=0.05)) is not None:
                    assert "results" in reply or "error" in reply, reply
            except asyncio.TimeoutError:
                pass
            check()  # a partial frame is held, within the bound
            writer.close()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)  # no TLS at all
            writer.write(rnd.randbytes(rnd.randrange(1, 600)))
            await writer.drain()
            try:  # never a frame: the handshake fails, or waits for the rest of a record
                assert await _read_frame_or_eof(reader, timeout=0.2) is None  # (until HANDSHAKE_SECONDS_MAX)
            except asyncio.TimeoutError:
                pass
            writer.close()
            closed += 1
        await asyncio.sleep(0)
        check()
        rounds += 1
    return answered, closed, rounds


async def _serves_a_well_formed_request(pki, port, seq):
    """The reply to an OPEN of a fresh card, under an id and an account the fuzz never uses."""
    seq += 10**9
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context("pos"))
    writer.write(protocol.encode_frame({"req": 1, "ops": [{"time_us": T0, "source": POS_SOURCES[0], "seq": seq,
                                                           "kind": "OPEN", "account_id": 10**7 + seq,
                                                           "account_kind": "CARD"}]}))
    reply = await _read_frame_or_eof(reader)
    writer.close()
    return reply


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Certificates made once for this module's TLS servers."""
    return make_pki(str(tmp_path_factory.mktemp("pki")))


def test_a_live_tls_server_survives_random_frames_and_bytes_within_bounded_memory(pki, tmp_path):
    """For GATEWAY_FUZZ_SECONDS (3 by default): random payloads in well-formed frames,
    random unframed bytes, and random bytes instead of a TLS handshake. Each frame is
    answered or its connection closed; no connection ever holds more than one frame's
    bytes; once the fuzzing connections are gone nothing is held; the server then serves
    a well-formed request; every op the ledger journaled is in the certificate's sources,
    and the ledger verifies."""
    rnd = random.Random(20261207)

    async def main():
        with cardledger.open(str(tmp_path / "ledger"), create=True) as led:
            gateway = server.Gateway(led, ClientMap.load(pki.clients_file))
            srv = await server.start_server(gateway, "127.0.0.1", 0, pki.server_context())
            port = srv.sockets[0].getsockname()[1]

            def check():
                assert all(len(c.buf) <= CONNECTION_BUFFER_MAX for c in gateway.connections)

            try:
                answered, closed, rounds = await fuzz_tls_server(pki, port, FUZZ_SECONDS, rnd, check)
                for _ in range(100):  # the server sees the last closes
                    if not gateway.connections:
                        break
                    await asyncio.sleep(0.02)
                held = gateway.buffered_bytes(), len(gateway.connections)
                ok = await _serves_a_well_formed_request(pki, port, 1)
            finally:
                srv.close()
                await srv.wait_closed()
                gateway.close()
            return answered, closed, rounds, held, ok, gateway.refused_sources

    answered, closed, rounds, held, ok, refused_sources = asyncio.run(main())
    assert rounds > 5 and answered > 0 and closed > 0
    assert refused_sources > 0  # the fuzz did try sources outside the range
    assert held == (0, 0)
    assert ok["results"][0]["result"] == "OK"
    with cardledger.open(str(tmp_path / "ledger")) as led:
        sources = led.journal()["source"]
        assert len(sources) > 1 and all(POS_SOURCES[0] <= int(s) <= POS_SOURCES[1] for s in sources)
        assert led.verify().ok


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.soak
def test_soak_a_tls_server_process_under_random_input_stays_alive_and_bounded(pki, tmp_path):
    """server.py as its own process, over TLS, fuzzed for GATEWAY_FUZZ_SOAK_SECONDS (120
    by default): it stays alive, its resident memory grows by at most
    SOAK_RSS_GROWTH_MAX after the first tenth of the run, and it then serves a
    well-formed request."""
    proc = subprocess.Popen(
        [sys.executable, os.path.join(GATEWAY, "server.py"), "--ledger", str(tmp_path / "ledger"), "--port", "0",
         "--loop", "asyncio", "--cert", pki.cert("server"), "--key", pki.key("server"), "--ca", pki.ca,
         "--clients", pki.clients_file], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = int(proc.stdout.readline().split()[2].rsplit(":", 1)[1])
        rnd = random.Random(20261208)

        async def main():
            await fuzz_tls_server(pki, port, SOAK_SECONDS / 10, rnd)
            warm = _rss_bytes(proc.pid)
            peak = [warm]
            result = await fuzz_tls_server(pki, port, SOAK_SECONDS * 0.9, rnd,
                                           lambda: peak.append(_rss_bytes(proc.pid)))
            return warm, max(peak), result, await _serves_a_well_formed_request(pki, port, 2)

        warm, peak, (answered, closed, rounds), ok = asyncio.run(main())
        assert proc.poll() is None, "the server died"
        assert peak - warm <= SOAK_RSS_GROWTH_MAX, (warm, peak)
        assert answered > 0 and rounds > 100
        assert ok["results"][0]["result"] == "OK"
    finally:
        proc.terminate()
        proc.wait(30)
