"""End to end: real AlertManager -> real ansible-rulebook (our rulebook) -> OTOBO, ServiceNow and Jira simulators.

Alerts enter through AlertManager's /api/v2/alerts, exactly as Prometheus would send them.
"""
from __future__ import annotations

import json
import shutil
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ansible_collections.labops.itsm.plugins.filter.correlation_key import correlation_key
from scripts.labstack import REPO_ROOT, Stack, alert, http_json, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

if not Path("/usr/bin/prometheus-alertmanager").exists() and not shutil.which("prometheus-alertmanager"):
    pytest.skip("prometheus-alertmanager is not installed (make test installs it)", allow_module_level=True)

# IMS `resolved` on OTOBO: the ticket waits in `pending auto close+` (OTOBO closes it after the pending time);
# `closed successful` is SOP 13's incident_close, which stays with the service desk.
RESOLVED_STATE = "pending auto close+"


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def batch_runs(stack: Stack) -> int:
    return stack.rulebook_proc.log_path.read_text(errors="replace").count("PLAY [Handle a batch of alert events]")


# nexus-01 (dev_services, on Jira) gets a short reopen window in the test's copy of the inventory, so that a firing
# "after the window" can be shown without waiting the example's 6 hours.
SHORT_REOPEN_WINDOW = 15


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("e2e")
    inventory = workdir / "inventory"
    shutil.copytree(REPO_ROOT / "inventory", inventory)
    (inventory / "host_vars").mkdir(exist_ok=True)
    (inventory / "host_vars" / "nexus-01.yml").write_text(f"---\nitsm_reopen_window: {SHORT_REOPEN_WINDOW}s\n")
    with Stack(workdir, inventory=inventory, group_wait="1s", group_interval="2s", repeat_interval="4s") as running:
        yield running


