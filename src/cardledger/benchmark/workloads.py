"""The benchmark workloads besides the city (`scenario.py`), deterministic by seed.

**The SPEND/TOPUP mix** (`mix_setup`, `mix_batches`, `mix_scenario`): a city's cards
paying at one merchant and topped up from one bank clearing account, issued by 1,000
terminals.

- Accounts: CLEARING_ID (clearing), MERCHANT_ID (merchant) and `n_cards` cards with ids
  CARD_ID_BASE + i, each opened with the ledger's default cash cap and given one
  initial TOPUP so that spends mostly succeed.
- Mix ops: SPEND_PERCENT % SPEND (card -> merchant, SPEND_MIN_FEN..SPEND_MAX_FEN) and
  the rest TOPUP (clearing -> card, TOPUP_MIN_FEN..TOPUP_MAX_FEN); cards drawn
  uniformly; source drawn uniformly from 1..TERMINAL_COUNT with seq increasing per
  source from 1; time_us strictly increasing.

The op stream for a seed does not depend on `batch_size` (ops are generated in fixed
chunks of MIX_CHUNK_OPS and re-cut into batches), so two runs with different batch
sizes apply the same ops in the same order.

**TigerBeetle's benchmark workload** (`tigerbeetle_accounts`, `tigerbeetle_transfers`),
as `tigerbeetle benchmark` runs it: accounts with no balance limit (CLEARING here),
transfers with time-ordered ids between uniformly drawn accounts, batches of
TB_BATCH_OPS, amounts uniform in 1..TB_AMOUNT_MAX_FEN.

Everything here is a pure function of its arguments.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..schema import BATCH_OPS_MAX, DEFAULT_CASH_CAP_FEN, OP_DTYPE, AccountKind, OpKind
from .scenario import Scenario

CLEARING_ID = 1
MERCHANT_ID = 2
CARD_ID_BASE = 1_000_000
#: Terminals issuing mix ops: sources 1..TERMINAL_COUNT.
TERMINAL_COUNT = 1_000
#: Sources of the setup ops (the card office and the bank channel), outside the terminals.
SETUP_OPEN_SOURCE = 1_000_001
SETUP_TOPUP_SOURCE = 1_000_002

SPEND_PERCENT = 70
SPEND_MIN_FEN = 100
SPEND_MAX_FEN = 2_000
TOPUP_MIN_FEN = 1_000
TOPUP_MAX_FEN = 20_000
INITIAL_TOPUP_MIN_FEN = 50_000
INITIAL_TOPUP_MAX_FEN = 250_000

#: 2025-01-06 00:00 Asia/Shanghai, in µs since the Unix epoch (UTC).
SETUP_TIME_US = 1_736_092_800_000_000
#: Mix ops start two hours later (08:00, the morning peak), one op every OP_INTERVAL_US.
MIX_START_TIME_US = SETUP_TIME_US + 8 * 3_600_000_000
OP_INTERVAL_US = 50

SETUP_BATCH_OPS_DEFAULT = 65_536
#: The mix is generated in chunks of this many ops (it fixes the stream for a seed).
MIX_CHUNK_OPS = 1 << 17

# Sub-streams of the seed, so each generator's draws are independent of the others.
_STREAM_INITIAL_TOPUP = 1
_STREAM_MIX = 2

assert INITIAL_TOPUP_MAX_FEN <= DEFAULT_CASH_CAP_FEN
assert 0 < SPEND_PERCENT <= 100


def _check_sizes(n_cards: int, batch_size: int) -> None:
    """Raise ValueError for sizes no workload can have."""
    if n_cards < 1:
        raise ValueError(f"n_cards must be >= 1, got {n_cards}")
    if not 1 <= batch_size <= BATCH_OPS_MAX:
        raise ValueError(f"batch_size must be in 1..{BATCH_OPS_MAX} (BATCH_OPS_MAX), got {batch_size}")


def _split(ops: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Cut `ops` into contiguous batches of at most `batch_size` ops."""
    return [ops[i : i + batch_size] for i in range(0, len(ops), batch_size)]


def card_ids(n_cards: int) -> np.ndarray:
    """Return the ids (uint64) of the `n_cards` cards, in opening order."""
    return CARD_ID_BASE + np.arange(n_cards, dtype=np.uint64)


