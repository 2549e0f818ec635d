# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real ansible-playbook runs of jira_issue / jira_issue_info against the Jira simulator, Cloud v3 and Data Center v2.

One playbook per mode (generated below, one task per step) walks an alert's life the jiralert way - dry run, create,
read, idempotent re-run, repeated firing with a new summary, a comment (and its re-run), a transition (and its re-run),
resolve, reopen within the window, a lookup by key - and the negative cases (a ledger that cannot be written, bad
credentials), then a delete. Around every step it clears the simulator's request log and reads it back, so the HTTP
calls of each task are asserted from the simulator's side against the module's call contract: a re-run costs at most
1 search (or 1 GET by key), a create 1 search + 1 POST, a transition 1 GET of the transitions + 1 POST.
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
KEY = "3f9c2a7d4e1b"
LABEL = "labops-" + KEY
ALERT = {"status": "firing", "labels": {"alertname": "HostDown", "instance": "pve-node-03:9100", "severity": "critical"},
         "annotations": {"summary": "pve-node-03 is down", "description": "Node **pve-node-03** stopped answering."},
         "startsAt": "2026-05-04T10:15:00Z"}
MAPPING = {"defaults": {"labels": ["alertmanager"], "components": "Virtualisation", "affected_host": "pve-node-03"},
           "custom_fields": {"affected_host": "customfield_10050"},
           "templates": {"short_description": "[{{ alert.status | upper }}] {{ alert.labels.alertname }} {{ cmdb.name }}"}}
FIRING = {"correlation_key": KEY, "project": "OPS", "severity": "critical", "alert": ALERT, "cmdb": {"name": "pve-node-03"},
          "reopen_window": "1h", "wont_fix_resolution": ["Won't Do"], "mapping": "{{ mapping_file }}"}
CONTRACT = {
    "rerun": ["POST search"], "create": ["POST search", "POST issue"], "transition": ["POST search", "GET transitions", "POST transitions"],
}

# (name, module args, task keywords); "_info": jira_issue_info
STEPS = [
    ("check_create", dict(FIRING), {"check_mode": True}),
    ("create", dict(FIRING), {}),
    ("info", {"_info": True, "correlation_key": KEY}, {}),
    ("rerun", dict(FIRING), {}),
    ("repeat", dict(FIRING, summary="[FIRING:2] HostDown pve-node-03"), {}),
    ("comment", {"correlation_key": KEY, "comment": "Still firing (2 instances)."}, {}),
    ("comment_rerun", {"correlation_key": KEY, "comment": "Still firing (2 instances)."}, {}),
    ("transition", {"correlation_key": KEY, "status": "In Progress"}, {}),
    ("transition_rerun", {"correlation_key": KEY, "status": "In Progress"}, {}),
    ("resolve", {"correlation_key": KEY, "state": "resolved", "resolution": "Done", "comment": "Alert resolved."}, {}),
    ("resolve_rerun", {"correlation_key": KEY, "state": "resolved", "resolution": "Done", "comment": "Alert resolved."}, {}),
    ("reopen", dict(FIRING, summary="[FIRING:2] HostDown pve-node-03"), {}),
    ("by_key", {"key": "{{ create.key }}", "summary": "[FIRING:2] HostDown pve-node-03"}, {}),
    ("unwritable_ledger", {"correlation_key": "0badledger", "project": "OPS", "summary": "never created",
                           "ledger_path": "{{ blocked_ledger }}"}, {"ignore_errors": True}),
    ("bad_credentials", {"correlation_key": KEY}, {"ignore_errors": True}),  # a wrong API token (Cloud) or PAT (Data Center)
    ("delete", {"key": "{{ create.key }}", "state": "absent"}, {}),
    ("delete_rerun", {"key": "{{ create.key }}", "state": "absent"}, {}),
]


def connection(mode, sim_url, cache):
    if mode == "cloud":
        return {"url": sim_url, "deployment": "cloud", "username": "bot@example.com", "password": "jira-api-token", "cache_dir": cache}
    return {"url": sim_url, "deployment": "datacenter", "token": "jira-pat-123", "cache_dir": cache}


def playbook(mode, sim_url, out, cache):
    tasks = []
    conn = connection(mode, sim_url, cache)
    for name, args, keywords in STEPS:
        args = dict(args)
        module = "labops.itsm.jira_issue_info" if args.pop("_info", False) else "labops.itsm.jira_issue"
        if name == "bad_credentials":
            args.update({"password": "wrong"} if mode == "cloud" else {"token": "wrong"})
        tasks += [
            {"name": f"{name}: clear the request log", "ansible.builtin.uri": {"url": f"{sim_url}/_sim/requests", "method": "DELETE"}},
            dict({"name": name, module: args, "register": name}, **keywords),
            {"name": f"{name}: read the request log", "ansible.builtin.uri": {"url": f"{sim_url}/_sim/requests", "return_content": True},
             "register": f"{name}_log"},
        ]
    results = "{" + ", ".join(f"'{n}': {{'result': {n}, 'log': {n}_log.json.requests}}" for n, dummy, dummy2 in STEPS) + "}"
    tasks.append({"name": "Write the results", "ansible.builtin.copy": {"dest": str(out), "content": "{{ " + results + " | to_json }}",
                                                                        "mode": "0600"}})
    return [{"name": f"jira_issue lifecycle ({mode})", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "module_defaults": {"group/labops.itsm.jira": conn}, "tasks": tasks}]


