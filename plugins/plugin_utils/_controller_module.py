# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run an API module of this collection inside the controller's task worker.

Every module of labops.itsm talks to an HTTP API and a ledger, so with a ``local`` connection it
runs on the controller anyway. Executed the usual way, each task pays for building an AnsiballZ
payload, a new Python process and compiling ``ansible.module_utils.basic`` from the zip: about
0.55 s for ``ansible.builtin.ping`` on a 2-core machine, and 1.2 s for ``ims_sop`` (bench/README.md).
The alert-to-ticket path runs one such task per alert, so that cost is most of its latency.

When the task would run the module on the controller with the controller's Python, the action
plugin imports the module and runs its ``main()`` in the (forked, per-task) worker process with a
:class:`ControllerModule` in place of ``AnsibleModule``: the same argument spec and validation
(``ArgumentSpecValidator``, as AnsibleModule uses), check mode, diff, the ``invocation``, warnings
and argument-spec deprecations, and no_log masking of the whole result (including values a module
adds to ``no_log_values`` later). In every other case (another connection, become, async, a task
``environment``, another interpreter, an ansible-core outside :data:`TESTED_ANSIBLE_CORE`, or
``labops_itsm_in_process: false``) it runs the module the usual way. Under ``delegate_to`` the
connection and interpreter are those of the delegated host, so they are read from
``ansible_delegated_vars`` as ansible-core's own action code does.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
import traceback
from collections.abc import Mapping
from typing import Any, NoReturn

from ansible import constants as C
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator, ValidationResult
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.release import __version__ as ansible_core_version
from ansible.utils.display import Display

display = Display()

IN_PROCESS_VAR = "labops_itsm_in_process"
# ansible-core (major, minor) releases the in-process path is tested with, inclusive: it relies on
# ArgumentSpecValidator internals and the task-result conventions of these releases. Outside the
# range the module runs as a separate process, which works on any ansible-core the collection supports.
TESTED_ANSIBLE_CORE = ((2, 19), (2, 21))
_LOCAL_CONNECTIONS = frozenset(("local", "ansible.builtin.local"))
_MODULE_PACKAGE = "ansible_collections.labops.itsm.plugins.modules."


class ModuleExit(SystemExit):
    """Raised by :meth:`ControllerModule.exit_json` / ``fail_json`` to end ``main()`` with a result.

    A SystemExit, as AnsibleModule's ``sys.exit()``: module code that catches Exception around
    an exit call behaves the same in both places, and ``finally`` blocks still run.
    """

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(1 if result.get("failed") else 0)
        self.result = result


