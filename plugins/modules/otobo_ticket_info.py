#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: otobo_ticket_info
short_description: Read OTOBO tickets by id, number, correlation key or search criteria
version_added: 0.1.0
description:
  - Reads tickets from OTOBO (or Znuny) through the GenericTicketConnectorREST web service.
  - Looks a ticket up by O(ticket_id), O(ticket_number) or O(correlation_key), or searches by O(queue),
    O(states) and O(title).
  - Tickets found by correlation key are verified by reading them (title marker C([ck:<key>]) or the
    O(correlation_field) value).
author:
  - labops.itsm developers (@labops)
extends_documentation_fragment:
  - labops.itsm.otobo
  - labops.itsm.attributes
  - labops.itsm.attributes.INFO_MODULE
  - labops.itsm.attributes.ACTIONGROUP_OTOBO
seealso:
  - module: labops.itsm.otobo_ticket
options:
  ticket_id:
    description:
      - Numeric id of the ticket.
    type: int
  ticket_number:
    description:
      - Ticket number.
    type: str
  correlation_key:
    description:
      - Correlation key of an alert episode (lowercase hex).
    type: str
  open_only:
    description:
      - With O(correlation_key), only consider tickets in an open state type (new, open, pending).
    type: bool
    default: false
  queue:
    description:
      - Search tickets in these queues.
    type: list
    elements: str
  states:
    description:
      - Search tickets in these state names (for example V(new), V(open)).
    type: list
    elements: str
  title:
    description:
      - Search expression for the title (C(*) is a wildcard; case-insensitive).
    type: str
  limit:
    description:
      - Maximum number of tickets returned by a search.
    type: int
    default: 50
  articles:
    description:
      - Include the articles of each ticket.
    type: bool
    default: false
  history:
    description:
      - Include the ticket history (one extra request per ticket).
    type: bool
    default: false
notes:
  - Without any lookup or search option the newest O(limit) tickets visible to the agent are returned.
  - "Requests per task (measured against the OTOBO simulator): a lookup by O(correlation_key) costs 2 requests
    (TicketSearch and TicketGet), by O(ticket_id) 1 (TicketGet), by O(ticket_number) 2; a search costs 1 TicketSearch
    plus 1 TicketGet per 25 tickets; O(history) adds 1 per ticket. The first run of a controller user adds 1
    (SessionCreate); later runs reuse the session from O(session_cache), so repeated runs do not grow OTOBO's
    session table."
requirements:
  - requests
"""

EXAMPLES = r"""
- name: Read the ticket of an alert episode
  labops.itsm.otobo_ticket_info:
    url: https://otobo.lab.example
    username: alertbot
    password: "{{ otobo_password }}"
    correlation_key: 3f9c2a7b1d0e4c55aa00bb11
    articles: true
  register: result
  delegate_to: localhost

- name: Open tickets in the Infrastructure queue
  labops.itsm.otobo_ticket_info:
    queue: [Infrastructure]
    states: [new, open]
    limit: 20
  delegate_to: localhost

- name: Read one ticket with its history
  labops.itsm.otobo_ticket_info:
    ticket_number: "2025061110000421"
    history: true
  delegate_to: localhost
"""

RETURN = r"""
tickets:
  description: Matching tickets, newest first.
  returned: success
  type: list
  elements: dict
  contains:
    ticket_id:
      description: Numeric id.
      type: int
    ticket_number:
      description: Ticket number.
      type: str
    title:
      description: Title.
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
      description: Creation time.
      type: str
    changed:
      description: Last change time.
      type: str
    dynamic_fields:
      description: Dynamic field values, name to value.
      type: dict
    articles:
      description: Articles (empty unless O(articles=true)).
      type: list
      elements: dict
    history:
      description: History entries (only with O(history=true)).
      type: list
      elements: dict
    ticket_url:
      description: Agent link to the ticket.
      type: str
  sample:
    - ticket_id: 42
      ticket_number: "2025061110000421"
      title: "[FIRING] HostDown pve-node1 [ck:3f9c2a7b1d0e4c55aa00bb11]"
      state: new
      state_type: new
      queue: Infrastructure
      ticket_url: https://otobo.lab.example/otobo/index.pl?Action=AgentTicketZoom;TicketID=42
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._http import HAS_REQUESTS, REQUESTS_IMPORT_ERROR
from ansible_collections.labops.itsm.plugins.module_utils._otobo import (
    OTOBO_CONNECTION_ARGSPEC,
    OTOBO_CONNECTION_MUTUALLY_EXCLUSIVE,
    OTOBO_CONNECTION_REQUIRED_ONE_OF,
    client_from_params,
)


def search_criteria(params):
    """OTOBO TicketSearch criteria from the module options."""
    criteria = {"Limit": params["limit"]}
    if params.get("queue"):
        criteria["Queues"] = params["queue"]
    if params.get("states"):
        criteria["States"] = params["states"]
    if params.get("title"):
        criteria["Title"] = params["title"]
    return criteria


def lookup(client, params):
    """Tickets named by id, number or correlation key (0 or 1), or found by search."""
    articles = params["articles"]
    if params.get("ticket_id") is not None:
        return _one(client.get_ticket(params["ticket_id"], articles=articles))
    if params.get("ticket_number"):
        return _one(client.find_ticket_by_number(params["ticket_number"], articles=articles))
    if params.get("correlation_key"):
        return _one(client.find_by_correlation_key(params["correlation_key"], open_only=params["open_only"], articles=articles))
    ids = client.search_ticket_ids(**search_criteria(params))[:params["limit"]]
    # 25 tickets per TicketGet; unreadable ones are skipped
    return list(client.get_tickets(ids, articles=articles))


def _one(ticket):
    return [ticket] if ticket is not None else []


def run(module, client):
    if module.params["limit"] < 1:
        raise ValidationError("limit must be at least 1, got {0}".format(module.params["limit"]))
    tickets = lookup(client, module.params)
    for ticket in tickets:
        ticket["ticket_url"] = client.ticket_url(ticket["ticket_id"])
        if module.params["history"]:
            ticket["history"] = client.history(ticket["ticket_id"])
    return dict(changed=False, tickets=tickets)


def argument_spec():
    spec = dict(OTOBO_CONNECTION_ARGSPEC)
    spec.update(
        ticket_id=dict(type="int"),
        ticket_number=dict(type="str"),
        correlation_key=dict(type="str", no_log=False),
        open_only=dict(type="bool", default=False),
        queue=dict(type="list", elements="str"),
        states=dict(type="list", elements="str"),
        title=dict(type="str"),
        limit=dict(type="int", default=50),
        articles=dict(type="bool", default=False),
        history=dict(type="bool", default=False),
    )
    return spec


def main(module_class=AnsibleModule):
    """Run the module; the action plugin passes a controller-side module_class (plugin_utils/_controller_module.py)."""
    module = module_class(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[("ticket_id", "ticket_number", "correlation_key"),
                            ("ticket_id", "queue"), ("ticket_id", "states"), ("ticket_id", "title"),
                            ("ticket_number", "queue"), ("ticket_number", "states"), ("ticket_number", "title"),
                            ("correlation_key", "queue"), ("correlation_key", "states"), ("correlation_key", "title")] + OTOBO_CONNECTION_MUTUALLY_EXCLUSIVE,
        required_one_of=OTOBO_CONNECTION_REQUIRED_ONE_OF,
    )
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
    try:
        result = run(module, client_from_params(module.params, warn=module.warn, register_secret=module.no_log_values.add))
    except LabopsError as exc:
        module.fail_json(**exc.fail_kwargs())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
