"""The gateway's client mapping: which sources each client certificate may use.

A TOML file of `[[client]]` tables (README.md, "Client certificates"):

    [[client]]
    name = "pos-hall-3"                      # a label for logs and errors
    sha256 = "3f9a…"                         # the certificate's SHA-256 fingerprint (64 hex
                                             #   digits; ':' separators and case ignored)
    first_source = 1000                      # the sources it may use, inclusive
    last_source = 1099

A certificate is named by its fingerprint, not its subject CN: the fingerprint pins
one certificate (a CA that issues a second certificate with the same CN, by mistake or
when compromised, does not give its holder these sources), and removing an entry
revokes that certificate at the next start without any CRL. Ranges may not overlap:
exactly-once is per (source, seq), so two terminals sharing a source would consume each
other's ids.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_SOURCE_MAX = (1 << 64) - 1
_KEYS = {"name", "sha256", "first_source", "last_source"}
_HEX64 = re.compile(r"[0-9a-f]{64}")


class MappingError(ValueError):
    """A clients file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Client:
    """One mapped certificate: its label and the sources it may use (inclusive)."""

    name: str
    sha256: str
    first_source: int
    last_source: int

    @property
    def sources(self) -> tuple[int, int]:
        """(first_source, last_source)."""
        return self.first_source, self.last_source


class ClientMap:
    """Certificate fingerprint -> Client."""

    def __init__(self, clients: list[Client]) -> None:
        self.by_sha256 = {c.sha256: c for c in clients}

    @classmethod
    def load(cls, path: str) -> "ClientMap":
        """Read and check a clients file; MappingError names what is wrong and where."""
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except OSError as e:
            raise MappingError(f"{path}: cannot read: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise MappingError(f"{path}: not TOML: {e}") from None
        extra = set(doc) - {"client"}
        if extra:
            raise MappingError(f"{path}: unknown top-level key(s) {sorted(extra)}; expected [[client]] tables")
        entries = doc.get("client", [])
        if type(entries) is not list:
            raise MappingError(f"{path}: 'client' must be an array of tables ([[client]])")
        if not entries:
            raise MappingError(f"{path}: no [[client]]: the gateway would refuse every connection")
        clients: list[Client] = []
        for i, entry in enumerate(entries, 1):
            where = f"{path}: client {i}" + (f" ({entry.get('name')!r})" if type(entry) is dict and "name" in entry else "")
            if type(entry) is not dict:
                raise MappingError(f"{where}: not a table")
            if set(entry) != _KEYS:
                raise MappingError(f"{where}: needs exactly the keys {sorted(_KEYS)}, has {sorted(entry)}")
            name, fp, first, last = entry["name"], entry["sha256"], entry["first_source"], entry["last_source"]
            if type(name) is not str or not name:
                raise MappingError(f"{where}: name must be a non-empty string")
            fp = fp.replace(":", "").lower() if type(fp) is str else ""
            if not _HEX64.fullmatch(fp):
                raise MappingError(f"{where}: sha256 must be 64 hex digits (a SHA-256 certificate fingerprint)")
            for key, value in (("first_source", first), ("last_source", last)):
                if type(value) is not int or not 1 <= value <= _SOURCE_MAX:
                    raise MappingError(f"{where}: {key} must be an integer in 1..2^64-1")
            if first > last:
                raise MappingError(f"{where}: first_source {first} is after last_source {last}")
            clients.append(Client(name, fp, first, last))
        seen: dict[str, Client] = {}
        for c in clients:
            if c.sha256 in seen:
                raise MappingError(f"{path}: clients {seen[c.sha256].name!r} and {c.name!r} have the same certificate")
            seen[c.sha256] = c
        ordered = sorted(clients, key=lambda c: c.first_source)
        for a, b in zip(ordered, ordered[1:]):
            if b.first_source <= a.last_source:
                raise MappingError(f"{path}: the sources of {a.name!r} ({a.first_source}..{a.last_source}) and "
                                   f"{b.name!r} ({b.first_source}..{b.last_source}) overlap")
        return cls(clients)

    def lookup(self, cert_der: bytes | None) -> Client | None:
        """The client a peer certificate (DER bytes) maps to, or None."""
        if not cert_der:
            return None
        return self.by_sha256.get(hashlib.sha256(cert_der).hexdigest())

    def __len__(self) -> int:
        return len(self.by_sha256)
