# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one governed write, shared by ``otobo_ticket`` and the SOP engine (``_sop.run_sop``).

A create always goes: find by correlation key -> create -> (reply lost: look the key up before any
re-send, re-send once only when nothing was created) -> audit the creation -> check that the next run
will find the record the way it looks for it. The platform is reached only through callables, so the
same code governs OTOBO tickets (``otobo_ticket``) and IMS records of any ``TicketPlatform``.

Creation audit records carry ``record_key`` ``<platform>:create:<ref_type>:<ref_id>``: the ledger stores
one record per key, so a creation is audited at most once, whether by the run that created the record or,
when that run lost its reply or died before its audit, by the next run that finds the record
(a back-fill, marked ``meta.backfilled``).

Every governed create is counted in the ticket-creation metrics (``_metrics``: success or failure, its
duration) and logged as one JSON line when ``LABOPS_LOG_FILE`` is set; ``dry_run`` counts a check-mode run
that would create. A metrics failure is a warning, never a failed write.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time
from typing import Any, Callable, Mapping, Optional

from ansible_collections.labops.itsm.plugins.module_utils._errors import (
    AmbiguousWriteError,
    AuditWriteError,
    LabopsError,
    NotFoundError,
    PermissionDenied,
)
from ansible_collections.labops.itsm.plugins.module_utils._metrics import record_dry_run, record_ticket_creation

BACKFILL_REASON = "the ledger had no creation record for it (the create reply was lost or its run failed before the audit)"

Finder = Callable[[str], Optional[Mapping[str, Any]]]
Sender = Callable[[], Optional[Mapping[str, Any]]]
Warn = Callable[[str], None]


def creation_record_key(platform: str, ref_type: str, ref_id: Any) -> str:
    """The ledger ``record_key`` of the record that audits the creation of ``ref_type`` ``ref_id``."""
    return f"{platform}:create:{ref_type}:{ref_id}"


def audit_entry(action: str, ref_type: str, ref_id: Any = None, fields: Optional[Mapping[str, Any]] = None,
                meta: Optional[Mapping[str, Any]] = None, record_key: Optional[str] = None) -> dict:
    """One audit record to append (``ref_id`` None: the record being created)."""
    return {"action": action, "ref_type": ref_type, "ref_id": ref_id, "fields": dict(fields or {}), "meta": dict(meta or {}),
            "record_key": record_key}


class Auditor:
    """Appends the audit records of one governed action for one actor; remembers what it wrote.

    ``on_failure(entry, ref_id, exc)`` turns a ledger failure after the platform write into the caller's
    ``AuditWriteError`` (each caller names what was applied and is now unaudited).
    """

    def __init__(self, ledger: Any, *, actor: Any, role: Any, platform: str, sop: Optional[str] = None,
                 on_failure: Optional[Callable[[Mapping[str, Any], Any, LabopsError], LabopsError]] = None) -> None:
        self.ledger = ledger
        self.actor = actor
        self.role = role
        self.platform = platform
        self.sop = sop
        self.on_failure = on_failure or _default_failure
        self.records = []  # type: list

    def preflight(self) -> None:
        self.ledger.preflight()

    def _kwargs(self, entry: Mapping[str, Any], ref_id: Any) -> dict:
        return dict(role=self.role, sop=self.sop, platform=self.platform, fields=entry.get("fields") or {},
                    meta=entry.get("meta") or {}, record_key=entry.get("record_key"))

    def append(self, entry: Mapping[str, Any], ref_id: Any) -> dict:
        try:
            record = self.ledger.append(entry["action"], entry["ref_type"], ref_id, self.actor, **self._kwargs(entry, ref_id))
        except LabopsError as exc:
            raise self.on_failure(entry, ref_id, exc)
        self.records.append(record)
        return record

    def preview(self, entry: Mapping[str, Any], ref_id: Any) -> dict:
        """The record ``append`` would write now (check mode)."""
        record = self.ledger.preview(entry["action"], entry["ref_type"], ref_id, self.actor, **self._kwargs(entry, ref_id))[1]
        self.records.append(record)
        return record

    def has_creation(self, ref_type: str, ref_id: Any) -> bool:
        """Whether the ledger already audits the creation of ``ref_type`` ``ref_id``.

        The record key finds every creation written since the governed write exists; older ledgers are
        searched by action (``create``, or ``identify`` by SOP 2 ``incident_identify``).
        """
        if self.ledger.find(creation_record_key(self.platform, ref_type, ref_id)) is not None:
            return True
        if self.ledger.query(ref_type=ref_type, ref_id=str(ref_id), action="create", limit=1):
            return True
        return any(record.get("sop") == "incident_identify"
                   for record in self.ledger.query(ref_type=ref_type, ref_id=str(ref_id), action="identify"))


