#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: alert_intake
short_description: Turn AlertManager alert events into IMS incidents (SOP 16) and resolutions (SOP 11), a batch at a time
version_added: 0.2.0
description:
  - The handler of the alert path's intake seam (docs/alert_path.md). Takes either a O(batch) that the
    C(labops.itsm.alertmanager) event source claimed from the intake spool, or a list of O(events) as the source
    emits them (the by-hand playbooks C(labops.itsm.incident_open) and C(labops.itsm.incident_resolve)).
  - A firing alert runs SOP 16 V(monitoring_intake) (role O(actor_role), default V(automation)) which opens the
    incident or finds it by its correlation key; an event below the intake threshold (C(itsm_min_severity)) is the
    outcome V(below_threshold), not an error.
  - A resolved alert runs SOP 11 V(incident_resolve) by correlation key, acknowledging an incident that is still
    V(open) (SOP 6's effects); no incident (V(not_found)) or one already resolved or closed (V(already_resolved)) is an
    outcome, not an error.
  - "The CMDB enrichment (asset, platform, platform options, queue, impact, urgency, service, category, title, note)
    is done by the action plugin from the inventory: the play's variables and C(hostvars) of the alert's asset.
    The variables read are listed in docs/alert_path.md (CMDB enrichment)."
  - One platform adapter (one OTOBO session) per platform and one audit ledger serve the whole batch.
  - "With a O(batch), every entry's outcome is recorded in the spool: handled entries as done with
    C({action, ticket, platform}), failed ones as failed with the error (no secrets); the event source retries
    failed entries with back-off. An entry the batch no longer owns (the run took longer than the source's
    run timeout) is reported as V(skipped). A platform error on one event does not stop the others; when the
    platform is unreachable or rejects the credentials, the remaining events of that platform are failed
    without being tried (one request, not one per event)."
  - An event handled more than O(delay_note_after) seconds after the intake accepted it, or after failed
    attempts, carries a C(Delayed:) line in the incident's note (firing) or the resolution summary (resolved).
  - An unexpected error releases the batch (its remaining entries are failed, so they are retried) before the
    task fails.
author:
  - labops.itsm contributors (@labops)
extends_documentation_fragment:
  - labops.itsm.attributes
  - labops.itsm.attributes.ACTIONGROUP_LEDGER
attributes:
  check_mode:
    support: full
    details:
      - The SOPs run their checks and return their predictions; nothing is written to the platform, the ledger or
        the spool. RV(results) tells what would happen.
  diff_mode:
    support: none
seealso:
  - module: labops.itsm.ims_sop
options:
  batch:
    description:
      - "The batch event of the intake spool's dispatcher, C({id, count, entries, spool: {backend, path}}) (the
        C(intake_batch) of the rulebook event)."
      - The entries still owned by the batch are loaded from the spool named in C(spool); the DSN of a PostgreSQL spool
        comes from O(spool_dsn) (C(LABOPS_SPOOL_DSN)), never from the event.
    type: dict
  events:
    description:
      - Alert events as the C(labops.itsm.alertmanager) source emits them, C({alert, group, correlation_key, meta}),
        handled directly without a spool.
      - C(correlation_key) is derived from the alert's fingerprint and C(startsAt) when missing.
    type: list
    elements: dict
  release:
    description:
      - Only release the O(batch) (every entry it still owns is failed with O(error), so the source retries it). For
        the rescue of a run that failed before handling its batch.
    type: bool
    default: false
  error:
    description:
      - The reason recorded with O(release).
    type: str
  delay_note_after:
    description:
      - Seconds after the intake accepted an event beyond which the incident text carries the C(Delayed:) note.
    type: int
    default: 60
  requests:
    description:
      - Set by the action plugin (the CMDB enrichment from the inventory), one per event; do not set it in a task.
    type: list
    elements: dict
  actor:
    description:
      - Who acts, in the audit records.
      - Falls back to the environment variable E(LABOPS_ACTOR).
    type: str
    default: automation
  actor_role:
    description:
      - The IMS role the SOPs run as.
      - Falls back to the environment variable E(LABOPS_ACTOR_ROLE).
    type: str
    default: automation
  ledger_backend:
    description:
      - Audit ledger storage backend.
      - Falls back to the environment variable E(LABOPS_LEDGER_BACKEND).
    type: str
    choices: [sqlite, postgresql]
    default: sqlite
  ledger_path:
    description:
      - SQLite ledger file.
      - Falls back to the environment variable E(LABOPS_LEDGER_PATH).
    type: path
    default: ~/.local/state/labops/ims_audit.sqlite3
  ledger_dsn:
    description:
      - PostgreSQL connection string of the ledger.
      - Falls back to the environment variable E(LABOPS_LEDGER_DSN).
    type: str
  spool_backend:
    description:
      - Intake spool backend when O(batch) does not name one.
      - Falls back to the environment variable E(LABOPS_SPOOL_BACKEND).
    type: str
    choices: [sqlite, postgresql]
    default: sqlite
  spool_path:
    description:
      - SQLite spool file when O(batch) does not name one.
      - Falls back to the environment variable E(LABOPS_SPOOL_PATH).
    type: path
    default: ~/.local/state/labops/intake_spool.sqlite3
  spool_dsn:
    description:
      - PostgreSQL connection string of the spool.
      - Falls back to the environment variable E(LABOPS_SPOOL_DSN).
    type: str
