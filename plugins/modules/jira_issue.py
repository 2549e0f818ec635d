#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: jira_issue
short_description: Manage Jira issues (create, update, comment, transition, resolve, reopen, link, delete), idempotently, with alert semantics
version_added: 0.4.0
description:
  - Creates, updates, comments, transitions, resolves, reopens, links and deletes Jira issues on Jira Cloud (REST API v3, rich
    text as Atlassian Document Format) and Jira Data Center (REST API v2, wiki markup), from the same Markdown-ish text.
  - The issue is found by O(key), or by a correlation label stored on it (O(correlation_key) or O(correlation_label)) - the
    newest issue carrying the label. Without either every run creates a new issue (not idempotent).
  - Only the options you set are compared, and nothing is written when nothing differs. Comments already on the issue (the
    same text, whatever the markup) are not posted again.
  - "Alert semantics (what jiralert does, inside Ansible): a repeated O(state=present) for the same label updates the issue
    (summary and description in place, or the new description as a comment - O(repeat_update)); a firing after the issue
    was resolved reopens it when it was resolved within O(reopen_window) (a transition to O(reopen_status)), else opens a
    new issue; an issue resolved with one of the O(wont_fix_resolution) resolutions is never reopened (a firing within the
    window is suppressed, after it a new issue is opened); O(state=resolved) transitions to O(resolve_status) with
    O(resolution)."
  - "No duplicates: the lookup and the create run under a lock per label on the controller (two runs for one label at once,
    such as two AlertManager peers delivering the same group, create one issue), and the issues this controller created are
    kept in a creation index in O(cache_dir) and named in every search (C(reconcileIssues)), so Jira Cloud's eventually
    consistent search cannot hide an issue created seconds ago."
  - Every change is appended to the hash-chained audit ledger (the governed write shared with
    M(labops.itsm.servicenow_incident) and M(labops.itsm.ims_sop)). The ledger is checked before Jira is changed and the task
    fails, changing nothing, if it cannot be written; a ledger write that fails after the change fails the task with
    C(error_class=AuditWriteError) saying the change is UNAUDITED. Every create counts in the ticket-creation metrics
    (C(platform="jira")).
  - Check mode is the dry run - it returns the request bodies it would send in RV(payload) and the predicted issue.
author:
  - labops.itsm developers (@labops)
extends_documentation_fragment:
  - labops.itsm.jira
  - labops.itsm.ledger
  - labops.itsm.attributes
attributes:
  check_mode:
    support: full
    details:
      - Returns the predicted issue and the request bodies in RV(payload) without writing anything (the dry run). Reads
        still happen (the lookup, and the transitions of an issue that would be transitioned).
  diff_mode:
    support: full
  action_group:
    description:
      - Use C(group/labops.itsm.jira) in C(module_defaults) to set the connection options and C(group/labops.itsm.ledger)
        to set the audit ledger for this module.
    support: full
    membership:
      - labops.itsm.jira
      - labops.itsm.ledger
seealso:
  - module: labops.itsm.jira_issue_info
  - module: labops.itsm.ims_audit_info
