# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The SOP engine: seed 002's single-turn procedures, validated, authorised, applied and audited.

One run of :func:`run_sop` is one SOP, in this fixed order (nothing is written before step 6):

1. input validation (required inputs, seed 002 enums) from the ``SOP_SPECS`` table;
2. role authorisation (``_policy.ROLE_SOPS``);
3. read the current records through the :class:`TicketPlatform`;
4. prior-state, transition, precondition and segregation-of-duties checks;
5. the plan: field changes, notes (articles) and the audit records to write;
6. check mode stops here and returns the prediction (``Ledger.preview``); otherwise the ledger is
   preflighted, the platform is changed, and the audit records are appended. A failed audit
   write halts with :class:`AuditWriteError`.

Creates go through the governed write (``_governed.GovernedWrite``): a lost create reply is answered
by a correlation-key lookup before any re-send, the creation is audited once (ledger ``record_key``),
and a record found by its key whose creation the ledger lacks gets its creation record back-filled.

The engine only talks to a small :class:`TicketPlatform` interface, so the ServiceNow and
Jira adapters slot in by implementing ``get``/``create``/``update``/``add_note``/``search``/
``find_by_correlation_key`` over IMS records (plain dicts, see ``RECORD_KEYS``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import datetime
import hashlib
import uuid
from typing import Any, Mapping, Optional, cast

from ansible_collections.labops.itsm.plugins.module_utils import _policy as policy
from ansible_collections.labops.itsm.plugins.module_utils import _priority as prio
from ansible_collections.labops.itsm.plugins.module_utils import _refire as refire
from ansible_collections.labops.itsm.plugins.module_utils._errors import AuditWriteError, LabopsError
from ansible_collections.labops.itsm.plugins.module_utils._governed import Auditor, GovernedWrite, audit_entry
from ansible_collections.labops.itsm.plugins.module_utils._platform import (
    CORRELATION_KEY_RE,
    DEFAULT_LOOKUP_LIMIT,
    FOLLOW_UP_KEY,
    TicketPlatform,
)

# IMS record keys a platform keeps (besides id, entity, title, status and the read-only ones)
RECORD_KEYS = (
    "entity", "status", "title", "category", "subcategory", "priority", "severity", "severity_level",
    "detection_source", "reporter", "affected_service", "assigned_team", "change_link", "problem_link",
    "incident_links", "workaround", "root_cause", "pir", "kb_link", "opened_at", "responded_at", "resolved_at",
    "resolved_by", "closed_by", "requester", "approver", "vendor", "correlation_key",
)
TEXT_LIMIT = 1000
DEFAULT_PENDING_HOURS = 24
DEFAULT_STABILITY_HOURS = 24
LOOKUP_FILTERS = ("id", "status", "priority", "severity", "severity_level", "category", "assigned_team",
                  "affected_service", "title", "reporter", "correlation_key", "problem_link", "change_link")
EVENT_SEVERITY = {"critical": "high", "high": "high", "warning": "medium", "medium": "medium", "info": "low", "low": "low"}
SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3}


# --------------------------------------------------------------------------- plan


class Plan:
    """What one SOP run will do: writes (``ops``), audit records and the predicted result."""

    def __init__(self, sop: str, entity: Optional[str], before: Optional[dict] = None) -> None:
        self.sop = sop
        self.entity = entity
        self.before = before
        self.create = None  # type: Optional[dict]
        self.changes = {}  # type: dict
        self.note = None  # type: Optional[dict]
        self.side = []  # type: list
        self.audits = []  # type: list
        self.extra = {}  # type: dict
        self.unchanged = False
        self.kb = None  # type: Optional[dict]  # the knowledge article to publish (publish_kb arguments)
        # the creation audit of the record a dedupe found (back-filled when the ledger lacks one)
        self.creation_of_existing = None  # type: Optional[dict]

    def audit(self, action: str, ref_type: str, ref_id: Any = None, fields: Optional[dict] = None,
              meta: Optional[dict] = None) -> None:
        """``ref_id=None`` means the record this plan creates (the first such entry audits its creation)."""
        self.audits.append(audit_entry(action, ref_type, ref_id, fields, meta))

    def predicted(self) -> Optional[dict]:
        if self.create is not None:
            return dict(self.create, id=None)
        if self.before is None:
            return None
        return dict(self.before, **self.changes)

    def has_writes(self) -> bool:
        return self.create is not None or bool(self.changes) or self.note is not None or bool(self.side)


class Context:
    """One SOP request: who, what, with which inputs, against which platform."""

    def __init__(self, sop: str, inputs: Mapping[str, Any], actor: str, role: str, platform: TicketPlatform, now: Any = None) -> None:
        self.sop = sop
        self.inputs = {k: v for k, v in inputs.items() if v is not None}
        self.actor = actor
        self.role = role
        self.platform = platform
        self.now = prio.parse_time(now, "now") or prio.utc_now()
        self.warnings = []  # type: list

    def get(self, name: str, default: Any = None) -> Any:
        return self.inputs.get(name, default)

    @property
    def now_text(self) -> str:
        return cast(str, prio.format_time(self.now))

    def in_hours(self, hours: int) -> str:
        """The IMS follow-up time ``hours`` from now."""
        return cast(str, prio.format_time(self.now + datetime.timedelta(hours=hours)))

    def load(self, entity: str, name: str) -> dict:
        """Read the ticket named by input ``name`` and check its entity type.

        An incident SOP may name its incident by ``correlation_key`` instead of ``incident_id`` (the alert path
        knows the alert episode, not the ticket): the platform's correlation lookup then finds it in one read.
        """
        if name == "incident_id" and self.get(name) is None and self.get("correlation_key") is not None:
            key = correlation_key_input(self.sop, self.get("correlation_key"))
            return dict(policy.check_exists(self.sop, entity, "with correlation key " + key, self.platform.find_by_correlation_key(key)))
        ref = str(policy.require(self.sop, name, self.get(name)))
        return dict(policy.check_exists(self.sop, entity, ref, self.platform.get(entity, ref)))

    def load_active(self, entity: str, name: str) -> dict:
        record = self.load(entity, name)
        policy.check_prior_state(self.sop, entity, record.get("status"))
        return record


# --------------------------------------------------------------------------- helpers


def clip(text: Any, limit: int = TEXT_LIMIT) -> Optional[str]:
    if text is None:
        return None
    text = str(text).strip()
    return text if len(text) <= limit else text[:limit - 3] + "..."


def deltas(before: Optional[Mapping[str, Any]], changes: Mapping[str, Any]) -> dict:
    """``{name: {before, after}}`` of the keys that really change."""
    before = before or {}
    return {key: {"before": before.get(key), "after": value} for key, value in sorted(changes.items())
            if before.get(key) != value}


def only_changes(before: Mapping[str, Any], changes: Mapping[str, Any]) -> dict:
    return {key: value for key, value in changes.items() if before.get(key) != value}


def note(subject: str, lines: Any, visible: bool = False) -> dict:
    body = "\n".join(f"{k}: {v}" for k, v in lines if v not in (None, "", [])) if isinstance(lines, list) else str(lines)
    return {"subject": clip(subject, 200), "body": body, "visible": visible}


def text_list(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(item) for item in value]


def correlation_key_input(sop: str, value: Any) -> str:
    """A ``correlation_key`` input: 8 to 64 lowercase hex characters (the one pattern of ``_platform``)."""
    if not CORRELATION_KEY_RE.match(str(value)):
        raise policy.violation(sop, "invalid_value", "correlation_key must be 8 to 64 lowercase hex characters", value)
    return str(value)