class ControllerModule:
    """The part of ``AnsibleModule`` the labops.itsm modules use, running inside the task worker.

    ``no_log_values`` is public as on AnsibleModule: a module may add secrets it learns after
    construction (``module.no_log_values.update(...)``) and they are masked in the result.
    """

    def __init__(self, name: str, task_args: dict[str, Any], check_mode: bool, diff: bool, argument_spec: dict[str, Any],
                 supports_check_mode: bool = False, mutually_exclusive: Any = None, required_together: Any = None,
                 required_one_of: Any = None, required_if: Any = None, required_by: Any = None, *,
                 inject_invocation: bool = True) -> None:
        self._name = name
        self._inject_invocation = inject_invocation
        self.check_mode = bool(check_mode)
        self._diff = bool(diff)
        self._warnings: list[str] = []
        self._deprecations: list[dict[str, Any]] = []
        self.no_log_values: set[Any] = set()
        # AnsibleModule.params: the input updated with the validated values (also after a failed validation).
        self.params: dict[str, Any] = dict(task_args)
        validator = ArgumentSpecValidator(argument_spec, mutually_exclusive=mutually_exclusive, required_together=required_together,
                                          required_one_of=required_one_of, required_if=required_if, required_by=required_by)
        validation = validator.validate(task_args)
        self.params.update(validation.validated_parameters)
        # Collected before any failure so that even a validation error cannot echo a secret.
        self.no_log_values.update(validation._no_log_values)  # pylint: disable=protected-access
        # What ModuleArgumentSpecValidator reports through warn()/deprecate(), in the same order.
        self._deprecations.extend(_spec_deprecations(validation))
        self._warnings.extend(_alias_conflict_warnings(validation))
        if validation.error_messages:
            # AnsibleModule reports the first error, in these words.
            msg = validation.errors.msg
            if isinstance(validation.errors[0], UnsupportedError):
                msg = f"Unsupported parameters for ({name}) module: {msg}"
            self.fail_json(msg=msg)
        if self.check_mode and not supports_check_mode:
            self.exit_json(skipped=True, msg=f"remote module ({name}) does not support check mode")

    def warn(self, warning: str) -> None:
        self._warnings.append(str(warning))

    def deprecate(self, msg: str, version: str | None = None, date: str | None = None, collection_name: str | None = None) -> None:
        self._deprecations.append(_deprecation(msg, version=version, date=date, collection_name=collection_name))

    def exit_json(self, **kwargs: Any) -> NoReturn:
        # no "changed" default here: AnsibleModule adds none, the task executor does for both paths
        raise ModuleExit(self._finish(kwargs))

    def fail_json(self, msg: str, **kwargs: Any) -> NoReturn:
        exception = kwargs.pop("exception", None)
        if isinstance(exception, BaseException):
            exception = "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))
        result = dict(kwargs, failed=True, msg=str(msg))
        if exception:
            result["exception"] = str(exception)
        raise ModuleExit(self._finish(result))

    def _finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """AnsibleModule._return_formatted: invocation, warnings, deprecations, then no_log masking."""
        if self._inject_invocation:
            result.setdefault("invocation", {"module_args": self.params})
        else:
            result.pop("invocation", None)
        warnings = _as_list(result.pop("warnings", None)) + self._warnings
        if warnings:
            result["warnings"] = warnings
        deprecations = _as_list(result.pop("deprecations", None)) + self._deprecations
        if deprecations:
            result["deprecations"] = deprecations
        # As AnsibleModule: top-level booleans and None survive even when they collide with a no_log value.
        preserved = {key: value for key, value in result.items() if value is None or isinstance(value, bool)}
        masked = remove_values(result, self.no_log_values)
        masked.update(preserved)
        return masked


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _deprecation(msg: str, version: str | None = None, date: str | None = None, collection_name: str | None = None) -> dict[str, Any]:
    """A ``deprecations`` result entry in the dict form ansible-core accepts from any task result."""
    entry: dict[str, Any] = {"msg": msg}
    if date is not None:
        entry["date"] = str(date)
    elif version is not None:
        entry["version"] = str(version)
    if collection_name is not None:
        entry["collection_name"] = collection_name
    return entry


def _spec_deprecations(validation: ValidationResult) -> list[dict[str, Any]]:
    """Deprecated aliases and options with removed_in_version / removed_at_date that the task used."""
    return [_deprecation(item["msg"], version=item.get("version"), date=item.get("date"), collection_name=item.get("collection_name"))
            for item in getattr(validation, "_deprecations", []) if isinstance(item, Mapping) and "msg" in item]


def _alias_conflict_warnings(validation: ValidationResult) -> list[str]:
    return [f"Both option {warning['option']} and its alias {warning['alias']} are set." for warning in getattr(validation, "_warnings", [])
            if isinstance(warning, Mapping) and "option" in warning and "alias" in warning]


def _sets_environment(environment: Any) -> bool:
    """The ``environment`` keyword (a list of dicts or templates, inherited from the play) is in use."""
    if isinstance(environment, (list, tuple)):
        return any(bool(entry) for entry in environment)
    return bool(environment)


def core_version(version: str) -> tuple[int, int]:
    """``(major, minor)`` of an ansible-core version string such as ``2.21.0rc1``."""
    major, minor = version.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def is_tested_core(version: str | None = None) -> bool:
    """The running ansible-core (or ``version``) is within :data:`TESTED_ANSIBLE_CORE`."""
    return TESTED_ANSIBLE_CORE[0] <= core_version(version or ansible_core_version) <= TESTED_ANSIBLE_CORE[1]


def inject_invocation(task_vars: dict[str, Any]) -> bool:
    """Whether AnsibleModule would return ``invocation``: always before 2.21, then the INJECT_INVOCATION setting."""
    if C.config.get_configuration_definition("INJECT_INVOCATION") is None:
        return True
    return boolean(C.config.get_config_value("INJECT_INVOCATION", variables=task_vars), strict=False)


def plain(value: Any) -> Any:
    """Task arguments as the module would decode them from JSON: plain dicts, lists, str, numbers."""
    return json.loads(json.dumps(value))


