"""labops.itsm.correlation_key: the alert-episode key shared with the alertmanager event source."""

from __future__ import annotations

import hashlib
import re
from typing import Any, Callable

from ansible.errors import AnsibleFilterError

_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
_PREFIX = "alertmanager|"
_LENGTH = 24


def correlation_key(fingerprint: Any, starts_at: Any) -> str:
    """Return sha256("alertmanager|<fingerprint>|<startsAt>") as 24 lowercase hex characters."""
    if not isinstance(fingerprint, str) or _FINGERPRINT.fullmatch(fingerprint) is None:
        raise AnsibleFilterError("correlation_key: fingerprint must be 16 lowercase hex characters (AlertManager alert fingerprint)")
    if not isinstance(starts_at, str) or not starts_at:
        raise AnsibleFilterError("correlation_key: starts_at must be the alert's startsAt string, exactly as AlertManager sent it")
    return hashlib.sha256((_PREFIX + fingerprint + "|" + starts_at).encode("utf-8")).hexdigest()[:_LENGTH]


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Callable[..., str]]:
        """Map filter names to callables."""
        return {"correlation_key": correlation_key}
