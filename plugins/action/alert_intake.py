# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for labops.itsm.alert_intake: the CMDB enrichment from the inventory, then the module.

The events of the task (``events``, or the entries the ``batch`` still owns, read from the spool it names) are
turned into SOP requests by ``module_utils/_alert_enrich.py`` with the play's variables
(``_alert_enrich.SETTINGS_VARS``) and ``hostvars`` of each alert's asset (``_alert_enrich.ASSET_VARS``);
the task's ``group/labops.itsm.<platform>`` module_defaults are folded into each request's platform
options as for ims_sop. The module gets the requests as its ``requests`` option and runs in-process on
the controller like every module of the collection (plugins/plugin_utils/_controller_module.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ansible_collections.labops.itsm.plugins.module_utils import _alert_enrich as enrich
from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError
from ansible_collections.labops.itsm.plugins.module_utils._spool import open_batch_spool
from ansible_collections.labops.itsm.plugins.plugin_utils._controller_module import ControllerModuleAction
from ansible_collections.labops.itsm.plugins.plugin_utils._module_defaults import with_platform_defaults


def inventory_settings(task_vars: Mapping[str, Any], templar: Any) -> dict[str, Any]:
    """The play's / group variables of the enrichment, templated."""
    return {name: templar.template(task_vars[name]) for name in enrich.SETTINGS_VARS if task_vars.get(name) is not None}


def asset_vars(hostvars: Any, name: str) -> dict[str, Any]:
    """The enrichment's variables of inventory host ``name`` ({} when it is not in the inventory)."""
    if not name or hostvars is None or name not in hostvars:
        return {}
    host = hostvars[name]
    return {key: host[key] for key in enrich.ASSET_VARS if key in host}


def batch_events(args: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(entry id, event) of the entries the batch still owns, read from the spool the batch names."""
    batch = args.get("batch")
    if not isinstance(batch, Mapping) or not batch.get("id"):
        return []
    # The module's option fallbacks (environment) apply here by hand: the action plugin runs before argument parsing.
    backend = args.get("spool_backend") or os.environ.get("LABOPS_SPOOL_BACKEND")
    path = args.get("spool_path") or os.environ.get("LABOPS_SPOOL_PATH")
    dsn = args.get("spool_dsn") or os.environ.get("LABOPS_SPOOL_DSN")
    with open_batch_spool(dict(batch), backend, path, dsn) as spool:
        return [(entry.id, entry.event) for entry in spool.entries_of(str(batch["id"]))]


class ActionModule(ControllerModuleAction):
    """labops.itsm.alert_intake; see plugins/plugin_utils/_controller_module.py."""

    MODULE = "alert_intake"

    def module_args(self, task_vars: dict[str, Any]) -> dict[str, Any]:
        args = super().module_args(task_vars)
        if args.get("release"):
            return args
        if isinstance(args.get("events"), list):
            events = [(None, event) for event in args["events"]]
        else:
            try:
                events = batch_events(args)
            except LabopsError:
                return args  # the module opens the spool again and reports (and releases) what is wrong with it
        settings = inventory_settings(task_vars, self._templar)
        hostvars = task_vars.get("hostvars")
        assets: dict[str, dict[str, Any]] = {}
        requests = []
        for index, (entry, event) in enumerate(events):
            try:
                name = enrich.asset_name(event)
                if name not in assets:
                    assets[name] = asset_vars(hostvars, name)
                request = enrich.request_for(event, settings, assets[name])
                request = with_platform_defaults(self._task, self._templar, request, request["platform"])
            except LabopsError as exc:
                request = {"error": f"the alert event cannot be handled: {exc}"}
            requests.append(dict(request, entry=entry, index=index))
        return dict(args, requests=requests)
