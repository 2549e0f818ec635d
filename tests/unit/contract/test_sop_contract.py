"""The SOP contract: every SOP's happy path and its halts, against every TicketPlatform adapter.

The engine, the policy and the governed write are platform neutral; this suite proves it by running the
same tests against each adapter in ``adapters.ADAPTERS`` (an in-memory fake, OtoboPlatform, ServiceNowPlatform and
JiraPlatform in Cloud and Data Center mode, each on its simulator). A platform joins by adding one harness there. Platform-specific mappings (the OTOBO
state and priority an IMS record shows) are checked through the harness' ``check_mapping``.
"""
import datetime
import uuid

import pytest

from ansible_collections.labops.itsm.plugins.module_utils import _policy as policy
from ansible_collections.labops.itsm.plugins.module_utils._errors import (
    AmbiguousWriteError,
    AuditWriteError,
    NotFoundError,
    PermissionDenied,
)
from ansible_collections.labops.itsm.plugins.module_utils._governed import creation_record_key
from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._priority import format_time, parse_time
from ansible_collections.labops.itsm.plugins.module_utils._sop import SOP_SPECS
from tests.unit.contract.adapters import ADAPTERS
from tests.unit.contract.sop_env import ACTIVE, Env, FailingLedger, assert_audit, new_change, new_incident, new_problem


@pytest.fixture(scope="session", params=sorted(ADAPTERS))
def adapter(request):
    harness = ADAPTERS[request.param]()
    harness.start()
    yield harness
    harness.stop()


@pytest.fixture
def env(adapter, tmp_path):
    environment = Env(adapter, tmp_path)
    ACTIVE["platform"] = environment.platform.name
    return environment


# --------------------------------------------------------------------------- happy paths: one per SOP


def test_entity_lookup(env):
    ref = new_incident(env, "in_progress")
    result = env.run("entity_lookup", role="L2", actor="l2-finn", entity_type="incident", filters={"id": ref, "status": "in_progress"})
    assert (result["match"], result["count"], result["changed"]) == ("one", 1, False)
    assert result["matches"][0]["id"] == ref
    assert_audit(result, ["identify"], "incident", ref, "entity_lookup", "L2", "l2-finn")
    assert result["audit"][0]["meta"]["filters"] == {"id": ref, "status": "in_progress"}
    none = env.run("entity_lookup", role="L2", entity_type="incident", filters={"title": "no such thing"})
    assert (none["match"], none["count"]) == ("none", 0)


def test_incident_identify_and_dedupe(env):
    result = env.run("incident_identify", role="end_user", actor="jdoe", title="Mail down", reporter="jdoe", detection_source="user_report",
                     affected_service="mail", description="no mail", category="software", correlation_key="ab12cd34ef56ab12cd34ef56")
    record = result["record"]
    assert (record["status"], record["reporter"], record["category"]) == ("open", "jdoe", "software")
    env.check_mapping(record)
    assert_audit(result, ["identify"], "incident", record["id"], "incident_identify", "end_user", "jdoe")
    assert result["audit"][0]["fields"]["status"] == {"before": None, "after": "open"}
    again = env.run("incident_identify", role="service_desk", title="Mail down", reporter="jdoe", detection_source="user_report",
                    affected_service="mail", description="no mail", correlation_key="ab12cd34ef56ab12cd34ef56")
    assert (again["changed"], again["duplicate_of"], again["audit"]) == (False, record["id"], [])


def test_incident_log(env):
    ref = new_incident(env)
    result = env.run("incident_log", role="L1", actor="l1-gus", incident_id=ref, description="seen since 10:02", affected_service="ceph-rbd",
                     diagnosis="osd latency", workaround="move vm")
    assert (result["record"]["affected_service"], result["record"]["workaround"]) == ("ceph-rbd", "move vm")
    assert_audit(result, ["create"], "incident", ref, "incident_log", "L1", "l1-gus")
    assert result["audit"][0]["fields"]["affected_service"] == {"before": "ceph", "after": "ceph-rbd"}


def test_incident_categorize_idempotent(env):
    ref = new_incident(env)
    result = env.run("incident_categorize", role="service_desk", actor="sd", incident_id=ref, category="hardware", subcategory="disk")
    assert (result["changed"], result["record"]["category"], result["record"]["subcategory"]) == (True, "hardware", "disk")
    assert_audit(result, ["update"], "incident", ref, "incident_categorize", "service_desk", "sd")
    assert result["audit"][0]["fields"] == {"category": {"before": None, "after": "hardware"}, "subcategory": {"before": None, "after": "disk"}}
    again = env.run("incident_categorize", role="service_desk", incident_id=ref, category="hardware", subcategory="disk")
    assert (again["changed"], again["audit"]) == (False, [])


def test_incident_prioritize_matrix_and_platform_priority(env):
    ref = new_incident(env, priority="low")
    result = env.run("incident_prioritize", incident_id=ref, urgency="high", impact="high", justification="all users")
    record = result["record"]
    assert (record["priority"], record["severity_level"]) == ("high", "S1")
    env.check_mapping(record)
    assert result["sla"]["response_minutes"] == 15 and record["sla"]["response"]["status"] in ("pending", "met")
    assert_audit(result, ["update"], "incident", ref, "incident_prioritize", "incident_manager", "im-bob")
    assert result["audit"][0]["fields"]["priority"] == {"before": "low", "after": "high"}
    explicit = env.run("incident_prioritize", incident_id=ref, priority="medium", justification="downgrade")
    assert explicit["record"]["severity_level"] == "S3"
    env.check_mapping(explicit["record"])


