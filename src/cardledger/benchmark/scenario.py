"""A synthetic Harbin day (morning peak, lunch hour), deterministic by seed, written once as batch files.

`generate(n_cards, seed)` returns the scenario as a list of op batches (OP_DTYPE
arrays); `write(directory, ...)` stores them as msgpack files with a manifest, and
`read(directory)` gives them back byte for byte, so every engine replays the same
bytes. The city, on the packaged Harbin fare system (Monday 2026-11-23,
Asia/Shanghai):

- **Accounts:** three bank top-up channels (CLEARING 1–3), the union aid program
  (PROGRAM 10, funded from channel 1), the five operators of the Harbin fares.toml
  (9001–9005), and `n_cards` cards (ids from CARD_ID_BASE): 80% adults, 10%
  students, 5% aged 60–64, 5% aged 65+ (card category codes 0–3), each topped up
  with 30–200 yuan before the peak.
- **The peak, 06:30–08:30:** each card makes 0 (20%), 1 (50%) or 2 (30%) journeys,
  departing around 07:30 (normal, sd 25 min, clipped to the peak): bus only 45%,
  metro only 30%, bus then metro 15%, metro then bus 5%, ferry 2%, taxi 3%. Bus
  routes are drawn with Zipf-like popularity (weight 1/rank); a metro ride is an
  ENTRY and an EXIT 8–40 minutes later (1% at the same station); a taxi ride
  carries a metered fare of 10–40 yuan.
- **Money:** 2% of cards top up 50–100 yuan through a bank channel during the
  peak; an aid disbursement of min(100,000, n_cards / 10) lines at 07:00.
- **Offline validators:** 3% of taps are uploaded 30–90 minutes late (same id and
  event time, a later batch), all of them BOARD taps (vehicle validators; metro and
  coach gates are online); 1% of taps are sent twice (the duplicate in a later batch).
- **Lost cards:** max(1, n_cards / 100,000) cards are frozen at 07:15 and replaced
  by new cards at 07:45; their later taps are refused.
- **The lunch hour, 11:30–13:30:** max(10, n_cards / 500) merchants (MERCHANT
  accounts from MERCHANT_ID_BASE; of every five, two canteens or restaurants in
  group "catering", two "retail" and one "grocery"), the union's
  promotion fund (SUBSIDY account UNION_ID, funded from channel 1 by a TRANSFER)
  and an offer catalog in force from the day's midnight (`offer_catalog`: per
  merchant a 满X减Y once per card a day, a percent off with a cap, or a 每满X减Y;
  city-wide campaigns paid by the union fund, one of them with a budget that runs
  out during the hour, one for seniors' cards with a month limit; a catering lunch
  offer for 11:00–14:00). 30% of cards make 1 (60%) or 2 (40%) PURCHASEs of 5–150
  yuan (log-uniform), uniform over the two hours, at merchants drawn with catering
  three times as likely; each merchant's till is a
  source. 2% of purchases are partly refunded (10–90% of the gross) 5–40 minutes
  later from the merchants' service desk (source REFUND_SOURCE), some of them of
  purchases that were refused (PURCHASE_NOT_FOUND).

The catalog's bytes (`OfferCatalog.to_bytes`) are a file of the scenario
(`offers.json`, named in the manifest with its SHA-256 and `effective_from_us`);
a replay installs it on every engine before the first batch (`read_offers`).

Each validator is a source (one per stop and route, seq increasing in event
time), so late uploads exercise out-of-order ids. Batches hold BATCH_OPS ops in
upload order; setup batches come first (`setup_batches` in the manifest), then the
morning peak's and the lunch hour's (`phases`: each timed phase's name and batches).

`write` and `read` store any workload so (`workloads.mix_scenario` gives the
SPEND/TOPUP mix as a Scenario too); the manifest names it (`workload`, `params`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgpack
import numpy as np

from ..fares import FareSystem
from ..offers.catalog import OfferCatalog
from ..schema import OP_DTYPE, AccountKind, OpKind, TapType

#: 2: the lunch hour (merchants, the union fund, PURCHASE and REFUND), the offer
#: catalog file and the timed phases in the manifest.
SCENARIO_FORMAT = 2
BATCH_OPS = 8192
FILE_BATCHES = 64  # batches per msgpack file, at most
#: Ops per msgpack file, at most: a replaying process holds one file in memory at a
#: time, which counts in its peak RSS (the mix's setup batches are 8 times the city's).
FILE_OPS_MAX = FILE_BATCHES * BATCH_OPS
CARD_ID_BASE = 10_000_000
REPLACEMENT_ID_BASE = 20_000_000
CHANNEL_IDS = (1, 2, 3)
PROGRAM_ID = 10
OPERATOR_IDS = (9001, 9002, 9003, 9004, 9005)
OFFICE_SOURCE = 1  # card office: OPEN, FREEZE, REPLACE
BANK_SOURCE = 2  # bank channels: TOPUP
AID_SOURCE = 3  # the union's aid disbursement
REFUND_SOURCE = 4  # the merchants' service desk: REFUND
COMMERCE_SOURCE = 5  # the union's merchant office: opens merchants and the fund, funds it
UNION_ID = 11  # the union's promotion fund (SUBSIDY): its share of campaign discounts
MERCHANT_ID_BASE = 100_000
MERCHANT_SOURCE_BASE = 500_000  # one till per merchant: PURCHASE
#: Merchants per card in the city: 2,000 for 1M cards.
CARDS_PER_MERCHANT = 500
#: The union's promotion fund: 5 yuan a card.
UNION_FUND_FEN_PER_CARD = 500
OFFERS_FILE = "offers.json"
VALIDATOR_SOURCE_BASE = 1_000_000
_TZ = dt.timezone(dt.timedelta(hours=8))
DAY_US = int(dt.datetime(2026, 11, 23, tzinfo=_TZ).timestamp()) * 1_000_000
HOUR_US = 3_600_000_000
MINUTE_US = 60_000_000
PEAK_START_US = DAY_US + 6 * HOUR_US + 30 * MINUTE_US
PEAK_END_US = DAY_US + 8 * HOUR_US + 30 * MINUTE_US
SETUP_US = DAY_US + 5 * HOUR_US
LUNCH_START_US = DAY_US + 11 * HOUR_US + 30 * MINUTE_US
LUNCH_END_US = DAY_US + 13 * HOUR_US + 30 * MINUTE_US
#: The offer catalog is in force from the scenario day's local midnight.
OFFERS_FROM_US = DAY_US
#: Merchant groups by merchant index modulo 5.
MERCHANT_GROUPS = ("catering", "retail", "catering", "grocery", "retail")


@dataclass
class Scenario:
    """The batches, and what they are: `workload` names the generator, `params` its
    arguments besides the cards and the seed."""

    batches: list[np.ndarray]
    setup_batches: int
    n_cards: int
    seed: int
    counts: dict[str, int]
    workload: str = "city"
    params: dict[str, int] = field(default_factory=dict)
    #: The offer catalog's bytes (OfferCatalog.to_bytes) and when it is in force; None: no offers.
    offers: bytes | None = None
    offers_from_us: int = 0
    #: The timed batches by phase, in order: (name, batches).
    phases: list[tuple[str, int]] = field(default_factory=list)

    @property
    def ops(self) -> int:
        """Ops in all batches."""
        return sum(len(b) for b in self.batches)


def _ops(n: int) -> np.ndarray:
    return np.zeros(n, dtype=OP_DTYPE)


def _cut(ops: np.ndarray) -> list[np.ndarray]:
    return [np.ascontiguousarray(ops[i : i + BATCH_OPS]) for i in range(0, len(ops), BATCH_OPS)]


def generate(n_cards: int = 1_000_000, seed: int = 20261123, fares: FareSystem | None = None) -> Scenario:
    """Build the scenario (module docstring); a pure function of its arguments."""
    if n_cards < 10:
        raise ValueError("the scenario needs at least 10 cards")
    fs = fares or FareSystem.harbin()
    rng = np.random.default_rng(seed)
    t = fs.tables
    bus_routes = np.array([i for i, r in enumerate(t.route_ids) if r.startswith("bus_")], dtype=np.int64)
    metro_routes = np.array([i for i, r in enumerate(t.route_ids) if r.startswith("metro_")], dtype=np.int64)
    ferry_route = fs.route_index("ferry_songhua")
    taxi_route = fs.route_index("taxi")
    bus_stops = np.array([i for i, s in enumerate(t.stop_ids) if s.startswith("bs_")], dtype=np.int64)
    piers = [i for i, s in enumerate(t.stop_ids) if s.startswith("ferry_") and s.endswith("_pier")]
    taxi_stop = fs.stop_index("taxi_anywhere")
    # metro platforms by line: a ride enters and leaves on the same line's platforms
    line_platforms: dict[int, np.ndarray] = {}
    for r in metro_routes.tolist():
        line = t.route_ids[r].split("_")[-1]
        line_platforms[r] = np.array(
            [i for i, s in enumerate(t.stop_ids) if s.startswith(f"m{line}_")], dtype=np.int64
        )
    counts: dict[str, int] = {}

    # -- setup: accounts and initial top-ups ------------------------------------
    cards = CARD_ID_BASE + np.arange(n_cards, dtype=np.int64)
    n_fixed = len(CHANNEL_IDS) + 1 + len(OPERATOR_IDS)
    setup = _ops(n_fixed + 1 + 2 * n_cards)
    k = 0
    for cid in CHANNEL_IDS:
        setup[k] = (OFFICE_SOURCE, k + 1, cid, 0, 0, SETUP_US, 0, 0, 0, OpKind.OPEN, 0, AccountKind.CLEARING, 0, 0, 0, 0, 0, 0, 0)
        k += 1
    setup[k] = (OFFICE_SOURCE, k + 1, PROGRAM_ID, 0, 0, SETUP_US, 0, 0, 0, OpKind.OPEN, 0, AccountKind.PROGRAM, 0, 0, 0, 0, 0, 0, 0)
    k += 1
    for oid in OPERATOR_IDS:
        setup[k] = (OFFICE_SOURCE, k + 1, oid, 0, 0, SETUP_US, 0, 0, 0, OpKind.OPEN, 0, AccountKind.OPERATOR, 0, 0, 0, 0, 0, 0, 0)
        k += 1
    n_aid = min(100_000, n_cards // 10)
    aid_each = 20_000  # 200 yuan a line
    setup[k] = (BANK_SOURCE, 1, CHANNEL_IDS[0], PROGRAM_ID, n_aid * aid_each, SETUP_US, 0, 0, 0, OpKind.TRANSFER, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    k += 1
    category = rng.choice(4, size=n_cards, p=[0.80, 0.10, 0.05, 0.05]).astype(np.uint16)
    opens = setup[k : k + n_cards]
    opens["source"] = OFFICE_SOURCE
    opens["seq"] = np.arange(n_fixed + 1, n_fixed + 1 + n_cards)
    opens["account_id"] = cards
    opens["time_us"] = SETUP_US
    opens["kind"] = OpKind.OPEN
    opens["account_kind"] = AccountKind.CARD
    opens["category"] = category
    k += n_cards
    tops = setup[k : k + n_cards]
    tops["source"] = BANK_SOURCE
    tops["seq"] = np.arange(2, 2 + n_cards)
    tops["account_id"] = cards
    tops["counterparty_id"] = np.array(CHANNEL_IDS)[np.arange(n_cards) % 3]
    tops["amount_fen"] = rng.integers(30, 201, size=n_cards) * 100
    tops["time_us"] = SETUP_US + 1
    tops["kind"] = OpKind.TOPUP
    n_merchants = max(10, n_cards // CARDS_PER_MERCHANT)
    merchants = MERCHANT_ID_BASE + np.arange(n_merchants, dtype=np.int64)
    commerce = _ops(n_merchants + 2)
    commerce["source"] = COMMERCE_SOURCE
    commerce["seq"] = np.arange(1, n_merchants + 3)
    commerce["time_us"] = SETUP_US
    commerce["kind"] = OpKind.OPEN
    commerce["account_id"][0] = UNION_ID
    commerce["account_kind"][0] = AccountKind.SUBSIDY
    commerce["account_id"][1:-1] = merchants
    commerce["account_kind"][1:-1] = AccountKind.MERCHANT
    fund = commerce[-1:]
    fund["kind"] = OpKind.TRANSFER
    fund["account_id"] = CHANNEL_IDS[0]
    fund["counterparty_id"] = UNION_ID
    fund["amount_fen"] = UNION_FUND_FEN_PER_CARD * n_cards
    fund["time_us"] = SETUP_US + 1
    setup = np.concatenate([setup, commerce])
    counts["setup"] = len(setup)
    counts["merchants"] = n_merchants

    # -- journeys -------------------------------------------------------------
    n_journeys = rng.choice(3, size=n_cards, p=[0.2, 0.5, 0.3])
    j_card = np.repeat(np.arange(n_cards), n_journeys)
    nj = len(j_card)
    j_kind = rng.choice(6, size=nj, p=[0.45, 0.30, 0.15, 0.05, 0.02, 0.03])
    dep = np.clip(rng.normal(7.5 * HOUR_US, 25 * MINUTE_US, size=nj).astype(np.int64) + DAY_US, PEAK_START_US, PEAK_END_US - 45 * MINUTE_US)
    zipf = 1.0 / np.arange(1, len(bus_routes) + 1)
    zipf /= zipf.sum()
    taps: list[tuple[np.ndarray, ...]] = []  # columns: card, time, route, stop, tap, amount

    def add(card: np.ndarray, time: np.ndarray, route: np.ndarray, stop: np.ndarray, tap: int, amount: np.ndarray | int = 0) -> None:
        n = len(card)
        taps.append((card, time, route, stop, np.full(n, tap), np.broadcast_to(np.asarray(amount, dtype=np.int64), (n,)).copy()))

    def bus(sel: np.ndarray, time: np.ndarray) -> None:
        n = int(sel.sum())
        add(j_card[sel], time, rng.choice(bus_routes, size=n, p=zipf), rng.choice(bus_stops, size=n), TapType.BOARD)

    def metro(sel: np.ndarray, time: np.ndarray) -> np.ndarray:
        n = int(sel.sum())
        line = rng.choice(metro_routes, size=n)
        a = np.empty(n, dtype=np.int64)
        b = np.empty(n, dtype=np.int64)
        for r in metro_routes.tolist():
            m = line == r
            plats = line_platforms[r]
            a[m] = rng.choice(plats, size=int(m.sum()))
            b[m] = rng.choice(plats, size=int(m.sum()))
        same = rng.random(n) < 0.01
        b[same] = a[same]
        ride = rng.integers(8, 41, size=n) * MINUTE_US
        add(j_card[sel], time, line, a, TapType.ENTRY)
        add(j_card[sel], time + ride, line, b, TapType.EXIT)
        return time + ride

    walk = rng.integers(3, 12, size=nj) * MINUTE_US
    bus(j_kind == 0, dep[j_kind == 0])
    metro(j_kind == 1, dep[j_kind == 1])
    m2 = j_kind == 2
    bus(m2, dep[m2])
    metro(m2, dep[m2] + 15 * MINUTE_US + walk[m2])
    m3 = j_kind == 3
    end = metro(m3, dep[m3])
    bus(m3, end + walk[m3])
    m4 = j_kind == 4
    n4 = int(m4.sum())
    add(j_card[m4], dep[m4], np.full(n4, ferry_route), rng.choice(piers, size=n4), TapType.BOARD)
    m5 = j_kind == 5
    n5 = int(m5.sum())
    add(j_card[m5], dep[m5], np.full(n5, taxi_route), np.full(n5, taxi_stop), TapType.BOARD, rng.integers(1000, 4001, size=n5))
    cols = [np.concatenate([c[i] for c in taps]) for i in range(6)]
    card_i, time, route, stop, tap, amount = cols
    nt = len(card_i)
    counts["taps"] = nt

    top = np.zeros(nt, dtype=OP_DTYPE)
    top["account_id"] = cards[card_i]
    top["time_us"] = time
    top["route"] = route
    top["stop"] = stop
    top["tap"] = tap
    top["amount_fen"] = amount
    top["kind"] = OpKind.TAP
    # validators: one per (stop, route); seq in event-time order per validator
    validator = VALIDATOR_SOURCE_BASE + stop * 128 + (route % 128)
    order = np.lexsort((np.arange(nt), time, validator))
    top = top[order]
    validator = validator[order]
    top["source"] = validator
    first = np.r_[True, validator[1:] != validator[:-1]]
    run_start = np.maximum.accumulate(np.where(first, np.arange(nt), 0))
    top["seq"] = np.arange(nt) - run_start + 1
    upload = top["time_us"].copy()
    # Offline validators are on vehicles (BOARD taps); metro and coach gates are online.
    late = (rng.random(nt) < 0.03 / max((top["tap"] == TapType.BOARD).mean(), 1e-9)) & (top["tap"] == TapType.BOARD)
    upload[late] += rng.integers(30, 91, size=int(late.sum())) * MINUTE_US
    counts["late_taps"] = int(late.sum())
    dup = rng.random(nt) < 0.01
    counts["duplicate_taps"] = int(dup.sum())
    dup_ops = top[dup].copy()
    dup_upload = upload[dup] + rng.integers(1, 31, size=int(dup.sum())) * MINUTE_US

    # -- money and lost cards ----------------------------------------------------
    n_top = max(1, n_cards // 50)
    who = rng.choice(n_cards, size=n_top, replace=False)
    peak_top = _ops(n_top)
    peak_top["source"] = BANK_SOURCE
    peak_top["seq"] = np.arange(2 + n_cards, 2 + n_cards + n_top)
    peak_top["account_id"] = cards[who]
    peak_top["counterparty_id"] = np.array(CHANNEL_IDS)[who % 3]
    peak_top["amount_fen"] = rng.integers(50, 101, size=n_top) * 100
    peak_top["time_us"] = np.sort(rng.integers(PEAK_START_US, PEAK_END_US, size=n_top))
    peak_top["kind"] = OpKind.TOPUP
    counts["peak_topups"] = n_top
    aid = _ops(n_aid)
    aid["source"] = AID_SOURCE
    aid["seq"] = np.arange(1, n_aid + 1)
    aid["account_id"] = cards[rng.choice(n_cards, size=n_aid, replace=False)]
    aid["counterparty_id"] = PROGRAM_ID
    aid["amount_fen"] = aid_each
    aid["time_us"] = DAY_US + 7 * HOUR_US
    aid["kind"] = OpKind.AID
    counts["aid_lines"] = n_aid
    n_lost = max(1, n_cards // 100_000)
    lost = rng.choice(n_cards, size=n_lost, replace=False)
    office = _ops(2 * n_lost)
    office_seq0 = n_fixed + 1 + n_cards
    for i, c in enumerate(lost.tolist()):
        office[2 * i] = (OFFICE_SOURCE, office_seq0 + 2 * i, cards[c], 0, 0, DAY_US + 7 * HOUR_US + 15 * MINUTE_US,
                         0, 0, 0, OpKind.FREEZE, 0, 0, 0, 0, 0, 0, 0, 0, 0)  # fmt: skip
        office[2 * i + 1] = (OFFICE_SOURCE, office_seq0 + 2 * i + 1, cards[c], REPLACEMENT_ID_BASE + i,
                             0, DAY_US + 7 * HOUR_US + 45 * MINUTE_US, 0, 0, 0, OpKind.REPLACE, 0, 0, 0, 0, 0, 0, 0, 0, 0)  # fmt: skip
    counts["lost_cards"] = n_lost

    peak = np.concatenate([top, dup_ops, peak_top, aid, office])
    up = np.concatenate([upload, dup_upload, peak_top["time_us"], aid["time_us"], office["time_us"]])
    peak = peak[np.argsort(up, kind="stable")]
    counts["peak_ops"] = len(peak)

    lunch = _lunch(rng, cards, merchants, counts)
    catalog = offer_catalog(n_cards, n_merchants)
    counts["offers"] = len(catalog.offers)
    setup_batches = _cut(setup)
    peak_batches = _cut(peak)
    lunch_batches = _cut(lunch)
    return Scenario(setup_batches + peak_batches + lunch_batches, len(setup_batches), n_cards, seed, counts,
                    offers=catalog.to_bytes(), offers_from_us=OFFERS_FROM_US,
                    phases=[("peak", len(peak_batches)), ("lunch", len(lunch_batches))])


def offer_catalog(n_cards: int, n_merchants: int) -> OfferCatalog:
    """The city's offer catalog (module docstring): a pure function of its arguments."""
    ms = [{"id": MERCHANT_ID_BASE + m, "name": f"商户{m}", "group": MERCHANT_GROUPS[m % 5]} for m in range(n_merchants)]
    own = (
        {"name": "满50减10", "amount_off_fen": 1_000, "min_gross_fen": 5_000, "per_card_day_count": 1},
        {"name": "九折，最多减15元", "percent_off_bp": 1_000, "max_discount_fen": 1_500},
        {"name": "每满30减3", "amount_off_fen": 300, "every_fen": 3_000, "max_discount_fen": 1_500},
        None,  # a merchant with no offer of its own
    )
    offers: list[dict] = []
    for m in range(n_merchants):
        kind = own[m % len(own)]
        if kind is not None:
            offers.append({"id": f"m{m}", "merchants": [MERCHANT_ID_BASE + m], **kind})
    offers += [
        {"id": "lunch-catering", "name": "工会午餐：餐饮八五折", "merchant_groups": ["catering"],
         "hours": ["11:00-14:00"], "percent_off_bp": 1_500, "max_discount_fen": 2_000, "per_card_day_count": 1,
         "union_share_bp": 3_000, "union_account": UNION_ID},
        {"id": "city-weekday", "name": "工作日全城97折", "percent_off_bp": 300, "days_of_week": [1, 2, 3, 4, 5],
         "budget_fen": 1_000 * n_cards, "union_share_bp": 10_000, "union_account": UNION_ID},
        # Runs out during the lunch hour: about a third of what its purchases would take.
        {"id": "city-100-15", "name": "满100减15（限量）", "amount_off_fen": 1_500, "min_gross_fen": 10_000,
         "budget_fen": 10 * n_cards, "union_share_bp": 5_000, "union_account": UNION_ID},
        {"id": "city-seniors", "name": "老年会员九折", "categories": [2, 3], "percent_off_bp": 1_000,
         "per_card_month_discount_fen": 3_000, "union_share_bp": 10_000, "union_account": UNION_ID},
    ]
    return OfferCatalog.from_dict({"title": "哈尔滨工会会员卡优惠（基准场景）", "merchant": ms, "offer": offers})


