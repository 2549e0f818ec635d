# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The intake spool's whole life cycle on both backends: SQLite (a temporary file) and PostgreSQL (tests/pg.py's
throwaway server; skipped with the reason when PostgreSQL or psycopg is missing).

accept (new / absorbed / revived / force), claim (oldest first, one per episode, never an episode with a running or
failed entry), complete / fail / release (only while the batch owns the entry), settle (back-off, run timeout,
dead letters), replay, recover, purge, stats.
"""

from __future__ import annotations

import pytest

from ansible_collections.labops.itsm.plugins.module_utils._spool import RetryPolicy, SpoolError, open_spool
from ansible_collections.labops.itsm.tests.pg import postgresql_dsn, postgresql_server  # noqa: F401 pylint: disable=unused-import

T0 = 1_780_000_000.0
POLICY = RetryPolicy(initial_delay=10, max_delay=40, retry_for=100, run_timeout=50)


def event(n: int, status: str = "firing", **alert: object) -> dict:
    return {"correlation_key": "%024x" % n, "meta": {"uuid": "u-%d-%s" % (n, status)},
            "alert": dict({"status": status, "fingerprint": "%016x" % n, "labels": {"alertname": "A%d" % n}}, **alert)}


@pytest.fixture(params=["sqlite", "postgresql"])
def spool(request, tmp_path):
    if request.param == "sqlite":
        opened = open_spool("sqlite", str(tmp_path / "spool" / "intake.sqlite3"))
    else:
        opened = open_spool("postgresql", dsn=request.getfixturevalue("postgresql_dsn"))
    yield opened
    opened.close()


def states(spool) -> dict:
    return {(e.correlation_key[-2:], e.status): e.state for e in spool.list(limit=1000)}


def test_accept_new_absorbed_revived_and_forced(spool):
    assert spool.accept([event(1), event(2)], now=T0) == {"new": 2, "absorbed": 0, "revived": 0}
    assert spool.accept([event(1), event(1, "resolved")], now=T0 + 1) == {"new": 1, "absorbed": 1, "revived": 0}
    first = spool.list(correlation_key="%024x" % 1, limit=10)
    assert [(e.status, e.repeats, e.state, e.origin) for e in first] == [("firing", 1, "queued", "alertmanager"), ("resolved", 0, "queued", "alertmanager")]
    assert first[0].event == event(1) and first[0].event_uuid == "u-1-firing" and first[0].as_dict()["alertname"] == "A1"
    # a done entry absorbs repeats; force queues it again
    batch, claimed = spool.claim(10, POLICY, now=T0 + 2)
    done = next(e for e in claimed if e.correlation_key.endswith("02"))
    assert spool.complete(done.id, batch, {"action": "created"}, now=T0 + 3)
    assert spool.accept([event(2)], now=T0 + 4) == {"new": 0, "absorbed": 1, "revived": 0}
    assert spool.accept([event(2)], origin="manual", force=True, now=T0 + 5) == {"new": 0, "absorbed": 0, "revived": 1}
    [again] = spool.get([done.id])
    assert (again.state, again.origin, float(again.accepted_at)) == ("queued", "manual", T0 + 5)


def test_accept_is_all_or_nothing(spool):
    with pytest.raises(ValueError):
        spool.accept([event(1), {"correlation_key": "x"}], now=T0)
    with pytest.raises(ValueError):
        spool.accept([event(1)], origin="elsewhere")
    assert spool.list(limit=10) == []


def test_claim_order_one_per_episode_and_resolve_waits_for_open(spool):
    spool.accept([event(1), event(2)], now=T0)
    spool.accept([event(1, "resolved"), event(3)], now=T0 + 1)
    batch, claimed = spool.claim(10, POLICY, now=T0 + 2)
    assert [(e.correlation_key[-2:], e.status) for e in claimed] == [("01", "firing"), ("02", "firing"), ("03", "firing")]
    assert all(e.state == "running" and e.batch == batch for e in claimed)
    assert spool.running_of(batch) == 3 and [e.id for e in spool.entries_of(batch)] == [e.id for e in claimed]
    # the resolve of 01 waits while its firing runs
    assert spool.claim(10, POLICY, now=T0 + 3) is None
    assert spool.fail(claimed[0].id, batch, "otobo down", now=T0 + 4)
    assert spool.claim(10, POLICY, now=T0 + 5) is None  # ... and while it is failed
    assert spool.complete(claimed[1].id, batch, {"action": "created", "ticket": "1"}, now=T0 + 5)
    assert spool.release(batch, "run ended", now=T0 + 6) == 1  # 03
    assert states(spool) == {("01", "firing"): "failed", ("01", "resolved"): "queued", ("02", "firing"): "done", ("03", "firing"): "failed"}
    # not owned any more: no outcome is recorded
    assert spool.complete(claimed[2].id, batch, {"action": "created"}, now=T0 + 7) is False
    assert spool.fail(claimed[2].id, batch, "late", now=T0 + 7) is False
    assert spool.claim(1, POLICY, now=T0 + 8) is None


def test_limit_and_pending(spool):
    spool.accept([event(n) for n in range(1, 6)], now=T0)
    assert spool.pending_waiting() == (5, T0)
    claimed = spool.claim(2, POLICY, now=T0)[1]
    assert [e.correlation_key[-2:] for e in claimed] == ["01", "02"]
    assert spool.pending_waiting() == (3, T0)


def test_settle_backs_off_then_makes_dead_letters(spool):
    spool.accept([event(1)], now=T0)
    for attempt, delay in ((1, 10), (2, 20), (3, 40), (4, 40)):
        now = T0 + attempt * 5  # well inside retry_for
        batch, [entry] = spool.claim(1, POLICY, now=max(now, float(spool.list(limit=1)[0].next_attempt)))
        spool.fail(entry.id, batch, "attempt %d failed" % attempt, now=now)
        assert spool.settle(POLICY, now=now) == {"requeued": 1, "dead": 0, "timed_out": 0}
        [queued] = spool.list(limit=1)
        assert (queued.state, queued.attempts, float(queued.next_attempt)) == ("queued", attempt, now + delay)
        assert queued.last_error == "attempt %d failed" % attempt
    batch, [entry] = spool.claim(1, POLICY, now=T0 + 1000)
    spool.fail(entry.id, batch, "still down", now=T0 + 1000)
    assert spool.settle(POLICY, now=T0 + 1000) == {"requeued": 0, "dead": 1, "timed_out": 0}
    [dead] = spool.list(states=["dead"])
    assert dead.attempts == 5 and dead.batch is None and dead.last_error == "still down"
    assert spool.stats(now=T0 + 1000)["entries"]["dead"] == 1


def test_settle_times_out_lost_runs(spool):
    spool.accept([event(1)], now=T0)
    batch, [entry] = spool.claim(1, POLICY, now=T0)
    assert spool.settle(POLICY, now=T0 + 49) == {"requeued": 0, "dead": 0, "timed_out": 0}
    assert spool.settle(POLICY, now=T0 + 51) == {"requeued": 1, "dead": 0, "timed_out": 1}
    [queued] = spool.list(limit=1)
    assert queued.state == "queued" and "run_timeout=50s" in queued.last_error
    assert spool.complete(entry.id, batch, {"action": "created"}, now=T0 + 52) is False  # the lost run's late outcome


def test_replay_and_revive_of_dead_letters(spool):
    spool.accept([event(1), event(2), event(3)], now=T0)
    batch, claimed = spool.claim(10, POLICY, now=T0)
    for entry in claimed:
        spool.fail(entry.id, batch, "down", now=T0)
    assert spool.settle(POLICY, now=T0 + 200)["dead"] == 3
    ids = [e.id for e in claimed]
    assert spool.replay(ids=[ids[0]], now=T0 + 300) == [ids[0]]
    assert spool.replay(ids=[], now=T0 + 300) == []
    assert spool.replay(ids=[ids[0]], now=T0 + 300) == []  # queued now, not dead
    # a repeat of a dead letter revives it
    assert spool.accept([event(2)], now=T0 + 301) == {"new": 0, "absorbed": 0, "revived": 1}
    assert sorted(spool.replay(now=T0 + 302)) == [ids[2]]
    replayed = spool.get(ids)
    assert [(e.state, e.attempts) for e in replayed] == [("queued", 0)] * 3
    assert float(replayed[0].next_attempt) == T0 + 300 and replayed[0].origin == "alertmanager"
    with pytest.raises(ValueError):
        spool.replay(states=("queued",))


def test_a_replayed_dead_letter_gets_a_new_retry_period(spool):
    """After a replay the retry policy starts again: one more transient failure must not make it dead at once."""
    spool.accept([event(1)], now=T0)
    batch, [entry] = spool.claim(1, POLICY, now=T0)
    spool.fail(entry.id, batch, "down", now=T0)
    spool.settle(POLICY, now=T0 + 200)
    spool.replay(now=T0 + 10_000)
    batch, [entry] = spool.claim(1, POLICY, now=T0 + 10_000)
    spool.fail(entry.id, batch, "a blip", now=T0 + 10_001)
    assert spool.settle(POLICY, now=T0 + 10_001) == {"requeued": 1, "dead": 0, "timed_out": 0}


def test_recover_requeues_what_a_stopped_daemon_left_running(spool):
    spool.accept([event(1), event(2)], now=T0)
    batch, claimed = spool.claim(1, POLICY, now=T0)
    assert spool.recover(now=T0 + 5) == 1
    [entry] = spool.get([claimed[0].id])
    assert (entry.state, entry.batch, entry.attempts, float(entry.next_attempt)) == ("queued", None, 0, T0 + 5)
    assert entry.last_error.startswith("interrupted")
    assert spool.recover(now=T0 + 6) == 0
    assert spool.complete(entry.id, batch, {}, now=T0 + 7) is False


def test_purge_and_stats(spool):
    spool.accept([event(1), event(2), event(3)], now=T0)
    spool.accept([event(3)], now=T0 + 1)
    batch, claimed = spool.claim(2, POLICY, now=T0)
    spool.complete(claimed[0].id, batch, {"action": "created"}, now=T0 + 10)
    spool.complete(claimed[1].id, batch, {"action": "exists"}, now=T0 + 100)
    assert spool.stats(now=T0 + 110) == {"entries": {"queued": 1, "running": 0, "done": 2, "failed": 0, "dead": 0}, "absorbed_repeats": 1,
                                         "oldest_unhandled_age": 110.0}
    assert spool.purge(50, now=T0 + 110) == 1
    assert [e.result for e in spool.list(states=["done"])] == [{"action": "exists"}]
    # a purged episode is handled again when it comes back
    assert spool.accept([event(1)], now=T0 + 120) == {"new": 1, "absorbed": 0, "revived": 0}


def test_list_filters(spool):
    spool.accept([event(1), event(2), event(1, "resolved")], now=T0)
    assert len(spool.list(limit=2)) == 2
    assert [e.status for e in spool.list(correlation_key="%024x" % 1)] == ["firing", "resolved"]
    with pytest.raises(ValueError):
        spool.list(states=["bogus"])


def test_a_second_dispatcher_is_refused(spool, tmp_path, request):
    spool.lock_dispatcher()
    other = open_spool("sqlite", spool.path) if spool.name == "sqlite" else open_spool("postgresql", dsn=spool.dsn)
    try:
        with pytest.raises(SpoolError):
            other.lock_dispatcher()
    finally:
        other.close()


def test_a_database_error_does_not_release_the_dispatcher_lock(spool):
    """A failed operation drops the spool's connection; the running dispatcher must keep its lock (no second daemon)."""
    spool.lock_dispatcher()
    with pytest.raises(SpoolError), spool._guard("read"):  # what any statement failing on the database does
        spool._execute("SELECT * FROM no_such_table")
    other = open_spool("sqlite", spool.path) if spool.name == "sqlite" else open_spool("postgresql", dsn=spool.dsn)
    try:
        with pytest.raises(SpoolError):
            other.lock_dispatcher()
    finally:
        other.close()
    assert spool.stats()["entries"]["queued"] == 0  # and the spool reconnects


def test_a_spool_of_another_schema_version_stays_refused(spool):
    spool.ensure_ready()
    with spool._txn("test"):
        spool._execute("UPDATE intake_meta SET value = '99' WHERE key = 'schema_version'")
    spool.close()
    for dummy in range(2):
        with pytest.raises(SpoolError, match="schema version 99"):
            spool.list()
