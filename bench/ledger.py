#!/usr/bin/env python
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Audit ledger throughput: appends/s and verify time on SQLite and PostgreSQL.

    .venv/bin/python bench/ledger.py [--records 100000] [--txn-records 10000] [--backends sqlite,postgresql]

For each backend the ledger is filled to --records records:

* the first --txn-records appends are one transaction each, exactly as governed actions
  write them (SQLite: BEGIN IMMEDIATE ... COMMIT with synchronous=FULL; PostgreSQL:
  advisory lock + commit);
* the rest is written with ``Ledger.append_batch`` (--batch records per transaction),
  the bulk/back-fill path;

then the whole chain is verified (plainly, and against an anchor on its last record with
expect_records) and one reference is queried.  PostgreSQL runs on a
throwaway server from tests/pg.py (fsync=off there, so its figures are an upper bound)
unless LABOPS_BENCH_PG_DSN names an existing (empty or disposable) database.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(Path(sys.prefix) / "collections"), str(ROOT)]

from ansible_collections.labops.itsm.plugins.module_utils._ledger import ledger_from_params
from tests.pg import PostgresUnavailable, scratch_database, throwaway_postgres


def entry(number: int) -> dict:
    """A realistic record: one field delta and small meta."""
    return dict(action="update", ref_type="incident", ref_id="2025%012d" % number, actor="automation", role="service_desk",
                sop="incident_categorization", platform="otobo",
                fields={"state": {"before": "open", "after": "in_progress"}}, meta={"correlation_key": "%024x" % number, "rule": "bench"})


def run_backend(params: dict, records: int, txn_records: int, batch: int) -> dict:
    txn_records = min(txn_records, records)
    with ledger_from_params(params) as ledger:
        ledger.preflight()
        started = time.perf_counter()
        for number in range(txn_records):
            ledger.append(**entry(number))
        txn_seconds = time.perf_counter() - started
        started = time.perf_counter()
        for first in range(txn_records, records, batch):
            ledger.append_batch([entry(number) for number in range(first, min(first + batch, records))])
        bulk_seconds = time.perf_counter() - started
        started = time.perf_counter()
        result = ledger.verify()
        verify_seconds = time.perf_counter() - started
        started = time.perf_counter()
        anchored = ledger.verify(anchor={"seq": result["head_seq"], "hash": result["head_hash"]}, expect_records=True)
        anchored_seconds = time.perf_counter() - started
        started = time.perf_counter()
        found = ledger.query(ref_type="incident", ref_id="2025%012d" % (records // 2))
        query_ms = (time.perf_counter() - started) * 1000
    if not result["ok"] or not anchored["ok"] or not anchored["anchor"]["ok"] or result["count"] != records or len(found) != 1:
        raise SystemExit("benchmark ledger is inconsistent: %r" % result)
    bulk_count = records - txn_records
    return dict(records=records, txn=txn_records / txn_seconds if txn_seconds else 0.0,
                bulk=bulk_count / bulk_seconds if bulk_count and bulk_seconds else 0.0,
                verify=verify_seconds, verify_rate=records / verify_seconds, anchored=anchored_seconds, query_ms=query_ms)


def bench_sqlite(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="labops-bench-") as directory:
        return run_backend(dict(ledger_backend="sqlite", ledger_path=os.path.join(directory, "ims_audit.sqlite3")),
                           args.records, args.txn_records, args.batch)


def bench_postgresql(args: argparse.Namespace) -> dict:
    dsn = os.environ.get("LABOPS_BENCH_PG_DSN")
    if dsn:
        return run_backend(dict(ledger_backend="postgresql", ledger_dsn=dsn), args.records, args.txn_records, args.batch)
    with throwaway_postgres() as server, scratch_database(server) as database:
        return run_backend(dict(ledger_backend="postgresql", ledger_dsn=database), args.records, args.txn_records, args.batch)


def print_table(rows: list) -> None:
    header = ("backend", "records", "appends/s (1 txn each)", "appends/s (bulk)", "verify s", "verified rec/s", "verify+anchor s", "query ms")
    lines = [header]
    for name, row in rows:
        if isinstance(row, str):
            lines.append((name, "-", row, "", "", "", "", ""))
            continue
        lines.append((name, str(row["records"]), "%.0f" % row["txn"], "%.0f" % row["bulk"] if row["bulk"] else "-",
                      "%.2f" % row["verify"], "%.0f" % row["verify_rate"], "%.2f" % row["anchored"], "%.1f" % row["query_ms"]))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for index, line in enumerate(lines):
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100000, help="records per backend (default 100000)")
    parser.add_argument("--txn-records", type=int, default=10000, help="of which appended one transaction each (default 10000)")
    parser.add_argument("--batch", type=int, default=5000, help="records per transaction in the bulk phase (default 5000)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    args = parser.parse_args()
    rows = []
    for name in args.backends.split(","):
        started = time.perf_counter()
        try:
            rows.append((name, bench_sqlite(args) if name == "sqlite" else bench_postgresql(args)))
        except PostgresUnavailable as exc:
            rows.append((name, "skipped: %s" % exc))
        print("[bench] %s done in %.1f s" % (name, time.perf_counter() - started), file=sys.stderr)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