def test_incident_assign_acknowledges(env):
    ref = new_incident(env)
    result = env.run("incident_assign", role="service_desk", actor="sd", incident_id=ref, team="L1", message_text="We are on it")
    record = result["record"]
    assert (record["status"], record["assigned_team"]) == ("in_progress", "L1")
    env.check_mapping(record)
    assert record["responded_at"]
    assert_audit(result, ["update", "notify"], "incident", ref, "incident_assign", "service_desk", "sd")
    assert result["audit"][1]["meta"]["recipients"] == "end_users"


def test_incident_assign_reopens_resolved(env):
    ref = new_incident(env, "resolved")
    env.halt("missing_input", "incident_assign", incident_id=ref, team="L2")
    result = env.run("incident_assign", incident_id=ref, team="L2", reopen_reason="user says still slow")
    assert (result["record"]["status"], result["record"]["resolved_at"]) == ("in_progress", None)
    env.check_mapping(result["record"])


def test_incident_diagnose(env):
    ref = new_incident(env, "in_progress")
    result = env.run("incident_diagnose", role="L2", actor="l2", incident_id=ref, diagnosis="iostat shows 100% util", workaround="throttle")
    assert result["record"]["workaround"] == "throttle"
    assert_audit(result, ["update"], "incident", ref, "incident_diagnose", "L2", "l2")
    assert set(result["audit"][0]["fields"]) == {"diagnosis", "workaround"}


def test_incident_escalate(env):
    ref = new_incident(env, "in_progress")
    result = env.run("incident_escalate", role="L1", actor="l1", incident_id=ref, escalate_to="L3", reason="kernel bug")
    assert (result["record"]["status"], result["record"]["assigned_team"]) == ("escalated", "L3")
    assert_audit(result, ["escalate"], "incident", ref, "incident_escalate", "L1", "l1")
    assert result["audit"][0]["meta"]["trigger"] == "manual"


def test_automatic_escalation_of_open_incidents(env):
    high = new_incident(env, priority="high")
    result = env.run("incident_escalate", role="automation", actor="eda", incident_id=high, escalate_to="incident_manager",
                     reason="S2 by classification", trigger="automatic")
    assert result["record"]["status"] == "escalated"
    medium = new_incident(env, priority="medium")
    env.halt("invalid_transition", "incident_escalate", incident_id=medium, escalate_to="L2", reason="r")
    env.halt("automatic_escalation_not_triggered", "incident_escalate", incident_id=medium, escalate_to="L2", reason="r", trigger="automatic")
    # 5 hours later the S3 response target (4 h) is breached: the automatic escalation is allowed
    opened = env.get("incident", medium)["opened_at"]
    later = format_time(parse_time(opened) + datetime.timedelta(hours=5))
    breached = env.run("incident_escalate", role="automation", actor="eda", incident_id=medium, escalate_to="L2", reason="SLA",
                       trigger="automatic", now=later)
    assert breached["record"]["status"] == "escalated"


def test_vendor_engage_sets_pending_vendor(env):
    ref = new_incident(env, "escalated")
    result = env.run("vendor_engage", role="L2", actor="l2", incident_id=ref, vendor="Dell", contact_method="vendor_portal",
                     vendor_reference="SR-1", vendor_context="replace controller", pending_hours=4)
    assert (result["record"]["status"], result["record"]["vendor"]) == ("pending_vendor", "Dell")
    env.check_mapping(result["record"])
    assert_audit(result, ["vendor_engagement"], "incident", ref, "vendor_engage", "L2", "l2")


def test_change_request_approve_coordinate(env):
    ref = new_incident(env, "in_progress")
    change = env.run("change_request", role="devops", actor="dev-carl", title="Replace disk", description="swap", justification="failing",
                     incident_id=ref)
    assert (change["record"]["status"], change["record"]["requester"]) == ("pending", "dev-carl")
    assert_audit(change, ["create"], "change_request", change["record"]["id"], "change_request", "devops", "dev-carl")
    cid = change["record"]["id"]
    env.halt("segregation_of_duties", "change_approve", role="change_mgmt", actor="dev-carl", change_id=cid, decision="approved",
             justification="self")
    env.halt("change_not_approved", "change_coordinate", role="change_mgmt", incident_id=ref, change_id=cid, justification="go")
    approved = env.run("change_approve", role="change_mgmt", actor="cab-dora", change_id=cid, decision="approved", justification="ok")
    assert (approved["record"]["status"], approved["record"]["approver"]) == ("approved", "cab-dora")
    env.check_mapping(approved["record"])
    assert_audit(approved, ["update"], "change_request", cid, "change_approve", "change_mgmt", "cab-dora")
    env.halt("wrong_state", "change_approve", role="change_mgmt", actor="cab-eve", change_id=cid, decision="rejected", justification="late")
    linked = env.run("change_coordinate", role="change_mgmt", actor="cab-dora", incident_id=ref, change_id=cid, justification="fix")
    assert linked["record"]["change_link"] == cid
    assert_audit(linked, ["update"], "incident", ref, "change_coordinate", "change_mgmt", "cab-dora")
    assert linked["audit"][0]["fields"] == {"change_link": {"before": None, "after": cid}}
    again = env.run("change_coordinate", role="change_mgmt", incident_id=ref, change_id=cid, justification="fix")
    assert again["changed"] is False


