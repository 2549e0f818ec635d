#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ims_audit
short_description: Append to, verify and export the hash-chained IMS audit ledger
version_added: 0.1.0
description:
  - Appends records to the IMS audit ledger, verifies its hash chain and exports it as JSON Lines.
  - Every record is C({seq, ts, action, ref_type, ref_id, actor, role, sop, platform, fields, meta, prev_hash, hash}).
    C(hash) is the SHA-256 of the record's canonical JSON (without C(hash)) and C(prev_hash) the hash of the previous
    record, so a changed, deleted or reordered record breaks the chain.
  - Secrets in O(fields) and O(meta) (keys such as C(password), C(token), C(authorization); bearer tokens,
    C(Authorization:) lines and C(user:password@) in URLs inside strings) are replaced by C(********) before anything
    is written. Meta strings are cut to 512 characters and a record is kept under 8 KiB (seed 002, record minimal meta).
  - Appending is not idempotent; every run of O(state=present) writes a new record. Set O(record_key) to make the
    append idempotent, or use C(changed_when) if that is not wanted.
  - Governed modules such as M(labops.itsm.otobo_ticket) write to the same ledger themselves; this module records
    actions taken outside them (for example V(review), V(simulation), V(tool_use)).
author:
  - labops.itsm developers (@labops)
extends_documentation_fragment:
  - labops.itsm.ledger
  - labops.itsm.attributes
attributes:
  check_mode:
    support: full
    details:
      - O(state=present) returns the record it would write (its RV(record.seq) and RV(record.prev_hash) are those of the
        current chain head) and writes nothing; a ledger that does not exist yet is not created.
      - O(state=exported) reports whether O(dest) or the anchor file would change without writing either.
  diff_mode:
    support: partial
    details:
      - Only O(state=present) returns a diff (the appended record as C(after)).
  action_group:
    description: Use C(group/labops.itsm.ledger) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - labops.itsm.ledger
seealso:
  - module: labops.itsm.ims_audit_info
  - module: labops.itsm.otobo_ticket
options:
  state:
    description:
      - V(present) appends one record (a new one on every run unless O(record_key) is set).
      - V(verify) walks the whole chain and fails when a link is broken, unless O(fail_on_broken=false). With O(anchor) or
        O(anchor_file) the anchored record must still be in the chain; with O(expect_records=true) a missing or empty ledger
        fails. It never writes and never creates a ledger.
      - V(exported) writes every record as one canonical JSON line to O(dest) (mode C(0600)) and, when the exported chain
        verifies, the anchor of the export (seq and hash of its last record) to O(anchor_file). An existing anchor file is
        checked first, so an export never replaces the anchor of a ledger that lost its anchored records.
    type: str
    choices: [present, verify, exported]
    default: present
  action:
    description:
      - The audited action, one of the IMS policy's audit actions. Required with O(state=present).
    type: str
    choices: [identify, create, read, update, notify, escalate, resolve, close, review, kb_update, vendor_engagement, simulation, tool_use, link]
  ref_type:
    description:
      - Type of the referenced record, for example V(incident), V(problem), V(change) or V(kb_article).
      - Required with O(state=present).
    type: str
  ref_id:
    description:
      - Identifier of the referenced record (for example the ticket number). Required with O(state=present).
    type: str
  fields:
    description:
      - "Field deltas, C({name: {before: ..., after: ...}}). Values of secret-looking field names are masked."
    type: dict
  meta:
    description:
      - Minimal context (seed 002). No raw log dumps; strings are cut to 512 characters.
    type: dict
  sop:
    description:
      - The standard operating procedure the action belongs to, for example V(incident_closure).
    type: str
  platform:
    description:
      - The platform the action was taken on, for example V(otobo).
    type: str
  record_key:
    description:
      - Caller-chosen unique key that makes O(state=present) idempotent.
      - If a record with this key exists, nothing is written, C(changed=false) and RV(record) is the existing record.
      - Stored as C(meta.record_key).
    type: str
  fail_on_broken:
    description:
      - With O(state=verify), fail the task when the chain is broken. With V(false) the result is only reported.
      - With O(state=exported), fail without writing anything when the exported chain is broken or does not contain the
        anchor. With V(false) the export is still written (for forensics), the anchor file is not.
    type: bool
    default: true
  dest:
    description:
      - File to write with O(state=exported). Written atomically; C(changed) only when its content differs.
    type: path
  anchor:
    description:
      - "A record the chain must still contain, C({seq: N, hash: H}), typically RV(anchor) of an earlier export."
      - With O(state=verify) the task fails when the ledger has no record O(anchor.seq) (records were deleted at the end,
        even if the chain head metadata was rewritten to match), when that record's hash differs, or when the ledger is
        missing or empty although O(anchor.seq) is above 0.
      - With O(state=exported) the exported chain must contain it before a new anchor is written.
      - Mutually exclusive with O(anchor_file).
    type: dict
    suboptions:
      seq:
        description: Sequence number of the anchored record (V(0) anchors an empty ledger).
        type: int
        required: true
      hash:
        description: The anchored record's hash (64 hexadecimal characters).
        type: str
        required: true
  anchor_file:
    description:
      - With O(state=verify), read the anchor from this file and verify as with O(anchor). The file is an anchor file
        written by O(state=exported), or a JSON Lines export itself (its last record is the anchor). A missing or
        unreadable file fails the task.
      - With O(state=exported), where the anchor of the export is written (mode C(0600)); default O(dest) followed by
        C(.anchor.json). When the file exists, the exported chain must contain the anchor it holds before it is replaced;
        delete it on purpose to start a new chain (for example a new ledger per retention period).
      - Keep a copy where whoever can write the ledger cannot rewrite it (another host, write-once storage).
      - Mutually exclusive with O(anchor).
    type: path
  expect_records:
    description:
      - With O(state=verify), fail when the ledger does not exist or holds no records. Without it (and without an
        anchor), a missing ledger verifies as empty, which a ledger that was deleted or wiped would too.
    type: bool
    default: false
