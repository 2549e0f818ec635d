# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin for labops.itsm.jira_issue_info: in-process on the controller when the module would run there."""

from __future__ import annotations

from ansible_collections.labops.itsm.plugins.plugin_utils._controller_module import ControllerModuleAction


class ActionModule(ControllerModuleAction):
    """labops.itsm.jira_issue_info; see plugins/plugin_utils/_controller_module.py."""

    MODULE = "jira_issue_info"
