# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One real ansible-playbook run of servicenow_incident / servicenow_incident_info against the ServiceNow simulator.

The playbook (generated below, one task per step) runs the style guide's sequence - check -> create -> info ->
check -> idempotent re-run -> update -> resolve -> close - then the negative cases (bad credentials, missing
close fields, empty correlation key, bad mapping key, 403 on a closed incident) and a delete. Around every step
it clears the simulator's request log (``DELETE /_sim/requests``) and reads it back, so the HTTP calls of each
task are asserted from the simulator's side, beside what the module reports in ``requests``. The connection
options come from ``module_defaults: group/labops.itsm.servicenow`` (OAuth password grant), so the token reuse
across tasks is asserted too: one token request for the whole play.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params

pytestmark = pytest.mark.integration

harness = pytest.importorskip("simulators.harness", reason="the simulator harness is not available")

ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
ANSIBLE_DOC = Path(sys.executable).parent / "ansible-doc"
KEY = "am:6f1c2a9e0b1d"
FIELD_TOKEN = "fld-tok-9c1e77"  # a ${VAR} of the mapping: sent, never shown
ALERT = {"status": "firing", "labels": {"alertname": "NodeDown", "instance": "pve03:9100", "severity": "critical"},
         "annotations": {"summary": "node pve03 is down", "description": "pve03 stopped answering"},
         "startsAt": "2026-05-01T10:00:00Z", "fingerprint": "6f1c2a9e0b1d2c3e"}
MAPPING = {
    "defaults": {"category": "hardware", "contact_type": "monitoring", "caller_id": "monitoring", "u_integration_token": "${SN_FIELD_TOKEN}"},
    "severity": {"critical": {"impact": 1, "urgency": 1}},
    "custom_fields": {"alert_source": "u_alert_source"},
    "templates": {"short_description": "{{ alert.labels.alertname }} {{ cmdb.name }}"},
}
CREATE = {"correlation_id": KEY, "correlation_display": "alertmanager", "severity": "critical", "assignment_group": "Infrastructure",
          "cmdb_ci": "pve03", "alert": ALERT, "cmdb": {"name": "pve03", "service": "virtualisation"},
          "custom_fields": {"alert_source": "prometheus"}}

# (name, module args, task keywords); module "info" = servicenow_incident_info
STEPS = [
    ("check_create", dict(CREATE), {"check_mode": True}),
    ("create", dict(CREATE), {}),
    ("info", {"_info": True, "correlation_id": KEY, "display_value": "all"}, {}),
    ("check_again", dict(CREATE), {"check_mode": True}),
    ("rerun", dict(CREATE), {}),
    ("update", {"correlation_id": KEY, "state": "in_progress", "assignment_group": "Platform", "urgency": "medium",
                "work_notes": "Investigating the storage path."}, {}),
    ("update_rerun", {"correlation_id": KEY, "state": "in_progress", "assignment_group": "Platform", "urgency": "medium",
                      "work_notes": "Investigating the storage path."}, {}),
    ("hold", {"correlation_id": KEY, "state": "on_hold", "hold_reason": "awaiting_vendor"}, {}),
    ("resolve", {"correlation_id": KEY, "state": "resolved", "close_code": "Solution provided", "close_notes": "Alert resolved at source",
                 "work_notes": "AlertManager reported resolved"}, {}),
    ("resolve_rerun", {"correlation_id": KEY, "state": "resolved", "close_code": "Solution provided",
                       "close_notes": "Alert resolved at source", "work_notes": "AlertManager reported resolved"}, {}),
    ("close", {"correlation_id": KEY, "state": "closed"}, {}),
    ("cancel_create", {"correlation_id": "am:cancel", "short_description": "Flapping alert", "impact": "low"}, {}),
    ("cancel", {"correlation_id": "am:cancel", "state": "canceled", "work_notes": "Flapping, not an incident"}, {}),
    # the POST's reply is lost after ServiceNow stored the incident: looked up by correlation_id, not sent again
    ("lost_reply", {"correlation_id": "am:lost", "short_description": "Lost reply", "impact": "low"},
     {"_fault": {"kind": "drop", "count": 1, "operations": ["POST incident"], "after_apply": True}}),
    ("lost_reply_rerun", {"correlation_id": "am:lost", "short_description": "Lost reply", "impact": "low"}, {}),
    # negative cases
    ("bad_credentials", {"correlation_id": KEY, "password": "wrong-pw", "token_cache": ""}, {"ignore_errors": True}),
    ("missing_close_fields", {"correlation_id": "am:second", "short_description": "Second", "state": "resolved"}, {"ignore_errors": True}),
    ("empty_key", {"correlation_id": "", "short_description": "never"}, {"ignore_errors": True}),
    ("bad_mapping", {"correlation_id": "am:third", "short_description": "x", "mapping": {"severity": {"urgent": {"impact": 1, "urgency": 1}}}},
     {"ignore_errors": True}),
    ("closed_is_read_only", {"correlation_id": KEY, "comments": "one more thing"}, {"ignore_errors": True}),
    # an audit ledger that cannot be written (below a regular file): the task halts before ServiceNow is changed
    ("unwritable_ledger", {"correlation_id": "am:noledger", "short_description": "never created", "ledger_path": "{{ blocked_ledger }}"},
     {"ignore_errors": True}),
    # admin deletes it (Basic auth): 1 GET + 1 DELETE; then absent again changes nothing
    ("delete", {"correlation_id": KEY, "state": "absent", "username": "admin", "password": "admin-pw", "client_id": "",
                "client_secret": ""}, {}),
    ("delete_rerun", {"correlation_id": KEY, "state": "absent", "username": "admin", "password": "admin-pw", "client_id": "",
                      "client_secret": ""}, {}),
]