@pytest.fixture(scope="module", params=["cloud", "datacenter"])
def run(request, tmp_path_factory):
    mode = request.param
    tmp = tmp_path_factory.mktemp("jira-" + mode)
    sim = harness.start_simulator("jira", {"mode": mode})
    try:
        mapping_file = tmp / "mapping.yml"
        mapping_file.write_text(yaml.safe_dump(MAPPING))
        out = tmp / "results.json"
        book = tmp / "lifecycle.yml"
        book.write_text(yaml.safe_dump(playbook(mode, sim.url, out, str(tmp / "cache")), sort_keys=False))
        blocker = tmp / "not-a-directory"
        blocker.write_text("a regular file\n")
        env = dict(os.environ, LABOPS_METRICS_DIR=str(tmp / "metrics"), LABOPS_LEDGER_PATH=str(tmp / "ledger.sqlite3"),
                   LABOPS_ACTOR="jira-integration", LABOPS_ACTOR_ROLE="service_desk", ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"),
                   ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_NOCOLOR="1")
        env.pop("LABOPS_LEDGER_BACKEND", None)
        for name in list(env):
            if name.startswith("JIRA_"):
                env.pop(name)
        command = [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", "-e", "ansible_python_interpreter=" + sys.executable,
                   "-e", json.dumps({"mapping_file": str(mapping_file), "blocked_ledger": str(blocker / "ledger.sqlite3")}), str(book)]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, "ansible-playbook failed:\n%s\n%s\nsimulator log:\n%s" % (
            proc.stdout[-8000:], proc.stderr[-3000:], sim.log()[-3000:])
        with ledger_from_params({"ledger_path": str(tmp / "ledger.sqlite3")}) as ledger:
            records, verification = ledger.query(), ledger.verify(expect_records=True)
        yield {"mode": mode, "results": json.loads(out.read_text()), "state": sim.state(), "ledger": records, "verification": verification}
    finally:
        sim.stop()


def ops(run, name):
    return [entry["operation"] for entry in run["results"][name]["log"]]


def result(run, name):
    return run["results"][name]["result"]


def test_the_http_call_contract(run):
    assert ops(run, "check_create") == ["POST search"]
    assert ops(run, "create") == CONTRACT["create"]
    for step in ("rerun", "comment_rerun", "transition_rerun", "resolve_rerun"):
        assert ops(run, step) == CONTRACT["rerun"], step
        assert result(run, step)["changed"] is False and result(run, step)["requests"] == 1, step
    assert ops(run, "by_key") == ["GET issue"] and result(run, "by_key")["changed"] is False
    assert ops(run, "info") == ["POST search"]
    for step in ("transition", "resolve", "reopen"):
        assert ops(run, step) == CONTRACT["transition"], step
    assert ops(run, "repeat") == ["POST search", "PUT issue"]
    assert ops(run, "comment") == ["POST search", "POST comment"]
    assert ops(run, "delete") == ["GET issue", "DELETE issue"] and ops(run, "delete_rerun") == ["GET issue"]


def test_create_from_the_mapping_and_the_alert(run):
    check, created = result(run, "check_create"), result(run, "create")
    assert check["changed"] is True and check["key"] is None and check["action"] == "created"
    assert check["payload"] == created["payload"]  # the dry run predicted the exact request
    fields = created["payload"]["create"]["fields"]
    assert fields["summary"] == "[FIRING] HostDown pve-node-03"
    assert fields["labels"] == ["alertmanager", LABEL] and fields["components"] == [{"name": "Virtualisation"}]
    assert fields["priority"] == {"name": "Highest"} and fields["customfield_10050"] == "pve-node-03"
    assert fields["issuetype"] == {"name": "Incident"} and fields["project"] == {"key": "OPS"}
    if run["mode"] == "cloud":
        assert fields["description"]["type"] == "doc" and fields["description"]["version"] == 1
    else:
        assert isinstance(fields["description"], str) and "*pve-node-03*" in fields["description"]
    assert created["key"].startswith("OPS-") and created["link"].endswith("/browse/" + created["key"])
    (issue,) = result(run, "info")["issues"]
    assert issue["key"] == created["key"] and issue["status"] == "To Do" and LABEL in issue["fields"]["labels"]


