"""The authenticated example gateway: TLS with client certificates, each mapped to a
range of sources. Real certificates (made at test time) over real TLS on 127.0.0.1.

A connection without a valid, mapped certificate never reaches the protocol; an op
whose source is outside its connection's range refuses its whole request before it
reaches the ledger; exactly-once holds over TLS as over plain TCP."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import types
import warnings

import msgpack
import pytest
from helpers.gateway_pki import BANK_SOURCES, LOADGEN_SOURCES, POS_SOURCES, make_pki

import cardledger

import loadgen  # noqa: E402  (examples/gateway, on sys.path through helpers.gateway_pki)
import protocol  # noqa: E402
import server  # noqa: E402
from mapping import ClientMap, MappingError  # noqa: E402

T0 = 1_767_225_600_000_000
POS = POS_SOURCES[0]
BANK = BANK_SOURCES[0]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The CA, server and client certificates and clients.toml, made once per module."""
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@contextlib.asynccontextmanager
async def tls_gateway(pki, ledger_path):
    """A TLS gateway on 127.0.0.1 (port 0) over a fresh ledger: yields (gateway, port)."""
    with cardledger.open(ledger_path, create=True) as led:
        gateway = server.Gateway(led, ClientMap.load(pki.clients_file))
        srv = await server.start_server(gateway, "127.0.0.1", 0, pki.server_context())
        try:
            yield gateway, srv.sockets[0].getsockname()[1]
        finally:
            srv.close()
            await srv.wait_closed()
            gateway.close()


async def connect(pki, port, name):
    """A TLS connection presenting certificate `name` (None: none)."""
    return await asyncio.open_connection("127.0.0.1", port, ssl=pki.client_context(name))


async def read_reply(reader):
    """One reply frame, decoded."""
    (size,) = protocol.FRAME_HEADER.unpack(await asyncio.wait_for(reader.readexactly(4), 10))
    return msgpack.unpackb(await reader.readexactly(size), raw=False)


async def call(reader, writer, req, ops):
    """Send one request, return its reply."""
    writer.write(protocol.encode_frame({"req": req, "ops": ops}))
    await writer.drain()
    return await read_reply(reader)


def open_op(source, seq, account, kind):
    """An OPEN op."""
    return {"time_us": T0, "source": source, "seq": seq, "kind": "OPEN", "account_id": account, "account_kind": kind}


def topup(source, seq, card, fen):
    """A TOPUP of `card` from clearing account 1."""
    return {"time_us": T0, "source": source, "seq": seq, "kind": "TOPUP", "account_id": card, "counterparty_id": 1,
            "amount_fen": fen}


async def setup_accounts(pki, port):
    """Through the bank's connection: clearing 1, merchant 2, card 9."""
    reader, writer = await connect(pki, port, "bank")
    reply = await call(reader, writer, 1, [open_op(BANK, 1, 1, "CLEARING"), open_op(BANK, 2, 2, "MERCHANT"),
                                           open_op(BANK, 3, 9, "CARD")])
    writer.close()
    assert [r["result"] for r in reply["results"]] == ["OK"] * 3


async def attempt(pki, port, name):
    """Connect with certificate `name` and send a well-formed request; return what came
    back: a reply, or the name of the failure (the handshake refused or the connection
    closed without a reply)."""
    try:
        reader, writer = await connect(pki, port, name)
    except (ssl.SSLError, ConnectionError) as e:
        return f"handshake failed: {type(e).__name__}"
    try:
        writer.write(protocol.encode_frame({"req": 1, "ops": [open_op(POS, 1, 77, "CARD")]}))
        await writer.drain()
        return await read_reply(reader)
    except (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError) as e:
        return f"closed: {type(e).__name__}"
    finally:
        writer.close()


def run_refused(pki, tmp_path, name):
    """attempt() with certificate `name`, then one with the valid `pos` certificate; what
    each got, the gateway's counts and the journal's head. Checks that only the valid
    connection reached the protocol."""
    async def main():
        async with tls_gateway(pki, str(tmp_path / "ledger")) as (gateway, port):
            outcome = await attempt(pki, port, name)
            served = await attempt(pki, port, "pos")  # the gateway still serves a valid client
            assert gateway.served_connections == 1  # the valid client's only
            return outcome, served, gateway.requests, gateway.refused_connections

    outcome, served, requests, refused_connections = asyncio.run(main())
    with cardledger.open(str(tmp_path / "ledger")) as led:
        journal_seq = led.journal_seq
    return outcome, served, requests, refused_connections, journal_seq


