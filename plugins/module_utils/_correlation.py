# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The alert episode's correlation key, one implementation for modules and the ``correlation_key`` filter.

``sha256("alertmanager|" + fingerprint + "|" + canonical startsAt)[:24]``: the key the event source
(``extensions/eda/plugins/event_source/alertmanager.py``, which keeps a self-contained copy) puts on every
event and the incident carries. Modules may only import module_utils, so the filter plugin imports this file.

Internal interface (leading underscore): it may change between releases.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re
import uuid

from ansible_collections.labops.itsm.plugins.module_utils._time import canonical_timestamp

FINGERPRINT_RE = re.compile(r"[0-9a-f]{16}")
PREFIX = "alertmanager|"
KEY_LENGTH = 24
# The event source's meta.uuid namespace (uuid5(NAMESPACE_URL, "urn:labops.itsm:eda:alertmanager")); a unit test pins
# it to the source's EVENT_UUID_NAMESPACE.
SOURCE_EVENT_UUID_NAMESPACE = uuid.UUID("6270bfbe-3bb0-527b-9499-8037c14236b9")


def correlation_key(fingerprint: object, starts_at: object) -> str:
    """The alert episode's key; ValueError (naming the bad argument) for anything that is not a fingerprint and an RFC 3339 startsAt."""
    if not isinstance(fingerprint, str) or FINGERPRINT_RE.fullmatch(fingerprint) is None:
        raise ValueError("fingerprint must be 16 lowercase hex characters (AlertManager alert fingerprint)")
    if not isinstance(starts_at, str) or not starts_at:
        raise ValueError("starts_at must be the alert's startsAt string (RFC 3339)")
    try:
        canonical = canonical_timestamp(starts_at)
    except ValueError:
        raise ValueError("starts_at must be an RFC 3339 timestamp (the alert's startsAt), got %r" % starts_at) from None
    return hashlib.sha256((PREFIX + fingerprint + "|" + canonical).encode("utf-8")).hexdigest()[:KEY_LENGTH]


def alert_ticket_key(fingerprint: object) -> str:
    """The key of an alert's ticket across its episodes (``itsm_alert_grouping: alert``): ``sha256("alertmanager-alert|" + fingerprint)[:24]``."""
    if not isinstance(fingerprint, str) or FINGERPRINT_RE.fullmatch(fingerprint) is None:
        raise ValueError("fingerprint must be 16 lowercase hex characters (AlertManager alert fingerprint)")
    return hashlib.sha256(("alertmanager-alert|" + fingerprint).encode("utf-8")).hexdigest()[:KEY_LENGTH]


def group_ticket_key(receiver: str, group_key: str) -> str:
    """The key of an AlertManager group's ticket (``itsm_alert_grouping: group``): receiver and groupKey."""
    return hashlib.sha256(("alertmanager-group|%s|%s" % (receiver, group_key)).encode("utf-8")).hexdigest()[:KEY_LENGTH]


def source_event_uuid(group_key: str, fingerprint: str, status: str, starts_at: str) -> str:
    """The ``meta.uuid`` the event source gives an alert of group ``group_key`` (``starts_at`` in any RFC 3339 spelling)."""
    name = "%s|%s|%s|%s" % (group_key, fingerprint, status, canonical_timestamp(starts_at))
    return str(uuid.uuid5(SOURCE_EVENT_UUID_NAMESPACE, name))
