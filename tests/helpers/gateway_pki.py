"""Certificates for the authenticated gateway's tests, made at test time with
examples/gateway/certs.py: a CA the server trusts, its server certificate, mapped
client certificates, and the certificates every refusal needs (another CA's, an
expired one, a valid one left out of the clients file)."""

from __future__ import annotations

import datetime
import os
import ssl
import sys
from dataclasses import dataclass

GATEWAY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "gateway"))
if GATEWAY not in sys.path:
    sys.path.insert(0, GATEWAY)

import certs  # noqa: E402

#: The sources of the mapped clients in the clients file.
POS_SOURCES = (1000, 1099)
BANK_SOURCES = (2000, 2000)
LOADGEN_SOURCES = (1 << 32, (1 << 48) - 1)


@dataclass
class Pki:
    """Paths of the files made: `cert(name)`/`key(name)` for each certificate."""

    directory: str
    ca: str
    clients_file: str

    def cert(self, name: str) -> str:
        """The PEM certificate `name`."""
        return os.path.join(self.directory, f"{name}.pem")

    def key(self, name: str) -> str:
        """The PEM key of certificate `name`."""
        return os.path.join(self.directory, f"{name}.key")

    def server_context(self) -> ssl.SSLContext:
        """The gateway's TLS context over these files."""
        import server

        return server.tls_context(self.cert("server"), self.key("server"), self.ca)

    def client_context(self, name: str | None) -> ssl.SSLContext:
        """A client context trusting the gateway's CA, presenting certificate `name`
        (None: no certificate)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca)
        if name is not None:
            ctx.load_cert_chain(self.cert(name), self.key(name))
        return ctx


def make_pki(directory: str) -> Pki:
    """Write a CA, a server certificate for 127.0.0.1/localhost, and these clients:
    `pos` (sources POS_SOURCES), `bank` (BANK_SOURCES), `loadgen` (LOADGEN_SOURCES),
    all in clients.toml; `stranger` (valid, signed by the CA, not in clients.toml);
    `expired` (in clients.toml, expired yesterday); `forged` (signed by another CA, with
    the same CN as `pos`, its fingerprint in clients.toml)."""
    os.makedirs(directory, exist_ok=True)
    ca = certs.make_ca()
    ca.write(directory, "ca")
    certs.make_server(ca).write(directory, "server")
    now = datetime.datetime.now(datetime.timezone.utc)
    entries = []
    for name, (first, last) in (("pos", POS_SOURCES), ("bank", BANK_SOURCES), ("loadgen", LOADGEN_SOURCES)):
        issued = certs.make_client(ca, name)
        issued.write(directory, name)
        entries.append((name, issued.fingerprint, first, last))
    certs.make_client(ca, "stranger").write(directory, "stranger")
    expired = certs.make_client(ca, "expired", not_before=now - datetime.timedelta(days=30),
                                not_after=now - datetime.timedelta(days=1))
    expired.write(directory, "expired")
    entries.append(("expired", expired.fingerprint, 3000, 3099))
    forged = certs.make_client(certs.make_ca("another CA"), "pos")
    forged.write(directory, "forged")
    entries.append(("forged", forged.fingerprint, 4000, 4099))
    clients_file = os.path.join(directory, "clients.toml")
    with open(clients_file, "w") as f:
        f.write(certs.mapping_toml(entries))
    return Pki(directory, os.path.join(directory, "ca.pem"), clients_file)