@pytest.mark.parametrize("name", [None, "forged", "expired"])
def test_a_client_without_a_valid_certificate_fails_the_handshake_and_reaches_nothing(pki, tmp_path, name):
    """No certificate, one signed by another CA (though its fingerprint is mapped), or an
    expired one (also mapped): the TLS handshake fails, so not one frame is read; the
    request it tried to send is not applied, and the next valid client is served."""
    outcome, served, requests, refused_connections, journal_seq = run_refused(pki, tmp_path, name)
    assert isinstance(outcome, str), outcome
    assert refused_connections == 0  # refused by TLS itself, before the mapping is consulted
    assert served["results"][0]["result"] == "OK" and requests == 1
    assert journal_seq == 1  # only the valid client's op


def test_a_valid_certificate_not_in_the_clients_file_is_closed_before_any_frame_is_read(pki, tmp_path):
    """A certificate signed by the gateway's CA but not mapped: the handshake succeeds and
    the connection is closed at once; its request gets no reply and is not applied."""
    outcome, served, requests, refused_connections, journal_seq = run_refused(pki, tmp_path, "stranger")
    assert outcome.startswith("closed"), outcome
    assert refused_connections == 1
    assert served["results"][0]["result"] == "OK" and requests == 1
    assert journal_seq == 1


def test_a_connection_past_the_cap_is_closed_and_a_freed_place_is_served_again(pki, tmp_path):
    """With connections_max open, one more connection is closed as it arrives (no frame
    read, none applied); once one of them closes, a new one is served."""
    async def main():
        with cardledger.open(str(tmp_path / "ledger"), create=True) as led:
            gateway = server.Gateway(led, ClientMap.load(pki.clients_file), connections_max=2)
            srv = await server.start_server(gateway, "127.0.0.1", 0, pki.server_context())
            port = srv.sockets[0].getsockname()[1]
            try:
                held = [await connect(pki, port, "pos") for _ in range(2)]
                for _ in range(50):  # both accepted (after their handshakes)
                    if len(gateway.connections) == 2:
                        break
                    await asyncio.sleep(0.01)
                busy = await attempt(pki, port, "pos")
                held[0][1].close()
                for _ in range(50):
                    if len(gateway.connections) < 2:
                        break
                    await asyncio.sleep(0.01)
                served = await attempt(pki, port, "pos")
                held[1][1].close()
                return busy, served, gateway.refused_busy, gateway.requests
            finally:
                srv.close()
                await srv.wait_closed()
                gateway.close()

    busy, served, refused_busy, requests = asyncio.run(main())
    assert busy.startswith("closed"), busy
    assert refused_busy == 1
    assert served["results"][0]["result"] == "OK" and requests == 1
    with pytest.raises(ValueError, match="connections_max"):
        server.Gateway(None, None, connections_max=0)


def test_a_request_with_an_op_outside_the_connections_sources_is_refused_whole(pki, tmp_path):
    """The POS's certificate maps to sources 1000..1099. A request with an op of source
    2000 (the bank's) is refused with an error reply naming the op, none of its ops
    reaches the ledger (not even its in-range op, whose id stays unused), and the
    connection goes on serving: the in-range op sent again alone is applied."""
    async def main():
        async with tls_gateway(pki, str(tmp_path / "ledger")) as (gateway, port):
            await setup_accounts(pki, port)
            reader, writer = await connect(pki, port, "pos")
            mixed = await call(reader, writer, 5, [topup(POS, 1, 9, 100), topup(BANK, 9, 9, 10**6)])
            below = await call(reader, writer, 6, [topup(POS - 1, 1, 9, 100)])
            above = await call(reader, writer, 7, [topup(POS_SOURCES[1] + 1, 1, 9, 100)])
            edges = await call(reader, writer, 8, [topup(POS_SOURCES[0], 1, 9, 100), topup(POS_SOURCES[1], 1, 9, 10)])
            writer.close()
            return mixed, below, above, edges, gateway.refused_sources

    mixed, below, above, edges, refused_sources = asyncio.run(main())
    assert mixed["req"] == 5 and mixed["error"] == (
        f"op 1: source {BANK} is outside this connection's sources {POS_SOURCES[0]}..{POS_SOURCES[1]}")
    assert "outside" in below["error"] and "outside" in above["error"]
    assert [r["result"] for r in edges["results"]] == ["OK", "OK"]  # (POS, 1) was never consumed
    assert refused_sources == 3
    with cardledger.open(str(tmp_path / "ledger")) as led:
        assert led.balance(9) == 110
        assert {int(s) for s in led.journal()["source"]} == {BANK, *POS_SOURCES}
        assert led.verify().ok


