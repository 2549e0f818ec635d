# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every playbooks/sop/*.yml through a real ``ansible-playbook`` against one OTOBO simulator.

The tests share one simulator and one ledger (LABOPS_LEDGER_PATH in a tmp dir) and build on
each other in file order, like an incident's life: identify -> ... -> close -> review -> KB.
Every playbook runs at least once (the last test checks that), plus halts asserting the error text.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulators.harness import start_simulator

from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._policy import SOPS

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PLAYBOOKS = REPO / "playbooks" / "sop"
CALLBACKS = HERE / "targets" / "sop" / "callback_plugins"
# sim_config.json: the IMS dynamic fields and the ticket types Incident, Problem and RfC, so the playbooks
# run with ims_sop's default ticket_types (the untyped mode is covered by the unit tests)
SIM_CONFIG = json.loads((HERE / "targets" / "sop" / "sim_config.json").read_text())
RAN = set()
WORLD = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    sim = start_simulator("otobo", SIM_CONFIG)
    base = tmp_path_factory.mktemp("sop")
    WORLD.update(sim=sim, ledger=base / "audit.sqlite3", tmp=base)
    yield WORLD
    sim.stop()


def play(world, name, role="incident_manager", actor="im-bob", by_fqcn=False, expect_fail=False, **extra):
    """Run one SOP playbook; return the ims_sop task result (or the failure result)."""
    RAN.add(name)
    WORLD["runs"] = WORLD.get("runs", 0) + 1
    extra.update(ims_customer_user="monitoring", actor=actor, actor_role=role)
    vars_file = world["tmp"] / "vars-{0}.json".format(WORLD["runs"])
    vars_file.write_text(json.dumps(extra))
    results = world["tmp"] / "results-{0}.jsonl".format(WORLD["runs"])
    env = dict(os.environ, OTOBO_URL=world["sim"].url, OTOBO_USERNAME="alertbot", OTOBO_PASSWORD="s3cret",
               LABOPS_LEDGER_PATH=str(world["ledger"]), ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS), ANSIBLE_CALLBACKS_ENABLED="sop_results",
               SOP_RESULTS_FILE=str(results), ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1")
    target = "labops.itsm.sop." + name if by_fqcn else str(PLAYBOOKS / (name + ".yml"))
    proc = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), target, "-e", "@" + str(vars_file)],
                          env=env, capture_output=True, text=True, timeout=180, check=False)
    assert (proc.returncode != 0) == expect_fail, proc.stdout[-3000:] + proc.stderr[-2000:]
    return _task_result(results, expect_fail)


def _task_result(path, failed):
    """The failed task's result, or the ims_sop task's result (the assert and report tasks are skipped)."""
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if failed and entry["status"] == "failed":
            return entry["result"]
        if not failed and entry["task"] not in ("Check the required extra vars", "Report the result"):
            return entry["result"]
    raise AssertionError("no matching task result in " + str(path))


def otobo_type(world, ref_id):
    """The OTOBO ticket type of ticket number ``ref_id``, from the simulator's state."""
    return next(t["Type"] for t in world["sim"].state()["tickets"] if t["TicketNumber"] == ref_id)


def audit_actions(world, ref_id):
    with ledger_from_params({"ledger_path": str(world["ledger"])}) as ledger:
        return [r["action"] for r in ledger.query(ref_id=ref_id)]


# --------------------------------------------------------------------------- the incident's life


def test_identify_by_fqcn(world):
    result = play(world, "incident_identify", role="service_desk", actor="sd-anna", by_fqcn=True, title="Ceph degraded",
                  reporter="jdoe", detection_source="user_report", affected_service="ceph", description="HEALTH_WARN")
    assert result["changed"] and result["record"]["status"] == "open" and result["record"]["platform_state"] == "new"
    world["incident"] = result["record"]["id"]
    assert audit_actions(world, world["incident"]) == ["identify"]
    assert otobo_type(world, world["incident"]) == "Incident"


def test_log_categorize_prioritize(world):
    ref = world["incident"]
    assert play(world, "incident_log", role="L1", incident_id=ref, description="since 10:02", diagnosis="osd.3 slow")["changed"]
    result = play(world, "incident_categorize", role="L1", incident_id=ref, category="hardware", subcategory="disk")
    assert result["record"]["category"] == "hardware"
    result = play(world, "incident_prioritize", incident_id=ref, urgency="high", impact="medium", justification="research blocked")
    assert (result["record"]["priority"], result["record"]["severity_level"], result["record"]["platform_priority"]) == ("high", "S2", "4 high")


