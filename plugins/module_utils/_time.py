# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The collection's one time helper: parsing, UTC normalisation and the text forms we store.

* :func:`parse_time` reads ISO-8601 / RFC 3339 (``Z`` allowed), the ``YYYY-MM-DD HH:MM:SS``
  form ticket platforms answer with (taken as UTC) and datetimes; naive means UTC;
* :func:`format_time` is the second-precision form records and tickets carry;
* :func:`format_ts` is the fixed-width microsecond form of the audit ledger (sorts as text);
* :func:`canonical_timestamp` is AlertManager's webhook spelling of an instant, the input of
  the correlation key (the event source keeps a self-contained copy; a unit test pins both).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import re
from typing import Any, Optional

from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError

_RFC3339 = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})")


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def parse_time(value: Any, name: str = "timestamp") -> Optional[datetime.datetime]:
    """ISO-8601 (``Z`` allowed), ``YYYY-MM-DD HH:MM:SS`` (UTC) or a datetime -> aware UTC datetime; None for empty."""
    if value is None or value == "":
        return None
    moment = value
    if not isinstance(moment, datetime.datetime):
        text = str(value).strip()
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValidationError(f"{name} {value!r} is not an ISO-8601 timestamp", value=str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.astimezone(datetime.timezone.utc)


def format_time(moment: Optional[datetime.datetime]) -> Optional[str]:
    """``2025-01-31T12:00:00Z`` (seconds, UTC)."""
    if moment is None:
        return None
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_ts(moment: datetime.datetime) -> str:
    """``2025-01-31T12:00:00.000001Z``: fixed width, so timestamps compare correctly as strings."""
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalise_time(value: Any, name: str = "timestamp") -> Optional[str]:
    """Any accepted input -> :func:`format_time` text (None for empty)."""
    return format_time(parse_time(value, name))


def canonical_timestamp(value: str) -> str:
    """RFC 3339 ``value`` in AlertManager's webhook form: UTC, ``Z``, fraction without trailing zeros.

    ``...:25.000Z`` (the v2 API's form) and ``...:25Z`` (the webhook's form) give the same text.
    Raises ValueError for anything that is not RFC 3339.
    """
    match = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    seconds, fraction, zone = match.groups()
    moment = datetime.datetime.strptime(seconds, "%Y-%m-%dT%H:%M:%S")
    fraction = (fraction or "").rstrip("0").rstrip(".")
    if zone not in ("Z", "+00:00", "-00:00"):
        sign = 1 if zone[0] == "+" else -1
        try:
            moment -= datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) * sign
        except OverflowError:
            raise ValueError(f"not an RFC 3339 timestamp in years 1-9999: {value!r}")
    # strftime("%Y") does not zero-pad years below 1000 on glibc; format the fields ourselves.
    text = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    return text + fraction + "Z"