def playbook(sim_url, out):
    tasks = []
    for name, args, keywords in STEPS:
        args, keywords = dict(args), dict(keywords)
        fault = keywords.pop("_fault", None)
        module = "labops.itsm.servicenow_incident_info" if args.pop("_info", False) else "labops.itsm.servicenow_incident"
        if module.endswith("servicenow_incident") and name not in ("bad_mapping",):
            args.setdefault("mapping", "{{ mapping_file }}")
        tasks += [
            {"name": f"{name}: clear the request log", "ansible.builtin.uri": {"url": f"{sim_url}/_sim/requests", "method": "DELETE"}},
        ]
        if fault:
            tasks.append({"name": f"{name}: inject a fault", "ansible.builtin.uri": {
                "url": f"{sim_url}/_sim/faults", "method": "POST", "body_format": "json", "body": fault, "status_code": [200, 201]}})
        tasks += [
            dict({"name": name, module: {k: v for k, v in args.items() if v is not None}, "register": name}, **keywords),
            {"name": f"{name}: read the request log", "ansible.builtin.uri": {"url": f"{sim_url}/_sim/requests", "return_content": True},
             "register": f"{name}_log"},
        ]
    results = "{" + ", ".join(f"'{n}': {{'result': {n}, 'log': {n}_log.json.requests}}" for n, dummy, dummy2 in STEPS) + "}"
    write = {"dest": str(out), "content": "{{ " + results + " | to_json }}", "mode": "0600"}
    tasks.append({"name": "Write the results", "ansible.builtin.copy": write})
    return [{
        "name": "servicenow_incident lifecycle",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "module_defaults": {"group/labops.itsm.servicenow": {
            "instance": sim_url, "client_id": "labops", "client_secret": "client-secret", "username": "itsm.bot",
            "password": "bot-pw"}},
        "tasks": tasks,
    }]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("servicenow")
    sim = harness.start_simulator("servicenow")
    try:
        mapping_file = tmp / "mapping.yml"
        mapping_file.write_text(yaml.safe_dump(MAPPING))
        out = tmp / "results.json"
        book = tmp / "lifecycle.yml"
        book.write_text(yaml.safe_dump(playbook(sim.url, out), sort_keys=False))
        blocker = tmp / "not-a-directory"
        blocker.write_text("a regular file\n")
        env = dict(os.environ, LABOPS_SERVICENOW_TOKEN_CACHE=str(tmp / "token-cache"), LABOPS_METRICS_DIR=str(tmp / "metrics"),
                   LABOPS_LEDGER_PATH=str(tmp / "ledger.sqlite3"), LABOPS_ACTOR="sn-integration", LABOPS_ACTOR_ROLE="service_desk",
                   LABOPS_LOG_FILE=str(tmp / "itsm.log"), SN_FIELD_TOKEN=FIELD_TOKEN, ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
                   ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_NOCOLOR="1")
        env.pop("LABOPS_LEDGER_BACKEND", None)
        for name in ("SN_HOST", "SN_INSTANCE", "SN_USERNAME", "SN_PASSWORD", "SN_PASSWORD_FILE", "SN_CLIENT_ID", "SN_CLIENT_SECRET",
                     "SN_API_KEY"):
            env.pop(name, None)
        command = [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-e", "ansible_python_interpreter=" + sys.executable,
                   "-e", json.dumps({"mapping_file": str(mapping_file), "blocked_ledger": str(blocker / "ledger.sqlite3")}), str(book)]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, "ansible-playbook failed:\n%s\n%s\nsimulator log:\n%s" % (
            proc.stdout[-8000:], proc.stderr[-3000:], sim.log()[-3000:])
        with ledger_from_params({"ledger_path": str(tmp / "ledger.sqlite3")}) as ledger:
            records, verification = ledger.query(), ledger.verify(expect_records=True)
        yield {"results": json.loads(out.read_text()), "state": sim.state(), "tmp": tmp, "stdout": proc.stdout, "ledger": records,
               "verification": verification}
    finally:
        sim.stop()


