#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: otobo_ticket
short_description: Manage OTOBO tickets (create, update, add articles, close) with an audit trail
version_added: 0.1.0
description:
  - Creates, updates and closes tickets on OTOBO (or Znuny) through the GenericTicketConnectorREST web service.
  - With O(correlation_key) the module first looks for the ticket carrying the key (title marker C([ck:<key>]) and,
    when O(correlation_field) is set, a dynamic field) and only creates a ticket when none exists, so repeated
    alert notifications update one ticket instead of creating duplicates.
  - Only the options you set are compared; unset options leave the ticket alone.
  - Every change (create, field update, article, close) is appended to the audit ledger. The ledger is checked
    before OTOBO is changed, and the task fails if it cannot be written.
  - A create whose reply was lost (timeout, 5xx after sending) is never blindly re-sent; the module looks the
    correlation key up first and re-sends once only when no ticket was created. The creation is audited once
    (ledger record key C(otobo:create:incident:<ticket number>)), the same governed write as M(labops.itsm.ims_sop).
  - A ticket found by O(correlation_key) whose creation the ledger lacks (an earlier run lost its reply or failed
    before its audit) gets its C(create) record now, marked C(meta.backfilled), and the task reports C(changed).
  - "After a create with O(correlation_key) the module checks that the ticket is found by that key, the way the next run
    looks for it; if not, the task fails with C(error_class=PermissionDenied): the agent can create tickets in the queue
    but lacks the C(ro) permission there, so every search answers nothing and each run would open a duplicate."
author:
  - labops.itsm developers (@labops)
extends_documentation_fragment:
  - labops.itsm.otobo
  - labops.itsm.ledger
  - labops.itsm.attributes
  - labops.itsm.attributes.ACTIONGROUP_OTOBO_LEDGER
attributes:
  check_mode:
    support: full
    details:
      - Returns the predicted ticket and the exact request body in RV(payload) without writing anything.
  diff_mode:
    support: full
seealso:
  - module: labops.itsm.otobo_ticket_info
options:
  state:
    description:
      - V(present) creates the ticket if it does not exist and updates the fields that differ.
      - V(closed) sets a closed state (O(ticket_state), default V(closed successful)); a ticket that does not exist
        is reported with a warning and RV(found=false), nothing is changed.
    type: str
    choices: [present, closed]
    default: present
  ticket_id:
    description:
      - Numeric id of an existing ticket.
      - Mutually exclusive with O(ticket_number).
    type: int
  ticket_number:
    description:
      - Ticket number of an existing ticket, for example V(2025061110000421).
    type: str
  correlation_key:
    description:
      - Correlation key of the alert episode (24 lowercase hex characters from the C(labops.itsm.alertmanager) event
        source or the C(labops.itsm.correlation_key) filter; 8 to 64 accepted).
      - Stored as the title suffix C( [ck:<key>]) and, with O(correlation_field), in that dynamic field.
      - Without O(correlation_key), O(ticket_id) or O(ticket_number) the module cannot find an existing ticket,
        so every run with O(state=present) creates a new one (not idempotent).
    type: str
  title:
    description:
      - Ticket title (without the correlation marker; the module appends it). Required to create a ticket.
    type: str
  queue:
    description:
      - Queue name, exactly as configured (OTOBO rejects names in the wrong case). Required to create a ticket.
    type: str
  priority:
    description:
      - Priority name, for example V(3 normal). Required to create a ticket.
    type: str
  ticket_state:
    description:
      - OTOBO state name.
      - With O(state=present) defaults to V(new) when creating and is left alone otherwise.
      - With O(state=closed) it must be a closed state; defaults to V(closed successful), and a ticket that
        is already in any closed state is then left alone.
    type: str
  type:
    description:
      - Ticket type, for example V(Unclassified).
    type: str
  customer_user:
    description:
      - Customer user login (or accepted e-mail address). Required to create a ticket.
    type: str
  customer_id:
    description:
      - Customer id of the ticket.
    type: str
  owner:
    description:
      - Agent login of the owner. Setting it on create also locks the ticket (OTOBO behaviour).
    type: str
  dynamic_fields:
    description:
      - Ticket dynamic field values, name to value. Values are compared as given.
    type: dict
  article:
    description:
      - Article (note) to add. Required to create a ticket (OTOBO needs a first article).
    type: dict
    suboptions:
      subject:
        description: Subject of the article.
        type: str
        required: true
      body:
        description: Body of the article.
        type: str
        required: true
      content_type:
        description: MIME type and charset of the body.
        type: str
        default: text/plain; charset=utf8
      communication_channel:
        description: Channel of the article.
        type: str
        choices: [Internal, Phone, Email]
        default: Internal
      sender_type:
        description: Sender type of the article.
        type: str
        choices: [system, agent, customer]
        default: system
      is_visible_for_customer:
        description: Whether the customer can see the article.
        type: bool
        default: false
      dedupe:
        description:
          - Do not add the article when the ticket already has one with the same subject and body.
          - With V(false) the article is added on every run (use C(changed_when) accordingly).
        type: bool
        default: true
