# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Requests (and OTOBO sessions) per operation, counted in the simulator's request log (issue 6, B4).

One real ansible-playbook run measures otobo_ticket create / no-op / update and an otobo_ticket_info
lookup task by task (the playbook clears and reads ``/_sim/requests`` around each task); a small
in-process run measures the SOP resolve path. The budgets are the numbers documented in
docs/simulators.md and otobo_ticket_info's notes.
"""


import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._otobo import client_from_params
from ansible_collections.labops.itsm.plugins.module_utils._otobo_ims import FIELD_MAP, OtoboPlatform
from ansible_collections.labops.itsm.plugins.module_utils._sop import run_sop
from simulators.harness import start_in_thread, start_simulator

ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
KEY = "3f9c2a7b1d0e4c55aa00bb11"
# Budget per task (requests besides the one SessionCreate of the first run); one session whatever the number of runs.
MODULE_BUDGET = {"create": 4, "noop": 2, "update": 4, "info": 2}
RESOLVE_BUDGET = 6

PLAYBOOK = textwrap.dedent("""\
    - hosts: localhost
      connection: local
      gather_facts: false
      vars:
        ticket_args: &ticket
          correlation_key: "{key}"
          title: "[FIRING] DiskFull nas1"
          queue: Storage
          priority: 3 normal
          customer_user: monitoring
          article: {{subject: DiskFull nas1, body: usage 97%}}
      tasks:
    {steps}
        - ansible.builtin.copy:
            dest: "{out}"
            content: "{{{{ {{'create': create_log.json.requests, 'noop': noop_log.json.requests, 'update': update_log.json.requests,
                         'info': info_log.json.requests, 'results': [create, noop, update, info]}} | to_json }}}}"
    """)
STEP = textwrap.indent(textwrap.dedent("""\
    - ansible.builtin.uri: {{url: "{sim}/_sim/requests", method: DELETE}}
    - {module}:
        {args}
      register: {name}
    - ansible.builtin.uri: {{url: "{sim}/_sim/requests", return_content: true}}
      register: {name}_log
    """), "    ")


def _step(sim_url, name, module, args):
    return STEP.format(sim=sim_url, name=name, module=module, args=args)


def test_module_request_counts_and_no_sessions(tmp_path):
    with start_simulator("otobo") as sim:
        steps = "".join([
            _step(sim.url, "create", "labops.itsm.otobo_ticket", "<<: *ticket"),
            _step(sim.url, "noop", "labops.itsm.otobo_ticket", "<<: *ticket"),
            _step(sim.url, "update", "labops.itsm.otobo_ticket", f"correlation_key: {KEY}\n        priority: 4 high"),
            _step(sim.url, "info", "labops.itsm.otobo_ticket_info", f"correlation_key: {KEY}"),
        ])
        out = tmp_path / "counts.json"
        playbook = tmp_path / "counts.yml"
        playbook.write_text(PLAYBOOK.format(key=KEY, steps=steps, out=out))
        env = dict(os.environ, OTOBO_URL=sim.url, OTOBO_USERNAME="alertbot", OTOBO_PASSWORD="s3cret",
                   LABOPS_LEDGER_PATH=str(tmp_path / "ledger.sqlite3"), LABOPS_ACTOR="request-count-test",
                   ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"), ANSIBLE_RETRY_FILES_ENABLED="0",
                   LABOPS_OTOBO_SESSION_CACHE=str(tmp_path / "sessions"))
        run = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)],
                             env=env, capture_output=True, check=False,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        data = json.loads(out.read_text())
        state = sim.state()
    counts = {name: [entry["operation"] for entry in data[name] if entry["operation"] != "SessionCreate"] for name in MODULE_BUDGET}
    session_creates = {name: [entry["operation"] for entry in data[name]].count("SessionCreate") for name in MODULE_BUDGET}
    print("requests per task:", json.dumps(counts))
    assert [result["changed"] for result in data["results"]] == [True, False, True, False]
    for name, budget in MODULE_BUDGET.items():
        assert len(counts[name]) <= budget, (name, counts[name])
    assert session_creates == {"create": 1, "noop": 0, "update": 0, "info": 0}
    assert (state["sessions"], state["sessions_created"]) == (1, 1)


def test_sop_resolve_costs_at_most_six_requests(tmp_path):
    with start_in_thread("otobo", {"dynamic_fields": [{"name": n, "type": "Text"} for n in sorted(FIELD_MAP.values())]}) as sim:
        ledger = ledger_from_params({"ledger_path": str(tmp_path / "audit.sqlite3")})

        def run(sop, role, **inputs):
            # a fresh client per SOP, like one module run
            client = client_from_params({"url": sim.url, "username": "alertbot", "password": "s3cret",
                                         "session_cache": str(tmp_path / "sessions")})
            platform = OtoboPlatform(client, queue="Raw", customer_user="monitoring",
                                     ticket_types={"incident": "", "problem": "", "change_request": ""})
            return run_sop(sop, inputs, actor="tester", role=role, platform=platform, ledger=ledger)

        ref = run("incident_identify", "service_desk", title="Storage latency", reporter="jdoe", detection_source="user_report",
                  affected_service="ceph", description="slow")["record"]["id"]
        run("incident_assign", "incident_manager", incident_id=ref, team="L1")
        sim.clear_requests()
        result = run("incident_resolve", "L2", incident_id=ref, resolution_summary="fixed", fix_applied=True, service_restored=True)
        operations = [entry["operation"] for entry in sim.requests()]
        state = sim.state()
    print("incident_resolve requests:", operations)
    assert result["record"]["status"] == "resolved"
    assert len(operations) <= RESOLVE_BUDGET, operations
    assert "SessionCreate" not in operations
    assert (state["sessions"], state["sessions_created"]) == (1, 1)


class _InfoModule:
    def __init__(self, **params):
        from ansible_collections.labops.itsm.plugins.modules import otobo_ticket_info

        self.params = {name: None for name in otobo_ticket_info.argument_spec()}
        self.params.update(open_only=False, limit=50, articles=False, history=False)
        self.params.update(params)


def test_info_search_reads_25_tickets_per_request(tmp_path):
    from ansible_collections.labops.itsm.plugins.modules import otobo_ticket_info

    with start_in_thread("otobo") as sim:
        client = client_from_params({"url": sim.url, "username": "alertbot", "password": "s3cret"})
        article = {"subject": "s", "body": "b", "content_type": "text/plain; charset=utf8"}
        for number in range(30):
            client.create_ticket({"title": "batch %d" % number, "queue": "Platform", "priority": "3 normal", "state": "new",
                                  "customer_user": "monitoring"}, article)
        sim.clear_requests()
        result = otobo_ticket_info.run(_InfoModule(queue=["Platform"], articles=True, limit=30), client)
        operations = [entry["operation"] for entry in sim.requests()]
    assert len(result["tickets"]) == 30 and all(t["articles"] for t in result["tickets"])
    assert operations == ["TicketSearch", "TicketGet", "TicketGet"]
