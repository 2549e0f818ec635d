#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: servicenow_incident
short_description: Manage ServiceNow incidents (create, update, hold, resolve, close, cancel, delete), idempotently
version_added: 0.3.0
description:
  - Creates, updates and moves ServiceNow incidents through the Table API (C(/api/now/table/incident)).
  - Before creating, the incident is looked up by O(number), O(sys_id) or O(correlation_id), so a re-run (or a repeated alert
    notification) updates one incident instead of creating duplicates. An empty key is refused, never searched
    (C(correlation_id=) would match every incident whose field is empty).
  - Only the options you set are compared; unset options leave the incident alone. Values of the field mapping
    (O(mapping) C(defaults)) are used when the incident is created, never to overwrite it later.
  - Work notes and comments are journal entries; an entry whose text the incident already has is not posted again,
    so a re-run adds nothing.
  - Check mode is the dry run of seed 001 - it returns the exact request body it would send in RV(payload), and the
    predicted incident.
  - Every change (create, update, state change, resolve, close, cancel, delete) is appended to the hash-chained audit
    ledger (the same governed write as M(labops.itsm.otobo_ticket) and M(labops.itsm.ims_sop)). The ledger is checked
    before ServiceNow is changed and the task fails, changing nothing, if it cannot be written; a ledger write that fails
    after the change fails the task with C(error_class=AuditWriteError) saying the change is UNAUDITED.
  - A create whose reply was lost (a timeout or 5xx after sending) is never re-sent blindly - with O(correlation_id) the
    module looks the incident up and sends the create once more only when it is not there (with a warning either way).
    The creation is audited once (ledger record key C(servicenow:create:incident:<number>)).
  - An incident found by O(correlation_id) whose creation the ledger lacks (an earlier run lost its reply or failed
    before its audit) gets its C(create) record now, marked C(meta.backfilled), and the task reports C(changed).
author:
  - labops.itsm developers (@labops)
extends_documentation_fragment:
  - labops.itsm.servicenow
  - labops.itsm.ledger
  - labops.itsm.attributes
attributes:
  check_mode:
    support: full
    details:
      - Returns the predicted incident and the exact request body in RV(payload) without writing anything (the dry run).
  diff_mode:
    support: full
  action_group:
    description:
      - Use C(group/labops.itsm.servicenow) in C(module_defaults) to set the connection options and
        C(group/labops.itsm.ledger) to set the audit ledger for this module.
    support: full
    membership:
      - labops.itsm.servicenow
      - labops.itsm.ledger
seealso:
  - module: labops.itsm.servicenow_incident_info
  - module: labops.itsm.ims_audit_info
