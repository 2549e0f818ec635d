# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""intake_spool: list, stats, replay and purge over a real temporary SQLite spool; main() through the controller module."""

import json

import pytest

from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._spool import RetryPolicy, open_spool
from ansible_collections.labops.itsm.plugins.modules import intake_spool
from ansible_collections.labops.itsm.plugins.plugin_utils._controller_module import run_main_in_process

T0 = 1_780_000_000.0
POLICY = RetryPolicy(initial_delay=10, max_delay=60, retry_for=100, run_timeout=50)


def event(n, status="firing", alertname="DiskFull"):
    key = "%024x" % (0xabc000 + n)
    return {"correlation_key": key, "meta": {"uuid": "uuid-%d-%s" % (n, status)},
            "alert": {"status": status, "fingerprint": "%016x" % n, "startsAt": "2026-12-03T09:00:00Z", "labels": {"alertname": alertname}}}


def params_for(path, **overrides):
    params = {name: spec.get("default") for name, spec in intake_spool.argument_spec().items()}
    params.update(spool_path=str(path))
    params.update(overrides)
    return params


@pytest.fixture
def path(tmp_path):
    return tmp_path / "state" / "spool.sqlite3"


@pytest.fixture
def spool(path):
    with open_spool("sqlite", str(path)) as opened:
        yield opened


def make_dead(spool, *numbers):
    """Entries handled and failed until the retry period is over: dead letters."""
    spool.accept([event(n) for n in numbers], now=T0)
    batch, entries = spool.claim(100, POLICY, now=T0)
    for entry in entries:
        spool.fail(entry.id, batch, "otobo: connection refused", now=T0 + 1)
    counts = spool.settle(POLICY, now=T0 + 200)
    assert counts["dead"] == len(numbers)
    return [entry.id for entry in entries]


def make_done(spool, n, at):
    spool.accept([event(n)], now=at)
    batch, [entry] = spool.claim(1, POLICY, now=at)
    assert spool.complete(entry.id, batch, {"action": "created", "ticket": "2026120310000011", "platform": "otobo"}, now=at)
    return entry.id


def run(path, check_mode=False, diff=False, now=T0 + 300, **overrides):
    params = params_for(path, **overrides)
    with open_spool("sqlite", params["spool_path"]) as spool:
        return intake_spool.run(params, spool, check_mode=check_mode, diff=diff, now=now)


def test_reads_of_a_missing_spool_are_empty_and_create_nothing(path):
    assert run(path) == {"changed": False, "spool": {"backend": "sqlite", "path": str(path)}, "entries": []}
    assert run(path, action="stats")["stats"]["entries"] == dict.fromkeys(("queued", "running", "done", "failed", "dead"), 0)
    assert run(path, action="replay")["replayed"] == [] and run(path, action="purge")["purged"] == 0
    assert not path.parent.exists()


def test_list_defaults_to_dead_letters_without_event_bodies(spool, path):
    ids = make_dead(spool, 1, 2)
    spool.accept([event(3)], now=T0 + 250)
    result = run(path)
    assert result["changed"] is False
    assert [entry["id"] for entry in result["entries"]] == ids
    first = result["entries"][0]
    assert first == {"id": ids[0], "correlation_key": event(1)["correlation_key"], "status": "firing", "alertname": "DiskFull", "state": "dead",
                     "attempts": 1, "repeats": 0, "accepted_at": "2026-05-28T20:26:40Z", "next_attempt": None, "handled_at": None,
                     "last_error": "otobo: connection refused", "result": None, "origin": "alertmanager"}
    assert "event" not in first and "batch" not in first


def test_list_filters(spool, path):
    ids = make_dead(spool, 1, 2, 3)
    spool.accept([event(4)], now=T0 + 250)
    assert [e["id"] for e in run(path, limit=2)["entries"]] == ids[:2]
    assert [e["id"] for e in run(path, ids=[ids[2], 999])["entries"]] == [ids[2]]
    assert [e["id"] for e in run(path, correlation_key=event(2)["correlation_key"])["entries"]] == [ids[1]]
    everything = run(path, states=[])["entries"]
    assert [e["state"] for e in everything] == ["dead", "dead", "dead", "queued"]
    assert everything[-1]["next_attempt"] == "2026-05-28T20:30:50Z"
    assert [e["state"] for e in run(path, states=["queued"])["entries"]] == ["queued"]
    with pytest.raises(ValidationError):
        run(path, limit=0)


