"""Controller-side module runs: same validation, check mode, masking and results as a module process."""

from __future__ import annotations

import copy
import functools
import io
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
from ansible import constants as C
from ansible.module_utils.testing import patch_module_args

from ansible_collections.labops.itsm.plugins.action.ims_sop import ActionModule as ImsSopAction
from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from ansible_collections.labops.itsm.plugins.modules import ims_audit
from ansible_collections.labops.itsm.plugins.plugin_utils import _controller_module as controller_module
from ansible_collections.labops.itsm.plugins.plugin_utils._controller_module import ControllerModule, ModuleExit, plain, run_main_in_process


def append_args(path, **overrides):
    args = dict(action="review", ref_type="incident", ref_id="2025061110000421", actor="jdoe", actor_role="incident_manager",
                sop="post_incident_review", ledger_path=str(path), fields={"state": {"before": "resolved", "after": "closed"}})
    args.update(overrides)
    return args


# ansible-core 2.21+ returns ``invocation`` only when the INJECT_INVOCATION setting asks for it.
HAS_INJECT_INVOCATION = C.config.get_configuration_definition("INJECT_INVOCATION") is not None
INVOCATION_ARGS = {"_ansible_inject_invocation": True} if HAS_INJECT_INVOCATION else {}


def as_module_process(args, check_mode=False, diff=False, monkeypatch=None):
    """What AnsibleModule prints for the same arguments (the module-process path), as a dict."""
    internal = dict(args, _ansible_check_mode=check_mode, _ansible_diff=diff, **INVOCATION_ARGS)
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with patch_module_args(internal), pytest.raises(SystemExit):
        ims_audit.main()
    monkeypatch.undo()
    return json.loads(out.getvalue())


def test_same_result_as_the_module_process(tmp_path, monkeypatch):
    in_process = run_main_in_process("ims_audit", append_args(tmp_path / "a.sqlite3"), check_mode=False, diff=True)
    module_process = as_module_process(append_args(tmp_path / "b.sqlite3"), diff=True, monkeypatch=monkeypatch)
    assert in_process["changed"] is True and module_process["changed"] is True

    def stable(result):
        record = dict(result["record"])
        for volatile in ("ts", "hash", "prev_hash", "record_key", "ledger"):
            record.pop(volatile, None)
        return {key: value for key, value in result.items() if key not in ("record", "ledger", "diff", "invocation")}, record

    assert stable(in_process) == stable(module_process)
    assert set(in_process) == set(module_process)
    invocation = in_process["invocation"]["module_args"]
    assert invocation == dict(module_process["invocation"]["module_args"], ledger_path=invocation["ledger_path"])
    assert invocation["action"] == "review" and "ledger_dsn" in invocation  # the spec's defaults are included


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
    assert done.value.result == {"value": 1, "warnings": ["careful"], "invocation": {"module_args": {"name": "x"}}}
    assert done.value.code == 0


def test_invocation_only_when_ansible_core_would_inject_it():
    module = ControllerModule("demo", {"name": "x"}, False, False, {"name": {"type": "str"}}, inject_invocation=False)
    with pytest.raises(ModuleExit) as done:
        module.exit_json(value=1, invocation={"module_args": {}})
    assert done.value.result == {"value": 1}


@pytest.mark.skipif(not HAS_INJECT_INVOCATION, reason="ansible-core < 2.21 always returns invocation")
@pytest.mark.parametrize(("task_vars", "expected"), [({}, False), ({"ansible_inject_invocation": True}, True)])
def test_inject_invocation_follows_the_setting(task_vars, expected):
    assert controller_module.inject_invocation(task_vars) is expected


def test_check_mode_without_support_skips():
    with pytest.raises(ModuleExit) as done:
        ControllerModule("demo", {}, True, False, {}, supports_check_mode=False)
    assert done.value.result["skipped"] is True
    assert done.value.result["msg"] == "remote module (demo) does not support check mode"


def test_validation_errors_come_before_the_check_mode_skip():
    with pytest.raises(ModuleExit) as done:
        ControllerModule("demo", {"colour": "red"}, True, False, {}, supports_check_mode=False)
    assert done.value.result["failed"] is True and "colour" in done.value.result["msg"]


DEMO_MODULE = '''
from ansible.module_utils.basic import AnsibleModule

SPEC = dict(
    name=dict(type="str", aliases=["old_name"], deprecated_aliases=[dict(name="old_name", version="3.0.0", collection_name="labops.itsm")]),
    colour=dict(type="str", removed_in_version="3.0.0", removed_from_collection="labops.itsm"),
    shade=dict(type="str", removed_at_date="2027-06-01", removed_from_collection="labops.itsm"),
    token=dict(type="str", no_log=True),
    flag=dict(type="bool", default=False),
    label=dict(type="str", aliases=["tag"]),
)


def main(module_class=AnsibleModule):
    module = module_class(argument_spec=SPEC, supports_check_mode=True)
    module.no_log_values.update(["late-secret-91", "True"])  # learnt after construction, as ims_sop does
    module.warn("careful")
    module.exit_json(echo="token %s and late-secret-91 here" % module.params["token"], nested={"a": "late-secret-91"},
                     flag=module.params["flag"], enabled=True, nothing=None)


if __name__ == "__main__":
    main()
'''
DEMO_ARGS = {"old_name": "x", "colour": "red", "shade": "dark", "token": "tok-55", "label": "l", "tag": "t"}


