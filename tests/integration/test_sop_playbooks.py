# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Every playbooks/sop/*.yml (the labops.itsm.sop role) and the alert playbooks through a real ``ansible-playbook``.

The SOP tests share one OTOBO simulator and one ledger (LABOPS_LEDGER_PATH in a tmp dir) and build on
each other in file order, like an incident's life: identify -> ... -> close -> review -> KB.
Every playbook runs at least once (the last test checks that), plus halts asserting the error text.
The inputs are the role's ``sop_<input>`` extra vars; the platform options come from
``itsm_platform_options`` (as an inventory sets them), the password from OTOBO_PASSWORD.
"""


import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._policy import SOPS
from simulators.harness import start_simulator

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PLAYBOOKS = REPO / "playbooks" / "sop"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
PASSWORD = "s3cret"  # the simulated agent's; from the environment only, it must show up nowhere
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


def run_playbook(target, extra, results, env=None, inventory=None):
    """ansible-playbook ``target`` with ``extra`` as an extra-vars file; the callback writes every task result to ``results``."""
    vars_file = results.with_suffix(".vars.json")
    vars_file.write_text(json.dumps(extra))
    env = dict(os.environ, OTOBO_USERNAME="alertbot", OTOBO_PASSWORD=PASSWORD, ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS),
               ANSIBLE_CALLBACKS_ENABLED="sop_results", SOP_RESULTS_FILE=str(results), ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_NOCOLOR="1", **(env or {}))
    env.pop("OTOBO_URL", None)  # the URL comes from itsm_platform_options, as an inventory sets it
    command = [str(ANSIBLE_PLAYBOOK), target, "-e", "@" + str(vars_file)] + (["-i", str(inventory)] if inventory else [])
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180, check=False)
    assert PASSWORD not in proc.stdout + proc.stderr + (results.read_text() if results.exists() else "")
    return proc


def play(world, name, role="incident_manager", actor="im-bob", by_fqcn=False, expect_fail=False, **inputs):
    """Run one SOP playbook with its inputs as ``sop_<input>`` extra vars; return the ims_sop task result (or the failure)."""
    RAN.add(name)
    WORLD["runs"] = WORLD.get("runs", 0) + 1
    extra = {"sop_" + key: value for key, value in inputs.items()}
    extra.update(sop_actor=actor, sop_actor_role=role,
                 itsm_platform_options={"otobo": {"url": world["sim"].url, "customer_user": "monitoring"}})
    results = world["tmp"] / "results-{0}.jsonl".format(WORLD["runs"])
    target = "labops.itsm.sop." + name if by_fqcn else str(PLAYBOOKS / (name + ".yml"))
    proc = run_playbook(target, extra, results, env={"LABOPS_LEDGER_PATH": str(world["ledger"])})
    assert (proc.returncode != 0) == expect_fail, proc.stdout[-3000:] + proc.stderr[-2000:]
    return _task_result(results, name, expect_fail)


def _task_result(path, sop, failed):
    """The failed task's result, or the result of the role's ims_sop task (named after the SOP)."""
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if failed and entry["status"] == "failed":
            return entry["result"]
        task = entry["task"].split(" : ", 1)[-1]  # ansible-core 2.21 prefixes the role ("labops.itsm.sop : Run ...")
        if not failed and task.startswith("Run IMS SOP") and task.endswith(f"({sop})"):
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
    assert "value of sop_recipients must be one of: end_users, stakeholders, executives, IT_staff, got: everyone" in failed["msg"]
    # the role's entry point validates the inputs before the module runs
    failed = play(world, "incident_categorize", role="L1", expect_fail=True, category="hardware")
    assert "missing required arguments: sop_incident_id" in failed["msg"]
    assert failed["validate_args_context"]["argument_spec_name"] == "incident_categorize"
    failed = play(world, "incident_escalate", role="L1", expect_fail=True, incident_id=world["incident"], escalate_to="L9", reason="r")
    assert "value of sop_escalate_to must be one of: L2, L3, incident_manager, change_mgmt, facilities, devops, got: L9" in failed["msg"]


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


# --------------------------------------------------------------------------- connection options from the inventory


@pytest.fixture(scope="module")
def custom_sim():
    """An OTOBO whose web service is not GenericTicketConnectorREST under /otobo."""
    sim = start_simulator("otobo", dict(SIM_CONFIG, webservice="LabopsIMS", path_prefix="/itsm/nph-genericinterface.pl"))
    yield sim
    sim.stop()


def lab_inventory(tmp_path, sim):
    """The repo's inventory with its OTOBO options pointed at ``sim`` (web service, path prefix, timeout, customer user)."""
    inventory = tmp_path / "inventory"
    shutil.copytree(REPO / "inventory", inventory)
    group_vars = inventory / "group_vars" / "all" / "itsm.yml"
    data = yaml.safe_load(group_vars.read_text())
    data["itsm_platform_options"]["otobo"].update(url=sim.url, webservice="LabopsIMS", path_prefix="/itsm", timeout=20,
                                                  validate_certs=False, customer_user="monitoring")
    group_vars.write_text(yaml.safe_dump(data))
    return inventory