def test_firing_repeat_resolve(stack: Stack):
    started = iso(datetime.now(UTC) - timedelta(minutes=1))
    guest_down = alert("PveGuestDown", {"cluster": "pve-prod", "node": "pve02", "name": "erp-db-02", "id": "qemu/104",
                                        "severity": "critical", "team": "platform"},
                       "Proxmox guest erp-db-02 is down", started)
    stack.alertmanager.post_alerts([guest_down])

    # AlertManager's own view gives the fingerprint and the startsAt it will send.
    _status, active = http_json("GET", f"{stack.alertmanager.url}/api/v2/alerts")
    am_alert = next(a for a in active if a["labels"]["alertname"] == "PveGuestDown")
    key = correlation_key(am_alert["fingerprint"], am_alert["startsAt"])

    def firing_incident():
        # SOP 16 creates the incident with the operator title and the FIRING note in one step.
        found = [t for t in stack.tickets() if key in t["Title"]]
        return found if any(a["Subject"].startswith("FIRING ") for t in found for a in t["Article"]) else None

    tickets = wait_until(firing_incident, 120, what="the incident ticket")
    assert len(tickets) == 1
    ticket = tickets[0]
    assert ticket["Title"] == f"[S1] PveGuestDown erp-db-02: Proxmox guest erp-db-02 is down [ck:{key}]"
    assert ticket["Queue"] == "Platform"          # CMDB: erp-db-02 belongs to the platform team
    assert ticket["Priority"] == "5 very high"    # critical (urgency high) x impact high -> S1
    assert ticket["StateType"] in ("new", "open")
    assert ticket["Type"] == "Incident"
    assert any(a["Subject"].startswith("FIRING PveGuestDown") for a in ticket["Article"])
    # Governed: SOP 16 monitoring_intake made it an IMS incident the other SOPs can act on.
    fields = ticket["DynamicField"]
    assert fields["IMSEntity"] == "incident"
    assert fields["IMSStatus"] == "open"
    assert fields["IMSSeverityLevel"] == "S1"
    assert fields["IMSPriority"] == "high"
    assert fields["IMSDetectionSource"] == "automated_alert"
    assert fields["IMSAffectedService"] == "svc-erp-db"
    assert fields["IMSAssignedTeam"] == "service_desk"
    assert fields["IMSCorrelationKey"] == key
    articles_before = len(ticket["Article"])
    changed_before = ticket["Changed"]

    # A malformed webhook is refused with a 4xx and the daemon keeps serving.
    request = urllib.request.Request(stack.webhook_url, data=b"{not json", method="POST",
                                     headers={"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert 400 <= refused.value.code < 500

    # AlertManager re-sends the group at every repeat interval: the intake spool absorbs the repeat (same
    # correlation key and status, already handled) before it costs a playbook run, and nothing changes.
    def absorbed() -> int:
        return http_json("GET", f"{stack.webhook_url}/health")[1]["dispatch"]["absorbed_repeats"]

    runs_before = batch_runs(stack)
    absorbed_before = absorbed()
    wait_until(lambda: absorbed() >= absorbed_before + 1, 90, what="a repeated notification to be absorbed")
    assert batch_runs(stack) == runs_before
    repeated = [t for t in stack.tickets() if key in t["Title"]]
    assert len(repeated) == 1
    assert len(repeated[0]["Article"]) == articles_before      # no duplicate article
    assert repeated[0]["Changed"] == changed_before            # the ticket is left as it was

    # Resolve: AlertManager sends the resolved alert; SOP 1 finds the incident by its correlation key in the
    # queue the inventory routes it to, SOP 6 acknowledges it, SOP 11 resolves it with an article.
    resolved = dict(guest_down, endsAt=iso(datetime.now(UTC) - timedelta(seconds=1)))
    stack.alertmanager.post_alerts([resolved])

    def resolved_ticket():
        found = [t for t in stack.tickets() if key in t["Title"]]
        return found if found and found[0]["DynamicField"].get("IMSStatus") == "resolved" else None

    closed = wait_until(resolved_ticket, 120, what="the incident to be resolved")
    assert len(closed) == 1
    assert closed[0]["State"] == RESOLVED_STATE
    assert closed[0]["DynamicField"]["IMSResolvedBy"] == "automation"
    assert any(a["Subject"] == "Resolved" and "RESOLVED PveGuestDown" in a["Body"] for a in closed[0]["Article"])

    # The audit ledger verifies and holds the governed actions for this ticket.
    from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params

    ledger = ledger_from_params({"ledger_backend": "sqlite", "ledger_path": str(stack.ledger_path), "ledger_dsn": None,
                                 "actor": "automation", "actor_role": "automation"})
    try:
        # The record is appended right after the platform change: the ticket can be seen closed a moment before.
        wait_until(lambda: ledger.query(ref_id=str(closed[0]["TicketNumber"]), action="resolve"), 30, what="the resolve record")
        assert ledger.verify()["ok"] is True
        records = ledger.query(ref_id=str(closed[0]["TicketNumber"]))
    finally:
        ledger.close()
    actions = [r["action"] for r in records]
    assert actions.count("create") == 1
    create = next(r for r in records if r["action"] == "create")
    assert create["sop"] == "monitoring_intake" and create["meta"]["source"] == "monitoring"
    acknowledgement = [r for r in records if r["action"] == "update" and r["meta"].get("communication") == "acknowledgement"]
    assert len(acknowledgement) == 1                            # the automation's acknowledgement (SOP 6's rules)
    assert acknowledgement[0]["fields"]["status"] == {"before": "open", "after": "in_progress"}
    resolve = [r for r in records if r["action"] == "resolve"]
    assert len(resolve) == 1 and resolve[0]["sop"] == "incident_resolve"
    assert resolve[0]["fields"]["status"]["after"] == "resolved"
    assert "close" not in actions                               # closing stays with the service desk (SOP 13)
    assert actions == ["create", "update", "resolve"]           # one intake run, one resolve run (by correlation key)
    assert all(r["actor"] == "automation" and r["role"] == "automation" for r in records)
    assert stack.token not in stack.ledger_path.read_bytes().decode(errors="replace")


def test_servicenow_asset_opens_and_resolves_a_servicenow_incident(stack: Stack):
    """The CMDB puts the network group on ServiceNow: the same rulebook and playbooks open and resolve a
    ServiceNow incident (Table API simulator) for a core switch, beside the OTOBO tickets."""
    started = iso(datetime.now(UTC) - timedelta(minutes=2))
    uplink = alert("SwitchUplinkDown", {"cluster": "campus", "instance": "core-sw-01:9116", "ifName": "Ethernet1/49",
                                        "severity": "critical", "team": "network"},
                   "Uplink Ethernet1/49 on core-sw-01 is down", started)
    tickets_before = len(stack.tickets())
    stack.alertmanager.post_alerts([uplink])
    _status, active = http_json("GET", f"{stack.alertmanager.url}/api/v2/alerts")
    am_alert = next(a for a in active if a["labels"]["alertname"] == "SwitchUplinkDown")
    key = correlation_key(am_alert["fingerprint"], am_alert["startsAt"])

    def incidents():
        return [i for i in stack.sn_incidents() if i.get("correlation_id") == key]

    opened = wait_until(lambda: incidents() or None, 120, what="the ServiceNow incident")
    assert len(opened) == 1
    incident = opened[0]
    assert incident["number"].startswith("INC")
    assert "SwitchUplinkDown core-sw-01" in incident["short_description"]
    assert incident["assignment_group"] == stack.sn_record_id("sys_user_group", "Network")   # CMDB: itsm_queue Network
    assert incident["state"] in ("1", "2")
    assert "FIRING SwitchUplinkDown" in incident["description"]      # the alert's details, on the form
    # critical x impact high -> S1: ServiceNow impact 1 / urgency 1, priority 1 derived by the instance's lookup
    assert (incident["impact"], incident["urgency"], incident["priority"]) == ("1", "1", "1")
    assert all(isinstance(value, str) for value in incident.values() if not isinstance(value, (dict, list)))
    assert len(stack.tickets()) == tickets_before                # nothing on OTOBO for a ServiceNow asset

    stack.alertmanager.post_alerts([dict(uplink, endsAt=iso(datetime.now(UTC) - timedelta(seconds=1)))])
    resolved = wait_until(lambda: [i for i in incidents() if i["state"] == "6"] or None, 120,
                          what="the ServiceNow incident to be resolved")
    assert len(incidents()) == 1
    assert resolved[0]["close_code"] and resolved[0]["close_notes"]
    assert resolved[0]["active"] == "true"                        # Resolved (6) stays active until ServiceNow closes it
    journal = stack.sn_journal(resolved[0]["sys_id"])
    assert any("FIRING SwitchUplinkDown" in entry for entry in journal)
    assert any("RESOLVED SwitchUplinkDown" in entry for entry in journal)

    from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params

    ledger = ledger_from_params({"ledger_backend": "sqlite", "ledger_path": str(stack.ledger_path), "ledger_dsn": None,
                                 "actor": "automation", "actor_role": "automation"})
    try:
        wait_until(lambda: ledger.query(ref_id=resolved[0]["number"], action="resolve"), 30, what="the resolve record")
        assert ledger.verify()["ok"] is True
        actions = [r["action"] for r in ledger.query(ref_id=resolved[0]["number"])]
    finally:
        ledger.close()
    assert actions == ["create", "update", "resolve"]


def jira_issues_of(stack: Stack, asset: str) -> list[dict]:
    return [issue for issue in stack.jira_issues() if asset in str(issue.get("summary"))]


def jira_comments(issue: dict) -> str:
    return json.dumps(issue.get("comments") or [])


def test_jira_asset_follows_jiralert_semantics(stack: Stack):
    """The CMDB puts dev_services on Jira Cloud (search lagging 3 s behind writes, as on Cloud), one issue per alert with
    a reopen window: create, repeats (AlertManager re-sends every 4 s), resolve, a new episode within the window reopens
    the issue, and one after the window opens a new issue. Never a duplicate."""
    from ansible_collections.labops.itsm.plugins.module_utils._alert_enrich import ticket_key

    started = iso(datetime.now(UTC) - timedelta(minutes=1))
    gitlab = alert("GitLabDown", {"cluster": "dev", "instance": "gitlab-01:443", "severity": "critical", "team": "devtools"},
                   "GitLab on gitlab-01 answers 502", started)
    stack.alertmanager.post_alerts([gitlab])
    _status, active = http_json("GET", f"{stack.alertmanager.url}/api/v2/alerts")
    am_alert = next(a for a in active if a["labels"]["alertname"] == "GitLabDown")
    key = ticket_key({"alert": {"status": "firing", "fingerprint": am_alert["fingerprint"], "labels": am_alert["labels"]}}, "alert")

    opened = wait_until(lambda: jira_issues_of(stack, "gitlab-01") or None, 120, what="the Jira issue")
    assert len(opened) == 1
    fields = opened[0]
    assert opened[0]["key"].startswith("OPS-")                              # CMDB: itsm_queue OPS/Platform
    assert fields["components"] == ["Platform"]
    assert "labops-" + key in fields["labels"] and all(" " not in label for label in fields["labels"])
    assert fields["priority"] in ("Highest", "High")                          # critical x impact medium
    assert fields["statusCategory"] == "new"
    assert isinstance(fields["description"], dict) and "FIRING GitLabDown" in json.dumps(fields["description"])  # ADF on Cloud v3
    absorbed_before = http_json("GET", f"{stack.webhook_url}/health")[1]["dispatch"]["absorbed_repeats"]
    wait_until(lambda: http_json("GET", f"{stack.webhook_url}/health")[1]["dispatch"]["absorbed_repeats"] > absorbed_before, 60,
               what="a repeated notification to be absorbed")
    assert len(jira_issues_of(stack, "gitlab-01")) == 1

    stack.alertmanager.post_alerts([dict(gitlab, endsAt=iso(datetime.now(UTC) - timedelta(seconds=1)))])
    done = wait_until(lambda: [i for i in jira_issues_of(stack, "gitlab-01") if i["statusCategory"] == "done"]
                      or None, 120, what="the Jira issue to be resolved")
    assert done[0]["resolution"] == "Done" and done[0]["resolutiondate"]

    # a new episode of the same alert within the 6 h window: the issue is reopened, not duplicated
    stack.alertmanager.post_alerts([dict(gitlab, startsAt=iso(datetime.now(UTC)))])
    reopened = wait_until(lambda: [i for i in jira_issues_of(stack, "gitlab-01") if i["statusCategory"] != "done"]
                          or None, 120, what="the Jira issue to be reopened")
    assert len(jira_issues_of(stack, "gitlab-01")) == 1 and reopened[0]["key"] == opened[0]["key"]
    assert reopened[0]["resolution"] is None
    assert "REOPENED" in jira_comments(reopened[0])

    # nexus-01's window is short: resolved, then firing again after the window opens a second issue
    nexus = alert("NexusDown", {"cluster": "dev", "instance": "nexus-01:8081", "severity": "warning", "team": "devtools"},
                  "Nexus on nexus-01 is down", iso(datetime.now(UTC) - timedelta(seconds=30)))
    stack.alertmanager.post_alerts([nexus])
    first = wait_until(lambda: jira_issues_of(stack, "nexus-01") or None, 120, what="nexus-01's Jira issue")
    stack.alertmanager.post_alerts([dict(nexus, endsAt=iso(datetime.now(UTC) - timedelta(seconds=1)))])
    wait_until(lambda: [i for i in jira_issues_of(stack, "nexus-01") if i["statusCategory"] == "done"] or None,
               120, what="nexus-01's issue to be resolved")
    time.sleep(SHORT_REOPEN_WINDOW + 1)
    stack.alertmanager.post_alerts([dict(nexus, startsAt=iso(datetime.now(UTC)))])
    wait_until(lambda: len(jira_issues_of(stack, "nexus-01")) == 2, 120, what="a new nexus-01 issue after the reopen window")
    both = jira_issues_of(stack, "nexus-01")
    assert both[0]["key"] == first[0]["key"] and both[0]["statusCategory"] == "done"
    assert both[1]["statusCategory"] == "new"


def test_jira_data_center_through_the_same_rulebook(tmp_path):
    """Jira Data Center (REST v2, wiki markup, a personal access token): the same rulebook and inventory open the issue,
    resolve it and reopen it when the alert fires again within the window."""
    with Stack(tmp_path / "dc", group_wait="1s", group_interval="2s", repeat_interval="1h", servicenow=False,
               jira_mode="datacenter") as dc:
        assert dc.daemon_env()["JIRA_PAT_FILE"] and "JIRA_API_TOKEN_FILE" not in dc.daemon_env()
        gitlab = alert("GitLabDown", {"cluster": "dev", "instance": "gitlab-01:443", "severity": "warning", "team": "devtools"},
                       "GitLab on gitlab-01 answers 502", iso(datetime.now(UTC) - timedelta(minutes=1)))
        dc.alertmanager.post_alerts([gitlab])
        opened = wait_until(lambda: jira_issues_of(dc, "gitlab-01") or None, 120, what="the Data Center issue")
        assert isinstance(opened[0]["description"], str) and "FIRING GitLabDown" in opened[0]["description"]  # wiki markup
        assert opened[0]["components"] == ["Platform"] and opened[0]["statusCategory"] == "new"
        dc.alertmanager.post_alerts([dict(gitlab, endsAt=iso(datetime.now(UTC) - timedelta(seconds=1)))])
        wait_until(lambda: [i for i in jira_issues_of(dc, "gitlab-01") if i["statusCategory"] == "done"] or None, 120,
                   what="the Data Center issue to be resolved")
        dc.alertmanager.post_alerts([dict(gitlab, startsAt=iso(datetime.now(UTC)))])
        reopened = wait_until(lambda: [i for i in jira_issues_of(dc, "gitlab-01") if i["statusCategory"] != "done"] or None, 120,
                              what="the Data Center issue to be reopened")
        assert len(jira_issues_of(dc, "gitlab-01")) == 1 and reopened[0]["key"] == opened[0]["key"]
        assert all(isinstance(comment.get("body"), str) for comment in reopened[0]["comments"])
        assert "REOPENED" in jira_comments(reopened[0])


def test_ticket_creation_metrics_and_log(stack: Stack):
    """The modules the daemon ran counted their creations per platform (seed 001 metrics), read by
    prometheus_client's parser, and wrote one JSON log line per creation."""
    from prometheus_client.parser import text_string_to_metric_families

    families = {family.name: family for family in text_string_to_metric_families(stack.metrics_path.read_text())}
    created = {(s.labels["platform"], s.labels["status"]): s.value for s in families["itsm_ticket_creation"].samples
               if s.name == "itsm_ticket_creation_total"}
    assert created[("otobo", "success")] >= 1 and created[("servicenow", "success")] >= 1 and created[("jira", "success")] >= 1
    counts = {s.labels["platform"]: s.value for s in families["itsm_ticket_creation_duration_seconds"].samples
              if s.name.endswith("_count")}
    assert counts["servicenow"] == created[("servicenow", "success")] + created.get(("servicenow", "failure"), 0)
    lines = [json.loads(line) for line in stack.log_file.read_text().splitlines()]
    servicenow = [line for line in lines if line["platform"] == "servicenow" and line["message"]]
    assert servicenow and all(line["ticket_id"].startswith("INC") and line["dry_run"] is False for line in servicenow
                              if line.get("status") == "success")
    assert stack.token not in stack.log_file.read_text()