notes:
  - Concurrent runs (parallel playbooks, EDA jobs) may append to one ledger; writers are serialised by the database
    (SQLite C(BEGIN IMMEDIATE), PostgreSQL advisory lock), so no record is lost and the chain stays linear.
"""

EXAMPLES = r"""
- name: Record a post-incident review
  labops.itsm.ims_audit:
    action: review
    ref_type: incident
    ref_id: "2025061110000421"
    sop: post_incident_review
    platform: otobo
    meta:
      pir_document: https://wiki.example.com/pir/2025-06-11
    record_key: "pir-2025061110000421"
  delegate_to: localhost

- name: Record a field change made by hand
  labops.itsm.ims_audit:
    action: update
    ref_type: incident
    ref_id: "2025061110000421"
    actor: jdoe
    actor_role: incident_manager
    fields:
      priority:
        before: medium
        after: high
  delegate_to: localhost

- name: Verify the chain (fails when a record was changed, deleted or reordered)
  labops.itsm.ims_audit:
    state: verify
  delegate_to: localhost

- name: Export the ledger kept in PostgreSQL for archiving (also writes /var/backups/labops/ims_audit.jsonl.anchor.json)
  labops.itsm.ims_audit:
    state: exported
    dest: /var/backups/labops/ims_audit.jsonl
    ledger_backend: postgresql
    ledger_dsn: "{{ vault_ledger_dsn }}"
  delegate_to: localhost

- name: Verify against the anchor of the last export (fails when records were deleted or rewritten since)
  labops.itsm.ims_audit:
    state: verify
    anchor_file: /var/backups/labops/ims_audit.jsonl.anchor.json
    ledger_backend: postgresql
    ledger_dsn: "{{ vault_ledger_dsn }}"
  delegate_to: localhost

- name: Verify against an anchor kept elsewhere, and fail on a missing or empty ledger
  labops.itsm.ims_audit:
    state: verify
    expect_records: true
    anchor:
      seq: 1200
      hash: 3168d9668ac5a117137d11e0769708b4622eb265305303d3a6190761883bd4c4
  delegate_to: localhost