def ops(run, name):
    return [entry["operation"] for entry in run["results"][name]["log"]]


def result(run, name):
    return run["results"][name]["result"]


def test_check_mode_is_a_dry_run_with_the_exact_payload(run):
    check = result(run, "check_create")
    assert check["changed"] is True and check["created"] is True and check["found"] is False
    assert check["number"] is None and check["sys_id"] is None
    assert check["payload"] == {
        "category": "hardware", "contact_type": "monitoring", "caller_id": check["payload"]["caller_id"], "impact": "1", "urgency": "1",
        "short_description": "NodeDown pve03", "description": check["payload"]["description"], "assignment_group": "Infrastructure",
        "cmdb_ci": "pve03", "correlation_id": KEY, "correlation_display": "alertmanager", "u_alert_source": "prometheus",
        "u_integration_token": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}
    assert len(check["payload"]["caller_id"]) == 32  # the caller's user name was looked up (and cached)
    assert "pve03 stopped answering" in check["payload"]["description"]  # the built-in description template
    assert check["query"] == {"sysparm_input_display_value": "true"}  # group and CI go out by name
    # the token request, the correlation lookup and the one caller lookup; nothing written
    assert ops(run, "check_create") == ["POST oauth_token", "GET incident", "GET sys_user"]
    assert check["requests"] == 3


def test_create_costs_one_lookup_and_one_post(run):
    created, check = result(run, "create"), result(run, "check_create")
    assert ops(run, "create") == ["GET incident", "POST incident"]
    assert created["requests"] == 2
    assert created["changed"] is True and created["created"] is True
    assert created["payload"]["correlation_id"] == KEY
    assert created["number"].startswith("INC") and len(created["sys_id"]) == 32
    assert created["link"].endswith("/nav_to.do?uri=incident.do?sys_id=" + created["sys_id"])
    record = created["record"]
    assert (record["impact"], record["urgency"], record["priority"], record["state"]) == ("1", "1", "1", "1")
    assert record["caller_id"] == check["payload"]["caller_id"]
    assert len(record["assignment_group"]) == 32 and len(record["cmdb_ci"]) == 32
    # the dry run predicted what the real run sent, apart from the references it has now learnt
    assert {k: v for k, v in created["payload"].items() if k not in ("assignment_group", "cmdb_ci")} == \
        {k: v for k, v in check["payload"].items() if k not in ("assignment_group", "cmdb_ci")}


def test_info_reads_the_incident_with_one_get(run):
    info = result(run, "info")
    assert ops(run, "info") == ["GET incident"]
    (record,) = info["records"]
    assert record["number"]["value"] == result(run, "create")["number"]
    assert record["assignment_group"]["display_value"] == "Infrastructure"
    assert info["changed"] is False


