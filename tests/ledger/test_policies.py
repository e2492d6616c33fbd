"""Source policies through the public Ledger (docs/policies.md): who may do what.

The `world` fixture: clearing 1, merchant 2, program 3, operator 4, cards 10 and 11,
opened by source 999. Below, a bank channel is source 100, a POS 200, the aid office 300.
"""

from __future__ import annotations

import os

import pytest
from helpers import Ops, codes

import cardledger
from cardledger import OpKind, PolicyError, Result, SourcePolicy
from cardledger.schema import POLICY_SOURCE
from cardledger.store.policies import policy_key

BANK = SourcePolicy(100, 199, [OpKind.TOPUP], counterparties=[1], amount_max_fen=100_000)
POS = SourcePolicy(200, 200, [OpKind.SPEND], counterparties=[2])
AID_OFFICE = SourcePolicy(300, 300, [OpKind.AID], counterparties=[3])
ADMIN = SourcePolicy(999, 999, list(OpKind))


def one(led, source, seq, kind, account_id=0, counterparty_id=0, amount_fen=0):
    """Apply one op; return its result code as a Result."""
    b = Ops(source=source, start_seq=seq)
    b.add(kind, account_id, counterparty_id, amount_fen)
    return Result(int(led.apply(b.take())["code"][0]))


def test_without_policies_every_source_may_do_anything(world):
    """No set installed: nothing is refused for its source (as before policies)."""
    assert world.policies() is None
    assert one(world, 12345, 1, OpKind.TOPUP, 10, 1, 500) == Result.OK


def test_an_installed_set_allows_what_each_policy_names_and_refuses_the_rest(world):
    """The bank channel tops up from its own clearing account up to its largest amount;
    the POS spends into its merchant; anything else, or any other source, is refused
    with SOURCE_NOT_ALLOWED, journaled, and nothing moves."""
    world.install_policies([BANK, POS, AID_OFFICE, ADMIN])
    before = world.balance(10)
    assert one(world, 150, 1, OpKind.TOPUP, 10, 1, 5_000) == Result.OK
    assert one(world, 150, 2, OpKind.TOPUP, 10, 1, 100_001) == Result.SOURCE_NOT_ALLOWED  # too much
    assert one(world, 150, 3, OpKind.TOPUP, 10, 3, 5_000) == Result.SOURCE_NOT_ALLOWED  # not its account
    assert one(world, 150, 4, OpKind.WITHDRAW, 10, 1, 5_000) == Result.SOURCE_NOT_ALLOWED  # not its kind
    assert one(world, 200, 1, OpKind.SPEND, 10, 2, 100) == Result.OK
    assert one(world, 201, 1, OpKind.SPEND, 10, 2, 100) == Result.SOURCE_NOT_ALLOWED  # no policy covers 201
    assert one(world, 300, 1, OpKind.AID, 11, 3, 700) == Result.OK
    assert world.balance(10) == before + 5_000 - 100
    recs = world.journal()
    denied = recs[recs["code"] == Result.SOURCE_NOT_ALLOWED]
    assert len(denied) == 4 and (denied["debit_id"] == 0).all() and (denied["result_amount_fen"] == 0).all()
    assert world.verify().ok


def test_the_policy_check_comes_after_the_strict_input_checks(world):
    """A malformed op from a refused source gets its malformed-input code, not
    SOURCE_NOT_ALLOWED: the strict checks come first (docs/policies.md)."""
    world.install_policies([ADMIN])
    b = Ops(source=5)
    b.add(OpKind.TOPUP, 10, 1, 100, limit_fen=7)  # a field TOPUP does not use
    assert codes(world.apply(b.take())) == ["LIMIT_MUST_BE_ZERO"]
    b = Ops(source=5, start_seq=2)
    b.add(OpKind.FREEZE, 10, amount_fen=5)  # an amount on a kind that takes none
    assert codes(world.apply(b.take())) == ["INVALID_AMOUNT"]


