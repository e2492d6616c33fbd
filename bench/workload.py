"""Deterministic benchmark workloads, built with vectorised numpy.

The "SPEND/TOPUP mix": a city's cards paying at one merchant and being topped up from
one bank clearing account, issued by 1,000 terminals.

- Accounts: CLEARING_ID (clearing), MERCHANT_ID (merchant) and `n_cards` cards with ids
  CARD_ID_BASE + i, each opened with the ledger's default cash cap and given one
  initial TOPUP so that spends mostly succeed.
- Mix ops: SPEND_PERCENT % SPEND (card -> merchant, SPEND_MIN_FEN..SPEND_MAX_FEN) and
  the rest TOPUP (clearing -> card, TOPUP_MIN_FEN..TOPUP_MAX_FEN); cards drawn
  uniformly; source drawn uniformly from 1..TERMINAL_COUNT with seq increasing per
  source from 1; time_us strictly increasing.

Everything is a pure function of the arguments: the op stream for a seed does not depend
on `batch_size` (ops are generated in fixed chunks of MIX_CHUNK_OPS and re-cut into
batches), so two runs with different batch sizes apply the same ops in the same order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from _schema import BATCH_OPS_MAX, DEFAULT_CASH_CAP_FEN, OP_DTYPE, AccountKind, OpKind

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


def make_accounts(n_cards: int, seed: int = 0, batch_size: int = SETUP_BATCH_OPS_DEFAULT) -> list[np.ndarray]:
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


def make_initial_topups(n_cards: int, seed: int, batch_size: int = SETUP_BATCH_OPS_DEFAULT) -> list[np.ndarray]:
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
    # After every OPEN (make_accounts uses SETUP_TIME_US + 0..n_cards+1).
    ops["time_us"] = SETUP_TIME_US + (n_cards + 2) + np.arange(n_cards, dtype=np.int64)
    return _split(ops, batch_size)


def make_setup(n_cards: int, seed: int, batch_size: int = SETUP_BATCH_OPS_DEFAULT) -> list[np.ndarray]:
    """Return every setup batch, in order: the OPENs, then the initial TOPUPs."""
    return make_accounts(n_cards, seed, batch_size) + make_initial_topups(n_cards, seed, batch_size)


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


def make_mix(
    n_cards: int,
    n_ops: int,
    batch_size: int,
    seed: int,
    spend_percent: int = SPEND_PERCENT,
) -> Iterator[np.ndarray]:
    """Yield `n_ops` mix ops as OP_DTYPE batches of `batch_size` (the last may be shorter).

    Apply make_setup(n_cards, seed) first. `spend_percent=100` gives a SPEND-only stream.
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