notes:
  - "Requests per event on OTOBO as in M(labops.itsm.ims_sop): an intake that creates 5, a repeat 2, a resolve with
    acknowledgement 4; the session is created at most once per run (and reused from the session cache)."
"""

EXAMPLES = r"""
- name: Handle the batch the intake spool dispatched (playbooks/alert_batch.yml)
  labops.itsm.alert_intake:
    batch: "{{ ansible_eda.event.intake_batch }}"
  register: intake

- name: Open the incident of one firing alert by hand (playbooks/incident_open.yml)
  labops.itsm.alert_intake:
    events:
      - "{{ event }}"

- name: Release a batch after a failure before it was handled
  labops.itsm.alert_intake:
    batch: "{{ ansible_eda.event.intake_batch }}"
    release: true
    error: "{{ ansible_failed_result.msg | default('the run failed') }}"
"""

RETURN = r"""
results:
  description: One entry per event, in order.
  returned: always
  type: list
  elements: dict
  contains:
    entry:
      description: The spool entry id (null without a batch).
      type: int
    correlation_key:
      description: The alert episode's correlation key.
      type: str
    alert_status:
      description: V(firing) or V(resolved).
      type: str
    status:
      description: V(done), V(failed) or V(skipped) (the batch no longer owns the entry).
      type: str
    action:
      description:
        - V(created), V(exists), V(reopened), V(updated), V(suppressed), V(resolved), V(not_found), V(already_resolved),
          V(below_threshold), V(group_firing) (a resolved alert of a group that still fires, with C(itsm_alert_grouping=group));
          null when failed.
      type: str
    ticket:
      description: The platform's ticket id.
      type: str
    platform:
      description: The ticket platform.
      type: str
    queue:
      description: The queue the alert routes to.
      type: str
    changed:
      description: Whether handling the event changed the platform or the ledger.
      type: bool
    delayed:
      description: Whether the incident text carries the C(Delayed:) note.
      type: bool
    error:
      description: Why the event failed (no secrets).
      type: str
    message:
      description: One line for the log.
      type: str
  sample: [{"entry": 11, "correlation_key": "5d0c9b1f4e2a7c3b8a6d1e0f", "alert_status": "firing", "status": "done",
            "action": "created", "ticket": "2026120310000011", "platform": "otobo", "queue": "Platform", "changed": true,
            "delayed": false, "error": null,
            "message": "Opened incident 2026120310000011 (open, S1, queue Platform) for PveGuestDown erp-db-02"}]
counts:
  description: Number of events per action, plus V(failed) and V(skipped).
  returned: always
  type: dict
  sample: {"created": 1, "exists": 0, "resolved": 1, "not_found": 0, "already_resolved": 0, "below_threshold": 0, "failed": 0, "skipped": 0}
