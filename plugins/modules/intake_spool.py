#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: intake_spool
short_description: List, count, replay and purge the entries of the alert intake spool
version_added: 0.2.0
description:
  - The intake spool holds every alert event the C(labops.itsm.alertmanager) event source accepted until it is
    handled (see the collection's C(docs/intake.md)). Failed entries are retried with a back-off; after the retry
    period they stay as B(dead letters) until an operator replays them. This module is the operator's view of it.
  - O(action=list) returns entries (by default the dead letters) and O(action=stats) the number of entries per state.
    Both only read (C(changed) is always false); a SQLite spool that does not exist yet is reported empty and is not
    created.
  - "O(action=replay) queues dead letters again (all of them, or those named by O(ids) / O(correlation_key)): attempts
    start again at 0, a new retry period begins and the entry is due at once. The running intake daemon picks replayed
    entries up by itself (its dispatcher polls the spool); nothing else has to be restarted."
  - O(action=purge) deletes entries that were handled (state C(done)) more than O(older_than) seconds ago. A later
    repeat of a purged alert is handled again, idempotently.
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
      - O(action=replay) and O(action=purge) report what they would replay or delete.
  diff_mode:
    support: full
    details:
      - O(action=replay) shows the entries' state and attempts before and after, O(action=purge) the entries deleted.
seealso:
  - module: labops.itsm.alert_reconcile
options:
  action:
    description:
      - What to do. V(list) returns entries, V(stats) counts them, V(replay) queues dead letters again, V(purge) deletes old handled entries.
    type: str
    choices: [list, stats, replay, purge]
    default: list
  states:
    description:
      - With O(action=list), the entry states to list; an empty list lists entries in every state.
      - With O(action=replay), the states of the entries to queue again (V(dead), V(failed) or V(done)); replaying a
        V(done) entry handles its alert again.
      - Entry states are V(queued) (waiting for a run, possibly for its back-off), V(running) (owned by a playbook run),
        V(done) (handled), V(failed) (the last run failed; the retry policy queues it again or makes it a dead letter)
        and V(dead) (retries exhausted; waits for an operator).
    type: list
    elements: str
    choices: [queued, running, done, failed, dead]
    default: [dead]
  ids:
    description:
      - Only the entries with these ids (RV(entries[].id)).
    type: list
    elements: int
  correlation_key:
    description:
      - Only the entries of this alert episode.
    type: str
  limit:
    description:
      - With O(action=list), return at most this many entries (oldest first).
    type: int
    default: 100
  older_than:
    description:
      - With O(action=purge), delete entries handled more than this many seconds ago.
    type: int
    default: 604800
"""

EXAMPLES = r"""
- name: The dead letters (alert events whose handling failed for the whole retry period)
  labops.itsm.intake_spool:
    action: list
  register: dead

- name: Every entry of one alert episode, whatever its state
  labops.itsm.intake_spool:
    action: list
    states: []
    correlation_key: 3f9c2a7b1d0e4c55aa00bb11

- name: Counts per state and the age of the oldest unhandled entry
  labops.itsm.intake_spool:
    action: stats

- name: Replay every dead letter (the running daemon picks them up)
  labops.itsm.intake_spool:
    action: replay

- name: Replay two dead letters of a PostgreSQL spool
  labops.itsm.intake_spool:
    action: replay
    ids: [11, 12]
    spool_backend: postgresql
    spool_dsn: "{{ vault_spool_dsn }}"

- name: Forget entries handled more than 30 days ago
  labops.itsm.intake_spool:
    action: purge
    older_than: 2592000
"""

RETURN = r"""
entries:
  description:
    - O(action=list) the matching entries; O(action=replay) the entries replayed (would be replayed in check mode), as
      they were before. No secret is ever part of an entry.
  returned: action is list or replay
  type: list
  elements: dict
  contains:
    id:
      description: The entry's id (for O(ids)).
      type: int
      sample: 11
    correlation_key:
      description: The alert episode's correlation key.
      type: str
      sample: 3f9c2a7b1d0e4c55aa00bb11
    status:
      description: The alert status of the event, V(firing) or V(resolved).
      type: str
      sample: firing
    alertname:
      description: The alert's C(alertname) label (null when the event has none).
      type: str
      sample: PveGuestDown
    state:
      description: V(queued), V(running), V(done), V(failed) or V(dead).
      type: str
      sample: dead
    attempts:
      description: Failed runs so far.
      type: int
      sample: 9
    repeats:
      description: Repeats of the event (AlertManager re-sends) absorbed into this entry.
      type: int
      sample: 3
    accepted_at:
      description: When the event was accepted (or last revived), UTC ISO-8601.
      type: str
      sample: "2026-12-03T09:26:55Z"
    next_attempt:
      description: When a queued entry is due, UTC ISO-8601.
      type: str
      sample: "2026-12-03T09:31:55Z"
    handled_at:
      description: When the entry was handled (state V(done)), UTC ISO-8601; null otherwise.
      type: str
      sample: null
    last_error:
      description: Why the last run failed (null when none failed).
      type: str
      sample: "otobo search (POST /Ticket/Search): request failed: the connection was refused"
    result:
      description: The outcome a run recorded (C(action), C(ticket), C(platform)); null until handled.
      type: dict
      sample: {"action": "created", "ticket": "2026120310000011", "platform": "otobo"}
    origin:
      description: Who put the event into the spool, V(alertmanager), V(reconciliation), V(replay) or V(manual).
      type: str
      sample: alertmanager
stats:
  description: Entry counts per state, absorbed repeats and the age in seconds of the oldest entry not handled yet.
  returned: action is stats
  type: dict
  sample: {"entries": {"queued": 0, "running": 1, "done": 120, "failed": 0, "dead": 2}, "absorbed_repeats": 40,
           "oldest_unhandled_age": 12.5}
replayed:
  description: Ids of the entries queued again (that would be queued in check mode).
  returned: action is replay
  type: list
  elements: int
  sample: [11, 12]
purged:
  description: Number of handled entries deleted (that would be deleted in check mode).
  returned: action is purge
  type: int
  sample: 130
spool:
  description: Which spool was read (never a secret; no DSN).
  returned: always
  type: dict
  sample: {"backend": "sqlite", "path": "/home/eda/.local/state/labops/intake_spool.sqlite3"}
"""

import datetime
import os
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._spool import SPOOL_ARGSPEC, STATES, spool_from_params
from ansible_collections.labops.itsm.plugins.module_utils._time import format_time

REPLAYABLE = ("dead", "failed", "done")
EVERYTHING = 2 ** 31 - 1


def argument_spec():
    spec = dict(
        action=dict(type="str", default="list", choices=["list", "stats", "replay", "purge"]),
        states=dict(type="list", elements="str", default=["dead"], choices=list(STATES)),
        ids=dict(type="list", elements="int"),
        correlation_key=dict(type="str", no_log=False),
        limit=dict(type="int", default=100),
        older_than=dict(type="int", default=604800),
    )
    spec.update(SPOOL_ARGSPEC)
    return spec


def iso(epoch):
    """An epoch (float) as UTC ISO-8601 text, None for None."""
    if epoch is None:
        return None
    return format_time(datetime.datetime.fromtimestamp(float(epoch), datetime.timezone.utc))


def entry_view(entry):
    """What the operator sees of an entry: no event body (it is what AlertManager sent), no batch internals."""
    alert = entry.event.get("alert") if isinstance(entry.event, dict) else None
    labels = alert.get("labels") if isinstance(alert, dict) else None
    return dict(
        id=entry.id, correlation_key=entry.correlation_key, status=entry.status,
        alertname=labels.get("alertname") if isinstance(labels, dict) else None,
        state=entry.state, attempts=entry.attempts, repeats=entry.repeats, accepted_at=iso(entry.accepted_at),
        next_attempt=iso(entry.next_attempt) if entry.state == "queued" else None, handled_at=iso(entry.handled_at),
        last_error=entry.last_error, result=entry.result, origin=entry.origin,
    )


def spool_missing(params):
    """A SQLite spool that was never created: reads report it empty instead of creating it."""
    if (params.get("spool_backend") or "sqlite") != "sqlite":
        return False
    path = params.get("spool_path")
    return bool(path) and not os.path.exists(path)  # type path: already expanded


def select(spool, params, states, limit):
    """The entries in ``states`` (every state when empty) matching ids and correlation_key, oldest first."""
    entries = spool.list(states=list(states) or None, limit=limit if not params.get("ids") else EVERYTHING,
                         correlation_key=params.get("correlation_key"))
    if params.get("ids"):
        wanted = set(params["ids"])
        entries = [entry for entry in entries if entry.id in wanted][:limit]
    return entries


def empty_stats():
    return {"entries": dict.fromkeys(STATES, 0), "absorbed_repeats": 0, "oldest_unhandled_age": None}


def run(params, spool, check_mode=False, diff=False, now=None):
    """The module's result for ``params`` on ``spool`` (the caller opens and closes it)."""
    action = params["action"]
    location = spool.location()
    result = dict(changed=False, spool=location)
    missing = spool_missing(params)
    if action == "list":
        if params["limit"] < 1:
            raise ValidationError("limit must be a positive integer, got %d" % params["limit"])
        result["entries"] = [] if missing else [entry_view(entry) for entry in select(spool, params, params["states"], params["limit"])]
    elif action == "stats":
        result["stats"] = empty_stats() if missing else spool.stats(now=now)
    elif action == "replay":
        result.update(replay(params, spool, check_mode, diff, missing, now))
    else:
        result.update(purge(params, spool, check_mode, diff, missing, now))
    return result


def replay(params, spool, check_mode, diff, missing, now):
    states = list(params["states"] or ["dead"])
    wrong = [state for state in states if state not in REPLAYABLE]
    if wrong:
        raise ValidationError("replay queues dead, failed or done entries again, not %s" % ", ".join(wrong))
    candidates = [] if missing else select(spool, params, states, EVERYTHING)
    if check_mode or not candidates:
        chosen = [entry.id for entry in candidates]
    elif params.get("ids") is None and not params.get("correlation_key"):
        chosen = spool.replay(states=states, now=now)  # every one, also those accepted since the selection
    else:
        chosen = spool.replay(ids=[entry.id for entry in candidates], states=states, now=now)
    before = {entry.id: entry for entry in candidates}
    replayed = sorted(chosen)
    if not check_mode:
        missed = [entry_id for entry_id in replayed if entry_id not in before]
        before.update((entry.id, entry) for entry in spool.get(missed))
    result = dict(changed=bool(replayed), replayed=replayed, entries=[entry_view(before[entry_id]) for entry_id in replayed if entry_id in before])
    if diff:
        result["diff"] = {
            "before": {str(entry_id): {"state": before[entry_id].state, "attempts": before[entry_id].attempts} for entry_id in replayed if entry_id in before},
            "after": {str(entry_id): {"state": "queued", "attempts": 0} for entry_id in replayed},
        }
    return result


def purge(params, spool, check_mode, diff, missing, now):
    if params["older_than"] < 0:
        raise ValidationError("older_than must be 0 or more seconds, got %d" % params["older_than"])
    now = time.time() if now is None else now
    cutoff = now - params["older_than"]
    candidates = [] if missing else [entry for entry in spool.list(states=["done"], limit=EVERYTHING)
                                     if entry.handled_at is not None and float(entry.handled_at) < cutoff]
    if check_mode or not candidates:
        count = len(candidates)
    else:
        count = spool.purge(params["older_than"], now=now)
    result = dict(changed=bool(count), purged=count)
    if diff and count:
        result["diff"] = {"before": {str(entry.id): {"state": "done", "correlation_key": entry.correlation_key, "status": entry.status,
                                                     "handled_at": iso(entry.handled_at)} for entry in candidates},
                          "after": {}}
    return result


def main(module_class=AnsibleModule):
    """Run the module; the action plugin passes a controller-side module_class (plugin_utils/_controller_module.py)."""
    module = module_class(argument_spec=argument_spec(), supports_check_mode=True)
    spool = None
    try:
        spool = spool_from_params(module.params)
        result = run(module.params, spool, check_mode=module.check_mode, diff=module._diff)  # pylint: disable=protected-access
    except LabopsError as exc:
        module.fail_json(**exc.fail_kwargs())
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    finally:
        if spool is not None:
            spool.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
