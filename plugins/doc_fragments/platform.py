# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # Platform selection of the governed modules (plugins/module_utils/_platforms.py is the registry).
    DOCUMENTATION = r"""
options:
  platform:
    description:
      - The ticket platform the SOP runs on; its adapter is configured by O(platform_options).
      - V(otobo), V(servicenow) or V(jira).
    type: str
    default: otobo
    choices: [jira, otobo, servicenow]
  platform_options:
    description:
      - The chosen platform's connection and mapping options, validated against the platform's option list
        (an unknown key fails the task and names the allowed ones). Secret values (for example C(password)) are
        masked in every result.
      - The C(labops.itsm.ims_sop) action plugin fills in the task's C(module_defaults) of
        C(group/labops.itsm.<platform>) for options not given here; keys given here win.
      - "V(otobo): C(url) (env C(OTOBO_URL)), C(username) (env C(OTOBO_USERNAME)), C(password) (env C(OTOBO_PASSWORD),
        secret), C(webservice), C(path_prefix), C(use_session), C(validate_certs) (env C(OTOBO_VALIDATE_CERTS)),
        C(ca_path), C(timeout), C(search_route), C(correlation_field) (as in M(labops.itsm.otobo_ticket)), and the IMS
        mapping: C(customer_user) (customer user of created tickets; required by the SOPs that create tickets),
        C(state_map), C(ticket_types), C(priority_map) and C(dynamic_field_map)."
      - "C(state_map): overrides of the IMS status to OTOBO state mapping, C({entity: {status: state}}). Defaults:
        incident open=new, in_progress=open, escalated=open, pending_vendor=pending reminder,
        resolved=pending auto close+, closed=closed successful; problem open=new, under_investigation=open,
        known_error=open, resolved=closed successful, closed=closed successful; change_request pending=new,
        approved=open, rejected=closed unsuccessful. Pending states get the IMS follow-up time as C(PendingTime)."
      - "C(ticket_types): OTOBO ticket type per entity (defaults V(Incident), V(Problem), V(RfC); an empty string
        leaves the type unset). C(priority_map): severity to OTOBO priority (defaults critical=C(5 very high),
        high=C(4 high), medium=C(3 normal), low=C(2 low)). C(dynamic_field_map): IMS attribute to dynamic field name,
        for example C({status: MyStatusField})."
      - "V(servicenow): C(instance) (URL or instance name, env C(SN_INSTANCE)), C(username), C(password) or
        C(password_file), C(client_id) and C(client_secret) (OAuth, token cached in C(token_cache) and reused by every
        task), C(grant_type), C(api_key), C(validate_certs), C(ca_path), C(timeout) (as in
        M(labops.itsm.servicenow_incident)), and the IMS mapping: C(assignment_group) (default group, V(Service Desk)),
        C(caller) (caller_id of created incidents, user name or sys_id), C(team_groups) (IMS team to assignment group
        name), C(field_map) (IMS attribute to field, C(u_) fields by default), C(state_map), C(close_code)
        (default V(Solution provided)), C(severity_map) (severity to C({impact, urgency})) and C(cmdb_lookup)
        (link the configuration item named like the affected service). See C(docs/lifecycle.md)."
      - "V(jira): C(url) (env C(JIRA_URL)), C(deployment) (V(auto), V(cloud) or V(datacenter)), C(username) (the e-mail
        address on Cloud) with C(password) / C(api_token) or C(password_file), or C(token) / C(token_file) (a Data Center
        personal access token), C(cache_dir), C(validate_certs), C(ca_path), C(timeout), and the IMS mapping:
        C(project) (default project key), C(issue_types) (defaults Incident, Problem, Change), C(statuses)
        (C({entity: {IMS status: Jira status name}}), reached by the workflow transition leading there),
        C(resolution) (default V(Done)), C(priority_map), C(field_map) (IMS attribute to C(customfield_N)),
        C(label_prefix) (default V(labops-), the correlation label), C(labels) (default V(alertmanager)) and
        C(link_type) (default V(Relates)). See C(docs/lifecycle.md)."
    type: dict
    default: {}
  queue:
    description:
      - Where the platform creates and searches records (platform neutral routing target). On OTOBO the queue name
        (exact case); on ServiceNow the assignment group of new records (by name); on Jira the project key or
        C(PROJECT/Component).
      - Defaults to the adapter's default (OTOBO V(Raw), ServiceNow the C(assignment_group) option).
    type: str
"""
