#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ims_sop
short_description: Run one IMS standard operating procedure (seed 002) on a ticket platform, enforced and audited
version_added: 0.1.0
description:
  - Runs one of the IMS policy's single-turn standard operating procedures (SOPs) against the incidents, problems
    and change requests of a ticket platform (O(platform); OTOBO today).
  - "Every run follows the same order and halts with an explicit error at the first failure, before anything is
    written: input validation (required inputs, seed 002 enums), role authorisation of O(actor_role), reading the
    current ticket, prior-state, transition, precondition and segregation-of-duties checks, then (unless in check mode)
    a ledger preflight, the platform change and the audit records."
  - "A policy halt fails the task with C(error_class=PolicyViolation) and a message C(<sop>: <rule>: <explanation> (got <value>))."
  - A failed audit write after the platform change fails the task with C(error_class=AuditWriteError).
  - "Creates (V(incident_identify), V(monitoring_intake), V(change_request), V(problem_create)) are governed writes: a
    create whose reply was lost is never blindly re-sent; the correlation key is looked up first and the create is
    re-sent once only when nothing was created. The creation is audited once. When a run finds an incident by its
    correlation key whose creation the ledger lacks (an earlier run lost its reply or failed before its audit), it
    writes that creation record, marked C(meta.backfilled), and reports C(changed) (the ticket itself is unchanged,
    RV(duplicate_of) names it)."
  - "After a create with a correlation key the module checks that the new incident is found by that key, the way the
    next run looks for it; if not, the task fails with C(error_class=PermissionDenied) naming the missing permission
    (on OTOBO the agent may create in the queue but lacks C(ro) there), since every later run would open a duplicate."
  - "Why one module with a O(sop) choice rather than one module per SOP: each SOP is a single-turn procedure whose
    inputs, checks and effects are fixed by the policy, so the SOP is the unit of work; one module keeps one argument
    surface, one engine and one audit path for all of them, and a new platform adapter serves all SOPs at once."
  - On OTOBO the IMS status and attributes are kept in ticket dynamic fields (C(IMSStatus), C(IMSCategory),
    C(IMSPriority), C(IMSAssignedTeam) ... see C(dynamic_field_map) in O(platform_options)); the IMS status is mirrored
    to an OTOBO state through C(state_map). Notes (acknowledgements, diagnoses, communications, reviews, KB content)
    are ticket articles.
  - SOPs that only add a note (V(incident_log), V(incident_diagnose), V(communication_update), V(incident_review),
    V(kb_update)) and the ledger-only SOPs (V(tool_usage), V(simulation_run), V(audit_log)) change something on every
    run. Field SOPs (V(incident_categorize), V(incident_prioritize), V(incident_assign), V(change_coordinate),
    V(problem_link_incident)) are idempotent. Status SOPs halt when the ticket is not in an allowed prior state.
author:
  - labops.itsm contributors (@labops)
extends_documentation_fragment:
  - labops.itsm.platform
  - labops.itsm.ledger
  - labops.itsm.attributes
  - labops.itsm.attributes.ACTIONGROUP_LEDGER
attributes:
  check_mode:
    support: full
    details:
      - Validation, authorisation and all policy checks run; the predicted record and the audit records that would be
        written are returned, nothing is written to the platform or the ledger.
  diff_mode:
    support: full
    details:
      - RV(diff) holds the IMS record before and after.
seealso:
  - module: labops.itsm.otobo_ticket
  - module: labops.itsm.ims_audit
