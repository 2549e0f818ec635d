"""labops.itsm.correlation_key: the alert-episode key shared with the alertmanager event source."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.labops.itsm.plugins.module_utils import _correlation, _time


def canonical_timestamp(value: str) -> str:
    """RFC 3339 ``value`` in AlertManager's webhook form (``_time.canonical_timestamp``), as a filter error."""
    try:
        return _time.canonical_timestamp(value)
    except ValueError:
        raise AnsibleFilterError("correlation_key: starts_at must be an RFC 3339 timestamp (the alert's startsAt), got %r" % value)


def correlation_key(fingerprint: Any, starts_at: Any) -> str:
    """Return sha256("alertmanager|<fingerprint>|<canonical startsAt>") as 24 lowercase hex characters.

    The implementation lives in module_utils/_correlation.py, so that modules (which may only import
    module_utils) compute the same key.
    """
    try:
        return _correlation.correlation_key(fingerprint, starts_at)
    except ValueError as exc:
        raise AnsibleFilterError("correlation_key: %s" % exc) from None


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Callable[..., str]]:
        """Map filter names to callables."""
        return {"correlation_key": correlation_key}
