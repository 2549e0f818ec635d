# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real ansible-playbook runs of otobo_ticket / otobo_ticket_info against the OTOBO simulator.

The playbooks assert inside (``ansible.builtin.assert``) and write their registered results to a
JSON file (``ansible.builtin.copy``) that this driver cross-checks against the simulator state,
its request counters and the audit ledger. Only ansible-core content is used (no json callback).
"""


import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.integration

harness = pytest.importorskip("simulators.harness", reason="the OTOBO simulator harness (simulators/harness.py) is not available")

TARGET = Path(__file__).resolve().parent / "targets" / "otobo_ticket"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
ANSIBLE_DOC = Path(sys.executable).parent / "ansible-doc"


def correlation_key(fingerprint, starts_at):
    return hashlib.sha256(("alertmanager|%s|%s" % (fingerprint, starts_at)).encode()).hexdigest()[:24]


@pytest.fixture
def sim():
    simulator = harness.start_simulator("otobo")
    yield simulator
    simulator.stop()


@pytest.fixture
def sim_post_search():
    simulator = harness.start_simulator("otobo", {"post_search_route": True})
    yield simulator
    simulator.stop()


def ansible_env(sim, tmp_path):
    env = dict(os.environ)
    env.update(
        OTOBO_URL=sim.url,
        OTOBO_USERNAME="alertbot",
        OTOBO_PASSWORD="s3cret",
        OTOBO_VALIDATE_CERTS="false",
        LABOPS_LEDGER_PATH=str(tmp_path / "ledger.sqlite3"),
        LABOPS_ACTOR="integration-test",
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_CALLBACK_RESULT_FORMAT="yaml",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_NOCOLOR="1",
        LABOPS_METRICS_DIR=str(tmp_path / "metrics"),
        LABOPS_LOG_FILE=str(tmp_path / "itsm.jsonl"),
    )
    return env


IN_PROCESS = "running in the controller's task worker"
MODULE_PROCESS = "running as a separate module process"


def run_playbook(sim, tmp_path, playbook, in_process=None, **extra_vars):
    """Run one target playbook; return the results it wrote (its assertions already passed).

    ``in_process`` True/False sets labops_itsm_in_process and checks (-vvv) which path every
    labops.itsm task took; None leaves the default (in-process for this local inventory).
    """
    out = tmp_path / ("%s.results.json" % playbook)
    extra_vars["out"] = str(out)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    command = [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(TARGET / "playbooks" / playbook), "-e", json.dumps(extra_vars)]
    if in_process is not None:
        command += ["-vvv", "-e", json.dumps({"labops_itsm_in_process": in_process})]
    proc = subprocess.run(command, env=ansible_env(sim, tmp_path), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, "ansible-playbook failed:\n%s\n%s\nsimulator log:\n%s" % (
        proc.stdout[-8000:], proc.stderr[-3000:], sim.log()[-3000:])
    if in_process is not None:
        taken, other = (IN_PROCESS, MODULE_PROCESS) if in_process else (MODULE_PROCESS, IN_PROCESS)
        assert taken in proc.stdout and other not in proc.stdout
    return json.loads(out.read_text())


def ledger_records(tmp_path):
    with sqlite3.connect(str(tmp_path / "ledger.sqlite3")) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM audit_records ORDER BY seq")]


def ledger_actions(tmp_path):
    return [row["action"] for row in ledger_records(tmp_path)]


def tickets_with_key(sim, key):
    return [t for t in sim.state()["tickets"] if ("[ck:%s]" % key) in t["Title"]]


def request_counts(sim):
    return sim.state()["requests"]


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "module-process"])
def test_lifecycle(sim, tmp_path, in_process):
    key = correlation_key("3f9c2a7b1d0e4c55", "2025-06-11T10:00:00Z")
    results = run_playbook(sim, tmp_path, "lifecycle.yml", in_process=in_process, ck=key, queue="Infrastructure")

    (ticket,) = tickets_with_key(sim, key)
    assert ticket["TicketID"] == results["created"]["ticket_id"]
    assert ticket["State"] == "closed successful"
    assert ticket["Priority"] == "5 very high"  # the rejected priority changed nothing
    assert ticket["DynamicField"]["AlertFingerprint"] == "3f9c2a7b1d0e4c55"
    assert [a["Subject"] for a in ticket["Article"]] == ["HostDown pve-node1", "[RESOLVED] HostDown pve-node1"]
    assert len(sim.state()["tickets"]) == 2  # the welcome ticket and ours: the negative cases created nothing

    assert ledger_actions(tmp_path) == ["create", "notify", "close"]
    records = ledger_records(tmp_path)
    assert {r["ref_id"] for r in records} == {ticket["TicketNumber"]}
    dump = json.dumps(records) + json.dumps(results)
    assert "s3cret" not in dump
    assert "SessionID" not in json.dumps(results)
    assert_creation_metrics(tmp_path, ticket["TicketNumber"], key)


def assert_creation_metrics(tmp_path, ticket_number, key):
    """The node_exporter textfile and the JSON log: 1 check-mode dry run, the create, the create refused in Junk (6b);
    the create lacking values (6c) never reached OTOBO and is not counted."""
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families((tmp_path / "metrics" / "labops_itsm.prom").read_text()) for s in family.samples}
    assert samples[("itsm_ticket_creation_total", (("platform", "otobo"), ("status", "success")))] == 1
    assert samples[("itsm_ticket_creation_total", (("platform", "otobo"), ("status", "failure")))] == 1
    assert samples[("itsm_dry_run_total", (("platform", "otobo"),))] == 1
    assert samples[("itsm_ticket_creation_duration_seconds_count", (("platform", "otobo"),))] == 2
    log = (tmp_path / "itsm.jsonl").read_text()
    lines = [json.loads(line) for line in log.splitlines()]
    assert [(line["status"], line["dry_run"], line["ticket_id"]) for line in lines] == [
        ("dry_run", True, None), ("success", False, ticket_number), ("failure", False, None)]
    assert lines[1]["correlation_key"] == key and lines[2]["error_class"] == "PermissionDenied"
    assert "s3cret" not in log


@pytest.mark.parametrize("fault, creates, warning", [
    pytest.param({"kind": "http_status", "status": 503, "count": 1, "operations": ["TicketCreate"], "after_apply": True},
                 1, "reply was lost, but ticket", id="503-after-apply"),
    pytest.param({"kind": "drop", "count": 1, "operations": ["TicketCreate"], "after_apply": True},
                 1, "reply was lost, but ticket", id="drop-after-apply"),
    pytest.param({"kind": "http_status", "status": 502, "count": 1, "operations": ["TicketCreate"]},
                 2, "reply was lost and no ticket", id="502-before-apply"),
    pytest.param({"kind": "drop", "count": 1, "operations": ["TicketCreate"]},
                 2, "reply was lost and no ticket", id="drop-before-apply"),
])
def test_ambiguous_create_produces_exactly_one_ticket(sim, tmp_path, fault, creates, warning):
    key = correlation_key("aa11bb22cc33dd44", "2025-06-11T11:00:00Z")
    sim.inject(**fault)
    results = run_playbook(sim, tmp_path, "ambiguous.yml", ck=key, queue="Storage")

    (ticket,) = tickets_with_key(sim, key)
    assert len(sim.state()["tickets"]) == 2
    assert ticket["TicketID"] == results["created"]["ticket_id"]
    assert [a["Subject"] for a in ticket["Article"]] == ["DiskFull nas1", "[RESOLVED] DiskFull nas1"]
    assert request_counts(sim)["TicketCreate"] == creates
    assert results["created"]["changed"] is True and results["created"]["created"] is True
    warnings = results["created"]["warnings"]
    assert len(warnings) == 1 and warning in warnings[0], warnings
    assert ledger_actions(tmp_path) == ["create", "notify", "close"]


@pytest.mark.parametrize("fault, updates, warning", [
    pytest.param({"kind": "http_status", "status": 503, "count": 1, "operations": ["TicketUpdate"], "after_apply": True},
                 1, "was lost, but the change is in place", id="503-after-apply"),
    pytest.param({"kind": "drop", "count": 1, "operations": ["TicketUpdate"], "after_apply": True},
                 1, "was lost, but the change is in place", id="drop-after-apply"),
    pytest.param({"kind": "http_status", "status": 502, "count": 1, "operations": ["TicketUpdate"]},
                 2, "re-sent what was not applied", id="502-before-apply"),
])
def test_ambiguous_close_adds_exactly_one_article(sim, tmp_path, fault, updates, warning):
    key = correlation_key("aa11bb22cc33dd44", "2025-06-11T11:30:00Z")
    sim.inject(**fault)
    results = run_playbook(sim, tmp_path, "ambiguous.yml", ck=key, queue="Storage")

    (ticket,) = tickets_with_key(sim, key)
    assert ticket["State"] == "closed successful"
    assert [a["Subject"] for a in ticket["Article"]] == ["DiskFull nas1", "[RESOLVED] DiskFull nas1"]
    assert request_counts(sim)["TicketUpdate"] == updates
    warnings = results["closed"]["warnings"]
    assert len(warnings) == 1 and warning in warnings[0], warnings
    assert ledger_actions(tmp_path) == ["create", "notify", "close"]


def test_5xx_on_search_is_retried(sim, tmp_path):
    key = correlation_key("bb22cc33dd44ee55", "2025-06-11T12:00:00Z")
    sim.inject(kind="http_status", status=503, count=2, operations=["TicketSearch"])
    sim.inject(kind="http_status", status=504, count=1, operations=["TicketGet"])
    results = run_playbook(sim, tmp_path, "ambiguous.yml", ck=key, queue="Platform")

    assert len(tickets_with_key(sim, key)) == 1
    counts = request_counts(sim)
    # create: 2 x 503 + 1 search, then the new ticket is read back by its key, the way the next run looks for it
    # (a ticket the agent cannot find would mean a duplicate every run); each of the three later tasks: 1 search;
    # no retried or repeated create
    assert counts["TicketSearch"] == 7
    assert counts["TicketCreate"] == 1
    # create: 504 + the read back through the key lookup; later tasks: verification read each, plus the read back
    # after the close
    assert counts["TicketGet"] == 6
    assert results["created"].get("warnings", []) == []
    assert sim.state()["faults"] == []
    assert ledger_actions(tmp_path) == ["create", "notify", "close"]


@pytest.mark.parametrize("operation", ["TicketCreate", "TicketSearch", "TicketGet"])
def test_auth_expiry_mid_run_relogs_in_once(sim, tmp_path, operation):
    key = correlation_key("cc33dd44ee55ff66", "2025-06-11T13:00:00Z")
    sim.inject(kind="auth_expiry", count=1, operations=[operation])
    results = run_playbook(sim, tmp_path, "ambiguous.yml", ck=key, queue="Infrastructure")

    assert len(tickets_with_key(sim, key)) == 1
    counts = request_counts(sim)
    assert counts["SessionCreate"] == 2  # one cached session for all four tasks, plus exactly one re-login
    assert counts["TicketCreate"] == (2 if operation == "TicketCreate" else 1)
    assert results["created"].get("warnings", []) == []
    assert ledger_actions(tmp_path) == ["create", "notify", "close"]


def test_post_search_route_and_correlation_field(sim_post_search, tmp_path):
    sim = sim_post_search
    key = correlation_key("dd44ee55ff660011", "2025-06-11T14:00:00Z")
    results = run_playbook(sim, tmp_path, "search_route.yml", ck=key, queue="Platform")

    tickets = [t for t in sim.state()["tickets"] if t["DynamicField"].get("LabopsCorrelationKey") == key]
    assert [t["TicketID"] for t in tickets] == [results["created"]["ticket_id"]]
    assert tickets[0]["Priority"] == "5 very high"
    counts = request_counts(sim)
    assert counts["TicketSearchPOST"] >= 4
    # Every lookup asks the dynamic-field route first; the GET title search only follows when that found
    # nothing (the check-mode and the real create), so a ticket without the field still cannot be duplicated.
    assert counts.get("TicketSearch", 0) == 2
    assert ledger_actions(tmp_path) == ["create", "update", "update"]


def test_get_route_dynamic_field_trap(sim, tmp_path):
    keys = [correlation_key("ee55ff6600112233", "2025-06-11T15:0%d:00Z" % i) for i in range(3)]
    decoy = correlation_key("ff66001122334455", "2025-06-11T16:00:00Z")
    results = run_playbook(sim, tmp_path, "df_trap.yml", keys=keys, decoy=decoy, queue="Platform")

    by_id = {t["TicketID"]: t for t in sim.state()["tickets"]}
    assert results["updated"] == results["ids"][1]
    for index, ticket_id in enumerate(results["ids"]):
        ticket = by_id[ticket_id]
        assert ticket["DynamicField"]["LabopsCorrelationKey"] == keys[index]
        assert ticket["Priority"] == ("4 high" if index == 1 else "3 normal")
        assert len(ticket["Article"]) == (2 if index == 1 else 1)
    decoy_ticket = by_id[results["decoy"]]
    assert decoy_ticket["Priority"] == "3 normal" and len(decoy_ticket["Article"]) == 1
    # dynamic-field criteria never went out on the stock GET route
    log = sim.log()
    assert "GET " in log
    assert not [line for line in log.splitlines() if "GET " in line and "DynamicField_" in line]


def test_ansible_doc_renders(tmp_path):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    for module in ("labops.itsm.otobo_ticket", "labops.itsm.otobo_ticket_info"):
        proc = subprocess.run([str(ANSIBLE_DOC), module], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "[WARNING]" not in proc.stderr, proc.stderr
        for text in ("correlation_key", "search_route", "correlation_field", "ATTRIBUTES", "EXAMPLES", "RETURN VALUES"):
            assert text in proc.stdout, text