@pytest.mark.parametrize("step", ["check_again", "rerun"])
def test_nothing_to_change_costs_one_get(run, step):
    again = result(run, step)
    assert again["changed"] is False and again["found"] is True and again["created"] is False
    assert again["payload"] is None
    assert ops(run, step) == ["GET incident"]
    assert again["requests"] == 1
    assert again["number"] == result(run, "create")["number"]


def test_update_and_journal_not_reposted(run):
    update, rerun = result(run, "update"), result(run, "update_rerun")
    assert ops(run, "update") == ["GET incident", "PATCH incident"]
    assert set(update["payload"]) == {"state", "assignment_group", "urgency", "work_notes"}
    assert update["state"] == "in_progress" and update["record"]["priority"] == "2"
    assert update["diff"]["before"]["urgency"] == "1" and update["diff"]["after"]["urgency"] == "2"
    assert rerun["changed"] is False and ops(run, "update_rerun") == ["GET incident"]


def test_hold_and_cancel(run):
    hold = result(run, "hold")
    assert ops(run, "hold") == ["GET incident", "PATCH incident"]
    assert hold["payload"] == {"state": "3", "hold_reason": "4"} and hold["state"] == "on_hold"
    assert ops(run, "cancel_create") == ["GET incident", "POST incident"]
    cancel = result(run, "cancel")
    assert ops(run, "cancel") == ["GET incident", "PATCH incident"]
    assert cancel["state"] == "canceled" and cancel["record"]["active"] == "false"


def test_mapping_secret_is_sent_but_never_shown(run):
    # servicenow_incident hides it (payload, record, diff); servicenow_incident_info reads the stored field back as
    # ServiceNow has it: the mapping's ${VAR} values are unknown to it
    dump = json.dumps({name: value for name, value in run["results"].items() if name != "info"})
    assert FIELD_TOKEN not in dump, dump[max(0, dump.find(FIELD_TOKEN) - 400):dump.find(FIELD_TOKEN) + 100]
    assert result(run, "info")["records"][0]["u_integration_token"]["value"] == FIELD_TOKEN  # it was sent
    assert FIELD_TOKEN not in run["stdout"].replace(json.dumps(result(run, "info")), "")


def test_resolve_and_close(run):
    resolve = result(run, "resolve")
    assert ops(run, "resolve") == ["GET incident", "PATCH incident"]
    assert resolve["state"] == "resolved" and resolve["record"]["resolved_at"]
    assert resolve["payload"] == {"state": "6", "close_code": "Solution provided", "close_notes": "Alert resolved at source",
                                  "work_notes": "AlertManager reported resolved"}
    assert result(run, "resolve_rerun")["changed"] is False and ops(run, "resolve_rerun") == ["GET incident"]
    close = result(run, "close")
    assert ops(run, "close") == ["GET incident", "PATCH incident"]
    assert close["payload"] == {"state": "7"} and close["record"]["active"] == "false"


def test_one_token_for_the_whole_play(run):
    assert run["state"]["tokens_issued"] == 1  # the bad-credentials step never got one


def test_negative_cases(run):
    bad = result(run, "bad_credentials")
    assert bad["failed"] and bad["error_class"] == "AuthError", bad
    assert "wrong-pw" not in json.dumps(run["results"])
    missing = result(run, "missing_close_fields")
    assert missing["failed"] and missing["error_class"] == "ValidationError"
    assert "state=resolved needs close_code and close_notes" in missing["msg"]
    assert ops(run, "missing_close_fields") == ["GET incident"]  # looked up, nothing written
    empty = result(run, "empty_key")
    assert empty["failed"] and "empty key is never searched" in empty["msg"] and ops(run, "empty_key") == []
    mapping = result(run, "bad_mapping")
    assert mapping["failed"] and "mapping.severity.urgent: unknown severity" in mapping["msg"] and ops(run, "bad_mapping") == []
    closed = result(run, "closed_is_read_only")
    assert closed["failed"] and closed["error_class"] == "PermissionDenied", closed
    assert ops(run, "closed_is_read_only") == ["GET incident", "PATCH incident"]