def module_auditor(ledger: Any, params: Mapping[str, Any], *, platform: str, platform_label: str, what: str, ref_key: str,
                   id_key: str, id_label: Optional[str] = None) -> Auditor:
    """The Auditor of a governed module: who acts from its ledger options (``actor``, ``actor_role``); a ledger write that
    fails after the platform write names the record and says UNAUDITED, e.g. ``servicenow incident INC0010001 (sys_id ...):
    the update was applied on ServiceNow but is UNAUDITED: ...``. The entries carry the platform's own id in ``meta[id_key]``;
    the error's details are ``{ref_key: <audited id>, id_key: <that id>}``."""
    def unaudited(entry: Mapping[str, Any], ref_id: Any, exc: LabopsError) -> LabopsError:
        other = (entry.get("meta") or {}).get(id_key)
        return AuditWriteError("{0} {1} ({2} {3}): the {4} was applied on {5} but is UNAUDITED: the ledger write failed: {6}".format(
            what, ref_id, id_label or id_key, other, entry["action"], platform_label, exc), **{ref_key: ref_id, id_key: other})

    return Auditor(ledger, actor=params.get("actor"), role=params.get("actor_role"), platform=platform, on_failure=unaudited)


def _default_failure(entry: Mapping[str, Any], ref_id: Any, exc: LabopsError) -> LabopsError:
    return AuditWriteError("the {0} of {1} {2} was applied but is UNAUDITED: the ledger write failed: {3}".format(
        entry["action"], entry["ref_type"], ref_id, exc), ref_type=entry["ref_type"], ref_id=ref_id)


