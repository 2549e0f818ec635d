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

import importlib
from typing import Any

from ansible_collections.labops.itsm.plugins.plugin_utils._controller_module import ControllerModuleAction
from ansible_collections.labops.itsm.plugins.plugin_utils._module_defaults import group_module_defaults

DEFAULT_PLATFORM = "otobo"
COLLECTION = "labops.itsm"
_PLATFORMS_MODULE = "ansible_collections.labops.itsm.plugins.module_utils._platforms"


def platform_option_names(platform: str) -> frozenset[str] | None:
    """The adapter's option names from the platform registry; None for a platform it does not know."""
    platforms = importlib.import_module(_PLATFORMS_MODULE)
    try:
        return frozenset(platforms.option_names(platform))
    except (KeyError, ValueError):
        return None


def fold_platform_defaults(args: dict[str, Any], group_defaults: dict[str, Any], option_names: frozenset[str]) -> dict[str, Any]:
    """``args`` with the group defaults that are platform options under ``platform_options``; task keys win."""
    folded = {key: value for key, value in group_defaults.items() if key in option_names}
    own = args.get("platform_options")
    if not folded or not (own is None or isinstance(own, dict)):
        return args  # nothing to add, or a malformed value the module's validation reports
    return dict(args, platform_options={**folded, **(own or {})})


class ActionModule(ControllerModuleAction):
    """labops.itsm.ims_sop; see plugins/plugin_utils/_controller_module.py."""

    MODULE = "ims_sop"

    def module_args(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        args = super().module_args(task_vars)
        platform = args.get("platform") or DEFAULT_PLATFORM
        if not isinstance(platform, str):
            return args
        group_defaults = group_module_defaults(self._task, self._templar, f"{COLLECTION}.{platform}")
        if not group_defaults:
            return args  # the registry is consulted only when there is something to fold
        option_names = platform_option_names(platform)
        if option_names is None:
            return args  # an unknown platform: the module's choices validation reports it
        return fold_platform_defaults(args, group_defaults, option_names)