def mix_accounts(n_cards: int, seed: int = 0, batch_size: int = SETUP_BATCH_OPS_DEFAULT) -> list[np.ndarray]:
    """Return the OPEN batches: the clearing account, the merchant, then `n_cards` cards.

    `seed` is accepted for a uniform signature; the OPENs do not depend on it.
    """
    _check_sizes(n_cards, batch_size)
    n = n_cards + 2
    ops = np.zeros(n, dtype=OP_DTYPE)
    ops["source"] = SETUP_OPEN_SOURCE
    ops["seq"] = np.arange(1, n + 1, dtype=np.uint64)
    ops["kind"] = OpKind.OPEN
    ops["time_us"] = SETUP_TIME_US + np.arange(n, dtype=np.int64)
    ops["account_id"][0] = CLEARING_ID
    ops["account_kind"][0] = AccountKind.CLEARING
    ops["account_id"][1] = MERCHANT_ID
    ops["account_kind"][1] = AccountKind.MERCHANT
    ops["account_id"][2:] = card_ids(n_cards)
    ops["account_kind"][2:] = AccountKind.CARD
    return _split(ops, batch_size)


def mix_initial_topups(n_cards: int, seed: int, batch_size: int = SETUP_BATCH_OPS_DEFAULT) -> list[np.ndarray]:
    """Return TOPUP batches giving every card one initial top-up from the clearing account."""
    _check_sizes(n_cards, batch_size)
    rng = np.random.default_rng([seed, _STREAM_INITIAL_TOPUP])
    ops = np.zeros(n_cards, dtype=OP_DTYPE)
    ops["source"] = SETUP_TOPUP_SOURCE
    ops["seq"] = np.arange(1, n_cards + 1, dtype=np.uint64)
    ops["kind"] = OpKind.TOPUP
    ops["account_id"] = card_ids(n_cards)
    ops["counterparty_id"] = CLEARING_ID
    ops["amount_fen"] = rng.integers(INITIAL_TOPUP_MIN_FEN, INITIAL_TOPUP_MAX_FEN + 1, n_cards, dtype=np.int64)
    # After every OPEN (mix_accounts uses SETUP_TIME_US + 0..n_cards+1).
    ops["time_us"] = SETUP_TIME_US + (n_cards + 2) + np.arange(n_cards, dtype=np.int64)
    return _split(ops, batch_size)


def mix_setup(n_cards: int, seed: int, batch_size: int = SETUP_BATCH_OPS_DEFAULT) -> list[np.ndarray]:
    """Return every setup batch, in order: the OPENs, then the initial TOPUPs."""
    return mix_accounts(n_cards, seed, batch_size) + mix_initial_topups(n_cards, seed, batch_size)


def _mix_chunks(n_cards: int, n_ops: int, seed: int, spend_percent: int) -> Iterator[np.ndarray]:
    """Yield the mix stream in chunks of MIX_CHUNK_OPS ops (the last one may be shorter)."""
    rng = np.random.default_rng([seed, _STREAM_MIX])
    last_seq = np.zeros(TERMINAL_COUNT + 1, dtype=np.uint64)  # indexed by source
    done = 0
    while done < n_ops:
        n = min(MIX_CHUNK_OPS, n_ops - done)
        chunk = np.zeros(n, dtype=OP_DTYPE)

        source = rng.integers(1, TERMINAL_COUNT + 1, n, dtype=np.int64)
        # seq = 1 + number of earlier ops from the same source. A stable sort keeps
        # each source's ops in stream order, so its seqs increase along the stream.
        # (sorting a uint16 copy lets numpy use its radix sort)
        order = np.argsort(source.astype(np.uint16), kind="stable")
        per_source = np.bincount(source, minlength=TERMINAL_COUNT + 1)
        group_start = np.cumsum(per_source) - per_source
        sorted_source = source[order]
        rank = np.arange(n, dtype=np.uint64) - group_start[sorted_source].astype(np.uint64)
        seq = np.empty(n, dtype=np.uint64)
        seq[order] = last_seq[sorted_source] + rank + 1
        last_seq += per_source.astype(np.uint64)

        is_spend = rng.integers(0, 100, n, dtype=np.int64) < spend_percent
        cards = CARD_ID_BASE + rng.integers(0, n_cards, n, dtype=np.uint64)
        spend_fen = rng.integers(SPEND_MIN_FEN, SPEND_MAX_FEN + 1, n, dtype=np.int64)
        topup_fen = rng.integers(TOPUP_MIN_FEN, TOPUP_MAX_FEN + 1, n, dtype=np.int64)

        chunk["source"] = source
        chunk["seq"] = seq
        chunk["account_id"] = cards
        chunk["counterparty_id"] = np.where(is_spend, MERCHANT_ID, CLEARING_ID)
        chunk["amount_fen"] = np.where(is_spend, spend_fen, topup_fen)
        chunk["kind"] = np.where(is_spend, int(OpKind.SPEND), int(OpKind.TOPUP))
        chunk["time_us"] = MIX_START_TIME_US + OP_INTERVAL_US * np.arange(done, done + n, dtype=np.int64)
        yield chunk
        done += n


