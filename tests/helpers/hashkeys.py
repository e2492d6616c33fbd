"""Ids built to collide under the core's hash as it would be unkeyed (splitmix64's
finalizer, `mix64` in cext/state.pxi; pairs through `mix128`): what a sender could
build if the tables were not keyed, the finalizer being a bijection anyone can
invert. Used by tests/engine/test_hash_spread.py and bench/bench_cliffs.py."""

from __future__ import annotations

import numpy as np

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15  # mix128(a, b) = mix64(a * GOLDEN ^ mix64(b))
C1, C2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
#: The low bits every built key's hash shares: one home slot in any table of up to
#: 2^24 slots.
SHARED_LOW_BITS, SHARED_LOW = 24, 0x5A5A5A


def mix64(x: int) -> int:
    """The core's finalizer, unkeyed."""
    x ^= x >> 30
    x = (x * C1) & M64
    x ^= x >> 27
    x = (x * C2) & M64
    return x ^ (x >> 31)


def _unxorshift(y: int, s: int) -> int:
    """The x with x ^ (x >> s) == y."""
    x = y
    for _ in range(64 // s + 1):
        x = y ^ (x >> s)
    return x


def unmix64(h: int) -> int:
    """The x with mix64(x) == h."""
    x = _unxorshift(h, 31)
    x = (x * pow(C2, -1, 1 << 64)) & M64
    x = _unxorshift(x, 27)
    x = (x * pow(C1, -1, 1 << 64)) & M64
    return _unxorshift(x, 30)


def colliding_keys(n: int, first: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
    """n distinct keys whose unkeyed hash ends in SHARED_LOW: single keys (mix64), or,
    given `first`, the second halves x of pair keys (first, x) (mix128)."""
    rng = rng or np.random.default_rng(5)
    out = []
    for hi in rng.choice(1 << 36, size=n, replace=False).tolist():
        x = unmix64(((hi << SHARED_LOW_BITS) | SHARED_LOW) & M64)
        if first is not None:
            x = unmix64(x ^ ((first * GOLDEN) & M64))
        out.append(x)
    return np.array(out, dtype=np.uint64)
