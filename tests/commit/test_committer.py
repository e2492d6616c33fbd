"""Group commit: many threads and asyncio tasks, one durable batch per commit."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from helpers import codes, open_cards

import cardledger
from cardledger import Committer, OpFlags, OpKind, Result

T0 = 1_767_225_600_000_000  # every op's time_us (2026-01-01 UTC): it must be positive
CARDS = list(range(100, 132))


def _setup(led):
    open_cards(led, CARDS, 100_000, source=1)


def one(source, seq, kind, account, counterparty, amount, flags=0):
    op = cardledger.new_ops(1)[0]
    op["source"], op["seq"], op["kind"] = source, seq, kind
    op["account_id"], op["counterparty_id"], op["amount_fen"], op["flags"] = account, counterparty, amount, flags
    op["time_us"] = T0
    return op


def test_threads_each_get_their_own_durable_result(led):
    _setup(led)
    results: dict[tuple[int, int], np.void] = {}
    lock = threading.Lock()

    def terminal(source):
        for seq in range(1, 41):
            r = committer.apply(one(source, seq, OpKind.SPEND, CARDS[source % len(CARDS)], 2, seq))
            with lock:
                results[(source, seq)] = r

    with Committer(led, batch_ops_max=64, linger_us=500) as committer:
        threads = [threading.Thread(target=terminal, args=(s,)) for s in range(10, 42)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert committer.batches < 32 * 40  # ops were gathered into shared batches
    assert len(results) == 32 * 40
    assert all(int(r["code"]) == Result.OK for r in results.values())
    assert all(results[(source, 40)]["amount_fen"] == 40 for source in range(10, 42))
    # each terminal spent 1 + 2 + ... + 40 = 820 fen at the merchant
    assert led.balance(2) == 32 * 820
    assert led.verify().ok


def test_asyncio_tasks_await_their_results(led):
    _setup(led)

    async def main():
        with Committer(led, batch_ops_max=128) as committer:
            ops = [one(7, s, OpKind.SPEND, CARDS[s % len(CARDS)], 2, 10) for s in range(1, 301)]
            return await asyncio.gather(*(committer.apply_async(op) for op in ops))

    results = asyncio.run(main())
    assert [int(r["code"]) for r in results] == [Result.OK] * 300
    assert led.balance(2) == 3_000


def test_a_caller_may_hand_over_its_running_loop_and_gets_the_same_results(led, monkeypatch):
    """apply_async and apply_chain_async with loop= (a gateway's connection holds it)
    give what they give without it, and never look the loop up."""
    _setup(led)

    async def main():
        loop = asyncio.get_running_loop()
        with Committer(led, batch_ops_max=128) as committer:
            lookups = []
            real_lookup = cardledger.commit.committer.get_running_loop
            monkeypatch.setattr(cardledger.commit.committer, "get_running_loop", lambda: lookups.append(1) or real_lookup())
            singles = [committer.apply_async(one(8, s, OpKind.SPEND, CARDS[s % len(CARDS)], 2, 10), loop)
                       for s in range(1, 101)]
            chain = cardledger.new_ops(2)
            chain["source"], chain["seq"], chain["kind"] = 8, [101, 102], OpKind.SPEND
            chain["account_id"], chain["counterparty_id"], chain["amount_fen"] = CARDS[0], 2, 5
            chain["flags"][0] = OpFlags.LINKED
            chain["time_us"] = T0
            linked = committer.apply_chain_async(chain, loop=loop)
            assert not lookups
            return await asyncio.gather(*singles), await linked

    results, chained = asyncio.run(main())
    assert [int(r["code"]) for r in results] == [Result.OK] * 100
    assert [int(c) for c in chained["code"]] == [Result.OK] * 2
    assert led.balance(2) == 100 * 10 + 2 * 5


def test_a_chain_commits_in_one_batch_and_single_ops_may_not_link(led):
    _setup(led)
    with Committer(led) as committer:
        chain = cardledger.new_ops(2)
        chain[0] = one(8, 1, OpKind.SPEND, 100, 2, 100, flags=OpFlags.LINKED)
        chain[1] = one(8, 2, OpKind.SPEND, 101, 2, 10**9)  # fails: the chain fails
        r = committer.submit_chain(chain).result()
        assert codes(r) == ["LINKED_FAILED", "INSUFFICIENT_FUNDS"]
        with pytest.raises(cardledger.SchemaError):
            committer.submit(one(8, 3, OpKind.SPEND, 100, 2, 1, flags=OpFlags.LINKED))
    assert led.balance(100) == 100_000


def test_close_commits_everything_accepted_then_refuses(led):
    _setup(led)
    committer = Committer(led, batch_ops_max=16, linger_us=0)
    futures = [committer.submit(one(9, s, OpKind.SPEND, 100, 2, 1)) for s in range(1, 201)]
    committer.close()
    assert all(int(f.result()["code"]) == Result.OK for f in futures)
    assert led.balance(100) == 100_000 - 200
    with pytest.raises(cardledger.LedgerClosedError):
        committer.submit(one(9, 999, OpKind.SPEND, 100, 2, 1))


def _stall(led):
    """Make the committer thread stop inside its next submit until the returned gate opens;
    `entered` is set once it is there (its batch taken off the queue). The ledger also
    reports itself busy to event loops, so their batches go to the committer thread too."""
    entered, gate = threading.Event(), threading.Event()
    real_submit = led.submit

    def slow_submit(ops):
        entered.set()
        gate.wait(10)
        return real_submit(ops)

    led.submit = slow_submit
    led.submit_nowait = lambda ops: None
    return entered, gate


def test_a_full_queue_pushes_back(led):
    _setup(led)
    entered, gate = _stall(led)
    committer = Committer(led, batch_ops_max=4, queue_ops_max=8)
    futures = [committer.submit(one(5, 1, OpKind.SPEND, 100, 2, 1))]
    assert entered.wait(10)  # that op's batch is in apply: the queue is empty
    for s in range(2, 10):  # exactly queue_ops_max more fit
        futures.append(committer.submit(one(5, s, OpKind.SPEND, 100, 2, 1)))
    with pytest.raises(cardledger.QueueFullError):
        committer.submit(one(5, 99, OpKind.SPEND, 100, 2, 1), timeout=0.05)
    gate.set()
    committer.close()
    assert [int(f.result()["code"]) for f in futures] == [Result.OK] * 9
    assert led.balance(100) == 100_000 - 9


def test_a_full_queue_makes_asyncio_callers_wait_without_blocking_the_loop(led):
    _setup(led)
    entered, gate = _stall(led)
    committer = Committer(led, batch_ops_max=2, queue_ops_max=2)

    async def main():
        first = committer.apply_async(one(7, 1, OpKind.SPEND, 101, 2, 1))
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        queued = [committer.apply_async(one(7, s, OpKind.SPEND, 101, 2, 1)) for s in range(2, 6)]
        await asyncio.sleep(0.05)  # the loop still runs while two callers wait for room
        assert not any(f.done() for f in queued)
        gate.set()
        return await asyncio.gather(first, *queued)

    results = asyncio.run(main())
    committer.close()
    assert [int(r["code"]) for r in results] == [Result.OK] * 5
    assert led.balance(101) == 100_000 - 5


def test_an_event_loops_ops_stay_within_the_queue_bound_while_the_ledger_is_busy(led):
    """A loop submitting far more than queue_ops_max without awaiting, while the ledger
    is busy: what is gathered on the loop plus what waits for the committer thread
    never passes the bound (the rest waits for room, off the loop); all commit."""
    _setup(led)
    entered, gate = _stall(led)
    committer = Committer(led, batch_ops_max=16, queue_ops_max=64)
    peak = []

    async def main():
        loop = asyncio.get_running_loop()
        first = committer.apply_async(one(33, 1, OpKind.SPEND, 104, 2, 1))
        await loop.run_in_executor(None, entered.wait, 10)
        futures = [first]
        for s in range(2, 1002):
            futures.append(committer.apply_async(one(33, s, OpKind.SPEND, 104 + s % 8, 2, 1)))
            if s % 50 == 0:
                await asyncio.sleep(0)  # the loop's flush runs: the busy ledger hands it over
                batcher = committer._batchers[loop]
                peak.append(batcher.n_ops + committer._queued_ops)
        await asyncio.sleep(0.05)
        peak.append(committer._batchers[loop].n_ops + committer._queued_ops)
        gate.set()
        return await asyncio.gather(*futures)

    results = asyncio.run(main())
    committer.close()
    assert max(peak) <= 64
    assert [int(r["code"]) for r in results] == [Result.OK] * 1001


def test_an_op_may_be_submitted_as_the_bytes_of_its_record(led):
    _setup(led)
    with Committer(led) as committer:
        r = committer.apply(one(3, 1, OpKind.SPEND, 102, 2, 250).tobytes())
        with pytest.raises(cardledger.SchemaError):
            committer.submit(one(3, 2, OpKind.SPEND, 102, 2, 1).tobytes()[:-1])  # not one whole record
        with pytest.raises(cardledger.SchemaError):
            committer.submit(one(3, 3, OpKind.SPEND, 102, 2, 1, flags=OpFlags.LINKED).tobytes())
    assert int(r["code"]) == Result.OK and int(r["amount_fen"]) == 250
    assert led.balance(102) == 100_000 - 250


def test_a_chain_whose_last_op_links_is_refused_and_never_links_to_another_callers_op(led):
    """A chain must end with an op without LINKED: gathered with other callers' ops, an
    open chain would link to the next one and fail it too. submit_chain and
    apply_chain_async refuse it (SchemaError); the other caller's op is unaffected."""
    _setup(led)
    open_chain = cardledger.new_ops(2)
    open_chain["source"], open_chain["seq"], open_chain["kind"] = 31, [1, 2], OpKind.SPEND
    open_chain["account_id"], open_chain["counterparty_id"], open_chain["amount_fen"] = 100, 2, 10**9
    open_chain["flags"] = OpFlags.LINKED
    open_chain["time_us"] = T0

    async def main():
        with Committer(led) as committer:
            with pytest.raises(cardledger.SchemaError, match="last op of a chain"):
                committer.apply_chain_async(open_chain)
            other = committer.apply_async(one(31, 3, OpKind.SPEND, 101, 2, 7))
            return await other

    assert int(asyncio.run(main())["code"]) == Result.OK
    with Committer(led) as committer:
        with pytest.raises(cardledger.SchemaError, match="last op of a chain"):
            committer.submit_chain(open_chain)
    assert led.balance(101) == 100_000 - 7 and led.balance(100) == 100_000


def test_a_chain_of_one_op_gathered_with_single_ops_still_gets_an_array(led):
    """apply_chain_async returns a RESULT_DTYPE array even for a one-op chain sharing
    its batch with single ops (whose futures get one record each)."""
    _setup(led)

    async def main():
        with Committer(led) as committer:
            singles = [committer.apply_async(one(32, s, OpKind.SPEND, 102, 2, 1)) for s in range(1, 4)]
            chain = committer.apply_chain_async(np.array([one(32, 4, OpKind.SPEND, 103, 2, 5)]))
            return await asyncio.gather(*singles), await chain

    singles, chain = asyncio.run(main())
    assert all(isinstance(r, np.void) and int(r["code"]) == Result.OK for r in singles)
    assert isinstance(chain, np.ndarray) and chain.shape == (1,) and int(chain["code"][0]) == Result.OK


def test_asyncio_chains_commit_in_one_batch(led):
    _setup(led)
    chain = cardledger.new_ops(2)
    chain["source"], chain["seq"], chain["kind"] = 11, [1, 2], OpKind.SPEND
    chain["account_id"], chain["counterparty_id"] = 103, 2
    chain["amount_fen"] = [100, 200_000]  # the second is more than the card holds
    chain["flags"][0] = OpFlags.LINKED
    chain["time_us"] = T0

    async def main():
        with Committer(led) as committer:
            return await committer.apply_chain_async(chain)

    r = asyncio.run(main())
    assert list(r["code"]) == [Result.LINKED_FAILED, Result.INSUFFICIENT_FUNDS]
    assert led.balance(103) == 100_000


def test_a_failing_commit_fails_every_caller_of_that_batch(led, monkeypatch):
    """The disk fails for good: the pipelined commit fails, so does the ledger's
    synchronous retry, and every caller of the batch gets the StorageError."""
    import lmdb

    import cardledger.ledger as ledger_module

    _setup(led)

    def broken(self, *args):
        raise lmdb.DiskError("disk on fire")

    monkeypatch.setattr(ledger_module.Ledger, "_commit_pipelined", broken)
    monkeypatch.setattr(ledger_module.Ledger, "_apply_once", broken)

    async def main():
        with Committer(led) as committer:
            futures = [committer.apply_async(one(12, s, OpKind.SPEND, 104, 2, 1)) for s in range(1, 4)]
            return await asyncio.gather(*futures, return_exceptions=True)

    errors = asyncio.run(main())
    assert all(isinstance(e, cardledger.StorageError) for e in errors)
    monkeypatch.undo()
    assert led.balance(104) == 100_000  # nothing of the failed batches was applied


def test_replayed_ids_through_the_committer_move_money_once(led):
    _setup(led)
    with Committer(led) as committer:
        op = one(6, 1, OpKind.SPEND, 100, 2, 500)
        first = committer.apply(op)
        again = committer.apply(op)
    assert int(first["code"]) == Result.OK and int(again["code"]) == Result.EXISTS
    assert again["journal_seq"] == first["journal_seq"]
    assert led.balance(100) == 100_000 - 500


def test_a_cancelled_future_does_not_stop_the_committer(led):
    _setup(led)
    committer = Committer(led, linger_us=0)
    f = committer.submit(one(4, 1, OpKind.SPEND, 100, 2, 1))
    f.cancel()  # cancelling only stops waiting: the op was accepted and is still committed
    assert int(committer.apply(one(4, 2, OpKind.SPEND, 100, 2, 1))["code"]) == Result.OK
    committer.close()
    assert led.balance(100) == 100_000 - 2


def test_an_event_loops_ops_go_to_the_ledger_from_the_loop_itself(led):
    """apply_async gathers on the loop and hands batches over from the loop's thread,
    without waiting for the committer thread."""
    _setup(led)
    threads = []
    real_try = led.submit_nowait

    def spy(ops):
        threads.append(threading.get_ident())
        return real_try(ops)

    led.submit_nowait = spy

    async def main():
        with Committer(led) as committer:
            ops = [one(21, s, OpKind.SPEND, CARDS[s % len(CARDS)], 2, 1) for s in range(1, 501)]
            results = await asyncio.gather(*(committer.apply_async(op) for op in ops))
            return results, committer.batches, threading.get_ident()

    results, batches, loop_thread = asyncio.run(main())
    assert [int(r["code"]) for r in results] == [Result.OK] * 500
    assert threads and set(threads) == {loop_thread}
    assert batches < 500  # gathered into shared batches
    assert led.balance(2) == 500


def test_a_busy_ledger_sends_a_loops_batch_through_the_committer_thread(led):
    _setup(led)
    led.submit_nowait = lambda ops: None  # as if another thread held the ledger

    async def main():
        with Committer(led) as committer:
            return await asyncio.gather(*(committer.apply_async(one(22, s, OpKind.SPEND, 100, 2, 1)) for s in range(1, 51)))

    assert [int(r["code"]) for r in asyncio.run(main())] == [Result.OK] * 50
    assert led.balance(100) == 100_000 - 50


def test_close_in_the_loops_thread_commits_what_the_loop_gathered(led):
    _setup(led)

    async def main():
        committer = Committer(led)
        futures = [committer.apply_async(one(23, s, OpKind.SPEND, 101, 2, 1)) for s in range(1, 41)]
        committer.close()  # before the loop ever ran its flush
        assert led.balance(101) == 100_000 - 40  # durable before close returned
        with pytest.raises(cardledger.LedgerClosedError):
            committer.apply_async(one(23, 99, OpKind.SPEND, 101, 2, 1))
        return await asyncio.gather(*futures)

    assert [int(r["code"]) for r in asyncio.run(main())] == [Result.OK] * 40


def test_close_from_another_thread_waits_for_a_running_loops_batches(led):
    _setup(led)
    committer = Committer(led)
    gathered, stop = threading.Event(), threading.Event()
    results = []

    async def main():
        futures = [committer.apply_async(one(24, s, OpKind.SPEND, 102, 2, 1)) for s in range(1, 61)]
        gathered.set()
        for _ in range(1000):  # hold the loop until close() has stopped taking ops
            if not committer._accepting:
                break
            threading.Event().wait(0.01)
        results.extend(await asyncio.gather(*futures))
        await asyncio.get_running_loop().run_in_executor(None, stop.wait, 10)

    runner = threading.Thread(target=asyncio.run, args=(main(),))
    runner.start()
    assert gathered.wait(10)
    committer.close(timeout=30)
    assert led.balance(102) == 100_000 - 60  # every gathered op committed before close returned
    stop.set()
    runner.join(10)
    assert [int(r["code"]) for r in results] == [Result.OK] * 60


def test_a_ledger_closed_under_the_committer_fails_a_loops_callers(led):
    _setup(led)

    async def main():
        committer = Committer(led)
        led.close()
        futures = [committer.apply_async(one(25, s, OpKind.SPEND, 100, 2, 1)) for s in range(1, 4)]
        return await asyncio.gather(*futures, return_exceptions=True)

    errors = asyncio.run(main())
    assert all(isinstance(e, cardledger.LedgerClosedError) for e in errors)


def test_ops_gathered_on_a_loop_that_closed_are_still_committed_by_close(led):
    """Accepted is committed, even when the loop that gathered the ops closed first."""
    _setup(led)
    committer = Committer(led)
    loop = asyncio.new_event_loop()

    async def submit_and_leave():
        for s in range(1, 11):
            committer.apply_async(one(26, s, OpKind.SPEND, 103, 2, 1))

    loop.run_until_complete(submit_and_leave())
    loop.close()
    committer.close()
    assert led.balance(103) == 100_000 - 10


def test_closing_under_load_from_loops_and_threads_loses_nothing_accepted(led):
    """Two event loops (in their own threads) and two plain threads submit until the
    committer closes under them: every op it accepted is committed, exactly once."""
    _setup(led)
    committer = Committer(led, batch_ops_max=64)
    accepted = []  # one entry per op the committer took (its future, or its record)
    lock = threading.Lock()
    started = threading.Barrier(5)

    async def terminal(source):
        futures = []
        for seq in range(1, 10_000):
            try:
                futures.append(committer.apply_async(one(source, seq, OpKind.SPEND, 104, 2, 1)))
            except cardledger.LedgerClosedError:
                break
            if seq % 8 == 0:
                await asyncio.sleep(0)
        await asyncio.gather(*futures, return_exceptions=True)
        with lock:
            # An op still waiting for room (a full queue: the pure engine is slow) when
            # the committer closed was never accepted: its future says LedgerClosedError.
            accepted.extend(f for f in futures if not isinstance(f.exception(), cardledger.LedgerClosedError))

    def loop_thread(first_source):
        async def main():
            started.wait()
            return await asyncio.gather(*(terminal(first_source + k) for k in range(20)))

        asyncio.run(main())

    def plain_thread(source):
        started.wait()
        for seq in range(1, 10_000):
            try:
                f = committer.submit(one(source, seq, OpKind.SPEND, 104, 2, 1))
            except cardledger.LedgerClosedError:
                break
            with lock:
                accepted.append(f)

    workers = [threading.Thread(target=loop_thread, args=(s,)) for s in (1000, 2000)]
    workers += [threading.Thread(target=plain_thread, args=(s,)) for s in (3000, 4000)]
    for w in workers:
        w.start()
    started.wait()
    threading.Event().wait(0.3)
    committer.close(timeout=60)
    for w in workers:
        w.join(60)
    assert not any(w.is_alive() for w in workers)
    assert accepted
    assert all(int(f.result()["code"]) == Result.OK for f in accepted)  # every accepted op committed
    assert led.balance(104) == 100_000 - len(accepted)  # and nothing else moved money
    assert led.verify().ok
