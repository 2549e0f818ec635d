#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: servicenow_incident_info
short_description: Read ServiceNow incidents by number, sys_id, correlation id or encoded query
version_added: 0.3.0
description:
  - Reads incidents through the Table API (C(/api/now/table/incident)).
  - Looks one incident up by O(number), O(sys_id) or O(correlation_id), or lists the incidents matching an encoded
    O(query), page by page.
  - An empty key is refused, never searched (C(correlation_id=) would match every incident whose field is empty).
author:
  - labops.itsm developers (@labops)
extends_documentation_fragment:
  - labops.itsm.servicenow
  - labops.itsm.attributes
  - labops.itsm.attributes.INFO_MODULE
attributes:
  action_group:
    description: Use C(group/labops.itsm.servicenow) in C(module_defaults) to set the connection options for this module.
    support: full
    membership:
      - labops.itsm.servicenow
seealso:
  - module: labops.itsm.servicenow_incident
options:
  number:
    description: Number of the incident, for example V(INC0010001).
    type: str
  sys_id:
    description: sys_id of the incident.
    type: str
  correlation_id:
    description: Correlation id of the incident (every incident carrying it, newest first).
    type: str
  query:
    description:
      - Encoded query (C(sysparm_query)), for example V(active=true^assignment_group.name=Infrastructure^ORDERBYDESCsys_created_on).
      - A C(field=value) term with an empty value is refused (it would match every record whose field is empty); use
        C(fieldISEMPTY) for that.
      - Without any lookup option and without a query, every incident is listed (up to O(limit)).
    type: str
  fields:
    description: Fields to return (C(sysparm_fields)); dot-walked names such as V(caller_id.email) are allowed. Default all.
    type: list
    elements: str
  display_value:
    description:
      - V(false) raw values, V(true) display values, V(all) both (each field a dict with C(value) and C(display_value)).
      - Journal fields (work notes, comments) carry their entries only with V(true) or V(all).
    type: str
    choices: ["false", "true", "all"]
    default: "false"
  limit:
    description: Maximum number of incidents returned. V(0) returns every match.
    type: int
    default: 100
  page_size:
    description: Rows per request (C(sysparm_limit)) while paging; the module pages by C(sysparm_offset) until O(limit).
    type: int
    default: 500
notes:
  - "HTTP calls per task: a lookup by O(number), O(sys_id) or O(correlation_id) costs 1 GET; a query 1 GET per O(page_size)
    rows returned (plus 1 when the last page is full). With OAuth the first task of a controller user adds the token request."
requirements:
  - requests
"""

EXAMPLES = r"""
- name: Read the incident of an alert episode
  labops.itsm.servicenow_incident_info:
    instance: https://acme.service-now.com
    username: itsm.bot
    password: "{{ sn_password }}"
    correlation_id: am:6f1c2a9e
  register: result
  delegate_to: localhost

- name: Open incidents of the Infrastructure group, newest first, with display values
  labops.itsm.servicenow_incident_info:
    query: active=true^assignment_group.name=Infrastructure^ORDERBYDESCsys_created_on
    fields: [number, short_description, state, priority, assignment_group]
    display_value: "true"
    limit: 0
  delegate_to: localhost
"""

RETURN = r"""
records:
  description: Matching incidents (raw values unless O(display_value) says otherwise; reference fields as sys_ids).
  returned: success
  type: list
  elements: dict
  sample:
    - sys_id: 9d385017c611228701d22104cc95c371
      number: INC0010042
      state: "2"
      priority: "2"
      short_description: NodeDown pve-03
      link: https://acme.service-now.com/nav_to.do?uri=incident.do?sys_id=9d385017c611228701d22104cc95c371
requests:
  description: HTTP requests this task sent to ServiceNow.
  returned: always
  type: int
  sample: 1
