# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # Audit ledger options shared by every governed module (LEDGER_ARGSPEC in module_utils/_ledger.py).
    DOCUMENTATION = r"""
options:
  ledger_backend:
    description:
      - Where the hash-chained audit ledger is stored.
      - V(sqlite) keeps the ledger in the file O(ledger_path) on the controller.
      - V(postgresql) keeps it in the PostgreSQL database named by O(ledger_dsn).
      - If not set, the value of the E(LABOPS_LEDGER_BACKEND) environment variable is used.
    type: str
    choices: [sqlite, postgresql]
    default: sqlite
  ledger_path:
    description:
      - SQLite ledger file, used when O(ledger_backend=sqlite).
      - Missing directories are created with mode C(0700), the file with mode C(0600).
      - If not set, the value of the E(LABOPS_LEDGER_PATH) environment variable is used.
    type: path
    default: ~/.local/state/labops/ims_audit.sqlite3
  ledger_dsn:
    description:
      - PostgreSQL connection string (libpq key/value conninfo or C(postgresql://) URI), used when O(ledger_backend=postgresql).
      - Requires the Python library C(psycopg) (version 3) on the controller.
      - If not set, the value of the E(LABOPS_LEDGER_DSN) environment variable is used.
    type: str
  actor:
    description:
      - Who performs the governed action; recorded as C(actor) in every audit record.
      - If not set, the value of the E(LABOPS_ACTOR) environment variable is used.
    type: str
    default: automation
  actor_role:
    description:
      - The role of O(actor) (for example V(service_desk) or V(incident_manager)); recorded as C(role).
      - If not set, the value of the E(LABOPS_ACTOR_ROLE) environment variable is used.
    type: str
    default: automation
"""

    # Only the storage options, for read-only modules such as ims_audit_info.
    CONNECTION = r"""
options:
  ledger_backend:
    description:
      - Where the hash-chained audit ledger is stored.
      - V(sqlite) keeps the ledger in the file O(ledger_path) on the controller.
      - V(postgresql) keeps it in the PostgreSQL database named by O(ledger_dsn).
      - If not set, the value of the E(LABOPS_LEDGER_BACKEND) environment variable is used.
    type: str
    choices: [sqlite, postgresql]
    default: sqlite
  ledger_path:
    description:
      - SQLite ledger file, used when O(ledger_backend=sqlite).
      - If not set, the value of the E(LABOPS_LEDGER_PATH) environment variable is used.
    type: path
    default: ~/.local/state/labops/ims_audit.sqlite3
  ledger_dsn:
    description:
      - PostgreSQL connection string (libpq key/value conninfo or C(postgresql://) URI), used when O(ledger_backend=postgresql).
      - Requires the Python library C(psycopg) (version 3) on the controller.
      - If not set, the value of the E(LABOPS_LEDGER_DSN) environment variable is used.
    type: str
"""