def test_assign_diagnose_escalate_vendor(world):
    ref = world["incident"]
    result = play(world, "incident_assign", role="service_desk", incident_id=ref, team="L1")
    assert [a["action"] for a in result["audit"]] == ["update", "notify"]
    assert play(world, "incident_diagnose", role="L1", incident_id=ref, diagnosis="smartctl errors", workaround="out osd.3")["record"]["workaround"]
    result = play(world, "incident_escalate", role="L1", incident_id=ref, escalate_to="L2", reason="hardware replacement")
    assert (result["record"]["status"], result["record"]["assigned_team"]) == ("escalated", "L2")
    result = play(world, "vendor_engage", role="L2", incident_id=ref, vendor="Dell", contact_method="API", vendor_context="disk RMA",
                  pending_hours=8)
    assert (result["record"]["status"], result["record"]["platform_state"]) == ("pending_vendor", "pending reminder")


def test_change_request_approve_coordinate(world):
    ref = world["incident"]
    change = play(world, "change_request", role="devops", actor="dev-carl", title="Replace osd.3 disk", description="swap",
                  justification="RMA arrived", incident_id=ref)["record"]["id"]
    failed = play(world, "change_approve", role="change_mgmt", actor="dev-carl", expect_fail=True, change_id=change, decision="approved",
                  justification="mine")
    assert "change_approve: segregation_of_duties: the requester of a change cannot approve or reject it (got 'dev-carl')" in failed["msg"]
    assert play(world, "change_approve", role="change_mgmt", actor="cab-dora", change_id=change, decision="approved",
                justification="standard")["record"]["status"] == "approved"
    result = play(world, "change_coordinate", role="change_mgmt", actor="cab-dora", incident_id=ref, change_id=change, justification="fix")
    assert result["record"]["change_link"] == change
    assert (otobo_type(world, change), otobo_type(world, ref)) == ("RfC", "Incident")


def test_resolve_communicate_close_review_kb(world):
    ref = world["incident"]
    failed = play(world, "incident_close", role="incident_manager", expect_fail=True, incident_id=ref, closure_notes="too early")
    assert "incident_close: wrong_state: incident status must be resolved (got 'pending_vendor')" in failed["msg"]
    assert failed["error_class"] == "PolicyViolation" and failed["rule"] == "wrong_state"
    result = play(world, "incident_resolve", role="L2", incident_id=ref, resolution_summary="disk replaced", fix_applied=True,
                  service_restored=True)
    assert result["record"]["status"] == "resolved"
    assert play(world, "communication_update", role="service_desk", incident_id=ref, recipients="end_users",
                message_text="Storage is back", message_type="resolution")["audit"][0]["action"] == "notify"
    failed = play(world, "incident_close", role="L1", actor="l1-gus", expect_fail=True, incident_id=ref, closure_notes="ok")
    assert "incident_close: role_not_authorised" not in failed["msg"]
    assert "incident_close: authority_required: closing a high-priority incident needs role incident_manager or service_desk_manager" \
        in failed["msg"]
    result = play(world, "incident_close", role="service_desk_manager", actor="sdm-hal", incident_id=ref, closure_notes="user confirmed")
    assert (result["record"]["status"], result["record"]["pir"], result["record"]["closure_complete"]) == ("closed", "required", False)
    failed = play(world, "incident_review", role="L3", expect_fail=True, incident_id=ref, timeline="t", factors="f", actions=["a"])
    assert "incident_review: role_not_authorised: role L3 may not run incident_review" in failed["msg"]
    result = play(world, "incident_review", incident_id=ref, timeline="10:02 alert, 14:00 fixed", factors="aged disks",
                  actions=["replace disks older than 5y"])
    assert result["record"]["closure_complete"] is True
    result = play(world, "kb_update", role="L3", incident_id=ref, kb_type="resolution", kb_title="Replacing a failed OSD disk",
                  kb_content="ceph osd out; replace; ceph osd in")
    assert result["kb_article_id"] == "KB-" + ref
    assert audit_actions(world, ref) == ["identify", "create", "update", "update", "update", "notify", "update", "escalate",
                                         "vendor_engagement", "update", "resolve", "notify", "close", "review", "kb_update"]