class GovernedWrite:
    """Create-once with recovery and creation audit, over a platform given as callables.

    ``find(key)`` is the lookup the next run will do (``find_by_correlation_key``); ``ref(record)`` is the
    audited id; ``hint(record)`` explains (naming the missing permission) why a created record is not found.
    ``log_fields`` go to the JSON log line of each create (e.g. ``job_id``). ``found_in_reply(record, key)``
    (optional) says whether the record the create answered with already proves that the next run's lookup finds
    it (ServiceNow: the POST reply passes the same read ACLs as the GET and carries the key), which saves the
    read back after the create; when it answers False the record is looked up as usual.
    """

    def __init__(self, auditor: Auditor, *, find: Finder, ref: Callable[[Mapping[str, Any]], Any],
                 hint: Callable[[Optional[Mapping[str, Any]]], str], warn: Warn, what: str = "record",
                 log_fields: Optional[Mapping[str, Any]] = None,
                 found_in_reply: Optional[Callable[[Mapping[str, Any], str], bool]] = None) -> None:
        self.auditor = auditor
        self.find = find
        self.found_in_reply = found_in_reply
        self.ref = ref
        self.hint = hint
        self.warn = warn
        self.what = what
        self.log_fields = dict(log_fields or {})

    @property
    def platform(self) -> str:
        return self.auditor.platform

    # -- the dedup path ---------------------------------------------------------------------

    def backfill_entry(self, record: Mapping[str, Any], creation: Mapping[str, Any]) -> Optional[dict]:
        """The creation record to back-fill for ``record`` (found by its key), or None when the ledger has one."""
        ref_id = self.ref(record)
        if self.auditor.has_creation(creation["ref_type"], ref_id):
            return None
        meta = dict(creation.get("meta") or {}, backfilled=True, backfill_reason=BACKFILL_REASON)
        return audit_entry(creation["action"], creation["ref_type"], ref_id, creation.get("fields"), meta,
                           creation_record_key(self.platform, creation["ref_type"], ref_id))

    def backfill(self, record: Mapping[str, Any], creation: Mapping[str, Any], *, check_mode: bool = False) -> bool:
        """Back-fill the creation record of ``record`` (found by its correlation key) when the ledger lacks it.

        True when a record was (in check mode: would be) written; the ledger is preflighted first.
        """
        entry = self.backfill_entry(record, creation)
        if entry is None:
            return False
        if not check_mode:
            self.auditor.preflight()
            self.auditor.append(entry, self.ref(record))
        return True

    # -- the create path --------------------------------------------------------------------

    def create(self, send: Sender, *, key: Optional[str], creation: Any) -> dict:
        """Create once, audit the creation, check that the next run finds the record.

        ``send()`` creates and returns the stored record; when it cannot be read back, None or the identity
        the platform replied with (enough for ``ref``). With a ``key`` the record is then looked up the way
        the next run looks for it (``find``), which also reads it back; not found: the creation is audited
        when its id is known and the run fails with ``PermissionDenied`` naming the missing permission
        (else ``NotFoundError``). ``creation`` is the creation's audit entry (``audit_entry``, ref_id unset)
        or a callable building it from the created record. Call ``auditor.preflight()`` before.
        Counted in the ticket-creation metrics: success when it returns, failure when it raises.
        """
        started = time.monotonic()
        try:
            record = self._create(send, key, creation)
        except Exception as exc:
            details = exc.details if isinstance(exc, LabopsError) else {}
            self._count("failure", started, key, details.get("ref_id"), error=str(exc), error_class=type(exc).__name__)
            raise
        self._count("success", started, key, self._ref_or_none(record))
        return record

    def dry_run(self, key: Optional[str] = None) -> None:
        """Count (and log) a check-mode run that would create a record; warns when the metrics cannot be written."""
        self._warn_about(record_dry_run(self.platform, **self._log_context(correlation_key=key or None)))

    def _create(self, send: Sender, key: Optional[str], creation: Any) -> dict:
        record, found_by_key = self._create_once(send, key)
        if key and not found_by_key and not (record is not None and self.found_in_reply is not None and self.found_in_reply(record, key)):
            found = self.find(key)
            if found is None:
                self._fail_unfindable(record, key, creation)
            record = found
        if record is None:
            raise NotFoundError(f"{self.platform}: the {self.what} was created but cannot be read back: {self.hint(None)}; "
                                f"it is NOT audited, check {self.platform}", platform=self.platform)
        self._audit_creation(record, creation)
        return dict(record)

    def _count(self, status: str, started: float, key: Optional[str], ticket_id: Any, **fields: Any) -> None:
        self._warn_about(record_ticket_creation(self.platform, status, time.monotonic() - started,
                                                **self._log_context(ticket_id=ticket_id, correlation_key=key or None, **fields)))

    def _log_context(self, **fields: Any) -> dict:
        """The log fields of one event: who and what (entity, SOP, actor), the caller's ``log_fields``, ``fields``."""
        context = {"entity": self.what, "sop": self.auditor.sop, "actor": self.auditor.actor}
        context.update(self.log_fields)
        context.update(fields)
        for reserved in ("platform", "status", "duration_seconds", "dry_run"):
            context.pop(reserved, None)
        return {name: value for name, value in context.items() if value is not None}

    def _warn_about(self, warning: Optional[str]) -> None:
        if warning:
            self.warn(warning)

    def _ref_or_none(self, record: Mapping[str, Any]) -> Any:
        try:
            return self.ref(record)
        except (KeyError, TypeError, AttributeError):
            return None

    def _audit_creation(self, record: Mapping[str, Any], creation: Any) -> None:
        ref_id = self.ref(record)
        if callable(creation):
            creation = creation(record)
        self.auditor.append(dict(creation, record_key=creation_record_key(self.platform, creation["ref_type"], ref_id)), ref_id)

    def _fail_unfindable(self, record: Optional[Mapping[str, Any]], key: str, creation: Any) -> None:
        """Created, but the next run's lookup answers nothing: audit what is known, then fail naming the permission."""
        if record is None:
            raise NotFoundError(
                f"{self.platform}: the {self.what} was created but cannot be read back nor found by its correlation key {key}: {self.hint(None)}; it is NOT "
                f"audited, check {self.platform}", platform=self.platform, correlation_key=key)
        self._audit_creation(record, creation)
        ref_id = self.ref(record)
        raise PermissionDenied(
            f"{self.platform}: {self.what} {ref_id} was created (and audited) but is not found by its correlation key {key}: "
            f"{self.hint(record)}; every later run "
            "would open a duplicate, so this run fails",
            platform=self.platform, ref_id=ref_id, correlation_key=key)

    def _create_once(self, send: Sender, key: Optional[str]) -> tuple:
        """(record or None, found_by_key): send once; after a lost reply look ``key`` up before sending again (once)."""
        try:
            return send(), False
        except AmbiguousWriteError as exc:
            return self._recover(send, key, exc)

    def _recover(self, send: Sender, key: Optional[str], exc: AmbiguousWriteError) -> tuple:
        if not key:
            raise AmbiguousWriteError(
                f"{exc}; without a correlation key the {self.what} cannot be looked up, so it is not re-sent: check {self.platform} "
                "before running again", **exc.details)
        found = self.find(key)
        if found is not None:
            self.warn(f"{self.platform}: the create reply was lost, but {self.what} {self.ref(found)} with correlation key {key} exists; using it instead of "
                      "creating another")
            return found, True
        self.warn(f"{self.platform}: the create reply was lost and no {self.what} with correlation key {key} exists; sent the create once more")
        return send(), False
