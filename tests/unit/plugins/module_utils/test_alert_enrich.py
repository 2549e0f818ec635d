# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The CMDB enrichment of the alert path (module_utils/_alert_enrich.py): what incident_open.yml did in Jinja."""

import pytest

from ansible_collections.labops.itsm.plugins.filter.correlation_key import correlation_key as filter_key
from ansible_collections.labops.itsm.plugins.module_utils import _alert_enrich as enrich
from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError

SETTINGS = {"itsm_platform": "otobo", "itsm_platform_options": {"otobo": {"url": "http://otobo", "customer_user": "monitoring"}},
            "itsm_team_queues": {"platform": "Platform"}, "itsm_default_queue": "Raw", "itsm_default_impact": "medium",
            "itsm_severity_urgency": {"critical": "high", "warning": "medium", "info": "low"}, "itsm_min_severity": "low"}
ASSET = {"itsm_impact": "high", "itsm_service": "svc-erp-db", "itsm_team": "platform", "itsm_location": "dc1", "itsm_category": "hardware"}


def event(status="firing", **labels):
    alert = {"status": status, "fingerprint": "a1b2c3d4e5f60718", "startsAt": "2026-11-30T08:00:00Z",
             "labels": dict({"alertname": "PveGuestDown", "name": "erp-db-02", "severity": "critical", "team": "platform"}, **labels),
             "annotations": {"summary": "Proxmox guest erp-db-02 is down", "runbook_url": "https://rb/1"},
             "generatorURL": "http://prom/graph"}
    return {"alert": alert, "group": {}, "meta": {"uuid": "uuid-1"}}


def test_firing_request_matches_the_playbook_text():
    request = enrich.request_for(event(), SETTINGS, ASSET)
    key = filter_key("a1b2c3d4e5f60718", "2026-11-30T08:00:00Z")
    assert (request["sop"], request["platform"], request["queue"], request["correlation_key"]) == ("monitoring_intake", "otobo", "Platform", key)
    assert request["platform_options"] == SETTINGS["itsm_platform_options"]["otobo"]
    inputs = request["inputs"]
    assert (inputs["impact"], inputs["category"], inputs["min_severity"]) == ("high", "hardware", "low")
    ev = inputs["event"]
    assert ev["title"] == "[S1] PveGuestDown erp-db-02: Proxmox guest erp-db-02 is down"
    assert ev["subject"] == "FIRING PveGuestDown erp-db-02"
    assert (ev["event_id"], ev["service"], ev["severity"], ev["source"]) == ("uuid-1", "svc-erp-db", "high", "automated_alert")
    assert ev["details"].splitlines() == [
        "", "",
        "Alert:       PveGuestDown (critical)",
        "Started:     2026-11-30T08:00:00Z",
        "Asset:       erp-db-02 (service svc-erp-db,",
        "             team platform,",
        "             location dc1)",
        "Queue:       Platform",
        "Priority:    S1 (urgency high x impact high)",
        "Labels:      alertname=PveGuestDown, name=erp-db-02, severity=critical, team=platform",
        "Runbook:     https://rb/1",
        "Source:      http://prom/graph",
        "Fingerprint: a1b2c3d4e5f60718  correlation key " + key,
    ]


def test_defaults_without_an_asset():
    request = enrich.request_for(event(team="nobody", severity="info"), {"itsm_platform": "otobo"}, None)
    ev = request["inputs"]["event"]
    assert request["queue"] == "Raw" and request["platform_options"] == {}
    assert (ev["severity"], request["inputs"]["impact"], request["severity_level"]) == ("medium", "medium", "S3")  # no itsm_severity_urgency: medium
    assert ev["service"] == "erp-db-02" and "category" not in request["inputs"]
    assert "team nobody," in ev["details"] and "location unknown)" in ev["details"]


def test_asset_name_from_node_or_instance():
    labels = event()["alert"]["labels"]
    del labels["name"]
    assert enrich.asset_name({"alert": dict(event()["alert"], labels=dict(labels, node="pve02"))}) == "pve02"
    assert enrich.asset_name({"alert": dict(event()["alert"], labels=dict(labels, instance="nas1:9100"))}) == "nas1"
    assert enrich.asset_name({"alert": dict(event()["alert"], labels=labels)}) == ""


def test_asset_platform_and_queue_win_and_the_label_routes():
    request = enrich.request_for(event(), dict(SETTINGS, itsm_platform_options={"jira": {"url": "j"}}),
                                 {"itsm_platform": "jira", "itsm_queue": "OPS"})
    assert (request["platform"], request["platform_options"], request["queue"]) == ("jira", {"url": "j"}, "OPS")
    assert enrich.request_for(event(impact="low"), SETTINGS, {})["inputs"]["impact"] == "low"


def test_resolved_request():
    ev = event("resolved")
    ev["alert"]["endsAt"] = "2026-11-30T08:05:00Z"
    ev["correlation_key"] = "0123456789abcdef01234567"
    request = enrich.request_for(ev, SETTINGS, ASSET)
    assert request["sop"] == "incident_resolve" and request["queue"] == "Platform"
    assert request["inputs"] == {
        "correlation_key": "0123456789abcdef01234567", "acknowledge": True, "fix_applied": True, "service_restored": True,
        "resolution_summary": "RESOLVED PveGuestDown: the alert resolved at its source (started 2026-11-30T08:00:00Z, "
                              "ended 2026-11-30T08:05:00Z; correlation key 0123456789abcdef01234567)."}