notes:
  - "Requests per task (measured against the OTOBO simulator, stock GET search route): a create costs 4 (TicketSearch,
    TicketCreate, then TicketSearch and TicketGet: the new ticket is read back the way the next run looks it up), a run that
    changes nothing 2 (TicketSearch, TicketGet), an update 4 (TicketSearch, TicketGet, TicketUpdate, TicketGet). The first
    run of a controller user adds 1 (SessionCreate); later runs reuse the session kept in O(session_cache)."
  - Runs on the controller (use C(delegate_to) V(localhost)) and needs the Python C(requests) library.
  - OTOBO cannot search dynamic fields on its stock GET search route (the criterion is silently dropped); set
    O(search_route) to a POST TicketSearch route to search by O(correlation_field). Every search hit is verified
    by reading the ticket.
requirements:
  - requests
"""

EXAMPLES = r"""
- name: Open (or find) the incident for an alert episode
  labops.itsm.otobo_ticket:
    url: https://otobo.lab.example
    username: alertbot
    password: "{{ otobo_password }}"
    correlation_key: "{{ ansible_eda.event.correlation_key }}"
    title: "[FIRING] HostDown pve-node1"
    queue: Infrastructure
    priority: 5 very high
    customer_user: monitoring
    article:
      subject: HostDown pve-node1
      body: "instance=pve-node1 severity=critical"
  delegate_to: localhost

- name: Raise the priority of a ticket
  labops.itsm.otobo_ticket:
    ticket_number: "2025061110000421"
    priority: 4 high
  delegate_to: localhost

- name: Add a communication update (not repeated when already present)
  labops.itsm.otobo_ticket:
    correlation_key: 3f9c2a7b1d0e4c55aa00bb11
    article:
      subject: Update
      body: Migration of the VMs to pve-node2 started.
  delegate_to: localhost

- name: Close the incident when the alert resolves
  labops.itsm.otobo_ticket:
    state: closed
    correlation_key: 3f9c2a7b1d0e4c55aa00bb11
    article:
      subject: "[RESOLVED] HostDown pve-node1"
      body: resolved at 10:42Z
  delegate_to: localhost

- name: Preview the request without writing (dry run)
  labops.itsm.otobo_ticket:
    correlation_key: 3f9c2a7b1d0e4c55aa00bb11
    title: "[FIRING] DiskFull nas1"
    queue: Storage
    priority: 3 normal
    customer_user: monitoring
    article:
      subject: DiskFull nas1
      body: usage 97%
  check_mode: true
  register: preview
  delegate_to: localhost
