"""Source policies: who may do what (docs/policies.md).

A `SourcePolicy` names a range of op sources and what they may do: the op kinds
allowed, optionally the accounts allowed as an op's `account_id` and as its
`counterparty_id`, and optionally a largest `amount_fen`. `Ledger.install_policies`
installs a set of them, journaled as a SET_POLICIES record; from then on both engines
refuse, with Result.SOURCE_NOT_ALLOWED, every new op the set does not allow.

This module is the set's vocabulary, shared by the ledger, the store and both
engines: checking a set (`check_set`), its canonical bytes and digest (what is
stored and journaled), the engines' compiled arrays (`compile_tables`), the one
stored version (`PolicyVersion`) and the TOML policy file (`load_policies`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef, import-not-found]

from .errors import LedgerError
from .schema import INT64_MAX, POLICIES_MAX, POLICY_ACCOUNTS_MAX, OpKind

__all__ = [
    "PolicyError",
    "PolicyFileError",
    "PolicyVersion",
    "SourcePolicy",
    "load_policies",
]

#: Largest source id and account id (u64).
ID_MAX = (1 << 64) - 1
#: The format marker of a set's canonical bytes.
FORMAT = "cardledger-policies/1"
#: A policy file larger than this is refused.
POLICY_FILE_BYTES_MAX = 64 * 1024 * 1024
_FILE_KEYS = frozenset({"first_source", "last_source", "kinds", "accounts", "counterparties", "amount_max_fen"})
_TOML_LINE_RE = re.compile(r"at line (\d+)")


class PolicyError(LedgerError, ValueError):
    """A source policy or a set of them is invalid (the message says which and why)."""


class PolicyFileError(PolicyError):
    """A policy file cannot be read as a set of policies: the message names the file,
    the line where known (`line`, 0 when not), and the policy and key at fault."""

    def __init__(self, message: str, path: str = "", line: int = 0) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _id(what: str, x: Any) -> int:
    if not _is_int(x):
        raise PolicyError(f"{what} must be an int id in 1..2**64-1, got {type(x).__name__} {x!r}")
    if not 1 <= int(x) <= ID_MAX:
        raise PolicyError(f"{what} must be in 1..2**64-1, got {int(x)}")
    return int(x)


def _ids(what: str, ids: Any) -> tuple[int, ...] | None:
    if ids is None:
        return None
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise PolicyError(f"{what} must be None (any) or an iterable of account ids, got {type(ids).__name__}")
    out = sorted({_id(f"{what}: an account id", x) for x in ids})
    if len(out) > POLICY_ACCOUNTS_MAX:
        raise PolicyError(f"{what}: at most {POLICY_ACCOUNTS_MAX} ids, got {len(out)}")
    return tuple(out)


def _kind(x: Any) -> OpKind:
    if isinstance(x, OpKind):
        return x
    if _is_int(x):
        try:
            return OpKind(int(x))
        except ValueError:
            pass
    raise PolicyError(f"kinds: {x!r} is not an OpKind (e.g. cardledger.OpKind.TOPUP)")


class SourcePolicy:
    """What the sources first_source..last_source (inclusive) may do.

    `kinds`: the op kinds allowed (an iterable of OpKind; empty: none).
    `accounts` / `counterparties`: the ids an op's account_id / counterparty_id must be
    among, checked for the kinds that read that field (None: any).
    `amount_max_fen`: the largest amount_fen an op may carry (None: any).
    Invalid values raise PolicyError (a ValueError) naming the field.
    """

    __slots__ = ("first_source", "last_source", "kinds", "accounts", "counterparties", "amount_max_fen")

    first_source: int
    last_source: int
    kinds: frozenset[OpKind]
    accounts: tuple[int, ...] | None
    counterparties: tuple[int, ...] | None
    amount_max_fen: int | None

    def __init__(self, first_source: int, last_source: int, kinds: Iterable[OpKind], *,
                 accounts: Iterable[int] | None = None, counterparties: Iterable[int] | None = None,
                 amount_max_fen: int | None = None) -> None:
        first = _id("first_source", first_source)
        last = _id("last_source", last_source)
        if last < first:
            raise PolicyError(f"last_source {last} is below first_source {first}: a range is first..last, inclusive")
        if isinstance(kinds, (str, bytes)) or not isinstance(kinds, Iterable):
            raise PolicyError(f"kinds must be an iterable of OpKind, got {type(kinds).__name__}")
        ks = frozenset(_kind(k) for k in kinds)
        if amount_max_fen is not None:
            if not _is_int(amount_max_fen):
                raise PolicyError(f"amount_max_fen must be None or an int of fen, got {type(amount_max_fen).__name__}")
            if not 0 <= int(amount_max_fen) <= INT64_MAX:
                raise PolicyError(f"amount_max_fen must be in 0..2**63-1, got {int(amount_max_fen)}")
            amount_max_fen = int(amount_max_fen)
        set_ = object.__setattr__
        set_(self, "first_source", first)
        set_(self, "last_source", last)
        set_(self, "kinds", ks)
        set_(self, "accounts", _ids("accounts", accounts))
        set_(self, "counterparties", _ids("counterparties", counterparties))
        set_(self, "amount_max_fen", amount_max_fen)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("a SourcePolicy is immutable: make a new one")

    def to_dict(self) -> dict[str, Any]:
        """The policy as plain values (kinds by name, in OpKind order): what is stored."""
        return {"first_source": self.first_source, "last_source": self.last_source,
                "kinds": [k.name for k in sorted(self.kinds)],
                "accounts": None if self.accounts is None else list(self.accounts),
                "counterparties": None if self.counterparties is None else list(self.counterparties),
                "amount_max_fen": self.amount_max_fen}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SourcePolicy":
        """The policy `to_dict` gave (kinds by name)."""
        try:
            kinds = [OpKind[k] for k in d["kinds"]]
        except (KeyError, TypeError) as e:
            raise PolicyError(f"kinds: not a list of OpKind names: {e}") from None
        return cls(d["first_source"], d["last_source"], kinds, accounts=d["accounts"],
                   counterparties=d["counterparties"], amount_max_fen=d["amount_max_fen"])

    def _key(self) -> tuple:
        return (self.first_source, self.last_source, self.kinds, self.accounts, self.counterparties,
                self.amount_max_fen)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SourcePolicy) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        extra = ""
        for name in ("accounts", "counterparties"):
            v = getattr(self, name)
            if v is not None:
                shown = ", ".join(map(str, v[:4])) + (", …" if len(v) > 4 else "")
                extra += f", {name}=[{shown}]"
        if self.amount_max_fen is not None:
            extra += f", amount_max_fen={self.amount_max_fen}"
        kinds = ", ".join(k.name for k in sorted(self.kinds))
        return f"SourcePolicy({self.first_source}, {self.last_source}, [{kinds}]{extra})"

    def allows(self, kind: int, account_id: int, counterparty_id: int, amount_fen: int, fields_used: Any) -> bool:
        """Whether this policy allows an op of `kind` with these fields (`fields_used`:
        the fields that kind reads, schema.OP_FIELDS_USED[kind]); its source is known
        to be in range."""
        if kind not in self.kinds:
            return False
        if self.amount_max_fen is not None and amount_fen > self.amount_max_fen:
            return False
        if self.accounts is not None and "account_id" in fields_used and account_id not in self.accounts:
            return False
        if (self.counterparties is not None and "counterparty_id" in fields_used
                and counterparty_id not in self.counterparties):
            return False
        return True


def check_set(policies: Iterable[SourcePolicy] | None) -> tuple[SourcePolicy, ...] | None:
    """The set as installed: its policies sorted by first_source (None stays None: no
    enforcement). PolicyError when an item is not a SourcePolicy, the set is larger
    than POLICIES_MAX, or two policies' source ranges overlap (both are named)."""
    if policies is None:
        return None
    if isinstance(policies, (SourcePolicy, str, bytes)) or not isinstance(policies, Iterable):
        raise PolicyError(f"install a list of SourcePolicy (or None), got {type(policies).__name__}")
    given = list(policies)
    for i, p in enumerate(given):
        if not isinstance(p, SourcePolicy):
            raise PolicyError(f"policy #{i} is a {type(p).__name__}, not a cardledger.SourcePolicy")
    if len(given) > POLICIES_MAX:
        raise PolicyError(f"a set holds at most POLICIES_MAX={POLICIES_MAX} policies, got {len(given)}")
    order = sorted(range(len(given)), key=lambda i: (given[i].first_source, given[i].last_source))
    for a, b in zip(order, order[1:]):
        if given[b].first_source <= given[a].last_source:
            raise PolicyError(
                f"policies #{a} {given[a]!r} and #{b} {given[b]!r} overlap (sources "
                f"{given[b].first_source}..{min(given[a].last_source, given[b].last_source)}): "
                "within one set every source has at most one policy"
            )
    return tuple(given[i] for i in order)