def test_change_rejected(env):
    cid = new_change(env, approved=False)
    result = env.run("change_approve", role="change_mgmt", actor="cab", change_id=cid, decision="rejected", justification="risk")
    assert result["record"]["status"] == "rejected"
    env.check_mapping(result["record"])


def test_incident_resolve(env):
    ref = new_incident(env, "pending_vendor")
    result = env.run("incident_resolve", role="L2", actor="l2", incident_id=ref, resolution_summary="controller replaced",
                     fix_applied=True, service_restored=True)
    assert (result["record"]["status"], result["record"]["resolved_by"]) == ("resolved", "l2")
    env.check_mapping(result["record"])
    assert_audit(result, ["resolve"], "incident", ref, "incident_resolve", "L2", "l2")


def test_incident_resolve_by_correlation_key_acknowledges_an_open_incident(env):
    """The alert path: the resolved alert names the incident by its key; nobody took it yet, so SOP 11 acknowledges
    it (SOP 6's effects and rules) and resolves it in one write."""
    event = {"event_id": "ev-ack", "service": "pve-node2", "source": "automated_alert", "alert_type": "HostDown", "severity": "warning",
             "correlation_key": "0123456789abcdef01234567"}
    opened = env.run("monitoring_intake", role="automation", actor="eda", event=event)["record"]
    env.halt("wrong_state", "incident_resolve", role="automation", actor="eda", correlation_key=event["correlation_key"],
             resolution_summary="s", fix_applied=True, service_restored=True)
    result = env.run("incident_resolve", role="automation", actor="eda", correlation_key=event["correlation_key"], acknowledge=True,
                     team="L1", resolution_summary="the alert resolved at its source", fix_applied=True, service_restored=True)
    record = result["record"]
    assert (record["id"], record["status"], record["assigned_team"], record["resolved_by"]) == (opened["id"], "resolved", "L1", "eda")
    assert record["responded_at"] and record["resolved_at"]
    env.check_mapping(record)
    assert_audit(result, ["update", "resolve"], "incident", opened["id"], "incident_resolve", "automation", "eda")
    assert result["audit"][0]["fields"]["status"] == {"before": "open", "after": "in_progress"}
    # a repeat of the resolved notification finds nothing left to resolve
    env.halt("wrong_state", "incident_resolve", role="automation", actor="eda", correlation_key=event["correlation_key"], acknowledge=True,
             resolution_summary="s", fix_applied=True, service_restored=True)
    env.halt("not_found", "incident_resolve", role="automation", actor="eda", correlation_key="fedcba9876543210fedcba98", acknowledge=True,
             resolution_summary="s", fix_applied=True, service_restored=True)
    # acknowledging is SOP 6's business: a role without it (devops) may resolve taken incidents, not acknowledge open ones
    other = env.run("monitoring_intake", role="automation", actor="eda", event=dict(event, event_id="ev-ack2",
                                                                                    correlation_key="1123456789abcdef01234567"))["record"]
    env.halt("role_not_authorised", "incident_resolve", role="devops", actor="dev", incident_id=other["id"], acknowledge=True,
             resolution_summary="s", fix_applied=True, service_restored=True)


def test_entity_lookup_by_correlation_key(env):
    event = {"event_id": "ev-look", "service": "pve-node3", "source": "automated_alert", "alert_type": "HostDown", "severity": "warning",
             "correlation_key": "abcdefabcdefabcdefabcdef"}
    opened = env.run("monitoring_intake", role="automation", actor="eda", event=event)["record"]
    found = env.run("entity_lookup", role="automation", actor="eda", entity_type="incident", filters={"correlation_key": event["correlation_key"]})
    assert (found["match"], [m["id"] for m in found["matches"]]) == ("one", [opened["id"]])
    none = env.run("entity_lookup", role="automation", actor="eda", entity_type="incident",
                   filters={"correlation_key": event["correlation_key"], "status": "resolved"})
    assert none["match"] == "none"


def test_communication_update(env):
    ref = new_incident(env, "in_progress")
    result = env.run("communication_update", role="service_desk", actor="sd", incident_id=ref, recipients="executives",
                     message_text="ETA 14:00", message_type="eta")
    assert result["changed"] and result["record"]["status"] == "in_progress"
    assert_audit(result, ["notify"], "incident", ref, "communication_update", "service_desk", "sd")
    assert result["audit"][0]["meta"] == {"recipients": "executives", "message_type": "eta"}
    last = env.notes(ref)[-1]
    assert last["visible"] is True and "ETA 14:00" in last["body"]


def test_incident_close_high_needs_pir(env):
    ref = new_incident(env, "resolved", priority="high")
    result = env.run("incident_close", role="service_desk_manager", actor="sdm", incident_id=ref, closure_notes="user confirmed")
    record = result["record"]
    assert (record["status"], record["pir"], record["closure_complete"]) == ("closed", "required", False)
    env.check_mapping(record)
    assert_audit(result, ["close"], "incident", ref, "incident_close", "service_desk_manager", "sdm")
    assert result["audit"][0]["meta"]["pir_required"] is True
    review = env.run("incident_review", actor="im-bob", incident_id=ref, timeline="10:02 alert", factors="disk", actions=["monitor smart"])
    assert (review["record"]["pir"], review["record"]["closure_complete"]) == ("done", True)
    assert_audit(review, ["review"], "incident", ref, "incident_review", "incident_manager", "im-bob")


def test_incident_close_low_priority_by_service_desk(env):
    ref = new_incident(env, "resolved", priority="low")
    result = env.run("incident_close", role="service_desk", actor="jdoe", incident_id=ref, closure_notes="ok")
    assert (result["record"]["pir"], result["record"]["closure_complete"]) == (None, True)


