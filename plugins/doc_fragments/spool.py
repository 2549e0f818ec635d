# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # The intake spool's storage options (SPOOL_ARGSPEC in module_utils/_spool.py).
    DOCUMENTATION = r"""
options:
  spool_backend:
    description:
      - Where the intake spool (the alert events the C(labops.itsm.alertmanager) event source accepted) is stored.
      - V(sqlite) keeps it in the file O(spool_path) on the controller; V(postgresql) in the database named by O(spool_dsn).
      - Use the same spool the event source writes to.
      - If not set, the value of the E(LABOPS_SPOOL_BACKEND) environment variable is used.
    type: str
    choices: [sqlite, postgresql]
    default: sqlite
  spool_path:
    description:
      - SQLite spool file, used when O(spool_backend=sqlite).
      - If not set, the value of the E(LABOPS_SPOOL_PATH) environment variable is used.
    type: path
    default: ~/.local/state/labops/intake_spool.sqlite3
  spool_dsn:
    description:
      - PostgreSQL connection string (libpq key/value conninfo or C(postgresql://) URI), used when O(spool_backend=postgresql).
      - Requires the Python library C(psycopg) (version 3) on the controller.
      - If not set, the value of the E(LABOPS_SPOOL_DSN) environment variable is used.
    type: str
"""

    ACTIONGROUP_INTAKE = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/labops.itsm.intake) in C(module_defaults) to set the intake spool for this module.
    support: full
    membership:
      - labops.itsm.intake
"""
