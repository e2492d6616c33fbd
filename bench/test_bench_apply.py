"""Micro benchmarks of `apply` (pytest-benchmark), 100k cards, durable commit per batch.

Run explicitly, never part of the default suite (see conftest.py):

    pytest bench/test_bench_apply.py --benchmark-columns=median,ops,rounds

`test_apply_spend`: the core against the two baselines. Each case opens a fresh ledger in
tmp_path, opens CARDS cards and gives each an initial top-up (not timed), then times
`apply` on fresh SPEND batches (card -> merchant, unique ids, so no replay short-cuts):
batches of 1, 64 and 8192 ops for the core, 8192 for the two baselines.

`test_apply_kind[<kind>-<batch>]`: the core per op kind, on one ledger shared by the module
(CARDS cards opened and topped up once in batches of 65,536, and an aid program funded by a
TRANSFER from the clearing account; not timed). Kinds: topup (clearing -> card), spend
(card -> merchant), aid (program -> card), transfer (card -> card) and two_phase (a round is
two batches: PENDING TRANSFERs card -> merchant, then the POSTs of those holds), tap_bus
(BOARD taps on Harbin bus routes, fares from the packaged fare system) and tap_metro (a
round is a batch of metro line 1 ENTRY taps, then their EXITs 15 minutes later); batches
of 1, 64 and 8192. Every round applies fresh ids (each test has its own source, seqs
counting up) on cards walked in a shuffled round-robin order, 100 fen an op (taps: the
fare), so every op succeeds (asserted on the last round). A checkpoint is taken before each test (not timed).

`test_apply_replay[memory|index]`: `apply` of an already-applied batch of 8192 (every op
EXISTS): ids still in the in-memory decisions window, or, after `checkpoint()` and a
reopen, looked up in the LMDB id index.

`extra_info.ops_per_round` is the ops one round applies (two_phase: 2 x batch);
`extra_info.ops_per_s` is ops_per_round / median round time.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cardledger import OP_DTYPE, AccountKind, OpFlags, OpKind, Result, TapType
from cardledger.benchmark import baselines, workloads

CARDS = 100_000
SEED = 11
WARMUP_ROUNDS = 2
#: Timed rounds per (engine, batch size): enough for a stable median, short enough to
#: keep the slow Python baselines to a few seconds.
ROUNDS = {("core", 1): 1000, ("core", 64): 300, ("core", 8192): 30, ("sqlite", 8192): 8, ("lmdb", 8192): 8}
#: SPEND batches must mostly succeed, or we would be timing refusals.
OK_FRACTION_MIN = 0.9


def _open(engine: str, path: Path) -> tuple[Any, str]:
    """Open `engine` in `path`; return (ledger, implementation). Skips if the core is missing."""
    if engine == "sqlite":
        return baselines.SqliteBaseline(path), "sqlite baseline"
    if engine == "lmdb":
        return baselines.LmdbBaseline(path), "lmdb baseline"
    cardledger = pytest.importorskip("cardledger", reason="cardledger does not import; build it first")
    if not hasattr(cardledger, "open"):
        pytest.skip("cardledger.open() does not exist yet")
    implementation = str(getattr(cardledger, "IMPLEMENTATION", "unknown"))
    if implementation != "cython":
        warnings.warn(f"'core' is cardledger.IMPLEMENTATION={implementation!r}, not the Cython core")
    return cardledger.open(str(path), create=True), implementation


@pytest.fixture(scope="module")
def setup_batches() -> list[np.ndarray]:
    """OPEN + initial TOPUP batches for CARDS cards, shared by every test."""
    return workloads.mix_setup(CARDS, SEED)


CASES = sorted(ROUNDS, key=lambda case: (case[0] != "core", case[1]))


@pytest.mark.parametrize(("engine", "batch_ops"), CASES, ids=[f"{e}-{b}" for e, b in CASES])
def test_apply_spend(
    benchmark: Any, engine: str, batch_ops: int, tmp_path: Path, setup_batches: list[np.ndarray]
) -> None:
    """Time one durable `apply` of a SPEND batch of `batch_ops` ops on `engine`."""
    ledger, implementation = _open(engine, tmp_path / engine)
    try:
        for batch in setup_batches:
            assert (ledger.apply(batch)["code"] == Result.OK).all()
        rounds = ROUNDS[(engine, batch_ops)]
        n_ops = (rounds + WARMUP_ROUNDS) * batch_ops
        batches: Iterator[np.ndarray] = iter(
            list(workloads.mix_batches(CARDS, n_ops, batch_ops, SEED, spend_percent=100))
        )

        def next_batch() -> tuple[tuple[np.ndarray], dict[str, Any]]:
            return (next(batches),), {}

        results = benchmark.pedantic(
            ledger.apply, setup=next_batch, rounds=rounds, warmup_rounds=WARMUP_ROUNDS, iterations=1
        )
    finally:
        close = getattr(ledger, "close", None)
        if close is not None:
            close()

    assert len(results) == batch_ops
    ok_fraction = float(np.mean(results["code"] == Result.OK))
    assert ok_fraction >= OK_FRACTION_MIN, f"only {ok_fraction:.0%} of the last batch succeeded"
    benchmark.extra_info.update(
        engine=engine, implementation=implementation, cards=CARDS, ops_per_round=batch_ops
    )
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median > 0:
        benchmark.extra_info["ops_per_s"] = round(batch_ops / stats.stats.median, 1)


# ---------------------------------------------------------------------------------------
# Apply throughput per op kind, on one shared ledger of CARDS cards per module.
# ---------------------------------------------------------------------------------------

#: The aid fund: opened and funded from the clearing account by the module fixture.
PROGRAM_ID = 3
PROGRAM_BUDGET_FEN = 10**12
#: Sources of the module fixture's own ops (outside workload's terminals and setup sources).
FIXTURE_SOURCE = 2_000_000
#: Each Stream takes the next source from here, so every benchmark issues ids no other
#: benchmark of the module has used, whatever order or subset of tests runs.
STREAM_SOURCE_BASE = 3_000_000
#: Every op moves this little (fen), so that over all rounds no card runs dry and no
#: cash purse passes its 500,000-fen cap: each card is hit at most a few times per test.
OP_AMOUNT_FEN = 100
KIND_BATCHES = (1, 64, 8192)
#: Timed rounds per batch size (plus WARMUP_ROUNDS): enough for a stable median, few
#: enough that a test stays short; a round of 1 or 64 ops is about one durable commit. At most
#: (30 + 2) * 8192 * 2 = 524,288 ops are decided per test, under the default
#: checkpoint_ops (2^20), so with the checkpoint taken before each test no automatic
#: checkpoint lands inside the timed rounds (its stall is measured by bench_throughput.py).
KIND_ROUNDS = {1: 500, 64: 200, 8192: 30}
KINDS = ("topup", "spend", "aid", "transfer", "two_phase", "tap_bus", "tap_metro")
#: The operators of the packaged Harbin fare system (its fares.toml) that taps pay.
BUS_OPERATOR_ID, METRO_OPERATOR_ID = 9001, 9002
REPLAY_OPS = 8192
REPLAY_ROUNDS = {"memory": 30, "index": 15}

_next_source = itertools.count(STREAM_SOURCE_BASE)
_next_time_us = itertools.count(workloads.MIX_START_TIME_US, 1_000_000_000)


class LedgerUnderTest:
    """The module's ledger: path, open Ledger, implementation; `reopen()` swaps it."""

    def __init__(self, cardledger: Any, path: Path) -> None:
        self.cardledger = cardledger
        self.path = path
        self.led = cardledger.open(str(path), create=True)
        self.implementation = str(getattr(cardledger, "IMPLEMENTATION", "unknown"))

    def reopen(self) -> None:
        self.led.close()
        self.led = self.cardledger.open(str(self.path), create=True)

    def close(self) -> None:
        self.led.close()