def test_a_resent_request_over_tls_moves_money_once(pki, tmp_path):
    """Happy path and exactly-once over TLS: a top-up, then the same request again on the
    same connection and on a new one (a terminal that lost its reply and reconnected):
    the first is OK, the resends say EXISTS, the card holds the amount once."""
    async def main():
        async with tls_gateway(pki, str(tmp_path / "ledger")) as (gateway, port):
            await setup_accounts(pki, port)
            reader, writer = await connect(pki, port, "pos")
            first = await call(reader, writer, 1, [topup(POS, 1, 9, 700)])
            again = await call(reader, writer, 2, [topup(POS, 1, 9, 700)])
            writer.close()
            reader, writer = await connect(pki, port, "pos")
            reconnected = await call(reader, writer, 1, [topup(POS, 1, 9, 700)])
            writer.close()
            return first, again, reconnected

    first, again, reconnected = asyncio.run(main())
    assert first["results"][0]["result"] == "OK" and first["results"][0]["balance_fen"] == 700
    assert again["results"][0]["result"] == "EXISTS"
    assert reconnected["results"][0]["result"] == "EXISTS"
    with cardledger.open(str(tmp_path / "ledger")) as led:
        assert led.balance(9) == 700
        assert led.verify().ok


def test_the_load_generator_runs_over_tls_with_its_certificate(pki, tmp_path):
    """loadgen.py with the `loadgen` certificate and sources inside its range: every op
    OK. With sources outside its range, its first request is refused and it stops."""
    async def main():
        async with tls_gateway(pki, str(tmp_path / "ledger")) as (gateway, port):
            args = types.SimpleNamespace(host="127.0.0.1", port=port, cards=20, clients=2, window=2, batch=3, ops=30,
                                         seconds=30.0, loop="asyncio", sources=LOADGEN_SOURCES,
                                         tls=loadgen.client_tls(pki.ca, pki.cert("loadgen"), pki.key("loadgen")))
            report = await loadgen.run(args)
            args.sources = (1, 4096)  # not its own sources
            with pytest.raises(SystemExit, match="outside this connection's sources"):
                await loadgen.run(args)
            return report

    report = asyncio.run(main())
    assert report["transport"] == "TLS" and report["results"] == {"OK": 30}


def test_serving_plain_tcp_must_be_asked_for_and_stays_on_loopback(pki, tmp_path):
    """serve_forever needs tls= and clients=, or plain=True; start_server refuses plain TCP
    on a non-loopback address and TLS without a clients map."""
    async def main():
        with pytest.raises(ValueError, match="plain=True"):
            await server.serve_forever(str(tmp_path / "a"), "127.0.0.1", 0)
        with cardledger.open(str(tmp_path / "b"), create=True) as led:
            plain = server.Gateway(led)
            with pytest.raises(ValueError, match="loopback"):
                await server.start_server(plain, "0.0.0.0", 0, None)
            with pytest.raises(ValueError, match="clients map"):
                await server.start_server(plain, "127.0.0.1", 0, pki.server_context())
            plain.close()

    asyncio.run(main())


def test_the_server_context_requires_client_certificates_and_tls_1_2(pki):
    """CERT_REQUIRED, TLS 1.2 at least."""
    ctx = pki.server_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2


def test_a_tls_1_1_client_is_refused(pki, tmp_path):
    """A client that offers at most TLS 1.1 (with a valid, mapped certificate) fails the
    handshake, when this OpenSSL can offer TLS 1.1 at all."""
    ctx = pki.client_context("pos")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the point: an old protocol
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot offer TLS 1.1")

    async def main():
        async with tls_gateway(pki, str(tmp_path / "ledger")) as (gateway, port):
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await asyncio.open_connection("127.0.0.1", port, ssl=ctx)

    asyncio.run(main())


