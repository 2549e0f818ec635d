# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reconciliation of AlertManager's alerts with the open incidents: what ``alert_reconcile`` enqueues.

A notification AlertManager never delivered (a resolve lost after a 2xx is never sent again, an alert resolved
inside ``group_wait`` is never sent at all, a receiver that was down for longer than the flush) leaves an incident
open for an alert that is gone, or an alert without an incident. Reconciliation compares AlertManager's current
alerts (``GET /api/v2/alerts``) with the open monitoring incidents of the ticket platforms and puts synthetic events
into the intake spool (origin ``reconciliation``); the intake daemon's dispatcher then handles them like any other
event (idempotently: a firing event for an incident that exists changes nothing).

AlertManager's v2 API lists the alerts it holds that are not resolved (``endsAt`` zero or in the future), in every
state: ``active``, ``suppressed`` (``silencedBy`` / ``inhibitedBy`` not empty) and ``unprocessed`` (not yet seen by
the dispatcher); the ``active``, ``silenced``, ``inhibited`` and ``unprocessed`` query filters all default to true
and are sent explicitly. A silenced or inhibited alert still fires: its incident stays open. Timestamps come with
milliseconds (``...:25.000Z``); the correlation key uses the canonical form, so it equals the webhook's.

Internal interface (leading underscore): it may change between releases.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import datetime
import hashlib
import re
import uuid
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ansible_collections.labops.itsm.plugins.module_utils._correlation import FINGERPRINT_RE, alert_ticket_key, correlation_key, source_event_uuid
from ansible_collections.labops.itsm.plugins.module_utils._errors import UnexpectedResponseError
from ansible_collections.labops.itsm.plugins.module_utils._http import HttpClient, RetryPolicy
from ansible_collections.labops.itsm.plugins.module_utils._platform import is_correlation_key
from ansible_collections.labops.itsm.plugins.module_utils._policy import MONITORING_SOURCES
from ansible_collections.labops.itsm.plugins.module_utils._time import format_time, parse_time

ALERTS_PATH = "/api/v2/alerts"
STATUS_PATH = "/api/v2/status"
# Every alert AlertManager holds, whatever its state (the API's defaults, sent explicitly).
ALERT_FILTERS = {"active": "true", "silenced": "true", "inhibited": "true", "unprocessed": "true"}
# A firing alert's endsAt as the webhook (and so the event source) carries it.
FIRING_ENDS_AT = "0001-01-01T00:00:00Z"
CLOSED_STATUSES = ("resolved", "closed")
ORIGIN = "reconciliation"
GROUP_KEY_PREFIX = "labops.itsm/reconciliation:"
# "[S1] PveGuestDown erp-db-02: ..." (the incident_open playbook's title): the alertname of an incident without one.
_TITLE_ALERTNAME = re.compile(r"^\[S[0-9]\] (\S+)")


class AlertManagerClient:
    """AlertManager's v2 API over the collection's HTTP client (its timeouts, TLS and retry policy)."""

    def __init__(self, url: str, *, username: Optional[str] = None, password: Optional[str] = None, token: Optional[str] = None,
                 validate_certs: bool = True, ca_path: Optional[str] = None, timeout: float = 30, retry: Optional[RetryPolicy] = None,
                 sleep: Optional[Callable[[float], None]] = None) -> None:
        headers = {"Authorization": "Bearer " + token} if token else None
        auth = (username, password or "") if username else None
        kwargs = {} if sleep is None else {"sleep": sleep}
        self.http = HttpClient("alertmanager", url, validate_certs=validate_certs, ca_path=ca_path, timeout=timeout, retry=retry,
                               headers=headers, auth=auth, **kwargs)
        self.url = self.http.base_url
        for secret in (password, token):
            self.http.register_secret(secret)

    def alerts(self) -> List[dict]:
        data = self.http.request("GET", ALERTS_PATH, operation="list alerts", params=ALERT_FILTERS).json()
        if not isinstance(data, list):
            raise UnexpectedResponseError("alertmanager list alerts (GET %s): expected a JSON list of alerts, got %s" % (ALERTS_PATH, type(data).__name__))
        return data

    def started_at(self) -> Optional[datetime.datetime]:
        """When the AlertManager process started (``uptime`` of /api/v2/status); None when it does not say."""
        data = self.http.request("GET", STATUS_PATH, operation="status").json()
        uptime = data.get("uptime") if isinstance(data, dict) else None
        try:
            return parse_time(uptime, "uptime")
        except ValueError:
            return None

    def close(self) -> None:
        self.http.close()