def mix_batches(
    n_cards: int,
    n_ops: int,
    batch_size: int,
    seed: int,
    spend_percent: int = SPEND_PERCENT,
) -> Iterator[np.ndarray]:
    """Yield `n_ops` mix ops as OP_DTYPE batches of `batch_size` (the last may be shorter).

    Apply mix_setup(n_cards, seed) first. `spend_percent=100` gives a SPEND-only stream.
    Each batch is a contiguous, writable array that shares memory with no other batch.
    """
    _check_sizes(n_cards, batch_size)
    if n_ops < 0:
        raise ValueError(f"n_ops must be >= 0, got {n_ops}")
    if not 0 <= spend_percent <= 100:
        raise ValueError(f"spend_percent must be in 0..100, got {spend_percent}")
    pending: list[np.ndarray] = []
    pending_ops = 0
    for chunk in _mix_chunks(n_cards, n_ops, seed, spend_percent):
        pending.append(chunk)
        pending_ops += len(chunk)
        if pending_ops < batch_size:
            continue
        buffer = np.concatenate(pending) if len(pending) > 1 else chunk
        cut = len(buffer) - len(buffer) % batch_size
        for start in range(0, cut, batch_size):
            yield buffer[start : start + batch_size]
        rest = buffer[cut:]
        pending = [rest] if len(rest) else []
        pending_ops = len(rest)
    if pending_ops:
        yield np.concatenate(pending)


def mix_scenario(n_cards: int, n_ops: int, batch_size: int, seed: int) -> Scenario:
    """The mix as a scenario the runner writes and replays: the setup, then `n_ops` mix ops."""
    setup = mix_setup(n_cards, seed)
    mix = list(mix_batches(n_cards, n_ops, batch_size, seed))
    counts = {"setup": sum(len(b) for b in setup), "mix_ops": n_ops}
    params = {"ops": n_ops, "batch": batch_size}
    return Scenario(setup + mix, len(setup), n_cards, seed, counts, workload="mix", params=params)


# ---------------------------------------------------------------------------------------
# TigerBeetle's benchmark workload
# ---------------------------------------------------------------------------------------

#: Transfers per batch: what `tigerbeetle benchmark` sends per request.
TB_BATCH_OPS = 8189
TB_AMOUNT_MAX_FEN = 20_000
TB_OPEN_SOURCE = 1
TB_TRANSFER_SOURCE = 2
TB_START_TIME_US = 1_700_000_000_000_000
#: When the accounts are opened: before the first transfer (every op has a positive time).
TB_OPEN_TIME_US = TB_START_TIME_US - 1_000_000
#: Accounts opened per setup batch.
TB_OPEN_BATCH_OPS = 65_536


def tigerbeetle_accounts(n_accounts: int) -> Iterator[np.ndarray]:
    """OPEN batches of accounts 1..n_accounts, CLEARING (like TigerBeetle's default accounts, no limit)."""
    for lo in range(0, n_accounts, TB_OPEN_BATCH_OPS):
        ops = np.zeros(min(TB_OPEN_BATCH_OPS, n_accounts - lo), dtype=OP_DTYPE)
        ops["source"] = TB_OPEN_SOURCE
        ops["seq"] = np.arange(lo + 1, lo + 1 + len(ops))
        ops["kind"] = OpKind.OPEN
        ops["account_id"] = np.arange(lo + 1, lo + 1 + len(ops))
        ops["account_kind"] = AccountKind.CLEARING
        ops["time_us"] = TB_OPEN_TIME_US
        yield ops


def tigerbeetle_transfers(n_accounts: int, n_transfers: int, seed: int) -> Iterator[np.ndarray]:
    """`n_transfers` TRANSFERs in batches of TB_BATCH_OPS: time-ordered ids, debit and
    credit accounts drawn uniformly (never the same), amounts uniform in 1..TB_AMOUNT_MAX_FEN."""
    if n_accounts < 2:
        raise ValueError(f"the TigerBeetle workload needs at least 2 accounts, got {n_accounts}")
    rng = np.random.default_rng(seed)
    done = 0
    while done < n_transfers:
        n = min(TB_BATCH_OPS, n_transfers - done)
        ops = np.zeros(n, dtype=OP_DTYPE)
        ops["source"] = TB_TRANSFER_SOURCE
        ops["seq"] = np.arange(done + 1, done + 1 + n)  # time-ordered ids
        ops["kind"] = OpKind.TRANSFER
        debit = rng.integers(1, n_accounts + 1, size=n)
        credit = rng.integers(1, n_accounts, size=n)
        credit += credit >= debit  # uniform over the other accounts
        ops["account_id"] = debit
        ops["counterparty_id"] = credit
        ops["amount_fen"] = rng.integers(1, TB_AMOUNT_MAX_FEN + 1, size=n)
        ops["time_us"] = TB_START_TIME_US + done + np.arange(n)
        yield ops
        done += n
