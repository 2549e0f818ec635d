"""ims_sop's action plugin folds the platform group's module_defaults into platform_options."""

from __future__ import annotations

import sys
from types import ModuleType, SimpleNamespace

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.labops.itsm.plugins.action.ims_sop import ActionModule as ImsSopAction
from ansible_collections.labops.itsm.plugins.plugin_utils import _module_defaults as module_defaults
from ansible_collections.labops.itsm.plugins.plugin_utils._module_defaults import fold_platform_defaults, group_module_defaults

OTOBO = "group/labops.itsm.otobo"
OTOBO_OPTIONS = frozenset(("url", "username", "password", "validate_certs", "webservice", "customer_user"))


def templar(**variables):
    return Templar(loader=DataLoader(), variables=variables)


def task(module_defaults, **args):
    return SimpleNamespace(module_defaults=module_defaults, args=args)


def test_group_defaults_are_resolved_and_templated_by_ansible_core():
    defaults = [
        {OTOBO: {"url": trust_as_template("{{ base }}/otobo"), "username": "alertbot"}},
        {"group/labops.itsm.ledger": {"ledger_path": "/var/lib/ledger.sqlite3"}, "labops.itsm.ims_sop": {"queue": "Raw"}},
    ]
    found = group_module_defaults(task(defaults), templar(base="https://otobo.example"), "labops.itsm.otobo")
    assert found == {"url": "https://otobo.example/otobo", "username": "alertbot"}
    assert group_module_defaults(task(defaults), templar(), "labops.itsm.servicenow") == {}
    assert group_module_defaults(task(None), templar(), "labops.itsm.otobo") == {}


def test_a_later_module_defaults_entry_replaces_the_group_as_in_ansible_core():
    """Play and block module_defaults for the same group: the inner one replaces it (no key merge)."""
    defaults = [{OTOBO: {"url": "https://a", "username": "u"}}, {OTOBO: {"username": "v"}}]
    assert group_module_defaults(task(defaults), templar(), "labops.itsm.otobo") == {"username": "v"}


def test_a_whole_group_from_a_template():
    defaults = [{OTOBO: trust_as_template("{{ itsm_platform_options.otobo }}")}]
    variables = {"itsm_platform_options": {"otobo": {"url": "https://otobo.example", "webservice": "GTC"}}}
    assert group_module_defaults(task(defaults), templar(**variables), "labops.itsm.otobo") == variables["itsm_platform_options"]["otobo"]


def test_fold_keeps_task_keys_and_only_platform_options():
    args = {"sop": "incident_identify", "platform_options": {"username": "task-user"}}
    folded = fold_platform_defaults(args, {"url": "https://a", "username": "default-user", "ledger_path": "/x", "queue": "Raw"}, OTOBO_OPTIONS)
    assert folded == {"sop": "incident_identify", "platform_options": {"url": "https://a", "username": "task-user"}}
    assert args["platform_options"] == {"username": "task-user"}  # the task's own args are not changed
    assert fold_platform_defaults({"sop": "x"}, {"url": "https://a"}, OTOBO_OPTIONS) == {"sop": "x", "platform_options": {"url": "https://a"}}
    assert fold_platform_defaults({"sop": "x", "platform_options": None}, {"url": "https://a"}, OTOBO_OPTIONS)["platform_options"] == {"url": "https://a"}
    # nothing to fold, or a value the module's validation rejects: the arguments stay as the task gave them
    assert fold_platform_defaults({"sop": "x"}, {"queue": "Raw"}, OTOBO_OPTIONS) == {"sop": "x"}
    assert fold_platform_defaults({"platform_options": "bogus"}, {"url": "https://a"}, OTOBO_OPTIONS) == {"platform_options": "bogus"}


@pytest.fixture
def registry(monkeypatch):
    """Stand-in for module_utils/_platforms.py (H1) until it is merged; the contract's option_names()."""
    fake = ModuleType("_platforms")
    fake.calls = []

    def option_names(platform):
        fake.calls.append(platform)
        if platform != "otobo":
            raise KeyError(platform)
        return OTOBO_OPTIONS

    fake.option_names = option_names
    monkeypatch.setitem(sys.modules, module_defaults._PLATFORMS_MODULE, fake)
    return fake


def ims_sop(module_defaults, variables=None, **args):
    plugin = object.__new__(ImsSopAction)
    plugin._task = task(module_defaults, **args)
    plugin._templar = templar(**(variables or {}))
    return plugin


def test_the_action_folds_before_either_path(registry):
    defaults = [{OTOBO: {"url": trust_as_template("{{ otobo_url }}"), "password": "from-defaults", "queue": "Raw"}}]
    plugin = ims_sop(defaults, {"otobo_url": "https://otobo.example"}, sop="incident_identify", platform_options={"password": "from-task"})
    assert plugin.module_args({}) == {"sop": "incident_identify", "platform_options": {"url": "https://otobo.example", "password": "from-task"}}
    assert registry.calls == ["otobo"]


def test_the_platform_argument_chooses_the_group(registry):
    defaults = [{OTOBO: {"url": "https://otobo.example"}, "group/labops.itsm.jira": {"url": "https://jira.example"}}]
    # an unregistered platform: nothing is folded, the module's choices validation reports it
    assert ims_sop(defaults, sop="x", platform="jira").module_args({}) == {"sop": "x", "platform": "jira"}
    assert registry.calls == ["jira"]


def test_without_group_defaults_the_registry_is_not_consulted(registry):
    assert ims_sop([{"labops.itsm.ims_sop": {"queue": "Raw"}}], sop="x").module_args({}) == {"sop": "x"}
    assert registry.calls == []


def test_omitted_and_nested_values():
    defaults = [{OTOBO: {"url": "https://a", "password": trust_as_template("{{ omit }}"),
                         "state_map": {"resolved": trust_as_template("{{ resolved_state }}")}}}]
    found = group_module_defaults(task(defaults), templar(resolved_state="pending auto close+"), "labops.itsm.otobo")
    assert found == {"url": "https://a", "state_map": {"resolved": "pending auto close+"}}