def test_a_resend_of_an_op_decided_before_the_set_still_answers_exists(world):
    """Exactly once: an id decided OK before the set came answers EXISTS when resent,
    even though the set would now refuse it; a refused id answers ID_ALREADY_FAILED."""
    b = Ops(source=777)
    b.add(OpKind.TOPUP, 10, 1, 900)
    topup = b.take()
    assert codes(world.apply(topup)) == ["OK"]
    world.install_policies([BANK])
    assert codes(world.apply(topup)) == ["EXISTS"]
    b = Ops(source=777, start_seq=2)
    b.add(OpKind.TOPUP, 10, 1, 900)
    late = b.take()
    assert codes(world.apply(late)) == ["SOURCE_NOT_ALLOWED"]
    world.install_policies(None)
    assert codes(world.apply(late)) == ["ID_ALREADY_FAILED"]


def test_a_set_applies_whatever_the_ops_event_time(world):
    """An op claiming an event time before the install is still checked by the set."""
    world.install_policies([ADMIN])
    b = Ops(source=150)
    b.add(OpKind.TOPUP, 10, 1, 100, time_us=1)
    assert codes(world.apply(b.take())) == ["SOURCE_NOT_ALLOWED"]


def test_the_empty_set_allows_nothing_and_none_lifts_enforcement(world):
    """install_policies([]) refuses every op (fail closed); install_policies(None)
    allows every op again, as before any install. Both are journaled."""
    world.install_policies([])
    assert world.policies() == []
    assert one(world, 999, 100, OpKind.TOPUP, 10, 1, 100) == Result.SOURCE_NOT_ALLOWED
    world.install_policies(None)
    assert world.policies() is None
    assert one(world, 999, 101, OpKind.TOPUP, 10, 1, 100) == Result.OK
    assert [h["policies"] for h in world.policy_history()] == [[], None]


def test_accounts_restrict_only_the_kinds_that_read_account_id(world):
    """A policy's `accounts` is checked against account_id for kinds that read it; a
    POST (which names a hold, not an account) is not refused for it."""
    world.install_policies([SourcePolicy(999, 999, [OpKind.TRANSFER, OpKind.POST], accounts=[10])])
    b = Ops(source=999, start_seq=50)
    b.add(OpKind.TOPUP, 10, 1, 1_000)
    assert codes(world.apply(b.take())) == ["SOURCE_NOT_ALLOWED"]
    world.install_policies([ADMIN])
    b = Ops(source=999, start_seq=51)
    b.add(OpKind.TOPUP, 10, 1, 1_000)
    world.apply(b.take())
    world.install_policies([SourcePolicy(999, 999, [OpKind.TRANSFER, OpKind.POST], accounts=[10])])
    b = Ops(source=999, start_seq=52)
    b.add(OpKind.TRANSFER, 10, 2, 300, flags=cardledger.OpFlags.PENDING)
    b.add(OpKind.TRANSFER, 11, 2, 300, flags=cardledger.OpFlags.PENDING)
    b.add(OpKind.POST, amount_fen=300, ref_source=999, ref_seq=52)
    assert codes(world.apply(b.take())) == ["OK", "SOURCE_NOT_ALLOWED", "OK"]


def test_close_day_needs_no_policy(world):
    """The ledger's own CLOSE_DAY (source CLOSE_DAY_SOURCE) is never refused by a set."""
    world.install_policies([])
    out = world.close_day(86_400_000_000, 2 * 86_400_000_000)
    assert "already_closed" not in out and world.verify().ok


def test_overlapping_ranges_are_refused_at_install_naming_both(world):
    """Two policies of one set may not cover the same source: PolicyError names both."""
    with pytest.raises(PolicyError, match=r"#0 SourcePolicy\(100, 199.*#1 SourcePolicy\(150, 250.*overlap"):
        world.install_policies([BANK, SourcePolicy(150, 250, [OpKind.SPEND])])
    assert world.policies() is None  # nothing installed