@pytest.mark.parametrize("bad, words", [
    ({"alert": {"status": "firing"}}, "alertname"),
    ({"alert": dict(event()["alert"], status="pending")}, "firing or resolved"),
    ({"alert": dict(event()["alert"], fingerprint="xyz")}, "fingerprint"),
    ("nope", "mapping"),
])
def test_malformed_events_are_validation_errors(bad, words):
    with pytest.raises(ValidationError, match=words):
        enrich.request_for(bad, SETTINGS, {})


def test_no_platform_is_an_error():
    with pytest.raises(ValidationError, match="itsm_platform"):
        enrich.request_for(event(), {}, {})


def test_delay_note():
    note = enrich.delay_note(0, 90, 2, "otobo: connection refused")
    assert note == ("Delayed: accepted by the intake at 1970-01-01T00:00:00Z, handled at 1970-01-01T00:01:30Z after 2 failed "
                    "attempt(s); last error: otobo: connection refused")


def grouped(status="firing", group_status="firing", starts="2026-11-30T08:00:00Z", fingerprint="a1b2c3d4e5f60718", key='{}:{alertname="PveGuestDown"}'):
    base = event(status)
    base["alert"].update(startsAt=starts, fingerprint=fingerprint)
    base["group"] = {"key": key, "status": group_status, "receiver": "labops", "labels": {"alertname": "PveGuestDown", "cluster": "pve"}}
    return base


def test_ticket_grouping_keys():
    episode = enrich.request_for(grouped(), SETTINGS, ASSET)
    assert episode["ticket_key"] == episode["correlation_key"] == episode["inputs"]["event"]["correlation_key"]
    assert "reopen_window" not in episode["inputs"] and episode["inputs"]["repeat_update"] == "none"
    per_alert = dict(ASSET, itsm_alert_grouping="alert")
    a = enrich.request_for(grouped(), SETTINGS, per_alert)
    b = enrich.request_for(grouped(starts="2026-11-30T09:00:00Z"), SETTINGS, per_alert)  # the next episode of the same alert
    assert a["ticket_key"] == b["ticket_key"] != a["correlation_key"] and a["correlation_key"] != b["correlation_key"]
    assert a["inputs"]["event"]["correlation_key"] == a["ticket_key"]
    assert "Ticket key:  {0} (one ticket per alert)".format(a["ticket_key"]) in a["inputs"]["event"]["details"]
    per_group = dict(SETTINGS, itsm_alert_grouping="group", itsm_reopen_window="30m", itsm_never_reopen="Won't Do",
                     itsm_repeat_update="title")
    g1 = enrich.request_for(grouped(), per_group, ASSET)
    g2 = enrich.request_for(grouped(fingerprint="0011223344556677"), per_group, ASSET)  # another alert of the group
    other = enrich.request_for(grouped(key='{}:{alertname="Other"}'), per_group, ASSET)
    assert g1["ticket_key"] == g2["ticket_key"] != other["ticket_key"]
    assert g1["inputs"]["event"]["title"] == "[S1] PveGuestDown pve: Proxmox guest erp-db-02 is down"
    assert (g1["inputs"]["reopen_window"], g1["inputs"]["never_reopen"], g1["inputs"]["repeat_update"]) == ("30m", ["Won't Do"], "title")
    # the asset's own setting wins over the play's
    assert enrich.request_for(grouped(), per_group, dict(ASSET, itsm_alert_grouping="episode"))["ticket_key"] == episode["ticket_key"]


def test_group_ticket_is_resolved_only_with_its_group():
    per_group = dict(SETTINGS, itsm_alert_grouping="group")
    held = enrich.request_for(grouped("resolved", "firing"), per_group, ASSET)
    assert (held["sop"], held["hold"]) == (None, "group_firing") and "inputs" not in held
    done = enrich.request_for(grouped("resolved", "resolved"), per_group, ASSET)
    assert done["sop"] == "incident_resolve" and done["inputs"]["correlation_key"] == done["ticket_key"]
    per_alert = enrich.request_for(grouped("resolved", "firing"), dict(SETTINGS, itsm_alert_grouping="alert"), ASSET)
    assert per_alert["sop"] == "incident_resolve"


@pytest.mark.parametrize("settings, message", [
    ({"itsm_alert_grouping": "cluster"}, "itsm_alert_grouping must be one of episode, alert, group"),
    ({"itsm_reopen_window": "soon"}, "itsm_reopen_window must be seconds or a duration"),
    ({"itsm_repeat_update": "comment"}, "itsm_repeat_update must be one of none, title, note"),
])
def test_ticket_settings_are_checked(settings, message):
    with pytest.raises(ValidationError, match=message):
        enrich.request_for(grouped(), dict(SETTINGS, **settings), ASSET)


def test_group_grouping_needs_the_group_key():
    with pytest.raises(ValidationError, match="group.key"):
        enrich.request_for(event(), dict(SETTINGS, itsm_alert_grouping="group"), ASSET)