def test_check_mode_and_invalid_enum(world):
    failed = play(world, "communication_update", role="service_desk", expect_fail=True, incident_id=world["incident"],
                  recipients="everyone", message_text="m")
    assert "value of recipients must be one of: end_users, stakeholders, executives, IT_staff, got: everyone" in failed["msg"]
    failed = play(world, "incident_categorize", role="L1", expect_fail=True, category="hardware")
    assert "incident_categorize needs the extra vars incident_id, category" in failed["msg"]


# --------------------------------------------------------------------------- intake, lookup, tools, problems


def test_monitoring_intake_and_lookup(world):
    event = {"event_id": "0123abcd4567ef89", "service": "pve-node2", "source": "automated_alert", "alert_type": "HostDown",
             "severity": "critical", "occurred_at": "2025-06-11T10:00:00Z"}
    result = play(world, "monitoring_intake", role="automation", actor="eda", event=event, impact="high")
    assert (result["record"]["priority"], result["record"]["severity_level"]) == ("high", "S1")
    world["alert_incident"] = result["record"]["id"]
    again = play(world, "monitoring_intake", role="automation", actor="eda", event=event, impact="high")
    assert (again["changed"], again["duplicate_of"]) == (False, world["alert_incident"])
    result = play(world, "entity_lookup", role="L2", entity_type="incident", filters={"affected_service": "pve-node2"})
    assert (result["match"], result["matches"][0]["id"]) == ("one", world["alert_incident"])


def test_tool_usage_simulation_audit_log(world):
    result = play(world, "tool_usage", role="automation", actor="eda", tool="automation_script", action_summary="migrated 4 VMs",
                  outcome="success", incident_id=world["alert_incident"])
    assert result["audit"][0]["action"] == "tool_use"
    failed = play(world, "simulation_run", role="L3", expect_fail=True, scenario="ceph loss", scope="tabletop", outcomes=["o"])
    assert "simulation_run: role_not_authorised: role L3 may not run simulation_run" in failed["msg"]
    result = play(world, "simulation_run", scenario="ceph loss", scope="tabletop", outcomes=["runbook gap found"], simulation_id="SIM-7")
    assert result["audit"][0]["ref_id"] == "SIM-7"
    result = play(world, "audit_log", role="L2", audit_action="read", ref_type="incident", ref_id=world["alert_incident"],
                  audit_meta={"reason": "customer call"})
    assert result["audit"][0]["action"] == "read"


def test_problem_playbooks(world):
    result = play(world, "problem_create", role="L3", actor="l3-erin", title="Aged OSD disks", description="3 failures in 2 months",
                  detection_source="monitoring_tool", incident_ids=[world["incident"]])
    pid = result["record"]["id"]
    assert [a["action"] for a in result["audit"]] == ["create", "link"]
    assert play(world, "problem_update", role="L3", actor="l3-erin", problem_id=pid, problem_status="under_investigation",
                root_cause="disks past 5 years")["record"]["status"] == "under_investigation"
    result = play(world, "problem_link_incident", role="L2", problem_id=pid, incident_id=world["alert_incident"])
    assert result["record"]["incident_links"] == [world["incident"], world["alert_incident"]]
    assert play(world, "problem_workaround", role="L3", actor="l3-erin", problem_id=pid,
                workaround="out the OSD at first SMART error")["record"]["status"] == "known_error"
    assert play(world, "problem_resolve", role="L3", actor="l3-erin", problem_id=pid,
                validation_evidence="disks replaced, 30 days clean")["record"]["status"] == "resolved"
    failed = play(world, "problem_close", expect_fail=True, problem_id=pid)
    assert "problem_close: stability_window: a problem is closed 24 h after its resolution" in failed["msg"]
    result = play(world, "problem_close", problem_id=pid, stability_window_hours=0, closure_notes="stable")
    assert result["record"]["status"] == "closed"
    assert otobo_type(world, pid) == "Problem"


def test_every_sop_playbook_ran():
    assert sorted(p.stem for p in PLAYBOOKS.glob("*.yml")) == sorted(SOPS)
    assert RAN == set(SOPS)