@pytest.mark.parametrize("make, message", [
    (lambda: SourcePolicy(0, 5, [OpKind.TOPUP]), "first_source must be in 1..2"),
    (lambda: SourcePolicy(5, 4, [OpKind.TOPUP]), "last_source 4 is below first_source 5"),
    (lambda: SourcePolicy(1, 2**64, [OpKind.TOPUP]), "last_source must be in"),
    (lambda: SourcePolicy(1, 2, ["TOPUP"]), "not an OpKind"),
    (lambda: SourcePolicy(1, 2, [99]), "not an OpKind"),
    (lambda: SourcePolicy(1, 2, "TOPUP"), "iterable of OpKind"),
    (lambda: SourcePolicy(1, 2, [OpKind.TOPUP], accounts=[-1]), "accounts: an account id must be in"),
    (lambda: SourcePolicy(1, 2, [OpKind.TOPUP], counterparties=[1.5]), "counterparties: an account id must be an int"),
    (lambda: SourcePolicy(1, 2, [OpKind.TOPUP], amount_max_fen=-1), "amount_max_fen must be in 0"),
    (lambda: SourcePolicy(1, 2, [OpKind.TOPUP], amount_max_fen=True), "amount_max_fen must be None or an int"),
    (lambda: SourcePolicy(True, 2, [OpKind.TOPUP]), "first_source must be an int"),
])
def test_invalid_policies_are_refused_with_a_clear_error(make, message):
    """Every field is checked when the policy is made: PolicyError (a ValueError)."""
    with pytest.raises(PolicyError, match=message):
        make()


def test_install_refuses_what_is_not_a_list_of_policies(world):
    with pytest.raises(PolicyError, match="policy #1 is a dict"):
        world.install_policies([BANK, {"first_source": 1}])
    with pytest.raises(PolicyError, match="install a list of SourcePolicy"):
        world.install_policies(BANK)


def test_the_install_is_a_journal_record_and_its_set_is_kept_for_audit(world):
    """install_policies writes a SET_POLICIES record (source POLICY_SOURCE, seq its own
    journal_seq, user_data the set's digest); policy_history returns every set with
    its position and install time."""
    j1 = world.install_policies([BANK, POS])
    j2 = world.install_policies([AID_OFFICE])
    rec = world.journal(j1, j1 + 1)[0]
    assert (rec["kind"], rec["source"], rec["seq"], rec["code"]) == (OpKind.SET_POLICIES, POLICY_SOURCE, j1, 0)
    hist = world.policy_history()
    assert [h["journal_seq"] for h in hist] == [j1, j2]
    assert hist[0]["policies"] == [BANK, POS] and hist[1]["policies"] == [AID_OFFICE]
    assert hist[0]["digest"] == int(rec["user_data"]) and hist[0]["time_us"] == int(rec["time_us"])
    assert world.query(kinds=[OpKind.SET_POLICIES])["journal_seq"].tolist() == [j1, j2]


def test_a_gateway_cannot_install_a_set_by_sending_set_policies(world):
    """A SET_POLICIES op sent as an op has no stored set: POLICY_SET_UNKNOWN."""
    b = Ops(source=POLICY_SOURCE, start_seq=world.journal_seq + 1)
    b.add(OpKind.SET_POLICIES)
    assert codes(world.apply(b.take())) == ["POLICY_SET_UNKNOWN"]
    assert world.policies() is None


def test_the_set_in_force_survives_reopen_checkpoint_and_readonly_readers(ledger_path, world):
    """Close and reopen (replay), a checkpoint then reopen, and a readonly reader opened
    before the install: each sees the set in force and refuses alike."""
    reader = cardledger.open(ledger_path, readonly=True)
    world.install_policies([BANK, ADMIN])
    assert reader.policies() == [BANK, ADMIN]
    world.close()
    with cardledger.open(ledger_path) as led:
        assert led.policies() == [BANK, ADMIN]
        assert one(led, 400, 1, OpKind.TOPUP, 10, 1, 10) == Result.SOURCE_NOT_ALLOWED
        led.checkpoint()
    with cardledger.open(ledger_path) as led:
        assert led.policies() == [BANK, ADMIN]
        assert one(led, 400, 2, OpKind.TOPUP, 10, 1, 10) == Result.SOURCE_NOT_ALLOWED
        led.install_policies(None)
        assert reader.policies() is None
        assert led.verify().ok
    reader.close()
    assert cardledger.inspect(ledger_path).ok