options:
  state:
    description:
      - V(present) creates the issue when none is found and updates what differs. Found by its correlation label, the issue
        is handled as a repeated alert notification (O(reopen_window), O(wont_fix_resolution), O(repeat_update)).
      - V(resolved) transitions the issue to O(resolve_status) (or through O(transition)) with O(resolution) and O(comment);
        an issue already in a C(done) status category, or no issue at all, is left alone (jiralert's auto-resolve).
      - V(absent) deletes the issue (needs the Delete Issues permission). A missing issue is not an error.
    type: str
    choices: [present, resolved, absent]
    default: present
  project:
    description:
      - Key of the project a new issue is created in, for example V(OPS). Needed to create (or the mapping's C(defaults.project)).
    type: str
  issue_type:
    description:
      - Issue type of a new issue (name). Not set - the mapping's C(defaults.issue_type), else V(Incident).
    type: str
  key:
    description:
      - Key of an existing issue, for example V(OPS-17). A key that does not exist is an error (except with O(state=absent)).
    type: str
  correlation_key:
    description:
      - Correlation key of the alert (group), usually the hex key the alert path computes. The issue carries the label
        O(label_prefix) + O(correlation_key) and is found again by it (the newest issue carrying it).
      - The label is made valid for Jira - whitespace becomes C(_), a label longer than 255 characters is cut and ends with
        a hash of the whole.
    type: str
  correlation_label:
    description:
      - Any label to find and mark the issue with (made valid as above), instead of O(correlation_key).
    type: str
  label_prefix:
    description:
      - Prefix of the label made from O(correlation_key). The alert path (the C(jira) ticket platform) uses the same default,
        so both find the same issues.
    type: str
    default: labops-
  summary:
    description:
      - Summary (one line; newlines and control characters are dropped and a summary longer than Jira's 255 characters is
        cut with C(…) before it is compared or sent).
      - When not set and O(alert) is given, rendered from the mapping's C(templates.short_description).
      - Needed to create an issue (given or rendered).
    type: str
  description:
    description:
      - Description, Markdown-ish text (paragraphs, C(#) headings, C(-) and C(1.) lists, fenced code blocks, C(**bold**),
        C(*em*), C(`code`), links), sent as Atlassian Document Format on Cloud and as wiki markup on Data Center. Longer text
        is cut at a line boundary to Jira's 32,767 characters, with a notice.
      - When not set and O(alert) is given, rendered from the mapping's C(templates.description).
    type: str
  priority:
    description:
      - Priority name, for example V(High). Mutually exclusive with O(severity).
    type: str
  severity:
    description:
      - Severity (V(critical), V(high), V(medium), V(low) or V(S1)..V(S4)) turned into a priority by the mapping's C(severity)
        table (built-in - critical Highest, high High, medium Medium, low Low, as seed 001's priority table).
    type: str
  labels:
    description:
      - Labels the issue must carry (added when missing, never removed; made valid as for O(correlation_key)).
        The mapping's C(defaults.labels) are added when the issue is created.
    type: list
    elements: str
  components:
    description:
      - Component names the issue must have (added when missing, never removed).
    type: list
    elements: str
  custom_fields:
    description:
      - "Custom fields, C(customfield_<n>) (or a friendly name of the mapping's C(custom_fields)) to the value as Jira takes it:
        a string for a text field, C({value: prod}) for a select list, a list of those for a multi-select."
    type: dict
  mapping:
    description:
      - Field mapping (seed 001) - a YAML file path or a dict (or a file with a C(jira:) section) with C(defaults)
        (C(project), C(issue_type), C(priority), C(labels), C(components) and text custom fields, used when an issue is
        created), C(severity) (severity to priority name), C(custom_fields) (friendly name to C(customfield_<n>)) and
        C(templates) (C(short_description) and C(description), Jinja2). C(${VAR}) references are resolved from the
        environment and hidden from the output.
    type: raw
  alert:
    description:
      - The alert (an AlertManager alert or group - C(labels), C(annotations), C(status)...) that the mapping's templates render
        O(summary) and O(description) from when those are not set.
    type: dict
  cmdb:
    description:
      - CMDB context of the alert's asset for the templates.
    type: dict
  comment:
    description:
      - Comment to add (Markdown-ish, as O(description)). Not added when the issue already has a comment with this text.
      - With O(state=resolved) and a reopen it is sent inside the transition (no request of its own).
    type: str
  status:
    description:
      - Status the issue must be in (name, any case), reached by the transition whose target it is. Not with O(state=resolved)
        (use O(resolve_status)). Mutually exclusive with O(transition).
    type: str
  transition:
    description:
      - Transition (name or id) to apply when the issue is not in its target status already. With O(state=resolved), the
        transition that resolves (instead of the one reaching O(resolve_status)).
    type: str
  resolution:
    description:
      - Resolution set by the transition that resolves (O(state=resolved)), for example V(Done) or V(Won't Do). The transition's
        screen must offer it. Not set - the workflow's default.
    type: str
  resolve_status:
    description:
      - Status O(state=resolved) moves the issue to.
    type: str
    default: Done
  reopen_window:
    description:
      - How long after its resolution an issue is reopened by a new firing (O(state=present) found by correlation) - seconds
        or a duration like V(30m), V(6h), V(7d) (jiralert's C(reopen_duration)). Older resolutions open a new issue;
        V(0) always opens a new one.
      - Not set - a resolved issue is never reopened nor replaced; it is updated like an open one.
    type: raw
  wont_fix_resolution:
    description:
      - Resolutions that mean "won't fix" (jiralert's C(wont_fix_resolution)) - an issue resolved with one of them is never
        reopened. A firing within O(reopen_window) is suppressed (RV(action=suppressed), nothing written); after the window a
        new issue is opened.
    type: list
    elements: str
    default: []
  reopen_status:
    description:
      - Status a reopened issue is moved to (the transition that reaches it from the resolved status).
    type: str
    default: To Do
  repeat_update:
    description:
      - What a repeated O(state=present) does with a changed summary or description on an issue that exists.
      - V(fields) - both are edited in place.
      - V(comment) - the summary is edited in place, the new description is posted as a comment instead (unless the
        description or the newest comment already has that text) - jiralert's C(update_in_comment).
      - V(none) - neither is touched once the issue exists.
    type: str
    choices: [fields, comment, none]
    default: fields
  links:
    description:
      - Issue links the issue must have (created when missing, never removed).
    type: list
    elements: dict
    suboptions:
      type:
        description: Link type name, for example V(Relates), V(Blocks), V(Duplicate).
        type: str
        default: Relates
      issue:
        description: Key of the other issue.
        type: str
        required: true
      direction:
        description:
          - V(outward) - this issue is on the outward side (I(this blocks other)); V(inward) - the other way round.
        type: str
        choices: [inward, outward]
        default: outward
notes:
  - "HTTP calls per task (the contract, asserted against the simulator's request log in the tests): nothing to change costs 1
    search (found by correlation label) or 1 GET (found by O(key)); a create 1 search + 1 POST (the reply is not read back: the
    creation index makes the next search find it); an edit + 1 PUT; a comment + 1 POST; a transition + 1 GET of the issue's
    transitions + 1 POST (a comment rides in the transition); a link + 1 POST per missing link; O(state=absent) + 1 DELETE. A
    create with O(status) adds 1 GET (the new issue's status). O(deployment=auto) with a URL that is not Atlassian's adds 1
    C(serverInfo) GET the first time (then cached). A create whose reply was lost adds 1 search before anything is sent again
    (on Cloud up to 6 within 30 seconds, as the search may lag behind the lost create)."
  - The creation index and the lock are per controller (O(cache_dir)). Two controllers creating for the same label at the same
    moment are serialised only by Jira's search - run one AlertManager receiver per label, or share O(cache_dir).
  - Runs on the controller (use C(delegate_to) V(localhost)) and needs the Python C(requests) library.
requirements:
  - requests
"""

EXAMPLES = r"""
- name: Open (or update) the issue of an alert group, jiralert style
  labops.itsm.jira_issue:
    url: https://acme.atlassian.net
    username: alert-bot@example.com
    password_file: /etc/labops/jira-api-token
    project: OPS
    issue_type: Incident
    correlation_key: "{{ ansible_eda.event.correlation_key }}"
    severity: "{{ ansible_eda.event.alert.labels.severity | default('medium') }}"
    labels: [alertmanager]
    components: [Virtualisation]
    custom_fields:
      customfield_10050: "{{ ansible_eda.event.alert.labels.instance }}"
    mapping: /etc/labops/jira-mapping.yml
    alert: "{{ ansible_eda.event.alert }}"
    reopen_window: 6h
    wont_fix_resolution: ["Won't Do"]
    repeat_update: comment
  delegate_to: localhost

- name: Resolve it when the alert resolves
  labops.itsm.jira_issue:
    correlation_key: "{{ ansible_eda.event.correlation_key }}"
    state: resolved
    resolution: Done
    comment: Alert resolved at {{ ansible_eda.event.alert.endsAt }}
  delegate_to: localhost

- name: Preview the request bodies without writing anything (dry run)
  labops.itsm.jira_issue:
    project: OPS
    correlation_label: am-3f9c2a7d4e1b
    summary: "[FIRING:2] HostDown pve-node-03"
    description: "Node **pve-node-03** unreachable since 10:15 UTC."
    priority: High
  check_mode: true
  register: preview
  delegate_to: localhost

- name: Take an issue in progress with a comment (not repeated on a re-run) and link it to its problem
  labops.itsm.jira_issue:
    key: OPS-17
    status: In Progress
    comment: Investigating the storage path.
    links:
      - type: Relates
        issue: OPS-12
  delegate_to: localhost

- name: Delete a test issue
  labops.itsm.jira_issue:
    key: OPS-99
    state: absent
  delegate_to: localhost
"""

RETURN = r"""
action:
  description:
    - What the task did (in check mode would do) - V(created), V(updated), V(reopened), V(resolved), V(unchanged),
      V(suppressed) (a won't-fix issue within O(reopen_window)) or V(deleted).
  returned: always
  type: str
  sample: reopened
key:
  description: Key of the issue (None for a predicted create, or when there is no issue).
  returned: always
  type: str
  sample: OPS-17
id:
  description: Id of the issue (None for a predicted create, or when there is no issue).
  returned: always
  type: str
  sample: "10042"
link:
  description: Browse link of the issue (None without a key).
  returned: always
  type: str
  sample: https://acme.atlassian.net/browse/OPS-17
status:
  description:
    - Status name of the issue after the task. None right after a create without O(status) (the reply does not carry it and
      it is not read back).
  returned: always
  type: str
  sample: To Do
resolution:
  description: Resolution name after the task (None while unresolved or unknown).
  returned: always
  type: str
  sample: Done
issue:
  description:
    - The issue after the task (in check mode the prediction) - key, id, summary, description (plain text), status, status
      category, resolution, resolution date, priority, labels, components, issue type, project, links and the compared
      custom fields. None when there is no issue.
  returned: always
  type: dict
  sample:
    key: OPS-17
    id: "10042"
    summary: "[FIRING:2] HostDown pve-node-03"
    status: To Do
    status_category: new
    priority: High
    labels: [alertmanager, labops-3f9c2a7d4e1b]
correlation_label:
  description: The label the issue is found by (None without O(correlation_key) or O(correlation_label)).
  returned: always
  type: str
  sample: labops-3f9c2a7d4e1b
created:
  description: Whether an issue was (in check mode would be) created.
  returned: always
  type: bool
found:
  description: Whether an existing issue was found.
  returned: always
  type: bool
payload:
  description:
    - Bodies of the write requests that were (in check mode would be) sent, by kind - C(create), C(edit), C(transition),
      C(comments), C(links). Empty without a write.
  returned: always
  type: dict
requests:
  description: HTTP requests this task sent to Jira (retries included).
  returned: always
  type: int
  sample: 1
audit:
  description:
    - Audit records written to the ledger by this task (none in check mode). A create is audited with record key
      C(jira:create:issue:<key>); field edits, links, reopening and other transitions as C(update), comments as C(notify),
      resolving as C(resolve), deleting as C(close) with C(meta.operation=delete).
  returned: always
  type: list
  elements: dict
diff:
  description: Compared fields before and after.
  returned: always
  type: dict
  contains:
    before:
      description: Issue before the task (empty for a create).
      type: dict
    after:
      description: Issue after the task (empty after a delete).
      type: dict
"""

import contextlib
import re
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.labops.itsm.plugins.module_utils import _time
from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError, NotFoundError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._governed import GovernedWrite, audit_entry, module_auditor
from ansible_collections.labops.itsm.plugins.module_utils._http import HAS_REQUESTS, REQUESTS_IMPORT_ERROR
from ansible_collections.labops.itsm.plugins.module_utils._itsm_mapping import load_mapping, render
from ansible_collections.labops.itsm.plugins.module_utils._jira import (
    JIRA_CONNECTION_ARGSPEC,
    JIRA_CONNECTION_MUTUALLY_EXCLUSIVE,
    CreationIndex,
    client_from_params,
    jira_time,
    jql_string,
)
from ansible_collections.labops.itsm.plugins.module_utils._jira_ims import SETTLE_DELAYS
from ansible_collections.labops.itsm.plugins.module_utils._jira_markup import (
    adf_to_text,
    clip_description,
    clip_summary,
    jira_label,
    same_text,
    wiki_to_text,
)
from ansible_collections.labops.itsm.plugins.module_utils._ledger import LEDGER_ARGSPEC, ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._refire import CREATE, REOPEN, SUPPRESS, parse_window, refire_action

PLATFORM = "jira"
REF_TYPE = "issue"
MASK = "********"
READ_FIELDS = ("summary", "description", "status", "resolution", "resolutiondate", "labels", "priority", "components", "issuetype",
               "project", "issuelinks", "created")
DEFAULT_KEYS = ("project", "issue_type", "priority", "labels", "components")
CUSTOM_FIELD = re.compile(r"^customfield_[0-9]+$")
UNFINDABLE_HINT = ("the Jira account can create issues but its search does not find them by their label: it needs the Browse Projects "
                   "permission on the project (and the label must not be removed by a workflow)")


# -- reading issues ------------------------------------------------------------------------------


def _name(value):
    if isinstance(value, dict):
        return value.get("name") if value.get("name") is not None else value.get("value")
    return value


def plain(value):
    """Plain text of a rich-text value (ADF object, wiki string or plain string)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return adf_to_text(value)
    return wiki_to_text(str(value))


def field_value(value):
    """A custom field's value as comparable data: select options by their value, ADF as text."""
    if isinstance(value, list):
        return [field_value(item) for item in value]
    if isinstance(value, dict):
        if value.get("type") == "doc":
            return adf_to_text(value)
        for name in ("value", "name", "key", "accountId"):
            if name in value:
                return value[name]
    return value


class Issue:
    """An issue as Jira answers it (``{id, key, fields}``), read through accessors."""

    def __init__(self, raw):
        self.raw = raw or {}
        self.fields = self.raw.get("fields") or {}
        self.extra_comments = None  # every comment, when the embedded page was not all of them

    @property
    def key(self):
        return self.raw.get("key")

    @property
    def id(self):
        return None if self.raw.get("id") is None else str(self.raw.get("id"))

    @property
    def status(self):
        return _name(self.fields.get("status"))

    @property
    def category(self):
        status = self.fields.get("status") or {}
        return (status.get("statusCategory") or {}).get("key")

    @property
    def done(self):
        return self.category == "done"

    @property
    def resolution(self):
        return _name(self.fields.get("resolution"))

    @property
    def labels(self):
        return list(self.fields.get("labels") or [])

    @property
    def components(self):
        return [_name(item) for item in self.fields.get("components") or []]

    @property
    def project(self):
        project = self.fields.get("project") or {}
        return project.get("key")

    @property
    def issue_type(self):
        return _name(self.fields.get("issuetype"))

    def comment_bodies(self):
        if self.extra_comments is not None:
            return [item.get("body") for item in self.extra_comments]
        return [item.get("body") for item in (self.fields.get("comment") or {}).get("comments") or []]

    def comments_complete(self):
        if self.extra_comments is not None:
            return True
        page = self.fields.get("comment")
        if not isinstance(page, dict):
            return False
        total = page.get("total")
        return total is None or total <= len(page.get("comments") or [])

    def links(self):
        """(type name, direction, other key) of every link; direction as seen from this issue."""
        found = []
        for link in self.fields.get("issuelinks") or []:
            kind = _name(link.get("type"))
            if link.get("outwardIssue"):
                found.append((kind, "outward", link["outwardIssue"].get("key")))
            if link.get("inwardIssue"):
                found.append((kind, "inward", link["inwardIssue"].get("key")))
        return found

    def refire_record(self):
        """The IMS view ``_refire.refire_action`` decides on."""
        return {"status": "resolved" if self.done else "open", "resolution": self.resolution,
                "resolved_at": jira_time(self.fields.get("resolutiondate"))}

    def view(self, custom_ids=()):
        """Plain data of the compared fields (the RV(issue) return value and the diff)."""
        view = {
            "key": self.key, "id": self.id, "summary": self.fields.get("summary"), "description": plain(self.fields.get("description")),
            "status": self.status, "status_category": self.category, "resolution": self.resolution,
            "resolutiondate": self.fields.get("resolutiondate"), "priority": _name(self.fields.get("priority")), "labels": self.labels,
            "components": self.components, "issue_type": self.issue_type, "project": self.project,
            "links": [f"{kind} {direction} {other}" for kind, direction, other in self.links()],
        }
        for field in custom_ids:
            view[field] = field_value(self.fields.get(field))
        return view


# -- finding -------------------------------------------------------------------------------------


def label_jql(label):
    return f"labels = {jql_string(label)} ORDER BY created DESC"


def read_fields(wanted, with_comments):
    fields = list(READ_FIELDS) + sorted(wanted.get("custom") or {})
    if with_comments:
        fields.append("comment")
    return fields


def search_label(client, label, index, fields):
    """The newest issue carrying ``label`` (raw) or None. One search; the issues this controller created are reconciled."""
    reconcile = index.ids(label) if index is not None else []
    found = client.search(label_jql(label), fields=fields, limit=1, page_size=1, reconcile=reconcile[-50:])
    return found[0] if found else None


def find_issue(client, params, label, index, fields):
    """The issue to act on (Issue) or None; one GET by key or one search by label."""
    if params.get("key"):
        raw = client.get_issue(params["key"], fields=fields)
        if raw is None:
            if params["state"] == "absent":
                return None
            raise NotFoundError("jira: issue {0} does not exist (or the account may not browse it)".format(params["key"]), key=params["key"])
        return Issue(raw)
    if label:
        raw = search_label(client, label, index, fields)
        return Issue(raw) if raw is not None else None
    return None


def load_comments(client, issue):
    """Every comment of ``issue`` when the embedded page is not all of them (1 GET per comment page, only then)."""
    if issue is not None and issue.key and not issue.comments_complete():
        issue.extra_comments = client.comments(issue.key)


# -- desired state -------------------------------------------------------------------------------


def check_params(params):
    for name in ("key", "correlation_key", "correlation_label"):
        value = params.get(name)
        if value is not None and not str(value).strip():
            raise ValidationError(f"jira: {name} is empty: an empty key is never searched (it would find nothing, and every run would create)")
    if params["state"] == "absent" and not (params.get("key") or params.get("correlation_key") or params.get("correlation_label")):
        raise ValidationError("jira: state=absent needs one of key, correlation_key or correlation_label")
    if params["state"] == "resolved" and params.get("status"):
        raise ValidationError("jira: status is not used with state=resolved: set resolve_status (or transition)")
    for link in params.get("links") or []:
        if not str(link.get("issue") or "").strip():
            raise ValidationError("jira: every entry of links needs issue (the other issue's key)")


def correlation_label(params):
    if params.get("correlation_label"):
        return jira_label(params["correlation_label"])
    if params.get("correlation_key"):
        return jira_label((params.get("label_prefix") or "") + str(params["correlation_key"]).strip())
    return None


def _labels(values):
    labels = []
    for value in values or []:
        label = jira_label(str(value))
        if label not in labels:
            labels.append(label)
    return labels


def desired(params, mapping):
    """What the options ask for: summary, description (Markdown-ish), priority, labels, components, custom fields, comment."""
    wanted = {}
    context = {"alert": params.get("alert") or {}, "cmdb": params.get("cmdb") or {}}
    summary, description = params.get("summary"), params.get("description")
    if params.get("alert") is not None:
        if summary is None:
            summary = render(mapping, "short_description", context)
        if description is None:
            description = render(mapping, "description", context)
    if summary is not None:
        wanted["summary"] = clip_summary(summary)
    if description is not None and description.strip():
        wanted["description"] = clip_description(description)
    if params.get("severity") is not None:
        wanted["priority"] = mapping.severity_fields(params["severity"])["priority"]
    if params.get("priority") is not None:
        wanted["priority"] = params["priority"]
    if params.get("labels"):
        wanted["labels"] = _labels(params["labels"])
    if params.get("components"):
        wanted["components"] = list(dict.fromkeys(params["components"]))
    custom = {}
    for name, value in (params.get("custom_fields") or {}).items():
        custom[mapping.custom_field(name)] = value
    if custom:
        wanted["custom"] = custom
    if params.get("comment") and params["comment"].strip():
        wanted["comment"] = params["comment"]
    return wanted


def creation_values(params, mapping, wanted, label):
    """Project, issue type and the fields of a new issue: the mapping's defaults under the options."""
    defaults = mapping.defaults
    custom = {}
    for name, value in defaults.items():
        if name in DEFAULT_KEYS:
            continue
        field = mapping.custom_field(name) if not CUSTOM_FIELD.match(name) else name
        custom[field] = value
    project = params.get("project") or defaults.get("project")
    if not project:
        raise ValidationError(f"jira: no issue found{_key_text(params, label)}; creating one needs project (or the mapping's defaults.project)")
    values = dict(wanted)
    values["project"] = project
    values["issue_type"] = params.get("issue_type") or defaults.get("issue_type") or "Incident"
    if "priority" not in values and defaults.get("priority"):
        values["priority"] = defaults["priority"]
    labels = _labels(_as_list(defaults.get("labels"))) + (wanted.get("labels") or [])
    if label:
        labels.append(label)
    values["labels"] = list(dict.fromkeys(labels))
    components = _as_list(defaults.get("components")) + (wanted.get("components") or [])
    if components:
        values["components"] = list(dict.fromkeys(components))
    custom.update(wanted.get("custom") or {})
    if custom:
        values["custom"] = custom
    if not values.get("summary"):
        raise ValidationError(f"jira: no issue found{_key_text(params, label)}; creating one needs summary (or alert, to render the mapping's "
                              "template)")
    return values


def _as_list(value):
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _key_text(params, label):
    if params.get("key"):
        return " with key " + params["key"]
    return f" with label {label}" if label else ""


def check_mapping_defaults(mapping):
    for name in mapping.defaults:
        if name in DEFAULT_KEYS or CUSTOM_FIELD.match(name) or name in mapping.custom_fields:
            continue
        raise ValidationError("mapping.defaults.{0}: not a Jira default (expected {1}, customfield_<n> or a name of custom_fields)".format(
            name, ", ".join(DEFAULT_KEYS)))


# -- request bodies ------------------------------------------------------------------------------


def create_body(client, values):
    fields = {"project": {"key": values["project"]}, "issuetype": {"name": values["issue_type"]}, "summary": values["summary"]}
    if values.get("description"):
        fields["description"] = client.rich_text(values["description"])
    if values.get("priority"):
        fields["priority"] = {"name": values["priority"]}
    if values.get("labels"):
        fields["labels"] = values["labels"]
    if values.get("components"):
        fields["components"] = [{"name": name} for name in values["components"]]
    for field, value in (values.get("custom") or {}).items():
        fields[field] = value
    return {"fields": fields}


def same_custom(current, wanted):
    have, want = field_value(current), field_value(wanted)
    if isinstance(have, str) and isinstance(want, str):
        return same_text(have, want)
    if isinstance(have, list) and isinstance(want, list):
        return sorted(map(str, have)) == sorted(map(str, want))
    return have == want or (have in (None, "") and want in (None, ""))


def edit_changes(client, issue, wanted, repeat_update):
    """(edit body or None, field deltas, comment texts) to bring ``issue`` to ``wanted``."""
    fields, update, deltas, comments = {}, {}, {}, []
    touch_text = repeat_update != "none"
    if touch_text and "summary" in wanted and (issue.fields.get("summary") or "").strip() != wanted["summary"].strip():
        fields["summary"] = wanted["summary"]
        deltas["summary"] = {"before": issue.fields.get("summary"), "after": wanted["summary"]}
    if touch_text and "description" in wanted:
        rendered = client.rich_text(wanted["description"])
        current = issue.fields.get("description")
        if not same_text(current, rendered):
            if repeat_update == "fields":
                fields["description"] = rendered
                deltas["description"] = {"before": plain(current), "after": plain(rendered)}
            else:
                bodies = issue.comment_bodies()
                if not (bodies and same_text(bodies[-1], rendered)):
                    comments.append(wanted["description"])
    if "priority" in wanted and str(_name(issue.fields.get("priority")) or "").casefold() != wanted["priority"].casefold():
        fields["priority"] = {"name": wanted["priority"]}
        deltas["priority"] = {"before": _name(issue.fields.get("priority")), "after": wanted["priority"]}
    missing = [label for label in wanted.get("labels") or [] if label not in issue.labels]
    if missing:
        update["labels"] = [{"add": label} for label in missing]
        deltas["labels"] = {"before": issue.labels, "after": issue.labels + missing}
    have = [str(name).casefold() for name in issue.components]
    add = [name for name in wanted.get("components") or [] if name.casefold() not in have]
    if add:
        fields["components"] = [{"name": name} for name in issue.components + add]
        deltas["components"] = {"before": issue.components, "after": issue.components + add}
    for field, value in (wanted.get("custom") or {}).items():
        if not same_custom(issue.fields.get(field), value):
            fields[field] = value
            deltas[field] = {"before": field_value(issue.fields.get(field)), "after": field_value(value)}
    posted = any(same_text(body, client.rich_text(wanted["comment"])) for body in issue.comment_bodies()) if "comment" in wanted else True
    if not posted and wanted["comment"] not in comments:
        comments.append(wanted["comment"])
    body = {}
    if fields:
        body["fields"] = fields
    if update:
        body["update"] = update
    return (body or None), deltas, comments


def missing_links(issue, params):
    have = {(str(kind).casefold(), direction, str(other).upper()) for kind, direction, other in (issue.links() if issue is not None else [])}
    missing = []
    for link in params.get("links") or []:
        kind, other, direction = link.get("type") or "Relates", link["issue"].strip(), link.get("direction") or "outward"
        if (kind.casefold(), direction, other.upper()) not in have and (kind, direction, other) not in missing:
            missing.append((kind, direction, other))
    return missing


# -- the run -------------------------------------------------------------------------------------


class Run:
    """One task: the issue before, the writes (sent or, in check mode, predicted), the issue after."""

    def __init__(self, module, client, ledger):
        self.module = module
        self.params = module.params
        check_params(self.params)
        self.client = client
        self.check = module.check_mode
        self.mapping = load_mapping(self.params.get("mapping"), PLATFORM)
        check_mapping_defaults(self.mapping)
        for secret in self.mapping.secrets:
            module.no_log_values.add(secret)
        self.label = correlation_label(self.params)
        self.index = CreationIndex(self.params["cache_dir"], client.base_url) if self.label else None
        self.auditor = module_auditor(ledger, self.params, platform=PLATFORM, platform_label="Jira", what="jira issue", ref_key="key",
                                      id_key="id")
        self.wanted = desired(self.params, self.mapping)
        self.fields = read_fields(self.wanted, bool(self.wanted.get("comment")) or self.params["repeat_update"] == "comment")
        self.governed = GovernedWrite(self.auditor, find=self.find_by_label, ref=lambda issue: issue["key"], hint=lambda issue: UNFINDABLE_HINT,
                                      warn=module.warn, what="issue", found_in_reply=lambda reply, label: bool(reply.get("key") and reply.get("id")))
        self.payload = {}
        self.action = "unchanged"
        self.before = None  # Issue
        self.after = None  # view dict
        self.created = False
        self.preflighted = False

    # -- helpers

    def find_by_label(self, label):
        """The governed write's lookup after a create whose reply was lost (the id is unknown, so it cannot be reconciled):
        on Cloud the search may lag behind that create, so it is asked again after the adapter's settle delays (1, 2, 4, 8,
        15 seconds) before the create is sent once more."""
        delays = SETTLE_DELAYS if self.client.cloud else ()
        for delay in (0,) + tuple(delays):
            time.sleep(delay)
            raw = search_label(self.client, label, self.index, self.fields)
            if raw is not None:
                return raw
        return None

    def preflight(self):
        if not self.preflighted:
            self.auditor.preflight()
            self.preflighted = True

    def append(self, action, issue_key, fields=None, meta=None, issue_id=None):
        entry = audit_entry(action, REF_TYPE, None, self.masked(fields or {}), dict(meta or {}, id=issue_id))
        self.auditor.append(entry, issue_key)

    def masked(self, deltas):
        def mask(value):
            if isinstance(value, str):
                for secret in self.mapping.secrets:
                    if secret:
                        value = value.replace(secret, MASK)
            elif isinstance(value, list):
                value = [mask(item) for item in value]
            return value
        return {name: {side: mask(value) for side, value in delta.items()} for name, delta in deltas.items()}

    # -- steps

    def run(self):
        state = self.params["state"]
        lock = self.index.lock(self.label) if (self.index is not None and state == "present" and not self.check) else contextlib.nullcontext()
        with lock:
            self.before = find_issue(self.client, self.params, self.label, self.index, self.fields)
            backfilled = self.backfill()
            if state == "absent":
                self.delete()
            elif state == "resolved":
                self.resolve()
            else:
                self.present()
        return self.result(backfilled)

    def backfill(self):
        issue = self.before
        if issue is None or not self.label or self.params.get("key"):
            return False
        creation = audit_entry("create", REF_TYPE, None, None, {"correlation_label": self.label, "id": issue.id})
        return self.governed.backfill(issue.raw, creation, check_mode=self.check)

    def present(self):
        issue = self.before
        decision = None
        if issue is not None and self.label and not self.params.get("key"):
            window = parse_window(self.params.get("reopen_window"))
            decision = refire_action(issue.refire_record(), now=_time.utc_now(), reopen_window=window,
                                     never_reopen=self.params.get("wont_fix_resolution") or ())
        if issue is None or decision == CREATE:
            self.create()
            return
        if decision == SUPPRESS:
            self.action = "suppressed"
            self.after = issue.view(self.custom_ids())
            return
        if "comment" in self.wanted or self.params["repeat_update"] == "comment":
            load_comments(self.client, issue)
        view = issue.view(self.custom_ids())
        if decision == REOPEN:
            comment = self.wanted.pop("comment", None)
            if comment and any(same_text(body, self.client.rich_text(comment)) for body in issue.comment_bodies()):
                comment = None
            view = self.move(issue, view, to_status=self.params["reopen_status"], comment=comment, action="reopened")
        elif self.params.get("status") or self.params.get("transition"):
            view = self.move(issue, view, to_status=self.params.get("status"), name=self.params.get("transition"), comment=None, action="updated")
        view = self.edit(issue, view)
        view = self.link(issue, view)
        self.after = view

    def create(self):
        values = creation_values(self.params, self.mapping, self.wanted, self.label)
        body = create_body(self.client, values)
        self.payload["create"] = body
        self.action, self.created = "created", True
        predicted = {"key": None, "id": None, "summary": values["summary"], "description": values.get("description"), "status": None,
                     "status_category": None, "resolution": None, "resolutiondate": None, "priority": values.get("priority"),
                     "labels": values.get("labels") or [], "components": values.get("components") or [], "issue_type": values["issue_type"],
                     "project": values["project"], "links": []}
        for field, value in (values.get("custom") or {}).items():
            predicted[field] = field_value(value)
        links = missing_links(None, self.params)
        if links:
            self.payload["links"] = [self.link_body(kind, direction, "<new>", other) for kind, direction, other in links]
        if self.check:
            self.governed.dry_run(key=self.label)
            predicted["links"] = ["{0} {1} {2}".format(*link) for link in links]
            self.after = predicted
            return
        self.preflight()
        deltas = {name: {"before": None, "after": value} for name, value in predicted.items()
                  if name not in ("key", "id", "status", "status_category", "resolution", "resolutiondate", "links") and value not in (None, [])}

        def send():
            reply = self.client.create_issue(body["fields"])
            if self.index is not None and reply.get("id"):
                self.index.remember(self.label, str(reply["id"]))
            return reply

        def creation(reply):
            meta = {"id": str(reply.get("id"))}
            if self.label:
                meta["correlation_label"] = self.label
            return audit_entry("create", REF_TYPE, None, self.masked(deltas), meta)

        reply = self.governed.create(send, key=self.label, creation=creation)
        if self.index is not None and reply.get("id") and str(reply["id"]) not in self.index.ids(self.label):
            self.index.remember(self.label, str(reply["id"]))  # found again after a lost reply
        if isinstance(reply, dict) and reply.get("fields"):  # found again after a lost reply: the stored issue
            issue = Issue(reply)
            self.after = issue.view(self.custom_ids())
        else:
            issue = Issue({"id": reply.get("id"), "key": reply.get("key"), "fields": {}})
            predicted.update(key=issue.key, id=issue.id)
            self.after = predicted
        if self.params.get("status") or self.params.get("transition"):
            current = Issue(self.client.get_issue(issue.key, fields=["status", "issuetype", "project"]) or {})
            self.after.update(status=current.status, status_category=current.category)
            merged = Issue({"key": issue.key, "id": issue.id, "fields": dict(current.fields)})
            self.after = self.move(merged, self.after, to_status=self.params.get("status"), name=self.params.get("transition"), comment=None,
                                   action="created")
        created = Issue({"key": issue.key, "id": issue.id, "fields": {}})
        self.after = self.link(created, self.after, known_new=True)

    def move(self, issue, view, to_status=None, name=None, comment=None, action="updated", resolution=None):
        """Transition ``issue`` unless it is in the target status already; returns the view after."""
        if to_status and str(issue.status or "").casefold() == to_status.casefold():
            return view
        if name and not to_status and str(issue.status or "").casefold() == name.casefold():
            return view  # a transition named after its target status, already there: no GET
        cache_key = (issue.project, issue.issue_type, issue.status)
        transition = self.client.find_transition(issue.key, name=name, to_status=None if name else to_status, cache_key=cache_key,
                                                 current_status=issue.status)
        target = transition.get("to") or {}
        if name and str(target.get("name") or "").casefold() == str(issue.status or "").casefold():
            return view
        screen = transition.get("fields")
        if resolution and isinstance(screen, dict) and "resolution" not in screen:
            raise ValidationError("jira: issue {0}: transition {1!r} ({2}) to {3!r} has no resolution on its screen, so Jira refuses "
                                  "resolution={4!r}; leave resolution unset (the workflow sets its own) or resolve through a transition "
                                  "whose screen has it".format(issue.key, transition.get("name"), transition.get("id"), target.get("name"),
                                                               resolution), key=issue.key, transition=transition.get("name"))
        body = {"transition": {"id": str(transition["id"])}}
        if resolution:
            body["fields"] = {"resolution": {"name": resolution}}
        if comment:
            body["update"] = {"comment": [{"add": {"body": self.client.rich_text(comment)}}]}
        self.payload["transition"] = body
        category = (target.get("statusCategory") or {}).get("key")
        after = dict(view, status=target.get("name"), status_category=category)
        if category == "done":
            after["resolution"] = resolution or (issue.resolution if issue.done else None)
        else:
            after.update(resolution=None, resolutiondate=None)
        self.action = action if self.action in ("unchanged", "updated") else self.action
        if self.check:
            return after
        self.preflight()
        self.client.transition(issue.key, str(transition["id"]), fields=body.get("fields"), update=body.get("update"))
        deltas = {"status": {"before": issue.status, "after": target.get("name")}}
        if category == "done" or issue.done:
            deltas["resolution"] = {"before": issue.resolution, "after": after.get("resolution")}
        audit_action = "resolve" if category == "done" else "update"
        meta = {"transition": transition.get("name"), "operation": "reopen"} if action == "reopened" else {"transition": transition.get("name")}
        self.append(audit_action, issue.key, deltas, meta, issue.id)
        if comment:
            self.append("notify", issue.key, {"comment": {"before": None, "after": comment}}, None, issue.id)
        return after

    def edit(self, issue, view):
        body, deltas, comments = edit_changes(self.client, issue, self.wanted, self.params["repeat_update"])
        after = dict(view)
        for name, delta in deltas.items():
            after[name] = delta["after"]
        if body:
            self.payload["edit"] = body
            self.action = "updated" if self.action == "unchanged" else self.action
        if comments:
            self.payload["comments"] = [{"body": self.client.rich_text(text)} for text in comments]
            self.action = "updated" if self.action == "unchanged" else self.action
        if self.check or not (body or comments):
            return after
        self.preflight()
        if body:
            self.client.edit_issue(issue.key, fields=body.get("fields"), update=body.get("update"))
            self.append("update", issue.key, deltas, None, issue.id)
        for text in comments:
            self.client.add_comment(issue.key, text)
            self.append("notify", issue.key, {"comment": {"before": None, "after": text}}, None, issue.id)
        return after

    def link_body(self, kind, direction, this, other):
        inward, outward = (this, other) if direction == "outward" else (other, this)
        return {"type": {"name": kind}, "inwardIssue": {"key": inward}, "outwardIssue": {"key": outward}}

    def link(self, issue, view, known_new=False):
        links = missing_links(None if known_new else issue, self.params)
        if not links:
            return view
        self.payload["links"] = [self.link_body(kind, direction, issue.key or "<new>", other) for kind, direction, other in links]
        self.action = "updated" if self.action == "unchanged" else self.action
        after = dict(view, links=list(view.get("links") or []) + ["{0} {1} {2}".format(*link) for link in links])
        if self.check:
            return after
        self.preflight()
        for kind, direction, other in links:
            inward, outward = (issue.key, other) if direction == "outward" else (other, issue.key)
            self.client.link_issues(kind, inward, outward)
            self.append("update", issue.key, {"links": {"before": None, "after": f"{kind} {direction} {other}"}}, None, issue.id)
        return after

    def resolve(self):
        issue = self.before
        if issue is None:
            return
        view = issue.view(self.custom_ids())
        if issue.done:
            self.after = view
            return
        comment = self.wanted.get("comment")
        if comment:
            load_comments(self.client, issue)
            if any(same_text(body, self.client.rich_text(comment)) for body in issue.comment_bodies()):
                comment = None
        name = self.params.get("transition")
        self.after = self.move(issue, view, to_status=None if name else self.params["resolve_status"], name=name, comment=comment,
                               action="resolved", resolution=self.params.get("resolution"))

    def delete(self):
        issue = self.before
        if issue is None:
            return
        self.action = "deleted"
        self.after = None
        if self.check:
            return
        self.preflight()
        self.client.delete_issue(issue.key)
        self.append("close", issue.key, {"status": {"before": issue.status, "after": "deleted"}}, {"operation": "delete"}, issue.id)

    # -- result

    def custom_ids(self):
        return sorted(self.wanted.get("custom") or {})

    def result(self, backfilled):
        after = self.after
        before = self.before.view(self.custom_ids()) if self.before is not None else None
        changed = self.action not in ("unchanged", "suppressed") or backfilled
        key = (after or {}).get("key")
        compared = set(self.diff_fields())
        return dict(
            changed=bool(changed),
            action=self.action,
            key=key,
            id=(after or {}).get("id"),
            link=self.client.browse_url(key) if key else None,
            status=(after or {}).get("status"),
            resolution=(after or {}).get("resolution"),
            issue=after,
            correlation_label=self.label,
            created=self.created,
            found=self.before is not None,
            payload=self.payload,
            requests=self.client.request_count,
            audit=self.auditor.records,
            diff=dict(before={k: v for k, v in (before or {}).items() if k in compared},
                      after={k: v for k, v in (after or {}).items() if k in compared}),
        )

    def diff_fields(self):
        return ("key", "summary", "description", "status", "resolution", "priority", "labels", "components", "links") + tuple(self.custom_ids())


def run(module, client, ledger):
    return Run(module, client, ledger).run()


def argument_spec():
    spec = dict(JIRA_CONNECTION_ARGSPEC)
    spec.update(LEDGER_ARGSPEC)
    spec.update(
        state=dict(type="str", default="present", choices=["present", "resolved", "absent"]),
        project=dict(type="str"),
        issue_type=dict(type="str"),
        key=dict(type="str", no_log=False),
        correlation_key=dict(type="str", no_log=False),
        correlation_label=dict(type="str"),
        label_prefix=dict(type="str", default="labops-"),
        summary=dict(type="str"),
        description=dict(type="str"),
        priority=dict(type="str"),
        severity=dict(type="str"),
        labels=dict(type="list", elements="str"),
        components=dict(type="list", elements="str"),
        custom_fields=dict(type="dict"),
        mapping=dict(type="raw"),
        alert=dict(type="dict"),
        cmdb=dict(type="dict"),
        comment=dict(type="str"),
        status=dict(type="str"),
        transition=dict(type="str"),
        resolution=dict(type="str"),
        resolve_status=dict(type="str", default="Done"),
        reopen_window=dict(type="raw"),
        wont_fix_resolution=dict(type="list", elements="str", default=[]),
        reopen_status=dict(type="str", default="To Do"),
        repeat_update=dict(type="str", default="fields", choices=["fields", "comment", "none"]),
        links=dict(type="list", elements="dict", options=dict(
            type=dict(type="str", default="Relates"),
            issue=dict(type="str", required=True),
            direction=dict(type="str", default="outward", choices=["inward", "outward"]),
        )),
    )
    return spec


MUTUALLY_EXCLUSIVE = [["key", "correlation_key", "correlation_label"], ["priority", "severity"], ["status", "transition"]] + \
    JIRA_CONNECTION_MUTUALLY_EXCLUSIVE


def main(module_class=AnsibleModule):
    """Run the module; the action plugin passes a controller-side module_class (plugin_utils/_controller_module.py)."""
    module = module_class(argument_spec=argument_spec(), supports_check_mode=True, mutually_exclusive=MUTUALLY_EXCLUSIVE)
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
    finally:
        if client is not None:
            client.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
