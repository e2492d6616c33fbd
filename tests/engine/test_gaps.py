"""Known gaps: the core remembers which seqs a source skipped, so a late upload is known
new without an id lookup, and every other id at or below the source's highest seq is
still looked up. The set only saves lookups: results never depend on it (the reference
engine, which has none, agrees op for op in test_engines_agree)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import codes, open_cards

import cardledger
from cardledger import OpKind

core = pytest.importorskip("cardledger._core")

SOURCE = 7_000


def _spends(seqs, source: int = SOURCE, card: int = 100) -> np.ndarray:
    ops = cardledger.new_ops(len(seqs))
    ops["source"] = source
    ops["seq"] = seqs
    ops["kind"] = OpKind.SPEND
    ops["account_id"] = card
    ops["counterparty_id"] = 2
    ops["amount_fen"] = 1
    ops["time_us"] = 1_767_225_600_000_000
    return ops


def _engine_with_cards() -> core.Engine:
    e = core.Engine()
    ops = cardledger.new_ops(4)
    ops["source"] = 1
    ops["seq"] = [1, 2, 3, 4]
    ops["kind"] = [OpKind.OPEN, OpKind.OPEN, OpKind.OPEN, OpKind.TOPUP]
    ops["account_id"] = [1, 2, 100, 100]
    ops["counterparty_id"] = [0, 0, 0, 1]
    ops["account_kind"] = [cardledger.AccountKind.CLEARING, cardledger.AccountKind.MERCHANT,
                           cardledger.AccountKind.CARD, 0]  # fmt: skip
    ops["amount_fen"] = [0, 0, 0, 100_000]
    ops["time_us"] = 1_767_225_600_000_000
    results, _ = e.apply(ops)
    assert (results["code"] == 0).all()
    return e


def _looked_up(e: core.Engine, seqs, source: int = SOURCE) -> list[int]:
    """The seqs among `seqs` the engine wants looked up in the id index."""
    ops = _spends(seqs, source)
    return [int(s) for s in ops["seq"][e.candidates(ops)]]


def test_skipped_seqs_are_known_new_and_decided_ones_are_looked_up():
    e = _engine_with_cards()
    e.apply(_spends([1, 2, 5, 9]))
    e.take_decisions()  # the window is flushed: only the gap set and the index remain
    assert _looked_up(e, range(1, 10)) == [1, 2, 5, 9]
    assert _looked_up(e, [10, 11]) == []  # above the highest: new, as always


def test_a_late_seq_once_decided_is_looked_up_again():
    e = _engine_with_cards()
    e.apply(_spends([1, 4]))
    results, _ = e.apply(_spends([3]))
    assert codes(results) == ["OK"]
    e.take_decisions()
    assert _looked_up(e, [1, 2, 3, 4]) == [1, 3, 4]


def test_a_seq_decided_twice_in_one_batch_is_decided_once():
    e = _engine_with_cards()
    e.apply(_spends([1, 3]))
    e.take_decisions()
    results, journal = e.apply(_spends([2, 2]))
    assert codes(results) == ["OK", "EXISTS"] and len(journal) == 1


def test_a_jump_longer_than_the_tracked_maximum_leaves_its_seqs_to_the_lookup():
    e = _engine_with_cards()
    far = 2 + 1024 + 1  # GAP_JUMP_TRACKED_MAX skipped seqs, plus one
    e.apply(_spends([1, far, far + 2]))
    e.take_decisions()
    assert _looked_up(e, [2, far - 1, far + 1]) == [2, far - 1]


def test_a_new_source_knows_nothing_below_its_first_seq():
    e = _engine_with_cards()
    e.apply(_spends([50, 52]))
    e.take_decisions()
    assert _looked_up(e, [3, 49, 50, 51, 52]) == [3, 49, 50, 52]


def test_a_checkpoint_load_forgets_the_gaps_and_a_replay_rebuilds_them():
    e = _engine_with_cards()
    _, j1 = e.apply(_spends([1, 3]))
    accounts, sources, pending = e.export_checkpoint()
    e.load_checkpoint(accounts, sources, pending, e.journal_seq)
    assert _looked_up(e, [1, 2, 3]) == [1, 2, 3]
    fresh = _engine_with_cards()
    fresh.replay(j1)
    fresh.take_decisions()
    assert _looked_up(fresh, [1, 2, 3]) == [1, 3]


def test_a_full_gap_set_is_emptied_and_its_seqs_looked_up():
    e = _engine_with_cards()
    # 1,023 skipped seqs per source: the 257th source's jump overflows the 262,144
    # tracked, so the set is emptied and that jump is not tracked; the next one is.
    for s in range(10_000, 10_258):
        e.apply(_spends([1, 1025], source=s))
    e.take_decisions()
    assert _looked_up(e, [2, 500], source=10_000) == [2, 500]  # forgotten by the reset
    assert _looked_up(e, [2, 500], source=10_256) == [2, 500]  # the jump that overflowed
    assert _looked_up(e, [2, 500], source=10_257) == []  # tracked after the reset


def test_a_late_upload_costs_no_id_lookup_in_the_ledger(ledger_path):
    """Through the ledger: after the ids are flushed, a late upload is applied without
    a lookup, and its resend is looked up and answered EXISTS."""
    if cardledger.IMPLEMENTATION != "cython":
        pytest.skip("the gap set is the core's (the reference looks every such id up)")
    with cardledger.open(ledger_path, create=True) as led:
        open_cards(led, [100], 100_000)
        led.apply(_spends([1, 2, 4, 5]))
        led.checkpoint()  # the window's ids go to the index
        looked_up = []
        real = led._ids.lookup

        def lookup(txn, ops, cand, *rest):
            looked_up.extend(ops["seq"][cand].tolist())
            return real(txn, ops, cand, *rest)

        led._ids.lookup = lookup
        assert codes(led.apply(_spends([3]))) == ["OK"]
        assert looked_up == []
        led.checkpoint()
        assert codes(led.apply(_spends([3, 2]))) == ["EXISTS", "EXISTS"]
        assert looked_up == [3, 2]
        assert led.verify().ok


def test_a_batch_records_a_bounded_number_of_skipped_seqs():
    """A source skipping 1,000 seqs with every op would cost 1,000 map inserts an op: a
    batch of n ops records at most n + 1,024 skipped seqs (GAP_BUDGET_PER_OP,
    GAP_JUMP_TRACKED_MAX). A jump past what is left is not recorded: its source's
    floor moves up past it, and those seqs are looked up, as after a long jump."""
    e = _engine_with_cards()
    first, hostile, last = 7_001, 7_002, 7_003
    ops = np.concatenate([
        _spends([1, 702], source=first),  # 700 skipped: recorded
        _spends([1 + 1_001 * i for i in range(100)], source=hostile),  # 99,000: none fits
        _spends([1, 502], source=last),  # 500: more than the 428 left
    ])
    assert len(ops) == 104 and len(ops) + 1024 - 700 == 428
    results, _ = e.apply(ops)
    assert codes(results) == ["OK"] * len(ops)
    e.take_decisions()
    assert _looked_up(e, range(2, 702), source=first) == []
    assert _looked_up(e, range(2, 502), source=last) == list(range(2, 502))
    skipped = [q for q in range(2, 1 + 1_001 * 99) if (q - 1) % 1_001]
    assert _looked_up(e, skipped, source=hostile) == skipped  # its floor is past them all


def test_within_the_budget_every_skipped_seq_is_recorded():
    """100 ops skipping 10 seqs each (990, within 100 + 1,024): all known new."""
    e = _engine_with_cards()
    seqs = [1 + 11 * i for i in range(100)]
    e.apply(_spends(seqs))
    e.take_decisions()
    skipped = [q for q in range(1, seqs[-1]) if (q - 1) % 11]
    assert len(skipped) == 990 and _looked_up(e, skipped) == []
    assert _looked_up(e, seqs) == seqs  # (decided: looked up, as always)


def test_the_budget_is_a_batchs_own():
    """Each batch has its own budget: a backlog jump in a later batch is recorded however
    much an earlier batch spent."""
    e = _engine_with_cards()
    e.apply(_spends([1 + 1_001 * i for i in range(100)]))
    last = 1 + 1_001 * 99
    e.apply(_spends([last + 501]))
    e.take_decisions()
    assert _looked_up(e, range(last + 1, last + 501)) == []
