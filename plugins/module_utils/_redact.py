# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret redaction and data minimisation: the one implementation in the collection.

Used by the audit ledger before anything is written, by modules before data is
returned and by ``_http`` for every error message (``_http.scrub`` adds only the
replacement of registered secret values).  Internal interface (leading underscore):
it may change between releases.

* ``redact(value)``: recursively replaces values under secret-looking keys with
  ``REDACTED`` and scrubs secrets embedded in strings (bearer tokens, ``Authorization:``
  header lines, ``user:password@`` in URLs, ``password=...`` pairs).
* ``minimise(value)``: ``redact`` plus size limits (string length, list length, depth)
  so audit meta never carries raw log dumps.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import re
from typing import Any

REDACTED = "********"
MAX_STRING = 512
MAX_ITEMS = 50
MAX_DEPTH = 6

# Key names (case-insensitive, substring match) whose values are never kept.
SECRET_KEY_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "api-key",
    "apikey",
    "authorization",
    "session_id",
    "session-id",
    "sessionid",
    "credential",
    "private_key",
    "private-key",
    "privatekey",
)
_SECRET_KEY_RE = re.compile("|".join(re.escape(word) for word in SECRET_KEY_WORDS), re.IGNORECASE)

# ``Authorization: ...`` / ``Proxy-Authorization: ...`` up to the end of the line.
_AUTH_HEADER_RE = re.compile(r"(?im)\b((?:proxy-)?authorization\s*[:=]\s*)[^\r\n]+")
# ``Bearer <token>`` outside a header line.
_SCHEME_TOKEN_RE = re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=-]{8,}")
# ``Basic <base64>`` outside a header line: masked only when the token decodes to ``user:password``,
# so that "Basic authentication" in prose stays readable.
_BASIC_TOKEN_RE = re.compile(r"(?i)\b(basic)(\s+)([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])")
# ``scheme://user:password@host``
_URL_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^/\s@]*@")
# ``password=...``, ``"token": "..."``, ``SessionID=...`` in query strings, DSNs, JSON text.
_PAIR_RE = re.compile(
    r"(?i)(\b(?:password|passwd|pwd|pass|secret|client_secret|token|access_token|refresh_token|api_key|apikey|"
    r"session_id|sessionid|private_key|credentials?|auth)[\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&;,\"'}]+)"
)


def is_secret_key(key: "Any") -> bool:
    """True when a mapping key names a secret (case-insensitive substring match)."""
    return isinstance(key, str) and _SECRET_KEY_RE.search(key) is not None


def _pair_replacement(match: "re.Match") -> str:
    value = match.group(2)
    if value[:1] in ("'", '"'):
        return match.group(1) + value[0] + REDACTED + value[0]
    return match.group(1) + REDACTED


def _is_basic_credential(token: str) -> bool:
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded


def _basic_replacement(match: "re.Match") -> str:
    if not _is_basic_credential(match.group(3)):
        return match.group(0)
    return match.group(1) + match.group(2) + REDACTED


def scrub_string(text: str) -> str:
    """Remove credentials embedded in free text: Authorization header lines, Bearer and Basic
    credentials, ``user:password@`` in URLs and secret ``key=value`` / ``"key": "value"`` pairs."""
    if not text:
        return text
    text = _AUTH_HEADER_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _SCHEME_TOKEN_RE.sub(lambda m: m.group(1) + m.group(2) + REDACTED, text)
    text = _BASIC_TOKEN_RE.sub(_basic_replacement, text)
    text = _URL_USERINFO_RE.sub(lambda m: m.group(1) + ":" + REDACTED + "@", text)
    return _PAIR_RE.sub(_pair_replacement, text)


def truncate(text: str, limit: int = MAX_STRING) -> str:
    """Cut ``text`` to ``limit`` characters, saying how much was dropped."""
    if limit is None or len(text) <= limit:
        return text
    marker = "...[truncated %d chars]" % (len(text) - limit)
    return text[:limit] + marker


def redact(value: "Any") -> "Any":
    """Return a copy of ``value`` with secrets replaced; no size limits."""
    return _walk(value, max_string=None, max_items=None, max_depth=None, depth=0)


def minimise(value: "Any", max_string: int = MAX_STRING, max_items: int = MAX_ITEMS, max_depth: int = MAX_DEPTH) -> "Any":
    """``redact`` plus size limits, for audit meta (seed 002: record minimal meta)."""
    return _walk(value, max_string=max_string, max_items=max_items, max_depth=max_depth, depth=0)


def _walk(value: "Any", max_string: "Any", max_items: "Any", max_depth: "Any", depth: int) -> "Any":
    limits = (max_string, max_items, max_depth)
    if isinstance(value, dict):
        return _walk_dict(value, limits, depth)
    if isinstance(value, (list, tuple, set, frozenset)):
        return _walk_list(list(value), limits, depth)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return truncate(scrub_string(value), max_string) if max_string else scrub_string(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return _walk(str(value), max_string, max_items, max_depth, depth)


def _too_deep(limits: tuple, depth: int) -> bool:
    return limits[2] is not None and depth >= limits[2]


def _walk_dict(value: dict, limits: tuple, depth: int) -> "Any":
    if _too_deep(limits, depth):
        return "[nested too deep: %d keys omitted]" % len(value)
    result = {}
    items = list(value.items())
    kept = items if limits[1] is None else items[:limits[1]]
    for key, item in kept:
        key = str(key)
        result[key] = REDACTED if is_secret_key(key) else _walk(item, limits[0], limits[1], limits[2], depth + 1)
    if len(kept) < len(items):
        result["_omitted_keys"] = len(items) - len(kept)
    return result


def _walk_list(value: list, limits: tuple, depth: int) -> "Any":
    if _too_deep(limits, depth):
        return "[nested too deep: %d items omitted]" % len(value)
    kept = value if limits[1] is None else value[:limits[1]]
    result = [_walk(item, limits[0], limits[1], limits[2], depth + 1) for item in kept]
    if len(kept) < len(value):
        result.append("[%d more items omitted]" % (len(value) - len(kept)))
    return result