class Stream:
    """Fresh batches for one benchmark: its own source, increasing seqs, cards in a
    shuffled order walked round-robin (random access, every card hit evenly)."""

    def __init__(self, seed: int) -> None:
        self.source = next(_next_source)
        self.seq = 0
        self.cards = np.random.default_rng([SEED, seed]).permutation(workloads.card_ids(CARDS))
        self.pos = 0
        self.time_us = next(_next_time_us)

    def _ops(self, n: int, kind: int) -> np.ndarray:
        ops = np.zeros(n, dtype=OP_DTYPE)
        ops["source"] = self.source
        ops["seq"] = np.arange(self.seq + 1, self.seq + n + 1, dtype=np.uint64)
        ops["kind"] = kind
        ops["time_us"] = self.time_us + np.arange(n, dtype=np.int64)
        self.seq += n
        self.time_us += n
        return ops

    def _walk(self, n: int) -> np.ndarray:
        """The next n positions of the walk over self.cards."""
        idx = (self.pos + np.arange(n)) % CARDS
        self.pos = (self.pos + n) % CARDS
        return idx

    def _cards(self, n: int) -> np.ndarray:
        return self.cards[self._walk(n)]

    def batch(self, kind: str, n: int) -> np.ndarray:
        """n fresh ops of `kind` (not two_phase), OP_AMOUNT_FEN each."""
        if kind == "transfer":  # card -> the next card in the walk (credited to its cash purse)
            ops = self._ops(n, OpKind.TRANSFER)
            idx = self._walk(n)
            ops["account_id"] = self.cards[idx]
            ops["counterparty_id"] = self.cards[(idx + 1) % CARDS]
        else:
            op_kind, counterparty = {
                "topup": (OpKind.TOPUP, workloads.CLEARING_ID),
                "spend": (OpKind.SPEND, workloads.MERCHANT_ID),
                "aid": (OpKind.AID, PROGRAM_ID),
            }[kind]
            ops = self._ops(n, op_kind)
            ops["account_id"] = self._cards(n)
            ops["counterparty_id"] = counterparty
        ops["amount_fen"] = OP_AMOUNT_FEN
        return ops

    def taps(self, kind: str, n: int) -> tuple[np.ndarray, ...]:
        """tap_bus: n BOARD taps on Harbin bus routes. tap_metro: n metro ENTRY taps, then
        the n EXIT taps 15 minutes later at another station of the line."""
        from cardledger.fares import FareSystem

        fs = FareSystem.harbin()
        rng = np.random.default_rng(self.seq + 1)
        cards = self._cards(n)
        if kind == "tap_bus":
            ops = self._ops(n, OpKind.TAP)
            ops["account_id"] = cards
            ops["tap"] = TapType.BOARD
            ops["route"] = rng.choice([fs.route_index(f"bus_{i}") for i in (1, 2, 3, 14, 120)], n)
            ops["stop"] = fs.stop_index("bs_0001")
            return (ops,)
        line1 = [i for i, sid in enumerate(fs.tables.stop_ids) if sid.startswith("m1_")]
        entry = self._ops(n, OpKind.TAP)
        entry["account_id"] = cards
        entry["tap"] = TapType.ENTRY
        entry["route"] = fs.route_index("metro_1")
        entry["stop"] = rng.choice(line1, n)
        leave = self._ops(n, OpKind.TAP)
        leave["account_id"] = cards
        leave["tap"] = TapType.EXIT
        leave["route"] = entry["route"]
        leave["stop"] = rng.choice(line1, n)
        leave["time_us"] = entry["time_us"] + 15 * 60_000_000
        self.time_us += 15 * 60_000_000
        return entry, leave

    def two_phase(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n PENDING TRANSFERs card -> merchant (holds), and the n POSTs resolving them."""
        pending = self._ops(n, OpKind.TRANSFER)
        pending["flags"] = OpFlags.PENDING
        pending["account_id"] = self._cards(n)
        pending["counterparty_id"] = workloads.MERCHANT_ID
        pending["amount_fen"] = OP_AMOUNT_FEN
        post = self._ops(n, OpKind.POST)
        post["ref_source"] = pending["source"]
        post["ref_seq"] = pending["seq"]  # amount 0: post the whole hold
        return pending, post


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LedgerUnderTest]:
    """One ledger for the module: CARDS cards with an initial top-up, a funded program."""
    cardledger = pytest.importorskip("cardledger", reason="cardledger does not import; build it first")
    lut = LedgerUnderTest(cardledger, tmp_path_factory.mktemp("apply") / "ledger")
    if lut.implementation != "cython":
        warnings.warn(f"cardledger.IMPLEMENTATION={lut.implementation!r}, not the Cython core")
    try:
        for batch in workloads.mix_setup(CARDS, SEED, batch_size=workloads.SETUP_BATCH_OPS_DEFAULT):
            res = lut.led.apply(batch)
            assert (res["code"] == Result.OK).all()
        fund = np.zeros(2, dtype=OP_DTYPE)
        fund["source"] = FIXTURE_SOURCE
        fund["seq"] = [1, 2]
        fund["time_us"] = workloads.MIX_START_TIME_US - 1
        fund["kind"] = [OpKind.OPEN, OpKind.TRANSFER]
        fund["account_id"] = [PROGRAM_ID, workloads.CLEARING_ID]  # TRANSFER: debited first
        fund["account_kind"][0] = AccountKind.PROGRAM
        fund["counterparty_id"][1] = PROGRAM_ID
        fund["amount_fen"][1] = PROGRAM_BUDGET_FEN
        assert (lut.led.apply(fund)["code"] == Result.OK).all()
        operators = np.zeros(2, dtype=OP_DTYPE)
        operators["source"] = FIXTURE_SOURCE
        operators["seq"] = [3, 4]
        operators["kind"] = OpKind.OPEN
        operators["account_id"] = [BUS_OPERATOR_ID, METRO_OPERATOR_ID]
        operators["account_kind"] = AccountKind.OPERATOR
        operators["time_us"] = workloads.MIX_START_TIME_US - 1
        assert (lut.led.apply(operators)["code"] == Result.OK).all()
        yield lut
    finally:
        lut.close()


def _record(benchmark: Any, lut: LedgerUnderTest, ops_per_round: int, **info: Any) -> None:
    """extra_info: what was measured, and ops/s from the median round."""
    benchmark.extra_info.update(
        implementation=lut.implementation, cards=CARDS, ops_per_round=ops_per_round, **info
    )
    stats = getattr(benchmark, "stats", None)
    if stats is not None and stats.stats.median > 0:
        benchmark.extra_info["ops_per_s"] = round(ops_per_round / stats.stats.median, 1)


KIND_CASES = [(kind, n) for kind in KINDS for n in KIND_BATCHES]


@pytest.mark.parametrize(("kind", "batch_ops"), KIND_CASES, ids=[f"{k}-{n}" for k, n in KIND_CASES])
def test_apply_kind(benchmark: Any, ledger: LedgerUnderTest, kind: str, batch_ops: int) -> None:
    """Time one durable `apply` of `batch_ops` fresh ops of `kind` on the shared ledger.

    two_phase: a round is two batches of `batch_ops`, the PENDING TRANSFERs then their POSTs.
    """
    led = ledger.led
    led.checkpoint()  # an empty decisions window: no automatic checkpoint in the rounds
    stream = Stream(seed=1000 + KIND_CASES.index((kind, batch_ops)))
    rounds = KIND_ROUNDS[batch_ops]

    if kind == "two_phase":

        def setup() -> tuple[tuple[np.ndarray, np.ndarray], dict[str, Any]]:
            return stream.two_phase(batch_ops), {}

        def target(pending: np.ndarray, post: np.ndarray) -> list[np.ndarray]:
            return [led.apply(pending), led.apply(post)]

        batches_per_round = 2
    elif kind.startswith("tap"):

        def setup() -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:  # type: ignore[misc]
            return stream.taps(kind, batch_ops), {}

        def target(*batches: np.ndarray) -> list[np.ndarray]:  # type: ignore[misc]
            return [led.apply(b) for b in batches]

        batches_per_round = 2 if kind == "tap_metro" else 1
    else:

        def setup() -> tuple[tuple[np.ndarray], dict[str, Any]]:  # type: ignore[misc]
            return (stream.batch(kind, batch_ops),), {}

        def target(ops: np.ndarray) -> list[np.ndarray]:  # type: ignore[misc]
            return [led.apply(ops)]

        batches_per_round = 1

    results = benchmark.pedantic(target, setup=setup, rounds=rounds, warmup_rounds=WARMUP_ROUNDS, iterations=1)
    for res in results:  # the last round: every op must have succeeded
        assert len(res) == batch_ops
        bad = res["code"][res["code"] != Result.OK]
        assert len(bad) == 0, f"{kind}: {len(bad)} ops failed, e.g. {Result(int(bad[0])).name}"
    _record(
        benchmark, ledger, batch_ops * batches_per_round,
        kind=kind, batch_ops=batch_ops, batches_per_round=batches_per_round,
    )


@pytest.mark.parametrize("where", ["memory", "index"])
def test_apply_replay(benchmark: Any, ledger: LedgerUnderTest, where: str) -> None:
    """Time `apply` of an already-applied batch of REPLAY_OPS SPENDs: every op EXISTS.

    memory: the batch was applied in this session, its ids are in the decisions window.
    index: the batch was applied, then `checkpoint()` and a reopen: the ids are looked up
    in the LMDB id index (their seqs are not above the source's last seq).
    """
    ledger.led.checkpoint()
    stream = Stream(seed=2000 + (where == "index"))
    batch = stream.batch("spend", REPLAY_OPS)
    assert (ledger.led.apply(batch)["code"] == Result.OK).all()
    if where == "index":
        ledger.led.checkpoint()
        ledger.reopen()
    led = ledger.led
    engine = getattr(led, "_engine", None)  # check the premise, where the engine shows it
    if engine is not None and hasattr(engine, "candidates"):
        looked_up = np.asarray(engine.candidates(batch), dtype=bool)
        assert looked_up.all() if where == "index" else not looked_up.any()

    results = benchmark.pedantic(
        led.apply, args=(batch,), rounds=REPLAY_ROUNDS[where], warmup_rounds=WARMUP_ROUNDS, iterations=1
    )
    codes = results["code"]
    assert (codes == Result.EXISTS).all(), f"{int((codes != Result.EXISTS).sum())} ops not EXISTS"
    _record(benchmark, ledger, REPLAY_OPS, kind="replay", where=where, batch_ops=REPLAY_OPS)
