"""jira_issue: wall time and HTTP calls per task over N issues, against the Jira simulator.

    .venv/bin/python bench/jira.py [--issues 200] [--mode cloud|datacenter]
    make bench-jira BENCH_ARGS="--issues 50 --mode datacenter"

Phases, each one real ``ansible-playbook`` run whose task loops over the N issues (one module run per issue,
in-process on the controller as the collection runs by default):

  create      N issues, each with its own correlation key, severity, labels, component and description
  re-run      the same task again: nothing to change (1 search each)
  comment     a comment on each issue
  transition  each issue to In Progress (1 GET of the transitions + 1 POST)
  resolve     each issue resolved with resolution Done and a comment riding in the transition

Per phase: wall time of the run divided by N (playbook start-up included, so a per-task figure a little high), HTTP
requests per task counted in the simulator's request log (by operation), and the tasks that reported ``changed``. A
floor phase runs a loop of N ``ansible.builtin.debug`` tasks (roughly the per-task cost of ansible-playbook itself on
this machine). At the end the simulator is asked how many issues carry each bench label: exactly one each, no duplicate.
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
CONNECTION = {"cloud": {"deployment": "cloud", "username": "bot@example.com", "password": "jira-api-token"},
              "datacenter": {"deployment": "datacenter", "token": "jira-pat-123"}}
SEVERITIES = ("critical", "high", "medium", "low")
COMPONENTS = ("Virtualisation", "Storage", "Network", "Platform")
KEY = "bench{{ '%06d' % item }}"

PHASES = {
    "create": {"correlation_key": KEY, "project": "OPS", "severity": "{{ severities[item % 4] }}", "labels": ["alertmanager", "bench"],
               "components": ["{{ components[item % 4] }}"], "summary": "[FIRING:1] Bench alert {{ item }}",
               "description": "Created by **bench/jira.py**.\n\n- item {{ item }}\n- severity {{ severities[item % 4] }}"},
    "comment": {"correlation_key": KEY, "comment": "Looking into it."},
    "transition": {"correlation_key": KEY, "status": "In Progress"},
    "resolve": {"correlation_key": KEY, "state": "resolved", "resolution": "Done", "comment": "Alert resolved."},
}
PHASES["re-run"] = PHASES["create"]
ORDER = ("floor", "create", "re-run", "comment", "transition", "resolve")


def playbook(sim_url: str, mode: str, cache: str, phase: str, count: int, out: Path) -> list:
    if phase == "floor":
        task = {"name": "floor", "ansible.builtin.debug": {"msg": "{{ item }}", "verbosity": 1}, "loop": f"{{{{ range({count}) | list }}}}",
                "register": "runs"}
    else:
        task = {"name": phase, "labops.itsm.jira_issue": PHASES[phase], "loop": f"{{{{ range({count}) | list }}}}",
                "register": "runs", "loop_control": {"label": "{{ item }}"}}
    summary = ("{{ {'changed': runs.results | selectattr('changed') | list | length, "
               "'requests': runs.results | map(attribute='requests', default=0) | sum} | to_json }}")
    return [{
        "name": f"bench {phase}", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"severities": list(SEVERITIES), "components": list(COMPONENTS)},
        "module_defaults": {"group/labops.itsm.jira": dict(CONNECTION[mode], url=sim_url, cache_dir=cache)},
        "tasks": [task, {"name": "summary", "ansible.builtin.copy": {"dest": str(out), "content": summary, "mode": "0600"}}],
    }]


def run_phase(sim, mode: str, phase: str, count: int, workdir: Path, env: dict) -> dict:
    out = workdir / f"{phase}.json"
    book = workdir / f"{phase}.yml"
    book.write_text(yaml.safe_dump(playbook(sim.url, mode, str(workdir / "cache"), phase, count, out), sort_keys=False))
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


def labelled(state: dict) -> Counter:
    """Issues per bench correlation label in the simulator's state."""
    counts: Counter = Counter()
    for issue in state["issues"].values():
        fields = issue.get("fields") if isinstance(issue.get("fields"), dict) else issue
        for label in fields.get("labels") or []:
            if label.startswith("labops-bench"):
                counts[label] += 1
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--issues", type=int, default=200)
    parser.add_argument("--mode", choices=["cloud", "datacenter"], default="cloud")
    args = parser.parse_args()
    count, mode = args.issues, args.mode
    results = {}
    with tempfile.TemporaryDirectory(prefix="labops-bench-jira-") as tmp:
        workdir = Path(tmp)
        env = dict(os.environ, LABOPS_METRICS_DIR=str(workdir / "metrics"), LABOPS_LEDGER_PATH=str(workdir / "ledger.sqlite3"),
                   LABOPS_LEDGER_BACKEND="sqlite", ANSIBLE_LOCAL_TEMP=str(workdir / "ansible-tmp"), ANSIBLE_RETRY_FILES_ENABLED="0",
                   ANSIBLE_COLLECTIONS_PATH=str(Path(sys.prefix) / "collections"))
        with start_simulator("jira", {"mode": mode}) as sim:
            for phase in ORDER:
                results[phase] = run_phase(sim, mode, phase, count, workdir, env)
                print(f"  {phase}: {results[phase]['wall']:.1f} s", file=sys.stderr)
            per_label = labelled(sim.state())
    print(f"\njira_issue over {count} issues (Jira simulator, {mode}, one ansible-playbook run per phase)")
    print(f"{'phase':<12}{'s/task':>9}{'HTTP/task':>11}{'changed':>9}  requests by operation (whole phase)")
    for phase, figures in results.items():
        calls = sum(figures["operations"].values())
        ops = ", ".join(f"{op} {n}" for op, n in sorted(figures["operations"].items())) or "-"
        print(f"{phase:<12}{figures['wall'] / count:>9.3f}{calls / count:>11.2f}{figures['changed']:>9}  {ops}")
    duplicates = sum(n - 1 for n in per_label.values() if n > 1)
    print(f"\nbench labels in the simulator: {len(per_label)} (expected {count}), duplicate issues: {duplicates} (expected 0)")
    return 0 if len(per_label) == count and not duplicates else 1


if __name__ == "__main__":
    sys.exit(main())
