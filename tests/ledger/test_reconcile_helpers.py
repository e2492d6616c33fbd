"""The helpers behind the reconciliation reads, core against its pure-Python twin:
a settlement's sums by account (`AccountTotals`), the text lines of an export
(`format_rows`), and the gathering of a query's matches (`queries.Gathered`)."""

from __future__ import annotations

import numpy as np
import pytest

from cardledger import queries
from cardledger.engine import select
from cardledger.engine.spec import reports as spec
from cardledger.schema import JOURNAL_DTYPE

core = select.reports_for(select.CYTHON) if select.IMPLEMENTATION == select.CYTHON else None
needs_core = pytest.mark.skipif(core is None, reason="the Cython core is not the default engine")


def _totals(cls, parts):
    t = cls.AccountTotals()
    for debit, credit, amount, keep in parts:
        t.add(debit, credit, amount, keep.view(np.uint8))
    return t.rows()


def _parts(rng, batches, size, accounts):
    ids = np.concatenate([[0], rng.integers(1, 2**64, accounts, dtype=np.uint64)])
    parts = []
    for _ in range(batches):
        amount = rng.integers(-(2**63), 2**63, size, dtype=np.int64)
        amount[: size // 2] = rng.integers(-5, 400, size // 2)
        parts.append((rng.choice(ids, size), rng.choice(ids, size), amount, rng.random(size) < 0.8))
    return parts


def test_account_totals_twin_counts_each_named_side_and_sums_by_account():
    """The pure twin's rows, by hand: account 0 names no account; a record naming the
    same account on both sides counts twice."""
    d = np.array([7, 0, 5, 7], dtype=np.uint64)
    c = np.array([5, 5, 5, 3], dtype=np.uint64)
    amount = np.array([10, 20, 30, 40], dtype=np.int64)
    keep = np.array([True, True, True, False])
    ids, ops, debits, credits = _totals(spec, [(d, c, amount, keep)])
    assert ids.tolist() == [5, 7]
    assert ops.tolist() == [4, 1]
    assert debits.tolist() == [30, 10]
    assert credits.tolist() == [60, 0]


@needs_core
@pytest.mark.parametrize("accounts", [3, 1_000, 200_000])
def test_the_cores_account_totals_give_the_twins_rows(accounts):
    """Many batches, strided views of journal fields, wrapping sums, a table that grows
    (200,000 accounts): the same rows, in the same order."""
    rng = np.random.default_rng(accounts)
    parts = _parts(rng, 12, 40_000, accounts)
    recs = np.zeros(40_000, dtype=JOURNAL_DTYPE)  # strided views, as settle passes them
    strided = []
    for debit, credit, amount, keep in parts:
        r = recs.copy()
        r["debit_id"], r["credit_id"] = debit, credit
        strided.append((r["debit_id"], r["credit_id"], amount, keep))
    want = _totals(spec, parts)
    got = _totals(core, strided)
    for w, g in zip(want, got):
        assert w.dtype == g.dtype and w.tolist() == g.tolist()


def test_account_totals_twin_posts_a_union_leg_on_the_third_account_and_the_merchant():
    """A union leg, by hand: a PURCHASE (union debited) posts N on the card's debit,
    N + U on the merchant's credit and U on the union's debit; a REFUND (union
    credited) amount + u on the merchant's debit, amount on the card's credit, u on the
    union's credit; a record with union_id 0 has no third leg whatever its union_fen."""
    d = np.array([10, 50, 10], dtype=np.uint64)  # purchase, refund, purchase with no union
    c = np.array([50, 10, 50], dtype=np.uint64)
    amount = np.array([800, 200, 100], dtype=np.int64)
    union = np.array([90, 90, 0], dtype=np.uint64)
    union_fen = np.array([100, 25, 7], dtype=np.int64)
    debited = np.array([1, 0, 1], dtype=np.uint8)
    keep = np.ones(3, dtype=np.uint8)
    for impl in [spec] + ([core] if core is not None else []):
        t = impl.AccountTotals()
        t.add(d, c, amount, keep, union, union_fen, debited)
        ids, ops, debits, credits = t.rows()
        assert ids.tolist() == [10, 50, 90]
        assert ops.tolist() == [3, 3, 2]
        assert debits.tolist() == [900, 225, 100]
        assert credits.tolist() == [200, 1_000, 25]
        assert int(debits.sum()) == int(credits.sum())


@needs_core
@pytest.mark.parametrize("accounts", [3, 5_000])
def test_the_cores_account_totals_give_the_twins_rows_with_union_legs(accounts):
    """Random union legs on strided views: the same rows, in the same order."""
    rng = np.random.default_rng(accounts + 1)
    parts = _parts(rng, 6, 20_000, accounts)
    ids = np.concatenate([[0] * accounts, rng.integers(1, 2**64, accounts, dtype=np.uint64)])
    recs = np.zeros(20_000, dtype=JOURNAL_DTYPE)
    want, got = spec.AccountTotals(), core.AccountTotals()
    for debit, credit, amount, keep in parts:
        r = recs.copy()
        r["debit_id"], r["credit_id"] = debit, credit
        r["union_id"] = rng.choice(ids, len(r))
        r["union_fen"] = rng.integers(-(2**63), 2**63, len(r), dtype=np.int64)
        debited = (rng.random(len(r)) < 0.5).view(np.uint8)
        want.add(debit, credit, amount, keep.view(np.uint8), r["union_id"].copy(), r["union_fen"].copy(), debited)
        got.add(r["debit_id"], r["credit_id"], amount, keep.view(np.uint8), r["union_id"], r["union_fen"], debited)
    for w, g in zip(want.rows(), got.rows()):
        assert w.dtype == g.dtype and w.tolist() == g.tolist()


@needs_core
def test_the_cores_account_totals_refuse_arrays_of_different_lengths():
    """A misuse is a ValueError, not a read past an array."""
    t = core.AccountTotals()
    with pytest.raises(ValueError):
        t.add(np.zeros(3, np.uint64), np.zeros(2, np.uint64), np.zeros(3, np.int64), np.ones(3, np.uint8))
    with pytest.raises(ValueError):
        t.add(np.zeros(3, np.uint64), np.zeros(3, np.uint64), np.zeros(3, np.int64), np.ones(3, np.uint8),
              np.zeros(2, np.uint64), np.zeros(3, np.int64), np.ones(3, np.uint8))
    with pytest.raises(ValueError):  # the union's three arrays go together
        t.add(np.zeros(3, np.uint64), np.zeros(3, np.uint64), np.zeros(3, np.int64), np.ones(3, np.uint8),
              np.zeros(3, np.uint64))


def _records(rng, n):
    recs = np.zeros(n, dtype=JOURNAL_DTYPE)
    words = recs.view(np.uint8)
    words[:] = rng.integers(0, 256, len(words), dtype=np.uint8)  # every field, every value
    recs["code"] = rng.choice([0, 1, 45, 59, 1000, 2**32 - 1], n)
    for name in recs.dtype.names:
        t = recs.dtype[name]
        edge = rng.random(n) < 0.1
        recs[name][edge] = np.iinfo(t).min if rng.random() < 0.5 else np.iinfo(t).max
    return recs


@needs_core
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_the_cores_text_lines_are_the_twins_byte_for_byte(fmt):
    """Random bits in every field (negative, extreme, unknown result codes), times of
    32 bytes and shorter: the same bytes; a reused buffer gives them again."""
    from cardledger.exports import _RESULT_NAME_TABLE, _TEXT_PARTS

    rng = np.random.default_rng(5)
    recs = _records(rng, 3_000)
    times = np.array([b"2027-01-15T08:03:11.000000+08:00", b"x", b"", b"1986-05-04T02:00:00.000001+09:00"] * 750,
                     dtype="S32")
    prefixes, time_prefix, result_prefix, line_end = _TEXT_PARTS[fmt]
    names = [x.encode() for x in _RESULT_NAME_TABLE.tolist()]
    want_buf, want_n = spec.format_rows(recs, prefixes, time_prefix, times, result_prefix, names, line_end)
    got_buf, got_n = core.format_rows(recs, prefixes, time_prefix, times, result_prefix, names, line_end)
    assert bytes(got_buf[:got_n]) == bytes(want_buf[:want_n])
    again, n = core.format_rows(recs[:100], prefixes, time_prefix, times[:100], result_prefix, names, line_end,
                                got_buf)
    assert again is got_buf and bytes(again[:n]) == bytes(spec.format_rows(
        recs[:100], prefixes, time_prefix, times[:100], result_prefix, names, line_end)[0])


def test_gathered_records_are_those_kept_ordered_by_time_then_journal_seq():
    """Batches in journal order, some records out of time order: what a query returns
    is the kept records stably sorted by event time; in order, they stay as they came."""
    rng = np.random.default_rng(3)
    batches = []
    for b in range(5):
        r = np.zeros(1_000, dtype=JOURNAL_DTYPE)
        r["journal_seq"] = np.arange(b * 1_000 + 1, b * 1_000 + 1_001)
        r["time_us"] = rng.integers(0, 50, 1_000)
        batches.append(r)
    keeps = [rng.random(1_000) < 0.5 for _ in batches]
    g = queries.Gathered(10)  # less room than it needs: it grows
    for r, k in zip(batches, keeps):
        g.add(r, k)
    got = g.records()
    kept = np.concatenate([r[k] for r, k in zip(batches, keeps)])
    assert got.tobytes() == kept[np.lexsort((kept["journal_seq"], kept["time_us"]))].tobytes()
    g = queries.Gathered(5_000)
    ordered = np.sort(kept, order="time_us")
    g.add(ordered, np.ones(len(ordered), dtype=bool))
    assert g.in_time_order and g.records().tobytes() == ordered.tobytes()
