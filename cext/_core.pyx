# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The Cython core (`cardledger._core`): the ledger state machine over C arrays.

Same semantics as the pure-Python engine in `cardledger/engine/spec/` (the executable
specification), built for speed: one pass over a batch of op records, no Python
object per op, no storage call inside the loop. Every struct, enum and constant is
declared in `core.pxd`; the code is in the files included below, each named like the
spec module it twins and follows step by step: `fares.pxi` twins `fares.py` (the fare
evaluator), `codec.pxi` twins `codec.py` (the journal, id index and word-table
codecs), `handlers.pxi` twins `handlers.py` (one handler per op kind, dispatched by
`execute`), `taps.pxi` twins `taps.py` (TAP ops: fare charging), and `batch.pxi`
twins `batch.py` (the Engine: batch loop, replay, decisions, checkpoint import and
export). The others have no twin: `state.pxi` is the C state (growable arrays,
open-addressing hash tables, the undo log, copy-on-write snapshots), `window.pxi` the
decisions window, `gaps.pxi` the sources' known gaps, and `debug.pxi` the checks of
what each op did that a debug build runs (`debug.h`: `CL_ASSERT`, compiled out of a
release build; `DEBUG_ASSERTIONS` says which build this is).
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from core cimport *
from libc.stdlib cimport malloc, realloc, free, calloc
from libc.string cimport memset, memcpy, memcmp
from cpython.bytes cimport PyBytes_FromStringAndSize

import numpy as np
cimport numpy as cnp

from cardledger.schema import (
    ACCOUNT_DTYPE, SOURCE_DTYPE, PENDING_DTYPE, JOURNAL_DTYPE, RESULT_DTYPE,
    OP_DTYPE, DECISION_DTYPE, DEFAULT_CASH_CAP_FEN, JOURNEY_DTYPE, JOURNEY_LEGS_MAX,
    FARE_CAPS_MAX, FARE_TIERS_MAX, REVERSE_REF_DTYPE, OFFER_BUDGET_DTYPE, CARD_OFFER_DTYPE, REFUNDED_DTYPE,
)

cnp.import_array()

include "fares.pxi"
include "state.pxi"
include "holdidx.pxi"  # each account's holds (void_holds_of)
include "debug.pxi"
include "codec.pxi"
include "window.pxi"
include "gaps.pxi"
include "policies.pxi"
include "handlers.pxi"
include "taps.pxi"
include "purchases.pxi"
include "batch.pxi"
include "reports.pxi"  # reconciliation reads' sums, twin of spec/reports.py


#: True when the core was built with CARDLEDGER_DEBUG=1: its invariants are checked
#: after every op, and a broken one aborts the process with its message on stderr.
DEBUG_ASSERTIONS = CL_DEBUG != 0


def set_huge_pages(bint on):
    """Whether big tables ask the kernel for 2 MiB pages (default on)."""
    global USE_HUGE
    USE_HUGE = on


def record_sizes():
    """C sizes of the record structs, for the layout check against schema dtypes."""
    return {
        "OP": sizeof(Op), "RESULT": sizeof(Result), "JOURNAL": sizeof(Journal),
        "ACCOUNT": sizeof(Account), "SOURCE": sizeof(Source), "PENDING": sizeof(Pending),
        "JOURNEY": sizeof(Journey), "REVERSE_REF": sizeof(ReverseRef),
        "CARD_OFFER": sizeof(CardOffer), "REFUNDED": sizeof(Refunded),
    }


def op_fields_used():
    """The core's table of the fields each op kind uses (index = kind, 0 unused): bit i
    stands for field i of OP_DTYPE. Mirrors schema.OP_FIELDS_USED; a test compares them."""
    return [int(FIELDS_USED[k]) for k in range(K_MAX + 1)]
