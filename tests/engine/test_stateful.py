"""The core against the executable specification, through the public Ledger.

A hypothesis state machine drives random op batches (replays of old ids, linked chains,
holds with POST/VOID, freeze/replace/close, purchases and partial refunds under random
offer catalogs installed at effective times, malformed ops) through two ledgers — one
on the implementation under test, one on the pure-Python reference engine — with
checkpoints and reopens in between, and demands identical results and balances.
"""

from __future__ import annotations

import random
import shutil
import tempfile

import numpy as np
from helpers import HYPOTHESIS_EXAMPLES
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from helpers.opgen import MERCHANT_IDS, T0_US, OpWorld, random_catalog
from helpers.policygen import random_policies

import cardledger


class LedgerPair(RuleBasedStateMachine):
    """Two ledgers fed the same ops: implementation under test vs reference."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="cardledger-sm-")
        self.batches: list[np.ndarray] = []

    @initialize(checkpoint_ops=st.integers(1, 120), flush_ops=st.integers(1, 60), seed=st.integers(0, 2**32 - 1))
    def open_ledgers(self, checkpoint_ops: int, flush_ops: int, seed: int) -> None:
        self.checkpoint_ops = checkpoint_ops
        self.flush_ops = min(flush_ops, checkpoint_ops)
        self.world = OpWorld(random.Random(seed))
        self._open()
        catalog = random_catalog(random.Random(seed))
        self.test.install_offers(catalog, T0_US)
        self.ref.install_offers(catalog, T0_US)
        self._apply(self.world.setup_batch())

    def _open(self) -> None:
        """Open both; ids are flushed to the index more often than accounts are snapshotted."""
        self.test = cardledger.open(self.dir + "/test", checkpoint_ops=self.checkpoint_ops, create=True)
        self.ref = cardledger.open(self.dir + "/ref", checkpoint_ops=self.checkpoint_ops, engine="python", create=True)
        self.test.ids_flush_ops = self.ref.ids_flush_ops = self.flush_ops

    def _apply(self, ops: np.ndarray) -> None:
        got = self.test.apply(ops)
        want = self.ref.apply(ops)
        assert got.tobytes() == want.tobytes(), _diff(ops, got, want)
        self.batches.append(ops)

    @rule(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 25), link=st.sampled_from([0.0, 0.15, 0.5]))
    def apply_random_batch(self, seed: int, n: int, link: float) -> None:
        self.world.rng = random.Random(seed)
        self._apply(self.world.batch(n, link))

    @precondition(lambda self: len(self.batches) > 1)
    @rule(pick=st.integers(0, 10**6))
    def resubmit_an_earlier_batch(self, pick: int) -> None:
        """A gateway that lost an acknowledgement sends a whole batch again."""
        self._apply(self.batches[pick % len(self.batches)].copy())

    @rule(seed=st.integers(0, 2**32 - 1), at_us=st.integers(1, 10**9))
    def install_offers(self, seed: int, at_us: int) -> None:
        """A new catalog version from T0 + at_us: both ledgers take it, or both refuse it
        (it would start before a purchase already applied)."""
        catalog = random_catalog(random.Random(seed))
        refused = []
        for led in (self.test, self.ref):
            try:
                led.install_offers(catalog, T0_US + at_us)
                refused.append(False)
            except ValueError:
                refused.append(True)
        assert refused[0] == refused[1]

    @rule(seed=st.integers(0, 2**32 - 1))
    def install_policies(self, seed: int) -> None:
        """A random set of source policies (or None: enforcement lifted; or []: nothing
        allowed) installed in both: the ops after it are allowed or refused alike."""
        policies = random_policies(random.Random(seed))
        assert self.test.install_policies(policies) == self.ref.install_policies(policies)
        assert self.test.policies() == self.ref.policies()

    @rule()
    def reopen(self) -> None:
        """Close and reopen both: state comes back from checkpoint + journal replay."""
        self.test.close()
        self.ref.close()
        self._open()

    @rule()
    def checkpoint(self) -> None:
        self.test.checkpoint()
        self.ref.checkpoint()

    @invariant()
    def same_state(self) -> None:
        if not hasattr(self, "test"):
            return
        assert self.test.accounts().tobytes() == self.ref.accounts().tobytes()
        assert self.test.journal_seq == self.ref.journal_seq
        assert self.test.offer_report() == self.ref.offer_report()
        for merchant in MERCHANT_IDS:
            at_us = T0_US + 600_000_000
            assert self.test.quote_purchase(10, merchant, 5_000, at_us) == self.ref.quote_purchase(10, merchant, 5_000, at_us)

    @invariant()
    def double_entry(self) -> None:
        if not hasattr(self, "test"):
            return
        acc = self.test.accounts()
        assert int(acc["credits_posted"].sum()) == int(acc["debits_posted"].sum())
        assert int(acc["credits_pending"].sum()) == int(acc["debits_pending"].sum())

    def teardown(self) -> None:
        try:
            if hasattr(self, "test"):
                report = self.test.verify()
                assert report.ok, report.problems
                assert self.ref.verify().ok
                self.test.close()
                self.ref.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


def _diff(ops: np.ndarray, got: np.ndarray, want: np.ndarray) -> str:
    for i in range(len(ops)):
        if got[i].tobytes() != want[i].tobytes():
            return f"op {i} {ops[i]}: got {got[i]} ({cardledger.Result(int(got[i]['code'])).name}), want {want[i]} ({cardledger.Result(int(want[i]['code'])).name})"
    return "results differ"


LedgerPair.TestCase.settings = settings(
    max_examples=HYPOTHESIS_EXAMPLES,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLedgerPair = LedgerPair.TestCase