"""

RETURN = r"""
ticket:
  description: The ticket after the task (in check mode the prediction). None when no ticket was found to close.
  returned: always
  type: dict
  contains:
    ticket_id:
      description: Numeric id (None for a ticket that would be created in check mode).
      type: int
    ticket_number:
      description: Ticket number.
      type: str
    title:
      description: Title including the correlation marker.
      type: str
    state:
      description: State name.
      type: str
    state_type:
      description: State type (new, open, closed, pending reminder, pending auto ...).
      type: str
    priority:
      description: Priority name.
      type: str
    queue:
      description: Queue name.
      type: str
    type:
      description: Ticket type.
      type: str
    owner:
      description: Owner login.
      type: str
    responsible:
      description: Responsible agent login.
      type: str
    lock:
      description: Lock state.
      type: str
    customer_user:
      description: Customer user login.
      type: str
    customer_id:
      description: Customer id.
      type: str
    created:
      description: Creation time as reported by OTOBO.
      type: str
    changed:
      description: Last change time as reported by OTOBO.
      type: str
    dynamic_fields:
      description: Dynamic field values, name to value.
      type: dict
    articles:
      description: Articles (only read when O(article) is set).
      type: list
      elements: dict
  sample:
    ticket_id: 42
    ticket_number: "2025061110000421"
    title: "[FIRING] HostDown pve-node1 [ck:3f9c2a7b1d0e4c55aa00bb11]"
    state: new
    state_type: new
    priority: 5 very high
    queue: Infrastructure
ticket_id:
  description: Numeric id of the ticket.
  returned: when a ticket exists (not for a predicted create)
  type: int
  sample: 42
ticket_number:
  description: Ticket number.
  returned: when a ticket exists (not for a predicted create)
  type: str
  sample: "2025061110000421"
ticket_url:
  description: Agent link to the ticket.
  returned: when a ticket exists (not for a predicted create)
  type: str
  sample: https://otobo.lab.example/otobo/index.pl?Action=AgentTicketZoom;TicketID=42
created:
  description: Whether the ticket was (or in check mode would be) created.
  returned: always
  type: bool
found:
  description: Whether an existing ticket was found.
  returned: always
  type: bool
payload:
  description:
    - JSON body of the write request that was (in check mode would be) sent, credentials removed. None without a write.
  returned: always
  type: dict
  sample: {"Ticket": {"Title": "[FIRING] HostDown pve-node1 [ck:3f9c2a7b1d0e4c55aa00bb11]", "Queue": "Raw"}}
diff:
  description: Ticket before and after (server-managed timestamps left out).
  returned: always
  type: dict
  contains:
    before:
      description: Ticket before the task (empty for a create).
      type: dict
    after:
      description: Ticket after the task.
      type: dict
audit:
  description: Audit records written to the ledger (none in check mode).
  returned: always
  type: list
  elements: dict
  sample:
    - action: create
      ref_type: incident
      ref_id: "2025061110000421"
      platform: otobo
