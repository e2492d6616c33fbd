"""The pure-Python engine: the executable specification of the ledger.

Plain Python over dicts, written to be read. Each module has a Cython twin of the same
name in `cext/` (`batch.py` ↔ `batch.pxi`, `handlers.py` ↔ `handlers.pxi`, `taps.py` ↔
`taps.pxi`, `fares.py` ↔ `fares.pxi`, `codec.py` ↔ `codec.pxi`); the test suite runs on
both and demands the same results and balances.
"""