def test_kb_update(env):
    ref = new_incident(env, "closed")
    env.halt("wrong_state", "kb_update", incident_id=new_incident(env, "resolved"), kb_type="resolution", kb_title="t", kb_content="c")
    result = env.run("kb_update", role="L3", actor="l3", incident_id=ref, kb_type="resolution", kb_title="Ceph latency", kb_content="steps")
    kb_id = result["kb_article_id"]
    assert result["record"]["kb_link"] == kb_id
    env.adapter.check_kb(env.platform, ref, kb_id, "Ceph latency", "steps")
    assert_audit(result, ["kb_update"], "incident", ref, "kb_update", "L3", "l3")
    assert result["audit"][0]["meta"]["kb_article_id"] == kb_id
    # a re-run with new content updates the same article (a platform with a knowledge base never duplicates it)
    again = env.run("kb_update", role="L3", actor="l3", incident_id=ref, kb_type="resolution", kb_title="Ceph latency", kb_content="steps v2")
    assert again["kb_article_id"] == kb_id and again["record"]["kb_link"] == kb_id
    env.adapter.check_kb(env.platform, ref, kb_id, "Ceph latency", "steps v2")


def test_monitoring_intake_creates_and_dedupes(env):
    event = {"event_id": "ev-1", "service": "pve-node1", "source": "automated_alert", "alert_type": "HostDown", "severity": "critical",
             "occurred_at": "2025-06-11T10:00:00Z"}
    result = env.run("monitoring_intake", role="automation", actor="eda", event=event, impact="high")
    record = result["record"]
    assert (record["status"], record["priority"], record["severity_level"], record["assigned_team"]) == \
        ("open", "high", "S1", "service_desk")
    env.check_mapping(record)
    assert_audit(result, ["create"], "incident", record["id"], "monitoring_intake", "automation", "eda")
    assert result["audit"][0]["meta"]["source"] == "monitoring"
    again = env.run("monitoring_intake", role="automation", actor="eda", event=event, impact="high")
    assert (again["changed"], again["duplicate_of"]) == (False, record["id"])
    low = dict(event, event_id="ev-2", severity="info")
    env.halt("below_threshold", "monitoring_intake", role="automation", event=low)
    env.halt("invalid_value", "monitoring_intake", role="automation", event=dict(event, event_id="ev-3", source="user_report"))
    env.halt("missing_input", "monitoring_intake", role="automation", event={"event_id": "ev-4"})


def _alert_event(name):
    return {"event_id": "ev-" + name, "service": "pve-node4", "source": "automated_alert", "alert_type": "HostDown",
            "severity": "critical", "correlation_key": uuid.uuid4().hex[:24], "title": "[S1] HostDown pve-node4: down",
            "subject": "FIRING HostDown pve-node4", "details": "Asset: pve-node4"}


def _resolve_by_key(env, key, now):
    return env.run("incident_resolve", role="automation", actor="eda", now=format_time(now), correlation_key=key, acknowledge=True,
                   resolution_summary="RESOLVED HostDown", fix_applied=True, service_restored=True)["record"]


def test_monitoring_intake_reopens_within_the_window_and_opens_anew_after_it(env):
    """jiralert's semantics on a stable key: a firing after the resolution reopens the incident resolved within the
    window (SOP 6's reopen, audited as update with the reason), and opens a new incident after it."""
    event = _alert_event("reopen")
    start = parse_time("2026-05-04T10:00:00Z")
    first = env.run("monitoring_intake", role="automation", actor="eda", now=format_time(start), event=event, impact="high")["record"]
    _resolve_by_key(env, event["correlation_key"], start + datetime.timedelta(minutes=5))
    later = start + datetime.timedelta(minutes=35)
    reopened = env.run("monitoring_intake", role="automation", actor="eda", now=format_time(later), event=event, impact="high",
                       reopen_window="1h")
    record = reopened["record"]
    assert (reopened["changed"], reopened.get("reopened"), reopened["duplicate_of"]) == (True, True, first["id"])
    assert (record["id"], record["status"]) == (first["id"], "in_progress") and not record.get("resolved_at")
    env.check_mapping(record)
    assert_audit(reopened, ["update"], "incident", first["id"], "monitoring_intake", "automation", "eda")
    assert reopened["audit"][0]["fields"]["status"] == {"before": "resolved", "after": "in_progress"}
    assert "30m" in reopened["audit"][0]["meta"]["reopen_reason"]
    assert any(note["subject"].startswith("REOPENED") for note in env.notes(first["id"]))
    # still firing: a repeat changes nothing; the title changes only with repeat_update
    again = env.run("monitoring_intake", role="automation", actor="eda", now=format_time(later), event=event, impact="high",
                    reopen_window="1h")
    assert (again["changed"], again["duplicate_of"], again.get("reopened")) == (False, first["id"], None)
    renamed = env.run("monitoring_intake", role="automation", actor="eda", now=format_time(later), impact="high", reopen_window="1h",
                      event=dict(event, title="[S1] HostDown pve-node4: down (3 instances)"), repeat_update="title")
    assert (renamed["changed"], renamed.get("updated"), renamed["record"]["title"]) == (True, True, "[S1] HostDown pve-node4: down (3 instances)")
    assert_audit(renamed, ["update"], "incident", first["id"], "monitoring_intake", "automation", "eda")
    # resolved again, and the alert comes back two hours later: a new incident, found from then on
    _resolve_by_key(env, event["correlation_key"], later + datetime.timedelta(minutes=1))
    much_later = later + datetime.timedelta(hours=2)
    fresh = env.run("monitoring_intake", role="automation", actor="eda", now=format_time(much_later), event=event, impact="high",
                    reopen_window="1h")
    assert fresh["changed"] and not fresh.get("duplicate_of") and fresh["record"]["id"] != first["id"]
    assert fresh["record"]["status"] == "open"
    assert env.platform.find_by_correlation_key(event["correlation_key"])["id"] == fresh["record"]["id"]
    # without a window (the episode-keyed default) a resolved incident is kept: a late repeat of its episode
    _resolve_by_key(env, event["correlation_key"], much_later + datetime.timedelta(minutes=1))
    kept = env.run("monitoring_intake", role="automation", actor="eda", event=event, impact="high")
    assert (kept["changed"], kept["duplicate_of"], kept["record"]["status"]) == (False, fresh["record"]["id"], "resolved")