"""

import copy

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.labops.itsm.plugins.module_utils._errors import (
    AmbiguousWriteError,
    LabopsError,
    NotFoundError,
    ValidationError,
)
from ansible_collections.labops.itsm.plugins.module_utils._governed import GovernedWrite, audit_entry, module_auditor
from ansible_collections.labops.itsm.plugins.module_utils._http import HAS_REQUESTS, REQUESTS_IMPORT_ERROR
from ansible_collections.labops.itsm.plugins.module_utils._ledger import LEDGER_ARGSPEC, ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._otobo import (
    OTOBO_CONNECTION_ARGSPEC,
    OTOBO_CONNECTION_MUTUALLY_EXCLUSIVE,
    OTOBO_CONNECTION_REQUIRED_ONE_OF,
    build_ticket_payload,
    client_from_params,
    is_closed_state,
    state_type,
    title_with_marker,
    validate_correlation_key,
)
from ansible_collections.labops.itsm.plugins.module_utils._otobo_ims import missing_read_permission_hint

PLATFORM = "otobo"
REF_TYPE = "incident"
DEFAULT_CLOSED_STATE = "closed successful"
DEFAULT_NEW_STATE = "new"
# module option -> record key (identical names except ticket_state)
FIELD_OPTIONS = ("title", "queue", "priority", "type", "customer_user", "customer_id", "owner")
CREATE_REQUIRED = ("title", "queue", "priority", "customer_user", "article")
DIFF_IGNORED = ("changed", "articles")

ARTICLE_SPEC = dict(
    subject=dict(type="str", required=True),
    body=dict(type="str", required=True),
    content_type=dict(type="str", default="text/plain; charset=utf8"),
    communication_channel=dict(type="str", default="Internal", choices=["Internal", "Phone", "Email"]),
    sender_type=dict(type="str", default="system", choices=["system", "agent", "customer"]),
    is_visible_for_customer=dict(type="bool", default=False),
    dedupe=dict(type="bool", default=True),
)


# -- desired state (plain values) ------------------------------------------------------------


def check_params(params):
    """Cross-field rules that argument_spec cannot express."""
    if params.get("correlation_key") is not None:
        validate_correlation_key(params["correlation_key"])
    closing_state = params.get("ticket_state")
    if params["state"] == "closed" and closing_state and not is_closed_state(closing_state):
        raise ValidationError(f"ticket_state {closing_state!r} is not a closed state (state=closed needs e.g. 'closed successful')")
    if params["state"] == "closed" and not (params.get("ticket_id") or params.get("ticket_number") or params.get("correlation_key")):
        raise ValidationError("state=closed needs one of ticket_id, ticket_number or correlation_key")


def desired_fields(params, current=None):
    """Record key -> wanted value, only for options the user set."""
    wanted = {}
    for name in FIELD_OPTIONS:
        if params.get(name) is not None:
            wanted[name] = params[name]
    key = params.get("correlation_key")
    if "title" in wanted:
        wanted["title"] = title_with_marker(wanted["title"], key)
    elif key and current is not None and current.get("title") and not _carries_marker(current["title"], key):
        wanted["title"] = title_with_marker(current["title"], key)
    state = desired_state(params, current)
    if state is not None:
        wanted["state"] = state
    return wanted


def _carries_marker(title, key):
    return f"[ck:{key}]" in title


def desired_state(params, current):
    requested = params.get("ticket_state")
    if params["state"] == "closed":
        if requested:
            return requested
        if current is not None and current.get("state_type") == "closed":
            return None
        return DEFAULT_CLOSED_STATE
    if requested:
        return requested
    return DEFAULT_NEW_STATE if current is None else None


def desired_dynamic_fields(params):
    wanted = dict(params.get("dynamic_fields") or {})
    if params.get("correlation_key") and params.get("correlation_field"):
        wanted[params["correlation_field"]] = params["correlation_key"]
    return wanted


def desired_article(params):
    """The article values to send (without the module-only ``dedupe`` flag), or None."""
    article = params.get("article")
    if not article:
        return None
    return {k: v for k, v in article.items() if k != "dedupe" and v is not None}


# -- comparison ------------------------------------------------------------------------------


def _same(current, wanted):
    if current is None or wanted is None:
        return current == wanted
    if isinstance(wanted, (list, tuple)) or isinstance(current, (list, tuple)):
        return [str(v) for v in _as_list(current)] == [str(v) for v in _as_list(wanted)]
    if isinstance(wanted, str) and isinstance(current, str):
        return current.strip() == wanted.strip()
    return str(current) == str(wanted)


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def field_changes(current, wanted):
    """name -> {before, after} for the wanted fields that differ."""
    changes = {}
    for name, value in wanted.items():
        before = current.get(name)
        if name == "state" and before is not None and before.lower() == str(value).lower():
            continue
        if not _same(before, value):
            changes[name] = {"before": before, "after": value}
    return changes


def dynamic_field_changes(current, wanted):
    existing = current.get("dynamic_fields") or {}
    return {
        name: {"before": existing.get(name), "after": value}
        for name, value in wanted.items()
        if not _same(existing.get(name), value)
    }


def article_needed(current, article, dedupe):
    if not article:
        return False
    if not dedupe:
        return True
    for existing in current.get("articles") or []:
        if _same(existing.get("subject"), article["subject"]) and _same(existing.get("body"), article["body"]):
            return False
    return True


def predict(current, changes, df_changes, article):
    """The record after applying the changes (check mode and diff)."""
    record = copy.deepcopy(current) if current else {
        "ticket_id": None, "ticket_number": None, "dynamic_fields": {}, "articles": [], "state_type": None,
    }
    for name, delta in changes.items():
        record[name] = delta["after"]
        if name == "state":
            record["state_type"] = state_type(delta["after"]) or record.get("state_type")
    for name, delta in df_changes.items():
        record.setdefault("dynamic_fields", {})[name] = delta["after"]
    if article:
        predicted = dict(article_id=None, article_number=None, **{k: article.get(k) for k in (
            "subject", "body", "content_type", "sender_type", "is_visible_for_customer")})
        record.setdefault("articles", []).append(predicted)
    return record


def diff_view(record):
    if not record:
        return {}
    view = {k: v for k, v in record.items() if k not in DIFF_IGNORED}
    view["articles"] = [a.get("subject") for a in record.get("articles") or []]
    return view


# -- lookups ---------------------------------------------------------------------------------


def find_ticket(client, params, articles):
    """The ticket named by ticket_id, ticket_number or correlation_key; None when not found."""
    if params.get("ticket_id") is not None:
        return client.get_ticket(params["ticket_id"], articles=articles)
    if params.get("ticket_number"):
        return client.find_ticket_by_number(params["ticket_number"], articles=articles)
    if params.get("correlation_key"):
        return client.find_by_correlation_key(params["correlation_key"], articles=articles)
    return None


# -- audit -----------------------------------------------------------------------------------


def make_auditor(ledger, params):
    """Preflight before the platform write, append after it; failures after the write say UNAUDITED."""
    return module_auditor(ledger, params, platform=PLATFORM, platform_label="OTOBO", what="otobo ticket", ref_key="ticket_number",
                          id_key="ticket_id", id_label="id")


def ticket_entry(action, record, fields=None, meta=None):
    """The audit entry of ``action`` on the OTOBO ticket ``record`` (its ticket_id goes to meta)."""
    return audit_entry(action, REF_TYPE, None, fields, dict(meta or {}, ticket_id=record.get("ticket_id")))


def make_governed(module, client, auditor):
    """The governed write over OTOBO tickets: looked up by correlation key the way find_ticket does it."""
    params = module.params
    return GovernedWrite(auditor, find=lambda key: client.find_by_correlation_key(key, articles=True),
                         ref=lambda record: record["ticket_number"],
                         hint=lambda record: missing_read_permission_hint((record or {}).get("queue") or params.get("queue"), client.username),
                         warn=module.warn, what="ticket")


def audit_update(auditor, record, changes, df_changes, article_id, article):
    """update (field deltas), notify (article), close (closing state change), in that order."""
    number = record["ticket_number"]
    closing = "state" in changes and is_closed_state(changes["state"]["after"])
    fields = {k: v for k, v in changes.items() if not (closing and k == "state")}
    fields.update(("dynamic_field." + k, v) for k, v in df_changes.items())
    if fields:
        auditor.append(ticket_entry("update", record, fields), number)
    if article:
        auditor.append(ticket_entry("notify", record, meta={"article_id": article_id, "subject": article.get("subject")}), number)
    if closing:
        auditor.append(ticket_entry("close", record, {"state": changes["state"]}), number)


def backfill_creation(module, governed, current):
    """A ticket found by its correlation key whose creation the ledger lacks gets that record now (marked back-filled).

    Returns True when a record was (in check mode: would be) written.
    """
    params = module.params
    if current is None or not params.get("correlation_key") or params.get("ticket_id") is not None or params.get("ticket_number"):
        return False
    return governed.backfill(current, ticket_entry("create", current, meta={"correlation_key": params["correlation_key"]}),
                             check_mode=module.check_mode)


# -- ensure steps ----------------------------------------------------------------------------


def ensure_created(module, client, governed):
    """Create the ticket (after the correlation lookup found nothing). Returns (changed, record, payload)."""
    params = module.params
    missing = [name for name in CREATE_REQUIRED if not params.get(name)]
    if missing:
        raise ValidationError("no existing ticket found; creating one needs: {0}".format(", ".join(missing)))
    ticket = desired_fields(params)
    dynamic_fields = desired_dynamic_fields(params)
    article = desired_article(params)
    payload = build_ticket_payload(ticket, article, dynamic_fields)
    changes = {k: {"before": None, "after": v} for k, v in ticket.items()}
    df_changes = {k: {"before": None, "after": v} for k, v in dynamic_fields.items()}
    if module.check_mode:
        governed.dry_run(key=params.get("correlation_key"))
        return True, predict(None, changes, df_changes, article), payload
    governed.auditor.preflight()
    fields = dict(changes, **{"dynamic_field." + k: v for k, v in df_changes.items()})

    def send():
        created = client.create_ticket(ticket, article, dynamic_fields)
        identity = {"ticket_id": created["ticket_id"], "ticket_number": created["ticket_number"], "queue": ticket.get("queue")}
        if params.get("correlation_key"):
            return identity  # the governed write reads the ticket back the way the next run finds it (by its key)
        return client.get_ticket(created["ticket_id"], articles=True) or identity

    record = governed.create(send, key=params.get("correlation_key"),
                             creation=lambda record: ticket_entry("create", record, fields, {"correlation_key": params.get("correlation_key")}))
    return True, record, payload


def plan_update(params, current):
    """(field changes, dynamic field changes, article or None) to bring ``current`` to the desired state."""
    changes = field_changes(current, desired_fields(params, current))
    df_changes = dynamic_field_changes(current, desired_dynamic_fields(params))
    article = desired_article(params)
    dedupe = (params.get("article") or {}).get("dedupe", True)
    if not article_needed(current, article, dedupe):
        article = None
    return changes, df_changes, article


def ensure_updated(module, client, auditor, current):
    """Update fields, add the article, change the state. Returns (changed, record, payload)."""
    changes, df_changes, article = plan_update(module.params, current)
    if not (changes or df_changes or article):
        return False, current, None
    payload = update_payload(changes, df_changes, article)
    if module.check_mode:
        return True, predict(current, changes, df_changes, article), payload
    auditor.preflight()
    article_id = update_once(module, client, current, changes, df_changes, article)
    record = client.get_ticket(current["ticket_id"], articles=bool(module.params.get("article")))
    audit_update(auditor, record or current, changes, df_changes, article_id, article)
    return True, record or predict(current, changes, df_changes, article), payload


def update_payload(changes, df_changes, article):
    ticket = {k: v["after"] for k, v in changes.items()}
    dynamic_fields = {k: v["after"] for k, v in df_changes.items()}
    return build_ticket_payload(ticket, article, dynamic_fields)


def update_once(module, client, current, changes, df_changes, article):
    """TicketUpdate; after an ambiguous failure re-read and re-send only what is still missing (once)."""
    ticket = {k: v["after"] for k, v in changes.items()}
    dynamic_fields = {k: v["after"] for k, v in df_changes.items()}
    try:
        return client.update_ticket(current["ticket_id"], ticket, article, dynamic_fields)["article_id"]
    except AmbiguousWriteError:
        reread = client.get_ticket(current["ticket_id"], articles=True)
        if reread is None:
            raise
        params = dict(module.params, article=dict(module.params.get("article") or {}, dedupe=True) if article else None)
        left, left_df, left_article = plan_update(params, reread)
        if not (left or left_df or left_article):
            module.warn("otobo: the TicketUpdate reply for ticket {0} was lost, but the change is in place".format(
                current["ticket_number"]))
            return None
        module.warn("otobo: the TicketUpdate reply for ticket {0} was lost; re-sent what was not applied".format(
            current["ticket_number"]))
        return client.update_ticket(current["ticket_id"], update_payload_values(left), left_article,
                                    update_payload_values(left_df))["article_id"]


def update_payload_values(changes):
    return {k: v["after"] for k, v in changes.items()}


def ensure_present(module, client, governed, current):
    if current is None:
        if module.params.get("ticket_id") is not None or module.params.get("ticket_number"):
            raise NotFoundError("otobo: ticket {0} does not exist (or is not visible to this agent)".format(
                module.params.get("ticket_id") or module.params.get("ticket_number")))
        return ensure_created(module, client, governed)
    return ensure_updated(module, client, governed.auditor, current)


def ensure_closed(module, client, governed, current):
    if current is None:
        module.warn(f"otobo: no ticket found for {identity_text(module.params)}; nothing to close")
        return False, None, None
    return ensure_updated(module, client, governed.auditor, current)


def identity_text(params):
    for name in ("ticket_id", "ticket_number", "correlation_key"):
        if params.get(name) is not None:
            return f"{name}={params[name]}"
    return "the given options"


def run(module, client, ledger):
    """Validate, find the ticket, dispatch on state; returns the module result."""
    params = module.params
    check_params(params)
    governed = make_governed(module, client, make_auditor(ledger, params))
    current = find_ticket(client, params, articles=bool(params.get("article")))
    backfilled = backfill_creation(module, governed, current)
    if params["state"] == "closed":
        changed, record, payload = ensure_closed(module, client, governed, current)
    else:
        changed, record, payload = ensure_present(module, client, governed, current)
    return build_result(client, changed or backfilled, current, record, payload, governed.auditor.records)


def build_result(client, changed, current, record, payload, audit_records):
    ticket_id = (record or {}).get("ticket_id")
    return dict(
        changed=changed,
        ticket=record,
        ticket_id=ticket_id,
        ticket_number=(record or {}).get("ticket_number"),
        ticket_url=client.ticket_url(ticket_id) if ticket_id else None,
        created=current is None and record is not None and changed,
        found=current is not None,
        payload=payload,
        diff=dict(before=diff_view(current), after=diff_view(record)),
        audit=audit_records,
    )


def argument_spec():
    spec = dict(OTOBO_CONNECTION_ARGSPEC)
    spec.update(LEDGER_ARGSPEC)
    spec.update(
        state=dict(type="str", default="present", choices=["present", "closed"]),
        ticket_id=dict(type="int"),
        ticket_number=dict(type="str"),
        correlation_key=dict(type="str", no_log=False),
        title=dict(type="str"),
        queue=dict(type="str"),
        priority=dict(type="str"),
        ticket_state=dict(type="str"),
        type=dict(type="str"),
        customer_user=dict(type="str"),
        customer_id=dict(type="str"),
        owner=dict(type="str"),
        dynamic_fields=dict(type="dict"),
        article=dict(type="dict", options=ARTICLE_SPEC),
    )
    return spec


def main(module_class=AnsibleModule):
    """Run the module; the action plugin passes a controller-side module_class (plugin_utils/_controller_module.py)."""
    module = module_class(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[("ticket_id", "ticket_number")] + OTOBO_CONNECTION_MUTUALLY_EXCLUSIVE,
        required_one_of=OTOBO_CONNECTION_REQUIRED_ONE_OF,
    )
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
    try:
        client = client_from_params(module.params, warn=module.warn, register_secret=module.no_log_values.add)
        ledger = ledger_from_params(module.params)
        result = run(module, client, ledger)
    except LabopsError as exc:
        module.fail_json(**exc.fail_kwargs())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
