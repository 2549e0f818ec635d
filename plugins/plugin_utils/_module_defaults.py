# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ``module_defaults`` a task sets for one action group, resolved by ansible-core itself.

ansible-core applies ``module_defaults`` only to the groups an action belongs to
(``ansible.executor.module_common._get_action_arg_defaults``). An action plugin that wants the
defaults of another group (ims_sop reading ``group/labops.itsm.otobo``) asks the same function,
presenting itself as the only member of that group: the merge of the task's ``module_defaults``
list (a later entry for the group replaces an earlier one) and the resolution of a templated group
are then exactly ansible-core's, on every release that has the function (2.19 .. 2.21 share its
signature and behaviour). ansible-core templates the values inside the group later, together with the
task's arguments (TaskArgsFinalizer); an action plugin receives its arguments templated, so the
folded values are templated here the same way.
"""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

from ansible.executor.module_common import _get_action_arg_defaults

# Not the name of any action, so module_defaults keyed by an action name never match it.
_ANY_MEMBER = "labops.itsm.__group_member__"


def group_module_defaults(task: Any, templar: Any, group: str) -> dict[str, Any]:
    """The templated ``module_defaults`` of ``task`` for ``group/<group>`` (fully qualified), or {}.

    ``templar`` is the action plugin's ``Templar`` (its variables are the task's).
    """
    if not task.module_defaults:
        return {}
    as_member = SimpleNamespace(module_defaults=task.module_defaults,
                                _parent=SimpleNamespace(_play=SimpleNamespace(_action_groups={_ANY_MEMBER: [group]})))
    resolved = _get_action_arg_defaults(_ANY_MEMBER, as_member, templar._engine)  # pylint: disable=protected-access
    return templar.template(resolved) if resolved else {}


# ---------------------------------------------------------------- platform options from group/labops.itsm.<platform>

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


def with_platform_defaults(task: Any, templar: Any, args: dict[str, Any], platform: Any) -> dict[str, Any]:
    """``args`` (holding ``platform_options``) with the task's ``group/labops.itsm.<platform>`` module_defaults folded in.

    ims_sop and alert_intake are not members of the platform groups: their platform options are one dict per
    platform. Only the adapter's options are taken; keys already in ``platform_options`` win.
    """
    if not isinstance(platform, str):
        return args
    group_defaults = group_module_defaults(task, templar, f"{COLLECTION}.{platform}")
    if not group_defaults:
        return args  # the registry is consulted only when there is something to fold
    option_names = platform_option_names(platform)
    if option_names is None:
        return args  # an unknown platform: the module's validation reports it
    return fold_platform_defaults(args, group_defaults, option_names)
