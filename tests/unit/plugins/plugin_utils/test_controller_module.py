"""Controller-side module runs: same validation, check mode, masking and results as a module process."""

from __future__ import annotations

import io
import json
import sys
from types import SimpleNamespace

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.labops.itsm.plugins.action.ims_sop import ActionModule as ImsSopAction
from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.modules import ims_audit
from ansible_collections.labops.itsm.plugins.plugin_utils._controller_module import ControllerModule, ModuleExit, plain, run_main_in_process


def append_args(path, **overrides):
    args = dict(action="review", ref_type="incident", ref_id="2025061110000421", actor="jdoe", actor_role="incident_manager",
                sop="post_incident_review", ledger_path=str(path), fields={"state": {"before": "resolved", "after": "closed"}})
    args.update(overrides)
    return args


def as_module_process(args, check_mode=False, diff=False, monkeypatch=None):
    """What AnsibleModule prints for the same arguments (the module-process path), as a dict."""
    internal = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with patch_module_args(internal):
        with pytest.raises(SystemExit):
            ims_audit.main()
    monkeypatch.undo()
    result = json.loads(out.getvalue())
    result.pop("invocation", None)
    return result


def test_same_result_as_the_module_process(tmp_path, monkeypatch):
    in_process = run_main_in_process("ims_audit", append_args(tmp_path / "a.sqlite3"), check_mode=False, diff=True)
    module_process = as_module_process(append_args(tmp_path / "b.sqlite3"), diff=True, monkeypatch=monkeypatch)
    assert in_process["changed"] is True and module_process["changed"] is True

    def stable(result):
        record = dict(result["record"])
        for volatile in ("ts", "hash", "prev_hash", "record_key", "ledger"):
            record.pop(volatile, None)
        return {key: value for key, value in result.items() if key not in ("record", "ledger", "diff")}, record

    assert stable(in_process) == stable(module_process)
    assert set(in_process) == set(module_process)


def test_idempotent_record_key_and_check_mode(tmp_path):
    path = tmp_path / "l.sqlite3"
    checked = run_main_in_process("ims_audit", append_args(path, record_key="k-1"), check_mode=True, diff=False)
    assert checked["changed"] is True and not path.exists()
    first = run_main_in_process("ims_audit", append_args(path, record_key="k-1"), check_mode=False, diff=False)
    again = run_main_in_process("ims_audit", append_args(path, record_key="k-1"), check_mode=False, diff=False)
    assert (first["changed"], again["changed"]) == (True, False)
    with ledger_from_params({"ledger_path": str(path)}) as ledger:
        assert len(ledger.query()) == 1


def test_unknown_option_fails_like_ansible_module(tmp_path):
    result = run_main_in_process("ims_audit", append_args(tmp_path / "l.sqlite3", colour="red"), check_mode=False, diff=False)
    assert result["failed"] is True
    assert result["msg"].startswith("Unsupported parameters for (ims_audit) module: colour.")


def test_mutually_exclusive_and_choices(tmp_path):
    args = dict(url="http://127.0.0.1:9", username="u", password="p", ticket_id=1, ticket_number="2",
                ledger_path=str(tmp_path / "l.sqlite3"))
    result = run_main_in_process("otobo_ticket", args, check_mode=False, diff=False)
    assert result["failed"] is True and "mutually exclusive" in result["msg"]
    result = run_main_in_process("ims_audit", append_args(tmp_path / "l.sqlite3", action="rename"), check_mode=False, diff=False)
    assert result["failed"] is True and "action" in result["msg"] and "rename" in result["msg"]


def test_secrets_are_masked_in_failures(tmp_path, monkeypatch):
    monkeypatch.setenv("OTOBO_PASSWORD", "env-secret-4711")
    args = dict(url="http://127.0.0.1:9/otobo/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST", username="u",
                correlation_key="0123456789abcdef01234567", queue="Raw", title="env-secret-4711 in a title", timeout=1,
                ledger_path=str(tmp_path / "l.sqlite3"))
    result = run_main_in_process("otobo_ticket", args, check_mode=False, diff=False)
    assert result["failed"] is True
    assert "env-secret-4711" not in json.dumps(result)  # the fallback value is no_log too, wherever it appears