def run_main_in_process(module_name: str, task_args: dict[str, Any], check_mode: bool, diff: bool, inject_invocation: bool = True) -> dict[str, Any]:
    """Import ``labops.itsm.<module_name>`` and run its ``main()`` with a ControllerModule; return the result.

    ``task_args`` must be plain JSON data (see :func:`plain`).
    """
    module = importlib.import_module(_MODULE_PACKAGE + module_name)
    factory = functools.partial(ControllerModule, module_name, task_args, check_mode, diff, inject_invocation=inject_invocation)
    try:
        module.main(module_class=factory)
    except ModuleExit as done:
        return done.result
    except SystemExit as exc:
        return {"failed": True, "msg": f"labops.itsm.{module_name} exited with status {exc.code} without a result"}
    except Exception as exc:  # noqa: BLE001  # pylint: disable=broad-except
        # What would have been a MODULE FAILURE with a traceback in a separate process.
        return {"failed": True, "msg": f"labops.itsm.{module_name} failed on the controller: {exc.__class__.__name__}: {exc}",
                "exception": traceback.format_exc()}
    return {"failed": True, "msg": f"labops.itsm.{module_name} returned without a result (neither exit_json nor fail_json)"}


class ControllerModuleAction(ActionBase):
    """Action plugin base: the module in-process on the controller when that is where it would run."""

    _supports_check_mode = True
    _supports_async = True
    MODULE = ""

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        module_args = self.module_args(task_vars)
        reason = self._out_of_process_reason(task_vars)
        if reason is None:
            try:
                args = plain(module_args)
            except (TypeError, ValueError) as exc:
                # e.g. a datetime from a template: the module process path has Ansible's own encoder for it
                reason = f"arguments are not plain JSON ({exc})"
        if reason is None:
            display.vvv(f"labops.itsm.{self.MODULE}: running in the controller's task worker (local connection, same Python)")
            result.update(run_main_in_process(self.MODULE, args, self._task.check_mode, self._task.diff, inject_invocation(task_vars)))
            return result
        display.vvv(f"labops.itsm.{self.MODULE}: running as a separate module process ({reason})")
        wrap_async = self._task.async_val and not self._connection.has_native_async
        result.update(self._execute_module(module_args=module_args, task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)  # pylint: disable=protected-access
        return result

    def module_args(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        """The arguments both execution paths give the module; subclasses may add to the task's."""
        del task_vars
        return dict(self._task.args)

    def _connection_vars(self, task_vars: dict[str, Any]) -> Mapping[str, Any] | None:
        """The variables of the host the module runs on: the delegated host's under ``delegate_to``.

        As ansible-core's ActionBase._configure_module; None when they are missing (then the
        in-process path cannot be shown to be equivalent).
        """
        if not self._task.delegate_to:
            return task_vars
        delegated = task_vars.get("ansible_delegated_vars") or {}
        host_vars = delegated.get(self._task.delegate_to)
        return host_vars if isinstance(host_vars, Mapping) else None

    def _out_of_process_reason(self, task_vars: dict[str, Any]) -> str | None:
        """None when running in-process is equivalent to running the module; else why it is not."""
        host_vars = self._connection_vars(task_vars)
        for scope in (task_vars, host_vars or {}):
            if not boolean(self._templar.template(scope.get(IN_PROCESS_VAR, True)), strict=False):
                return f"{IN_PROCESS_VAR} is false"
        if not is_tested_core():
            low, high = (".".join(map(str, version)) for version in TESTED_ANSIBLE_CORE)
            return f"ansible-core {ansible_core_version} is outside the tested range {low} .. {high}"
        if host_vars is None:
            return f"no variables for the delegated host {self._task.delegate_to}"
        if getattr(self._connection, "_load_name", None) not in _LOCAL_CONNECTIONS:
            return "connection is not local"
        if self._play_context.become:
            return "become is set"
        if self._task.async_val:
            return "async task"
        if _sets_environment(self._task.environment):
            return "the task or play sets environment"
        interpreter = host_vars.get("ansible_python_interpreter")
        if interpreter is not None:
            interpreter = str(self._templar.template(interpreter))
            if not os.path.isabs(interpreter) or os.path.realpath(interpreter) != os.path.realpath(sys.executable):
                return f"ansible_python_interpreter {interpreter} is not the controller's Python"
        return None
