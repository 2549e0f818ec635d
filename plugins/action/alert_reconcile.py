# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for labops.itsm.alert_reconcile.

As for labops.itsm.ims_sop: the task's ``module_defaults`` of ``group/labops.itsm.<platform>`` are folded into
``platform_options`` (keys given in the task win; not done for the ``platforms`` list), then the module runs
in-process on the controller when it would run there (plugins/plugin_utils/_controller_module.py).
"""

from __future__ import annotations

from typing import Any

from ansible_collections.labops.itsm.plugins.action.ims_sop import ActionModule as ImsSopAction


class ActionModule(ImsSopAction):
    """labops.itsm.alert_reconcile."""

    MODULE = "alert_reconcile"

    def module_args(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        if self._task.args.get("platforms"):
            return dict(self._task.args)
        return super().module_args(task_vars)