def test_delete(run):
    assert result(run, "delete")["changed"] is True and ops(run, "delete") == ["GET incident", "DELETE incident"]
    assert result(run, "delete_rerun")["changed"] is False and ops(run, "delete_rerun") == ["GET incident"]
    incidents = run["state"]["tables"]["incident"]
    assert [row["correlation_id"] for row in incidents if row["correlation_id"] in (KEY, "am:second", "am:third")] == []


def test_journal_entries_and_metrics(run):
    journal = [row for row in run["state"]["tables"].get("sys_journal_field", []) if row["element"] == "work_notes"]
    expected = ["AlertManager reported resolved", "Flapping, not an incident", "Investigating the storage path."]
    assert sorted(row["value"] for row in journal) == expected
    metrics = (run["tmp"] / "metrics" / "labops_itsm.prom").read_text()
    # counted by the governed write: create, cancel_create, lost_reply (the halted and the refused creates never sent a POST)
    assert 'itsm_ticket_creation_total{platform="servicenow",status="success"} 3' in metrics, metrics
    assert 'itsm_ticket_creation_total{platform="servicenow",status="failure"} 0' in metrics, metrics
    assert 'itsm_dry_run_total{platform="servicenow"} 1' in metrics
    lines = [json.loads(line) for line in (run["tmp"] / "itsm.log").read_text().splitlines()]
    assert [(line["platform"], line["ticket_id"], line["dry_run"]) for line in lines] == [
        ("servicenow", None, True), ("servicenow", result(run, "create")["number"], False),
        ("servicenow", result(run, "cancel_create")["number"], False), ("servicenow", result(run, "lost_reply")["number"], False)]
    assert lines[1]["correlation_key"] == KEY and lines[1]["actor"] == "sn-integration"