def test_stats_counts_states(spool, path):
    make_dead(spool, 1)
    make_done(spool, 2, T0 + 210)
    spool.accept([event(3)], now=T0 + 250)
    spool.accept([event(3)], now=T0 + 260)
    result = run(path, action="stats", now=T0 + 300)
    assert result["changed"] is False
    assert result["stats"] == {"entries": {"queued": 1, "running": 0, "done": 1, "failed": 0, "dead": 1}, "absorbed_repeats": 1,
                               "oldest_unhandled_age": 50.0}


def test_replay_check_mode_reports_and_changes_nothing(spool, path):
    ids = make_dead(spool, 1, 2)
    result = run(path, action="replay", check_mode=True, diff=True)
    assert result["changed"] is True and result["replayed"] == ids
    assert [entry["state"] for entry in result["entries"]] == ["dead", "dead"]
    assert result["diff"]["before"] == {str(i): {"state": "dead", "attempts": 1} for i in ids}
    assert result["diff"]["after"] == {str(i): {"state": "queued", "attempts": 0} for i in ids}
    assert [entry.state for entry in spool.get(ids)] == ["dead", "dead"]


def test_replay_all_queues_every_dead_letter_and_is_then_unchanged(spool, path):
    ids = make_dead(spool, 1, 2)
    result = run(path, action="replay", diff=True)
    assert result["changed"] is True and result["replayed"] == ids
    entries = spool.get(ids)
    assert [(e.state, e.attempts, float(e.next_attempt)) for e in entries] == [("queued", 0, T0 + 300)] * 2
    assert entries[0].origin == "alertmanager"
    # the daemon's dispatcher picks them up: they are due
    claimed = spool.claim(10, POLICY, now=T0 + 300)[1]
    assert [e.id for e in claimed] == ids
    again = run(path, action="replay", check_mode=True)
    assert again["changed"] is False and again["replayed"] == [] and again["entries"] == []


def test_replay_by_ids_and_key_only_touches_those(spool, path):
    ids = make_dead(spool, 1, 2, 3)
    assert run(path, action="replay", ids=[ids[0]])["replayed"] == [ids[0]]
    assert run(path, action="replay", correlation_key=event(3)["correlation_key"])["replayed"] == [ids[2]]
    assert [e.state for e in spool.get(ids)] == ["queued", "dead", "queued"]
    # an id that is not a dead letter (now queued) is not replayed
    assert run(path, action="replay", ids=[ids[0]])["changed"] is False


def test_replay_refuses_states_that_cannot_be_replayed(spool, path):
    with pytest.raises(ValidationError):
        run(path, action="replay", states=["queued"])


def test_purge_deletes_only_old_handled_entries(spool, path):
    old = make_done(spool, 1, T0)
    new = make_done(spool, 2, T0 + 250)
    make_dead(spool, 3)
    predicted = run(path, action="purge", older_than=100, check_mode=True, diff=True)
    assert predicted["changed"] is True and predicted["purged"] == 1
    assert list(predicted["diff"]["before"]) == [str(old)]
    assert len(spool.list(states=["done"])) == 2
    result = run(path, action="purge", older_than=100)
    assert result == {"changed": True, "purged": 1, "spool": {"backend": "sqlite", "path": str(path)}}
    assert [e.id for e in spool.list(states=["done"])] == [new]
    assert run(path, action="purge", older_than=100)["changed"] is False
    assert len(spool.list(states=["dead"])) == 1


def test_main_masks_the_dsn_and_reports_spool_errors(path):
    result = run_main_in_process("intake_spool", {"action": "stats", "spool_backend": "postgresql",
                                                  "spool_dsn": "host=127.0.0.1 port=1 password=Sup3rS3cret connect_timeout=1"},
                                 check_mode=False, diff=False)
    assert result["failed"] is True
    assert "Sup3rS3cret" not in json.dumps(result)


def test_main_lists_through_the_controller_module(spool, path):
    make_dead(spool, 1)
    result = run_main_in_process("intake_spool", {"spool_path": str(path)}, check_mode=False, diff=False)
    assert result["changed"] is False and [e["state"] for e in result["entries"]] == ["dead"]
    replay = run_main_in_process("intake_spool", {"spool_path": str(path), "action": "replay"}, check_mode=True, diff=True)
    assert replay["changed"] is True and replay["diff"]["after"]
