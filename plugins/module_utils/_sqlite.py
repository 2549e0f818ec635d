# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""SQLite plumbing shared by the audit ledger and the intake spool.

Internal interface (leading underscore): it may change between releases.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import sqlite3
import time
from typing import Any


def enable_wal(conn: Any, busy_timeout: float) -> None:
    """Switch ``conn``'s database to WAL (readers run beside the single writer); retried while another process holds a lock."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
