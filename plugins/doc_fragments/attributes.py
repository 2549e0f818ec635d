# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # Attribute blocks shared by the collection's modules.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  action:
    description:
      - Has an action plugin. With a C(local) connection, the controller's Python and no C(become),
        C(async) or C(environment), the module runs inside the controller's task worker instead of a
        separate module process (same validation, check mode, diff and no_log masking, less latency).
      - Set the variable C(labops_itsm_in_process=false) to always run it as a separate process.
    support: full
"""

    ACTIONGROUP_OTOBO = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/labops.itsm.otobo) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - labops.itsm.otobo
"""

    ACTIONGROUP_OTOBO_LEDGER = r"""
options: {}
attributes:
  action_group:
    description:
      - Use C(group/labops.itsm.otobo) in C(module_defaults) to set the OTOBO connection and
        C(group/labops.itsm.ledger) to set the audit ledger for this module.
    support: full
    membership:
      - labops.itsm.otobo
      - labops.itsm.ledger
"""

    ACTIONGROUP_LEDGER = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/labops.itsm.ledger) in C(module_defaults) to set the audit ledger for this module.
    support: full
    membership:
      - labops.itsm.ledger
"""

    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
"""
