"""Random op batches for differential tests: a small world where everything collides.

Few accounts, few sources, frequent replays of old ids (same or altered fields),
linked chains, holds with POST/VOID, lifecycle ops and malformed ops (a non-positive
time, a field the kind does not use set), so that every result code is reached often.
Deterministic for a given `random.Random`.
"""

from __future__ import annotations

import random

import numpy as np

from cardledger.offers.catalog import OfferCatalog
from cardledger.offers.tables import compile_versions
from cardledger.schema import OP_DTYPE, OP_FIELDS_USED, UNUSED_FIELD_RESULTS, AccountKind, OpFlags, OpKind

CLEARING_IDS = (1, 2)
PROGRAM_IDS = (3,)
MERCHANT_IDS = (4, 5)
UNION_IDS = (6,)  # the union's promotion fund (SUBSIDY), short now and then
CARD_IDS = tuple(range(10, 20))
ACCOUNT_POOL = CLEARING_IDS + PROGRAM_IDS + MERCHANT_IDS + UNION_IDS + CARD_IDS + (99,)
KIND_OF = {**{i: AccountKind.CLEARING for i in CLEARING_IDS}, **{i: AccountKind.PROGRAM for i in PROGRAM_IDS},
           **{i: AccountKind.MERCHANT for i in MERCHANT_IDS}, **{i: AccountKind.SUBSIDY for i in UNION_IDS},
           **{i: AccountKind.CARD for i in CARD_IDS}}
#: The time the world starts at (2023-11-14 UTC), µs; every well-formed op is later.
T0_US = 1_700_000_000_000_000
#: Share of new ops malformed on purpose: a non-positive time or an unused field set.
MALFORMED_P = 0.05
#: Where the engines' second offer-catalog version starts (`OpWorld.offer_tables`).
OFFERS_V2_US = T0_US + 500_000_000


def random_catalog(r: random.Random) -> OfferCatalog:
    """A small random offer catalog for the world's merchants 4 (group a) and 5 (group
    b): 1 to 4 offers whose terms, times (the world's ops fall on a Wednesday, 06:13 to
    06:30 Beijing time), categories, limits, budgets and union shares collide often."""
    offers = []
    for k in range(r.randint(1, 4)):
        o: dict = {"id": f"o{r.randrange(6)}-{k}"}
        where = r.random()
        if where < 0.3:
            o["merchants"] = [r.choice(MERCHANT_IDS)]
        elif where < 0.6:
            o["merchant_groups"] = [r.choice(("a", "b"))]
        o["percent_off_bp"] = r.choice((0, 0, 500, 1_000, 3_333, 10_000))
        o["amount_off_fen"] = r.choice((0, 50, 500, 5_000)) if o["percent_off_bp"] == 0 or r.random() < 0.3 else 0
        if o["percent_off_bp"] == 0 and o["amount_off_fen"] == 0:
            o["amount_off_fen"] = 100
        o["min_gross_fen"] = r.choice((0, 0, 100, 5_000))
        if o["amount_off_fen"] and r.random() < 0.3:
            o["every_fen"] = r.choice((100, 1_000))
        o["max_discount_fen"] = r.choice((0, 0, 200, 3_000))
        if r.random() < 0.2:
            o["categories"] = r.choice(([0], [1, 2]))
        if r.random() < 0.2:
            o["hours"] = [r.choice(("06:00-06:20", "06:20-07:00", "00:00-24:00"))]
        if r.random() < 0.15:
            o["days_of_week"] = [r.choice((3, 4))]
        if r.random() < 0.1:
            o["valid_from"] = o["valid_to"] = r.choice(("2023-11-15", "2023-11-16"))
        o["per_card_day_count"] = r.choice((0, 0, 1, 2))
        o["per_card_month_discount_fen"] = r.choice((0, 0, 300, 1_000))
        o["budget_fen"] = r.choice((0, 0, 1_000, 10_000))
        if r.random() < 0.5:
            o["union_share_bp"] = r.choice((2_500, 5_000, 10_000))
            o["union_account"] = r.choice(UNION_IDS + (UNION_IDS[0],) * 3 + (CARD_IDS[0], 77))
        offers.append(o)
    ids = [o["id"] for o in offers]
    for i, o in enumerate(offers):
        if o["id"] in ids[:i]:
            o["id"] += f"-{i}"
    return OfferCatalog.from_dict({
        "merchant": [{"id": 4, "name": "A", "group": "a"}, {"id": 5, "name": "B", "group": "b"}],
        "offer": offers,
    })


