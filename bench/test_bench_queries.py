"""Micro benchmarks of opening and querying a ledger (pytest-benchmark), 100k cards.

Run explicitly, never part of the default suite (see conftest.py):

    pytest bench/test_bench_queries.py --benchmark-columns=median,ops,rounds

The module builds one ledger in a tmp dir (not timed): CARDS cards opened and topped up
once (workloads.mix_setup, batches of 65,536), a checkpoint, then a journal tail of
TAIL_BATCHES mix batches of 8,192 ops (workloads.mix_batches), each carrying STATEMENT_OPS_PER_BATCH
extra SPEND/TOPUP ops of one card, STATEMENT_CARD, so that its statement has ~100 records
spread over the tail. Then it times:

- `balance(card)` and `statement(STATEMENT_CARD)` on the open ledger;
- `verify()` (walks and replays the whole journal: ~400k records);
- `cardledger.open(path)` of the closed ledger: checkpoint file + replay of the tail.

`extra_info` names what one round does (`records_per_round`, `journal_records`, ...).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cardledger import OP_DTYPE, OpKind, Result
from cardledger.benchmark import workloads

CARDS = 100_000
SEED = 13
TAIL_BATCHES = 24
TAIL_BATCH_OPS = 8192
#: The card whose statement is timed, and its ops added to each tail batch:
#: 2 setup records (OPEN, TOPUP) + 24 * 4 = 98, plus whatever the mix draws for it.
STATEMENT_CARD = int(workloads.CARD_ID_BASE) + 4242
STATEMENT_OPS_PER_BATCH = 4
#: Source of the statement card's extra ops (outside the workload's sources).
STATEMENT_SOURCE = 2_000_001
ROUNDS_VERIFY = 3
ROUNDS_REOPEN = 5


class LedgerUnderTest:
    """The module's ledger: path, open Ledger (`led`), journal size; `reopen()` swaps it."""

    def __init__(self, cardledger: Any, path: Path) -> None:
        self.cardledger = cardledger
        self.path = path
        self.led = cardledger.open(str(path), create=True)
        self.implementation = str(getattr(cardledger, "IMPLEMENTATION", "unknown"))
        self.journal_records = 0
        self.tail_records = 0

    def reopen(self) -> None:
        self.led.close()
        self.led = self.cardledger.open(str(self.path), create=True)


def _statement_ops(batch_no: int, after_time_us: int) -> np.ndarray:
    """STATEMENT_OPS_PER_BATCH small ops of STATEMENT_CARD: SPEND, TOPUP alternately."""
    n = STATEMENT_OPS_PER_BATCH
    ops = np.zeros(n, dtype=OP_DTYPE)
    ops["source"] = STATEMENT_SOURCE
    ops["seq"] = batch_no * n + np.arange(1, n + 1, dtype=np.uint64)
    ops["kind"] = [OpKind.SPEND if i % 2 == 0 else OpKind.TOPUP for i in range(n)]
    ops["account_id"] = STATEMENT_CARD
    ops["counterparty_id"] = [workloads.MERCHANT_ID if i % 2 == 0 else workloads.CLEARING_ID for i in range(n)]
    ops["amount_fen"] = 100
    # Between this mix batch's last op and the next one's first (OP_INTERVAL_US apart).
    ops["time_us"] = after_time_us + 1 + np.arange(n, dtype=np.int64)
    return ops


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerUnderTest]:
    """CARDS cards, a checkpoint, then a tail of TAIL_BATCHES mix batches (not timed)."""
    cardledger = pytest.importorskip("cardledger", reason="cardledger does not import; build it first")
    lut = LedgerUnderTest(cardledger, tmp_path_factory.mktemp("queries") / "ledger")
    if lut.implementation != "cython":
        warnings.warn(f"cardledger.IMPLEMENTATION={lut.implementation!r}, not the Cython core")
    try:
        for batch in workloads.mix_setup(CARDS, SEED, batch_size=workloads.SETUP_BATCH_OPS_DEFAULT):
            assert (lut.led.apply(batch)["code"] == Result.OK).all()
        lut.led.checkpoint()
        setup_records = int(lut.led.journal_seq)
        mix = workloads.mix_batches(CARDS, TAIL_BATCHES * TAIL_BATCH_OPS, TAIL_BATCH_OPS, SEED)
        for batch_no, batch in enumerate(mix):
            extra = _statement_ops(batch_no, int(batch["time_us"][-1]))
            res = lut.led.apply(np.concatenate([batch, extra]))
            assert (res["code"][-len(extra):] == Result.OK).all()
        lut.journal_records = int(lut.led.journal_seq)
        lut.tail_records = lut.journal_records - setup_records
        yield lut
    finally:
        lut.led.close()


def _info(benchmark: Any, lut: LedgerUnderTest, **info: Any) -> None:
    benchmark.extra_info.update(
        implementation=lut.implementation, cards=CARDS, journal_records=lut.journal_records, **info
    )


def test_balance(benchmark: Any, ledger: LedgerUnderTest) -> None:
    """Time `balance(card)` (one call per iteration, calibrated by pytest-benchmark)."""
    balance = benchmark(ledger.led.balance, STATEMENT_CARD)
    assert balance > 0
    _info(benchmark, ledger, calls_per_round=1)


def test_statement(benchmark: Any, ledger: LedgerUnderTest) -> None:
    """Time `statement(card)` of a card with ~100 journal records spread over the tail."""
    records = benchmark(ledger.led.statement, STATEMENT_CARD)
    assert 90 <= len(records) <= 130, len(records)
    assert (records["account_id"] == STATEMENT_CARD).sum() >= 2 + TAIL_BATCHES * STATEMENT_OPS_PER_BATCH
    _info(benchmark, ledger, calls_per_round=1, records_per_round=len(records))


def test_verify(benchmark: Any, ledger: LedgerUnderTest) -> None:
    """Time `verify()`: hash chain, full replay of the journal, invariants."""
    report = benchmark.pedantic(ledger.led.verify, rounds=ROUNDS_VERIFY, warmup_rounds=0, iterations=1)
    assert report.ok, report.problems
    _info(benchmark, ledger, calls_per_round=1, records_per_round=ledger.journal_records)


def test_reopen(benchmark: Any, ledger: LedgerUnderTest) -> None:
    """Time `cardledger.open(path)` of the closed ledger (checkpoint file + tail replay).

    Each round's Ledger is closed in the next round's (untimed) setup.
    """
    ledger.led.close()
    opened: list[Any] = []

    def close_previous() -> None:
        while opened:
            opened.pop().close()

    def reopen() -> Any:
        led = ledger.cardledger.open(str(ledger.path), create=True)
        opened.append(led)
        return led

    try:
        led = benchmark.pedantic(reopen, setup=close_previous, rounds=ROUNDS_REOPEN, warmup_rounds=1, iterations=1)
        assert led.journal_seq == ledger.journal_records
        assert led.balance(STATEMENT_CARD) > 0
    finally:
        close_previous()
        ledger.led = ledger.cardledger.open(str(ledger.path), create=True)
    _info(benchmark, ledger, calls_per_round=1, tail_records=ledger.tail_records)