def test_tool_usage(env):
    ref = new_incident(env, "in_progress")
    result = env.run("tool_usage", role="automation", actor="eda", tool="AIOps", action_summary="correlated 3 alerts", outcome="one incident",
                     incident_id=ref, usage_id="TOOL-1")
    assert result["usage_id"] == "TOOL-1" and result["changed"]
    assert_audit(result, ["tool_use"], "tool_usage", "TOOL-1", "tool_usage", "automation", "eda")
    assert result["audit"][0]["meta"]["incident_id"] == ref


def test_simulation_run(env):
    result = env.run("simulation_run", scenario="storage outage", scope="tabletop", outcomes=["runbook gap"], simulation_id="SIM-1")
    assert result["record"] is None and result["changed"]
    assert_audit(result, ["simulation"], "simulation", "SIM-1", "simulation_run", "incident_manager", "im-bob")


def test_problem_lifecycle(env):
    inc = new_incident(env, "in_progress")
    created = env.run("problem_create", role="L3", actor="l3-erin", title="Disk  firmware bug", description="d",
                      detection_source="monitoring_tool", incident_ids=[inc])
    pid = created["record"]["id"]
    assert_audit(created, ["create", "link"], "problem", pid, "problem_create", "L3", "l3-erin")
    assert env.get("incident", inc)["problem_link"] == pid and created["record"]["incident_links"] == [inc]
    dup = env.run("problem_create", role="L3", title="disk firmware BUG", description="d", detection_source="user_report")
    assert (dup["changed"], dup["duplicate_of"]) == (False, pid)
    updated = env.run("problem_update", role="L3", actor="l3-erin", problem_id=pid, problem_status="under_investigation", root_cause="fw 1.2")
    assert_audit(updated, ["update"], "problem", pid, "problem_update", "L3", "l3-erin")
    assert updated["audit"][0]["fields"]["status"] == {"before": "open", "after": "under_investigation"}
    other = new_incident(env, "open")
    linked = env.run("problem_link_incident", role="L2", actor="l2", problem_id=pid, incident_id=other)
    assert_audit(linked, ["link"], "problem", pid, "problem_link_incident", "L2", "l2")
    assert linked["record"]["incident_links"] == [inc, other] and env.get("incident", other)["problem_link"] == pid
    assert env.run("problem_link_incident", role="L2", problem_id=pid, incident_id=other)["changed"] is False
    work = env.run("problem_workaround", role="L3", actor="l3-erin", problem_id=pid, workaround="pin fw 1.1")
    assert work["record"]["status"] == "known_error" and work["record"]["kb_link"] == work["kb_article_id"]
    env.adapter.check_kb(env.platform, pid, work["kb_article_id"], None, "pin fw 1.1")
    assert_audit(work, ["kb_update"], "problem", pid, "problem_workaround", "L3", "l3-erin")
    resolved = env.run("problem_resolve", role="L3", actor="l3-erin", problem_id=pid, validation_evidence="no flaps 7d")
    assert_audit(resolved, ["resolve"], "problem", pid, "problem_resolve", "L3", "l3-erin")
    env.halt("segregation_of_duties", "problem_close", actor="l3-erin", problem_id=pid, stability_window_hours=0)
    env.halt("stability_window", "problem_close", problem_id=pid)
    closed = env.run("problem_close", actor="im-bob", problem_id=pid, stability_window_hours=0, closure_notes="stable")
    assert closed["record"]["status"] == "closed"
    env.check_mapping(closed["record"])
    assert_audit(closed, ["close"], "problem", pid, "problem_close", "incident_manager", "im-bob")


def test_audit_log(env):
    ref = new_incident(env)
    result = env.run("audit_log", role="L1", actor="l1", audit_action="read", ref_type="incident", ref_id=ref,
                     audit_meta={"reason": "customer call"})
    assert_audit(result, ["read"], "incident", ref, "audit_log", "L1", "l1")
    env.halt("not_found", "audit_log", audit_action="read", ref_type="incident", ref_id="9999999999999999")
    env.halt("invalid_value", "audit_log", audit_action="delete", ref_type="incident", ref_id=ref)


def test_every_sop_has_a_happy_path_test():
    tested = {"entity_lookup", "incident_identify", "incident_log", "incident_categorize", "incident_prioritize", "incident_assign",
              "incident_diagnose", "incident_escalate", "vendor_engage", "change_request", "change_approve", "change_coordinate",
              "incident_resolve", "communication_update", "incident_close", "incident_review", "kb_update", "monitoring_intake",
              "tool_usage", "simulation_run", "problem_create", "problem_update", "problem_link_incident", "problem_workaround",
              "problem_resolve", "problem_close", "audit_log"}
    assert tested == set(policy.SOPS) == set(SOP_SPECS)


