# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for labops.itsm.ims_sop.

Before either execution path runs, the task's ``module_defaults`` for the chosen platform's action
group (``group/labops.itsm.<platform>``, e.g. the OTOBO url and credentials a play sets once for
``otobo_ticket`` and ``otobo_ticket_info``) are folded into ``platform_options``: ims_sop is not a
member of that group, its platform options are one dict. Only the adapter's options are taken; keys
in the task's own ``platform_options`` win. See plugins/plugin_utils/_controller_module.py for the
in-process execution.
"""

from __future__ import annotations

from typing import Any

from ansible_collections.labops.itsm.plugins.plugin_utils._controller_module import ControllerModuleAction
from ansible_collections.labops.itsm.plugins.plugin_utils._module_defaults import with_platform_defaults

DEFAULT_PLATFORM = "otobo"


class ActionModule(ControllerModuleAction):
    """labops.itsm.ims_sop; see plugins/plugin_utils/_controller_module.py."""

    MODULE = "ims_sop"

    def module_args(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        args = super().module_args(task_vars)
        return with_platform_defaults(self._task, self._templar, args, args.get("platform") or DEFAULT_PLATFORM)
