# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""meta/runtime.yml's action groups match what the modules take.

``module_defaults: {group/labops.itsm.<group>: {...}}`` hands every option to every module of the group,
unfiltered: a module missing from a group silently ignores the defaults (ims_audit_info without
``ledger`` read the default ledger, not the configured one), and a module in a group whose options it
does not take fails with "Unsupported parameters". So:

* a module taking the ledger's storage options is in ``ledger``, a module taking the flat OTOBO
  connection options is in ``otobo``, a module taking the ServiceNow connection options is in
  ``servicenow``, a module taking the Jira connection options is in ``jira``, a module taking the intake spool's storage options is in
  ``intake``, and a member of a group takes all of the group's options;
* the collection's own playbooks and roles set in ``group/labops.itsm.<group>`` only the group's options
  (``actor_role`` is not an ims_audit_info option and its ``actor`` is a query filter, so who acts belongs to
  the task or the module's own module_defaults, not to group/labops.itsm.ledger).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml

from ansible_collections.labops.itsm.plugins.module_utils._jira import JIRA_CONNECTION_ARGSPEC
from ansible_collections.labops.itsm.plugins.module_utils._ledger import LEDGER_CONNECTION_ARGSPEC
from ansible_collections.labops.itsm.plugins.module_utils._otobo import OTOBO_CONNECTION_ARGSPEC
from ansible_collections.labops.itsm.plugins.module_utils._servicenow import SERVICENOW_CONNECTION_ARGSPEC
from ansible_collections.labops.itsm.plugins.module_utils._spool import SPOOL_ARGSPEC

REPO = Path(__file__).resolve().parents[2]
GROUP_OPTIONS = {"ledger": frozenset(LEDGER_CONNECTION_ARGSPEC), "otobo": frozenset(OTOBO_CONNECTION_ARGSPEC),
                 "intake": frozenset(SPOOL_ARGSPEC), "servicenow": frozenset(SERVICENOW_CONNECTION_ARGSPEC),
                 "jira": frozenset(JIRA_CONNECTION_ARGSPEC)}
MODULES = sorted(p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if not p.name.startswith("_"))


def module_options(name: str) -> frozenset:
    module = importlib.import_module("ansible_collections.labops.itsm.plugins.modules." + name)
    return frozenset(module.argument_spec())


def action_groups() -> dict:
    return yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())["action_groups"]


def test_groups_are_the_known_ones_and_name_real_modules():
    groups = action_groups()
    assert set(groups) == set(GROUP_OPTIONS)
    for group, members in groups.items():
        assert len(members) == len(set(members)), group
        assert set(members) <= set(MODULES), (group, sorted(set(members) - set(MODULES)))


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("group", sorted(GROUP_OPTIONS))
def test_membership_follows_the_options(module, group):
    takes = module_options(module) & GROUP_OPTIONS[group]
    member = module in action_groups()[group]
    # connection options shared by several backends (username, password, timeout, ...) do not tell the group;
    # the options no other group has do (instance / client_id for servicenow, webservice for otobo, deployment / token for jira)
    own = GROUP_OPTIONS[group] - frozenset().union(*(options for name, options in GROUP_OPTIONS.items() if name != group))
    if takes & own and not member:
        pytest.fail(f"{module} takes the {group} options {sorted(takes)} but is not in group/labops.itsm.{group}: module_defaults for the group "
                    "are silently ignored for it")
    if member and takes != GROUP_OPTIONS[group]:
        pytest.fail(f"{module} is in group/labops.itsm.{group} but does not take {sorted(GROUP_OPTIONS[group] - takes)}")


def _module_defaults(node):
    """Every module_defaults mapping in a loaded playbook / tasks file."""
    if isinstance(node, dict):
        if isinstance(node.get("module_defaults"), dict):
            yield node["module_defaults"]
        for value in node.values():
            yield from _module_defaults(value)
    elif isinstance(node, list):
        for item in node:
            yield from _module_defaults(item)


def test_our_group_defaults_only_set_options_every_member_takes():
    groups = action_groups()
    files = sorted((REPO / "playbooks").rglob("*.yml")) + sorted((REPO / "roles").rglob("tasks/*.yml"))
    checked = 0
    for path in files:
        for defaults in _module_defaults(yaml.safe_load(path.read_text())):
            for key, options in defaults.items():
                if not key.startswith("group/labops.itsm."):
                    continue
                group = key[len("group/labops.itsm."):]
                assert group in groups, f"{path.name}: unknown action group {key}"
                foreign = set(options or {}) - GROUP_OPTIONS[group]
                assert not foreign, f"{path.name}: {key} sets {sorted(foreign)}, not options of the group; set them on the task or in the module's own " \
                                    "module_defaults"
                for member in groups[group]:
                    unknown = set(options or {}) - module_options(member)
                    assert not unknown, f"{path.name}: {key} sets {sorted(unknown)}, which {member} does not take"
                checked += 1
    assert checked, "no group module_defaults found: the scan is broken"