# --------------------------------------------------------------------------- halts, table driven

# sop -> (status of the incident to prepare or None, valid inputs, role)
VALID = {
    "incident_log": ("open", dict(description="d"), "L1"),
    "incident_categorize": ("open", dict(category="hardware"), "L1"),
    "incident_prioritize": ("open", dict(priority="high", justification="j"), "L1"),
    "incident_assign": ("open", dict(team="L1"), "L1"),
    "incident_diagnose": ("in_progress", dict(diagnosis="d"), "L2"),
    "incident_escalate": ("in_progress", dict(escalate_to="L2", reason="r"), "L1"),
    "vendor_engage": ("in_progress", dict(vendor="v", contact_method="email", vendor_context="c"), "L2"),
    "incident_resolve": ("in_progress", dict(resolution_summary="s", fix_applied=True, service_restored=True), "L2"),
    "communication_update": ("in_progress", dict(recipients="IT_staff", message_text="m"), "L1"),
    "incident_close": ("resolved", dict(closure_notes="n"), "service_desk"),
    "incident_review": ("closed", dict(timeline="t", factors="f", actions=["a"]), "incident_manager"),
    "kb_update": ("closed", dict(kb_type="prevention", kb_title="t", kb_content="c"), "L3"),
}
# (sop, input to break, bad value, rule)
INVALID_ENUMS = [
    ("incident_categorize", "category", "network", "invalid_value"),
    ("incident_prioritize", "priority", "critical", "invalid_value"),
    ("incident_assign", "team", "incident_manager", "invalid_value"),
    ("incident_escalate", "escalate_to", "L1", "invalid_value"),
    ("vendor_engage", "contact_method", "fax", "invalid_value"),
    ("communication_update", "recipients", "it_staff", "invalid_value"),
    ("kb_update", "kb_type", "howto", "invalid_value"),
    ("incident_resolve", "fix_applied", False, "fix_not_applied"),
    ("incident_resolve", "service_restored", False, "service_not_restored"),
]
UNAUTHORISED = {
    "incident_log": "end_user", "incident_categorize": "facilities", "incident_prioritize": "devops", "incident_assign": "change_mgmt",
    "incident_diagnose": "automation", "incident_escalate": "change_mgmt", "vendor_engage": "service_desk", "incident_resolve": "change_mgmt",
    "communication_update": "end_user", "incident_close": "L2", "incident_review": "service_desk_manager", "kb_update": "L1",
}
WRONG_STATE = {
    "incident_log": "closed", "incident_categorize": "resolved", "incident_prioritize": "closed", "incident_assign": "closed",
    "incident_diagnose": "resolved", "incident_escalate": "pending_vendor", "vendor_engage": "open", "incident_resolve": "open",
    "incident_close": "in_progress", "incident_review": "in_progress", "kb_update": "resolved",
}


@pytest.mark.parametrize("sop", sorted(VALID))
def test_missing_input_halts(env, sop):
    status, inputs, role = VALID[sop]
    ref = new_incident(env, status)
    for name in inputs:
        broken = dict(inputs, incident_id=ref)
        del broken[name]
        env.halt("missing_input", sop, role=role, **broken)
    env.halt("missing_input", sop, role=role, **inputs)


@pytest.mark.parametrize("sop, name, value, rule", INVALID_ENUMS)
def test_invalid_enum_halts(env, sop, name, value, rule):
    status, inputs, role = VALID[sop]
    ref = new_incident(env, status)
    exc = env.halt(rule, sop, role=role, incident_id=ref, **dict(inputs, **{name: value}))
    assert repr(value) in str(exc)


@pytest.mark.parametrize("sop", sorted(UNAUTHORISED))
def test_unauthorised_role_halts(env, sop):
    status, inputs, _role = VALID[sop]
    ref = new_incident(env, status)
    exc = env.halt("role_not_authorised", sop, role=UNAUTHORISED[sop], incident_id=ref, **inputs)
    assert repr(UNAUTHORISED[sop]) in str(exc)


@pytest.mark.parametrize("sop", sorted(WRONG_STATE))
def test_wrong_prior_state_halts(env, sop):
    _dummy, inputs, role = VALID[sop]
    ref = new_incident(env, WRONG_STATE[sop])
    exc = env.halt("wrong_state", sop, role=role, incident_id=ref, **inputs)
    assert repr(WRONG_STATE[sop]) in str(exc)


def test_closure_authority_and_reporter_sod(env):
    ref = new_incident(env, "resolved", priority="high", reporter="im-bob")
    env.halt("authority_required", "incident_close", role="service_desk", actor="sd", incident_id=ref, closure_notes="n")
    env.halt("segregation_of_duties", "incident_close", role="incident_manager", actor="im-bob", incident_id=ref, closure_notes="n")
    assert env.run("incident_close", role="incident_manager", actor="im-zoe", incident_id=ref, closure_notes="n")["record"]["status"] == "closed"


