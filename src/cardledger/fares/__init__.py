"""Fares: GTFS Fares v2 feeds, transit-card rules, and the evaluator taps use.

    from cardledger.fares import FareSystem, Leg
    fs = FareSystem.from_gtfs(path)          # directory or .zip (+ optional fares.toml)
    q = fs.quote([Leg(route_id=..., from_stop_id=..., to_stop_id=...,
                      departure=<aware datetime>, arrival=<aware datetime>)])
    q.amount, q.currency

`FareSystem.harbin()` is the Harbin system shipped with the package. The GTFS
semantics the evaluator implements, and the choices it makes where the spec leaves
one, are documented in `cardledger.fares.evaluate`.
"""

from __future__ import annotations

from .config import FareConfig
from .errors import ConfigError, FeedError, Problem, UnknownFareError
from ..engine.spec.fares import FareDiscount, FareStatus
from .system import LEG_DTYPE, FareSystem, Leg, Quote

__all__ = [
    "LEG_DTYPE",
    "ConfigError",
    "FareConfig",
    "FareDiscount",
    "FareStatus",
    "FareSystem",
    "FeedError",
    "Leg",
    "Problem",
    "Quote",
    "UnknownFareError",
]