@pytest.mark.parametrize("body, message", [
    ('[[client]]\nname = "a"\nsha256 = "zz"\nfirst_source = 1\nlast_source = 2\n', "64 hex digits"),
    ('[[client]]\nname = "a"\nsha256 = "' + "a" * 64 + '"\nfirst_source = 5\nlast_source = 2\n', "after last_source"),
    ('[[client]]\nname = "a"\nsha256 = "' + "a" * 64 + '"\nfirst_source = 0\nlast_source = 2\n', "must be an integer in 1"),
    ('[[client]]\nname = "a"\nsha256 = "' + "a" * 64 + '"\nfirst_source = 1\n', "exactly the keys"),
    ('[[client]]\nname = "a"\nsha256 = "' + "a" * 64 + '"\nfirst_source = 1\nlast_source = 10\n'
     '[[client]]\nname = "b"\nsha256 = "' + "b" * 64 + '"\nfirst_source = 10\nlast_source = 20\n', "overlap"),
    ('[[client]]\nname = "a"\nsha256 = "' + "a" * 64 + '"\nfirst_source = 1\nlast_source = 10\n'
     '[[client]]\nname = "b"\nsha256 = "' + "A" * 64 + '"\nfirst_source = 11\nlast_source = 20\n', "same certificate"),
    ('[client]\nname = "a"\n', "array of tables"),
    ('clients = 1\n', "unknown top-level"),
    ('# nobody\n', "no \\[\\[client\\]\\]"),
    ('[[client]\n', "not TOML"),
])
def test_a_damaged_clients_file_is_refused_naming_the_file_and_the_client(tmp_path, body, message):
    """The gateway does not start on a clients file it cannot trust to mean one thing."""
    path = tmp_path / "clients.toml"
    path.write_text(body)
    with pytest.raises(MappingError, match=message) as e:
        ClientMap.load(str(path))
    assert str(path) in str(e.value)


def test_a_fingerprint_with_colons_and_capitals_maps_the_same_certificate(pki, tmp_path):
    """clients.toml may give a fingerprint as openssl prints it (AB:CD:...)."""
    import certs

    with open(pki.cert("pos"), "rb") as f:
        fp = certs.fingerprint(f.read())
    path = tmp_path / "clients.toml"
    path.write_text(certs.mapping_toml([("pos", ":".join(fp[i:i + 2] for i in range(0, 64, 2)).upper(), 7, 8)]))
    with open(pki.cert("pos"), "rb") as f:
        der = ssl.PEM_cert_to_DER_cert(f.read().decode())
    assert ClientMap.load(str(path)).lookup(der).sources == (7, 8)


async def _served_with(directory, client):
    """A TLS gateway over the files server.pem/.key, ca.pem and clients.toml in
    `directory`; the reply to one OPEN sent with certificate `client`.pem/.key."""
    import os

    j = lambda name: os.path.join(directory, name)  # noqa: E731
    with cardledger.open(j("ledger"), create=True) as led:
        gateway = server.Gateway(led, ClientMap.load(j("clients.toml")))
        srv = await server.start_server(gateway, "127.0.0.1", 0,
                                        server.tls_context(j("server.pem"), j("server.key"), j("ca.pem")))
        try:
            ctx = loadgen.client_tls(j("ca.pem"), j(f"{client}.pem"), j(f"{client}.key"))
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1], ssl=ctx)
            reply = await call(reader, writer, 1, [open_op(1000, 1, 5, "CARD")])
            writer.close()
            return reply
        finally:
            srv.close()
            await srv.wait_closed()
            gateway.close()


def test_certs_py_init_writes_files_the_gateway_serves_with(tmp_path):
    """`certs.py init DIR --client NAME:FIRST:LAST`: CA, server and client certificates
    and a clients.toml that a gateway starts on and accepts that client through."""
    import os
    import subprocess
    import sys

    subprocess.run([sys.executable, os.path.join(server.__file__.rsplit("/", 1)[0], "certs.py"), "init",
                    str(tmp_path), "--client", "pos:1000:1099"], check=True, capture_output=True)
    reply = asyncio.run(_served_with(str(tmp_path), "pos"))
    assert reply["results"][0]["result"] == "OK"


def test_the_readmes_openssl_commands_make_certificates_the_gateway_accepts(tmp_path):
    """The openssl commands of examples/gateway/README.md, run as written, and the
    fingerprint they print, put into clients.toml: the gateway serves that client."""
    import os
    import re
    import shutil
    import subprocess

    import certs

    if shutil.which("openssl") is None:
        pytest.skip("no openssl CLI")
    readme = open(os.path.join(server.__file__.rsplit("/", 1)[0], "README.md")).read()
    script = re.search(r"With the openssl CLI instead:\n\n```sh\n(.*?)```", readme, re.S).group(1)
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, check=True,
                         capture_output=True, text=True).stdout
    fp = re.search(r"Fingerprint=([0-9A-F:]+)", out).group(1)
    (tmp_path / "clients.toml").write_text(certs.mapping_toml([("pos-hall-3", fp, 1000, 1099)]))
    reply = asyncio.run(_served_with(str(tmp_path), "pos-hall-3"))
    assert reply["results"][0]["result"] == "OK"
