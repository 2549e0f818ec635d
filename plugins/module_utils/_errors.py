# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""One exception hierarchy for labops.itsm.

Every *expected* failure raises a subclass of :class:`LabopsError`; a module's
``main()`` has exactly one ``except LabopsError`` that turns it into
``fail_json(**exc.fail_kwargs())``. Anything else is a bug and keeps its traceback.

Messages and details must name platform, operation, HTTP method, path and status
plus the server's own error text; they never contain credentials, session ids
or tokens (callers pass already-scrubbed values).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from typing import Any, Dict


class LabopsError(Exception):
    """Base class: every expected failure of the collection."""

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = {k: v for k, v in details.items() if v is not None}

    def __str__(self) -> str:
        return self.message

    def fail_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for ``AnsibleModule.fail_json``."""
        kwargs = dict(self.details)
        kwargs["msg"] = self.message
        kwargs["error_class"] = type(self).__name__
        return kwargs


class ValidationError(LabopsError):
    """Bad input (from the user or rejected by the platform as invalid); never retried."""


class AuthError(LabopsError):
    """Credentials were rejected."""


class PermissionDenied(LabopsError):
    """Authenticated, but not allowed to perform the operation."""


class NotFoundError(LabopsError):
    """The referenced record does not exist."""


class CommunicationError(LabopsError):
    """Connection failures and timeouts, after retries were exhausted."""


class UnexpectedResponseError(LabopsError):
    """HTTP or envelope error: names platform, operation, status and server text."""


class AmbiguousWriteError(CommunicationError):
    """A write may or may not have been applied by the server.

    Callers must look the record up before deciding to send the write again.
    """


class PolicyViolation(LabopsError):
    """An IMS lifecycle policy rule was violated."""

    def __init__(self, message: str, sop: Any = None, rule: Any = None, value: Any = None, **details: Any) -> None:
        super().__init__(message, sop=sop, rule=rule, value=value, **details)
        self.sop = sop
        self.rule = rule
        self.value = value


class AuditWriteError(LabopsError):
    """The audit ledger could not be written: the governed action halts."""