def test_sop_playbook_takes_every_connection_option_from_the_inventory(custom_sim, tmp_path):
    RAN.add("incident_identify")
    extra = dict(sop_title="Printer on fire", sop_reporter="jdoe", sop_detection_source="user_report", sop_affected_service="print",
                 sop_description="smoke", sop_actor="sd-anna", sop_actor_role="service_desk", sop_queue="Platform")
    results = tmp_path / "results.jsonl"
    proc = run_playbook("labops.itsm.sop.incident_identify", extra, results, inventory=lab_inventory(tmp_path, custom_sim),
                        env={"LABOPS_LEDGER_PATH": str(tmp_path / "audit.sqlite3")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    record = _task_result(results, "incident_identify", False)["record"]
    ticket = next(t for t in custom_sim.state()["tickets"] if t["TicketNumber"] == record["id"])
    assert (ticket["Queue"], ticket["CustomerUserID"], ticket["DynamicField"]["IMSStatus"]) == ("Platform", "monitoring", "open")


def _alert_event(status, fingerprint="a1b2c3d4e5f60718", ends_at=None):
    alert = {"status": status, "fingerprint": fingerprint, "startsAt": "2026-11-30T08:00:00Z",
             "labels": {"alertname": "PveGuestDown", "name": "erp-db-02", "severity": "critical", "team": "platform"},
             "annotations": {"summary": "Proxmox guest erp-db-02 is down"}}
    if ends_at:
        alert["endsAt"] = ends_at
    return {"event": {"alert": alert}}


def test_alert_playbooks_take_platform_and_options_from_the_inventory(custom_sim, tmp_path):
    """incident_open / incident_resolve with the platform, its options and the queue from the inventory only."""
    inventory = lab_inventory(tmp_path, custom_sim)
    env = {"LABOPS_LEDGER_PATH": str(tmp_path / "alert-audit.sqlite3")}
    opened = run_playbook(str(REPO / "playbooks" / "incident_open.yml"), _alert_event("firing"), tmp_path / "open.jsonl",
                          env=env, inventory=inventory)
    assert opened.returncode == 0, opened.stdout[-3000:] + opened.stderr[-2000:]
    tickets = [t for t in custom_sim.state()["tickets"] if "PveGuestDown erp-db-02" in t["Title"]]
    assert len(tickets) == 1 and tickets[0]["Queue"] == "Platform" and tickets[0]["CustomerUserID"] == "monitoring"
    assert tickets[0]["DynamicField"]["IMSStatus"] == "open"
    # issue 6 B4: the whole resolve playbook (acknowledge + resolve an open incident) costs at most 6 requests and
    # opens no session of its own (the open playbook's session is reused from the cache)
    custom_sim.clear_requests()
    resolved = run_playbook(str(REPO / "playbooks" / "incident_resolve.yml"), _alert_event("resolved", ends_at="2026-11-30T08:05:00Z"),
                            tmp_path / "resolve.jsonl", env=env, inventory=inventory)
    assert resolved.returncode == 0, resolved.stdout[-3000:] + resolved.stderr[-2000:]
    operations = [entry["operation"] for entry in custom_sim.requests()]
    assert len(operations) <= 6 and "SessionCreate" not in operations, operations
    ticket = next(t for t in custom_sim.state()["tickets"] if t["TicketNumber"] == tickets[0]["TicketNumber"])
    assert ticket["DynamicField"]["IMSStatus"] == "resolved", resolved.stdout[-3000:]
    assert ticket["State"] == "pending auto close+"  # contract item 5: IMS resolved on OTOBO
    with ledger_from_params({"ledger_path": env["LABOPS_LEDGER_PATH"]}) as ledger:
        assert [r["action"] for r in ledger.query(ref_id=ticket["TicketNumber"])] == ["create", "update", "resolve"]


def test_ansible_doc_documents_every_sop_entry_point():
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK.parent / "ansible-doc"), "-t", "role", "--json", "labops.itsm.sop"],
                          capture_output=True, text=True, timeout=120, check=True)
    entry_points = json.loads(proc.stdout)["labops.itsm.sop"]["entry_points"]
    assert sorted(entry_points) == sorted(SOPS)
    assert entry_points["incident_assign"]["options"]["sop_team"]["required"] is True


