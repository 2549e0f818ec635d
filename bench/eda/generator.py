"""Benchmark-only EDA source: puts prebuilt events on the queue as fast as the engine takes them.

Events are held as encoded JSON lines and decoded just before they are queued: holding tens of
thousands of decoded events would make every garbage collection the engine triggers walk them
all and understate the engine's ceiling. It measures the rule engine's own ceiling for the ingest benchmark (bench/ingest.py); it is not
part of the collection's shipped content.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
short_description: Emit prebuilt events from a JSON lines file as fast as possible (benchmark helper).
options:
  events_file:
    description: File with one JSON event per line.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: ceiling
  hosts: localhost
  sources:
    - generator:
        events_file: /tmp/events.jsonl
  rules: []
"""

import asyncio
import json
from typing import Any


async def main(queue: asyncio.Queue, args: dict[str, Any]) -> None:
    """Emit every event of ``events_file`` once, in order, then idle until the rulebook shuts down."""
    path = args.get("events_file")
    if not isinstance(path, str) or not path:
        raise ValueError("generator: option 'events_file' is required")
    with open(path, encoding="utf-8") as handle:  # noqa: ASYNC230 read once at start-up, before any event
        lines = [line for line in handle if line.strip()]
    put = queue.put
    decode = json.loads
    for line in lines:
        await put(decode(line))
    await asyncio.Event().wait()


if __name__ == "__main__":

    class _PrintQueue(asyncio.Queue):
        async def put(self, item: Any) -> None:
            print(json.dumps(item))

    import sys

    asyncio.run(asyncio.wait_for(main(_PrintQueue(), {"events_file": sys.argv[1]}), 5))
