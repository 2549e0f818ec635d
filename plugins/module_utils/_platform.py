# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The ticket platform seam: what the SOP engine, the governed write and the alert path need
from OTOBO, ServiceNow or Jira, and the one correlation-key pattern every platform shares.

Records are IMS dicts (``_sop.RECORD_KEYS`` + ``id``); ``id`` is the platform's human ticket
reference (OTOBO ticket number, ServiceNow INC number, Jira issue key); ``entity`` is
``incident``, ``problem`` or ``change_request``.

``pending_until`` (``FOLLOW_UP_KEY``) is the IMS follow-up time of a waiting record (a vendor's answer is due,
a resolved incident's stability window ends). The engine sets it with the status; it is not a stored IMS
attribute, each adapter maps it to its own notion (OTOBO: the ``PendingTime`` of a pending state).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import re
from typing import Any, Callable, ContextManager, Mapping, Optional

from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError

# A correlation key: what the alert path derives (24 hex) and what callers may bring (8..64 hex).
CORRELATION_KEY_RE = re.compile(r"^[0-9a-f]{8,64}$")
DEFAULT_LOOKUP_LIMIT = 50
FOLLOW_UP_KEY = "pending_until"


def is_correlation_key(value: Any) -> bool:
    return isinstance(value, str) and CORRELATION_KEY_RE.match(value) is not None


def merge_platform_state_map(defaults: Mapping[str, Mapping[str, Any]], overrides: Optional[Mapping[str, Any]]) -> dict:
    """An adapter's ``{entity: {IMS status: platform state}}`` defaults with the user's overrides applied
    (the ``state_map`` option of every platform); unknown entities and statuses are refused by name."""
    result = {entity: dict(states) for entity, states in defaults.items()}
    for entity, states in (overrides or {}).items():
        if entity not in result or not isinstance(states, Mapping):
            raise ValidationError(f"state_map keys must be incident, problem or change_request with a status->state mapping, got {entity!r}")
        unknown = sorted(set(states) - set(result[entity]))
        if unknown:
            raise ValidationError("state_map.{0}: unknown IMS status {1}".format(entity, ", ".join(unknown)))
        result[entity].update((status, str(state)) for status, state in states.items())
    return result


def validate_correlation_key(key: Any) -> str:
    if not is_correlation_key(key):
        raise ValidationError(f"correlation_key must be 8 to 64 lowercase hex characters, got {key!r}")
    return key


class TicketPlatform:
    """What the SOP engine needs from a ticket platform."""

    name = "abstract"
    # True when the record ``create`` returns is the platform's own reply read under the account's read rights, so a
    # correlation key in it proves that ``find_by_correlation_key`` will find the record (no GET to check it).
    reply_proves_findable = False

    def carries_key(self, record: Mapping[str, Any], key: str) -> bool:
        """Whether a created ``record`` already shows that the next lookup of ``key`` finds it (``reply_proves_findable``)."""
        return self.reply_proves_findable and record.get("correlation_key") == key

    def get(self, entity: str, ref: str) -> Optional[dict]:
        """The record, or None when it does not exist."""
        raise NotImplementedError

    def create(self, entity: str, values: Mapping[str, Any], note: Mapping[str, Any]) -> Optional[dict]:
        """Create a ticket with ``values`` and a first note; return the stored record.

        When it cannot be read back: None, or the identity the platform replied with (``{id, entity}``), so
        that the creation can still be audited.

        May raise ``AmbiguousWriteError`` (the reply was lost): the governed write then looks the correlation
        key up before anything is sent again, so an adapter never re-sends a create itself.
        """
        raise NotImplementedError

    def update(self, record: Mapping[str, Any], changes: Mapping[str, Any], note: Optional[Mapping[str, Any]] = None) -> dict:
        """Apply ``changes`` (IMS keys) and an optional note; return the stored record."""
        raise NotImplementedError

    def add_note(self, record: Mapping[str, Any], note: Mapping[str, Any]) -> None:
        """Add a note (subject, body, visible) without changing fields."""
        raise NotImplementedError

    def search(self, entity: str, *, active_only: bool = False, limit: int = DEFAULT_LOOKUP_LIMIT,
               match: Optional[Callable[[Mapping[str, Any]], bool]] = None) -> list:
        """Records of one entity (newest first) for which ``match`` is true, at most ``limit``.

        ``match`` is applied before ``limit`` counts, so a lookup is not cut short by records it does not want.
        """
        raise NotImplementedError

    def find_by_correlation_key(self, key: str) -> Optional[dict]:
        """The incident carrying ``key`` (the newest), or None."""
        raise NotImplementedError

    def publish_kb(self, record: Mapping[str, Any], *, requested: Optional[str], planned: str, title: Optional[str],
                   content: Optional[str], kb_type: Optional[str]) -> str:
        """Publish the knowledge article of ``record`` (SOP kb_update, problem_workaround); return its reference.

        ``requested`` is the article id the caller named, ``planned`` the reference the plan predicted. A platform
        without a knowledge base keeps the reference on the record only and returns ``planned``; one with a knowledge
        base (ServiceNow ``kb_knowledge``) creates or updates the article (found again on a re-run, never duplicated)
        and returns its number, which becomes the record's ``kb_link``.
        """
        return planned

    def unfindable_hint(self, record: Optional[Mapping[str, Any]]) -> str:
        """Why a record this account just created is not found by ``find_by_correlation_key`` (names the permission)."""
        return f"the {self.name} account can create records but cannot find them again; grant it read access where it creates them"

    def creation_lock(self, key: str) -> ContextManager[Any]:
        """Held around "find ``key``, else create": two runs handling the same key at once (two AlertManager peers, two
        playbook runs) then create one record, not two. The default holds nothing (the alert path's spool and the
        rulebook's per-key lock already serialise one daemon's work); an adapter whose search lags behind its creates
        (Jira Cloud) holds a lock there and remembers what it created, so the second run finds the first one's record."""
        return contextlib.nullcontext()

    def routed(self, queue: Optional[str]) -> "TicketPlatform":
        """This adapter (same connection and session) creating and searching in ``queue``; ``self`` when the
        platform has no queues or ``queue`` is None. A batch of alerts for different queues shares one adapter."""
        return self
