# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""labops.itsm.priority_matrix, severity_to_priority and sla_targets (seed 004, seed 001)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.labops.itsm.plugins.module_utils import _priority
from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError


def _wrap(name, func, *args):
    try:
        return func(*args)
    except LabopsError as exc:
        raise AnsibleFilterError(f"{name}: {exc}")


def priority_matrix(urgency, impact):
    """Seed 004 urgency x impact matrix → S1..S4."""
    return _wrap("priority_matrix", _priority.priority_matrix, urgency, impact)


def severity_to_priority(severity, platform, mapping=None):
    """S1..S4 (or critical/high/medium/low) → the platform's priority value."""
    if mapping is not None and not isinstance(mapping, dict):
        raise AnsibleFilterError(f"severity_to_priority: mapping must be a dictionary, got {type(mapping).__name__}")
    return _wrap("severity_to_priority", _priority.severity_to_priority, severity, platform, mapping)


def sla_targets(severity):
    """Response and resolution targets of an S-level."""
    return _wrap("sla_targets", _priority.sla_targets, severity)


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self):
        return {
            "priority_matrix": priority_matrix,
            "severity_to_priority": severity_to_priority,
            "sla_targets": sla_targets,
        }
