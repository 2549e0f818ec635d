#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: jira_issue_info
short_description: Read Jira issues by key, by correlation label or by JQL
version_added: 0.4.0
description:
  - Reads issues from Jira Cloud (REST API v3, the enhanced JQL search C(/rest/api/3/search/jql)) or Jira Data Center
    (REST API v2, C(/rest/api/2/search)).
  - Looks one issue up by O(key), lists the issues carrying a correlation label (O(correlation_key) or
    O(correlation_label), newest first, as M(labops.itsm.jira_issue) finds them), or lists the issues a O(jql) query
    matches, page by page.
  - An empty key or an empty (unbounded) query is refused, never searched.
author:
  - labops.itsm developers (@labops)
extends_documentation_fragment:
  - labops.itsm.jira
  - labops.itsm.attributes
  - labops.itsm.attributes.INFO_MODULE
attributes:
  action_group:
    description: Use C(group/labops.itsm.jira) in C(module_defaults) to set the connection options for this module.
    support: full
    membership:
      - labops.itsm.jira
seealso:
  - module: labops.itsm.jira_issue
options:
  key:
    description: Key (or id) of the issue, for example V(OPS-17). A missing issue gives an empty RV(issues).
    type: str
  correlation_key:
    description:
      - Correlation key; the issues carrying the label O(label_prefix) + O(correlation_key) (made valid for Jira as
        M(labops.itsm.jira_issue) makes it), newest first.
    type: str
  correlation_label:
    description: Any label; the issues carrying it, newest first.
    type: str
  label_prefix:
    description: Prefix of the label made from O(correlation_key).
    type: str
    default: labops-
  jql:
    description:
      - JQL query, for example V(project = OPS AND statusCategory != Done ORDER BY created DESC). Jira refuses an
        unbounded query (only an C(ORDER BY)).
    type: str
  fields:
    description:
      - Fields to return. Default - summary, description, status, resolution, resolutiondate, labels, priority, components,
        issuetype, project, issuelinks, created, updated. V(*all) returns every field.
    type: list
    elements: str
  limit:
    description: Maximum number of issues returned (searches). V(0) returns every match.
    type: int
    default: 50
  page_size:
    description: Issues per search request while paging (Jira may lower it; Cloud pages with C(nextPageToken)).
    type: int
    default: 50
notes:
  - "HTTP calls per task: a lookup by O(key) costs 1 GET; a search 1 request per O(page_size) issues returned. The issues the
    controller's M(labops.itsm.jira_issue) created for a label (its creation index in O(cache_dir)) are named in a label
    search (C(reconcileIssues)), so an issue created seconds ago is listed although Jira Cloud's search lags."
requirements:
  - requests
"""

EXAMPLES = r"""
- name: Read the issue of an alert group
  labops.itsm.jira_issue_info:
    url: https://acme.atlassian.net
    username: alert-bot@example.com
    password_file: /etc/labops/jira-api-token
    correlation_key: 3f9c2a7d4e1b
  register: result
  delegate_to: localhost

- name: Open alert issues of the Operations project, newest first
  labops.itsm.jira_issue_info:
    jql: project = OPS AND labels = alertmanager AND statusCategory != Done ORDER BY created DESC
    fields: [summary, status, priority, labels]
    limit: 0
  delegate_to: localhost
"""

RETURN = r"""
issues:
  description:
    - Matching issues as Jira answers them (C(id), C(key), C(fields)), each with C(link) (the browse URL) and, for
      convenience, C(status), C(status_category), C(resolution) and C(summary) (plain text of the Jira fields), and
      C(description_text), the description as plain text (ADF or wiki markup).
  returned: success
  type: list
  elements: dict
  sample:
    - id: "10042"
      key: OPS-17
      link: https://acme.atlassian.net/browse/OPS-17
      status: To Do
      status_category: new
      resolution: null
      summary: "[FIRING:2] HostDown pve-node-03"
      fields: {summary: "[FIRING:2] HostDown pve-node-03", labels: [alertmanager, labops-3f9c2a7d4e1b]}
