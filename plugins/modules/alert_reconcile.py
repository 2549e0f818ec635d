#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: alert_reconcile
short_description: Compare AlertManager's alerts with the open incidents and enqueue the missing events into the intake spool
version_added: 0.2.0
description:
  - "Reads every alert AlertManager holds (C(GET /api/v2/alerts): the alerts that are not resolved, in every state,
    C(active), C(suppressed) by a silence or an inhibition, or C(unprocessed)) and the open incidents the alert path
    opened on the ticket platform(s) (a correlation key, detection source C(monitoring_tool) or C(automated_alert),
    IMS status neither C(resolved) nor C(closed)), and puts synthetic events into the intake spool (origin
    C(reconciliation))."
  - "An open incident whose alert episode (correlation key) is no longer among AlertManager's alerts, in any state,
    gets a C(resolved) event: a resolve AlertManager never delivered. A silenced or inhibited alert still fires, so its
    incident stays open. The event is the spool's firing event of the episode turned resolved (ended now) when the spool
    still has it, else a minimal event (correlation key, alert status, C(alertname) from the incident when known,
    C(startsAt) from the incident's opening time, C(endsAt) now). Only incidents opened more than O(resolve_after)
    seconds ago are considered (an alert still in AlertManager's C(group_wait) is not touched), and none while
    AlertManager itself started less than O(resolve_after) seconds ago (after a restart it learns the firing alerts
    again from Prometheus)."
  - An alert that is active (not silenced, not inhibited) since more than O(open_after) seconds, has no open incident
    and no firing entry in the spool gets a C(firing) event shaped as the C(labops.itsm.alertmanager) event source
    emits it (in a group of its own); the intake then opens the incident idempotently.
  - An episode that already has an entry of that status in the spool is left alone (a resolve that failed for the
    whole retry period, a dead letter, is queued again).
  - The module only enqueues. The intake daemon's dispatcher handles the events like any other, so the module runs as
    well by hand, from cron or from AWX without the daemon (the events wait in the spool until a daemon runs).
author:
  - labops.itsm developers (@labops)
extends_documentation_fragment:
  - labops.itsm.spool
  - labops.itsm.spool.ACTIONGROUP_INTAKE
  - labops.itsm.attributes
attributes:
  check_mode:
    support: full
    details:
      - Reads AlertManager, the platforms and the spool and reports what it would enqueue; enqueues nothing.
  diff_mode:
    support: full
    details:
      - The events enqueued (correlation key, status, reason).
seealso:
  - module: labops.itsm.intake_spool
  - module: labops.itsm.ims_sop
options:
  alertmanager_url:
    description:
      - AlertManager's base URL (with its C(--web.route-prefix) if it has one), for example V(http://alertmanager:9093).
      - If not set, the value of the E(LABOPS_ALERTMANAGER_URL) environment variable is used.
    type: str
    required: true
  alertmanager_username:
    description:
      - HTTP basic user name for AlertManager (or a proxy in front of it).
      - If not set, the value of the E(LABOPS_ALERTMANAGER_USERNAME) environment variable is used.
    type: str
  alertmanager_password:
    description:
      - HTTP basic password for O(alertmanager_username).
      - If not set, the value of the E(LABOPS_ALERTMANAGER_PASSWORD) environment variable is used.
    type: str
  alertmanager_password_file:
    description:
      - A file holding the HTTP basic password (its first line); keeps the secret out of task arguments and environments.
      - If not set, the value of the E(LABOPS_ALERTMANAGER_PASSWORD_FILE) environment variable is used.
    type: path
  alertmanager_token:
    description:
      - Bearer token for AlertManager (or a proxy in front of it).
      - If not set, the value of the E(LABOPS_ALERTMANAGER_TOKEN) environment variable is used.
    type: str
  alertmanager_token_file:
    description:
      - A file holding the bearer token (its first line).
      - If not set, the value of the E(LABOPS_ALERTMANAGER_TOKEN_FILE) environment variable is used.
    type: path
  alertmanager_validate_certs:
    description:
      - Verify AlertManager's TLS certificate.
    type: bool
    default: true
  alertmanager_ca_path:
    description:
      - CA certificate (PEM) that signed AlertManager's certificate.
    type: path
  alertmanager_timeout:
    description:
      - Seconds to wait for AlertManager per request. Requests are retried with the collection's HTTP retry policy.
    type: int
    default: 30
  receiver:
    description:
      - Only alerts routed to a receiver matching this regular expression (anchored, as AlertManager's own C(receiver)
        filter) get firing events, for example V(eda-itsm). Alerts of other receivers still keep their incidents open.
    type: str
  resolve_after:
    description:
      - Seconds an incident must have been open before a missing alert resolves it.
    type: int
    default: 300
  open_after:
    description:
      - Seconds an alert must have been active before a missing incident is enqueued.
    type: int
    default: 300
  platform:
    description:
      - The ticket platform whose open incidents are compared (see M(labops.itsm.ims_sop)). Ignored when O(platforms) is set.
    type: str
    default: otobo
    choices: [jira, otobo, servicenow]
  platform_options:
    description:
      - The platform's connection and mapping options, as for M(labops.itsm.ims_sop) (secrets masked).
      - The action plugin fills in the task's C(module_defaults) of C(group/labops.itsm.<platform>), as for M(labops.itsm.ims_sop).
    type: dict
    default: {}
  queue:
    description:
      - Where the platform searches the incidents (OTOBO queue, ServiceNow assignment group). Incidents that triage moved to another queue are only
        seen when O(platforms) lists that queue too.
    type: str
  platforms:
    description:
      - Several platforms or queues to search, each with its own options; replaces O(platform), O(platform_options) and O(queue).
    type: list
    elements: dict
    suboptions:
      platform:
        description: The ticket platform.
        type: str
        default: otobo
        choices: [jira, otobo, servicenow]
      platform_options:
        description: Its options (secrets masked).
        type: dict
        default: {}
      queue:
        description: Where it searches.
        type: str
      alert_grouping:
        description:
          - The alert path's C(itsm_alert_grouping) of the assets routed there. Tickets per V(alert) or per V(group)
            outlive one episode; they are matched with the alerts AlertManager holds (per alert, by fingerprint) but
            never resolved by reconciliation (skip reason C(incident_per_alert), C(incident_per_group)).
        type: str
        choices: [episode, alert, group]
        default: episode
  alert_grouping:
    description:
      - O(platforms[].alert_grouping) of the single O(platform).
    type: str
    choices: [episode, alert, group]
    default: episode
  search_limit:
    description:
      - At most this many open incidents are read per platform entry (newest first).
    type: int
    default: 500
"""

EXAMPLES = r"""
- name: Reconcile AlertManager with the open OTOBO incidents (the intake daemon handles what is enqueued)
  labops.itsm.alert_reconcile:
    alertmanager_url: http://alertmanager.mgmt.example.net:9093
    receiver: eda-itsm
    platform_options: "{{ itsm_platform_options.otobo }}"
    queue: Raw
  register: reconciled

- name: What would be enqueued, for two queues (check mode enqueues nothing)
  labops.itsm.alert_reconcile:
    alertmanager_url: https://alertmanager.example.net
    alertmanager_token_file: /etc/labops/alertmanager.token
    platforms:
      - platform_options: "{{ itsm_platform_options.otobo }}"
        queue: Raw
      - platform_options: "{{ itsm_platform_options.otobo }}"
        queue: Storage
  check_mode: true
"""

RETURN = r"""
enqueued:
  description: The events enqueued (in check mode, that would be enqueued).
  returned: always
  type: list
  elements: dict
  contains:
    correlation_key:
      description: The alert episode.
      type: str
      sample: 3f9c2a7b1d0e4c55aa00bb11
    status:
      description: V(resolved) (an open incident whose alert is gone) or V(firing) (an active alert without incident).
      type: str
      sample: resolved
    alertname:
      description: The alert's name when known.
      type: str
      sample: PveGuestDown
    reason:
      description: Why, in words.
      type: str
      sample: incident 2026120310000011 open, its alert is no longer in AlertManager
    action:
      description: V(new) (a new spool entry) or V(revive) (a dead letter of the episode queued again).
      type: str
      sample: new
    platform:
      description: The platform of the incident (resolved events).
      type: str
      sample: otobo
    incident:
      description: The incident (resolved events).
      type: str
      sample: "2026120310000011"
    from_spool:
      description: The resolved event was built from the spool's firing event (else it is the minimal event).
      type: bool
      sample: true
counts:
  description: AlertManager's alerts, the active ones, the open alert incidents, and the resolved and firing events enqueued.
  returned: always
  type: dict
  sample: {"alerts": 12, "alerts_active": 9, "incidents_open": 10, "resolved": 1, "firing": 0}
skipped:
  description: Alerts and incidents left alone, counted per reason (for example C(incident_alert_present), C(alert_suppressed),
    C(alert_too_recent), C(alert_incident_open), C(alert_in_spool_done), C(resolve_in_spool_queued)).
  returned: always
  type: dict
  sample: {"incident_alert_present": 9, "alert_incident_open": 9, "alert_suppressed": 3}
spool_counts:
  description: What the spool did with the events (C(new), C(absorbed) repeats, C(revived) dead letters); null in check mode or when nothing was enqueued.
  returned: always
  type: dict
  sample: {"new": 1, "absorbed": 0, "revived": 0}
"""

import datetime

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.labops.itsm.plugins.module_utils import _platforms as platforms
from ansible_collections.labops.itsm.plugins.module_utils import _reconcile as reconcile
from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._http import HAS_REQUESTS, REQUESTS_IMPORT_ERROR
from ansible_collections.labops.itsm.plugins.module_utils._spool import SPOOL_ARGSPEC, spool_from_params
from ansible_collections.labops.itsm.plugins.module_utils._time import utc_now


def argument_spec():
    spec = dict(
        alertmanager_url=dict(type="str", required=True, fallback=(env_fallback, ["LABOPS_ALERTMANAGER_URL"])),
        alertmanager_username=dict(type="str", fallback=(env_fallback, ["LABOPS_ALERTMANAGER_USERNAME"])),
        alertmanager_password=dict(type="str", no_log=True, fallback=(env_fallback, ["LABOPS_ALERTMANAGER_PASSWORD"])),
        alertmanager_password_file=dict(type="path", no_log=False, fallback=(env_fallback, ["LABOPS_ALERTMANAGER_PASSWORD_FILE"])),
        alertmanager_token=dict(type="str", no_log=True, fallback=(env_fallback, ["LABOPS_ALERTMANAGER_TOKEN"])),
        alertmanager_token_file=dict(type="path", no_log=False, fallback=(env_fallback, ["LABOPS_ALERTMANAGER_TOKEN_FILE"])),
        alertmanager_validate_certs=dict(type="bool", default=True),
        alertmanager_ca_path=dict(type="path"),
        alertmanager_timeout=dict(type="int", default=30),
        receiver=dict(type="str"),
        resolve_after=dict(type="int", default=300),
        open_after=dict(type="int", default=300),
        platform=dict(type="str", default=platforms.DEFAULT_PLATFORM, choices=platforms.platform_names()),
        platform_options=dict(type="dict", default={}),
        queue=dict(type="str"),
        platforms=dict(type="list", elements="dict", options=dict(
            platform=dict(type="str", default=platforms.DEFAULT_PLATFORM, choices=platforms.platform_names()),
            platform_options=dict(type="dict", default={}),
            queue=dict(type="str"),
            alert_grouping=dict(type="str", default="episode", choices=["episode", "alert", "group"]),
        )),
        alert_grouping=dict(type="str", default="episode", choices=["episode", "alert", "group"]),
        search_limit=dict(type="int", default=500),
    )
    spec.update(SPOOL_ARGSPEC)
    return spec


MUTUALLY_EXCLUSIVE = [("alertmanager_token", "alertmanager_token_file"), ("alertmanager_password", "alertmanager_password_file"),
                      ("alertmanager_token", "alertmanager_username"), ("alertmanager_token_file", "alertmanager_username")]


def platform_entries(params):
    """The (platform, platform_options, queue, alert grouping) entries to search."""
    if params.get("platforms"):
        return [(entry.get("platform") or platforms.DEFAULT_PLATFORM, entry.get("platform_options") or {}, entry.get("queue"),
                 entry.get("alert_grouping") or "episode") for entry in params["platforms"]]
    return [(params["platform"], params.get("platform_options") or {}, params.get("queue"), params.get("alert_grouping") or "episode")]


def read_secret_file(path, name):
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.readline().strip()
    except OSError as exc:
        raise ValidationError("%s %s cannot be read: %s" % (name, path, exc.strerror))
    if not value:
        raise ValidationError("%s %s is empty" % (name, path))
    return value


def alertmanager_from_params(params, register_secret):
    password = params.get("alertmanager_password")
    if params.get("alertmanager_password_file"):
        password = read_secret_file(params["alertmanager_password_file"], "alertmanager_password_file")
    token = params.get("alertmanager_token")
    if params.get("alertmanager_token_file"):
        token = read_secret_file(params["alertmanager_token_file"], "alertmanager_token_file")
    for secret in (password, token):
        if secret:
            register_secret(secret)
    if password and not params.get("alertmanager_username"):
        raise ValidationError("alertmanager_password needs alertmanager_username")
    return reconcile.AlertManagerClient(params["alertmanager_url"], username=params.get("alertmanager_username"), password=password, token=token,
                                        validate_certs=params["alertmanager_validate_certs"], ca_path=params.get("alertmanager_ca_path"),
                                        timeout=params["alertmanager_timeout"])


def check_params(params):
    for name in ("resolve_after", "open_after"):
        if params[name] < 0:
            raise ValidationError("%s must be 0 or more seconds, got %d" % (name, params[name]))
    if params["search_limit"] < 1:
        raise ValidationError("search_limit must be a positive integer, got %d" % params["search_limit"])


def run(params, alertmanager, ticket_platforms, spool, check_mode=False, diff=False, now=None):
    """Reconcile: read AlertManager, the platforms' open alert incidents and the spool; enqueue unless ``check_mode``."""
    check_params(params)
    now = now or utc_now()
    alerts, problems = reconcile.parse_alerts(alertmanager.alerts())
    started = alertmanager.started_at()
    incidents = reconcile.open_incidents(ticket_platforms, params["search_limit"])
    plan = reconcile.plan(alerts=alerts, incidents=incidents, spool=spool, now=now, resolve_after=params["resolve_after"],
                          open_after=params["open_after"], am_started_at=started, receiver=params.get("receiver"),
                          external_url=alertmanager.url)
    spool_counts = None
    if plan.events and not check_mode:
        spool_counts = spool.accept(plan.events, origin=reconcile.ORIGIN)
        changed = bool(spool_counts["new"] or spool_counts["revived"])
    else:
        changed = bool(plan.events)
    result = dict(changed=changed, enqueued=plan.enqueued, counts=plan.counts, skipped=plan.skipped, spool_counts=spool_counts,
                  warnings=problems + plan.warnings)
    if diff and plan.enqueued:
        result["diff"] = {"before": {}, "after": {"%s|%s" % (e["correlation_key"], e["status"]): e["reason"] for e in plan.enqueued}}
    return result


def build_platforms(module):
    built = []
    for name, options, queue, grouping in platform_entries(module.params):
        module.no_log_values.update(platforms.secret_values(name, options))
        built.append((name, platforms.build_platform(name, options, queue=queue, warn=module.warn), grouping))
    return built


def main(module_class=AnsibleModule):
    """Run the module; the action plugin passes a controller-side module_class (plugin_utils/_controller_module.py)."""
    module = module_class(argument_spec=argument_spec(), supports_check_mode=True, mutually_exclusive=MUTUALLY_EXCLUSIVE)
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=REQUESTS_IMPORT_ERROR)
    alertmanager = spool = None
    try:
        ticket_platforms = build_platforms(module)
        alertmanager = alertmanager_from_params(module.params, module.no_log_values.add)
        spool = spool_from_params(module.params)
        result = run(module.params, alertmanager, ticket_platforms, spool, check_mode=module.check_mode,
                     diff=module._diff, now=datetime.datetime.now(datetime.timezone.utc))  # pylint: disable=protected-access
    except LabopsError as exc:
        module.fail_json(**exc.fail_kwargs())
    finally:
        if alertmanager is not None:
            alertmanager.close()
        if spool is not None:
            spool.close()
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