def test_verify_finds_a_stored_set_changed_after_its_install(ledger_path, world):
    """The record carries the set's digest: a set altered in storage does not replay."""
    j = world.install_policies([BANK])
    store = world._store
    with store.begin_write() as txn:
        txn.put(policy_key(j), cardledger.policies.encode_set((POS,)), db=store.state_db)
    report = world.verify()
    assert not report.ok and any("does not replay" in p for p in report.problems), report.problems


def test_recover_carries_the_policy_sets(tmp_path, ledger_path, world):
    """A recovered ledger holds the sets its SET_POLICIES records installed."""
    world.install_policies([BANK, ADMIN])
    world.close()
    dest = str(tmp_path / "recovered")
    report = cardledger.recover(ledger_path, dest)
    assert report.lost is None
    with cardledger.open(dest) as led:
        assert led.policies() == [BANK, ADMIN]
        assert led.verify().ok


def test_a_cluster_node_refuses_to_install_policies(world):
    """The set is stored beside the journal: a replicated ledger refuses the install."""
    world.replicator = lambda key, value: None
    with pytest.raises(cardledger.LedgerError, match="install_policies is not replicated"):
        world.install_policies([BANK])
    world.replicator = None


def test_a_readonly_ledger_cannot_install_policies(ledger_path, world):
    with cardledger.open(ledger_path, readonly=True) as reader:
        with pytest.raises(cardledger.LedgerReadOnlyError):
            reader.install_policies([BANK])


def test_a_second_process_writer_sees_the_other_writers_install(ledger_path, world):
    """Two writers of one ledger: the one that did not install catches up with the
    record and its set before its next batch."""
    with cardledger.open(ledger_path) as other:
        world.install_policies([ADMIN])
        assert one(other, 555, 1, OpKind.TOPUP, 10, 1, 10) == Result.SOURCE_NOT_ALLOWED
        assert other.policies() == [ADMIN]
    assert os.path.exists(ledger_path)


def test_exports_and_follow_carry_set_policies_and_refused_records(tmp_path, world):
    """The new record kind and result code go through every export format and follow."""
    from cardledger import exports

    world.install_policies([ADMIN])
    assert one(world, 150, 1, OpKind.TOPUP, 10, 1, 5) == Result.SOURCE_NOT_ALLOWED
    for fmt in exports.FORMATS:
        out = tmp_path / f"journal.{fmt}"
        assert exports.export(world.batches(), str(out), fmt) == world.journal_seq
    rows = exports.read_jsonl(str(tmp_path / "journal.jsonl"))
    assert [r["result"] for r in rows[-2:]] == ["OK", "SOURCE_NOT_ALLOWED"]
    assert rows[-2]["kind"] == OpKind.SET_POLICIES
    followed = list(world.follow(0, idle_timeout_s=0.05))
    assert int(followed[-1]["code"][-1]) == Result.SOURCE_NOT_ALLOWED


def test_the_policies_command_installs_a_file_shows_and_lists_the_history(tmp_path, ledger_path, world, capsys):
    """`cardledger policies DIR --install FILE`, then the set shown, its history, and a
    bad file refused with exit 2 and the file named."""
    from cardledger.cli import main

    world.close()
    good = tmp_path / "p.toml"
    good.write_text('[[policy]]\nfirst_source = 100\nlast_source = 199\nkinds = ["TOPUP"]\ncounterparties = [1]\n')
    assert main(["policies", ledger_path, "--install", str(good)]) == 0
    assert main(["policies", ledger_path]) == 0
    assert "sources 100..199: TOPUP counterparties=[1]" in capsys.readouterr().out
    assert main(["policies", ledger_path, "--history", "--json"]) == 0
    assert '"kinds": ["TOPUP"]' in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text("[[policy]]\nfirst_source = 1\n")
    assert main(["policies", ledger_path, "--install", str(bad)]) == 2
    assert f"{bad}: line 1: policy #1: key 'kinds' is missing" in capsys.readouterr().err
    assert main(["policies", ledger_path, "--uninstall"]) == 0
    with cardledger.open(ledger_path) as led:
        assert led.policies() is None and len(led.policy_history()) == 2