def correlation_key_of(value: Any) -> str:
    """An event id that already is a safe key is used as is, anything else is hashed."""
    text = str(value).strip()
    if CORRELATION_KEY_RE.match(text):
        return text
    return hashlib.sha256(("ims-event|" + text).encode("utf-8")).hexdigest()[:24]


def sla_of(record: Mapping[str, Any], now: Any) -> Optional[dict]:
    level = record.get("severity_level")
    opened = record.get("opened_at")
    if not level or not opened:
        return None
    return prio.sla_status(level, opened, record.get("responded_at"), record.get("resolved_at"), now)


# --------------------------------------------------------------------------- SOPs 1-9


def plan_entity_lookup(ctx: Context) -> Plan:
    entity = ctx.get("entity_type")
    filters = dict(ctx.get("filters") or {})
    unknown = sorted(set(filters) - set(LOOKUP_FILTERS))
    if unknown:
        raise policy.violation(ctx.sop, "invalid_value", "filters may only use " + ", ".join(LOOKUP_FILTERS), ", ".join(unknown))
    enum = {"status": policy.STATUS_ENUMS[entity], "priority": policy.PRIORITIES, "severity": policy.SEVERITIES,
            "category": policy.INCIDENT_CATEGORIES, "assigned_team": policy.ASSIGNMENT_TEAMS + policy.ESCALATION_TARGETS}
    for name, allowed in enum.items():
        policy.check_choice(ctx.sop, "filters." + name, filters.get(name), allowed)
    limit = int(ctx.get("limit") or DEFAULT_LOOKUP_LIMIT)
    if entity == "incident" and filters.get("correlation_key") is not None:
        # one incident per key: the platform's correlation lookup (any queue, a couple of requests) beats a scan
        found = ctx.platform.find_by_correlation_key(correlation_key_input(ctx.sop, filters["correlation_key"]))
        matches = [found] if found is not None and _matches(found, filters) else []
    else:
        matches = ctx.platform.search(entity, limit=limit, match=lambda record: _matches(record, filters))
    plan = Plan(ctx.sop, entity)
    plan.extra = {"matches": matches, "match": ("none", "one")[len(matches)] if len(matches) < 2 else "many", "count": len(matches)}
    ref = matches[0]["id"] if len(matches) == 1 else "lookup"
    plan.audit("identify", entity, ref, meta={"entity_type": entity, "filters": filters, "count": len(matches)})
    plan.unchanged = True
    return plan