def test_crash_becomes_a_failure_with_traceback(tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(ims_audit, "run", broken)
    result = run_main_in_process("ims_audit", append_args(tmp_path / "l.sqlite3"), check_mode=False, diff=False)
    assert result["failed"] is True and "RuntimeError: boom" in result["msg"] and "Traceback" in result["exception"]


def test_warnings_and_exit_are_collected():
    module = ControllerModule("demo", {"name": "x"}, False, False, {"name": {"type": "str"}}, supports_check_mode=True)
    module.warn("careful")
    with pytest.raises(ModuleExit) as done:
        module.exit_json(value=1)
    assert done.value.result == {"value": 1, "changed": False, "warnings": ["careful"]}
    assert done.value.code == 0


def test_check_mode_without_support_skips():
    with pytest.raises(ModuleExit) as done:
        ControllerModule("demo", {}, True, False, {}, supports_check_mode=False)
    assert done.value.result["skipped"] is True


class FakeTemplar:
    @staticmethod
    def template(value):
        return value


def action(connection="local", become=False, async_val=0, environment=None):
    plugin = object.__new__(ImsSopAction)
    plugin._connection = SimpleNamespace(_load_name=connection)
    plugin._play_context = SimpleNamespace(become=become)
    plugin._task = SimpleNamespace(async_val=async_val, environment=environment if environment is not None else [{}])
    plugin._templar = FakeTemplar()
    return plugin


@pytest.mark.parametrize(
    ("plugin", "task_vars", "reason"),
    [
        (action(), {}, None),
        (action(connection="ansible.builtin.local"), {"ansible_python_interpreter": sys.executable}, None),
        (action(), {"labops_itsm_in_process": False}, "labops_itsm_in_process is false"),
        (action(), {"labops_itsm_in_process": "no"}, "labops_itsm_in_process is false"),
        (action(connection="ssh"), {}, "connection is not local"),
        (action(become=True), {}, "become is set"),
        (action(async_val=30), {}, "async task"),
        (action(environment=[{"HTTPS_PROXY": "http://proxy:3128"}]), {}, "environment"),
        (action(), {"ansible_python_interpreter": "/usr/bin/python3.9"}, "is not the controller's Python"),
        (action(), {"ansible_python_interpreter": "auto_silent"}, "is not the controller's Python"),
    ],
)
def test_when_the_module_runs_in_process(plugin, task_vars, reason):
    found = plugin._out_of_process_reason(task_vars)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_modules_use_only_what_controller_module_provides():
    """A module attribute ControllerModule lacks would work as a module process and fail in-process."""
    import re
    from pathlib import Path

    provided = {"params", "check_mode", "_diff", "warn", "exit_json", "fail_json"}
    modules = Path(ims_audit.__file__).parent
    used = set()
    for path in modules.glob("*.py"):
        used.update(re.findall(r"\bmodule\.([A-Za-z_]+)", path.read_text(encoding="utf-8")))
    assert used and used <= provided, sorted(used - provided)
    actions = Path(ims_audit.__file__).parents[1] / "action"
    assert sorted(p.stem for p in actions.glob("*.py")) == sorted(p.stem for p in modules.glob("*.py") if p.stem != "__init__")


def test_non_json_arguments_are_detected():
    """A datetime from ``{{ now() }}`` is not plain JSON: the action then uses the module process path."""
    import datetime

    assert plain({"a": [1, "x", {"b": None}]}) == {"a": [1, "x", {"b": None}]}
    with pytest.raises(TypeError):
        plain({"when": datetime.datetime(2026, 12, 1)})
