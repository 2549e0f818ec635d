"""labops.itsm.correlation_key: the alert-episode key shared with the alertmanager event source."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.labops.itsm.plugins.module_utils import _time

_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
_PREFIX = "alertmanager|"
_LENGTH = 24


def canonical_timestamp(value: str) -> str:
    """RFC 3339 ``value`` in AlertManager's webhook form (``_time.canonical_timestamp``), as a filter error."""
    try:
        return _time.canonical_timestamp(value)
    except ValueError:
        raise AnsibleFilterError("correlation_key: starts_at must be an RFC 3339 timestamp (the alert's startsAt), got %r" % value)


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
