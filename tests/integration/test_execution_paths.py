# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Both execution paths of every labops.itsm module give the same results (real ansible-playbook).

One playbook run per path (targets/execution_paths/playbooks/paths.yml), each against its own fresh
OTOBO simulator and SQLite ledger: ``labops_itsm_in_process: true`` runs each module's ``main()`` in the
controller's task worker, ``false`` the usual module process. The ``-vvv`` output shows which path every
labops.itsm task took; the registered results must be equal apart from per-run values.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

harness = pytest.importorskip("simulators.harness", reason="the OTOBO simulator harness (simulators/harness.py) is not available")

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE / "targets" / "execution_paths" / "playbooks" / "paths.yml"
# the IMS dynamic fields and ticket types the governed SOPs need (shared with the SOP playbook tests)
SIM_CONFIG = json.loads((HERE / "targets" / "sop" / "sim_config.json").read_text())
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
CK = "0123456789abcdef0123abcd"
PASSWORD = "s3cret"  # the simulator's alertbot password: must never show up in a result
WRONG_PASSWORD = "wrong-Pa55word-7f3e"
IN_PROCESS = "running in the controller's task worker"
MODULE_PROCESS = "running as a separate module process"
# ims_sop's platform/platform_options interface comes with the platform registry (module_utils/_platforms.py).
HAS_PLATFORM_REGISTRY = importlib.util.find_spec("ansible_collections.labops.itsm.plugins.module_utils._platforms") is not None
LABOPS_TASKS = 9 if HAS_PLATFORM_REGISTRY else 8
# String values that differ between two runs however they are executed (timestamps, hash chain, simulator port, temp dir).
VOLATILE_KEYS = frozenset(("ts", "hash", "prev_hash", "head_hash", "created", "changed", "ledger_path"))
SIM_ADDRESS = re.compile(r"http://127\.0\.0\.1:[0-9]+")
TIMESTAMP = re.compile(r"\b[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?Z?")
RESULT_START = re.compile(r"^(?:ok|changed|fatal): \[[^\]]+\](?: -> [^ ]+)?(?:: FAILED!)? => ", re.MULTILINE)


def run_path(tmp_path: Path, in_process: bool) -> tuple[dict, str]:
    """Run the playbook on one path against a fresh simulator; return its results and output."""
    sim = harness.start_simulator("otobo", SIM_CONFIG)
    try:
        out = tmp_path / "results.json"
        inventory = tmp_path / "inventory.ini"
        inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n"
                             "remote1 ansible_connection=ssh ansible_host=192.0.2.10 ansible_python_interpreter=/usr/bin/python3.9\n")
        env = {key: value for key, value in os.environ.items() if not key.startswith(("OTOBO_", "LABOPS_LEDGER_"))}
        env.update(LABOPS_LEDGER_PATH=str(tmp_path / "ledger.sqlite3"), LABOPS_ACTOR="paths-test", LABOPS_ACTOR_ROLE="service_desk",
                   ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default", ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
                   ANSIBLE_RETRY_FILES_ENABLED="0", ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="0",
                   ANSIBLE_INJECT_INVOCATION="1")  # ansible-core 2.21+ returns invocation only when asked to
        extra = {"otobo_url": sim.url, "otobo_password": PASSWORD, "ck": CK, "out": str(out), "labops_itsm_in_process": in_process}
        command = [str(ANSIBLE_PLAYBOOK), "-vvv", "-i", str(inventory), str(PLAYBOOK), "-e", json.dumps(extra)]
        if not HAS_PLATFORM_REGISTRY:
            command += ["--skip-tags", "ims_sop"]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert proc.returncode == 0, f"ansible-playbook failed:\n{proc.stdout[-8000:]}\n{proc.stderr[-3000:]}\nsimulator log:\n{sim.log()[-3000:]}"
        return {"registered": json.loads(out.read_text()), "shown": shown_results(proc.stdout)}, proc.stdout + proc.stderr
    finally:
        sim.stop()