def test_every_sop_playbook_ran():
    assert sorted(p.stem for p in PLAYBOOKS.glob("*.yml")) == sorted(SOPS)
    assert RAN == set(SOPS)


def test_alert_batch_playbook_handles_a_spool_batch(custom_sim, tmp_path):
    """playbooks/alert_batch.yml with the source's batch event: the action plugin's enrichment from the inventory, outcomes in the spool."""
    from ansible_collections.labops.itsm.plugins.module_utils._spool import RetryPolicy, open_spool

    inventory = lab_inventory(tmp_path, custom_sim)
    spool_path = tmp_path / "spool.sqlite3"
    firing = _alert_event("firing", fingerprint="b1b2c3d4e5f60718")["event"]
    resolved_unknown = _alert_event("resolved", fingerprint="c1b2c3d4e5f60718")["event"]
    for event in (firing, resolved_unknown):
        from ansible_collections.labops.itsm.plugins.filter.correlation_key import correlation_key
        event["correlation_key"] = correlation_key(event["alert"]["fingerprint"], event["alert"]["startsAt"])
    with open_spool("sqlite", str(spool_path)) as spool:
        spool.accept([firing, resolved_unknown])
        batch_id, entries = spool.claim(10, RetryPolicy())
    batch = {"id": batch_id, "count": len(entries), "entries": [e.id for e in entries], "spool": {"backend": "sqlite", "path": str(spool_path)}}
    proc = run_playbook(str(REPO / "playbooks" / "alert_batch.yml"), {"event": {"intake_batch": batch}}, tmp_path / "batch.jsonl",
                        env={"LABOPS_LEDGER_PATH": str(tmp_path / "batch-audit.sqlite3")}, inventory=inventory)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "created=1" in proc.stdout and "not_found=1" in proc.stdout
    with open_spool("sqlite", str(spool_path)) as spool:
        stored = {e.correlation_key: e for e in spool.list()}
    assert {e.state for e in stored.values()} == {"done"}
    ticket = stored[firing["correlation_key"]].result["ticket"]
    found = next(t for t in custom_sim.state()["tickets"] if t["TicketNumber"] == ticket)
    assert found["Queue"] == "Platform" and found["Title"].startswith("[S1] PveGuestDown erp-db-02")  # itsm_team_queues; S1 via the CMDB


def test_alert_batch_playbook_releases_the_batch_on_failure(tmp_path):
    """A batch whose spool cannot be read fails the run; the rescue releases what the batch owns."""
    from ansible_collections.labops.itsm.plugins.module_utils._spool import RetryPolicy, open_spool

    spool_path = tmp_path / "spool.sqlite3"
    event = _alert_event("firing", fingerprint="d1b2c3d4e5f60718")["event"]
    event["correlation_key"] = "d" * 24
    with open_spool("sqlite", str(spool_path)) as spool:
        spool.accept([event])
        batch_id, entries = spool.claim(10, RetryPolicy())
    batch = {"id": batch_id, "count": 1, "entries": [entries[0].id], "spool": {"backend": "sqlite", "path": str(spool_path)}}
    # no ticket platform in the inventory (no -i): the entry fails, the run fails, nothing is left running
    proc = run_playbook(str(REPO / "playbooks" / "alert_batch.yml"), {"event": {"intake_batch": batch}}, tmp_path / "fail.jsonl",
                        env={"LABOPS_LEDGER_PATH": str(tmp_path / "audit.sqlite3")})
    assert proc.returncode != 0
    assert "1 of 1 alert event(s) failed" in proc.stdout, proc.stdout[-3000:]
    with open_spool("sqlite", str(spool_path)) as spool:
        assert [e.state for e in spool.list()] == ["failed"]