def test_ansible_doc_renders(tmp_path):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    for module in ("labops.itsm.servicenow_incident", "labops.itsm.servicenow_incident_info"):
        proc = subprocess.run([str(ANSIBLE_DOC), module], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "[WARNING]" not in proc.stderr, proc.stderr
        for text in ("correlation_id", "instance", "token_cache", "ATTRIBUTES", "EXAMPLES", "RETURN VALUES"):
            assert text in proc.stdout, (module, text)


def test_runs_as_a_separate_module_process_too(tmp_path):
    """The AnsiballZ path (labops_itsm_in_process=false): the module_utils it packs (mapping, metrics) import there."""
    book = tmp_path / "process.yml"
    out = tmp_path / "process.json"
    with harness.start_simulator("servicenow") as sim:
        book.write_text(yaml.safe_dump([{
            "hosts": "localhost", "connection": "local", "gather_facts": False,
            "module_defaults": {"group/labops.itsm.servicenow": {"instance": sim.url, "username": "itsm.bot", "password": "bot-pw"}},
            "tasks": [
                {"labops.itsm.servicenow_incident": {"correlation_id": "am:process", "severity": "high", "alert": ALERT}, "register": "created"},
                {"labops.itsm.servicenow_incident_info": {"correlation_id": "am:process"}, "register": "info"},
                {"ansible.builtin.copy": {"dest": str(out), "content": "{{ {'created': created, 'info': info} | to_json }}", "mode": "0600"}},
            ]}]))
        env = dict(os.environ, LABOPS_SERVICENOW_TOKEN_CACHE=str(tmp_path / "cache"), LABOPS_METRICS_DIR=str(tmp_path / "metrics"),
                   ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
        proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-vvv", "-i", "localhost,", "-e", "ansible_python_interpreter=" + sys.executable,
                               "-e", "labops_itsm_in_process=false", str(book)], env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        assert "running as a separate module process" in proc.stdout
        assert "running in the controller's task worker" not in proc.stdout
        data = json.loads(out.read_text())
    assert data["created"]["created"] is True and data["created"]["record"]["priority"] == "2"
    assert data["created"]["record"]["short_description"] == "NodeDown on pve03:9100: node pve03 is down"
    assert [r["number"] for r in data["info"]["records"]] == [data["created"]["number"]]


def test_every_change_is_audited_and_the_chain_verifies(run):
    number, cancel, lost = (result(run, name)["number"] for name in ("create", "cancel_create", "lost_reply"))
    trail = [(r["action"], r["ref_id"]) for r in run["ledger"]]
    assert trail == [
        ("create", number), ("update", number), ("update", number), ("update", number), ("resolve", number), ("close", number),
        ("create", cancel), ("update", cancel), ("close", cancel), ("create", lost), ("close", number)], trail
    assert run["verification"]["ok"] and run["verification"]["count"] == len(trail), run["verification"]
    records = run["ledger"]
    assert all(r["platform"] == "servicenow" and r["ref_type"] == "incident" and r["actor"] == "sn-integration"
               and r["role"] == "service_desk" for r in records)
    create = records[0]
    assert create["meta"]["record_key"] == "servicenow:create:incident:" + number
    assert create["meta"]["correlation_id"] == KEY and create["meta"]["sys_id"] == result(run, "create")["sys_id"]
    assert create["fields"]["short_description"] == {"before": None, "after": "NodeDown pve03"}
    assert FIELD_TOKEN not in json.dumps(records)  # the mapping's ${VAR} value never reaches the ledger
    update = records[1]["fields"]
    assert update["state"] == {"before": "new", "after": "in_progress"} and update["urgency"] == {"before": "1", "after": "2"}
    assert update["work_notes"] == {"before": None, "after": "Investigating the storage path."}
    assert records[2]["fields"] == {"state": {"before": "in_progress", "after": "on_hold"}, "hold_reason": {"before": "", "after": "4"}}
    assert records[3]["fields"] == {"work_notes": {"before": None, "after": "AlertManager reported resolved"}}
    assert records[4]["fields"] == {"state": {"before": "on_hold", "after": "resolved"},
                                    "close_code": {"before": "", "after": "Solution provided"},
                                    "close_notes": {"before": "", "after": "Alert resolved at source"}}
    assert records[5]["fields"] == {"state": {"before": "resolved", "after": "closed"}}
    assert records[8]["fields"]["state"]["after"] == "canceled" and records[8]["meta"]["canceled"] is True
    assert records[10]["meta"]["operation"] == "delete" and records[10]["fields"] == {"state": {"before": "closed", "after": "deleted"}}
    # what each task returned in `audit` is what the ledger holds
    returned = [r for name, dummy, dummy2 in STEPS for r in (result(run, name).get("audit") or [])]
    assert [(r["seq"], r["hash"]) for r in returned] == [(r["seq"], r["hash"]) for r in records]
    assert result(run, "check_create")["audit"] == [] and result(run, "rerun")["audit"] == []


def test_a_lost_create_reply_gives_one_incident_and_one_creation_record(run):
    lost = result(run, "lost_reply")
    assert ops(run, "lost_reply") == ["GET incident", "POST incident", "GET incident"]  # lookup, lost POST, lookup again
    assert lost["changed"] is True and lost["created"] is True
    assert len(lost["warnings"]) == 1 and "the create reply was lost, but incident " + lost["number"] in lost["warnings"][0]
    rows = [row for row in run["state"]["tables"]["incident"] if row["correlation_id"] == "am:lost"]
    assert [row["number"] for row in rows] == [lost["number"]]
    assert [r["action"] for r in run["ledger"] if r["ref_id"] == lost["number"]] == ["create"]
    rerun = result(run, "lost_reply_rerun")
    assert rerun["changed"] is False and rerun["audit"] == [] and ops(run, "lost_reply_rerun") == ["GET incident"]


def test_an_unwritable_ledger_halts_before_servicenow_changes(run):
    halted = result(run, "unwritable_ledger")
    assert halted["failed"] and halted["error_class"] == "AuditWriteError", halted
    assert halted["msg"].startswith("audit ledger ") and "not-a-directory" in halted["msg"] and "the governed action halts" in halted["msg"]
    assert "UNAUDITED" not in halted["msg"]  # halted before the change, not after it
    assert ops(run, "unwritable_ledger") == ["GET incident"]  # the lookup ran, no POST
    assert not [row for row in run["state"]["tables"]["incident"] if row["correlation_id"] == "am:noledger"]