"""

RETURN = r"""
record:
  description:
    - The appended record (in check mode the record that would be appended; with an existing O(record_key) the stored one).
  returned: when O(state=present)
  type: dict
  contains:
    seq:
      description: Position in the chain, starting at 1.
      type: int
      sample: 42
    ts:
      description: UTC time of the append, ISO-8601 with microseconds.
      type: str
      sample: "2025-06-11T10:21:07.123456Z"
    action:
      description: The audited action.
      type: str
      sample: review
    ref_type:
      description: Type of the referenced record.
      type: str
      sample: incident
    ref_id:
      description: Identifier of the referenced record.
      type: str
      sample: "2025061110000421"
    actor:
      description: Who performed the action.
      type: str
      sample: automation
    role:
      description: Role of the actor.
      type: str
      sample: automation
    sop:
      description: Standard operating procedure, if given.
      type: str
      sample: post_incident_review
    platform:
      description: Platform, if given.
      type: str
      sample: otobo
    fields:
      description: "Field deltas C({name: {before, after}}), secrets masked."
      type: dict
      sample: {"priority": {"before": "medium", "after": "high"}}
    meta:
      description: Minimised context, secrets masked; holds C(record_key) when one was given.
      type: dict
      sample: {"record_key": "pir-2025061110000421"}
    prev_hash:
      description: Hash of the previous record (64 zeros for the first record).
      type: str
      sample: "0000000000000000000000000000000000000000000000000000000000000000"
    hash:
      description: SHA-256 of the canonical JSON of this record without C(hash).
      type: str
      sample: "3168d9668ac5a117137d11e0769708b4622eb265305303d3a6190761883bd4c4"
verification:
  description: Result of walking the chain.
  returned: when O(state=verify)
  type: dict
  contains:
    ok:
      description: Whether every link is intact.
      type: bool
      sample: true
    count:
      description: Number of records in the ledger.
      type: int
      sample: 1200
    first_broken:
      description: The first broken link, or null.
      type: dict
      sample: null
    head_seq:
      description: Sequence number of the chain head kept in the ledger metadata (null when that metadata is missing).
      type: int
      sample: 1200
    head_hash:
      description: Hash of the chain head kept in the ledger metadata (null when that metadata is missing).
      type: str
      sample: "3168d9668ac5a117137d11e0769708b4622eb265305303d3a6190761883bd4c4"
    exists:
      description: Whether the ledger exists (a SQLite file or PostgreSQL tables that were written to).
      type: bool
      sample: true
    anchor:
      description:
        - The anchor verified against (null without O(anchor) or O(anchor_file)), and whether the chain contains it.
      type: dict
      sample: {"seq": 1200, "hash": "3168d9668ac5a117137d11e0769708b4622eb265305303d3a6190761883bd4c4", "ok": true}
first_broken:
  description:
    - The first broken link (null when the chain is intact).
    - RV(first_broken.reason) is V(content_changed) (hash mismatch), V(deleted) (seq gap, or records missing at the end),
      V(reordered) (a record stored under another seq than it was written with), V(broken_link) (prev_hash mismatch),
      V(head_mismatch) (the chain head metadata disagrees with the last record), V(metadata_missing) (the chain head
      metadata was deleted or overwritten), V(missing) (no ledger, or a table of it dropped), V(empty) (no records),
      V(anchor_missing) (the ledger ends before the anchored seq) or V(anchor_mismatch) (the anchored record was replaced).
  returned: when O(state=verify) or O(state=exported)
  type: dict
  sample: {"seq": 17, "reason": "content_changed", "message": "record content changed: the hash of seq 17 does not match its content"}
  contains:
    seq:
      description: Sequence number of the first broken link (for deletions, the first missing seq).
      type: int
      sample: 17
    reason:
      description: Machine-readable reason.
      type: str
      sample: content_changed
    message:
      description: Human-readable explanation.
      type: str
      sample: "record content changed: the hash of seq 17 does not match its content"
dest:
  description: Absolute path of the export.
  returned: when O(state=exported)
  type: str
  sample: /var/backups/labops/ims_audit.jsonl
count:
  description: Number of records exported.
  returned: when O(state=exported)
  type: int
  sample: 1200