class OpWorld:
    """Generates op records and remembers what it issued, to replay and refer to it."""

    def __init__(self, rng: random.Random, sources: int = 3) -> None:
        self.rng = rng
        self.next_seq = {s: 1 for s in range(1, sources + 1)}
        self.issued: list[np.void] = []
        self.transfers: list[tuple[int, int]] = []  # ids of PENDING transfers issued
        self.next_new_card = 1000
        self.cards = list(CARD_IDS)  # cards ops should mostly aim at, replacements included
        self.purchases: list[tuple[int, int]] = []  # ids of PURCHASEs issued

    def _card(self) -> int:
        r = self.rng
        if r.random() < 0.05:
            return r.choice(ACCOUNT_POOL + (0,))  # a wrong kind, an unknown id or id 0
        return r.choice(self.cards)

    def _pick(self, ids: tuple) -> int:
        r = self.rng
        return r.choice(ACCOUNT_POOL + (0,)) if r.random() < 0.05 else r.choice(ids)

    def _id(self) -> tuple[int, int]:
        r = self.rng
        s = r.choice(list(self.next_seq))
        if r.random() < 0.05 and self.next_seq[s] > 3:
            return s, r.randrange(1, self.next_seq[s])  # out of order: maybe a gap fill
        seq = self.next_seq[s]
        self.next_seq[s] += r.choice((1, 1, 1, 2))  # sometimes leave a gap
        return s, seq

    def op(self) -> np.void:
        """One random op (new id, or a replay of an issued one)."""
        r = self.rng
        rec = np.zeros(1, dtype=OP_DTYPE)[0]
        if self.issued and r.random() < 0.08:
            old = self.issued[r.randrange(len(self.issued))].copy()
            if r.random() < 0.3:
                old["amount_fen"] += 1
            return old
        src, seq = self._id()
        rec["source"], rec["seq"] = src, seq
        rec["time_us"] = T0_US + r.randrange(10**9)
        if r.random() < 0.3:
            rec["user_data"] = r.choice((1, 2**32, 2**64 - 1, r.randrange(2**64)))  # the caller's reference
        # REVERSE takes half of the invalid kind's share, last.
        kind = r.choices(
            [k for k in OpKind if k != OpKind.REVERSE] + [99, OpKind.REVERSE],
            # (SET_POLICIES, by another than install_policies: POLICY_SET_UNKNOWN)
            weights=[5, 12, 5, 14, 3, 10, 5, 4, 2, 3, 1, 1, 1, 2, 2, 0.5, 10, 5, 0.5, 0.3, 0.5],
        )[0]
        rec["kind"] = kind
        amt = r.choice((0, 1, 50, 500, 5_000, 50_000, 400_000, 600_000, -5, 10**16))
        acct = r.choice(ACCOUNT_POOL)
        cp = r.choice(ACCOUNT_POOL)
        if kind == OpKind.OPEN:
            acct = r.choice(ACCOUNT_POOL + (self.next_new_card,))
            rec["account_kind"] = KIND_OF.get(acct, r.choice((1, 2, 4, 7)))
            rec["limit_fen"] = r.choice((0, 0, 0, 100_000, -1))
            rec["category"] = r.choice((0, 0, 1, 2)) if rec["account_kind"] == AccountKind.CARD else 0
            if r.random() < 0.2:
                rec["flags"] |= OpFlags.CASH_FIRST
            if r.random() < 0.15:
                rec["flags"] |= OpFlags.INACTIVE  # issued, handed over by a later ACTIVATE
            amt = 0
        elif kind == OpKind.TOPUP:
            acct, cp = self._card(), self._pick(CLEARING_IDS)
        elif kind == OpKind.AID:
            acct, cp = self._card(), self._pick(PROGRAM_IDS)
        elif kind == OpKind.SPEND:
            acct, cp = self._card(), self._pick(MERCHANT_IDS)
        elif kind == OpKind.WITHDRAW:
            acct, cp = (self._card() if r.random() < 0.7 else acct), self._pick(CLEARING_IDS)
            if r.random() < 0.3:
                rec["flags"] |= OpFlags.SUBSIDY_PURSE
        elif kind == OpKind.TRANSFER:
            if r.random() < 0.5:
                acct = self._card()
            if r.random() < 0.4:
                rec["flags"] |= OpFlags.PENDING
                self.transfers.append((src, seq))
            if r.random() < 0.1:
                rec["flags"] |= OpFlags.SUBSIDY_PURSE
        elif kind in (OpKind.POST, OpKind.VOID):
            if self.transfers:
                rec["ref_source"], rec["ref_seq"] = r.choice(self.transfers)
            amt = 0 if kind == OpKind.VOID or r.random() < 0.5 else r.choice((1, 100, 5_000))
        elif kind == OpKind.SET_CATEGORY:
            acct = self._card() if r.random() < 0.9 else acct
            rec["category"] = r.choice((0, 1, 2, 3))
            amt = 0
        elif kind in (OpKind.FREEZE, OpKind.UNFREEZE, OpKind.ACTIVATE):
            acct = self._card() if r.random() < 0.8 else acct
            amt = 0
        elif kind == OpKind.REPLACE:
            acct = self._card()
            cp = self.next_new_card if r.random() < 0.8 else r.choice(ACCOUNT_POOL)
            if cp == self.next_new_card:
                self.cards.append(cp)
            self.next_new_card += 1
            amt = 0
        elif kind == OpKind.CLOSE:
            acct, cp = self._card() if r.random() < 0.8 else acct, self._pick(CLEARING_IDS)
            amt = 0
        elif kind == OpKind.PURCHASE:
            acct, cp = self._card(), self._pick(MERCHANT_IDS)
            self.purchases.append((src, seq))
        elif kind == OpKind.REFUND:  # of a purchase, mostly; in parts, sometimes too much
            acct = cp = 0
            if self.purchases and r.random() < 0.9:
                rec["ref_source"], rec["ref_seq"] = r.choice(self.purchases)
            elif self.issued:
                rec["ref_source"], rec["ref_seq"] = self.issued[-1]["source"], self.issued[-1]["seq"]
            amt = r.choice((1, 7, 50, 499, 500, 5_000, 50_000, amt))
        elif kind == OpKind.REVERSE:  # of the last issued op (no tap here: not found, or not a tap)
            cp, amt = 0, 0
            if self.issued:
                rec["ref_source"], rec["ref_seq"] = self.issued[-1]["source"], self.issued[-1]["seq"]
        if r.random() < 0.03:
            rec["flags"] |= r.choice((2, 4, 8, 16))
        if r.random() < 0.01:
            rec["source"] = 0
        rec["account_id"], rec["counterparty_id"], rec["amount_fen"] = acct, cp, amt
        if kind in OP_FIELDS_USED:  # a well-formed op leaves what its kind does not use at zero
            for field in ("account_id", "counterparty_id"):
                if field not in OP_FIELDS_USED[OpKind(kind)]:
                    rec[field] = 0
        if r.random() < MALFORMED_P:
            self._malform(rec)
        self.issued.append(rec.copy())
        return rec

    def _malform(self, rec: np.void) -> None:
        """Make `rec` one the strict checks refuse (or, for a field its kind uses, maybe
        not): a time at or before the epoch, or one more field set."""
        r = self.rng
        if r.random() < 0.3:
            rec["time_us"] = r.choice((0, -1, -T0_US))
            return
        field = r.choice([f for f, _ in UNUSED_FIELD_RESULTS] + ["amount_fen"])
        bits = OP_DTYPE[field].itemsize * 8
        # a large value, one short of a signed field's maximum: a replay altered by +1
        # (op() above) must not overflow
        rec[field] = r.choice((1, 7, (1 << (bits - 1)) - 2))
        if field == "category" and rec["kind"] == OpKind.OPEN and r.random() < 0.5:
            rec["account_kind"] = r.choice(list(AccountKind))  # a category on a non-card, often

    def batch(self, n: int, link_p: float = 0.15) -> np.ndarray:
        """A batch of n ops, some flagged LINKED into chains."""
        ops = np.zeros(n, dtype=OP_DTYPE)
        for i in range(n):
            ops[i] = self.op()
            if self.rng.random() < link_p:
                ops[i]["flags"] |= OpFlags.LINKED
        return ops

    def offer_tables(self) -> list:
        """Two random catalog versions compiled for the engines: from T0_US and from
        OFFERS_V2_US (an offer id in both continues its budget)."""
        r = self.rng
        return compile_versions([(T0_US, random_catalog(r)), (OFFERS_V2_US, random_catalog(r))])[0]

    def setup_batch(self) -> np.ndarray:
        """OPEN every pooled account and fund the clearing → program path."""
        rows = []
        for acct, kind in KIND_OF.items():
            rows.append((OpKind.OPEN, acct, 0, 0, kind))
        rows.append((OpKind.TRANSFER, 1, 3, 10_000_000, 0))
        rows.append((OpKind.TRANSFER, 1, UNION_IDS[0], 20_000, 0))
        ops = np.zeros(len(rows), dtype=OP_DTYPE)
        for i, (kind, a, c, amt, ak) in enumerate(rows):
            ops[i]["source"] = 1_000_000
            ops[i]["seq"] = i + 1
            ops[i]["time_us"] = T0_US
            ops[i]["kind"], ops[i]["account_id"], ops[i]["counterparty_id"] = kind, a, c
            ops[i]["amount_fen"], ops[i]["account_kind"] = amt, ak
        return ops
