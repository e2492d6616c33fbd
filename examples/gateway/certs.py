#!/usr/bin/env python
"""Certificates for the example gateway: a CA, a server certificate, client certificates.

    python examples/gateway/certs.py init DIR --client loadgen:4294967296:281474976710655 \\
        --client pos-hall-3:1000:1099

writes into DIR: `ca.pem`/`ca.key` (the CA the server trusts), `server.pem`/`server.key`
(for 127.0.0.1 and localhost), one `NAME.pem`/`NAME.key` per --client, and `clients.toml`,
the server's mapping from each client certificate's SHA-256 fingerprint to its sources
(see README.md). `python examples/gateway/certs.py fingerprint FILE.pem` prints a
certificate's fingerprint as the mapping file wants it.

For tests and local use: keys are unencrypted files (mode 0600). Needs the `cryptography`
package (the `test` and `gateway` extras); README.md shows the same with the openssl CLI.
The server itself uses only the standard library's `ssl`.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import ipaddress
import os
import ssl
import sys
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: How long a certificate made here is valid, unless told otherwise.
VALIDITY_DAYS_DEFAULT = 365


@dataclass
class Issued:
    """A key and its certificate, both PEM."""

    key_pem: bytes
    cert_pem: bytes

    @property
    def fingerprint(self) -> str:
        """The certificate's SHA-256 fingerprint (lower-case hex of its DER bytes)."""
        return fingerprint(self.cert_pem)

    def write(self, directory: str, name: str) -> tuple[str, str]:
        """Write NAME.pem and NAME.key (0600) into `directory`; return (cert path, key path)."""
        cert_path, key_path = os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key")
        with open(cert_path, "wb") as f:
            f.write(self.cert_pem)
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.key_pem)
        return cert_path, key_path


def fingerprint(cert_pem: bytes | str) -> str:
    """SHA-256 of a PEM certificate's DER bytes, lower-case hex (what the server computes)."""
    if isinstance(cert_pem, bytes):
        cert_pem = cert_pem.decode("ascii")
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert_pem)).hexdigest()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _issue(subject_cn: str, key: ec.EllipticCurvePrivateKey, issuer: Issued | None, *, ca: bool,
           server_hosts: tuple[str, ...] = (), client: bool = False,
           not_before: datetime.datetime | None = None, not_after: datetime.datetime | None = None) -> Issued:
    not_before = not_before or _now() - datetime.timedelta(minutes=5)
    not_after = not_after or _now() + datetime.timedelta(days=VALIDITY_DAYS_DEFAULT)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)])
    if issuer is None:
        issuer_name, signing_key = subject, key
    else:
        issuer_cert = x509.load_pem_x509_certificate(issuer.cert_pem)
        issuer_name = issuer_cert.subject
        signing_key = serialization.load_pem_private_key(issuer.key_pem, password=None)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None if not ca else 0), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server_hosts else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if issuer is not None:
        issuer_key = signing_key.public_key()  # type: ignore[union-attr]
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key),  # type: ignore[arg-type]
                                        critical=False)
    if server_hosts:
        names: list[x509.GeneralName] = []
        for host in server_hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(signing_key, hashes.SHA256())  # type: ignore[arg-type]
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return Issued(key_pem, cert.public_bytes(serialization.Encoding.PEM))


def make_ca(cn: str = "cardledger gateway CA", **validity) -> Issued:
    """A self-signed CA certificate and its key (P-256)."""
    return _issue(cn, ec.generate_private_key(ec.SECP256R1()), None, ca=True, **validity)


def make_server(ca: Issued, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), **validity) -> Issued:
    """A server certificate signed by `ca`, valid for `hosts` (IP addresses or DNS names)."""
    return _issue(hosts[0], ec.generate_private_key(ec.SECP256R1()), ca, ca=False, server_hosts=hosts, **validity)


def make_client(ca: Issued, cn: str, *, not_before: datetime.datetime | None = None,
                not_after: datetime.datetime | None = None) -> Issued:
    """A client certificate for `cn` signed by `ca`; `not_before`/`not_after` (UTC) make an
    expired or not-yet-valid one."""
    return _issue(cn, ec.generate_private_key(ec.SECP256R1()), ca, ca=False, client=True,
                  not_before=not_before, not_after=not_after)


def mapping_toml(entries: list[tuple[str, str, int, int]]) -> str:
    """A clients.toml for (name, fingerprint, first_source, last_source) entries."""
    out = ["# Which sources each client certificate may use (examples/gateway/README.md)."]
    for name, fp, first, last in entries:
        out += ["", "[[client]]", f'name = "{name}"', f'sha256 = "{fp}"',
                f"first_source = {first}", f"last_source = {last}"]
    return "\n".join(out) + "\n"


def _client_arg(text: str) -> tuple[str, int, int]:
    try:
        name, first, last = text.split(":")
        return name, int(first), int(last)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--client wants NAME:FIRST_SOURCE:LAST_SOURCE, not {text!r}") from None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    init = sub.add_parser("init", help="a CA, a server certificate, client certificates and clients.toml")
    init.add_argument("directory")
    init.add_argument("--client", type=_client_arg, action="append", default=[],
                      metavar="NAME:FIRST:LAST", help="a client certificate and its sources (repeatable)")
    init.add_argument("--host", action="append", default=None,
                      help="a name or address of the server (repeatable; default 127.0.0.1 and localhost)")
    init.add_argument("--days", type=int, default=VALIDITY_DAYS_DEFAULT)
    fp = sub.add_parser("fingerprint", help="print a PEM certificate's SHA-256 fingerprint")
    fp.add_argument("certificate")
    a = p.parse_args()
    if a.command == "fingerprint":
        try:
            with open(a.certificate, "rb") as f:
                print(fingerprint(f.read()))
        except (OSError, ValueError) as e:
            raise SystemExit(f"{a.certificate}: not a PEM certificate ({e})") from None
        return 0
    os.makedirs(a.directory, exist_ok=True)
    validity = {"not_after": _now() + datetime.timedelta(days=a.days)}
    ca = make_ca(**validity)
    ca.write(a.directory, "ca")
    make_server(ca, tuple(a.host or ("127.0.0.1", "localhost")), **validity).write(a.directory, "server")
    entries = []
    for name, first, last in a.client:
        issued = make_client(ca, name, **validity)
        issued.write(a.directory, name)
        entries.append((name, issued.fingerprint, first, last))
    with open(os.path.join(a.directory, "clients.toml"), "w") as f:
        f.write(mapping_toml(entries))
    print(f"wrote ca, server and {len(entries)} client certificate(s) and clients.toml into {a.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