anchor:
  description:
    - The anchor of the export (seq and hash of its last record; seq V(0) for an empty ledger), as written to RV(anchor_file).
      Null when the exported chain is broken (no anchor is written then).
    - Pass it as O(anchor) to a later O(state=verify), or keep the anchor file.
  returned: when O(state=exported)
  type: dict
  sample: {"seq": 1200, "hash": "3168d9668ac5a117137d11e0769708b4622eb265305303d3a6190761883bd4c4"}
anchor_file:
  description: Absolute path of the anchor file.
  returned: when O(state=exported)
  type: str
  sample: /var/backups/labops/ims_audit.jsonl.anchor.json
"""

import hashlib
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError
from ansible_collections.labops.itsm.plugins.module_utils._ledger import (
    ACTIONS,
    ANCHOR_SUFFIX,
    HAS_PSYCOPG,
    LEDGER_ARGSPEC,
    PSYCOPG_IMPORT_ERROR,
    anchor_document,
    ledger_from_params,
    read_anchor_file,
)


def argument_spec():
    spec = dict(
        state=dict(type="str", choices=["present", "verify", "exported"], default="present"),
        action=dict(type="str", choices=list(ACTIONS)),
        ref_type=dict(type="str"),
        ref_id=dict(type="str"),
        fields=dict(type="dict"),
        meta=dict(type="dict"),
        sop=dict(type="str"),
        platform=dict(type="str"),
        record_key=dict(type="str", no_log=False),
        fail_on_broken=dict(type="bool", default=True),
        dest=dict(type="path"),
        anchor=dict(type="dict", options=dict(seq=dict(type="int", required=True), hash=dict(type="str", required=True, no_log=False))),
        anchor_file=dict(type="path"),
        expect_records=dict(type="bool", default=False),
    )
    spec.update(LEDGER_ARGSPEC)
    return spec


REQUIRED_IF = [
    ("state", "present", ("action", "ref_type", "ref_id")),
    ("state", "exported", ("dest",)),
]
MUTUALLY_EXCLUSIVE = [("anchor", "anchor_file")]


def ensure_present(ledger, params, check_mode):
    """Append (or, in check mode, predict) one record: ``(changed, record, diff)``."""
    args = (params["action"], params["ref_type"], params["ref_id"], params["actor"])
    kwargs = dict(role=params["actor_role"], sop=params["sop"], platform=params["platform"],
                  fields=params["fields"], meta=params["meta"], record_key=params["record_key"])
    if check_mode:
        changed, record = ledger.preview(*args, **kwargs)
    else:
        changed, record = ledger.append_once(*args, **kwargs)
    diff = dict(before={} if changed else record, after=record)
    return changed, record, diff


def _raise_broken(ledger, verification, what="is broken"):
    broken = verification["first_broken"]
    raise LabopsError(
        "audit ledger %s %s at seq %s (%s): %s" % (ledger.describe(), what, broken["seq"], broken["reason"], broken["message"]),
        verification=verification,
        first_broken=broken,
    )


def ensure_verified(ledger, params):
    """Walk the chain (against the anchor, if any); raise when broken and ``fail_on_broken``."""
    anchor = params["anchor"] or (read_anchor_file(params["anchor_file"]) if params["anchor_file"] else None)
    verification = ledger.verify(anchor=anchor, expect_records=params["expect_records"])
    if verification["first_broken"] is not None and params["fail_on_broken"]:
        _raise_broken(ledger, verification)
    return verification


class _HashingWriter:
    """File-like sink that only hashes what the export would write (check mode, comparison)."""

    def __init__(self):
        self.digest = hashlib.sha256()

    def write(self, text):
        self.digest.update(text.encode("utf-8"))


def _file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_text(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, ValueError):
        return None


def export_paths(params):
    """Absolute ``(dest, anchor_file)``; both directories must exist."""
    dest = os.path.abspath(params["dest"])
    anchor_path = os.path.abspath(params["anchor_file"] or dest + ANCHOR_SUFFIX)
    for path in (dest, anchor_path):
        if not os.path.isdir(os.path.dirname(path)):
            raise LabopsError("export directory %s does not exist" % os.path.dirname(path), dest=path)
    return dest, anchor_path


def ensure_exported(ledger, params, check_mode):
    """Write the JSON Lines export and its anchor where they differ: a result dict.

    The previous anchor (the anchor option, else the existing anchor file) must be in the exported chain,
    and an anchor is only written for a chain that verified in the very snapshot that was exported.
    """
    dest, anchor_path = export_paths(params)
    previous = params["anchor"] or (read_anchor_file(anchor_path) if os.path.exists(anchor_path) else None)
    sink = _HashingWriter()
    snapshot = ledger.export_snapshot(sink, anchor=previous)
    _check_snapshot(ledger, snapshot, params["fail_on_broken"])
    export_changed = not os.path.isfile(dest) or _file_digest(dest) != sink.digest.hexdigest()
    digest = sink.digest.hexdigest()
    if export_changed and not check_mode:
        snapshot, digest = _write_export(ledger, dest, previous, params["fail_on_broken"])
    anchor = None
    anchor_changed = False
    if snapshot["verification"]["ok"]:
        anchor = dict(seq=snapshot["seq"], hash=snapshot["hash"])
        text = anchor_document(snapshot["seq"], snapshot["hash"], snapshot["count"], ledger.describe(), dest, digest)
        anchor_changed = _read_text(anchor_path) != text
        if anchor_changed and not check_mode:
            _write_atomically(anchor_path, lambda handle: handle.write(text), ".anchor.json")
    return dict(changed=export_changed or anchor_changed, dest=dest, count=snapshot["count"], anchor=anchor, anchor_file=anchor_path,
                first_broken=snapshot["verification"]["first_broken"])


def _check_snapshot(ledger, snapshot, fail_on_broken):
    if snapshot["verification"]["first_broken"] is not None and fail_on_broken:
        _raise_broken(ledger, snapshot["verification"], "is broken (nothing was exported)")


def _write_export(ledger, dest, previous, fail_on_broken):
    """Write the export atomically: ``(snapshot, sha256 of the file)``; nothing is replaced for a broken chain."""
    outcome = {}

    def export(handle):
        outcome["snapshot"] = ledger.export_snapshot(handle, anchor=previous)
        _check_snapshot(ledger, outcome["snapshot"], fail_on_broken)

    _write_atomically(dest, export, ".jsonl")
    return outcome["snapshot"], _file_digest(dest)


def _write_atomically(path, write, suffix):
    """Write through ``write(handle)`` into a temporary file in the same directory, mode 0600, then rename it."""
    # closed by the ``with`` below; opened first so that its name is known to the cleanup on failure
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=os.path.dirname(path), prefix=".ims_audit-", suffix=suffix, delete=False)  # noqa: SIM115
    try:
        with handle:
            write(handle)
        os.chmod(handle.name, 0o600)
        os.replace(handle.name, path)
    except OSError as exc:
        raise LabopsError("audit ledger export to %s failed: %s" % (path, exc), dest=path)
    finally:
        if os.path.exists(handle.name):
            os.unlink(handle.name)


def run(module, ledger):
    params = module.params
    state = params["state"]
    if state == "present":
        changed, record, diff = ensure_present(ledger, params, module.check_mode)
        result = dict(changed=changed, record=record)
        if module._diff:
            result["diff"] = diff
        return result
    if state == "verify":
        verification = ensure_verified(ledger, params)
        return dict(changed=False, verification=verification, first_broken=verification["first_broken"])
    return ensure_exported(ledger, params, module.check_mode)


def main(module_class=AnsibleModule):
    """Run the module; the action plugin passes a controller-side module_class (plugin_utils/_controller_module.py)."""
    module = module_class(argument_spec=argument_spec(), supports_check_mode=True, required_if=REQUIRED_IF,
                          mutually_exclusive=MUTUALLY_EXCLUSIVE)
    if module.params["ledger_backend"] == "postgresql" and not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    ledger = None
    try:
        ledger = ledger_from_params(module.params)
        result = run(module, ledger)
    except LabopsError as exc:
        module.fail_json(**exc.fail_kwargs())
    finally:
        if ledger is not None:
            ledger.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
