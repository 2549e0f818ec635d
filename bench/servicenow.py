"""servicenow_incident: wall time and HTTP calls per task over N incidents, against the ServiceNow simulator.

    .venv/bin/python bench/servicenow.py [--incidents 200]
    make bench-servicenow BENCH_ARGS="--incidents 50"

Phases, each one real ``ansible-playbook`` run whose task loops over the N incidents (one module run per
incident, in-process on the controller as the collection runs by default):

  create          N incidents, each with its own correlation_id, severity, group, CI and caller by name
  re-run          the same task again: nothing to change
  update          in_progress, urgency medium, a work note
  update re-run   the same update again: nothing to change (the work note is not posted twice)
  resolve         resolved with close code and notes

Per phase: wall time of the run divided by N (playbook start-up included, so a per-task figure a little
high), HTTP requests per task counted in the simulator's request log (by operation), and the tasks that
reported ``changed``. A floor phase runs a loop of N ``ansible.builtin.debug`` tasks (roughly the per-task cost of
ansible-playbook itself on this machine; its output printing makes it a loose floor). The figures of the official ``servicenow.itsm`` incident module are
printed beside ours as reference numbers read from its code - they are NOT measured here (the collection is
not installable offline).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulators.harness import start_simulator

ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
CONNECTION = {"client_id": "labops", "client_secret": "client-secret", "username": "itsm.bot", "password": "bot-pw"}
GROUPS = ("Infrastructure", "Platform", "Storage", "Network")
SEVERITIES = ("critical", "high", "medium", "low")

PHASES = {
    "create": {"correlation_id": "bench:{{ item }}", "correlation_display": "bench", "severity": "{{ severities[item % 4] }}",
               "assignment_group": "{{ sn_groups[item % 4] }}", "cmdb_ci": "pve0{{ item % 7 + 1 }}", "caller": "monitoring",
               "short_description": "Bench incident {{ item }}", "description": "Created by bench/servicenow.py"},
    "update": {"correlation_id": "bench:{{ item }}", "state": "in_progress", "urgency": "medium", "work_notes": "Looking into it"},
    "resolve": {"correlation_id": "bench:{{ item }}", "state": "resolved", "close_code": "Solution provided",
                "close_notes": "Fixed by the bench", "work_notes": "Resolved"},
}
PHASES["re-run"] = PHASES["create"]
PHASES["update re-run"] = PHASES["update"]

# servicenow.itsm `incident` module (ansible-collections/servicenow.itsm, plugins/modules/incident.py at commit
# 09a93f254a76924a6fd6504e6673812eaf040017), read from its code, not measured: ensure_present() creates whenever neither
# sys_id nor number is given (no lookup: a re-run creates another incident), resolves `caller` with a sys_user GET on
# every run, and on an update reads the incident and its attachment list before comparing.
OFFICIAL = {
    "create": "1 POST (+1 GET sys_user with caller); no lookup",
    "re-run": "1 POST: a duplicate incident every run",
    "update": "2-3 GETs (incident, attachments, caller) + 1 PATCH",
    "resolve": "2-3 GETs + 1 PATCH",
    "update re-run": "2-3 GETs",
    "retries": "TLS handshake timeouts only (as issue 8 states; not from the file above)",
}


def playbook(sim_url: str, phase: str, count: int, out: Path) -> list:
    if phase == "floor":
        task = {"name": "floor", "ansible.builtin.debug": {"msg": "{{ item }}", "verbosity": 1}, "loop": f"{{{{ range({count}) | list }}}}",
                "register": "runs"}
    else:
        task = {"name": phase, "labops.itsm.servicenow_incident": PHASES[phase], "loop": f"{{{{ range({count}) | list }}}}",
                "register": "runs", "loop_control": {"label": "{{ item }}"}}
    summary = ("{{ {'changed': runs.results | selectattr('changed') | list | length, "
               "'requests': runs.results | map(attribute='requests', default=0) | sum} | to_json }}")
    return [{
        "name": f"bench {phase}", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"sn_groups": list(GROUPS), "severities": list(SEVERITIES)},
        "module_defaults": {"group/labops.itsm.servicenow": CONNECTION | {"instance": sim_url}},
        "tasks": [task, {"name": "summary", "ansible.builtin.copy": {"dest": str(out), "content": summary, "mode": "0600"}}],
    }]


def run_phase(sim, phase: str, count: int, workdir: Path, env: dict) -> dict:
    out = workdir / f"{phase.replace(' ', '-')}.json"
    book = workdir / f"{phase.replace(' ', '-')}.yml"
    book.write_text(yaml.safe_dump(playbook(sim.url, phase, count, out), sort_keys=False))
    sim.clear_requests()
    started = time.perf_counter()
    proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-e", "ansible_python_interpreter=" + sys.executable, str(book)],
                          env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{phase}: ansible-playbook failed\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    operations = Counter(entry["operation"] for entry in sim.requests())
    summary = json.loads(out.read_text())
    return {"wall": wall, "operations": operations, "changed": summary["changed"], "reported": summary["requests"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--incidents", type=int, default=200)
    args = parser.parse_args()
    count = args.incidents
    results = {}
    with tempfile.TemporaryDirectory(prefix="labops-bench-sn-") as tmp:
        workdir = Path(tmp)
        env = dict(os.environ, LABOPS_SERVICENOW_TOKEN_CACHE=str(workdir / "token-cache"), LABOPS_METRICS_DIR=str(workdir / "metrics"),
                   LABOPS_LEDGER_PATH=str(workdir / "ledger.sqlite3"), LABOPS_LEDGER_BACKEND="sqlite",
                   ANSIBLE_LOCAL_TEMP=str(workdir / "ansible-tmp"), ANSIBLE_RETRY_FILES_ENABLED="0",
                   ANSIBLE_COLLECTIONS_PATH=str(Path(sys.prefix) / "collections"))
        with start_simulator("servicenow") as sim:
            for phase in ("floor", "create", "re-run", "update", "update re-run", "resolve"):
                results[phase] = run_phase(sim, phase, count, workdir, env)
                print(f"  {phase}: {results[phase]['wall']:.1f} s", file=sys.stderr)
            incidents = [row for row in sim.state()["tables"]["incident"] if row.get("correlation_id", "").startswith("bench:")]
    print(f"\nservicenow_incident over {count} incidents (ServiceNow simulator, OAuth, one ansible-playbook run per phase)")
    print(f"{'phase':<14}{'s/task':>9}{'HTTP/task':>11}{'changed':>9}  requests by operation (whole phase)")
    for phase, figures in results.items():
        calls = sum(figures["operations"].values())
        ops = ", ".join(f"{op} {n}" for op, n in sorted(figures["operations"].items())) or "-"
        print(f"{phase:<14}{figures['wall'] / count:>9.3f}{calls / count:>11.2f}{figures['changed']:>9}  {ops}")
    print(f"\nincidents in the simulator with a bench correlation_id: {len(incidents)} (expected {count}: no duplicates)")
    print("\nservicenow.itsm incident module, for comparison - READ FROM ITS CODE (plugins/modules/incident.py at commit 09a93f2),"
          " NOT MEASURED HERE:")
    for phase, text in OFFICIAL.items():
        print(f"  {phase:<14}{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
