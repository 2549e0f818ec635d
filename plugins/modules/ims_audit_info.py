#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ims_audit_info
short_description: Query the hash-chained IMS audit ledger
version_added: 0.1.0
description:
  - Returns audit records matching all given filters, in chain (seq) order.
  - Never creates or changes the ledger; a ledger that does not exist yet has no records.
  - Use M(labops.itsm.ims_audit) with O(labops.itsm.ims_audit#module:state=verify) to check the chain itself.
author:
  - labops.itsm developers (@labops)
extends_documentation_fragment:
  - labops.itsm.ledger.CONNECTION
  - labops.itsm.attributes
  - labops.itsm.attributes.INFO_MODULE
seealso:
  - module: labops.itsm.ims_audit
options:
  ref_type:
    description:
      - Only records about this type of record, for example V(incident).
    type: str
  ref_id:
    description:
      - Only records about this record identifier, for example a ticket number.
    type: str
  actor:
    description:
      - Only records written by this actor.
    type: str
  action:
    description:
      - Only records of this audit action.
    type: str
    choices: [identify, create, read, update, notify, escalate, resolve, close, review, kb_update, vendor_engagement, simulation, tool_use, link]
  record_key:
    description:
      - Only the record appended with this O(labops.itsm.ims_audit#module:record_key).
    type: str
  since:
    description:
      - Only records with a timestamp at or after this ISO-8601 time (a time without offset is UTC).
    type: str
  until:
    description:
      - Only records with a timestamp before this ISO-8601 time (a time without offset is UTC).
    type: str
  limit:
    description:
      - Return only the newest O(limit) matching records (still in seq order).
    type: int
"""

EXAMPLES = r"""
- name: Audit trail of one incident
  labops.itsm.ims_audit_info:
    ref_type: incident
    ref_id: "2025061110000421"
  delegate_to: localhost
  register: trail

- name: Closures performed by automation during one day
  labops.itsm.ims_audit_info:
    action: close
    actor: automation
    since: "2025-06-11T00:00:00Z"
    until: "2025-06-12T00:00:00Z"
  delegate_to: localhost

- name: The 20 newest records of a PostgreSQL ledger
  labops.itsm.ims_audit_info:
    limit: 20
    ledger_backend: postgresql
    ledger_dsn: "{{ vault_ledger_dsn }}"
  delegate_to: localhost
"""

RETURN = r"""
records:
  description: Matching audit records in seq order.
  returned: always
  type: list
  elements: dict
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
      sample: close
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
      description: Standard operating procedure, if recorded.
      type: str
      sample: incident_closure
    platform:
      description: Platform, if recorded.
      type: str
      sample: otobo
    fields:
      description: "Field deltas C({name: {before, after}}), secrets masked."
      type: dict
      sample: {"state": {"before": "resolved", "after": "closed"}}
    meta:
      description: Minimised context, secrets masked.
      type: dict
      sample: {}
    prev_hash:
      description: Hash of the previous record.
      type: str
      sample: "0000000000000000000000000000000000000000000000000000000000000000"
    hash:
      description: SHA-256 of the canonical JSON of the record without C(hash).
      type: str
      sample: "3168d9668ac5a117137d11e0769708b4622eb265305303d3a6190761883bd4c4"
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._ledger import (
    ACTIONS,
    HAS_PSYCOPG,
    LEDGER_CONNECTION_ARGSPEC,
    PSYCOPG_IMPORT_ERROR,
    ledger_from_params,
)

FILTERS = ("ref_type", "ref_id", "actor", "action", "record_key", "since", "until")


def argument_spec():
    spec = dict(
        ref_type=dict(type="str"),
        ref_id=dict(type="str"),
        actor=dict(type="str"),
        action=dict(type="str", choices=list(ACTIONS)),
        record_key=dict(type="str", no_log=False),
        since=dict(type="str"),
        until=dict(type="str"),
        limit=dict(type="int"),
    )
    spec.update(LEDGER_CONNECTION_ARGSPEC)
    return spec


def run(params, ledger):
    if params["limit"] is not None and params["limit"] < 1:
        raise ValidationError("limit must be a positive integer, got %d" % params["limit"])
    filters = {name: params[name] for name in FILTERS}
    return dict(changed=False, records=ledger.query(limit=params["limit"], **filters))


def main(module_class=AnsibleModule):
    """Run the module; the action plugin passes a controller-side module_class (plugin_utils/_controller_module.py)."""
    module = module_class(argument_spec=argument_spec(), supports_check_mode=True)
    if module.params["ledger_backend"] == "postgresql" and not HAS_PSYCOPG:
        module.fail_json(msg=missing_required_lib("psycopg"), exception=PSYCOPG_IMPORT_ERROR)
    ledger = None
    try:
        ledger = ledger_from_params(dict(module.params, actor=None))
        result = run(module.params, ledger)
    except LabopsError as exc:
        module.fail_json(**exc.fail_kwargs())
    finally:
        if ledger is not None:
            ledger.close()
    module.exit_json(**result)


if __name__ == "__main__":
    main()
