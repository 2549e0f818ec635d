# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Seed 002 "halt on audit write failure" through real ``ansible-playbook`` runs.

otobo_ticket and ims_sop run against the OTOBO simulator with a ledger that cannot be written
(SQLite below a regular file, SQLite file with the immutable attribute, PostgreSQL that is down):
the task fails with an explicit AuditWriteError and OTOBO is untouched, because the ledger
preflight runs before the platform change. With a working PostgreSQL ledger the records are
written and ``ims_audit state=verify`` verifies the chain. The playbooks write their task
result to a JSON file (block/rescue), so nothing here parses the callback's text output.
"""


import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.tests.pg import postgresql_dsn, postgresql_server  # noqa: F401 pylint: disable=unused-import
from simulators.harness import start_simulator

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
PLAYBOOKS = HERE / "targets" / "audit_failures" / "playbooks"
# the IMS dynamic fields and the ticket types Incident, Problem, RfC (shared with the SOP playbook tests)
SIM_CONFIG = json.loads((HERE / "targets" / "sop" / "sim_config.json").read_text())
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
CK = "0123456789abcdef01234567"
PG_PASSWORD = "Pg-s3cret-4f9a2c"  # must never show up in any output
HALTS = "the governed action halts"
INCIDENT = dict(title="Storage latency", reporter="jdoe", detection_source="user_report", affected_service="ceph", description="slow")


@pytest.fixture(scope="module")
def sim():
    simulator = start_simulator("otobo", SIM_CONFIG)
    yield simulator
    simulator.stop()


@pytest.fixture
def fresh_sim(sim):
    sim.reset()
    return sim


class Run:
    """One finished ansible-playbook run: return code, output and the task result the playbook wrote."""

    def __init__(self, proc, out):
        self.rc = proc.returncode
        self.output = proc.stdout + proc.stderr
        data = json.loads(out.read_text()) if out.exists() else {}
        self.failed = data.get("failed")
        self.task = data.get("task")
        self.result = data.get("result") or {}
        self.verification = data.get("verification")
        self.raw = out.read_text() if out.exists() else ""

    def __repr__(self):
        return "rc=%s failed=%s result=%s\n%s" % (self.rc, self.failed, json.dumps(self.result)[:3000], self.output[-4000:])


def play(sim, tmp_path, playbook, ledger_env, **extra):
    """Run ``playbook`` with the ledger configured only through ``ledger_env`` (LABOPS_LEDGER_*)."""
    out = tmp_path / ("%s-%d.json" % (playbook, len(list(tmp_path.glob(playbook + "-*.json")))))
    extra["out"] = str(out)
    env = dict(os.environ)
    for name in ("LABOPS_LEDGER_BACKEND", "LABOPS_LEDGER_PATH", "LABOPS_LEDGER_DSN"):
        env.pop(name, None)
    env.update(ledger_env)
    env.update(OTOBO_URL=sim.url, OTOBO_USERNAME="alertbot", OTOBO_PASSWORD="s3cret", LABOPS_ACTOR="audit-test",
               LABOPS_ACTOR_ROLE="service_desk", ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_RETRY_FILES_ENABLED="0",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    vars_file = out.with_suffix(".vars.json")
    vars_file.write_text(json.dumps(extra))
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-v", str(PLAYBOOKS / (playbook + ".yml")), "-e", "@" + str(vars_file)],
                          env=env, capture_output=True, text=True, timeout=180, check=False)
    return Run(proc, out)


def tickets(sim):
    """Ticket ID -> (state, IMSStatus, article count) of every simulated ticket."""
    return {t["TicketID"]: (t["State"], t["DynamicField"].get("IMSStatus"), len(t["Article"])) for t in sim.state()["tickets"]}


def writes(sim):
    requests = sim.state()["requests"]
    return {op: requests.get(op, 0) for op in ("TicketCreate", "TicketUpdate")}


def assert_halted(run, sim, before_tickets, backend, location):
    """The module failed with an explicit AuditWriteError naming the ledger, and OTOBO did not change."""
    assert run.rc != 0 and run.failed is True, run
    assert run.task in ("Governed create", "Governed SOP"), run
    assert run.result.get("error_class") == "AuditWriteError" and run.result.get("backend") == backend, run
    msg = run.result["msg"]
    assert msg.startswith("audit ledger ") and location in msg and location in run.output, run
    assert "UNAUDITED" not in msg, run  # halted before the change, not after it
    assert tickets(sim) == before_tickets, "a halted governed action changed OTOBO"
    assert writes(sim) == {"TicketCreate": 0, "TicketUpdate": 0}, sim.state()["requests"]


def below_a_file(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a regular file\n")
    return blocker / "ledger.sqlite3"


def immutable_ledger(tmp_path):
    """A valid ledger file with the immutable attribute (root can write 0444 files, but not +i ones)."""
    path = tmp_path / "immutable" / "ledger.sqlite3"
    with ledger_from_params({"ledger_path": str(path)}) as ledger:
        ledger.append("tool_use", "incident", "setup", "audit-test")
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    proc = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip("the filesystem of %s has no immutable attribute: %s" % (path, proc.stderr.strip()))
    return path


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def unwritable_sqlite(request, tmp_path):
    """LABOPS_LEDGER_PATH of an SQLite ledger that cannot be written, even by root."""
    path = below_a_file(tmp_path) if request.param == "below_a_file" else immutable_ledger(tmp_path)
    yield {"LABOPS_LEDGER_PATH": str(path)}
    if request.param == "immutable":
        subprocess.run(["chattr", "-i", str(path)], check=False)


# --------------------------------------------------------------------------- (a) otobo_ticket, unwritable SQLite


@pytest.mark.parametrize("unwritable_sqlite", ["below_a_file", "immutable"], indirect=True)
def test_otobo_ticket_halts_on_an_unwritable_sqlite_ledger(fresh_sim, tmp_path, unwritable_sqlite):
    before = tickets(fresh_sim)
    run = play(fresh_sim, tmp_path, "otobo_ticket", unwritable_sqlite, ck=CK)
    path = unwritable_sqlite["LABOPS_LEDGER_PATH"]
    assert_halted(run, fresh_sim, before, "sqlite", path if "immutable" in path else os.path.dirname(path))
    if "immutable" in path:
        assert run.result["msg"].startswith("audit ledger preflight failed (sqlite %s)" % path) and HALTS in run.result["msg"], run
    # the correlation lookup ran (a read), the create did not
    assert fresh_sim.state()["requests"].get("TicketSearch", 0) >= 1


def test_path_below_a_file_message_has_the_documented_wording(fresh_sim, tmp_path):
    run = play(fresh_sim, tmp_path, "otobo_ticket", {"LABOPS_LEDGER_PATH": str(below_a_file(tmp_path))}, ck=CK)
    assert run.result.get("error_class") == "AuditWriteError", run
    assert "sqlite" in run.result["msg"] and run.result["msg"].endswith(HALTS + " (seed 002: halt on audit write failure)"), run


# --------------------------------------------------------------------------- (b) otobo_ticket, PostgreSQL down


@pytest.mark.parametrize("dsn_format", [
    "postgresql://labops:{password}@127.0.0.1:{port}/ims_audit?connect_timeout=5",
    "host=127.0.0.1 port={port} user=labops password={password} dbname=ims_audit connect_timeout=5",
])
def test_otobo_ticket_halts_when_postgresql_is_down(fresh_sim, tmp_path, dsn_format):
    dsn = dsn_format.format(password=PG_PASSWORD, port=free_port())
    before = tickets(fresh_sim)
    run = play(fresh_sim, tmp_path, "otobo_ticket", {"LABOPS_LEDGER_BACKEND": "postgresql", "LABOPS_LEDGER_DSN": dsn}, ck=CK)
    assert_halted(run, fresh_sim, before, "postgresql", "127.0.0.1")
    assert run.result["msg"].startswith("audit ledger preflight failed (postgresql ") and HALTS in run.result["msg"], run
    assert PG_PASSWORD not in run.output, "the DSN password leaked into the ansible-playbook output"
    assert PG_PASSWORD not in run.raw, "the DSN password leaked into the task result"


# --------------------------------------------------------------------------- (c) success with PostgreSQL


def test_otobo_ticket_and_ims_sop_with_a_postgresql_ledger(fresh_sim, tmp_path, postgresql_dsn):  # noqa: F811 pylint: disable=redefined-outer-name
    ledger_env = {"LABOPS_LEDGER_BACKEND": "postgresql", "LABOPS_LEDGER_DSN": postgresql_dsn}
    created = play(fresh_sim, tmp_path, "otobo_ticket", ledger_env, ck=CK, verify=True)
    assert created.rc == 0 and created.failed is False, created
    assert created.result["changed"] and created.result["created"], created
    number = created.result["ticket"]["ticket_number"]
    assert [a["action"] for a in created.result["audit"]] == ["create"]
    assert (created.verification["ok"], created.verification["count"]) == (True, 1), created

    identified = play(fresh_sim, tmp_path, "ims_sop", ledger_env, sop="incident_identify", verify=True, **INCIDENT)
    assert identified.rc == 0 and identified.failed is False, identified
    incident = identified.result["record"]["id"]
    assigned = play(fresh_sim, tmp_path, "ims_sop", ledger_env, sop="incident_assign", incident_id=incident, team="L1", verify=True)
    assert assigned.rc == 0 and assigned.result["record"]["status"] == "in_progress", assigned
    assert (assigned.verification["ok"], assigned.verification["count"]) == (True, 4), assigned  # create, identify, update, notify

    with ledger_from_params({"ledger_backend": "postgresql", "ledger_dsn": postgresql_dsn}) as ledger:
        records = ledger.query()
        verification = ledger.verify()
    assert [(r["seq"], r["action"], r["ref_id"]) for r in records] == [
        (1, "create", number), (2, "identify", incident), (3, "update", incident), (4, "notify", incident)]
    assert [r["sop"] for r in records[1:]] == ["incident_identify", "incident_assign", "incident_assign"]
    assert all(r["actor"] == "audit-test" for r in records)
    assert verification["ok"] and verification["head_seq"] == 4 and verification["head_hash"] == records[-1]["hash"]
    assert sorted(t["TicketNumber"] for t in fresh_sim.state()["tickets"] if t["TicketID"] != 1) == sorted([number, incident])


# --------------------------------------------------------------------------- (d) ims_sop, unwritable SQLite


@pytest.mark.parametrize("unwritable_sqlite", ["below_a_file", "immutable"], indirect=True)
def test_ims_sop_create_halts_on_an_unwritable_ledger(fresh_sim, tmp_path, unwritable_sqlite):
    before = tickets(fresh_sim)
    run = play(fresh_sim, tmp_path, "ims_sop", unwritable_sqlite, sop="incident_identify", **INCIDENT)
    path = unwritable_sqlite["LABOPS_LEDGER_PATH"]
    assert_halted(run, fresh_sim, before, "sqlite", path if "immutable" in path else os.path.dirname(path))


def test_ims_sop_update_halts_on_an_unwritable_ledger(fresh_sim, tmp_path):
    good = {"LABOPS_LEDGER_PATH": str(tmp_path / "good" / "ledger.sqlite3")}
    identified = play(fresh_sim, tmp_path, "ims_sop", good, sop="incident_identify", **INCIDENT)
    assert identified.rc == 0, identified
    incident = identified.result["record"]["id"]
    before, counts = tickets(fresh_sim), writes(fresh_sim)
    run = play(fresh_sim, tmp_path, "ims_sop", {"LABOPS_LEDGER_PATH": str(below_a_file(tmp_path))}, sop="incident_assign",
               incident_id=incident, team="L1")
    assert run.rc != 0 and run.result.get("error_class") == "AuditWriteError" and "not-a-directory" in run.result["msg"], run
    assert tickets(fresh_sim) == before and writes(fresh_sim) == counts, "a halted SOP changed the incident"
    with ledger_from_params({"ledger_path": good["LABOPS_LEDGER_PATH"]}) as ledger:
        assert [r["action"] for r in ledger.query(ref_id=incident)] == ["identify"]