def test_alert_life_resolve_and_reopen(run):
    created = result(run, "create")
    assert result(run, "repeat")["action"] == "updated" and result(run, "transition")["status"] == "In Progress"
    resolved = result(run, "resolve")
    assert resolved["action"] == "resolved" and resolved["status"] == "Done" and resolved["resolution"] == "Done"
    reopened = result(run, "reopen")
    assert reopened["action"] == "reopened" and reopened["key"] == created["key"] and reopened["status"] == "To Do"
    labelled = [key for key, issue in run["state"]["issues"].items() if LABEL in ((issue.get("fields") or issue).get("labels") or [])]
    assert labelled == []  # deleted at the end, and there never was a second one: see the ledger
    creations = [r for r in run["ledger"] if r["action"] == "create"]
    assert [r["ref_id"] for r in creations] == [created["key"]]
    assert result(run, "delete")["action"] == "deleted" and result(run, "delete_rerun")["changed"] is False


def test_every_change_is_audited_and_the_chain_verifies(run):
    key = result(run, "create")["key"]
    trail = [(r["action"], r["meta"].get("operation")) for r in run["ledger"]]
    assert trail == [("create", None), ("update", None), ("notify", None), ("update", None), ("resolve", None), ("notify", None),
                     ("update", "reopen"), ("close", "delete")], trail
    assert all(r["ref_id"] == key and r["platform"] == "jira" and r["ref_type"] == "issue" and r["actor"] == "jira-integration"
               for r in run["ledger"])
    assert run["verification"]["ok"] and run["verification"]["count"] == len(trail)
    returned = [r for name, dummy, dummy2 in STEPS for r in (result(run, name).get("audit") or [])]
    assert [(r["seq"], r["hash"]) for r in returned] == [(r["seq"], r["hash"]) for r in run["ledger"]]


def test_failures_change_nothing(run):
    halted = result(run, "unwritable_ledger")
    assert halted["failed"] and halted["error_class"] == "AuditWriteError" and "UNAUDITED" not in halted["msg"]
    assert ops(run, "unwritable_ledger") == ["POST search"]
    denied = result(run, "bad_credentials")
    assert denied["failed"] and denied["error_class"] == "AuthError" and ops(run, "bad_credentials") == ["POST search"], denied
    assert "jira-api-token" not in json.dumps(run["results"]) and "jira-pat-123" not in json.dumps(run["results"])


def test_ansible_doc_renders(tmp_path):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    for module in ("labops.itsm.jira_issue", "labops.itsm.jira_issue_info"):
        proc = subprocess.run([str(ANSIBLE_DOC), module], env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "[WARNING]" not in proc.stderr, proc.stderr
        for text in ("correlation_key", "url", "cache_dir", "ATTRIBUTES", "EXAMPLES", "RETURN VALUES"):
            assert text in proc.stdout, (module, text)


def test_runs_as_a_separate_module_process_too(tmp_path):
    """The AnsiballZ path (labops_itsm_in_process=false): the module_utils it packs (_jira, _jira_markup, _refire...) import there."""
    book, out = tmp_path / "process.yml", tmp_path / "process.json"
    with harness.start_simulator("jira", {"mode": "cloud"}) as sim:
        book.write_text(yaml.safe_dump([{
            "hosts": "localhost", "connection": "local", "gather_facts": False,
            "module_defaults": {"group/labops.itsm.jira": connection("cloud", sim.url, str(tmp_path / "cache"))},
            "tasks": [
                {"labops.itsm.jira_issue": {"correlation_key": "0a0b0c", "project": "OPS", "severity": "high", "alert": ALERT},
                 "register": "created"},
                {"labops.itsm.jira_issue_info": {"correlation_key": "0a0b0c"}, "register": "info"},
                {"ansible.builtin.copy": {"dest": str(out), "content": "{{ {'created': created, 'info': info} | to_json }}", "mode": "0600"}},
            ]}]))
        env = dict(os.environ, LABOPS_METRICS_DIR=str(tmp_path / "metrics"), LABOPS_LEDGER_PATH=str(tmp_path / "ledger.sqlite3"),
                   ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
        proc = subprocess.run([str(ANSIBLE_PLAYBOOK), "-vvv", "-i", "localhost,", "-e", "ansible_python_interpreter=" + sys.executable,
                               "-e", "labops_itsm_in_process=false", str(book)], env=env, capture_output=True, text=True, timeout=300,
                              check=False)
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
        assert "running as a separate module process" in proc.stdout
        data = json.loads(out.read_text())
    assert data["created"]["action"] == "created" and data["created"]["issue"]["priority"] == "High"
    assert [issue["key"] for issue in data["info"]["issues"]] == [data["created"]["key"]]