def encode_set(policies: tuple[SourcePolicy, ...] | None) -> bytes:
    """A checked set's canonical bytes (UTF-8 JSON): what is stored and digested."""
    doc = {"format": FORMAT, "enforce": policies is not None,
           "policies": [] if policies is None else [p.to_dict() for p in policies]}
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def decode_set(data: bytes) -> tuple[SourcePolicy, ...] | None:
    """The set `encode_set` stored (PolicyError if the bytes are not one)."""
    try:
        doc = json.loads(bytes(data).decode())
        if doc.get("format") != FORMAT:
            raise PolicyError(f"not a policy set of format {FORMAT}")
        policies = tuple(SourcePolicy.from_dict(d) for d in doc["policies"])
        enforce = doc["enforce"]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise PolicyError(f"stored policy set unreadable: {e}") from None
    if enforce is not True:
        if enforce is not False or policies:
            raise PolicyError("stored policy set unreadable: a bad 'enforce'")
        return None
    if check_set(policies) != policies:
        raise PolicyError("stored policy set is not in canonical order")
    return policies


def digest(data: bytes) -> int:
    """A set's digest as journaled (the SET_POLICIES record's user_data): the first 8
    bytes of its BLAKE2b, little-endian."""
    return int.from_bytes(hashlib.blake2b(bytes(data), digest_size=8).digest(), "little")


