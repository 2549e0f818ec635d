"""An in-memory TicketPlatform that behaves like a real one where the SOP engine can tell.

Faithful in what the contract suite checks: platform ids (``INC``/``PRB``/``CHG`` + 7 digits, assigned
in creation order), ``get`` of any entity by id (the engine checks the entity), values stored as given
with empty strings read back as None, entity filtering and newest-first ``search`` with the match applied
before the limit, ``find_by_correlation_key`` (incidents only, an active one before a closed one, newest
first), notes kept per record. Fault switches reproduce what the governed write must survive: a create
whose reply is lost after it was applied, a record that cannot be read back, an account that can create
but not search.
"""

import copy
import itertools

from ansible_collections.labops.itsm.plugins.module_utils._errors import AmbiguousWriteError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._platform import FOLLOW_UP_KEY, TicketPlatform
from ansible_collections.labops.itsm.plugins.module_utils._sop import RECORD_KEYS

PREFIX = {"incident": "INC", "problem": "PRB", "change_request": "CHG"}
LIST_KEYS = ("incident_links",)
INACTIVE = ("closed", "rejected")


def _stored(key, value):
    if key in LIST_KEYS:
        return [str(item) for item in value or []]
    return None if value in (None, "") else value


class FakePlatform(TicketPlatform):
    name = "fake"

    def __init__(self, queue="default"):
        self.queue = queue
        self.records = {}  # id -> stored record (IMS keys, id)
        self.notes = {}  # id -> [{subject, body, visible}]
        self.follow_ups = {}  # id -> the last FOLLOW_UP_KEY sent with a status
        self._order = []  # ids in creation order
        self._numbers = itertools.count(1)
        # fault switches
        self.lose_create_replies = 0  # the next N creates are applied, then raise AmbiguousWriteError
        # True: create returns None (the record cannot be read back); "identity": only what the platform replied, {id, entity}
        self.unreadable_after_create = False
        self.searchable = True  # False: searches answer nothing (an account without read permission)
        self.creates = 0  # creates applied

    # -- reading ---------------------------------------------------------------------------

    def _view(self, ref):
        return copy.deepcopy(self.records[ref])

    def get(self, entity, ref):
        ref = str(ref).strip()
        return self._view(ref) if ref in self.records else None

    def search(self, entity, *, active_only=False, limit=50, match=None):
        if not self.searchable:
            return []
        found = []
        for ref in reversed(self._order):
            record = self.records[ref]
            if record["entity"] != entity or (active_only and record.get("status") in INACTIVE):
                continue
            if match is None or match(self._view(ref)):
                found.append(self._view(ref))
                if len(found) >= limit:
                    break
        return found

    def find_by_correlation_key(self, key):
        if not self.searchable:
            return None
        carrying = [ref for ref in reversed(self._order)
                    if self.records[ref]["entity"] == "incident" and self.records[ref].get("correlation_key") == key]
        carrying.sort(key=lambda ref: self.records[ref].get("status") in INACTIVE)  # stable: active first, newest first
        return self._view(carrying[0]) if carrying else None

    # -- writing ---------------------------------------------------------------------------

    def _note(self, ref, note):
        if note:
            self.notes[ref].append({"subject": note["subject"], "body": note["body"] or note["subject"], "visible": bool(note.get("visible"))})

    def _apply(self, ref, values):
        for key, value in values.items():
            if key == FOLLOW_UP_KEY:
                self.follow_ups[ref] = value
            elif key in RECORD_KEYS:
                self.records[ref][key] = _stored(key, value)

    def create(self, entity, values, note):
        if entity not in PREFIX:
            raise ValidationError(f"fake: unknown entity {entity!r}")
        if not values.get("title"):
            raise ValidationError("fake: a record needs a title")
        ref = f"{PREFIX[entity]}{next(self._numbers):07d}"
        self.records[ref] = {key: [] if key in LIST_KEYS else None for key in RECORD_KEYS}
        self.records[ref]["id"] = ref
        self.notes[ref] = []
        self._order.append(ref)
        self._apply(ref, dict(values, entity=entity))
        self._note(ref, note)
        self.creates += 1
        if self.lose_create_replies:
            self.lose_create_replies -= 1
            raise AmbiguousWriteError("fake create: the reply was lost after the record was stored")
        if self.unreadable_after_create == "identity":
            return {"id": ref, "entity": entity}
        return None if self.unreadable_after_create else self._view(ref)

    def update(self, record, changes, note=None):
        ref = record["id"]
        if ref not in self.records:
            raise ValidationError(f"fake: {ref} does not exist")
        self._apply(ref, changes)
        self._note(ref, note)
        return self._view(ref)

    def add_note(self, record, note):
        self._note(record["id"], note)

    def unfindable_hint(self, record):
        return f"the fake account lacks read permission on {self.queue!r}"

    # -- test helpers ----------------------------------------------------------------------

    def snapshot(self):
        return copy.deepcopy((self.records, self.notes))
