# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""alert_reconcile over real HTTP: the OTOBO simulator (lab profile, incidents opened by SOP 16), a fake AlertManager
serving /api/v2/alerts as AlertManager's v2 API does (and, when the Debian binary is there, a real AlertManager), and
a real temporary SQLite spool."""

from __future__ import annotations

import datetime
import http.server
import json
import shutil
import threading
import uuid
from typing import Any

import pytest

from ansible_collections.labops.itsm.plugins.module_utils import _platforms as platforms
from ansible_collections.labops.itsm.plugins.module_utils._correlation import (
    alert_ticket_key,
    correlation_key,
    group_ticket_key,
    source_event_uuid,
)
from ansible_collections.labops.itsm.plugins.module_utils._errors import AuthError
from ansible_collections.labops.itsm.plugins.module_utils._http import RetryPolicy
from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._reconcile import AlertManagerClient
from ansible_collections.labops.itsm.plugins.module_utils._sop import run_sop
from ansible_collections.labops.itsm.plugins.module_utils._spool import RetryPolicy as SpoolPolicy
from ansible_collections.labops.itsm.plugins.module_utils._spool import open_spool
from ansible_collections.labops.itsm.plugins.modules import alert_reconcile
from ansible_collections.labops.itsm.plugins.plugin_utils._controller_module import run_main_in_process
from simulators.harness import start_in_thread

NOW = datetime.datetime(2026, 12, 3, 12, 0, 0, tzinfo=datetime.UTC)
LONG_AGO = "2026-12-03T10:00:00.000Z"  # the v2 API's millisecond spelling
RECENT = "2026-12-03T11:59:00.000Z"
TOKEN = "t0ken-" + uuid.uuid4().hex


def iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def am_alert(fingerprint: str, alertname: str, starts_at: str = LONG_AGO, state: str = "active", silenced: tuple = (), inhibited: tuple = (),
             receiver: str = "eda-itsm") -> dict:
    """A gettableAlert as GET /api/v2/alerts returns it."""
    return {"annotations": {"summary": alertname + " on node1"}, "endsAt": iso(NOW + datetime.timedelta(minutes=4)), "fingerprint": fingerprint,
            "receivers": [{"name": receiver}], "startsAt": starts_at,
            "status": {"inhibitedBy": list(inhibited), "silencedBy": list(silenced), "mutedBy": [], "state": state},
            "updatedAt": iso(NOW), "generatorURL": "http://prometheus:9090/graph", "labels": {"alertname": alertname, "node": "node1"}}


class FakeAlertManager:
    """GET /api/v2/alerts and /api/v2/status; a bearer token when ``token`` is set; records the query strings."""

    def __init__(self, token: str | None = None) -> None:
        self.alerts: list[dict] = []
        self.uptime = "2026-12-01T00:00:00.000Z"
        self.token = token
        self.queries: list[str] = []
        self.fail_next = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path, query = (self.path.split("?", 1) + [""])[:2]
                if owner.token and self.headers.get("Authorization") != "Bearer " + owner.token:
                    return self._send(401, {"error": "unauthorized"})
                if owner.fail_next:
                    owner.fail_next -= 1
                    return self._send(503, {"error": "busy"})
                if path == "/api/v2/alerts":
                    owner.queries.append(query)
                    return self._send(200, owner.alerts)
                if path == "/api/v2/status":
                    return self._send(200, {"uptime": owner.uptime, "versionInfo": {"version": "0.25.0"},
                                            "config": {"original": "receivers: ... credentials: SECRET"}})
                return self._send(404, {"error": "not found"})

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def sim():
    server = start_in_thread("otobo", lab=True)
    yield server
    server.stop()


@pytest.fixture
def am():
    fake = FakeAlertManager(token=TOKEN)
    yield fake
    fake.stop()


OTOBO = {"username": "alertbot", "password": "s3cret", "path_prefix": "/otobo", "customer_user": "monitoring"}


class Env:
    def __init__(self, sim, am, tmp_path):
        sim.reset()
        self.sim, self.am = sim, am
        self.options = dict(OTOBO, url=sim.url)
        self.platform = platforms.build_platform("otobo", self.options, queue="Infrastructure")
        self.ledger = ledger_from_params({"ledger_path": str(tmp_path / "audit.sqlite3")})
        self.spool_path = str(tmp_path / "spool.sqlite3")
        self.spool = open_spool("sqlite", self.spool_path)

    def open_incident(self, fingerprint: str, alertname: str, starts_at: str = LONG_AGO, opened: datetime.datetime | None = None,
                      key: str | None = None) -> dict:
        key = key or correlation_key(fingerprint, starts_at)
        event = {"event_id": str(uuid.uuid4()), "service": "node1", "source": "automated_alert", "alert_type": alertname, "severity": "high",
                 "correlation_key": key, "title": "[S2] %s node1: %s on node1" % (alertname, alertname)}
        result = run_sop("monitoring_intake", {"event": event}, actor="automation", role="automation", platform=self.platform, ledger=self.ledger,
                         now=opened or NOW - datetime.timedelta(hours=1))
        return result["record"]

    def params(self, **overrides: Any) -> dict:
        params = {name: spec.get("default") for name, spec in alert_reconcile.argument_spec().items()}
        params.update(alertmanager_url=self.am.url, alertmanager_token=TOKEN, platform_options=self.options, queue="Infrastructure",
                      spool_path=self.spool_path)
        params.update(overrides)
        return params

    def run(self, check_mode: bool = False, diff: bool = False, now: datetime.datetime = NOW, grouping: str = "episode", **overrides: Any) -> dict:
        params = self.params(**overrides)
        client = AlertManagerClient(self.am.url, token=TOKEN, retry=RetryPolicy(base_delay=0.01))
        try:
            return alert_reconcile.run(params, client, [("otobo", self.platform, grouping)], self.spool, check_mode=check_mode, diff=diff,
                                       now=now)
        finally:
            client.close()


@pytest.fixture
def env(sim, am, tmp_path):
    environment = Env(sim, am, tmp_path)
    yield environment
    environment.spool.close()


def source_firing(fingerprint: str, alertname: str, starts_at: str = LONG_AGO) -> dict:
    """A firing event as the event source emits it (webhook spelling of startsAt)."""
    webhook_start = starts_at.replace(".000Z", "Z")
    group = "{}:{alertname=\"%s\"}" % alertname
    return {"alert": {"status": "firing", "fingerprint": fingerprint, "startsAt": webhook_start, "endsAt": "0001-01-01T00:00:00Z",
                      "labels": {"alertname": alertname, "node": "node1"}, "annotations": {}, "generatorURL": ""},
            "group": {"key": group, "status": "firing", "receiver": "eda-itsm"}, "correlation_key": correlation_key(fingerprint, webhook_start),
            "meta": {"uuid": source_event_uuid(group, fingerprint, "firing", webhook_start), "endpoint": "/alertmanager"}}


def test_the_source_event_uuid_is_the_event_source_one():
    source = pytest.importorskip("ansible_collections.labops.itsm.extensions.eda.plugins.event_source.alertmanager")
    assert source.EVENT_UUID_NAMESPACE == uuid.UUID("6270bfbe-3bb0-527b-9499-8037c14236b9")
    start = "2026-03-14T09:26:53.531Z"
    assert source_event_uuid("g", "ee64590b84aacd84", "firing", "2026-03-14T09:26:53.531000Z") == source.event_uuid(
        "g", "ee64590b84aacd84", "firing", source.canonical_timestamp(start))


def test_everything_in_sync_enqueues_nothing(env):
    env.open_incident("00000000000000a1", "HostDown")
    env.spool.accept([source_firing("00000000000000a1", "HostDown")])
    env.am.alerts = [am_alert("00000000000000a1", "HostDown")]
    result = env.run()
    assert result["changed"] is False and result["enqueued"] == []
    assert result["counts"] == {"alerts": 1, "alerts_active": 1, "incidents_open": 1, "resolved": 0, "firing": 0}
    assert result["skipped"] == {"incident_alert_present": 1, "alert_incident_open": 1}
    # every alert state is asked for explicitly
    assert env.am.queries == ["active=true&silenced=true&inhibited=true&unprocessed=true"]


def test_tickets_per_alert_or_group_are_matched_by_fingerprint_and_never_resolved(env):
    """itsm_alert_grouping alert/group: the ticket outlives one episode. Its alert present (a later episode, by fingerprint)
    keeps it open; gone, the ticket is left to the alert path (no episode to resolve); a firing alert with its ticket open
    is not enqueued."""
    env.open_incident("00000000000000c1", "HostDown", key=alert_ticket_key("00000000000000c1"))
    env.open_incident("00000000000000c2", "DiskFull", key=alert_ticket_key("00000000000000c2"))
    env.open_incident("00000000000000c3", "NetDown", key=group_ticket_key("eda-itsm", '{}:{alertname="NetDown"}'))
    env.am.alerts = [am_alert("00000000000000c1", "HostDown", starts_at=iso(NOW - datetime.timedelta(minutes=30)))]  # a later episode
    result = env.run(grouping="alert")
    assert result["enqueued"] == [] and result["changed"] is False
    assert result["skipped"] == {"incident_alert_present": 1, "incident_per_alert": 2, "alert_incident_open": 1}
    # the same incidents on an episode route: the two without their alert are resolved (the old behaviour)
    episode = env.run(check_mode=True)
    assert sorted(e["alertname"] for e in episode["enqueued"]) == ["DiskFull", "NetDown"]


def test_a_lost_resolve_is_enqueued_from_the_spools_firing_event(env):
    record = env.open_incident("00000000000000a1", "HostDown")
    firing = source_firing("00000000000000a1", "HostDown")
    env.spool.accept([firing])
    env.am.alerts = []
    predicted = env.run(check_mode=True, diff=True)
    assert predicted["changed"] is True and predicted["spool_counts"] is None
    assert env.spool.list(states=None) and [e.status for e in env.spool.list(states=None)] == ["firing"]
    result = env.run(diff=True)
    assert result["changed"] is True and result["spool_counts"] == {"new": 1, "absorbed": 0, "revived": 0}
    [enqueued] = result["enqueued"]
    assert enqueued == predicted["enqueued"][0]
    assert enqueued["status"] == "resolved" and enqueued["incident"] == record["id"] and enqueued["from_spool"] is True
    assert enqueued["correlation_key"] == firing["correlation_key"] and enqueued["alertname"] == "HostDown"
    assert result["diff"]["after"] == {firing["correlation_key"] + "|resolved": enqueued["reason"]}
    [entry] = env.spool.list(states=["queued"], correlation_key=firing["correlation_key"])[1:]
    assert entry.origin == "reconciliation" and entry.status == "resolved"
    event = entry.event
    assert event["alert"]["status"] == "resolved" and event["alert"]["endsAt"] == "2026-12-03T12:00:00Z"
    assert event["alert"]["startsAt"] == firing["alert"]["startsAt"] and event["alert"]["labels"] == firing["alert"]["labels"]
    assert event["group"]["status"] == "resolved" and event["group"]["key"] == firing["group"]["key"]
    assert event["meta"]["uuid"] == source_event_uuid(firing["group"]["key"], "00000000000000a1", "resolved", firing["alert"]["startsAt"])
    # the next run finds the resolve in the spool
    again = env.run()
    assert again["changed"] is False and again["skipped"] == {"resolve_in_spool_queued": 1}


def test_a_lost_resolve_without_spool_entry_gets_the_minimal_event(env):
    record = env.open_incident("00000000000000b2", "DiskFull")
    result = env.run()
    [enqueued] = result["enqueued"]
    assert enqueued["from_spool"] is False and enqueued["incident"] == record["id"]
    [entry] = env.spool.list(states=None)
    assert entry.event == {"correlation_key": record["correlation_key"],
                           "alert": {"status": "resolved", "labels": {"alertname": "DiskFull"}, "startsAt": record["opened_at"],
                                     "endsAt": "2026-12-03T12:00:00Z"},
                           "meta": {"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, "labops.itsm:reconciliation:%s|resolved" % record["correlation_key"]))}}


def test_silenced_inhibited_and_unprocessed_alerts_keep_their_incidents_open(env):
    for n, name in ((1, "A"), (2, "B"), (3, "C")):
        env.open_incident("00000000000000c%d" % n, name)
    env.am.alerts = [am_alert("00000000000000c1", "A", state="suppressed", silenced=("s-1",)),
                     am_alert("00000000000000c2", "B", state="suppressed", inhibited=("f00d",)),
                     am_alert("00000000000000c3", "C", state="unprocessed")]
    result = env.run()
    assert result["changed"] is False
    assert result["skipped"] == {"incident_alert_present": 3, "alert_suppressed": 2, "alert_unprocessed": 1}


def test_young_incidents_and_a_restarted_alertmanager_are_left_alone(env):
    env.open_incident("00000000000000d1", "Young", opened=NOW - datetime.timedelta(seconds=100))
    env.open_incident("00000000000000d2", "Old")
    result = env.run()
    assert [e["alertname"] for e in result["enqueued"]] == ["Old"] and result["skipped"] == {"incident_too_recent": 1}
    env.open_incident("00000000000000d3", "AlsoOld")
    env.am.uptime = iso(NOW - datetime.timedelta(seconds=60))
    fresh = env.run()
    assert fresh["changed"] is False and fresh["enqueued"] == []
    assert fresh["skipped"] == {"incident_too_recent": 1, "alertmanager_recently_started": 2}
    assert any("AlertManager started 60s ago" in warning for warning in fresh["warnings"])


def test_an_active_alert_without_incident_is_enqueued_as_the_source_emits_it(env):
    env.am.alerts = [am_alert("00000000000000e1", "PveGuestDown"), am_alert("00000000000000e2", "Fresh", starts_at=RECENT),
                     am_alert("00000000000000e3", "Elsewhere", receiver="default")]
    result = env.run(receiver="eda-itsm|pager")
    assert result["skipped"] == {"alert_too_recent": 1, "alert_other_receiver": 1}
    [enqueued] = result["enqueued"]
    assert enqueued["status"] == "firing" and enqueued["alertname"] == "PveGuestDown"
    [entry] = env.spool.list(states=None)
    event = entry.event
    key = correlation_key("00000000000000e1", LONG_AGO)
    assert key == correlation_key("00000000000000e1", "2026-12-03T10:00:00Z")  # the webhook's key
    assert entry.origin == "reconciliation" and event["correlation_key"] == key
    assert event["alert"] == {"status": "firing", "fingerprint": "00000000000000e1", "startsAt": LONG_AGO, "endsAt": "0001-01-01T00:00:00Z",
                              "labels": {"alertname": "PveGuestDown", "node": "node1"}, "annotations": {"summary": "PveGuestDown on node1"},
                              "generatorURL": "http://prometheus:9090/graph"}
    assert set(event["group"]) == {"key", "key_hash", "status", "receiver", "notification_reason", "external_url", "truncated_alerts", "labels",
                                   "common_labels", "common_annotations"}
    assert event["group"]["receiver"] == "eda-itsm" and event["group"]["external_url"] == env.am.url
    assert event["meta"]["uuid"] == source_event_uuid(event["group"]["key"], "00000000000000e1", "firing", LONG_AGO)
    # handled already (done) or still queued: never enqueued twice
    assert env.run(receiver="eda-itsm")["skipped"]["alert_in_spool_queued"] == 1


def test_a_dead_resolve_is_revived(env):
    env.open_incident("00000000000000f1", "Dead")
    env.run()
    policy = SpoolPolicy(retry_for=0)
    batch, [entry] = env.spool.claim(10, policy)
    env.spool.fail(entry.id, batch, "boom")
    env.spool.settle(policy)
    assert env.spool.get([entry.id])[0].state == "dead"
    result = env.run()
    assert result["enqueued"][0]["action"] == "revive" and result["spool_counts"]["revived"] == 1
    assert env.spool.get([entry.id])[0].state == "queued"


def test_alertmanager_errors_fail_and_credentials_are_checked(env):
    env.am.fail_next = 2
    assert env.run()["changed"] is False  # two 503 answers, retried
    client = AlertManagerClient(env.am.url, token="wrong", retry=RetryPolicy(base_delay=0.01))
    with pytest.raises(AuthError):
        alert_reconcile.run(env.params(), client, [], env.spool, now=NOW)


def test_main_masks_secrets_and_reads_token_files(env, tmp_path):
    env.open_incident("00000000000000a9", "HostDown", opened=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1))
    token_file = tmp_path / "am.token"
    token_file.write_text(TOKEN + "\n")
    args = {"alertmanager_url": env.am.url, "alertmanager_token_file": str(token_file), "platform_options": env.options, "queue": "Infrastructure",
            "spool_path": env.spool_path}
    result = run_main_in_process("alert_reconcile", args, check_mode=True, diff=False)
    assert result.get("failed") is not True, result
    text = json.dumps(result)
    assert "s3cret" not in text and TOKEN not in text
    assert result["changed"] is True and result["enqueued"][0]["status"] == "resolved"
    assert env.spool.list(states=None) == []  # check mode
    bad = run_main_in_process("alert_reconcile", dict(args, alertmanager_token_file=str(tmp_path / "missing")), check_mode=True, diff=False)
    assert bad["failed"] is True and "cannot be read" in bad["msg"]


# -- a real AlertManager (Debian's prometheus-alertmanager), when installed ------------------------------------------

@pytest.mark.skipif(shutil.which("prometheus-alertmanager") is None, reason="prometheus-alertmanager is not installed")
def test_against_a_real_alertmanager(sim, tmp_path):
    from scripts.labstack import AlertManager, http_json  # pylint: disable=import-outside-toplevel

    token = tmp_path / "hook.token"
    token.write_text("x")
    real = AlertManager(tmp_path / "am", webhook_url="http://127.0.0.1:9/nowhere", token_file=token).start()
    try:
        env = Env(sim, real, tmp_path)
        now = datetime.datetime.now(datetime.UTC)
        start = now - datetime.timedelta(minutes=30)
        starts_at = start.strftime("%Y-%m-%dT%H:%M:%SZ")
        real.post_alerts([{"labels": {"alertname": "Firing", "node": "n1"}, "startsAt": starts_at},
                          {"labels": {"alertname": "Silenced", "node": "n1"}, "startsAt": starts_at}])
        status, body = http_json("POST", real.url + "/api/v2/silences", {
            "matchers": [{"name": "alertname", "value": "Silenced", "isRegex": False}], "startsAt": iso(now),
            "endsAt": iso(now + datetime.timedelta(hours=1)), "createdBy": "test", "comment": "maintenance"})
        assert status == 200, body
        alerts = AlertManagerClient(real.url).alerts()
        by_name = {a["labels"]["alertname"]: a for a in alerts}
        assert set(by_name) == {"Firing", "Silenced"}
        fingerprints = {name: a["fingerprint"] for name, a in by_name.items()}
        # incidents: the silenced alert's, and one whose alert is gone
        env.open_incident(fingerprints["Silenced"], "Silenced", starts_at=by_name["Silenced"]["startsAt"], opened=now - datetime.timedelta(hours=1))
        gone = env.open_incident("00000000000000aa", "Gone", opened=now - datetime.timedelta(hours=1))
        params = env.params(alertmanager_url=real.url, alertmanager_token=None, resolve_after=0)
        client = AlertManagerClient(real.url)
        try:
            result = alert_reconcile.run(params, client, [("otobo", env.platform)], env.spool, now=now)
        finally:
            client.close()
        statuses = {(e["alertname"], e["status"]) for e in result["enqueued"]}
        assert statuses == {("Gone", "resolved"), ("Firing", "firing")}, result
        assert result["skipped"].get("incident_alert_present") == 1 and result["skipped"].get("alert_suppressed") == 1
        [firing] = env.spool.list(states=None, correlation_key=correlation_key(fingerprints["Firing"], starts_at))
        assert firing.status == "firing"
        assert gone["correlation_key"] in {e.correlation_key for e in env.spool.list(states=None)}
        env.spool.close()
    finally:
        real.stop()