@dataclass(frozen=True)
class PolicyTables:
    """A set compiled for the core (cext/policies.pxi): n policies by first_source."""

    first: np.ndarray  # u64
    last: np.ndarray  # u64
    kinds: np.ndarray  # u32 bitmask: bit k allows OpKind k
    amount_max: np.ndarray  # i64, INT64_MAX when any
    acc_lo: np.ndarray  # i64: -1 when any account, else the slice acc_ids[acc_lo:acc_hi]
    acc_hi: np.ndarray
    acc_ids: np.ndarray  # u64, each policy's ids sorted
    cp_lo: np.ndarray
    cp_hi: np.ndarray
    cp_ids: np.ndarray
    # A bucket index over first: bucket b covers the sources from base + (b << shift),
    # and the policies whose first_source lies in it are buckets[b]..buckets[b + 1] - 1,
    # so a bisection starts on a few policies instead of all of them.
    base: int
    shift: int
    buckets: np.ndarray  # i32, n_buckets + 1 entries


def compile_tables(policies: tuple[SourcePolicy, ...] | None) -> PolicyTables:
    """The sorted arrays the core bisects (an empty set: no policy, every op refused)."""
    ps = policies or ()
    n = len(ps)
    base, shift, buckets = _bucket_index([p.first_source for p in ps])
    lo = {"acc": np.full(n, -1, np.int64), "cp": np.full(n, -1, np.int64)}
    hi = {"acc": np.full(n, -1, np.int64), "cp": np.full(n, -1, np.int64)}
    ids: dict[str, list[int]] = {"acc": [], "cp": []}
    for i, p in enumerate(ps):
        for key, v in (("acc", p.accounts), ("cp", p.counterparties)):
            if v is not None:
                lo[key][i] = len(ids[key])
                ids[key].extend(v)
                hi[key][i] = len(ids[key])
    return PolicyTables(
        first=np.array([p.first_source for p in ps], dtype=np.uint64),
        last=np.array([p.last_source for p in ps], dtype=np.uint64),
        kinds=np.array([sum(1 << int(k) for k in p.kinds) for p in ps], dtype=np.uint32),
        amount_max=np.array([INT64_MAX if p.amount_max_fen is None else p.amount_max_fen for p in ps],
                            dtype=np.int64),
        acc_lo=lo["acc"], acc_hi=hi["acc"], acc_ids=np.array(ids["acc"], dtype=np.uint64),
        cp_lo=lo["cp"], cp_hi=hi["cp"], cp_ids=np.array(ids["cp"], dtype=np.uint64),
        base=base, shift=shift, buckets=buckets,
    )


def _bucket_index(firsts: list[int]) -> tuple[int, int, np.ndarray]:
    """(base, shift, buckets) for sorted first sources: at least two buckets a policy,
    a power of two; buckets[b] = how many firsts lie below base + (b << shift)."""
    n = len(firsts)
    if n == 0:
        return 0, 0, np.zeros(2, dtype=np.int32)
    n_buckets = 1 << max(1, (2 * n - 1).bit_length())
    base = firsts[0]
    span = firsts[-1] - base
    shift = max(0, span.bit_length() - (n_buckets.bit_length() - 1))
    bounds = [base + (b << shift) for b in range(n_buckets + 1)]
    buckets = np.searchsorted(np.array(firsts, dtype=object), np.array(bounds, dtype=object), side="left")
    return base, shift, buckets.astype(np.int32)