def test_other_halts(env):
    ref = new_incident(env, "in_progress")
    env.halt("not_found", "incident_log", incident_id="9999999999999999", description="d")
    problem = new_problem(env)
    env.halt("wrong_entity", "incident_log", incident_id=problem, description="d")
    env.halt("priority_matrix_mismatch", "incident_prioritize", incident_id=ref, priority="low", urgency="high", impact="high", justification="j")
    env.halt("role_not_authorised", "simulation_run", role="L3", scenario="s", scope="drill", outcomes=["o"])
    env.halt("invalid_value", "simulation_run", scenario="s", scope="live", outcomes=["o"])
    env.halt("invalid_value", "entity_lookup", entity_type="incident", filters={"colour": "red"})
    env.halt("invalid_value", "entity_lookup", entity_type="incident", filters={"status": "new"})
    env.halt("invalid_value", "incident_identify", role="end_user", title="t", reporter="r", detection_source="monitoring_tool",
             affected_service="s", description="d")
    env.halt("unknown_sop", "incident_delete", incident_id=ref)
    closed = new_problem(env, "closed", title="old problem")
    env.halt("wrong_state", "problem_link_incident", role="L2", problem_id=closed, incident_id=ref)
    env.halt("wrong_state", "problem_resolve", role="L3", problem_id=new_problem(env, "open", title="fresh"), validation_evidence="e")


def test_escalation_path_halt(env):
    ref = new_incident(env, "escalated")  # with L2
    exc = env.halt("invalid_escalation_path", "incident_escalate", role="L2", incident_id=ref, escalate_to="L2", reason="r")
    assert "'L2'" in str(exc)


# --------------------------------------------------------------------------- check mode and audit failure


def test_check_mode_predicts_without_writing(env):
    ref = new_incident(env, "resolved")
    before_tickets, before_audit = env.snapshot(), len(env.ledger.query())
    result = env.run("incident_close", role="service_desk", actor="sd", incident_id=ref, closure_notes="n", check_mode=True)
    assert result["changed"] and result["record"]["status"] == "closed"
    assert [a["action"] for a in result["audit"]] == ["close"] and result["audit"][0]["seq"] == before_audit + 1
    assert env.snapshot() == before_tickets and len(env.ledger.query()) == before_audit
    created = env.run("incident_identify", role="service_desk", title="t", reporter="r", detection_source="user_report",
                      affected_service="s", description="d", check_mode=True)
    assert created["record"]["id"] is None and created["audit"][0]["ref_id"] == "(new)"
    assert env.snapshot() == before_tickets


def test_audit_preflight_failure_halts_before_the_platform(env, tmp_path):
    ref = new_incident(env, "in_progress")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    env.ledger = ledger_from_params({"ledger_path": str(blocker / "audit.sqlite3")})
    before = env.snapshot()
    with pytest.raises(AuditWriteError):
        env.run("communication_update", role="L1", incident_id=ref, recipients="IT_staff", message_text="m")
    assert env.snapshot() == before


def test_audit_append_failure_halts_with_audit_write_error(env):
    ref = new_incident(env, "in_progress")

    env.ledger = FailingLedger(env.ledger)
    with pytest.raises(AuditWriteError, match="communication_update: audit write failed after the " + env.platform.name + " change to incident"):
        env.run("communication_update", role="L1", incident_id=ref, recipients="IT_staff", message_text="m")


def test_entity_lookup_filters_before_the_limit(env):
    """Regression: the limit was applied before the filters (and to the oldest tickets), so recent records were never found."""
    first = new_incident(env)
    for _count in range(2):
        new_incident(env)
    last = new_incident(env)
    for ref in (first, last):
        result = env.run("entity_lookup", role="L2", entity_type="incident", filters={"id": ref}, limit=1)
        assert (result["match"], [m["id"] for m in result["matches"]]) == ("one", [ref])
    newest = env.run("entity_lookup", role="L2", entity_type="incident", filters={"title": "Storage latency"}, limit=2)
    assert newest["match"] == "many" and newest["matches"][0]["id"] == last


# --------------------------------------------------------------------------- the governed write (every adapter)
EVENT = {"event_id": "ev-lost", "service": "pve-node3", "source": "automated_alert", "alert_type": "HostDown", "severity": "critical",
         "correlation_key": "c0ffee00c0ffee00c0ffee00"}
KEY = EVENT["correlation_key"]


def creation_records(env, ref):
    return [r for r in env.ledger.query(ref_type="incident", ref_id=ref) if r["action"] in ("create", "identify")]


def test_lost_create_reply_is_recovered_in_the_same_run(env):
    """The platform applies the create, the reply is lost: the run finds the incident by its key instead of re-sending."""
    env.adapter.lose_next_create_reply(env.platform)
    result = env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high")
    ref = result["record"]["id"]
    assert result["changed"] is True and ref
    assert env.adapter.records_with_key(env.platform, KEY) == [ref]
    assert [r["action"] for r in result["audit"]] == ["create"]
    assert [r["seq"] for r in creation_records(env, ref)] == [result["audit"][0]["seq"]]
    assert result["audit"][0]["meta"].get("record_key") == creation_record_key(env.platform.name, "incident", ref)
    assert any("reply was lost" in warning for warning in env.warnings)
    again = env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high")
    assert (again["changed"], again["duplicate_of"], again["audit"]) == (False, ref, [])
    assert len(creation_records(env, ref)) == 1


def test_lost_create_reply_of_incident_identify(env):
    env.adapter.lose_next_create_reply(env.platform)
    inputs = dict(title="Mail down", reporter="jdoe", detection_source="user_report", affected_service="mail", description="no mail",
                  correlation_key=KEY)
    result = env.run("incident_identify", role="service_desk", actor="sd", **inputs)
    ref = result["record"]["id"]
    assert env.adapter.records_with_key(env.platform, KEY) == [ref]
    assert [r["action"] for r in creation_records(env, ref)] == ["identify"] and result["changed"] is True
    assert env.run("incident_identify", role="service_desk", actor="sd", **inputs)["changed"] is False