def _matches(record: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    for name, wanted in filters.items():
        value = record.get(name)
        if name == "title":
            if str(wanted).lower() not in str(value or "").lower():
                return False
        elif str(value) != str(wanted):
            return False
    return True


def plan_incident_identify(ctx: Context) -> Plan:
    key = ctx.get("correlation_key")
    if key is not None:
        key = correlation_key_input(ctx.sop, key)
    if ctx.get("detection_source") != "user_report" and ctx.role == "end_user":
        raise policy.violation(ctx.sop, "invalid_value", "end users report incidents with detection_source user_report",
                               ctx.get("detection_source"))
    plan = Plan(ctx.sop, "incident")
    if key and _dedupe(ctx, plan, key, "identify", {"detection_source": ctx.get("detection_source")}):
        return plan
    values = {
        "entity": "incident", "status": "open", "title": clip(ctx.get("title"), 200), "reporter": ctx.get("reporter"),
        "detection_source": ctx.get("detection_source"), "affected_service": ctx.get("affected_service"),
        "category": ctx.get("category"), "opened_at": ctx.now_text, "correlation_key": key,
    }
    plan.create = {k: v for k, v in values.items() if v is not None}
    plan.note = note("Incident identified", [("Reporter", ctx.get("reporter")), ("Detection source", ctx.get("detection_source")),
                                             ("Affected service", ctx.get("affected_service")), ("Description", ctx.get("description"))])
    plan.audit("identify", "incident", None, fields=deltas(None, plan.create),
               meta={"detection_source": ctx.get("detection_source")})
    return plan


def _dedupe(ctx: Context, plan: Plan, key: str, action: str, meta: Mapping[str, Any]) -> bool:
    """An active incident with the same correlation key makes the SOP a no-op (apart from a creation back-fill).

    ``action`` and ``meta`` describe the audit record of the incident's creation: when the ledger has none
    (the creating run lost its reply or failed before its audit), the run writes it, marked back-filled.
    """
    existing = ctx.platform.find_by_correlation_key(key)
    if existing is None or existing.get("status") == "closed":
        return False
    _mark_existing(plan, existing, action, meta)
    return True


def plan_incident_log(ctx: Context) -> Plan:
    record = ctx.load_active("incident", "incident_id")
    plan = Plan(ctx.sop, "incident", record)
    changes = {"affected_service": ctx.get("affected_service", record.get("affected_service")),
               "workaround": clip(ctx.get("workaround"), 500) or record.get("workaround")}
    plan.changes = only_changes(record, changes)
    plan.note = note("Incident logged", [("Logged at", ctx.now_text), ("Affected service", changes["affected_service"]),
                                         ("Description", ctx.get("description")), ("Initial diagnosis", ctx.get("diagnosis")),
                                         ("Workaround", ctx.get("workaround"))])
    fields = deltas(record, plan.changes)
    fields["description"] = {"before": None, "after": clip(ctx.get("description"), 200)}
    plan.audit("create", "incident", record["id"], fields=fields, meta={"logged_at": ctx.now_text})
    return plan


def plan_incident_categorize(ctx: Context) -> Plan:
    record = ctx.load_active("incident", "incident_id")
    plan = Plan(ctx.sop, "incident", record)
    plan.changes = only_changes(record, {"category": ctx.get("category"), "subcategory": ctx.get("subcategory", record.get("subcategory"))})
    if not plan.changes:
        plan.unchanged = True
        return plan
    plan.audit("update", "incident", record["id"], fields=deltas(record, plan.changes))
    return plan


def _requested_level(ctx: Context) -> tuple:
    """(IMS priority, S-level) from ``priority`` and/or ``urgency`` x ``impact``; both given must agree."""
    urgency, impact, priority = ctx.get("urgency"), ctx.get("impact"), ctx.get("priority")
    if (urgency is None) != (impact is None):
        raise policy.violation(ctx.sop, "missing_input", "urgency and impact are required together", urgency or impact)
    if urgency is None:
        if priority is None:
            raise policy.violation(ctx.sop, "missing_input", "priority (or urgency and impact) is required")
        return priority, prio.ims_priority_to_level(priority)
    level = prio.priority_matrix(urgency, impact)
    derived = prio.level_to_ims_priority(level)
    if priority is not None and priority != derived:
        raise policy.violation(ctx.sop, "priority_matrix_mismatch",
                               f"urgency {urgency} x impact {impact} gives {level} ({derived})", priority)
    return derived, level


def plan_incident_prioritize(ctx: Context) -> Plan:
    priority, level = _requested_level(ctx)
    record = ctx.load_active("incident", "incident_id")
    plan = Plan(ctx.sop, "incident", record)
    plan.changes = only_changes(record, {"priority": priority, "severity_level": level,
                                         "severity": ctx.get("severity", record.get("severity"))})
    if not plan.changes:
        plan.unchanged = True
        return plan
    plan.note = note(f"Priority set to {priority} ({level})", [("Justification", ctx.get("justification"))])
    plan.extra = {"sla": prio.sla_targets(level)}
    plan.audit("update", "incident", record["id"], fields=deltas(record, plan.changes),
               meta={"justification": clip(ctx.get("justification"), 300), "urgency": ctx.get("urgency"), "impact": ctx.get("impact")})
    return plan


def plan_incident_assign(ctx: Context) -> Plan:
    record = ctx.load_active("incident", "incident_id")
    status, team = record.get("status"), ctx.get("team")
    if status == "resolved":
        policy.require(ctx.sop, "reopen_reason", ctx.get("reopen_reason"))
    policy.check_transition(ctx.sop, "incident", status, "in_progress")
    plan = Plan(ctx.sop, "incident", record)
    plan.changes = only_changes(record, {"assigned_team": team, "status": "in_progress",
                                         "responded_at": record.get("responded_at") or ctx.now_text})
    if status == "resolved":
        plan.changes.update(resolved_at="", resolved_by="")
    if not plan.changes:
        plan.unchanged = True
        return plan
    message = ctx.get("message_text") or "Your incident {0} is being worked on by {1}.".format(record["id"], team)
    recipients = ctx.get("recipients", "end_users")
    plan.note = note(f"Acknowledgement: assigned to {team}", [("Recipients", recipients), ("Message", message),
                                                              ("Reopen reason", ctx.get("reopen_reason"))],
                     visible=recipients in policy.EXTERNAL_RECIPIENTS)
    plan.audit("update", "incident", record["id"], fields=deltas(record, plan.changes),
               meta={"reopen_reason": clip(ctx.get("reopen_reason"), 300)} if status == "resolved" else None)
    plan.audit("notify", "incident", record["id"], meta={"recipients": recipients, "message_type": "status",
                                                         "communication": "acknowledgement"})
    return plan


def plan_incident_diagnose(ctx: Context) -> Plan:
    record = ctx.load_active("incident", "incident_id")
    plan = Plan(ctx.sop, "incident", record)
    workaround = clip(ctx.get("workaround"), 500)
    plan.changes = only_changes(record, {"workaround": workaround}) if workaround else {}
    plan.note = note("Diagnosis" + (" and workaround" if workaround else ""),
                     [("Diagnostic steps", ctx.get("diagnosis")), ("Workaround", ctx.get("workaround"))])
    fields = {"diagnosis": {"before": None, "after": clip(ctx.get("diagnosis"), 300)}}
    if workaround:
        fields["workaround"] = {"before": record.get("workaround"), "after": clip(workaround, 300)}
    plan.audit("update", "incident", record["id"], fields=fields, meta={"workaround_available": bool(workaround or record.get("workaround"))})
    return plan


def plan_incident_escalate(ctx: Context) -> Plan:
    record = ctx.load_active("incident", "incident_id")
    status, trigger = record.get("status"), ctx.get("trigger", "manual")
    if status == "open":
        if trigger != "automatic":
            raise policy.violation(ctx.sop, "invalid_transition", "an open incident is only escalated automatically; assign it first",
                                   trigger)
        sla = sla_of(record, ctx.now)
        policy.check_automatic_escalation(ctx.sop, record.get("priority"), bool(sla and sla["response"]["breached"]))
    policy.check_escalation_path(ctx.sop, record.get("assigned_team"), ctx.get("escalate_to"))
    policy.check_transition(ctx.sop, "incident", status, "escalated")
    plan = Plan(ctx.sop, "incident", record)
    plan.changes = only_changes(record, {"status": "escalated", "assigned_team": ctx.get("escalate_to")})
    plan.note = note("Escalated to {0}".format(ctx.get("escalate_to")), [("Trigger", trigger), ("Reason", ctx.get("reason")),
                                                                         ("From", record.get("assigned_team"))])
    plan.audit("escalate", "incident", record["id"], fields=deltas(record, plan.changes),
               meta={"trigger": trigger, "reason": clip(ctx.get("reason"), 300)})
    return plan


def plan_vendor_engage(ctx: Context) -> Plan:
    hours = ctx.get("pending_hours", DEFAULT_PENDING_HOURS)
    if not isinstance(hours, int) or isinstance(hours, bool) or hours < 1:
        raise policy.violation(ctx.sop, "invalid_value", "pending_hours must be a positive integer", hours)
    record = ctx.load_active("incident", "incident_id")
    policy.check_transition(ctx.sop, "incident", record.get("status"), "pending_vendor")
    plan = Plan(ctx.sop, "incident", record)
    plan.changes = {"status": "pending_vendor", "vendor": ctx.get("vendor"), FOLLOW_UP_KEY: ctx.in_hours(hours)}
    plan.note = note("Vendor engaged: {0}".format(ctx.get("vendor")), [
        ("Contact method", ctx.get("contact_method")), ("Vendor reference", ctx.get("vendor_reference")),
        ("Context", ctx.get("vendor_context")), ("Follow-up in hours", hours)])
    fields = deltas(record, {"status": "pending_vendor", "vendor": ctx.get("vendor")})
    plan.audit("vendor_engagement", "incident", record["id"], fields=fields,
               meta={"vendor": ctx.get("vendor"), "contact_method": ctx.get("contact_method"),
                     "vendor_reference": ctx.get("vendor_reference")})
    return plan


# --------------------------------------------------------------------------- SOP 10: change


def plan_change_request(ctx: Context) -> Plan:
    plan = Plan(ctx.sop, "change_request")
    if ctx.get("incident_id") is not None:
        incident = ctx.load("incident", "incident_id")
        if incident.get("status") == "closed":
            raise policy.violation(ctx.sop, "wrong_state", "a change cannot be requested for a closed incident", "closed")
    plan.create = {"entity": "change_request", "status": "pending", "title": clip(ctx.get("title"), 200),
                   "requester": ctx.actor, "opened_at": ctx.now_text}
    plan.note = note("Change requested", [("Requester", ctx.actor), ("Necessity", ctx.get("justification")),
                                          ("Description", ctx.get("description")), ("Incident", ctx.get("incident_id"))])
    plan.audit("create", "change_request", None, fields=deltas(None, plan.create),
               meta={"incident_id": ctx.get("incident_id"), "justification": clip(ctx.get("justification"), 300)})
    return plan


def plan_change_approve(ctx: Context) -> Plan:
    change = ctx.load_active("change_request", "change_id")
    policy.sod_change_approver(ctx.sop, ctx.actor, change.get("requester"))
    decision = ctx.get("decision")
    policy.check_transition(ctx.sop, "change_request", change.get("status"), decision)
    plan = Plan(ctx.sop, "change_request", change)
    plan.changes = {"status": decision, "approver": ctx.actor}
    plan.note = note(f"Change {decision}", [("Approver", ctx.actor), ("Justification", ctx.get("justification"))])
    plan.audit("update", "change_request", change["id"], fields=deltas(change, plan.changes),
               meta={"justification": clip(ctx.get("justification"), 300)})
    return plan


def plan_change_coordinate(ctx: Context) -> Plan:
    record = ctx.load_active("incident", "incident_id")
    change = ctx.load("change_request", "change_id")
    policy.check_change_approved(ctx.sop, change)
    plan = Plan(ctx.sop, "incident", record)
    plan.changes = only_changes(record, {"change_link": change["id"]})
    if not plan.changes:
        plan.unchanged = True
        return plan
    plan.note = note("Change {0} linked".format(change["id"]), [("Change", change.get("title")), ("Approver", change.get("approver")),
                                                                ("Necessity", ctx.get("justification"))])
    plan.side.append((change, {}, note("Linked to incident {0}".format(record["id"]), [("Coordinator", ctx.actor)])))
    plan.audit("update", "incident", record["id"], fields=deltas(record, plan.changes),
               meta={"change_approver": change.get("approver"), "justification": clip(ctx.get("justification"), 300)})
    return plan


# --------------------------------------------------------------------------- SOPs 11-18


def plan_incident_resolve(ctx: Context) -> Plan:
    policy.check_true(ctx.sop, "fix_not_applied", "fix_applied", ctx.get("fix_applied"))
    policy.check_true(ctx.sop, "service_not_restored", "service_restored", ctx.get("service_restored"))
    record = ctx.load("incident", "incident_id")
    acknowledgement = _acknowledgement_on_resolve(ctx, record)
    if acknowledgement is None:
        policy.check_prior_state(ctx.sop, "incident", record.get("status"))
        policy.check_transition(ctx.sop, "incident", record.get("status"), "resolved")
    plan = Plan(ctx.sop, "incident", record)
    # the follow-up time is the end of the stability window: platforms may close the record by themselves then
    plan.changes = dict(acknowledgement or {}, status="resolved", resolved_at=ctx.now_text, resolved_by=ctx.actor,
                        **{FOLLOW_UP_KEY: ctx.in_hours(DEFAULT_STABILITY_HOURS)})
    lines = [("Resolution summary", ctx.get("resolution_summary")), ("Resolved at", ctx.now_text)]
    if acknowledgement is not None:
        team = acknowledgement.get("assigned_team", record.get("assigned_team"))
        lines.insert(0, ("Acknowledged by", f"{ctx.actor}, assigned to {team} (SOP 6, with the resolution)"))
        plan.audit("update", "incident", record["id"], fields=deltas(record, dict(acknowledgement, status="in_progress")),
                   meta={"communication": "acknowledgement", "sop": "incident_assign", "recipients": "IT_staff"})
    plan.note = note("Resolved", lines)
    sla = sla_of(dict(record, resolved_at=ctx.now_text), ctx.now)
    plan.audit("resolve", "incident", record["id"], fields=deltas(record, {"status": "resolved"}),
               meta={"resolution_summary": clip(ctx.get("resolution_summary"), 300),
                     "resolution_sla": sla["resolution"]["status"] if sla else None})
    return plan


def _acknowledgement_on_resolve(ctx: Context, record: Mapping[str, Any]) -> Optional[dict]:
    """With ``acknowledge``, an incident nobody has taken yet (``open``) is acknowledged (SOP 6's effects, under SOP
    6's authorisation and transition rules) and resolved in one write: the alert path resolves an alert that
    cleared before anyone picked it up. Returns the acknowledgement's field changes, or None when none applies."""
    if record.get("status") != "open" or not ctx.get("acknowledge"):
        return None
    if "incident_assign" not in policy.allowed_sops(ctx.role):
        raise policy.violation(ctx.sop, "role_not_authorised", f"acknowledging an open incident is SOP 6 incident_assign, which role {ctx.role} "
                               "may not run", ctx.role)
    policy.check_transition(ctx.sop, "incident", "open", "in_progress")
    team = ctx.get("team") or record.get("assigned_team") or "service_desk"
    policy.check_choice(ctx.sop, "team", team, policy.ASSIGNMENT_TEAMS)
    return only_changes(record, {"assigned_team": team, "responded_at": record.get("responded_at") or ctx.now_text})


def plan_communication_update(ctx: Context) -> Plan:
    record = ctx.load_active("incident", "incident_id")
    recipients, kind = ctx.get("recipients"), ctx.get("message_type", "status")
    plan = Plan(ctx.sop, "incident", record)
    plan.note = note("{0} update for {1}".format(kind.upper() if kind == "eta" else kind.capitalize(), recipients),
                     [("Recipients", recipients), ("Message", ctx.get("message_text"))], visible=recipients in policy.EXTERNAL_RECIPIENTS)
    plan.audit("notify", "incident", record["id"], meta={"recipients": recipients, "message_type": kind})
    return plan


def plan_incident_close(ctx: Context) -> Plan:
    record = ctx.load_active("incident", "incident_id")
    policy.authorise_closure(ctx.sop, ctx.role, record.get("priority"))
    policy.sod_incident_closer(ctx.sop, ctx.actor, record.get("reporter"), record.get("priority"))
    policy.check_transition(ctx.sop, "incident", record.get("status"), "closed")
    plan = Plan(ctx.sop, "incident", record)
    required = policy.pir_required(record.get("priority"))
    plan.changes = {"status": "closed", "closed_by": ctx.actor}
    if required and record.get("pir") != "done":
        plan.changes["pir"] = "required"
    plan.note = note("Closed", [("Closure notes", ctx.get("closure_notes")), ("PIR required", "yes" if required else "no")])
    plan.audit("close", "incident", record["id"], fields=deltas(record, plan.changes),
               meta={"pir_required": required, "closure_notes": clip(ctx.get("closure_notes"), 300)})
    return plan


def plan_incident_review(ctx: Context) -> Plan:
    record = ctx.load_active("incident", "incident_id")
    plan = Plan(ctx.sop, "incident", record)
    plan.changes = only_changes(record, {"pir": "done", "kb_link": ctx.get("kb_article_id", record.get("kb_link"))})
    actions = text_list(ctx.get("actions"))
    plan.note = note("Post-incident review", [("Timeline", ctx.get("timeline")), ("Contributing factors", ctx.get("factors")),
                                              ("Actions", "; ".join(actions)), ("KB", ctx.get("kb_article_id"))])
    plan.audit("review", "incident", record["id"], fields=deltas(record, plan.changes),
               meta={"pir_required": policy.pir_required(record.get("priority")), "action_items": len(actions),
                     "kb_article_id": ctx.get("kb_article_id")})
    return plan


def plan_kb_update(ctx: Context) -> Plan:
    record = ctx.load_active("incident", "incident_id")
    kb_id = ctx.get("kb_article_id") or "KB-{0}".format(record["id"])
    plan = Plan(ctx.sop, "incident", record)
    plan.changes = only_changes(record, {"kb_link": kb_id})
    plan.kb = {"requested": ctx.get("kb_article_id"), "planned": kb_id, "title": ctx.get("kb_title"),
               "content": ctx.get("kb_content"), "kb_type": ctx.get("kb_type")}
    plan.note = note("Knowledge base {0}: {1}".format(kb_id, ctx.get("kb_title")),
                     [("Type", ctx.get("kb_type")), ("Content", ctx.get("kb_content"))])
    plan.extra = {"kb_article_id": kb_id}
    plan.audit("kb_update", "incident", record["id"], fields=deltas(record, plan.changes),
               meta={"kb_article_id": kb_id, "kb_type": ctx.get("kb_type"), "kb_title": clip(ctx.get("kb_title"), 200)})
    return plan


def _event_severity(sop: str, event: Mapping[str, Any]) -> str:
    raw = str(event.get("severity") or "").lower()
    if raw not in EVENT_SEVERITY:
        raise policy.violation(sop, "invalid_value", "event.severity must be one of " + ", ".join(EVENT_SEVERITY), event.get("severity"))
    return EVENT_SEVERITY[raw]


def _check_event(sop: str, event: Mapping[str, Any]) -> None:
    for name in ("event_id", "service", "source", "alert_type", "severity"):
        policy.require(sop, "event." + name, event.get(name))
    policy.check_choice(sop, "event.source", event.get("source"), policy.MONITORING_SOURCES)
    if event.get("occurred_at") is not None:
        prio.parse_time(event.get("occurred_at"), "event.occurred_at")


def plan_monitoring_intake(ctx: Context) -> Plan:
    event = dict(ctx.get("event") or {})
    _check_event(ctx.sop, event)
    severity = _event_severity(ctx.sop, event)
    threshold = ctx.get("min_severity", "medium")
    if SEVERITY_RANK[severity] < SEVERITY_RANK[threshold]:
        raise policy.violation(ctx.sop, "below_threshold", f"event severity is below min_severity {threshold}", severity)
    level = prio.priority_matrix(severity, ctx.get("impact", "medium"))
    key = correlation_key_of(event.get("correlation_key") or event["event_id"])
    plan = Plan(ctx.sop, "incident")
    if _refire_existing(ctx, plan, key, event):
        return plan
    title = event.get("title") or "{0}: {1}".format(event["alert_type"], event["service"])
    plan.create = {
        "entity": "incident", "status": "open", "title": clip(title, 200),
        "reporter": ctx.actor, "detection_source": event["source"], "affected_service": event["service"],
        "category": ctx.get("category", "performance"), "severity": severity, "severity_level": level,
        "priority": prio.level_to_ims_priority(level), "assigned_team": "service_desk", "opened_at": ctx.now_text,
        "correlation_key": key,
    }
    plan.note = note(event.get("subject") or "Monitoring event {0}".format(event["event_id"]), [
        ("Notify", "service_desk"), ("Alert type", event["alert_type"]), ("Service", event["service"]),
        ("Severity", event["severity"]), ("Occurred at", event.get("occurred_at")), ("Summary", event.get("summary"))])
    _append_details(plan.note, event)
    plan.extra = {"sla": prio.sla_targets(level)}
    plan.audit("create", "incident", None, fields=deltas(None, plan.create),
               meta={"source": "monitoring", "event_id": event["event_id"], "notified": "service_desk"})
    return plan


REPEAT_UPDATES = refire.REPEAT_UPDATES


def _append_details(event_note: dict, event: Mapping[str, Any]) -> None:
    """The event's ``details`` (the caller's context for the service desk: asset, routing, runbook), clipped like all notes."""
    if event.get("details"):
        event_note["body"] = "{0}\n\n{1}".format(event_note["body"], clip(str(event["details"]), 4000))


def _refire_existing(ctx: Context, plan: Plan, key: str, event: Mapping[str, Any]) -> bool:
    """SOP 16 on a key that already names an incident (``_refire``): True when the plan is complete without a create.

    A repeated notification of an active incident changes nothing, or with ``repeat_update`` renames it (``title``) or
    notes the new title and details (``note``) when its title changed. With ``reopen_window`` a firing after the
    resolution reopens the incident resolved within the window (SOP 6's reopen: ``resolved -> in_progress``, under
    SOP 6's authorisation), is suppressed while a won't-fix resolution (``never_reopen``) is within the window, and
    opens a new incident otherwise. Without it, a resolved incident is kept (a late repeat of the episode).
    """
    existing = ctx.platform.find_by_correlation_key(key)
    window = refire.parse_window(ctx.get("reopen_window"))
    action = refire.refire_action(existing, now=ctx.now, reopen_window=window, never_reopen=text_list(ctx.get("never_reopen")))
    if existing is None or action == refire.CREATE:
        return False
    meta = {"source": "monitoring", "event_id": event["event_id"], "notified": "service_desk"}
    _mark_existing(plan, existing, "create", meta)
    if action == refire.SUPPRESS:
        plan.extra["suppressed"] = True
        plan.extra["resolution"] = existing.get("resolution")
        return True
    if action == refire.REOPEN:
        _plan_reopen(ctx, plan, existing, event, cast(float, window))
        return True
    title = clip(event.get("title"), 200)
    repeat = ctx.get("repeat_update", "none")
    if repeat == "none" or not title or title == existing.get("title") or existing.get("status") in refire.DONE_STATUSES:
        return True
    plan.unchanged = False
    plan.extra["updated"] = True
    if repeat == "title":
        plan.changes = {"title": title}
        plan.audit("update", "incident", existing["id"], fields=deltas(existing, plan.changes), meta=dict(meta, repeat_update="title"))
    plan.note = note(event.get("subject") or "Alert updated", [("Title", title), ("Summary", event.get("summary"))])
    _append_details(plan.note, event)
    if repeat == "note":
        plan.audit("notify", "incident", existing["id"], meta=dict(meta, repeat_update="note", title=title))
    return True


def _mark_existing(plan: Plan, existing: Mapping[str, Any], action: str, meta: Mapping[str, Any]) -> None:
    """The plan keeps ``existing`` as it is (a no-op unless the caller adds writes); its creation may be back-filled."""
    plan.before = dict(existing)
    plan.unchanged = True
    plan.extra = {"duplicate_of": existing.get("id")}
    snapshot = {name: existing.get(name) for name in ("entity", "title", "correlation_key", "opened_at") if existing.get(name)}
    plan.creation_of_existing = audit_entry(action, "incident", existing.get("id"), deltas(None, snapshot), meta)


def _plan_reopen(ctx: Context, plan: Plan, record: Mapping[str, Any], event: Mapping[str, Any], window: float) -> None:
    """The alert fires again within the reopen window of its resolved incident: SOP 6's reopen, one write."""
    if "incident_assign" not in policy.allowed_sops(ctx.role):
        raise policy.violation(ctx.sop, "role_not_authorised", f"reopening a resolved incident is SOP 6 incident_assign, which role {ctx.role} "
                               "may not run", ctx.role)
    policy.check_transition(ctx.sop, "incident", record.get("status"), "in_progress")
    reason = "the alert fired again {0} after the resolution (reopen window {1})".format(
        _elapsed_text(record.get("resolved_at"), ctx.now), _seconds_text(window))
    plan.unchanged = False
    plan.extra["reopened"] = True
    plan.changes = only_changes(record, {"status": "in_progress", "resolved_at": "", "resolved_by": "",
                                         "responded_at": record.get("responded_at") or ctx.now_text})
    plan.note = note("REOPENED " + str(event.get("subject") or event["alert_type"]), [("Reopen reason", reason),
                                                                                      ("Summary", event.get("summary"))])
    _append_details(plan.note, event)
    plan.audit("update", "incident", record["id"], fields=deltas(record, plan.changes),
               meta={"source": "monitoring", "event_id": event["event_id"], "reopen_reason": reason})


def _elapsed_text(since: Any, now: datetime.datetime) -> str:
    moment = prio.parse_time(since, "resolved_at") if since else None
    return _seconds_text((now - moment).total_seconds()) if moment is not None else "an unknown time"


def _seconds_text(seconds: float) -> str:
    """``90`` -> ``1m 30s``, ``7200`` -> ``2h``: the largest two units."""
    rest, parts = int(max(seconds, 0)), []  # type: int, list
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size or (unit == "s" and not parts):
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return " ".join(parts[:2])


def plan_tool_usage(ctx: Context) -> Plan:
    plan = Plan(ctx.sop, None)
    usage_id = ctx.get("usage_id") or "TOOL-" + uuid.uuid4().hex[:12]
    if ctx.get("incident_id") is not None:
        record = ctx.load("incident", "incident_id")
        plan.entity, plan.before = "incident", record
        plan.note = note("Tool used: {0}".format(ctx.get("tool")), [("Action", ctx.get("action_summary")), ("Outcome", ctx.get("outcome")),
                                                                    ("Executor", ctx.actor)])
    plan.extra = {"usage_id": usage_id}
    meta = {"tool": ctx.get("tool"), "action_summary": clip(ctx.get("action_summary"), 300), "outcome": clip(ctx.get("outcome"), 300),
            "incident_id": ctx.get("incident_id")}
    plan.audit("tool_use", "tool_usage", usage_id, meta=meta)
    return plan


def plan_simulation_run(ctx: Context) -> Plan:
    outcomes = text_list(ctx.get("outcomes"))
    policy.require(ctx.sop, "outcomes", outcomes)
    plan = Plan(ctx.sop, None)
    simulation_id = ctx.get("simulation_id") or "SIM-" + uuid.uuid4().hex[:12]
    plan.extra = {"simulation_id": simulation_id}
    plan.audit("simulation", "simulation", simulation_id,
               meta={"scenario": clip(ctx.get("scenario"), 300), "scope": ctx.get("scope"), "simulated_by": ctx.actor,
                     "outcomes": [clip(item, 200) for item in outcomes[:20]]})
    return plan


# --------------------------------------------------------------------------- SOP 19: problems


def _norm_title(title: Any) -> str:
    return " ".join(str(title or "").lower().split())


def _link_incidents(ctx: Context, plan: Plan, problem_ref: Any, incidents: list) -> None:
    for incident in incidents:
        if incident.get("problem_link") not in (None, "", problem_ref):
            raise policy.violation(ctx.sop, "already_linked", "incident {0} is linked to problem {1}".format(
                incident["id"], incident["problem_link"]), incident["id"])
        plan.side.append((incident, {"problem_link": problem_ref}, note("Linked to problem {0}".format(problem_ref or "(new)"),
                                                                        [("Linked by", ctx.actor)])))


def plan_problem_create(ctx: Context) -> Plan:
    incidents = [policy.check_exists(ctx.sop, "incident", ref, ctx.platform.get("incident", str(ref)))
                 for ref in text_list(ctx.get("incident_ids"))]
    plan = Plan(ctx.sop, "problem")
    title = _norm_title(ctx.get("title"))
    for existing in ctx.platform.search("problem", active_only=True, limit=200):
        if existing.get("status") in ("open", "under_investigation", "known_error") and _norm_title(existing.get("title")) == title:
            plan.before, plan.unchanged = existing, True
            plan.extra = {"duplicate_of": existing["id"]}
            if incidents:
                ctx.warnings.append("problem {0} already exists; link incidents with problem_link_incident".format(existing["id"]))
            return plan
    plan.create = {"entity": "problem", "status": "open", "title": clip(ctx.get("title"), 200),
                   "detection_source": ctx.get("detection_source"), "reporter": ctx.actor, "opened_at": ctx.now_text,
                   "incident_links": [str(i["id"]) for i in incidents]}
    plan.note = note("Problem created", [("Description", ctx.get("description")), ("Incidents", ", ".join(plan.create["incident_links"]))])
    plan.audit("create", "problem", None, fields=deltas(None, plan.create))
    _link_incidents(ctx, plan, None, incidents)
    for incident in incidents:
        plan.audit("link", "problem", None, fields={"incident_links": {"before": None, "after": incident["id"]}},
                   meta={"incident_id": incident["id"]})
    return plan


PROBLEM_UPDATE_FIELDS = ("title", "root_cause", "detection_source", "problem_status")


def plan_problem_update(ctx: Context) -> Plan:
    if not any(ctx.get(name) is not None for name in PROBLEM_UPDATE_FIELDS + ("description",)):
        raise policy.violation(ctx.sop, "missing_input", "one of {0} or description is required".format(", ".join(PROBLEM_UPDATE_FIELDS)))
    problem = ctx.load_active("problem", "problem_id")
    wanted = {"title": ctx.get("title"), "root_cause": clip(ctx.get("root_cause"), 500), "detection_source": ctx.get("detection_source")}
    changes = {k: v for k, v in wanted.items() if v is not None}
    status = ctx.get("problem_status")
    if status is not None and status != problem.get("status"):
        if status not in ("under_investigation",):
            raise policy.violation(ctx.sop, "invalid_transition",
                                   "problem_update only moves a problem to under_investigation; use the workaround/resolve/close SOPs", status)
        policy.check_transition(ctx.sop, "problem", problem.get("status"), status)
        changes["status"] = status
    if problem.get("status") == "resolved" and changes and changes.get("status") != "under_investigation":
        raise policy.violation(ctx.sop, "wrong_state", "a resolved problem is only reopened (problem_status under_investigation)",
                               "resolved")
    plan = Plan(ctx.sop, "problem", problem)
    plan.changes = only_changes(problem, changes)
    if ctx.get("description"):
        plan.note = note("Problem updated", [("Description", ctx.get("description"))])
    if not plan.changes and plan.note is None:
        plan.unchanged = True
        return plan
    fields = deltas(problem, plan.changes)
    if ctx.get("description"):
        fields["description"] = {"before": None, "after": clip(ctx.get("description"), 200)}
    plan.audit("update", "problem", problem["id"], fields=fields)
    return plan


def plan_problem_link_incident(ctx: Context) -> Plan:
    problem = ctx.load_active("problem", "problem_id")
    incident = ctx.load("incident", "incident_id")
    links = list(problem.get("incident_links") or [])
    plan = Plan(ctx.sop, "problem", problem)
    if incident["id"] in links and incident.get("problem_link") == problem["id"]:
        plan.unchanged = True
        return plan
    if incident["id"] not in links:
        plan.changes = {"incident_links": links + [incident["id"]]}
    plan.note = note("Incident {0} linked".format(incident["id"]), [("Linked by", ctx.actor)])
    _link_incidents(ctx, plan, problem["id"], [incident])
    plan.audit("link", "problem", problem["id"], fields={"incident_links": {"before": links, "after": links + [incident["id"]]}},
               meta={"incident_id": incident["id"]})
    return plan


def plan_problem_workaround(ctx: Context) -> Plan:
    problem = ctx.load_active("problem", "problem_id")
    policy.check_transition(ctx.sop, "problem", problem.get("status"), "known_error")
    kb_id = ctx.get("kb_article_id") or "KB-{0}".format(problem["id"])
    plan = Plan(ctx.sop, "problem", problem)
    plan.changes = only_changes(problem, {"status": "known_error", "workaround": clip(ctx.get("workaround"), 500), "kb_link": kb_id})
    plan.kb = {"requested": ctx.get("kb_article_id"), "planned": kb_id, "title": "Known error: {0}".format(problem.get("title") or problem["id"]),
               "content": ctx.get("workaround"), "kb_type": "workaround"}
    plan.note = note(f"Known error: workaround published as {kb_id}", [("Workaround", ctx.get("workaround"))])
    plan.extra = {"kb_article_id": kb_id}
    plan.audit("kb_update", "problem", problem["id"], fields=deltas(problem, plan.changes),
               meta={"kb_article_id": kb_id, "kb_type": "workaround", "known_error": True})
    return plan


def plan_problem_resolve(ctx: Context) -> Plan:
    problem = ctx.load_active("problem", "problem_id")
    policy.check_transition(ctx.sop, "problem", problem.get("status"), "resolved")
    plan = Plan(ctx.sop, "problem", problem)
    plan.changes = {"status": "resolved", "resolved_at": ctx.now_text, "resolved_by": ctx.actor}
    plan.note = note("Problem resolved", [("Validation evidence", ctx.get("validation_evidence"))])
    plan.audit("resolve", "problem", problem["id"], fields=deltas(problem, {"status": "resolved"}),
               meta={"validation_evidence": clip(ctx.get("validation_evidence"), 300)})
    return plan


def plan_problem_close(ctx: Context) -> Plan:
    hours = ctx.get("stability_window_hours", DEFAULT_STABILITY_HOURS)
    if not isinstance(hours, int) or isinstance(hours, bool) or hours < 0:
        raise policy.violation(ctx.sop, "invalid_value", "stability_window_hours must be an integer >= 0", hours)
    problem = ctx.load_active("problem", "problem_id")
    policy.sod_problem_closer(ctx.sop, ctx.actor, problem.get("resolved_by"))
    resolved = prio.parse_time(problem.get("resolved_at"), "resolved_at")
    elapsed = (ctx.now - resolved).total_seconds() / 3600.0 if resolved else None
    if elapsed is None or elapsed < hours:
        raise policy.violation(ctx.sop, "stability_window", f"a problem is closed {hours} h after its resolution",
                               None if elapsed is None else f"{elapsed:.1f} h")
    policy.check_transition(ctx.sop, "problem", problem.get("status"), "closed")
    plan = Plan(ctx.sop, "problem", problem)
    plan.changes = {"status": "closed", "closed_by": ctx.actor}
    plan.note = note("Problem closed", [("Closure notes", ctx.get("closure_notes")), ("Stable for hours", round(elapsed, 1))])
    plan.audit("close", "problem", problem["id"], fields=deltas(problem, plan.changes),
               meta={"stability_window_hours": hours, "closure_notes": clip(ctx.get("closure_notes"), 300)})
    return plan


# --------------------------------------------------------------------------- SOP 20


def plan_audit_log(ctx: Context) -> Plan:
    ref_type, ref_id = ctx.get("ref_type"), str(ctx.get("ref_id"))
    plan = Plan(ctx.sop, None)
    if ref_type in policy.TICKET_ENTITIES:
        policy.check_exists(ctx.sop, ref_type, ref_id, ctx.platform.get(ref_type, ref_id))
    fields = ctx.get("audit_fields") or {}
    for name, delta in fields.items():
        if not isinstance(delta, dict) or not set(delta) <= {"before", "after"}:
            raise policy.violation(ctx.sop, "invalid_value", f"audit_fields.{name} must be a mapping with before and/or after",
                                   type(delta).__name__)
    plan.audit(ctx.get("audit_action"), ref_type, ref_id, fields=fields, meta=ctx.get("audit_meta") or {})
    return plan


# --------------------------------------------------------------------------- the SOP table

# sop -> (required inputs, {input: allowed values}, planner)
_INCIDENT = ("incident_id",)
SOP_SPECS = {  # type: dict[str, Any]
    "entity_lookup": (("entity_type",), {"entity_type": policy.TICKET_ENTITIES}, plan_entity_lookup),
    "incident_identify": (("title", "reporter", "detection_source", "affected_service", "description"),
                          {"detection_source": policy.DETECTION_SOURCES, "category": policy.INCIDENT_CATEGORIES},
                          plan_incident_identify),
    "incident_log": (_INCIDENT + ("description",), {}, plan_incident_log),
    "incident_categorize": (_INCIDENT + ("category",), {"category": policy.INCIDENT_CATEGORIES}, plan_incident_categorize),
    "incident_prioritize": (_INCIDENT + ("justification",), {"priority": policy.PRIORITIES, "severity": policy.SEVERITIES,
                                                             "urgency": prio.RATINGS, "impact": prio.RATINGS}, plan_incident_prioritize),
    "incident_assign": (_INCIDENT + ("team",), {"team": policy.ASSIGNMENT_TEAMS, "recipients": policy.RECIPIENT_GROUPS},
                        plan_incident_assign),
    "incident_diagnose": (_INCIDENT + ("diagnosis",), {}, plan_incident_diagnose),
    "incident_escalate": (_INCIDENT + ("escalate_to", "reason"), {"escalate_to": policy.ESCALATION_TARGETS,
                                                                  "trigger": ("manual", "automatic")}, plan_incident_escalate),
    "vendor_engage": (_INCIDENT + ("vendor", "contact_method", "vendor_context"), {"contact_method": policy.CONTACT_METHODS},
                      plan_vendor_engage),
    "change_request": (("title", "description", "justification"), {}, plan_change_request),
    "change_approve": (("change_id", "decision", "justification"), {"decision": ("approved", "rejected")}, plan_change_approve),
    "change_coordinate": (_INCIDENT + ("change_id", "justification"), {}, plan_change_coordinate),
    "incident_resolve": (_INCIDENT + ("resolution_summary", "fix_applied", "service_restored"), {}, plan_incident_resolve),
    "communication_update": (_INCIDENT + ("recipients", "message_text"),
                             {"recipients": policy.RECIPIENT_GROUPS, "message_type": policy.MESSAGE_TYPES}, plan_communication_update),
    "incident_close": (_INCIDENT + ("closure_notes",), {}, plan_incident_close),
    "incident_review": (_INCIDENT + ("timeline", "factors", "actions"), {}, plan_incident_review),
    "kb_update": (_INCIDENT + ("kb_type", "kb_title", "kb_content"), {"kb_type": policy.KB_ARTICLE_TYPES}, plan_kb_update),
    "monitoring_intake": (("event",), {"min_severity": policy.SEVERITIES, "impact": prio.RATINGS,
                                       "category": policy.INCIDENT_CATEGORIES, "repeat_update": REPEAT_UPDATES},
                          plan_monitoring_intake),
    "tool_usage": (("tool", "action_summary", "outcome"), {"tool": policy.TOOLS}, plan_tool_usage),
    "simulation_run": (("scenario", "scope", "outcomes"), {"scope": policy.SIMULATION_SCOPES}, plan_simulation_run),
    "problem_create": (("title", "description", "detection_source"), {"detection_source": policy.DETECTION_SOURCES}, plan_problem_create),
    "problem_update": (("problem_id",), {"detection_source": policy.DETECTION_SOURCES, "problem_status": policy.PROBLEM_STATUSES},
                       plan_problem_update),
    "problem_link_incident": (("problem_id", "incident_id"), {}, plan_problem_link_incident),
    "problem_workaround": (("problem_id", "workaround"), {}, plan_problem_workaround),
    "problem_resolve": (("problem_id", "validation_evidence"), {}, plan_problem_resolve),
    "problem_close": (("problem_id",), {}, plan_problem_close),
    "audit_log": (("audit_action", "ref_type", "ref_id"), {"audit_action": policy.AUDIT_ACTIONS, "ref_type": policy.ENTITIES},
                  plan_audit_log),
}


def validate_inputs(sop: str, inputs: Mapping[str, Any]) -> None:
    """Step 1: required inputs and enums of the SOP (raises PolicyViolation)."""
    required, choices, _dummy = SOP_SPECS[sop]
    for name in required:
        if name == "incident_id" and inputs.get(name) is None and inputs.get("correlation_key") is not None:
            continue  # the incident is named by its correlation key (Context.load)
        policy.require(sop, name, inputs.get(name))
    for name, allowed in choices.items():
        policy.check_choice(sop, name, inputs.get(name), allowed)


def build_plan(ctx: Context) -> Plan:
    """Steps 1-5: validate, authorise, read, check and plan. Writes nothing."""
    policy.sop_info(ctx.sop)
    validate_inputs(ctx.sop, ctx.inputs)
    policy.authorise(ctx.sop, ctx.role)
    return SOP_SPECS[ctx.sop][2](ctx)


# --------------------------------------------------------------------------- run


def run_sop(sop: str, inputs: Mapping[str, Any], *, actor: str, role: str, platform: TicketPlatform, ledger: Any,
            check_mode: bool = False, now: Any = None, warn: Any = None, log_fields: Optional[Mapping[str, Any]] = None) -> dict:
    """One SOP, end to end. Returns ``{sop, changed, record, audit, ...extra}``.

    ``changed`` is true when the run wrote anything: to the platform or to the ledger (a back-filled creation
    record counts, the ticket itself is then unchanged). A create is counted in the ticket-creation metrics
    (in check mode as a dry run); ``log_fields`` (e.g. ``job_id``) go to its JSON log line.
    """
    key = _creation_key(sop, inputs)
    with platform.creation_lock(key) if key and not check_mode else contextlib.nullcontext():
        return _run(Context(sop, inputs, actor, role, platform, now), ledger, check_mode, warn, log_fields)


def _creation_key(sop: str, inputs: Mapping[str, Any]) -> Optional[str]:
    """The correlation key an SOP looks up before it creates (held under the platform's ``creation_lock``), or None."""
    if sop == "monitoring_intake" and isinstance(inputs.get("event"), Mapping):
        event = inputs["event"]
        value = event.get("correlation_key") or event.get("event_id")
        return correlation_key_of(value) if value else None
    if sop == "incident_identify" and inputs.get("correlation_key") is not None and CORRELATION_KEY_RE.match(str(inputs["correlation_key"])):
        return str(inputs["correlation_key"])
    return None


def _run(ctx: Context, ledger: Any, check_mode: bool, warn: Any, log_fields: Optional[Mapping[str, Any]]) -> dict:
    sop, actor, role, platform = ctx.sop, ctx.actor, ctx.role, ctx.platform
    plan = build_plan(ctx)
    auditor = Auditor(ledger, actor=actor, role=role, sop=sop, platform=platform.name, on_failure=_audit_failure(ctx, plan))
    governed = GovernedWrite(auditor, find=platform.find_by_correlation_key, ref=lambda record: record.get("id"),
                             hint=platform.unfindable_hint, warn=warn or ctx.warnings.append, what=plan.entity or "record",
                             log_fields=log_fields, found_in_reply=platform.carries_key)
    backfill = None
    if plan.creation_of_existing is not None:
        backfill = governed.backfill_entry(cast(dict, plan.before), plan.creation_of_existing)  # set together with before
        if backfill is not None:
            plan.audits.append(backfill)
    changed = (not plan.unchanged and (plan.has_writes() or bool(plan.audits))) or backfill is not None
    if check_mode:
        if plan.create is not None and not plan.unchanged:
            governed.dry_run(key=plan.create.get("correlation_key"))
        return _result(ctx, plan, plan.predicted(), _preview(plan, auditor), changed)
    if plan.unchanged and not plan.audits:
        return _result(ctx, plan, plan.before, [], False)
    auditor.preflight()
    record = plan.before
    written = {}  # type: dict
    if not plan.unchanged:
        record = _apply(ctx, plan, governed, written)
    for index, entry in enumerate(plan.audits):
        if index not in written:
            auditor.append(entry, entry["ref_id"] if entry["ref_id"] is not None else (record or {}).get("id"))
    return _result(ctx, plan, record, auditor.records, changed)


def _audit_failure(ctx: Context, plan: Plan) -> Any:
    def failure(entry: Mapping[str, Any], ref: Any, exc: LabopsError) -> LabopsError:
        return AuditWriteError(
            "{0}: audit write failed after the {1} change to {2} {3}: {4}".format(ctx.sop, ctx.platform.name, entry["ref_type"], ref, exc),
            sop=ctx.sop, ref_type=entry["ref_type"], ref_id=ref, platform_change_applied=plan.has_writes() and not plan.unchanged)
    return failure


def _preview(plan: Plan, auditor: Auditor) -> list:
    """The audit records a real run would append (check mode)."""
    return [auditor.preview(entry, entry["ref_id"] if entry["ref_id"] is not None else "(new)") for entry in plan.audits]


def _creation_index(plan: Plan) -> int:
    """The audit entry of the record the plan creates: the first one without a ref_id."""
    return next(index for index, entry in enumerate(plan.audits) if entry["ref_id"] is None)


def _apply(ctx: Context, plan: Plan, governed: GovernedWrite, written: dict) -> Optional[dict]:
    """Platform writes; a create goes through the governed write, which also audits it (recorded in ``written``)."""
    record = plan.before
    if plan.kb is not None and plan.before is not None:
        _publish_kb(ctx, plan)
    if plan.create is not None:
        index = _creation_index(plan)
        first_note = plan.note or note(ctx.sop, ctx.sop)
        entity, values = cast(str, plan.entity), plan.create  # a plan that creates names its entity
        record = governed.create(lambda: ctx.platform.create(entity, values, first_note),
                                 key=plan.create.get("correlation_key"), creation=plan.audits[index])
        written[index] = True
    elif plan.changes:
        record = ctx.platform.update(cast(dict, plan.before), plan.changes, plan.note)  # changes come with a record
    elif plan.note is not None and plan.before is not None:
        ctx.platform.add_note(plan.before, plan.note)
    for other, changes, other_note in plan.side:
        _apply_side(ctx, record, other, changes, other_note)
    return record


def _publish_kb(ctx: Context, plan: Plan) -> None:
    """Publish the article first; a platform with a knowledge base names it itself (its number): the link, the result,
    the note and the audit records then carry that number instead of the planned reference."""
    kb = cast(dict, plan.kb)
    published = ctx.platform.publish_kb(cast(dict, plan.before), **kb)
    if not published or published == kb["planned"]:
        return
    if cast(dict, plan.before).get("kb_link") == published:
        plan.changes.pop("kb_link", None)
    else:
        plan.changes["kb_link"] = published
    plan.extra["kb_article_id"] = published
    if plan.note is not None:
        plan.note = dict(plan.note, subject=plan.note["subject"].replace(kb["planned"], published))
    for entry in plan.audits:
        change = entry["fields"].get("kb_link")
        if change is not None:
            entry["fields"]["kb_link"] = dict(change, after=published)
            if change.get("before") == published:
                del entry["fields"]["kb_link"]
        if entry["meta"].get("kb_article_id") == kb["planned"]:
            entry["meta"]["kb_article_id"] = published


def _apply_side(ctx: Context, record: Optional[Mapping[str, Any]], other: Mapping[str, Any], changes: Mapping[str, Any],
                other_note: Mapping[str, Any]) -> None:
    """Secondary writes (the other side of a link); ``None`` values mean "the created record's id"."""
    resolved = {k: (record or {}).get("id") if v is None else v for k, v in changes.items()}
    if resolved:
        ctx.platform.update(other, resolved, other_note)
    else:
        ctx.platform.add_note(other, other_note)


def _result(ctx: Context, plan: Plan, record: Optional[Mapping[str, Any]], audit: list, changed: bool) -> dict:
    view = ims_view(record)
    result = {"sop": ctx.sop, "changed": bool(changed), "record": view, "audit": audit, "warnings": ctx.warnings,
              "diff": {"before": ims_view(plan.before), "after": view}}
    result.update(plan.extra)
    if view and view.get("entity") == "incident":
        view["closure_complete"] = policy.closure_complete(view)
        sla = sla_of(view, ctx.now)
        if sla is not None:
            view["sla"] = sla
    return result


def ims_view(record: Optional[Mapping[str, Any]]) -> Optional[dict]:
    """The platform-neutral record returned to the caller (internal keys dropped)."""
    if record is None:
        return None
    return {k: v for k, v in record.items() if not k.startswith("_") and k != FOLLOW_UP_KEY}


PLANNERS = {name: spec[2] for name, spec in SOP_SPECS.items()}