"""

import re

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._http import HAS_REQUESTS, REQUESTS_IMPORT_ERROR
from ansible_collections.labops.itsm.plugins.module_utils._servicenow import (
    SERVICENOW_CONNECTION_ARGSPEC,
    SERVICENOW_CONNECTION_MUTUALLY_EXCLUSIVE,
    SERVICENOW_CONNECTION_REQUIRED_ONE_OF,
    SERVICENOW_CONNECTION_REQUIRED_TOGETHER,
    check_query_keys,
    client_from_params,
    eq,
)

TABLE = "incident"
SYS_ID = re.compile(r"^[0-9a-f]{32}$")


def _display(value):
    return False if value == "false" else value


def lookup(client, params):
    fields = params.get("fields")
    display = _display(params["display_value"])
    for name in ("number", "sys_id", "correlation_id"):
        if params.get(name) is not None and not str(params[name]).strip():
            raise ValidationError(f"servicenow: {name} is empty: an empty key is never searched")
    if params.get("sys_id") is not None:
        if not SYS_ID.match(params["sys_id"]):
            raise ValidationError("servicenow: sys_id must be 32 lowercase hex characters, got {0!r}".format(params["sys_id"]))
        row = client.get(TABLE, params["sys_id"], fields=fields, display_value=display)
        return [row] if row is not None else []
    if params.get("number") is not None:
        row = client.find_one(TABLE, eq("number", params["number"]), fields=fields, display_value=display)
        return [row] if row is not None else []
    if params.get("correlation_id") is not None:
        query = eq("correlation_id", params["correlation_id"]) + "^ORDERBYDESCsys_created_on"
        return page(client, query, params, fields, display)
    query = params.get("query") or ""
    if query:
        check_query_keys(query)
    return page(client, query, params, fields, display)


def page(client, query, params, fields, display):
    """Pages of ``page_size`` rows by sysparm_offset until ``limit`` rows (0: all) or the last page."""
    limit, size = params["limit"], params["page_size"]
    if "ORDERBY" not in query:
        query = query + "^ORDERBYsys_created_on^ORDERBYsys_id" if query else "ORDERBYsys_created_on^ORDERBYsys_id"
    rows = []
    while True:
        want = size if not limit else min(size, limit - len(rows))
        batch, total = client.list_page(TABLE, query, fields=fields, limit=want, offset=len(rows), display_value=display)
        rows.extend(batch)
        if len(batch) < want or (limit and len(rows) >= limit) or (total is not None and len(rows) >= total):
            return rows


def _raw(value):
    return value.get("value") if isinstance(value, dict) else value


def run(module, client):
    params = module.params
    if params["limit"] < 0 or params["page_size"] < 1:
        raise ValidationError("servicenow: limit must be 0 or more and page_size at least 1")
    records = lookup(client, params)
    for record in records:
        sys_id = _raw(record.get("sys_id"))
        if sys_id:
            record["link"] = client.record_link(TABLE, sys_id)
    return dict(changed=False, records=records, requests=client.request_count)


def argument_spec():
    spec = dict(SERVICENOW_CONNECTION_ARGSPEC)
    spec.update(
        number=dict(type="str"),
        sys_id=dict(type="str"),
        correlation_id=dict(type="str", no_log=False),
        query=dict(type="str"),
        fields=dict(type="list", elements="str"),
        display_value=dict(type="str", default="false", choices=["false", "true", "all"]),
        limit=dict(type="int", default=100),
        page_size=dict(type="int", default=500),
    )
    return spec


def main(module_class=AnsibleModule):
    """Run the module; the action plugin passes a controller-side module_class (plugin_utils/_controller_module.py)."""
    module = module_class(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[("number", "sys_id", "correlation_id", "query")] + SERVICENOW_CONNECTION_MUTUALLY_EXCLUSIVE,
        required_together=SERVICENOW_CONNECTION_REQUIRED_TOGETHER,
        required_one_of=SERVICENOW_CONNECTION_REQUIRED_ONE_OF,
    )
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=str(REQUESTS_IMPORT_ERROR))
    client = None
    try:
        client = client_from_params(module.params, warn=module.warn, register_secret=module.no_log_values.add)
        result = run(module, client)
    except LabopsError as exc:
        kwargs = exc.fail_kwargs()
        if client is not None:
            kwargs["requests"] = client.request_count
        module.fail_json(**kwargs)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
