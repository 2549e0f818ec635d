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