def shown_results(output: str) -> dict:
    """labops.itsm task name -> the result the default callback printed with -vvv (it still has ``invocation``)."""
    shown = {}
    for chunk in output.split("\nTASK [")[1:]:
        name = chunk.split("]", 1)[0]
        match = RESULT_START.search(chunk)
        if match and (IN_PROCESS in chunk or MODULE_PROCESS in chunk):
            shown[name], _end = json.JSONDecoder().raw_decode(chunk, match.end())
    return shown


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {path: run_path(tmp_path_factory.mktemp(path), in_process=(path == "in-process")) for path in ("in-process", "module-process")}


def normalised(value):
    """Results with per-run values replaced and the path-specific keys removed."""
    if isinstance(value, dict):
        return {key: "<volatile>" if key in VOLATILE_KEYS and isinstance(item, str) else normalised(item) for key, item in value.items()
                if not key.startswith("_ansible")}
    if isinstance(value, list):
        return [normalised(item) for item in value]
    if isinstance(value, str):
        return TIMESTAMP.sub("<time>", SIM_ADDRESS.sub("<simulator>", value))
    return value


@pytest.mark.parametrize("path", ["in-process", "module-process"])
def test_every_task_took_the_chosen_path(runs, path):
    _results, output = runs[path]
    taken, other = (IN_PROCESS, MODULE_PROCESS) if path == "in-process" else (MODULE_PROCESS, IN_PROCESS)
    assert output.count(taken) == LABOPS_TASKS, output[-6000:]
    assert other not in output


@pytest.mark.parametrize("kind", ["registered", "shown"])
def test_results_are_equal_on_both_paths(runs, kind):
    in_process, module_process = (runs[path][0][kind] for path in ("in-process", "module-process"))
    assert len(in_process) >= LABOPS_TASKS - 2 and set(in_process) == set(module_process)
    for name in sorted(in_process):
        assert normalised(in_process[name]) == normalised(module_process[name]), name


def test_results_carry_the_invocation(runs):
    for results, _output in runs.values():
        shown = results["shown"]
        assert shown["Read it back"]["invocation"]["module_args"]["correlation_key"] == CK
        assert shown["Read it back"]["invocation"]["module_args"]["limit"] == 50  # with the spec's defaults
        assert shown["Query the ledger"]["invocation"]["module_args"]["ref_type"] == "incident"


def test_delegated_to_localhost_runs_in_process_with_the_same_results(runs):
    results, output = runs["in-process"]
    results = results["registered"]
    assert "is not the controller's Python" not in output
    assert results["delegated_info"]["tickets"][0]["ticket_id"] == results["created"]["ticket_id"]
    assert normalised(results["delegated_records"]["records"]) == normalised(results["records"]["records"])


def test_no_log_values_are_masked(runs):
    for path, (results, output) in runs.items():
        # ims_audit_info returns the ledger as written; the audit record of the create holds the title the
        # task gave (see the report: otobo_ticket does not mask no_log values in audit fields)
        module_results = {name: result for name, result in results["shown"].items() if not name.startswith("Query the ledger")}
        dump = json.dumps(module_results) + json.dumps({k: v for k, v in results["registered"].items() if "records" not in k})
        assert PASSWORD not in dump and WRONG_PASSWORD not in dump, path
        assert WRONG_PASSWORD not in output, path
        shown = results["shown"]
        assert results["registered"]["bad_login"]["failed"] is True
        assert shown["A wrong password fails"]["invocation"]["module_args"]["password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
        assert shown["Create a ticket whose title carries a no_log value"]["invocation"]["module_args"]["password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
        # the value inside another option is masked too, as AnsibleModule does
        assert results["registered"]["created"]["ticket"]["title"].startswith("[FIRING] DiskFull nas1 ******** [ck:")


@pytest.mark.skipif(not HAS_PLATFORM_REGISTRY, reason="ims_sop's platform/platform_options interface (module_utils/_platforms.py) is not merged yet")
def test_ims_sop_gets_the_group_module_defaults_in_platform_options(runs):
    for path, (results, _output) in runs.items():
        governed = results["shown"]["Governed SOP through the platform registry"]
        assert governed["changed"] is True, (path, governed)
        options = governed["invocation"]["module_args"]["platform_options"]
        assert options["url"] == results["shown"]["Read it back"]["invocation"]["module_args"]["url"], path  # folded from module_defaults
        assert options["username"] == "alertbot" and options["customer_user"] == "monitoring", path
        assert options["password"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER", path
        assert "validate_certs" in options, path
