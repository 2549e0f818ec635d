"""labops.itsm.correlation_key: the alert-episode key shared with the alertmanager event source."""

from __future__ import annotations

import datetime
import hashlib
import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError

_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")
_PREFIX = "alertmanager|"
_LENGTH = 24


def canonical_timestamp(value: str) -> str:
    """RFC 3339 ``value`` in AlertManager's webhook form: UTC, ``Z``, fraction without trailing zeros.

    Mirrors ``canonical_timestamp`` of the alertmanager event source, so that ``...:25.000Z``
    (the v2 API's form) and ``...:25Z`` (the webhook's form) give the same key.
    """
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise AnsibleFilterError("correlation_key: starts_at must be an RFC 3339 timestamp (the alert's startsAt), got %r" % value)
    seconds, fraction, zone = match.groups()
    fraction = (fraction or "").rstrip("0").rstrip(".")
    if zone not in ("Z", "+00:00", "-00:00"):
        sign = 1 if zone[0] == "+" else -1
        offset = datetime.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])) * sign
        seconds = (datetime.datetime.strptime(seconds, "%Y-%m-%dT%H:%M:%S") - offset).strftime("%Y-%m-%dT%H:%M:%S")
    return seconds + fraction + "Z"


def correlation_key(fingerprint: Any, starts_at: Any) -> str:
    """Return sha256("alertmanager|<fingerprint>|<canonical startsAt>") as 24 lowercase hex characters."""
    if not isinstance(fingerprint, str) or _FINGERPRINT.fullmatch(fingerprint) is None:
        raise AnsibleFilterError("correlation_key: fingerprint must be 16 lowercase hex characters (AlertManager alert fingerprint)")
    if not isinstance(starts_at, str) or not starts_at:
        raise AnsibleFilterError("correlation_key: starts_at must be the alert's startsAt string (RFC 3339)")
    canonical = canonical_timestamp(starts_at)
    return hashlib.sha256((_PREFIX + fingerprint + "|" + canonical).encode("utf-8")).hexdigest()[:_LENGTH]


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Callable[..., str]]:
        """Map filter names to callables."""
        return {"correlation_key": correlation_key}
