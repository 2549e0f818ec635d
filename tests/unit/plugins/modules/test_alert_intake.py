# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""labops.itsm.alert_intake over the OTOBO simulator and a temporary SQLite intake spool.

The module runs as the action plugin runs it (``run_main_in_process`` with a ControllerModule); the requests are
computed with module_utils/_alert_enrich.py as the action plugin does.
"""

import copy
import time

import pytest

from ansible_collections.labops.itsm.plugins.module_utils import _alert_enrich as enrich
from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._otobo_ims import FIELD_MAP
from ansible_collections.labops.itsm.plugins.module_utils._spool import RetryPolicy, open_spool
from ansible_collections.labops.itsm.plugins.modules import alert_intake
from ansible_collections.labops.itsm.plugins.plugin_utils._controller_module import run_main_in_process
from simulators.harness import start_in_thread

PASSWORD = "s3cret"
CONFIG = {"dynamic_fields": [{"name": name, "type": "Text"} for name in sorted(FIELD_MAP.values())]}


@pytest.fixture(scope="module")
def sim():
    server = start_in_thread("otobo", CONFIG)
    yield server
    server.stop()


@pytest.fixture
def env(sim, tmp_path, monkeypatch):
    sim.reset()
    monkeypatch.setenv("OTOBO_USERNAME", "alertbot")
    monkeypatch.setenv("OTOBO_PASSWORD", PASSWORD)
    settings = {"itsm_platform": "otobo", "itsm_team_queues": {"platform": "Platform"}, "itsm_default_queue": "Raw",
                "itsm_severity_urgency": {"critical": "high", "warning": "medium", "info": "low"}, "itsm_min_severity": "low",
                "itsm_platform_options": {"otobo": {"url": sim.url, "customer_user": "monitoring",
                                                    "ticket_types": {"incident": "", "problem": "", "change_request": ""},
                                                    "session_cache": str(tmp_path / "sessions")}}}
    return {"sim": sim, "settings": settings, "ledger": str(tmp_path / "audit.sqlite3"), "spool": str(tmp_path / "spool.sqlite3")}


def alert_event(status, fingerprint, name="erp-db-02", severity="critical", ends_at=None):
    alert = {"status": status, "fingerprint": fingerprint, "startsAt": "2026-11-30T08:00:00Z",
             "labels": {"alertname": "PveGuestDown", "name": name, "severity": severity, "team": "platform"},
             "annotations": {"summary": f"Proxmox guest {name} is down"}}
    if ends_at:
        alert["endsAt"] = ends_at
    key = enrich.correlation_key(fingerprint, alert["startsAt"])
    return {"alert": alert, "group": {}, "correlation_key": key, "meta": {"uuid": f"uuid-{fingerprint}-{status}"}}


def requests_for(env, pairs):
    """What the action plugin computes: (entry id, event) -> request."""
    out = []
    for index, (entry, event) in enumerate(pairs):
        try:
            request = enrich.request_for(event, env["settings"], {})
        except Exception as exc:  # noqa: BLE001
            request = {"error": str(exc)}
        out.append(dict(request, entry=entry, index=index))
    return out


def run_events(env, events, check_mode=False, **extra):
    args = dict(events=events, requests=requests_for(env, [(None, event) for event in events]), ledger_path=env["ledger"], **extra)
    return run_main_in_process("alert_intake", copy.deepcopy(args), check_mode, False)


def claim(env, events, accepted_at=None):
    with open_spool("sqlite", env["spool"]) as spool:
        spool.accept(events, now=accepted_at)
        batch_id, entries = spool.claim(50, RetryPolicy(), now=time.time())
    return {"id": batch_id, "count": len(entries), "entries": [entry.id for entry in entries],
            "spool": {"backend": "sqlite", "path": env["spool"]}}, entries


def run_batch(env, batch, entries, check_mode=False, **extra):
    args = dict(batch=batch, requests=requests_for(env, [(entry.id, entry.event) for entry in entries]), ledger_path=env["ledger"], **extra)
    return run_main_in_process("alert_intake", copy.deepcopy(args), check_mode, False)


def spool_entries(env):
    with open_spool("sqlite", env["spool"]) as spool:
        return {entry.id: entry for entry in spool.list()}


def tickets(env):
    return env["sim"].state()["tickets"]


def test_events_open_repeat_and_resolve(env):
    firing = alert_event("firing", "a1b2c3d4e5f60718")
    opened = run_events(env, [firing])
    assert not opened.get("failed"), opened
    assert opened["changed"] and opened["counts"]["created"] == 1
    outcome = opened["results"][0]
    assert outcome["message"].startswith("Opened incident ") and "(open, S2, queue Platform) for PveGuestDown erp-db-02" in outcome["message"]
    ticket = next(t for t in tickets(env) if t["TicketNumber"] == outcome["ticket"])
    assert ticket["Title"].startswith("[S2] PveGuestDown erp-db-02: Proxmox guest erp-db-02 is down") and ticket["Queue"] == "Platform"
    assert any(a["Subject"] == "FIRING PveGuestDown erp-db-02" and "Fingerprint: a1b2c3d4e5f60718" in a["Body"] for a in ticket["Article"])

    again = run_events(env, [firing])
    assert not again["changed"] and again["results"][0]["action"] == "exists"
    assert again["results"][0]["message"].startswith("Already recorded: incident " + outcome["ticket"])

    resolved = run_events(env, [alert_event("resolved", "a1b2c3d4e5f60718", ends_at="2026-11-30T08:05:00Z")])
    assert resolved["changed"] and resolved["results"][0]["action"] == "resolved"
    assert "(update + resolve, otobo state pending auto close+) for PveGuestDown" in resolved["results"][0]["message"]
    twice = run_events(env, [alert_event("resolved", "a1b2c3d4e5f60718")])
    assert not twice.get("failed") and twice["results"][0]["action"] == "already_resolved"
    assert twice["results"][0]["message"].startswith("WARNING: PveGuestDown resolved, but there is nothing to resolve")
    with ledger_from_params({"ledger_path": env["ledger"]}) as ledger:
        assert [r["action"] for r in ledger.query(ref_id=outcome["ticket"])] == ["create", "update", "resolve"]
        assert {r["role"] for r in ledger.query(ref_id=outcome["ticket"])} == {"automation"}
    assert PASSWORD not in str([opened, again, resolved, twice])


def test_not_found_and_below_threshold_are_outcomes(env):
    env["settings"]["itsm_min_severity"] = "medium"
    before = len(tickets(env))
    result = run_events(env, [alert_event("resolved", "0000000000000001"), alert_event("firing", "0000000000000002", severity="info")])
    assert not result.get("failed"), result
    assert [o["action"] for o in result["results"]] == ["not_found", "below_threshold"]
    assert result["results"][1]["message"].startswith("Below the intake threshold medium, no incident:")
    assert not result["changed"] and len(tickets(env)) == before


def test_a_batch_shares_one_session_and_records_outcomes(env):
    events = [alert_event("firing", f"00000000000000{i:02x}", name=f"vm{i}") for i in range(3)]
    batch, entries = claim(env, events)
    env["sim"].clear_requests()
    result = run_batch(env, batch, entries)
    assert not result.get("failed"), result
    assert result["counts"]["created"] == 3 and result["changed"] and result["batch"] == batch["id"]
    operations = [entry["operation"] for entry in env["sim"].requests()]
    assert operations.count("SessionCreate") <= 1 and len(operations) <= 1 + 3 * 5, operations
    stored = spool_entries(env)
    assert {stored[e.id].state for e in entries} == {"done"}
    assert {stored[e.id].result["action"] for e in entries} == {"created"}
    assert all(stored[e.id].result["platform"] == "otobo" and stored[e.id].result["ticket"] for e in entries)


def test_check_mode_writes_nothing(env):
    batch, entries = claim(env, [alert_event("firing", "00000000000000aa")])
    before = len(tickets(env))
    result = run_batch(env, batch, entries, check_mode=True)
    assert result["changed"] and result["results"][0]["message"].startswith("Would open incident (new)")
    assert len(tickets(env)) == before and spool_entries(env)[entries[0].id].state == "running"


def test_delayed_entries_carry_the_note(env):
    old = time.time() - 600
    batch, entries = claim(env, [alert_event("firing", "00000000000000bb")], accepted_at=old)
    result = run_batch(env, batch, entries)
    assert result["results"][0]["delayed"]
    ticket = next(t for t in tickets(env) if t["TicketNumber"] == result["results"][0]["ticket"])
    assert any("Delayed: accepted by the intake at" in a["Body"] and "after 0 failed attempt(s)" in a["Body"] for a in ticket["Article"])


def test_unreachable_platform_fails_the_rest_fast(env):
    env["settings"]["itsm_platform_options"]["otobo"]["password"] = "wrong-" + PASSWORD
    batch, entries = claim(env, [alert_event("firing", f"00000000000001{i:02x}", name=f"vm{i}") for i in range(4)])
    env["sim"].clear_requests()
    result = run_batch(env, batch, entries)
    assert result["failed"] and result["msg"].startswith("4 of 4 alert event(s) failed; first: ")
    assert len(env["sim"].requests()) <= 3  # one attempt (the login), not one per event
    assert [o["status"] for o in result["results"]] == ["failed"] * 4
    assert all("not tried" in o["error"] for o in result["results"][1:])
    stored = spool_entries(env)
    assert {stored[e.id].state for e in entries} == {"failed"}
    assert PASSWORD not in str(result) and all(PASSWORD not in (stored[e.id].last_error or "") for e in entries)


def test_a_bad_event_does_not_stop_the_batch_and_lost_entries_are_skipped(env):
    good = alert_event("firing", "00000000000002aa")
    batch, entries = claim(env, [good])
    requests = requests_for(env, [(entries[0].id, entries[0].event)])
    requests.append({"error": "the alert event cannot be handled: bogus", "entry": 999, "index": 1})
    args = dict(batch=dict(batch, entries=batch["entries"] + [999]), requests=requests, ledger_path=env["ledger"])
    result = run_main_in_process("alert_intake", args, False, False)
    assert not result.get("failed"), result
    assert [o["status"] for o in result["results"]] == ["done", "skipped"]
    assert result["counts"]["skipped"] == 1


def test_an_unexpected_error_releases_the_batch(env, monkeypatch):
    batch, entries = claim(env, [alert_event("firing", "00000000000003aa"), alert_event("firing", "00000000000003bb", name="x")])

    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(alert_intake, "run_sop", boom)
    result = run_batch(env, batch, entries)
    assert result["failed"] and "released: 2 entries" in result["msg"] and result["released"] == 2
    assert {entry.state for entry in spool_entries(env).values()} == {"failed"}


def test_release_mode(env):
    batch, entries = claim(env, [alert_event("firing", "00000000000004aa")])
    result = run_main_in_process("alert_intake", {"batch": batch, "release": True, "error": "template error"}, False, False)
    assert result["changed"] and result["released"] == 1
    stored = spool_entries(env)[entries[0].id]
    assert (stored.state, stored.last_error) == ("failed", "template error")
    again = run_main_in_process("alert_intake", {"batch": batch, "release": True}, False, False)
    assert not again["changed"] and again["released"] == 0