options:
  state:
    description:
      - V(present) creates the incident (state New) when it does not exist and updates the fields that differ, leaving
        the incident state alone.
      - V(new), V(in_progress), V(on_hold), V(resolved), V(closed), V(canceled) also move the incident to that state.
        V(on_hold) needs O(hold_reason) (unless the incident has one); V(resolved) and V(closed) need O(close_code) and
        O(close_notes) (unless the incident has them), as ServiceNow's data policy does.
      - V(absent) deletes the incident (needs the C(delete) ACL, usually admin). A missing incident is not an error.
      - A closed or canceled incident is normally read-only to non-admin roles; ServiceNow then answers 403 and the
        task fails with C(error_class=PermissionDenied).
    type: str
    choices: [present, new, in_progress, on_hold, resolved, closed, canceled, absent]
    default: present
  number:
    description:
      - Number of an existing incident, for example V(INC0010001). A number that does not exist is an error.
    type: str
  sys_id:
    description:
      - sys_id of an existing incident (32 hex characters). A sys_id that does not exist is an error.
    type: str
  correlation_id:
    description:
      - Key of the incident in the external system (for example an alert episode's correlation key); the incident
        carrying it is updated, or created with it when none exists. The newest match wins.
      - Without O(number), O(sys_id) or O(correlation_id) every run creates a new incident (not idempotent).
    type: str
  correlation_display:
    description:
      - Label of the external system, set on create (for example V(alertmanager)).
    type: str
  short_description:
    description:
      - Short description (ServiceNow keeps 160 characters; longer text is cut there before it is compared or sent).
      - When not set and O(alert) is given, rendered from the mapping's C(templates.short_description).
      - Required to create an incident (given or rendered).
    type: str
  description:
    description:
      - Description. When not set and O(alert) is given, rendered from the mapping's C(templates.description).
    type: str
  impact:
    description:
      - Impact, V(high), V(medium), V(low) (or V(1), V(2), V(3)). ServiceNow computes the priority from impact and urgency.
    type: str
    choices: [high, medium, low, "1", "2", "3"]
  urgency:
    description:
      - Urgency, V(high), V(medium), V(low) (or V(1), V(2), V(3)).
    type: str
    choices: [high, medium, low, "1", "2", "3"]
  severity:
    description:
      - Severity (V(critical), V(high), V(medium), V(low) or V(S1)..V(S4)) turned into impact and urgency by the mapping's
        C(severity) table (built-in - critical 1/1, high 1/2, medium 2/2, low 2/3, giving priorities 1 to 4).
      - Mutually exclusive with O(impact) and O(urgency).
    type: str
  caller:
    description:
      - Caller - a user name (C(user_name)), e-mail address or sys_id.
    type: str
    aliases: [caller_id]
  assignment_group:
    description:
      - Assignment group - a group name or sys_id.
    type: str
  assigned_to:
    description:
      - Assignee - a user name, e-mail address or sys_id.
    type: str
  cmdb_ci:
    description:
      - Configuration item - a CI name or sys_id.
    type: str
  category:
    description: Category value, for example V(software), V(hardware), V(network).
    type: str
  subcategory:
    description: Subcategory value.
    type: str
  contact_type:
    description: How the incident was reported, for example V(monitoring), V(email), V(phone).
    type: str
  work_notes:
    description:
      - Work note (internal journal entry) to add. Not added again when the incident already has an entry with this text.
    type: str
  comments:
    description:
      - Additional comment (customer-visible journal entry) to add. Not added again when the incident already has an
        entry with this text.
    type: str
  hold_reason:
    description:
      - Why the incident is on hold; needed with O(state=on_hold).
    type: str
    choices: [awaiting_caller, awaiting_problem, awaiting_vendor, awaiting_change]
  close_code:
    description:
      - Resolution code, as the instance's choice list has it (for example V(Solution provided) on recent releases,
        V(Solved (Permanently)) on older ones). Needed to resolve or close.
    type: str
  close_notes:
    description:
      - Resolution notes. Needed to resolve or close.
    type: str
  custom_fields:
    description:
      - Custom fields, name to value. A name is a key of the mapping's C(custom_fields) (translated to its C(u_) field)
        or a C(u_)/C(x_) field name itself.
    type: dict
  mapping:
    description:
      - Field mapping (seed 001) - a YAML file path or a dict with C(defaults), C(severity), C(custom_fields) and
        C(templates); see the ServiceNow guide (docs/servicenow.md) for the format. C(${VAR}) references are resolved
        from the environment when the task runs and hidden from the output.
      - Without it the built-in mapping is used (no defaults, the severity table above, the built-in templates).
    type: raw
  alert:
    description:
      - The alert (an AlertManager alert - C(labels), C(annotations), C(status), C(startsAt)...) that the mapping's
        templates render O(short_description) and O(description) from, when those are not set.
    type: dict
  cmdb:
    description:
      - CMDB context of the alert's asset (for example its inventory variables - C(name), C(service), C(team)) for the
        templates.
    type: dict