options:
  sop:
    description:
      - The standard operating procedure to run (seed 002 numbering in parentheses).
      - V(entity_lookup) (1), V(incident_identify) (2), V(incident_log) (3), V(incident_categorize) (4),
        V(incident_prioritize) (5), V(incident_assign) (6), V(incident_diagnose) (7), V(incident_escalate) (8),
        V(vendor_engage) (9), V(change_request), V(change_approve) and V(change_coordinate) (10),
        V(incident_resolve) (11), V(communication_update) (12), V(incident_close) (13), V(incident_review) (14),
        V(kb_update) (15), V(monitoring_intake) (16), V(tool_usage) (17), V(simulation_run) (18),
        V(problem_create), V(problem_update), V(problem_link_incident), V(problem_workaround), V(problem_resolve)
        and V(problem_close) (19), V(audit_log) (20).
    type: str
    required: true
    choices: [entity_lookup, incident_identify, incident_log, incident_categorize, incident_prioritize, incident_assign,
              incident_diagnose, incident_escalate, vendor_engage, change_request, change_approve, change_coordinate,
              incident_resolve, communication_update, incident_close, incident_review, kb_update, monitoring_intake,
              tool_usage, simulation_run, problem_create, problem_update, problem_link_incident, problem_workaround,
              problem_resolve, problem_close, audit_log]
  incident_id:
    description:
      - Ticket number of the incident.
      - The incident SOPs may name the incident by its C(correlation_key) instead; it is then found with the platform's
        correlation lookup (one search and one read), whatever queue it is in.
    type: str
  problem_id:
    description:
      - Ticket number of the problem.
    type: str
  change_id:
    description:
      - Ticket number of the change request.
    type: str
  title:
    description:
      - Title of a new incident, problem or change request; new title with V(problem_update).
    type: str
  description:
    description:
      - Description of the incident, problem or change.
    type: str
  reporter:
    description:
      - Who reported the incident (V(incident_identify)).
    type: str
  detection_source:
    description:
      - How the incident or problem was detected.
    type: str
    choices: [user_report, monitoring_tool, automated_alert]
  affected_service:
    description:
      - The affected service.
    type: str
  category:
    description:
      - Incident category.
    type: str
    choices: [hardware, software, security, performance, other]
  subcategory:
    description:
      - Free-text subcategory (V(incident_categorize)).
    type: str
  correlation_key:
    description:
      - Correlation key (8 to 64 lowercase hex) of V(incident_identify); an active incident with the key is not duplicated.
      - For the SOPs that take C(incident_id), names the incident instead of C(incident_id).
    type: str
  priority:
    description:
      - IMS priority (V(incident_prioritize)); give it or C(urgency) and C(impact), or both when they agree.
    type: str
    choices: [low, medium, high]
  severity:
    description:
      - IMS severity (V(incident_prioritize)).
    type: str
    choices: [low, medium, high]
  urgency:
    description:
      - Urgency for the seed 004 urgency x impact matrix.
    type: str
    choices: [high, medium, low]
  impact:
    description:
      - Impact for the seed 004 urgency x impact matrix (V(incident_prioritize), V(monitoring_intake)).
    type: str
    choices: [high, medium, low]
  justification:
    description:
      - Why (V(incident_prioritize), V(change_request), V(change_approve), V(change_coordinate)).
    type: str
  team:
    description:
      - Team to assign (V(incident_assign)); with C(acknowledge), the team V(incident_resolve) acknowledges an open incident
        for (default its assigned team, else V(service_desk)).
    type: str
    choices: [service_desk, L1, L2, L3, facilities, change_mgmt, devops]
  recipients:
    description:
      - Recipient group of a communication (V(communication_update); V(incident_assign) defaults to V(end_users)).
    type: str
    choices: [end_users, stakeholders, executives, IT_staff]
  message_text:
    description:
      - Communication text (V(communication_update)) or acknowledgement text (V(incident_assign)).
    type: str
  message_type:
    description:
      - Kind of communication.
    type: str
    choices: [status, eta, resolution, pir]
  reopen_reason:
    description:
      - Required by V(incident_assign) on a resolved incident (the reopen).
    type: str
  diagnosis:
    description:
      - Diagnostic steps (V(incident_diagnose)) or initial diagnosis (V(incident_log)).
    type: str
  workaround:
    description:
      - Temporary workaround (V(incident_log), V(incident_diagnose), V(problem_workaround)).
    type: str
  escalate_to:
    description:
      - Escalation target (V(incident_escalate)).
    type: str
    choices: [L2, L3, incident_manager, change_mgmt, facilities, devops]
  reason:
    description:
      - Escalation reason.
    type: str
  trigger:
    description:
      - V(automatic) escalations may start from an open incident when its priority is high or its response SLA is breached.
    type: str
    choices: [manual, automatic]
  vendor:
    description:
      - Vendor name (V(vendor_engage)).
    type: str
  contact_method:
    description:
      - How the vendor is contacted.
    type: str
    choices: [phone, email, vendor_portal, API]
  vendor_reference:
    description:
      - The vendor's case number.
    type: str
  vendor_context:
    description:
      - What the vendor is asked to do.
    type: str
  pending_hours:
    description:
      - Hours until the vendor follow-up of V(vendor_engage) (on OTOBO the C(PendingTime) of the C(pending reminder)
        state). Defaults to 24.
    type: int
  decision:
    description:
      - Decision of V(change_approve).
    type: str
    choices: [approved, rejected]
  resolution_summary:
    description:
      - What fixed the incident (V(incident_resolve)).
    type: str
  acknowledge:
    description:
      - V(incident_resolve) of an incident that is still V(open) (nobody took it yet, e.g. an alert that cleared by itself)
        first acknowledges it with SOP 6's effects and rules (the role must be allowed V(incident_assign); assigned team,
        response time) and resolves it in the same write, with an C(update) and a C(resolve) audit record. Without it,
        resolving an open incident halts with C(wrong_state).
    type: bool
    default: false
  fix_applied:
    description:
      - Confirms that the fix was applied; must be V(true) for V(incident_resolve).
    type: bool
  service_restored:
    description:
      - Confirms that the service is restored; must be V(true) for V(incident_resolve).
    type: bool
  closure_notes:
    description:
      - Closure notes (V(incident_close), V(problem_close)).
    type: str
  timeline:
    description:
      - PIR timeline (V(incident_review)).
    type: str
  factors:
    description:
      - PIR contributing factors.
    type: str
  actions:
    description:
      - PIR action items.
    type: list
    elements: str
  kb_article_id:
    description:
      - Knowledge base article id (V(kb_update), V(problem_workaround), V(incident_review)); defaults to C(KB-<ticket number>).
    type: str
  kb_type:
    description:
      - Kind of KB content.
    type: str
    choices: [resolution, workaround, prevention]
  kb_title:
    description:
      - KB article title.
    type: str
  kb_content:
    description:
      - KB article content.
    type: str
  event:
    description:
      - The monitoring event of V(monitoring_intake), C({event_id, service, source, alert_type, severity, occurred_at,
        summary, correlation_key}); C(source) is V(monitoring_tool) or V(automated_alert); C(severity) is V(critical),
        V(high), V(warning), V(medium), V(info) or V(low).
      - Optional keys shape the new incident; C(title) (default C(<alert_type>) colon C(<service>)), C(subject) of the service
        desk note (default C(Monitoring event <event_id>)) and C(details), free text appended to that note.
    type: dict
  min_severity:
    description:
      - Threshold of V(monitoring_intake); weaker events halt with rule C(below_threshold). Defaults to V(medium).
    type: str
    choices: [low, medium, high]
  reopen_window:
    description:
      - V(monitoring_intake) on a key whose incident is resolved (jiralert's C(reopen_duration)) - seconds or a duration
        (V(30m), V(6h), V(7d)). Resolved within the window, the incident is reopened (SOP 6's reopen C(resolved -> in_progress),
        audited as C(update) with a C(reopen_reason)); resolved earlier, or closed, a new incident is opened. V(0) always
        opens a new one.
      - Unset (the default), a resolved incident is kept as it is (a late repeat of the alert episode) and a closed one is
        followed by a new incident.
    type: str
  never_reopen:
    description:
      - Resolutions that are never reopened by V(monitoring_intake) with C(reopen_window) (jiralert's C(wont_fix_resolution)),
        compared case-insensitively with the platform's resolution (Jira resolution name, ServiceNow close code). Within the
        window the firing is suppressed (result C(suppressed)); after it a new incident is opened.
    type: list
    elements: str
  repeat_update:
    description:
      - What V(monitoring_intake) does when a repeated notification of an active incident brings another title (jiralert
        updates the summary or comments). V(none) changes nothing; V(title) renames the incident and notes the new details
        (audited C(update)); V(note) only adds a note with the new title and details (audited C(notify)). An unchanged
        title never writes.
    type: str
    choices: [none, title, note]
    default: none
  tool:
    description:
      - The tool used (V(tool_usage)).
    type: str
    choices: [monitoring, root_cause_analysis, ITSM_service_desk, incident_response, AI_virtual_agent, AIOps, automation_script]
  action_summary:
    description:
      - What was done with the tool.
    type: str
  outcome:
    description:
      - Outcome of the tool usage.
    type: str
  usage_id:
    description:
      - Identifier of the tool usage record; generated when not given.
    type: str
  scenario:
    description:
      - Simulation scenario (V(simulation_run)).
    type: str
  scope:
    description:
      - Simulation scope.
    type: str
    choices: [tabletop, drill]
  outcomes:
    description:
      - Simulation outcomes.
    type: list
    elements: str
  simulation_id:
    description:
      - Identifier of the simulation record; generated when not given.
    type: str
  entity_type:
    description:
      - Entity to look up (V(entity_lookup)).
    type: str
    choices: [incident, problem, change_request]
  filters:
    description:
      - Lookup filters, IMS attribute to value (C(id), C(status), C(priority), C(severity), C(severity_level), C(category),
        C(assigned_team), C(affected_service), C(title) (substring), C(reporter), C(correlation_key), C(problem_link),
        C(change_link)).
    type: dict
  limit:
    description:
      - Maximum number of lookup matches. Defaults to 50.
    type: int
  incident_ids:
    description:
      - Incidents to link to a new problem (V(problem_create)).
    type: list
    elements: str
  root_cause:
    description:
      - Root cause (V(problem_update)).
    type: str
  problem_status:
    description:
      - New problem status with V(problem_update); only V(under_investigation) (start or reopen an investigation).
    type: str
    choices: [open, under_investigation, known_error, resolved, closed]
  validation_evidence:
    description:
      - Evidence that the problem is fixed (V(problem_resolve)).
    type: str
  stability_window_hours:
    description:
      - Hours a resolved problem must stay stable before V(problem_close). Defaults to 24.
      - A resolved incident (V(incident_resolve)) waits for the same default window (24 hours) as its follow-up time;
        on OTOBO it is in C(pending auto close+) with that C(PendingTime) until V(incident_close) (C(closed successful)).
    type: int
  audit_action:
    description:
      - Audit action of V(audit_log).
    type: str
    choices: [identify, create, read, update, notify, escalate, resolve, close, review, kb_update, vendor_engagement, simulation, tool_use, link]
  ref_type:
    description:
      - Entity type of the V(audit_log) record; tickets (incident, problem, change_request) must exist.
    type: str
    choices: [incident, problem, change_request, communication, monitoring_event, tool_usage, simulation, kb_article, vendor_engagement]
  ref_id:
    description:
      - Identifier of the V(audit_log) record.
    type: str
  audit_fields:
    description:
      - "Field deltas of V(audit_log), C({name: {before, after}})."
    type: dict
  audit_meta:
    description:
      - Minimal context of V(audit_log).
    type: dict
notes:
  - "OTOBO requests per run (measured against the OTOBO simulator, stock GET search route): V(monitoring_intake) that
    creates 5 (TicketSearch; TicketCreate and TicketGet; TicketSearch and TicketGet to check that the next run finds the
    incident), a repeated V(monitoring_intake) 2 (TicketSearch, TicketGet), V(incident_resolve) by O(correlation_key)
    with O(acknowledge) 4 (TicketSearch, TicketGet, TicketUpdate, TicketGet), the same by O(incident_id) 4. The first run of
    a controller user adds 1 (SessionCreate); later runs reuse the session kept in the platform option C(session_cache).
    The alert path's resolve playbook asserts at most 6 (tests/integration/test_sop_playbooks.py)."
  - "OTOBO: required dynamic fields (Text): IMSEntity, IMSStatus, IMSCategory, IMSSubcategory, IMSPriority, IMSSeverity,
    IMSSeverityLevel, IMSDetectionSource, IMSReporter, IMSAffectedService, IMSAssignedTeam, IMSChangeLink,
    IMSProblemLink, IMSIncidentLinks, IMSWorkaround, IMSRootCause, IMSPIR, IMSKBLink, IMSOpenedAt, IMSRespondedAt,
    IMSResolvedAt, IMSResolvedBy, IMSClosedBy, IMSRequester, IMSApprover, IMSVendor, IMSCorrelationKey."
  - The role table, the lifecycles and each SOP's checks are documented in C(docs/lifecycle.md) and C(docs/sop/).
"""

EXAMPLES = r"""
- name: Identify an incident reported by a user (SOP 2) on OTOBO (password from OTOBO_PASSWORD)
  labops.itsm.ims_sop:
    sop: incident_identify
    platform: otobo
    platform_options:
      url: https://otobo.example.org
      username: alertbot
      customer_user: monitoring
    queue: Infrastructure
    title: Database cluster unreachable
    reporter: jdoe
    detection_source: user_report
    affected_service: postgres
    description: The application reports connection refused since 10:02.
    actor: sd-anna
    actor_role: service_desk
  register: identified

- name: The platform from the inventory (itsm_platform, itsm_platform_options), connection defaults per group
  labops.itsm.ims_sop:
    sop: monitoring_intake
    platform: "{{ itsm_platform }}"
    platform_options: "{{ itsm_platform_options[itsm_platform] }}"
    queue: "{{ itsm_queue | default(omit) }}"
    event:
      event_id: 3f9c2a7b1d0e4c55aa00bb11
      service: pve-node1
      source: automated_alert
      alert_type: HostDown
      severity: critical
    actor: eda
    actor_role: automation

- name: Prioritise it with the urgency x impact matrix (SOP 5)
  labops.itsm.ims_sop:
    sop: incident_prioritize
    incident_id: "{{ identified.record.id }}"
    urgency: high
    impact: high
    justification: All research jobs are blocked.
    actor: im-bob
    actor_role: incident_manager

- name: Close a resolved high-priority incident (SOP 13; records pir_required)
  labops.itsm.ims_sop:
    sop: incident_close
    incident_id: "2025061110000421"
    closure_notes: User confirmed the service works.
    actor: im-bob
    actor_role: incident_manager
"""

RETURN = r"""
sop:
  description: The SOP that ran.
  returned: always
  type: str
  sample: incident_close
record:
  description:
    - The IMS view of the ticket after the SOP (the prediction in check mode; C(id) is null for a ticket not created yet).
    - Null for SOPs without a ticket (V(simulation_run), V(audit_log), V(tool_usage) without an incident, V(entity_lookup)).
    - Incidents also carry C(closure_complete) and, once prioritised, C(sla) (response and resolution status).
  returned: always
  type: dict
  sample: {"id": "2025061110000421", "entity": "incident", "status": "closed", "priority": "high", "severity_level": "S1",
           "pir": "required", "closure_complete": false, "platform_state": "closed successful",
           "platform_priority": "5 very high"}
audit:
  description:
    - The audit records written (in check mode, those that would be written).
    - A creation record back-filled for an incident found by its correlation key carries C(meta.backfilled=true).
  returned: always
  type: list
  elements: dict
  sample: [{"seq": 7, "action": "close", "ref_type": "incident", "ref_id": "2025061110000421", "actor": "im-bob",
            "role": "incident_manager", "sop": "incident_close", "platform": "otobo",
            "fields": {"status": {"before": "resolved", "after": "closed"}}, "meta": {"pir_required": true},
            "prev_hash": "743982a8...", "hash": "0654cdea..."}]
diff:
  description: The IMS record before and after.
  returned: always
  type: dict
  contains:
    before:
      description: The record before the SOP.
      type: dict
    after:
      description: The record after the SOP.
      type: dict
matches:
  description: The matching records of V(entity_lookup).
  returned: when O(sop=entity_lookup)
  type: list
  elements: dict
match:
  description: V(none), V(one) or V(many) (V(entity_lookup); many means disambiguation is needed).
  returned: when O(sop=entity_lookup)
  type: str
  sample: one
count:
  description: Number of matches of V(entity_lookup).
  returned: when O(sop=entity_lookup)
  type: int
  sample: 1
duplicate_of:
  description:
    - The existing record that made V(incident_identify), V(monitoring_intake) or V(problem_create) a no-op, or that
      V(monitoring_intake) reopened, renamed or suppressed.
  returned: when a duplicate was found
  type: str
  sample: "2025061110000421"
reopened:
  description: V(monitoring_intake) reopened the resolved incident RV(duplicate_of) (O(reopen_window)).
  returned: when it did
  type: bool
  sample: true
suppressed:
  description: V(monitoring_intake) left the incident RV(duplicate_of) alone because of its won't-fix resolution (O(never_reopen)).
  returned: when it did
  type: bool
  sample: true
updated:
  description: V(monitoring_intake) renamed or noted the active incident RV(duplicate_of) (O(repeat_update)).
  returned: when it did
  type: bool
  sample: true
resolution:
  description: The resolution of the suppressed incident.
  returned: when RV(suppressed)
  type: str
  sample: "Won't Do"
sla:
  description: Response and resolution targets of the S-level set by V(incident_prioritize) or V(monitoring_intake).
  returned: when a priority was set
  type: dict
  sample: {"severity": "S1", "response_minutes": 15, "resolution_minutes": 240}
kb_article_id:
  description: The knowledge base article id (V(kb_update), V(problem_workaround)).
  returned: when O(sop) is V(kb_update) or V(problem_workaround)
  type: str
  sample: KB-2025061110000421
usage_id:
  description: Id of the tool usage record.
  returned: when O(sop=tool_usage)
  type: str
  sample: TOOL-3f9c2a7b1d0e
simulation_id:
  description: Id of the simulation record.
  returned: when O(sop=simulation_run)
  type: str
  sample: SIM-3f9c2a7b1d0e
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.labops.itsm.plugins.module_utils import _platforms as platforms
from ansible_collections.labops.itsm.plugins.module_utils import _policy as policy
from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError
from ansible_collections.labops.itsm.plugins.module_utils._http import HAS_REQUESTS, REQUESTS_IMPORT_ERROR
from ansible_collections.labops.itsm.plugins.module_utils._ledger import LEDGER_ARGSPEC, ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._sop import REPEAT_UPDATES, run_sop

PLATFORM_ARGSPEC = dict(
    platform=dict(type="str", default=platforms.DEFAULT_PLATFORM, choices=platforms.platform_names()),
    platform_options=dict(type="dict", default={}),
    queue=dict(type="str"),
)
NOT_INPUTS = frozenset(PLATFORM_ARGSPEC) | frozenset(LEDGER_ARGSPEC) | frozenset(("sop",))


def _str(choices=None):
    spec = dict(type="str")
    if choices:
        spec["choices"] = list(choices)
    return spec


def input_spec():
    """The SOP inputs (enum choices come from the policy tables)."""
    spec = {name: _str() for name in (
        "incident_id", "problem_id", "change_id", "title", "description", "reporter", "affected_service", "subcategory",
        "justification", "message_text", "reopen_reason", "diagnosis", "workaround", "reason", "vendor", "vendor_reference",
        "vendor_context", "resolution_summary", "closure_notes", "timeline", "factors", "kb_article_id", "kb_title",
        "kb_content", "action_summary", "outcome", "usage_id", "scenario", "simulation_id", "root_cause",
        "validation_evidence", "ref_id")}
    spec.update(
        detection_source=_str(policy.DETECTION_SOURCES), category=_str(policy.INCIDENT_CATEGORIES),
        correlation_key=dict(type="str", no_log=False), priority=_str(policy.PRIORITIES), severity=_str(policy.SEVERITIES),
        urgency=_str(("high", "medium", "low")), impact=_str(("high", "medium", "low")), team=_str(policy.ASSIGNMENT_TEAMS),
        recipients=_str(policy.RECIPIENT_GROUPS), message_type=_str(policy.MESSAGE_TYPES), escalate_to=_str(policy.ESCALATION_TARGETS),
        trigger=_str(("manual", "automatic")), contact_method=_str(policy.CONTACT_METHODS), pending_hours=dict(type="int"),
        decision=_str(("approved", "rejected")), fix_applied=dict(type="bool"), acknowledge=dict(type="bool", default=False),
        service_restored=dict(type="bool"),
        actions=dict(type="list", elements="str"), kb_type=_str(policy.KB_ARTICLE_TYPES), event=dict(type="dict"),
        min_severity=_str(policy.SEVERITIES), reopen_window=dict(type="str"), never_reopen=dict(type="list", elements="str"),
        repeat_update=dict(type="str", choices=list(REPEAT_UPDATES), default="none"), tool=_str(policy.TOOLS), scope=_str(policy.SIMULATION_SCOPES),
        outcomes=dict(type="list", elements="str"), entity_type=_str(policy.TICKET_ENTITIES), filters=dict(type="dict"),
        limit=dict(type="int"), incident_ids=dict(type="list", elements="str"), problem_status=_str(policy.PROBLEM_STATUSES),
        stability_window_hours=dict(type="int"), audit_action=_str(policy.AUDIT_ACTIONS), ref_type=_str(policy.ENTITIES),
        audit_fields=dict(type="dict"), audit_meta=dict(type="dict"),
    )
    return spec


def argument_spec():
    spec = dict(LEDGER_ARGSPEC)
    spec.update(PLATFORM_ARGSPEC)
    spec.update(sop=dict(type="str", required=True, choices=list(policy.SOPS)))
    spec.update(input_spec())
    return spec


def sop_inputs(params):
    """The SOP inputs the user set (platform, ledger options and sop excluded)."""
    return {name: value for name, value in params.items() if name not in NOT_INPUTS and value is not None}


def mask_platform_secrets(module):
    """Register the secret values of platform_options (and their env fallbacks) before anything can echo them."""
    module.no_log_values.update(platforms.secret_values(module.params["platform"], module.params.get("platform_options")))


def platform_from_module(module):
    params = module.params
    return platforms.build_platform(params["platform"], params.get("platform_options"), queue=params.get("queue"), warn=module.warn)


def run(module, platform, ledger):
    params = module.params
    result = run_sop(params["sop"], sop_inputs(params), actor=params["actor"], role=params["actor_role"],
                     platform=platform, ledger=ledger, check_mode=module.check_mode, warn=module.warn)
    for warning in result.pop("warnings", []):
        module.warn(warning)
    return result


def main(module_class=AnsibleModule):
    """Run the module; the action plugin passes a controller-side module_class (plugin_utils/_controller_module.py)."""
    module = module_class(argument_spec=argument_spec(), supports_check_mode=True)
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=REQUESTS_IMPORT_ERROR)
    try:
        mask_platform_secrets(module)
        platform = platform_from_module(module)
        ledger = ledger_from_params(module.params)
        result = run(module, platform, ledger)
    except LabopsError as exc:
        module.fail_json(**exc.fail_kwargs())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