def _lunch(rng: np.random.Generator, cards: np.ndarray, merchants: np.ndarray, counts: dict[str, int]) -> np.ndarray:
    """The lunch hour's PURCHASEs and REFUNDs, in upload (event) order."""
    n_cards, n_merchants = len(cards), len(merchants)
    buyers = rng.choice(n_cards, size=int(n_cards * 0.3), replace=False)
    per = rng.choice((1, 2), size=len(buyers), p=(0.6, 0.4))
    who = np.repeat(buyers, per)
    n = len(who)
    weight = np.where(np.array([MERCHANT_GROUPS[m % 5] == "catering" for m in range(n_merchants)]), 3.0, 1.0)
    where = rng.choice(n_merchants, size=n, p=weight / weight.sum())
    buy = _ops(n)
    buy["account_id"] = cards[who]
    buy["counterparty_id"] = merchants[where]
    # log-uniform over 5–150 yuan: most lunches are small, a few are a week's groceries
    buy["amount_fen"] = np.exp(rng.uniform(np.log(500), np.log(15_001), size=n)).astype(np.int64)
    buy["time_us"] = rng.integers(LUNCH_START_US, LUNCH_END_US, size=n)
    buy["kind"] = OpKind.PURCHASE
    till = MERCHANT_SOURCE_BASE + where
    order = np.lexsort((np.arange(n), buy["time_us"], till))  # seq in event-time order per till
    buy, till = buy[order], till[order]
    buy["source"] = till
    first = np.r_[True, till[1:] != till[:-1]]
    run_start = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    buy["seq"] = np.arange(n) - run_start + 1
    counts["purchases"] = n
    back = np.sort(rng.choice(n, size=max(1, n // 50), replace=False))
    refund = _ops(len(back))
    refund["kind"] = OpKind.REFUND
    refund["ref_source"] = buy["source"][back]
    refund["ref_seq"] = buy["seq"][back]
    refund["amount_fen"] = np.maximum(1, buy["amount_fen"][back] * rng.integers(10, 91, size=len(back)) // 100)
    refund["time_us"] = buy["time_us"][back] + rng.integers(5, 41, size=len(back)) * MINUTE_US
    refund = refund[np.argsort(refund["time_us"], kind="stable")]
    refund["source"] = REFUND_SOURCE
    refund["seq"] = np.arange(1, len(refund) + 1)
    counts["refunds"] = len(refund)
    lunch = np.concatenate([buy, refund])
    lunch = lunch[np.argsort(lunch["time_us"], kind="stable")]
    counts["lunch_ops"] = len(lunch)
    return lunch


def write(directory: str | os.PathLike[str], scenario: Scenario) -> dict:
    """Store the batches as msgpack files plus `manifest.json`; return the manifest."""
    os.makedirs(directory, exist_ok=True)
    files = []
    chunks: list[list[np.ndarray]] = [[]]
    for b in scenario.batches:
        if chunks[-1] and (len(chunks[-1]) == FILE_BATCHES or sum(map(len, chunks[-1])) + len(b) > FILE_OPS_MAX):
            chunks.append([])
        chunks[-1].append(b)
    for f, chunk in enumerate(c for c in chunks if c):
        blob = msgpack.packb([b.tobytes() for b in chunk], use_bin_type=True)
        name = f"batches-{f:05d}.msgpack"
        with open(os.path.join(directory, name), "wb") as out:
            out.write(blob)
        files.append({"name": name, "batches": len(chunk), "sha256": hashlib.sha256(blob).hexdigest()})
    manifest = {
        "format": SCENARIO_FORMAT,
        "op_itemsize": OP_DTYPE.itemsize,
        "workload": scenario.workload,
        "params": scenario.params,
        "n_cards": scenario.n_cards,
        "seed": scenario.seed,
        "setup_batches": scenario.setup_batches,
        "batches": len(scenario.batches),
        "ops": scenario.ops,
        "counts": scenario.counts,
        "files": files,
        "phases": [[name, n] for name, n in scenario.phases] or [["timed", len(scenario.batches) - scenario.setup_batches]],
    }
    if scenario.offers is not None:
        with open(os.path.join(directory, OFFERS_FILE), "wb") as out:
            out.write(scenario.offers)
        manifest["offers"] = {"name": OFFERS_FILE, "sha256": hashlib.sha256(scenario.offers).hexdigest(),
                              "effective_from_us": scenario.offers_from_us}  # fmt: skip
    with open(os.path.join(directory, "manifest.json"), "w") as out:
        json.dump(manifest, out, indent=1, sort_keys=True)
    return manifest


def read(directory: str | os.PathLike[str]) -> tuple[dict, Iterator[np.ndarray]]:
    """(manifest, batches) of a written scenario; checks every file's SHA-256."""
    manifest, files = read_files(directory)
    return manifest, (ops for batches in files for ops in batches)


def read_offers(directory: str | os.PathLike[str], manifest: dict) -> tuple[OfferCatalog, int] | None:
    """(the offer catalog, when it is in force) of a written scenario, or None if it has
    none; checks the file's SHA-256."""
    entry = manifest.get("offers")
    if entry is None:
        return None
    with open(os.path.join(directory, entry["name"]), "rb") as f:
        raw = f.read()
    if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
        raise ValueError(f"{entry['name']}: checksum mismatch")
    return OfferCatalog.from_bytes(raw), int(entry["effective_from_us"])


def read_files(directory: str | os.PathLike[str]) -> tuple[dict, Iterator[list[np.ndarray]]]:
    """(manifest, the batches file by file): a replay can stop its clock while a file loads."""
    with open(os.path.join(directory, "manifest.json")) as f:
        manifest = json.load(f)
    if manifest.get("format") != SCENARIO_FORMAT or manifest.get("op_itemsize") != OP_DTYPE.itemsize:
        raise ValueError(f"{directory}: scenario written by another version; generate it again")
    manifest.setdefault("workload", "city")  # written before the manifest named it
    manifest.setdefault("params", {})

    def files() -> Iterator[list[np.ndarray]]:
        for entry in manifest["files"]:
            with open(os.path.join(directory, entry["name"]), "rb") as f:
                blob = f.read()
            if hashlib.sha256(blob).hexdigest() != entry["sha256"]:
                raise ValueError(f"{entry['name']}: checksum mismatch")
            raws = msgpack.unpackb(blob, raw=False)
            del blob
            raws.reverse()
            batches = []
            while raws:  # each raw batch freed once copied: the file is in memory once, not twice
                batches.append(np.frombuffer(raws.pop(), dtype=OP_DTYPE).copy())
            yield batches

    return manifest, files()