def demo_module_process(tmp_path):
    """The demo module run as a real module process (AnsibleModule reads its arguments from a file)."""
    source, args = tmp_path / "demo.py", tmp_path / "args.json"
    source.write_text(DEMO_MODULE)
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(DEMO_ARGS, **INVOCATION_ARGS)}))
    proc = subprocess.run([sys.executable, str(source), str(args)], capture_output=True, text=True, check=True, timeout=60)
    return json.loads(proc.stdout)


def demo_in_process():
    namespace = {"__name__": "demo"}
    exec(compile(DEMO_MODULE, "demo.py", "exec"), namespace)  # noqa: S102 - the module source above, run as the action plugin would
    with pytest.raises(ModuleExit) as done:
        namespace["main"](module_class=functools.partial(ControllerModule, "demo", dict(DEMO_ARGS), False, False))
    return done.value.result


def test_invocation_deprecations_warnings_and_late_no_log_values_match_ansible_module(tmp_path):
    in_process, module_process = demo_in_process(), demo_module_process(tmp_path)
    assert in_process["invocation"] == module_process["invocation"]
    assert in_process["invocation"]["module_args"]["token"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
    for key in ("echo", "nested", "flag", "enabled", "nothing", "changed"):
        assert in_process.get(key) == module_process.get(key), key
    assert in_process["echo"] == "token ******** and ******** here" and in_process["nested"] == {"a": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}
    assert in_process["enabled"] is True  # top-level booleans survive a colliding no_log value ("True"), as in AnsibleModule
    assert in_process["warnings"] == [warning["event"]["msg"] for warning in module_process["warnings"]]
    assert "Both option label and its alias tag are set." in in_process["warnings"]

    def summary(item):
        return (item.get("msg") or item["event"]["msg"], item.get("version"), item.get("date"),
                item.get("collection_name") or item.get("deprecator", {}).get("resolved_name"))

    assert [summary(item) for item in in_process["deprecations"]] == [summary(item) for item in module_process["deprecations"]]
    assert len(in_process["deprecations"]) == 3


def test_the_controller_accepts_the_deprecations():
    """The dict form goes through ansible-core's own task-result conversion (2.19: TaskExecutor, 2.20+: _task)."""
    from ansible._internal import _display_utils
    from ansible.module_utils._internal import _messages

    deprecations = copy.deepcopy(demo_in_process()["deprecations"])
    with _display_utils.DeferredWarningContext(variables={}) as context:
        try:
            from ansible._internal._task import _convert_deprecations
        except ImportError:
            from ansible.executor.task_executor import TaskExecutor

            TaskExecutor._apply_task_result_compat({"deprecations": deprecations}, context)
        else:
            converted = _convert_deprecations(deprecations) or []
            for item in converted:
                context.capture(item)
        captured = context.get_deprecation_warnings()
    assert [type(item) for item in captured] == [_messages.DeprecationSummary] * 3
    assert [(item.event.msg, item.version, item.date) for item in captured] == [
        ("Alias 'old_name' is deprecated. See the module docs for more information", "3.0.0", None),
        ("Param 'colour' is deprecated. See the module docs for more information", "3.0.0", None),
        ("Param 'shade' is deprecated. See the module docs for more information", None, "2027-06-01"),
    ]
    assert {item.deprecator.resolved_name for item in captured} == {"labops.itsm"}


class FakeTemplar:
    @staticmethod
    def template(value):
        return value


def action(connection="local", become=False, async_val=0, environment=None, delegate_to=None):
    plugin = object.__new__(ImsSopAction)
    plugin._connection = SimpleNamespace(_load_name=connection)
    plugin._play_context = SimpleNamespace(become=become)
    plugin._task = SimpleNamespace(async_val=async_val, environment=environment if environment is not None else [{}], delegate_to=delegate_to)
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
        # delegate_to: the delegated host's interpreter counts, not the inventory host's (ansible-core's rule)
        (action(delegate_to="localhost"), {"ansible_python_interpreter": "/usr/bin/python3.9",
                                           "ansible_delegated_vars": {"localhost": {"ansible_python_interpreter": sys.executable}}}, None),
        (action(delegate_to="localhost"), {"ansible_delegated_vars": {"localhost": {"ansible_python_interpreter": "/usr/bin/python3.9"}}},
         "is not the controller's Python"),
        (action(delegate_to="localhost"), {"ansible_delegated_vars": {"localhost": {"labops_itsm_in_process": False}}},
         "labops_itsm_in_process is false"),
        (action(delegate_to="localhost"), {}, "no variables for the delegated host localhost"),
    ],
)
def test_when_the_module_runs_in_process(plugin, task_vars, reason):
    found = plugin._out_of_process_reason(task_vars)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_an_untested_ansible_core_uses_the_module_process(monkeypatch):
    monkeypatch.setattr(controller_module, "ansible_core_version", "2.22.0")
    assert "ansible-core 2.22.0 is outside the tested range 2.19 .. 2.21" in action()._out_of_process_reason({})


@pytest.mark.parametrize(("version", "tested"), [("2.19.14", True), ("2.21.5", True), ("2.21.0rc1", True), ("2.18.9", False),
                                                 ("2.22.0.dev0", False), ("3.0.0", False)])
def test_tested_core_range(version, tested):
    assert controller_module.is_tested_core(version) is tested


def test_modules_use_only_what_controller_module_provides():
    """A module attribute ControllerModule lacks would work as a module process and fail in-process."""
    import re
    from pathlib import Path

    provided = {"params", "check_mode", "_diff", "warn", "deprecate", "exit_json", "fail_json", "no_log_values"}
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