class PolicyVersion:
    """One installed set, as stored: the SET_POLICIES record's journal_seq, the set's
    canonical bytes and digest, and the set itself (None: enforcement lifted)."""

    __slots__ = ("journal_seq", "data", "digest", "policies", "__dict__")

    def __init__(self, journal_seq: int, data: bytes) -> None:
        self.journal_seq = int(journal_seq)
        self.data = bytes(data)
        self.digest = digest(self.data)
        self.policies = decode_set(self.data)

    @property
    def enforce(self) -> bool:
        """Whether the set is enforced (False: installed as None, every op allowed)."""
        return self.policies is not None

    @cached_property
    def tables(self) -> PolicyTables:
        """The set compiled for the core."""
        return compile_tables(self.policies)

    def __repr__(self) -> str:
        n = "None" if self.policies is None else f"{len(self.policies)} policies"
        return f"PolicyVersion(journal_seq={self.journal_seq}, {n}, digest={self.digest:#018x})"


# ---------------------------------------------------------------------------- files


def _policy_lines(text: str) -> list[int]:
    """The line of each [[policy]] header, in order (1-based)."""
    return [i + 1 for i, line in enumerate(text.splitlines()) if re.match(r"\s*\[\[\s*policy\s*\]\]", line)]


def load_policies(path: str | os.PathLike[str]) -> list[SourcePolicy]:
    """The policies of a TOML policy file (docs/policies.md): one [[policy]] table each,
    with keys first_source, last_source (default: first_source), kinds (OpKind names),
    and optionally accounts, counterparties, amount_max_fen. The set is checked as
    `install_policies` checks it (no overlapping ranges). Any problem raises
    PolicyFileError naming the file, the line (of the syntax error, or of the
    policy's [[policy]] header) and the policy and key."""
    name = os.fspath(path)
    with open(name, "rb") as f:
        raw = f.read(POLICY_FILE_BYTES_MAX + 1)
    if len(raw) > POLICY_FILE_BYTES_MAX:
        raise PolicyFileError(f"{name}: larger than {POLICY_FILE_BYTES_MAX} bytes", name)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise PolicyFileError(f"{name}: line {line}: not UTF-8 text ({e.reason})", name, line) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = _TOML_LINE_RE.search(str(e))
        line = int(m.group(1)) if m else 0
        raise PolicyFileError(f"{name}: line {line}: TOML syntax error: {e}", name, line) from None
    except RecursionError:
        raise PolicyFileError(f"{name}: nested too deeply to be a policy file", name) from None
    unknown = sorted(set(doc) - {"policy"})
    if unknown:
        raise PolicyFileError(f"{name}: unknown top-level key {unknown[0]!r} (a policy file holds [[policy]] tables)",
                              name)
    tables = doc.get("policy", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise PolicyFileError(f"{name}: 'policy' must be an array of tables: write [[policy]]", name)
    lines = _policy_lines(text)
    out = []
    for i, t in enumerate(tables):
        line = lines[i] if i < len(lines) else 0
        where = f"{name}: line {line}: policy #{i + 1}"
        bad = sorted(set(t) - _FILE_KEYS)
        if bad:
            raise PolicyFileError(f"{where}: unknown key {bad[0]!r} (keys: {', '.join(sorted(_FILE_KEYS))})",
                                  name, line)
        for key in ("first_source", "kinds"):
            if key not in t:
                raise PolicyFileError(f"{where}: key {key!r} is missing", name, line)
        kinds = t["kinds"]
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise PolicyFileError(f"{where}: key 'kinds' must be a list of op kind names, e.g. [\"TOPUP\"]",
                                  name, line)
        unknown_kinds = [k for k in kinds if k not in OpKind.__members__]
        if unknown_kinds:
            raise PolicyFileError(f"{where}: key 'kinds': {unknown_kinds[0]!r} is not an op kind "
                                  f"({', '.join(OpKind.__members__)})", name, line)
        try:
            for key in ("accounts", "counterparties"):
                if key in t and not isinstance(t[key], list):
                    raise PolicyError(f"{key} must be a list of account ids, got {type(t[key]).__name__}")
            p = SourcePolicy(t["first_source"], t.get("last_source", t["first_source"]),
                             [OpKind[k] for k in kinds], accounts=t.get("accounts"),
                             counterparties=t.get("counterparties"), amount_max_fen=t.get("amount_max_fen"))
        except PolicyError as e:
            key = next((k for k in sorted(_FILE_KEYS) if str(e).startswith(k)), "")
            raise PolicyFileError(f"{where}: {'key ' + repr(key) + ': ' if key else ''}{e}", name, line) from None
        out.append(p)
    order = sorted(range(len(out)), key=lambda i: (out[i].first_source, out[i].last_source))
    for a, b in zip(order, order[1:]):
        if out[b].first_source <= out[a].last_source:
            la, lb = (lines[i] if i < len(lines) else 0 for i in (a, b))
            raise PolicyFileError(f"{name}: line {lb}: policy #{b + 1} {out[b]!r} overlaps policy #{a + 1} "
                                  f"{out[a]!r} (line {la}): within one set every source has at most one policy",
                                  name, lb)
    check_set(out)
    return out
