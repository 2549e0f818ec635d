# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""What a firing alert does to the newest ticket that carries its correlation key (jiralert's semantics).

One decision shared by the alert path (SOP 16 ``monitoring_intake`` on every platform) and ``jira_issue``:

* no ticket -> ``create``;
* an active ticket (not resolved, not closed) -> ``update`` (a repeated notification);
* a resolved ticket whose resolution is a "won't fix" one -> ``suppress`` while it was resolved within the reopen
  window (it is never reopened), ``create`` after it;
* a resolved ticket resolved within ``reopen_window`` seconds -> ``reopen``; older (or no window) -> ``create``;
* a closed ticket (IMS ``closed`` is final) -> ``create``, or ``suppress`` for a won't-fix one within the window.

``reopen_window`` None means the caller never reopens: a resolved ticket is then kept as it is (``update``, the
behaviour of the episode-keyed alert path, where a firing after the resolution of the same episode is a late repeat)
and a closed one is followed by a new ticket.
0 means never reopen: always ``create`` after a resolution. Pure functions, Python 3.8 syntax (module_utils).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
from typing import Any, Iterable, Mapping, Optional

from ansible_collections.labops.itsm.plugins.module_utils import _time
from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError

CREATE, UPDATE, REOPEN, SUPPRESS = "create", "update", "reopen", "suppress"
ACTIONS = (CREATE, UPDATE, REOPEN, SUPPRESS)
DONE_STATUSES = ("resolved", "closed")
# What a repeated firing with another title does to an active ticket (SOP 16 repeat_update, itsm_repeat_update).
REPEAT_UPDATES = ("none", "title", "note")


def parse_window(value: Any, name: str = "reopen_window") -> Optional[float]:
    """Seconds from an int/float or a duration text (``90s``, ``30m``, ``6h``, ``7d``); None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValidationError(f"{name} must be seconds or a duration like 30m, 6h, 7d, got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
        try:
            seconds = float(text[:-1]) * units[text[-1]] if text[-1:] in units else float(text)
        except (ValueError, KeyError):
            raise ValidationError(f"{name} must be seconds or a duration like 30m, 6h, 7d, got {value!r}")
    if seconds < 0:
        raise ValidationError(f"{name} must not be negative, got {value!r}")
    return seconds


def refire_action(record: Optional[Mapping[str, Any]], *, now: datetime.datetime, reopen_window: Optional[float],
                  never_reopen: Iterable[str] = ()) -> str:
    """One of :data:`ACTIONS` for a firing alert whose key finds ``record`` (IMS keys: status, resolved_at, resolution)."""
    if record is None:
        return CREATE
    status = record.get("status")
    if status not in DONE_STATUSES:
        return UPDATE
    if reopen_window is None:
        return UPDATE if status == "resolved" else CREATE
    resolved_at = _time.parse_time(record.get("resolved_at"), "resolved_at") if record.get("resolved_at") else None
    within = resolved_at is not None and (now - resolved_at).total_seconds() <= reopen_window
    wont_fix = {str(name).casefold() for name in never_reopen}
    if record.get("resolution") and str(record["resolution"]).casefold() in wont_fix:
        return SUPPRESS if within else CREATE
    if status == "resolved" and within and reopen_window > 0:
        return REOPEN
    return CREATE
