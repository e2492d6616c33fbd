"""Source policies in the reference engine (twin of cext/policies.pxi; docs/policies.md).

The set in force is a tuple of `SourcePolicy` sorted by first_source with disjoint
ranges: the policy covering an op's source is the last one starting at or before it
(bisection), and it must allow the op's kind, amount, account and counterparty.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from ...policies import PolicyVersion
from ...schema import CLOSE_DAY_SOURCE, OP_FIELDS_USED, POLICY_SOURCE, OpKind, Result

#: The ledger's own ops, which need no policy: (kind, source).
OWN_OPS = frozenset({(int(OpKind.SET_POLICIES), POLICY_SOURCE), (int(OpKind.CLOSE_DAY), CLOSE_DAY_SOURCE)})


class Policies:
    """The installed sets (oldest first) and the one in force (None: none, or lifted)."""

    def __init__(self) -> None:
        self.versions: list[PolicyVersion] = []
        self.current: PolicyVersion | None = None
        self._firsts: list[int] = []

    def load(self, versions: list[PolicyVersion], journal_seq: int) -> None:
        """Take these sets; the one in force is the last installed at or before journal_seq."""
        versions = list(versions)
        for a, b in zip(versions, versions[1:]):
            if b.journal_seq <= a.journal_seq:
                raise ValueError("policy sets must be given oldest first, one per journal_seq")
        self.versions = versions
        self.choose(journal_seq)

    def choose(self, journal_seq: int) -> None:
        """The set in force at journal_seq (after a checkpoint is loaded)."""
        current = None
        for v in self.versions:
            if v.journal_seq <= journal_seq:
                current = v
        self._use(current)

    def _use(self, v: PolicyVersion | None) -> None:
        self.current = v if v is not None and v.enforce else None
        self._firsts = [p.first_source for p in self.current.policies] if self.current is not None else []

    def allows(self, op: dict) -> bool:
        """Whether the set in force allows this new op (it is known to be in force)."""
        assert self.current is not None and self.current.policies is not None
        kind, source = op["kind"], op["source"]
        if (kind, source) in OWN_OPS:
            return True
        p = self._covering(source)
        return p is not None and p.allows(kind, op["account_id"], op["counterparty_id"], op["amount_fen"], OP_FIELDS_USED[OpKind(kind)])

    def allows_parties(self, source: int, account_id: int, counterparty_id: int) -> bool:
        """Whether the policy covering `source` lets it touch these accounts (a REFUND's
        purchase's card and merchant; its kind and amount were checked with the op)."""
        p = self._covering(source)
        if p is None:
            return False
        if p.accounts is not None and account_id not in p.accounts:
            return False
        return p.counterparties is None or counterparty_id in p.counterparties

    def _covering(self, source: int) -> Any:
        """The policy of the set in force whose range covers `source`, or None."""
        assert self.current is not None and self.current.policies is not None
        i = bisect_right(self._firsts, source) - 1
        if i < 0:
            return None
        p = self.current.policies[i]
        return p if source <= p.last_source else None

    def install(self, op: dict, jseq: int) -> bool:
        """A SET_POLICIES record at jseq: put the set stored for it in force; False when
        there is none (or its digest is not the record's user_data)."""
        if op["source"] != POLICY_SOURCE or op["seq"] != jseq:
            return False
        for v in self.versions:
            if v.journal_seq == jseq and v.digest == op["user_data"]:
                self._use(v)
                return True
        return False


def op_set_policies(eng: Any, op: dict, jseq: int) -> tuple[int, Any]:
    """A set of source policies installed: the set stored for this very record (its
    journal_seq; its digest is the record's user_data) is in force from the next op
    on. No money moves. Without such a set: POLICY_SET_UNKNOWN."""
    if not eng.policies.install(op, jseq):
        return Result.POLICY_SET_UNKNOWN, None
    return Result.OK, (0, 0, 0, 0, 0)
