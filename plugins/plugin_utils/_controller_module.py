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
(``ArgumentSpecValidator``, as AnsibleModule uses), check mode, diff, and no_log masking of the
result. In every other case (another connection, become, async, a task ``environment``, another
interpreter, or ``labops_itsm_in_process: false``) it runs the module the usual way.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
import traceback
from typing import Any, NoReturn

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.errors import UnsupportedError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

display = Display()

IN_PROCESS_VAR = "labops_itsm_in_process"
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
    """The part of ``AnsibleModule`` the labops.itsm modules use, running inside the task worker."""

    def __init__(self, name: str, task_args: dict[str, Any], check_mode: bool, diff: bool, argument_spec: dict[str, Any],
                 supports_check_mode: bool = False, mutually_exclusive: Any = None, required_together: Any = None,
                 required_one_of: Any = None, required_if: Any = None, required_by: Any = None) -> None:
        self.check_mode = bool(check_mode)
        self._diff = bool(diff)
        self._warnings: list[str] = []
        if self.check_mode and not supports_check_mode:
            raise ModuleExit({"skipped": True, "msg": "remote module does not support check mode"})
        validator = ArgumentSpecValidator(argument_spec, mutually_exclusive=mutually_exclusive, required_together=required_together,
                                          required_one_of=required_one_of, required_if=required_if, required_by=required_by)
        validation = validator.validate(task_args)
        # Collected before any failure so that even a validation error cannot echo a secret.
        self.no_log_values = set(validation._no_log_values)  # pylint: disable=protected-access
        self._warnings.extend(_unsupported_alias_warnings(validation))
        if validation.error_messages:
            # AnsibleModule reports the first error, in these words.
            msg = validation.errors.msg
            if isinstance(validation.errors[0], UnsupportedError):
                msg = f"Unsupported parameters for ({name}) module: {msg}"
            self.fail_json(msg=msg)
        self.params = validation.validated_parameters

    def warn(self, warning: str) -> None:
        self._warnings.append(str(warning))

    def exit_json(self, **kwargs: Any) -> NoReturn:
        kwargs.setdefault("changed", False)
        raise ModuleExit(self._finish(kwargs))

    def fail_json(self, msg: str, **kwargs: Any) -> NoReturn:
        exception = kwargs.pop("exception", None)
        if isinstance(exception, BaseException):
            exception = "".join(traceback.format_exception(type(exception), exception, exception.__traceback__))
        result = dict(kwargs, failed=True, msg=msg)
        if exception:
            result["exception"] = str(exception)
        raise ModuleExit(self._finish(result))

    def _finish(self, result: dict[str, Any]) -> dict[str, Any]:
        if self._warnings:
            result["warnings"] = list(result.get("warnings", [])) + self._warnings
        return remove_values(result, getattr(self, "no_log_values", set()))


def _unsupported_alias_warnings(validation: Any) -> list[str]:
    return [f"Both option {warning['option']} and its alias {warning['alias']} are set." for warning in getattr(validation, "_warnings", [])
            if isinstance(warning, dict) and "option" in warning and "alias" in warning]


def _sets_environment(environment: Any) -> bool:
    """The ``environment`` keyword (a list of dicts or templates, inherited from the play) is in use."""
    if isinstance(environment, (list, tuple)):
        return any(bool(entry) for entry in environment)
    return bool(environment)


def plain(value: Any) -> Any:
    """Task arguments as the module would decode them from JSON: plain dicts, lists, str, numbers."""
    return json.loads(json.dumps(value))


def run_main_in_process(module_name: str, task_args: dict[str, Any], check_mode: bool, diff: bool) -> dict[str, Any]:
    """Import ``labops.itsm.<module_name>`` and run its ``main()`` with a ControllerModule; return the result.

    ``task_args`` must be plain JSON data (see :func:`plain`).
    """
    module = importlib.import_module(_MODULE_PACKAGE + module_name)
    factory = functools.partial(ControllerModule, module_name, task_args, check_mode, diff)
    try:
        module.main(module_class=factory)
    except ModuleExit as done:
        return done.result
    except SystemExit as exc:
        return {"failed": True, "msg": f"labops.itsm.{module_name} exited with status {exc.code} without a result"}
    except Exception as exc:  # pylint: disable=broad-except
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
        reason = self._out_of_process_reason(task_vars)
        if reason is None:
            try:
                args = plain(self._task.args)
            except (TypeError, ValueError) as exc:
                # e.g. a datetime from a template: the module process path has Ansible's own encoder for it
                reason = f"arguments are not plain JSON ({exc})"
        if reason is None:
            display.vvv(f"labops.itsm.{self.MODULE}: running in the controller's task worker (local connection, same Python)")
            result.update(run_main_in_process(self.MODULE, args, self._task.check_mode, self._task.diff))
            return result
        display.vvv(f"labops.itsm.{self.MODULE}: running as a separate module process ({reason})")
        wrap_async = self._task.async_val and not self._connection.has_native_async
        result.update(self._execute_module(task_vars=task_vars, wrap_async=wrap_async))
        if not wrap_async:
            self._remove_tmp_path(self._connection._shell.tmpdir)  # pylint: disable=protected-access
        return result

    def _out_of_process_reason(self, task_vars: dict[str, Any]) -> str | None:
        """None when running in-process is equivalent to running the module; else why it is not."""
        setting = task_vars.get(IN_PROCESS_VAR, True)
        if not boolean(self._templar.template(setting), strict=False):
            return f"{IN_PROCESS_VAR} is false"
        if getattr(self._connection, "_load_name", None) not in _LOCAL_CONNECTIONS:
            return "connection is not local"
        if self._play_context.become:
            return "become is set"
        if self._task.async_val:
            return "async task"
        if _sets_environment(self._task.environment):
            return "the task or play sets environment"
        interpreter = task_vars.get("ansible_python_interpreter")
        if interpreter is not None:
            interpreter = str(self._templar.template(interpreter))
            if not os.path.isabs(interpreter) or os.path.realpath(interpreter) != os.path.realpath(sys.executable):
                return f"ansible_python_interpreter {interpreter} is not the controller's Python"
        return None