class AmAlert:
    """One alert of ``GET /api/v2/alerts`` (a ``gettableAlert``)."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw
        self.fingerprint = raw["fingerprint"]
        self.starts_at = raw["startsAt"]
        self.key = correlation_key(self.fingerprint, self.starts_at)
        self.ticket_keys = (self.key, alert_ticket_key(self.fingerprint))  # the keys of its ticket (per episode, per alert)
        self.labels = {str(k): str(v) for k, v in (raw.get("labels") or {}).items()}
        self.annotations = {str(k): str(v) for k, v in (raw.get("annotations") or {}).items()}
        self.generator_url = raw.get("generatorURL") or ""
        raw_status = raw.get("status")
        status = raw_status if isinstance(raw_status, dict) else {}  # type: Dict[str, Any]
        self.state = status.get("state") or "unprocessed"
        self.silenced_by = list(status.get("silencedBy") or [])
        self.inhibited_by = list(status.get("inhibitedBy") or [])
        self.receivers = [str(r["name"]) for r in raw.get("receivers") or [] if isinstance(r, dict) and r.get("name")]  # type: List[str]

    @property
    def alertname(self) -> Optional[str]:
        return self.labels.get("alertname")

    @property
    def active(self) -> bool:
        """Firing and neither silenced nor inhibited (state ``active``; ``unprocessed`` is not routed yet)."""
        return self.state == "active" and not self.silenced_by and not self.inhibited_by


def parse_alerts(raw_alerts: Sequence[Any]) -> Tuple[List[AmAlert], List[str]]:
    """The alerts, and a note per item that is not an alert with a fingerprint and an RFC 3339 startsAt (skipped)."""
    alerts, problems = [], []  # type: List[AmAlert], List[str]
    for index, raw in enumerate(raw_alerts):
        try:
            if not isinstance(raw, dict):
                raise TypeError("not an object")
            alerts.append(AmAlert(raw))
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            problems.append("alertmanager alert %d skipped: %s" % (index, exc))
    return alerts, problems


def is_alert_incident(record: Mapping[str, Any]) -> bool:
    """An open incident the alert path opened: a correlation key, detected by monitoring, not resolved or closed."""
    return (is_correlation_key(record.get("correlation_key")) and record.get("detection_source") in MONITORING_SOURCES
            and record.get("status") not in CLOSED_STATUSES)


def _iso(moment: datetime.datetime) -> str:
    return str(format_time(moment))


def firing_event(alert: AmAlert, external_url: str) -> dict:
    """The event the source would have emitted for ``alert`` in a notification of its own (one alert, group key synthetic)."""
    group_key = GROUP_KEY_PREFIX + alert.fingerprint
    return {
        "alert": {"status": "firing", "fingerprint": alert.fingerprint, "startsAt": alert.starts_at, "endsAt": FIRING_ENDS_AT,
                  "labels": dict(alert.labels), "annotations": dict(alert.annotations), "generatorURL": alert.generator_url},
        "group": {"key": group_key, "key_hash": hashlib.sha256(group_key.encode("utf-8")).hexdigest(), "status": "firing",
                  "receiver": alert.receivers[0] if alert.receivers else "", "notification_reason": ORIGIN, "external_url": external_url,
                  "truncated_alerts": 0, "labels": {}, "common_labels": dict(alert.labels), "common_annotations": dict(alert.annotations)},
        "correlation_key": alert.key,
        "meta": {"uuid": source_event_uuid(group_key, alert.fingerprint, "firing", alert.starts_at)},
    }


def _record_alertname(record: Mapping[str, Any]) -> Optional[str]:
    if record.get("alertname"):
        return str(record["alertname"])
    match = _TITLE_ALERTNAME.match(str(record.get("title") or ""))
    return match.group(1) if match else None


def resolved_event(key: str, firing: Optional[Mapping[str, Any]], record: Mapping[str, Any], now: datetime.datetime) -> dict:
    """A synthetic resolve of the episode ``key``: the spool's firing event turned resolved (ended now), else a minimal event."""
    if firing is not None and isinstance(firing.get("alert"), dict):
        event = copy.deepcopy(dict(firing))
        alert = event["alert"]
        alert.update(status="resolved", endsAt=_iso(now))
        group = event.get("group")
        if isinstance(group, dict):
            group.update(status="resolved", notification_reason=ORIGIN)
        meta = dict(event.get("meta") or {})
        try:
            meta["uuid"] = source_event_uuid(str((group or {}).get("key") or GROUP_KEY_PREFIX), alert["fingerprint"], "resolved", alert["startsAt"])
        except (KeyError, TypeError, ValueError):
            meta["uuid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, "labops.itsm:reconciliation:%s|resolved" % key))
        event.update(meta=meta, correlation_key=key)
        return event
    minimal = {"status": "resolved", "labels": {}, "endsAt": _iso(now)}  # type: Dict[str, Any]
    if isinstance(record.get("fingerprint"), str) and FINGERPRINT_RE.fullmatch(record["fingerprint"]):
        minimal["fingerprint"] = record["fingerprint"]
    alertname = _record_alertname(record)
    if alertname:
        minimal["labels"]["alertname"] = alertname
    opened = parse_time(record.get("opened_at"), "opened_at") if record.get("opened_at") else None
    minimal["startsAt"] = _iso(opened) if opened else None
    return {"correlation_key": key, "alert": minimal, "meta": {"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, "labops.itsm:reconciliation:%s|resolved" % key))}}


class Plan:
    """What one reconciliation run found and would enqueue."""

    def __init__(self) -> None:
        self.events = []  # type: List[dict]
        self.enqueued = []  # type: List[dict]
        self.skipped = {}  # type: Dict[str, int]
        self.counts = {"alerts": 0, "alerts_active": 0, "incidents_open": 0, "resolved": 0, "firing": 0}
        self.warnings = []  # type: List[str]

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def add(self, event: dict, reason: str, action: str, **extra: Any) -> None:
        self.events.append(event)
        alert = event.get("alert") or {}
        entry = dict(correlation_key=event["correlation_key"], status=alert.get("status"), alertname=(alert.get("labels") or {}).get("alertname"),
                     reason=reason, action=action)
        entry.update(extra)
        self.enqueued.append(entry)
        self.counts[str(alert.get("status"))] += 1


def _spool_entries(spool: Any, key: str) -> Dict[str, Any]:
    """The spool's entries of episode ``key`` by status."""
    return {entry.status: entry for entry in spool.list(correlation_key=key, limit=10)}


def plan(*, alerts: Sequence[AmAlert], incidents: Sequence[Tuple[Any, ...]], spool: Any, now: datetime.datetime,
         resolve_after: float, open_after: float, am_started_at: Optional[datetime.datetime] = None,
         receiver: Optional[str] = None, external_url: str = "") -> Plan:
    """Compare ``alerts`` (all of AlertManager's) with the open ``incidents`` ((platform, record[, alert grouping])) and the spool."""
    result = Plan()
    result.counts["alerts"] = len(alerts)
    am_keys = {key for alert in alerts for key in alert.ticket_keys}
    open_keys = set()
    fresh_am = am_started_at is not None and (now - am_started_at).total_seconds() < resolve_after
    if fresh_am:
        result.warnings.append("AlertManager started %ds ago (less than resolve_after=%ds): it may not know every firing alert yet, no incident "
                               "is resolved by this run" % ((now - am_started_at).total_seconds(), resolve_after))  # type: ignore[operator]
    for entry in incidents:
        platform_name, record = entry[0], entry[1]
        grouping = entry[2] if len(entry) > 2 else "episode"
        key = record["correlation_key"]
        if key in open_keys:
            continue  # the same episode on a second platform entry (two queues of one platform): one resolve
        open_keys.add(key)
        result.counts["incidents_open"] += 1
        if key in am_keys:
            result.skip("incident_alert_present")
            continue
        if grouping != "episode":
            # A ticket per alert or per group outlives one episode: its key names no episode to resolve, and a group's key
            # is not derivable from AlertManager's alert list. The alert path resolves it; reconciliation leaves it alone.
            result.skip("incident_per_" + grouping)
            continue
        opened = parse_time(record.get("opened_at"), "opened_at") if record.get("opened_at") else None
        if opened is None or (now - opened).total_seconds() < resolve_after:
            result.skip("incident_too_recent")
            continue
        if fresh_am:
            result.skip("alertmanager_recently_started")
            continue
        entries = _spool_entries(spool, key)
        existing = entries.get("resolved")
        if existing is not None and existing.state != "dead":
            result.skip("resolve_in_spool_" + existing.state)
            continue
        firing = entries.get("firing")
        event = resolved_event(key, firing.event if firing is not None else None, record, now)
        result.add(event, "incident %s open, its alert is no longer in AlertManager" % record.get("id"), "revive" if existing is not None else "new",
                   platform=platform_name, incident=record.get("id"), from_spool=firing is not None)
    matcher = re.compile("^(?:" + receiver + ")$") if receiver else None
    for alert in alerts:
        if not alert.active:
            result.skip("alert_" + ("suppressed" if alert.silenced_by or alert.inhibited_by or alert.state == "suppressed" else alert.state))
            continue
        result.counts["alerts_active"] += 1
        if matcher is not None and not any(matcher.match(name) for name in alert.receivers):
            result.skip("alert_other_receiver")
            continue
        started = parse_time(alert.starts_at, "startsAt")
        if started is None or (now - started).total_seconds() < open_after:
            result.skip("alert_too_recent")
            continue
        if any(key in open_keys for key in alert.ticket_keys):
            result.skip("alert_incident_open")
            continue
        existing = _spool_entries(spool, alert.key).get("firing")
        if existing is not None:
            result.skip("alert_in_spool_" + existing.state)
            continue
        result.add(firing_event(alert, external_url), "alert active for %ds, not in the spool and no open incident" % (now - started).total_seconds(), "new")
    return result


def open_incidents(platforms: Sequence[Tuple[Any, ...]], limit: int) -> List[Tuple[Any, ...]]:
    """The open alert incidents of every platform entry ((name, platform) or (name, platform, alert grouping)), as
    (platform name, record, alert grouping)."""
    found = []
    for entry in platforms:
        name, platform = entry[0], entry[1]
        grouping = entry[2] if len(entry) > 2 else "episode"
        for record in platform.search("incident", active_only=True, limit=limit, match=is_alert_incident):
            found.append((name, record, grouping))
    return found