def test_missing_creation_record_is_back_filled_by_the_next_run(env):
    """A run that created the incident but died before its audit: the retry writes the creation record, once."""
    real = env.ledger
    env.ledger = FailingLedger(real, failures=1)
    with pytest.raises(AuditWriteError):
        env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high")
    env.ledger = real
    [ref] = env.adapter.records_with_key(env.platform, KEY)
    assert creation_records(env, ref) == []
    preview = env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high", check_mode=True)
    assert preview["changed"] is True and [r["meta"].get("backfilled") for r in preview["audit"]] == [True]
    assert creation_records(env, ref) == []
    retry = env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high")
    assert (retry["changed"], retry["duplicate_of"]) == (True, ref)
    [record] = retry["audit"]
    assert (record["action"], record["ref_id"], record["meta"]["backfilled"], record["meta"]["event_id"]) == ("create", ref, True, "ev-lost")
    assert record["fields"]["correlation_key"] == {"before": None, "after": KEY}
    assert creation_records(env, ref) == [record]
    third = env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high")
    assert (third["changed"], third["audit"]) == (False, [])
    assert env.adapter.records_with_key(env.platform, KEY) == [ref] and len(creation_records(env, ref)) == 1


def test_resolved_incident_gets_a_follow_up_time(env):
    """IMS resolved waits for the stability window (the platform's follow-up, e.g. OTOBO pending auto close+)."""
    ref = new_incident(env, "resolved")
    record = env.get("incident", ref)
    assert record["status"] == "resolved" and "pending_until" not in record
    env.check_mapping(record)
    closed = env.run("incident_close", role="service_desk", actor="sd", incident_id=ref, closure_notes="ok")
    env.check_mapping(closed["record"])


# --------------------------------------------------------------------------- governed write faults the fake can produce


@pytest.fixture
def fake_env(tmp_path):
    return Env(ADAPTERS["fake"](), tmp_path)


def test_record_not_readable_after_create_is_found_by_its_key(fake_env):
    fake_env.platform.unreadable_after_create = True
    result = fake_env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high")
    ref = result["record"]["id"]
    assert ref == "INC0000001" and fake_env.platform.creates == 1
    assert [r["ref_id"] for r in result["audit"]] == [ref]


def test_record_neither_readable_nor_findable_is_a_clear_error(fake_env):
    fake_env.platform.unreadable_after_create = True
    fake_env.platform.searchable = False
    with pytest.raises(NotFoundError, match="created but cannot be read back nor found by its correlation key .*NOT audited"):
        fake_env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high")
    assert fake_env.platform.creates == 1


def test_account_that_can_create_but_not_read_gets_its_creation_audited_and_fails(fake_env):
    """No read permission: the record is neither readable nor found; the id the platform replied with is audited."""
    fake_env.platform.unreadable_after_create = "identity"
    fake_env.platform.searchable = False
    with pytest.raises(PermissionDenied, match="INC0000001 was created \\(and audited\\) .*lacks read permission"):
        fake_env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high")
    [record] = fake_env.ledger.query(ref_id="INC0000001")
    assert record["action"] == "create" and record["meta"]["record_key"] == creation_record_key("fake", "incident", "INC0000001")


def test_created_record_not_findable_by_its_key_fails_after_the_audit(fake_env):
    """Every later search would answer nothing and each run would open a duplicate: fail, naming the permission."""
    fake_env.platform.searchable = False
    with pytest.raises(PermissionDenied, match="INC0000001 was created .*not found by its correlation key.*lacks read permission"):
        fake_env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high")
    assert [r["action"] for r in fake_env.ledger.query(ref_id="INC0000001")] == ["create"]


def test_lost_reply_without_a_key_is_not_re_sent(fake_env):
    fake_env.platform.lose_create_replies = 1
    with pytest.raises(Exception, match="without a correlation key .* not re-sent"):
        fake_env.run("change_request", role="devops", actor="dev", title="t", description="d", justification="j")
    assert fake_env.platform.creates == 1


def test_lost_reply_and_nothing_created_is_re_sent_once(fake_env):
    """The lookup finds nothing (the create did not land): one more create, one record, one audit."""
    platform = fake_env.platform
    original = platform.create

    def lost_before_apply(entity, values, note):
        platform.create = original
        raise AmbiguousWriteError("lost before the platform applied it")

    platform.create = lost_before_apply
    result = fake_env.run("monitoring_intake", role="automation", actor="eda", event=EVENT, impact="high")
    assert platform.creates == 1 and result["record"]["id"] == "INC0000001"
    assert any("sent the create once more" in warning for warning in fake_env.warnings)
    assert [r["action"] for r in result["audit"]] == ["create"]


def test_follow_up_times_reach_the_platform(fake_env):
    ref = new_incident(fake_env, "pending_vendor")
    engaged = parse_time(fake_env.platform.follow_ups[ref]) - parse_time(fake_env.get("incident", ref)["responded_at"])
    assert datetime.timedelta(hours=23) < engaged <= datetime.timedelta(hours=24, minutes=1)
    fake_env.run("incident_resolve", role="L2", actor="l2", incident_id=ref, resolution_summary="s", fix_applied=True, service_restored=True)
    window = parse_time(fake_env.platform.follow_ups[ref]) - parse_time(fake_env.get("incident", ref)["resolved_at"])
    assert window == datetime.timedelta(hours=24)
