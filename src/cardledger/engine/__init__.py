"""Engines: the in-memory ledger state machine, in two twins with one set of semantics.

- `protocol.py`: the `Engine` protocol, what the ledger asks of an engine;
- `select.py`: the one place that picks an implementation, with its codec and its
  fare evaluator (CARDLEDGER_PURE=1 forces the pure-Python one);
- `spec/`: the pure-Python twins, the executable specification. Each has a Cython
  twin of the same name in `cext/` (`batch`, `handlers`, `taps`, `fares`, `codec`).
"""