notes:
  - "HTTP calls per task (asserted against the simulator's request log in the integration tests): a run with nothing to change
    costs 1 GET (the lookup reads the whole record with display values, journal entries included); a create at most 1 lookup
    GET and 1 POST (the POST reply carries the stored record with its O(correlation_id), which proves that the next run
    finds it, so nothing is read back; only a reply without it costs 1 more GET); an update or a resolve 1 GET and 1 PATCH;
    O(state=absent) 1 GET and 1 DELETE. A create whose reply was lost adds 1 GET (the lookup before any re-send). With OAuth
    the first task of a controller user adds the token request; later tasks reuse the token kept in O(token_cache) until it expires
    (then one refresh)."
  - "References given by name: a group or CI name that the module has not seen before is sent as a display value
    (C(sysparm_input_display_value=true), no lookup); a caller or assignee given by user name or e-mail is looked up once
    (1 GET). The sys_ids learnt either way are kept in O(token_cache) (the client's reference cache), so later runs compare and send
    sys_ids at no cost."
  - Runs on the controller (use C(delegate_to) V(localhost)) and needs the Python C(requests) library.
requirements:
  - requests
"""

EXAMPLES = r"""
- name: Open (or find) the incident of an alert episode, descriptions rendered from the mapping
  labops.itsm.servicenow_incident:
    instance: https://acme.service-now.com
    client_id: "{{ sn_client_id }}"
    client_secret: "{{ sn_client_secret }}"
    username: itsm.bot
    password: "{{ sn_password }}"
    correlation_id: "{{ ansible_eda.event.correlation_key }}"
    correlation_display: alertmanager
    severity: "{{ ansible_eda.event.alert.labels.severity | default('medium') }}"
    assignment_group: Infrastructure
    cmdb_ci: pve-03
    caller: monitoring
    mapping: /etc/labops/servicenow-mapping.yml
    alert: "{{ ansible_eda.event.alert }}"
  delegate_to: localhost

- name: Preview the request without writing anything (dry run)
  labops.itsm.servicenow_incident:
    correlation_id: am:6f1c2a9e
    short_description: NodeDown pve-03
    impact: high
    urgency: medium
  check_mode: true
  register: preview
  delegate_to: localhost

- name: Take it in progress with a work note (not repeated on a re-run)
  labops.itsm.servicenow_incident:
    number: INC0010042
    state: in_progress
    assigned_to: jdoe
    work_notes: Investigating the storage path.
  delegate_to: localhost

- name: Put it on hold while the vendor works
  labops.itsm.servicenow_incident:
    number: INC0010042
    state: on_hold
    hold_reason: awaiting_vendor
  delegate_to: localhost

- name: Resolve when the alert resolves
  labops.itsm.servicenow_incident:
    correlation_id: am:6f1c2a9e
    state: resolved
    close_code: Solution provided
    close_notes: Alert resolved at source
    work_notes: AlertManager reported resolved
  delegate_to: localhost

- name: Close it
  labops.itsm.servicenow_incident:
    number: INC0010042
    state: closed
  delegate_to: localhost

- name: Delete a test incident
  labops.itsm.servicenow_incident:
    sys_id: 9d385017c611228701d22104cc95c371
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
record:
  description:
    - The incident after the task (in check mode the prediction), raw values as strings; reference fields are sys_ids,
      journal fields (C(work_notes), C(comments)) carry their entries' text. None after O(state=absent).
  returned: always
  type: dict
  sample:
    sys_id: 9d385017c611228701d22104cc95c371
    number: INC0010042
    state: "2"
    impact: "1"
    urgency: "2"
    priority: "2"
    short_description: NodeDown pve-03
    correlation_id: am:6f1c2a9e
    assignment_group: 8a5055c9c61122780043563ef53438e3
number:
  description: Incident number (None for a predicted create).
  returned: always
  type: str
  sample: INC0010042
sys_id:
  description: sys_id of the incident (None for a predicted create).
  returned: always
  type: str
  sample: 9d385017c611228701d22104cc95c371
link:
  description: Link to the incident form (None for a predicted create).
  returned: always
  type: str
  sample: https://acme.service-now.com/nav_to.do?uri=incident.do?sys_id=9d385017c611228701d22104cc95c371
state:
  description: Incident state name (new, in_progress, on_hold, resolved, closed, canceled), None when there is no incident.
  returned: always
  type: str
  sample: in_progress
created:
  description: Whether the incident was (in check mode would be) created.
  returned: always
  type: bool
found:
  description: Whether an existing incident was found.
  returned: always
  type: bool
payload:
  description:
    - Body of the write request that was (in check mode would be) sent; None without a write. References given by a name
      the module has not learnt yet are sent as names with C(sysparm_input_display_value=true) (see RV(query)).
  returned: always
  type: dict
  sample: {"short_description": "NodeDown pve-03", "impact": "1", "urgency": "2", "correlation_id": "am:6f1c2a9e"}
query:
  description: Query parameters of that write request (for example C(sysparm_input_display_value)); None without a write.
  returned: always
  type: dict
requests:
  description: HTTP requests this task sent to ServiceNow (token requests and retries included).
  returned: always
  type: int
  sample: 1
audit:
  description:
    - Audit records written to the ledger by this task (none in check mode). A create is audited with record key
      C(servicenow:create:incident:<number>); updates as C(update), comments as C(notify), resolving as C(resolve),
      closing, canceling and deleting as C(close) (a delete with C(meta.operation=delete)).
  returned: always
  type: list
  elements: dict
  sample:
    - action: create
      ref_type: incident
      ref_id: INC0010042
      platform: servicenow
      meta: {record_key: "servicenow:create:incident:INC0010042", correlation_id: "am:6f1c2a9e", sys_id: 9d385017c611228701d22104cc95c371}
diff:
  description: Compared fields before and after (server-managed fields left out).
  returned: always
  type: dict
  contains:
    before:
      description: Incident before the task (empty for a create).
      type: dict
    after:
      description: Incident after the task (empty after a delete).
      type: dict
"""

import re

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError, NotFoundError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._governed import GovernedWrite, audit_entry, module_auditor
from ansible_collections.labops.itsm.plugins.module_utils._http import HAS_REQUESTS, REQUESTS_IMPORT_ERROR
from ansible_collections.labops.itsm.plugins.module_utils._itsm_mapping import load_mapping, render
from ansible_collections.labops.itsm.plugins.module_utils._ledger import LEDGER_ARGSPEC, ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._servicenow import (
    SERVICENOW_CONNECTION_ARGSPEC,
    SERVICENOW_CONNECTION_MUTUALLY_EXCLUSIVE,
    SERVICENOW_CONNECTION_REQUIRED_ONE_OF,
    SERVICENOW_CONNECTION_REQUIRED_TOGETHER,
    client_from_params,
    eq,
)

PLATFORM = "servicenow"
TABLE = "incident"
REF_TYPE = "incident"
STATES = {"new": "1", "in_progress": "2", "on_hold": "3", "resolved": "6", "closed": "7", "canceled": "8"}
STATE_NAMES = {code: name for name, code in STATES.items()}
# target state -> the audit action of the change (other state changes are updates)
STATE_ACTIONS = {"6": "resolve", "7": "close", "8": "close"}
CLOSING_FIELDS = ("state", "close_code", "close_notes")
UNFINDABLE_HINT = ("the servicenow account can create incidents but cannot find them by correlation_id: grant it read access to incident and "
                   "its correlation_id field (the itil role has it)")
MASK = "********"
HOLD_REASONS = {"awaiting_caller": "1", "awaiting_problem": "3", "awaiting_vendor": "4", "awaiting_change": "5"}
RATINGS = {"high": "1", "medium": "2", "low": "3", "1": "1", "2": "2", "3": "3"}
# option -> (field, referenced table)
REFERENCES = {"caller": ("caller_id", "sys_user"), "assignment_group": ("assignment_group", "sys_user_group"),
              "assigned_to": ("assigned_to", "sys_user"), "cmdb_ci": ("cmdb_ci", "cmdb_ci")}
REFERENCE_FIELDS = dict(REFERENCES.values())
# tables whose display value is the name the user gives: unknown names go out as display values, no lookup
DISPLAY_NAME_TABLES = ("sys_user_group", "cmdb_ci")
PLAIN = ("short_description", "description", "category", "subcategory", "contact_type", "close_code", "close_notes")
JOURNALS = ("work_notes", "comments")
JOURNAL_LABELS = {"work_notes": "Work notes", "comments": "Additional comments"}
SHORT_DESCRIPTION_MAX = 160
SYS_ID = re.compile(r"^[0-9a-f]{32}$")
# "2026-05-01 10:00:03 - Monitoring Bot (Work notes)" heads each journal entry in a display value
JOURNAL_HEADER = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d - .*\((?:Work notes|Additional comments)\)\s*$", re.MULTILINE)
SERVER_FIELDS = ("sys_updated_on", "sys_updated_by", "sys_mod_count", "sys_created_on", "sys_created_by", "priority", "active",
                 "incident_state", "resolved_at", "resolved_by", "closed_at", "closed_by", "reopen_count", "opened_at", "opened_by",
                 "calendar_stc", "business_stc", "sys_tags", "sys_domain", "sys_class_name")


# -- reading records ---------------------------------------------------------------------------


class Current:
    """An incident read with sysparm_display_value=all: raw values, display values, journal text."""

    def __init__(self, row):
        self.raw = {}
        self.display = {}
        for name, value in (row or {}).items():
            if isinstance(value, dict):
                self.raw[name] = "" if value.get("value") is None else str(value.get("value"))
                self.display[name] = "" if value.get("display_value") is None else str(value.get("display_value"))
            else:
                self.raw[name] = "" if value is None else str(value)
                self.display[name] = self.raw[name]

    def record(self):
        """Raw values with the journal fields' entries (their raw value is always empty)."""
        record = dict(self.raw)
        for name in JOURNALS:
            if name in self.display:
                record[name] = self.display[name]
        return record

    def journal_entries(self, name):
        text = self.display.get(name) or ""
        parts = JOURNAL_HEADER.split(text)
        return [part.strip() for part in parts[1:]] if len(parts) > 1 else ([text.strip()] if text.strip() else [])


def find_incident(client, params):
    """(Current or None, how it was looked for). One GET whichever key is given."""
    if params.get("sys_id") is not None:
        row = client.get(TABLE, params["sys_id"], display_value="all")
        if row is None:
            raise NotFoundError("servicenow: incident sys_id {0} does not exist (or an ACL hides it)".format(params["sys_id"]))
        return Current(row)
    if params.get("number") is not None:
        row = client.find_one(TABLE, eq("number", params["number"]), display_value="all")
        if row is None:
            raise NotFoundError("servicenow: incident {0} does not exist (or an ACL hides it)".format(params["number"]))
        return Current(row)
    if params.get("correlation_id") is not None:
        row = find_by_correlation_id(client, params["correlation_id"])
        return Current(row) if row is not None else None
    return None


def find_by_correlation_id(client, key):
    """The newest incident carrying ``key`` (read with display values), or None. One GET."""
    return client.find_one(TABLE, eq("correlation_id", key) + "^ORDERBYDESCsys_created_on", display_value="all")


# -- desired state -----------------------------------------------------------------------------


def check_params(params):
    for name in ("number", "sys_id", "correlation_id"):
        value = params.get(name)
        if value is not None and not str(value).strip():
            raise ValidationError(f"servicenow: {name} is empty: an empty key is never searched ({name}= would match every incident "
                                  "whose field is empty)")
    if params.get("sys_id") is not None and not SYS_ID.match(params["sys_id"]):
        raise ValidationError("servicenow: sys_id must be 32 lowercase hex characters, got {0!r}".format(params["sys_id"]))
    if params["state"] == "absent" and not (params.get("number") or params.get("sys_id") or params.get("correlation_id")):
        raise ValidationError("servicenow: state=absent needs one of number, sys_id or correlation_id")


def desired_values(params, mapping):
    """Field -> wanted value (strings) for the options the user set, references still by name."""
    wanted = {}
    if params["state"] in STATES:
        wanted["state"] = STATES[params["state"]]
    if params.get("severity") is not None:
        wanted.update(mapping.severity_fields(params["severity"]))
    for name in ("impact", "urgency"):
        if params.get(name) is not None:
            wanted[name] = RATINGS[params[name]]
    for name in PLAIN:
        if params.get(name) is not None:
            wanted[name] = params[name]
    context = {"alert": params.get("alert") or {}, "cmdb": params.get("cmdb") or {}}
    if params.get("alert") is not None:
        for name in ("short_description", "description"):
            if params.get(name) is None:
                wanted[name] = render(mapping, name, context)
    if "short_description" in wanted:
        wanted["short_description"] = wanted["short_description"][:SHORT_DESCRIPTION_MAX]
    for option, (field, dummy) in REFERENCES.items():
        if params.get(option) is not None:
            wanted[field] = params[option]
    if params.get("hold_reason") is not None:
        wanted["hold_reason"] = HOLD_REASONS[params["hold_reason"]]
    for name in ("correlation_id", "correlation_display"):
        if params.get(name) is not None:
            wanted[name] = params[name]
    for name in JOURNALS:
        if params.get(name):
            wanted[name] = params[name]
    for name, value in (params.get("custom_fields") or {}).items():
        wanted[mapping.custom_field(name)] = _text(value)
    return wanted


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def creation_values(params, mapping, wanted):
    """The create body before references: the mapping's defaults under the options, state New unless asked otherwise."""
    values = {}
    for name, value in mapping.defaults.items():
        field = "caller_id" if name == "caller" else name
        values[field] = value if isinstance(value, str) else ",".join(value)
    values.update(wanted)
    if values.get("state") == STATES["new"]:
        del values["state"]  # New is the default of an insert
    if not values.get("short_description"):
        raise ValidationError(f"servicenow: no incident found{_key_text(params)}; creating one needs short_description (or alert, to render the "
                              "mapping's template)")
    return values


def _key_text(params):
    for name in ("correlation_id", "number", "sys_id"):
        if params.get(name):
            return f" for {name}={params[name]}"
    return ""


def check_state_needs(params, values, current):
    """close_code/close_notes to resolve or close, hold_reason to hold (unless the incident already has them)."""
    state = values.get("state")
    have = current.raw if current is not None else {}
    if state in (STATES["resolved"], STATES["closed"]):
        missing = [name for name in ("close_code", "close_notes") if not values.get(name) and not have.get(name)]
        if missing:
            raise ValidationError("servicenow: state={0} needs {1}: ServiceNow's data policy refuses to resolve or close an incident "
                                  "without a resolution code and notes".format(params["state"], " and ".join(missing)),
                                  missing=missing)
    if state == STATES["on_hold"] and not values.get("hold_reason") and not have.get("hold_reason"):
        raise ValidationError("servicenow: state=on_hold needs hold_reason (awaiting_caller, awaiting_problem, awaiting_vendor or "
                              "awaiting_change)")


# -- references --------------------------------------------------------------------------------


class References:
    """Turns reference values given by name into what to compare and to send, with as few requests as possible.

    The name -> sys_id pairs live in the client's reference cache (kept in O(token_cache) across runs).
    """

    def __init__(self, client):
        self.client = client
        self.by_display = {}  # field -> name sent as a display value

    def same(self, field, name, current):
        """Whether the incident's reference ``field`` already points at ``name`` (sys_id, name or display value)."""
        value, display = current.raw.get(field, ""), current.display.get(field, "")
        if SYS_ID.match(name):
            return value == name
        if display and display.strip().lower() == name.strip().lower():
            self.client.remember_reference(REFERENCE_FIELDS[field], name, value)
            return True
        known = self.client.known_reference(REFERENCE_FIELDS[field], name)
        if known is not None:
            return value == known
        if REFERENCE_FIELDS[field] in DISPLAY_NAME_TABLES:
            return False  # the display value is the name: a different one is a change
        return value == self.client.resolve_reference(REFERENCE_FIELDS[field], name)

    def outgoing(self, field, name):
        """The value to send: a sys_id when known, else the name (as a display value) or a looked-up sys_id."""
        if SYS_ID.match(name):
            return name
        known = self.client.known_reference(REFERENCE_FIELDS[field], name)
        if known is not None:
            return known
        if REFERENCE_FIELDS[field] in DISPLAY_NAME_TABLES:
            self.by_display[field] = name
            return name
        return self.client.resolve_reference(REFERENCE_FIELDS[field], name)

    def learn(self, written):
        """After a write with display values: cache the sys_ids; a name ServiceNow did not know left the field empty."""
        unknown = []
        for field, name in self.by_display.items():
            sys_id = written.raw.get(field, "")
            if sys_id:
                self.client.remember_reference(REFERENCE_FIELDS[field], name, sys_id)
            else:
                unknown.append(f"{field} {name!r} (no {REFERENCE_FIELDS[field]} record has that name)")
        return unknown


def body_for(references, values):
    """The request body and query of a write: references resolved (or sent by name with input display values)."""
    body = {}
    for field, value in values.items():
        body[field] = references.outgoing(field, value) if field in REFERENCE_FIELDS else value
    query = {"sysparm_input_display_value": "true"} if references.by_display else {}
    return body, query


# -- comparing -----------------------------------------------------------------------------------


def changes_for(references, current, values):
    """The wanted fields that differ from the incident (journal entries it already has do not count)."""
    changed = {}
    for field, value in values.items():
        if field in JOURNALS:
            if value.strip() and value.strip() not in current.journal_entries(field):
                changed[field] = value
        elif field in REFERENCE_FIELDS:
            if not references.same(field, value, current):
                changed[field] = value
        elif current.raw.get(field, "").strip() != value.strip():
            changed[field] = value
    return changed


def predict(current, body):
    record = current.record() if current is not None else {"sys_id": None, "number": None, "state": STATES["new"]}
    for field, value in body.items():
        if field in JOURNALS:
            record[field] = (value + ("\n\n" + record[field] if record.get(field) else "")).strip()
        else:
            record[field] = value
    return record


def diff_view(record, fields):
    if not record:
        return {}
    return {name: record.get(name) for name in sorted(fields) if name not in SERVER_FIELDS}


# -- ensure steps ----------------------------------------------------------------------------------


def ensure_created(module, client, governed, references, mapping, wanted):
    """Create through the governed write (lost reply: look the correlation_id up first; creation audited once)."""
    params = module.params
    values = creation_values(params, mapping, wanted)
    check_state_needs(params, values, None)
    body, query = body_for(references, values)
    key = params.get("correlation_id")
    if module.check_mode:
        governed.dry_run(key=key)
        return True, predict(None, body), body, query
    governed.auditor.preflight()

    def send():
        return client.create(TABLE, body, input_display_value=bool(query), display_value="all")

    def creation(row):
        stored = Current(row).raw  # references as the sys_ids ServiceNow stored
        fields = {name: {"before": None, "after": stored.get(name) or value if name in REFERENCE_FIELDS else value} for name, value in body.items()}
        return incident_entry("create", row, masked(fields, mapping.secrets), {"correlation_id": key} if key else None)

    written = Current(governed.create(send, key=key, creation=creation))
    unknown = references.learn(written)
    if unknown:
        raise NotFoundError("servicenow: incident {0} was created, but ServiceNow left {1} empty".format(
            written.raw.get("number"), "; ".join(unknown)), number=written.raw.get("number"), sys_id=written.raw.get("sys_id"))
    return True, written.record(), body, query


def ensure_updated(module, client, auditor, references, current, wanted, secrets):
    params = module.params
    changed = changes_for(references, current, wanted)
    if not changed:
        return False, current.record(), None, None
    check_state_needs(params, changed, current)
    body, query = body_for(references, changed)
    if module.check_mode:
        return True, predict(current, body), body, query
    auditor.preflight()
    written = Current(client.update(TABLE, current.raw["sys_id"], body, input_display_value=bool(query), display_value="all"))
    audit_update(auditor, current, written, body, secrets)
    unknown = references.learn(written)
    if unknown:
        raise NotFoundError("servicenow: incident {0}: ServiceNow left {1} empty".format(current.raw.get("number"), "; ".join(unknown)),
                            number=current.raw.get("number"))
    return True, written.record(), body, query


def ensure_absent(module, client, auditor, current):
    if current is None:
        return False, None, None, None
    if not module.check_mode:
        auditor.preflight()
        client.delete(TABLE, current.raw["sys_id"])
        state = current.raw.get("state", "")
        auditor.append(incident_entry("close", current.raw, {"state": {"before": STATE_NAMES.get(state, state), "after": "deleted"}},
                                      {"operation": "delete"}), current.raw.get("number"))
    return True, None, None, None


# -- audit ---------------------------------------------------------------------------------------


def make_auditor(ledger, params):
    """Preflight before the ServiceNow write, append after it; failures after the write say UNAUDITED."""
    return module_auditor(ledger, params, platform=PLATFORM, platform_label="ServiceNow", what="servicenow incident", ref_key="number",
                          id_key="sys_id")


def incident_entry(action, row, fields=None, meta=None):
    """The audit entry of ``action`` on the incident ``row`` (raw or display-value row; its sys_id goes to meta)."""
    return audit_entry(action, REF_TYPE, None, fields, dict(meta or {}, sys_id=Current(row).raw.get("sys_id")))


def carries_key(row, key):
    """The create reply passed the read ACLs the lookup passes and shows the correlation_id: the next run finds it."""
    written = Current(row)
    return bool(written.raw.get("sys_id") and written.raw.get("number")) and written.raw.get("correlation_id") == key


def make_governed(module, client, auditor):
    """The governed write over incidents, looked up by correlation_id the way find_incident does it."""
    return GovernedWrite(auditor, find=lambda key: find_by_correlation_id(client, key), ref=lambda row: Current(row).raw["number"],
                         hint=lambda row: UNFINDABLE_HINT, warn=module.warn, what="incident", found_in_reply=carries_key)


def masked(deltas, secrets):
    """Field deltas with every resolved ${VAR} value of the mapping replaced (the ledger never holds them)."""
    def mask(value):
        if not isinstance(value, str):
            return value
        for secret in secrets:
            if secret:
                value = value.replace(secret, MASK)
        return value
    return {name: {side: mask(value) for side, value in delta.items()} for name, delta in deltas.items()}


def _audited_value(field, value):
    return STATE_NAMES.get(value, value) if field == "state" else value


def audit_update(auditor, current, written, body, secrets):
    """update (field deltas, work notes), notify (comments), then resolve / close (the state change and its close fields)."""
    number = written.raw.get("number") or current.raw.get("number")
    before = current.raw
    deltas = {}
    for field in body:
        if field in JOURNALS:
            deltas[field] = {"before": None, "after": body[field]}  # a journal entry is appended, nothing is replaced
        else:
            deltas[field] = {"before": _audited_value(field, before.get(field, "")),
                             "after": _audited_value(field, written.raw.get(field, body[field]))}
    deltas = masked(deltas, secrets)
    action = STATE_ACTIONS.get(body.get("state"))
    closing = {name: deltas.pop(name) for name in CLOSING_FIELDS if action and name in deltas}
    comments = deltas.pop("comments", None)
    record = written.raw or current.raw
    if deltas:
        auditor.append(incident_entry("update", record, deltas), number)
    if comments:
        auditor.append(incident_entry("notify", record, {"comments": comments}), number)
    if action:
        auditor.append(incident_entry(action, record, closing, {"canceled": True} if body.get("state") == STATES["canceled"] else None), number)


def backfill_creation(module, governed, current):
    """An incident found by its correlation_id whose creation the ledger lacks gets that record now (marked back-filled)."""
    params = module.params
    if current is None or not params.get("correlation_id") or params.get("number") or params.get("sys_id"):
        return False
    return governed.backfill(current.raw, incident_entry("create", current.raw, meta={"correlation_id": params["correlation_id"]}),
                             check_mode=module.check_mode)


def run(module, client, ledger):
    params = module.params
    check_params(params)
    mapping = load_mapping(params.get("mapping"), PLATFORM)
    for secret in mapping.secrets:
        module.no_log_values.add(secret)
    references = References(client)
    governed = make_governed(module, client, make_auditor(ledger, params))
    current = find_incident(client, params)
    backfilled = backfill_creation(module, governed, current)
    if params["state"] == "absent":
        changed, record, payload, query = ensure_absent(module, client, governed.auditor, current)
        wanted = {}
    else:
        wanted = desired_values(params, mapping)
        if current is None:
            changed, record, payload, query = ensure_created(module, client, governed, references, mapping, wanted)
        else:
            changed, record, payload, query = ensure_updated(module, client, governed.auditor, references, current, wanted, mapping.secrets)
    return build_result(client, changed or backfilled, current, record, payload, query, wanted, governed.auditor.records)


def build_result(client, changed, current, record, payload, query, wanted, audit_records):
    sys_id = (record or {}).get("sys_id")
    fields = set(wanted) | set(payload or {})
    before = current.record() if current is not None else None
    return dict(
        changed=changed,
        record=record,
        number=(record or {}).get("number"),
        sys_id=sys_id,
        link=client.record_link(TABLE, sys_id) if sys_id else None,
        state=STATE_NAMES.get((record or {}).get("state")),
        created=current is None and record is not None and changed,
        found=current is not None,
        payload=payload,
        query=query,
        requests=client.request_count,
        audit=audit_records,
        diff=dict(before=diff_view(before, fields or set(before or {})), after=diff_view(record, fields or set(record or {}))),
    )


def argument_spec():
    spec = dict(SERVICENOW_CONNECTION_ARGSPEC)
    spec.update(LEDGER_ARGSPEC)
    spec.update(
        state=dict(type="str", default="present", choices=["present", "new", "in_progress", "on_hold", "resolved", "closed", "canceled", "absent"]),
        number=dict(type="str"),
        sys_id=dict(type="str"),
        correlation_id=dict(type="str", no_log=False),
        correlation_display=dict(type="str"),
        short_description=dict(type="str"),
        description=dict(type="str"),
        impact=dict(type="str", choices=["high", "medium", "low", "1", "2", "3"]),
        urgency=dict(type="str", choices=["high", "medium", "low", "1", "2", "3"]),
        severity=dict(type="str"),
        caller=dict(type="str", aliases=["caller_id"]),
        assignment_group=dict(type="str"),
        assigned_to=dict(type="str"),
        cmdb_ci=dict(type="str"),
        category=dict(type="str"),
        subcategory=dict(type="str"),
        contact_type=dict(type="str"),
        work_notes=dict(type="str"),
        comments=dict(type="str"),
        hold_reason=dict(type="str", choices=sorted(HOLD_REASONS)),
        close_code=dict(type="str"),
        close_notes=dict(type="str"),
        custom_fields=dict(type="dict"),
        mapping=dict(type="raw"),
        alert=dict(type="dict"),
        cmdb=dict(type="dict"),
    )
    return spec


def main(module_class=AnsibleModule):
    """Run the module; the action plugin passes a controller-side module_class (plugin_utils/_controller_module.py)."""
    module = module_class(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[("number", "sys_id"), ("severity", "impact"), ("severity", "urgency")] + SERVICENOW_CONNECTION_MUTUALLY_EXCLUSIVE,
        required_together=SERVICENOW_CONNECTION_REQUIRED_TOGETHER,
        required_one_of=SERVICENOW_CONNECTION_REQUIRED_ONE_OF,
    )
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
    client = None
    try:
        client = client_from_params(module.params, warn=module.warn, register_secret=module.no_log_values.add)
        ledger = ledger_from_params(module.params)
        result = run(module, client, ledger)
    except LabopsError as exc:
        kwargs = exc.fail_kwargs()
        if client is not None:
            kwargs["requests"] = client.request_count
        module.fail_json(**kwargs)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