batch:
  description: The batch id.
  returned: with O(batch)
  type: str
  sample: b-5b7e0c8e-3f0a-4f7e-9a51-8d2f7f0c1a22
released:
  description: Entries failed by O(release) (or by the release after an unexpected error).
  returned: with O(release)
  type: int
  sample: 3
"""

import json
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.labops.itsm.plugins.module_utils import _alert_enrich as enrich
from ansible_collections.labops.itsm.plugins.module_utils import _platforms as platforms
from ansible_collections.labops.itsm.plugins.module_utils._errors import AuthError, CommunicationError, LabopsError, PolicyViolation
from ansible_collections.labops.itsm.plugins.module_utils._http import HAS_REQUESTS, REQUESTS_IMPORT_ERROR
from ansible_collections.labops.itsm.plugins.module_utils._ledger import LEDGER_CONNECTION_ARGSPEC, ledger_from_params
from ansible_collections.labops.itsm.plugins.module_utils._redact import REDACTED, scrub_string
from ansible_collections.labops.itsm.plugins.module_utils._sop import run_sop
from ansible_collections.labops.itsm.plugins.module_utils._spool import SPOOL_ARGSPEC, open_batch_spool

ACTIONS = ("created", "exists", "reopened", "updated", "suppressed", "resolved", "not_found", "already_resolved", "below_threshold",
           "group_firing")
# SOP halts that are outcomes of the alert path, not errors
OUTCOME_RULES = {("monitoring_intake", "below_threshold"): "below_threshold",
                 ("incident_resolve", "not_found"): "not_found",
                 ("incident_resolve", "wrong_state"): "already_resolved"}
# The platform cannot be used at all: the remaining events of that platform are failed without a request each.
OUTAGE_ERRORS = (CommunicationError, AuthError)
MAX_ERROR = 1000


def argument_spec():
    spec = dict(LEDGER_CONNECTION_ARGSPEC)
    spec.update(SPOOL_ARGSPEC)
    spec.update(
        actor=dict(type="str", default="automation", fallback=(env_fallback, ["LABOPS_ACTOR"])),
        actor_role=dict(type="str", default="automation", fallback=(env_fallback, ["LABOPS_ACTOR_ROLE"])),
        batch=dict(type="dict"),
        events=dict(type="list", elements="dict"),
        release=dict(type="bool", default=False),
        error=dict(type="str"),
        delay_note_after=dict(type="int", default=60),
        requests=dict(type="list", elements="dict"),
    )
    return spec


class Item:
    """One event to handle: its spool entry (or None), the event and the request the action plugin computed."""

    def __init__(self, entry, event, request):
        self.entry = entry
        self.event = event
        self.request = request or {}


class Intake:
    """Handles the events of one run with one adapter per platform, one ledger and (with a batch) one spool."""

    def __init__(self, module, ledger, spool=None, batch_id=None, now=time.time):
        self.module = module
        self.ledger = ledger
        self.spool = spool
        self.batch_id = batch_id
        self.now = now
        self.adapters = {}
        self.down = {}  # adapter key -> why the platform is not tried again in this run
        self.results = []

    # -- helpers ------------------------------------------------------------------------------

    def safe(self, text):
        """Error text without secrets: credential patterns scrubbed, every registered no_log value masked."""
        text = scrub_string(str(text))
        for secret in sorted((str(value) for value in self.module.no_log_values if value not in (None, "")), key=len, reverse=True):
            text = text.replace(secret, REDACTED)
        return text if len(text) <= MAX_ERROR else text[:MAX_ERROR - 3] + "..."

    @staticmethod
    def adapter_key(request):
        return json.dumps([request.get("platform"), request.get("platform_options") or {}], sort_keys=True, default=str)

    def adapter(self, request):
        key = self.adapter_key(request)
        if key not in self.adapters:
            self.adapters[key] = platforms.build_platform(request["platform"], request.get("platform_options"), warn=self.module.warn)
        return self.adapters[key].routed(request.get("queue"))

    def delay_note(self, entry):
        if entry is None:
            return None
        handled = self.now()
        late = handled - float(entry.accepted_at) > self.module.params["delay_note_after"]
        if not late and not entry.attempts:
            return None
        return enrich.delay_note(entry.accepted_at, handled, entry.attempts, self.safe(entry.last_error) if entry.last_error else None)

    @staticmethod
    def inputs_with_note(request, note):
        inputs = json.loads(json.dumps(request.get("inputs") or {}))
        if note is None:
            return inputs
        if request["sop"] == "monitoring_intake":
            event = inputs.setdefault("event", {})
            event["details"] = "{0}\n\n{1}".format(event["details"], note) if event.get("details") else note
        else:
            inputs["resolution_summary"] = "{0} {1}".format(inputs.get("resolution_summary") or "", note).strip()
        return inputs

    # -- one event ----------------------------------------------------------------------------

    def handle(self, item):
        request = item.request
        outcome = {"entry": item.entry.id if item.entry is not None else None,
                   "correlation_key": request.get("correlation_key") or _event_key(item.event),
                   "alert_status": request.get("status") or _event_status(item.event), "status": "done", "action": None,
                   "ticket": None, "platform": request.get("platform"), "queue": request.get("queue"), "changed": False,
                   "delayed": False, "error": None, "message": None}
        if request.get("hold") == "group_firing":
            outcome.update(action="group_firing", message="{0} {1} resolved; its group {2} still fires, so its incident stays open".format(
                request.get("alertname"), request.get("asset"), request.get("ticket_key")))
            return outcome
        if request.get("error") or not request.get("sop"):
            return self.failed(outcome, request.get("error") or "no request for this event: run the module through its action plugin")
        key = self.adapter_key(request)
        if key in self.down:
            return self.failed(outcome, self.down[key])
        note = self.delay_note(item.entry)
        outcome["delayed"] = note is not None
        try:
            platform = self.adapter(request)
            result = run_sop(request["sop"], self.inputs_with_note(request, note), actor=self.module.params["actor"],
                             role=self.module.params["actor_role"], platform=platform, ledger=self.ledger,
                             check_mode=self.module.check_mode, warn=self.module.warn,
                             log_fields={"job_id": self.batch_id, "alertname": request.get("alertname")})
        except PolicyViolation as exc:
            action = OUTCOME_RULES.get((request["sop"], exc.rule))
            if action is None:
                return self.failed(outcome, exc)
            outcome.update(action=action, message=self.message(request, action, None, exc))
            return outcome
        except OUTAGE_ERRORS as exc:
            self.down[key] = "not tried: {0} is unavailable in this run ({1})".format(request.get("platform"), self.safe(exc))
            return self.failed(outcome, exc)
        except LabopsError as exc:
            return self.failed(outcome, exc)
        for warning in result.pop("warnings", []):
            self.module.warn(warning)
        record = result.get("record") or {}
        if request["sop"] == "monitoring_intake":
            action = _intake_action(result)
            ticket = result.get("duplicate_of") or record.get("id")
        else:
            action, ticket = "resolved", record.get("id")
        outcome.update(action=action, ticket=ticket, changed=bool(result.get("changed")),
                       message=self.message(request, action, result, None))
        return outcome

    def failed(self, outcome, error):
        text = self.safe(error)
        outcome.update(status="failed", error=text, message="FAILED {0} {1}: {2}".format(
            outcome.get("alert_status") or "event", outcome.get("correlation_key"), text))
        return outcome

    def message(self, request, action, result, halt):
        name = "{0} {1}".format(request.get("alertname"), request.get("asset")).strip()
        if action in ("created", "exists"):
            record = result.get("record") or {}
            prefix = ("Would open" if self.module.check_mode else "Opened") if action == "created" else "Already recorded:"
            return "{0} incident {1} ({2}, {3}, queue {4}) for {5}".format(
                prefix, record.get("id") or result.get("duplicate_of") or "(new)", record.get("status"),
                record.get("severity_level") or "?", request.get("queue"), name)
        if action in ("reopened", "updated", "suppressed"):
            record = result.get("record") or {}
            what = {"reopened": "Reopened", "updated": "Updated", "suppressed": "Suppressed (won't fix: {0})".format(result.get("resolution"))}
            return "{0} incident {1} ({2}, queue {3}) for {4}".format(
                ("Would " + what[action].lower()) if self.module.check_mode and action != "suppressed" else what[action],
                result.get("duplicate_of"), record.get("status"), request.get("queue"), name)
        if action == "below_threshold":
            return "Below the intake threshold {0}, no incident: {1}".format(
                (request.get("inputs") or {}).get("min_severity"), self.safe(halt))
        if action == "resolved":
            record = result.get("record") or {}
            return "{0} incident {1} ({2}, {3} state {4}) for {5}".format(
                "Would resolve" if self.module.check_mode else "Resolved", record.get("id"),
                " + ".join(entry.get("action", "?") for entry in result.get("audit") or []), request.get("platform"),
                record.get("platform_state"), request.get("alertname"))
        return "WARNING: {0} resolved, but there is nothing to resolve: {1}".format(request.get("alertname"), self.safe(halt))

    # -- recording ----------------------------------------------------------------------------

    def record(self, item, outcome):
        """The outcome into the spool (batch runs, not in check mode); False from the spool -> skipped."""
        if self.spool is None or item.entry is None or self.module.check_mode:
            return outcome
        if outcome["status"] == "failed":
            owned = self.spool.fail(item.entry.id, self.batch_id, outcome["error"])
        else:
            owned = self.spool.complete(item.entry.id, self.batch_id,
                                        {"action": outcome["action"], "ticket": outcome["ticket"], "platform": outcome["platform"]})
        if not owned:
            outcome["status"] = "skipped"
            outcome["message"] = "skipped: batch {0} no longer owns entry {1} ({2})".format(self.batch_id, item.entry.id, outcome["message"])
        return outcome

    def run(self, items):
        for item in items:
            self.results.append(self.record(item, self.handle(item)))
        return self.results


def _intake_action(result):
    """The outcome of SOP 16: created, or what it did to the incident its key found (reopened, updated, suppressed, exists)."""
    if not result.get("duplicate_of"):
        return "created"
    return next((name for name in ("reopened", "updated", "suppressed") if result.get(name)), "exists")


def _event_key(event):
    return event.get("correlation_key") if isinstance(event, dict) else None


def _event_status(event):
    alert = event.get("alert") if isinstance(event, dict) else None
    return alert.get("status") if isinstance(alert, dict) else None


def counts_of(results):
    counts = dict.fromkeys(ACTIONS + ("failed", "skipped"), 0)
    for outcome in results:
        if outcome["status"] in ("failed", "skipped"):
            counts[outcome["status"]] += 1
        elif outcome["action"] in counts:
            counts[outcome["action"]] += 1
    return counts


def mask_platform_secrets(module, requests):
    """Register the secret platform options of every request before anything can echo them."""
    seen = set()
    for request in requests:
        if not request.get("platform"):
            continue
        key = Intake.adapter_key(request)
        if key in seen:
            continue
        seen.add(key)
        try:
            module.no_log_values.update(platforms.secret_values(request["platform"], request.get("platform_options")))
        except LabopsError:
            pass  # an unknown platform or malformed options: the event fails with that error when it is handled


def batch_spool(module):
    """The spool the batch names (backend and path from the batch event, the DSN from the options) and the batch id."""
    batch = module.params["batch"]
    batch_id = batch.get("id")
    if not isinstance(batch_id, str) or not batch_id:
        module.fail_json(msg="batch needs an id (the intake_batch event of the intake spool)")
    params = module.params
    return open_batch_spool(batch, params["spool_backend"], params["spool_path"], params.get("spool_dsn")), batch_id


def batch_items(spool, batch, requests):
    """The entries the batch still owns with their requests; ids listed by the batch but no longer owned."""
    by_entry = {request.get("entry"): request for request in requests if request.get("entry") is not None}
    entries = spool.entries_of(batch["id"])
    owned = {entry.id for entry in entries}
    gone = [int(entry_id) for entry_id in batch.get("entries") or [] if str(entry_id).isdigit() and int(entry_id) not in owned]
    return [Item(entry, entry.event, by_entry.get(entry.id)) for entry in entries], gone


def finish(module, results, extra):
    counts = counts_of(results)
    changed = any(outcome["changed"] for outcome in results)
    if extra.get("batch") and not module.check_mode:
        # recording an outcome in the spool is a change too
        changed = changed or any(outcome["entry"] is not None and outcome["status"] != "skipped" for outcome in results)
    failed = [outcome for outcome in results if outcome["status"] == "failed"]
    if failed:
        module.fail_json(msg="{0} of {1} alert event(s) failed; first: {2}".format(len(failed), len(results), failed[0]["error"]),
                         changed=changed, results=results, counts=counts, **extra)
    module.exit_json(changed=changed, results=results, counts=counts, **extra)


def run_release(module):
    spool, batch_id = batch_spool(module)
    with spool:
        error = module.params.get("error") or "the alert_batch run failed before it handled its batch"
        released = 0 if module.check_mode else spool.release(batch_id, scrub_string(error))
    module.exit_json(changed=released > 0, batch=batch_id, released=released, results=[], counts=counts_of([]))


def run_batch(module, ledger):
    spool, batch_id = batch_spool(module)
    with spool:
        try:
            # Held for the whole run: a daemon restarted meanwhile leaves this batch's entries to it (no double handling).
            if not module.check_mode:
                spool.hold_run(batch_id)
            items, gone = batch_items(spool, module.params["batch"], module.params.get("requests") or [])
            results = Intake(module, ledger, spool, batch_id).run(items)
        except Exception as exc:  # noqa: BLE001 pylint: disable=broad-except  # release first, then fail
            released = _release_after(spool, batch_id, exc)
            if isinstance(exc, LabopsError):
                kwargs = exc.fail_kwargs()
            else:
                kwargs = {"msg": f"alert_intake: unexpected {type(exc).__name__}: {scrub_string(str(exc))}", "exception": traceback.format_exc()}
            kwargs["msg"] = f"{kwargs['msg']} (batch {batch_id} released: {released} entries)"
            module.fail_json(batch=batch_id, released=released, **kwargs)
    for entry_id in gone:
        results.append({"entry": entry_id, "correlation_key": None, "alert_status": None, "status": "skipped", "action": None,
                        "ticket": None, "platform": None, "queue": None, "changed": False, "delayed": False, "error": None,
                        "message": f"skipped: batch {batch_id} no longer owns entry {entry_id}"})
    finish(module, results, {"batch": batch_id})


def _release_after(spool, batch_id, exc):
    try:
        return spool.release(batch_id, f"alert_intake: {type(exc).__name__}: {scrub_string(str(exc))}")
    except Exception:  # noqa: BLE001 pylint: disable=broad-except  # the spool itself is broken: the source's run timeout recovers
        return 0


def run_events(module, ledger):
    requests = module.params.get("requests") or []
    by_index = {request.get("index"): request for request in requests}
    items = [Item(None, event, by_index.get(index)) for index, event in enumerate(module.params["events"])]
    finish(module, Intake(module, ledger).run(items), {})


def main(module_class=AnsibleModule):
    """Run the module; the action plugin passes a controller-side module_class (plugin_utils/_controller_module.py)."""
    module = module_class(argument_spec=argument_spec(), supports_check_mode=True, mutually_exclusive=[("batch", "events")],
                          required_one_of=[("batch", "events")], required_if=[("release", True, ("batch",))])
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=REQUESTS_IMPORT_ERROR)
    try:
        mask_platform_secrets(module, module.params.get("requests") or [])
        if module.params["release"]:
            run_release(module)
        ledger = ledger_from_params(module.params)
        try:
            if module.params.get("batch") is not None:
                run_batch(module, ledger)
            run_events(module, ledger)
        finally:
            ledger.close()
    except LabopsError as exc:
        module.fail_json(**exc.fail_kwargs())


if __name__ == "__main__":
    main()