requests:
  description: HTTP requests this task sent to Jira.
  returned: always
  type: int
  sample: 1
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._http import HAS_REQUESTS, REQUESTS_IMPORT_ERROR
from ansible_collections.labops.itsm.plugins.module_utils._jira import (
    JIRA_CONNECTION_ARGSPEC,
    JIRA_CONNECTION_MUTUALLY_EXCLUSIVE,
    CreationIndex,
    client_from_params,
    jql_string,
)
from ansible_collections.labops.itsm.plugins.module_utils._jira_markup import adf_to_text, jira_label, wiki_to_text

DEFAULT_FIELDS = ["summary", "description", "status", "resolution", "resolutiondate", "labels", "priority", "components", "issuetype",
                  "project", "issuelinks", "created", "updated"]


def label_of(params):
    if params.get("correlation_label") is not None:
        return jira_label(params["correlation_label"])
    if params.get("correlation_key") is not None:
        return jira_label((params.get("label_prefix") or "") + str(params["correlation_key"]).strip())
    return None


def lookup(client, params):
    fields = params.get("fields") or DEFAULT_FIELDS
    limit = params["limit"] or None
    for name in ("key", "correlation_key", "correlation_label", "jql"):
        if params.get(name) is not None and not str(params[name]).strip():
            raise ValidationError(f"jira: {name} is empty: an empty key or query is never searched")
    if params.get("key") is not None:
        issue = client.get_issue(params["key"].strip(), fields=fields)
        return [issue] if issue is not None else []
    label = label_of(params)
    if label is not None:
        reconcile = CreationIndex(params["cache_dir"], client.base_url).ids(label)[-50:]
        jql = f"labels = {jql_string(label)} ORDER BY created DESC"
        return client.search(jql, fields=fields, limit=limit, page_size=params["page_size"], reconcile=reconcile)
    if params.get("jql") is None:
        raise ValidationError("jira: give key, correlation_key, correlation_label or jql")
    return client.search(params["jql"], fields=fields, limit=limit, page_size=params["page_size"])


def _name(value):
    return value.get("name") if isinstance(value, dict) else value


def decorate(client, issue):
    fields = issue.get("fields") or {}
    status = fields.get("status") if isinstance(fields.get("status"), dict) else {}
    description = fields.get("description")
    issue = dict(issue)
    issue.update(
        link=client.browse_url(issue["key"]) if issue.get("key") else None,
        summary=fields.get("summary"),
        status=status.get("name"),
        status_category=(status.get("statusCategory") or {}).get("key"),
        resolution=_name(fields.get("resolution")),
        description_text=adf_to_text(description) if isinstance(description, dict) else (
            wiki_to_text(description) if isinstance(description, str) else None),
    )
    return issue


def run(module, client):
    params = module.params
    if params["limit"] < 0 or params["page_size"] < 1:
        raise ValidationError("jira: limit must be 0 or more and page_size at least 1")
    issues = [decorate(client, issue) for issue in lookup(client, params)]
    return dict(changed=False, issues=issues, requests=client.request_count)


def argument_spec():
    spec = dict(JIRA_CONNECTION_ARGSPEC)
    spec.update(
        key=dict(type="str", no_log=False),
        correlation_key=dict(type="str", no_log=False),
        correlation_label=dict(type="str"),
        label_prefix=dict(type="str", default="labops-"),
        jql=dict(type="str"),
        fields=dict(type="list", elements="str"),
        limit=dict(type="int", default=50),
        page_size=dict(type="int", default=50),
    )
    return spec


def main(module_class=AnsibleModule):
    """Run the module; the action plugin passes a controller-side module_class (plugin_utils/_controller_module.py)."""
    module = module_class(
        argument_spec=argument_spec(),
        supports_check_mode=True,
        mutually_exclusive=[["key", "correlation_key", "correlation_label", "jql"]] + JIRA_CONNECTION_MUTUALLY_EXCLUSIVE,
        required_one_of=[("key", "correlation_key", "correlation_label", "jql")],
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
    finally:
        if client is not None:
            client.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
