"""labops.itsm.alertmanager with delivery batch: the durable intake (spool, batches, recovery).

The source runs in-process on a temporary SQLite spool; a test plays the playbook run's part by
recording outcomes through the same spool API the alert_intake module uses.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

am = importlib.import_module("ansible_collections.labops.itsm.extensions.eda.plugins.event_source.alertmanager")
spool_lib = importlib.import_module("ansible_collections.labops.itsm.plugins.module_utils._spool")

FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "spool-test-token"


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"webhook_{name}.json").read_text(encoding="utf-8"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def notification(count: int, status: str = "firing", first: int = 0) -> dict[str, Any]:
    body = load("firing")
    template = body["alerts"][0]
    body["status"] = status
    body["alerts"] = []
    for index in range(first, first + count):
        alert = copy.deepcopy(template)
        alert["status"] = status
        alert["fingerprint"] = f"{index:016x}"
        alert["labels"] = {**alert["labels"], "seq": str(index)}
        body["alerts"].append(alert)
    return body


class Running:
    def __init__(self, url: str, queue: asyncio.Queue, spool_path: Path) -> None:
        self.url = url
        self.queue = queue
        self.spool = spool_lib.open_spool("sqlite", str(spool_path))

    async def post(self, body: Any) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session, session.post(
                self.url, data=json.dumps(body).encode(), headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}) as resp:
            return resp.status, await resp.json(content_type=None)

    async def health(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(self.url + "/health") as resp:
            return await resp.json()

    async def batch(self, timeout: float = 5.0) -> dict[str, Any]:
        event = await asyncio.wait_for(self.queue.get(), timeout)
        assert "intake_batch" in event, event
        return event["intake_batch"]

    def finish(self, batch: dict[str, Any], fail: set[int] | None = None) -> None:
        """What alert_intake does at the end of a run: one outcome per entry."""
        for entry in self.spool.entries_of(batch["id"]):
            if fail and entry.id in fail:
                assert self.spool.fail(entry.id, batch["id"], "platform unreachable")
            else:
                assert self.spool.complete(entry.id, batch["id"], {"action": "created", "ticket": str(entry.id)})


@asynccontextmanager
async def running(tmp_path: Path, **options: Any) -> AsyncIterator[Running]:
    port = free_port()
    spool_path = tmp_path / "spool" / "intake.sqlite3"
    args = {"port": port, "token": TOKEN, "spool_path": str(spool_path), **options}
    queue: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(am.main(queue, args))
    for _attempt in range(200):
        if task.done():
            task.result()
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        break
    handle = Running(f"http://127.0.0.1:{port}/alertmanager", queue, spool_path)
    try:
        yield handle
    finally:
        handle.spool.close()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


async def test_accepted_means_committed_and_one_batch_per_notification(tmp_path: Path) -> None:
    async with running(tmp_path) as src:
        status, body = await src.post(notification(100))
        assert (status, body["accepted"], body["new"]) == (200, 100, 100)
        # Committed before the answer: another connection sees every entry.
        assert src.spool.stats()["entries"]["queued"] + src.spool.stats()["entries"]["running"] == 100
        batch = await src.batch()
        assert (batch["count"], batch["firing"], len(batch["entries"])) == (100, 100, 100)
        assert batch["spool"] == {"backend": "sqlite", "path": str(tmp_path / "spool" / "intake.sqlite3")}
        src.finish(batch)
        await asyncio.sleep(0.3)
        assert src.queue.empty()
        assert src.spool.stats()["entries"]["done"] == 100


async def test_repeats_are_absorbed_before_they_cost_a_run(tmp_path: Path) -> None:
    async with running(tmp_path) as src:
        assert (await src.post(notification(1)))[0] == 200
        batch = await src.batch()
        for _repeat in range(50):
            status, body = await src.post(notification(1))
            assert (status, body["new"], body["absorbed"]) == (200, 0, 1)
        # Another alert is still served at once.
        assert (await src.post(notification(1, first=7)))[1]["new"] == 1
        src.finish(batch)
        other = await src.batch()
        assert other["count"] == 1
        src.finish(other)
        await asyncio.sleep(0.3)
        assert src.queue.empty()
        stats = src.spool.stats()
        assert stats["absorbed_repeats"] == 50 and stats["entries"]["done"] == 2


async def test_concurrency_is_bounded_and_batches_cut_at_max_batch_events(tmp_path: Path) -> None:
    async with running(tmp_path, max_concurrent_runs=2, max_batch_events=10) as src:
        assert (await src.post(notification(50)))[0] == 200
        first, second = await src.batch(), await src.batch()
        assert first["count"] == second["count"] == 10
        await asyncio.sleep(0.3)
        assert src.queue.empty(), "a third batch while two are in flight"
        assert (await src.health())["inflight_runs"] == 2
        src.finish(first)
        third = await src.batch()
        assert third["count"] == 10
        src.finish(second)
        src.finish(third)
        for _index in range(2):
            src.finish(await src.batch())
        await asyncio.sleep(0.3)
        assert src.spool.stats()["entries"]["done"] == 50


async def test_failed_entries_come_back_after_back_off_then_dead_letters(tmp_path: Path) -> None:
    async with running(tmp_path, retry_initial_delay=0.2, retry_max_delay=0.2, retry_for=1.5) as src:
        assert (await src.post(notification(2)))[0] == 200
        batch = await src.batch()
        failing = {batch["entries"][0]}
        src.finish(batch, fail=failing)
        retried = await src.batch(timeout=5)
        assert retried["entries"] == sorted(failing) and retried["retries"] == 1
        src.finish(retried, fail=failing)
        # Keeps failing until retry_for has passed: then it is a dead letter and nothing more is dispatched.
        deadline = asyncio.get_running_loop().time() + 10
        while src.spool.stats()["entries"]["dead"] == 0:
            assert asyncio.get_running_loop().time() < deadline
            try:
                src.finish(await src.batch(timeout=0.5), fail=failing)
            except TimeoutError:
                pass
        dead = src.spool.list(["dead"])
        assert [entry.id for entry in dead] == sorted(failing) and dead[0].last_error == "platform unreachable"
        # Replay (what labops.itsm.intake_spool does) puts it back; the daemon picks it up by itself.
        assert src.spool.replay() == sorted(failing)
        replayed = await src.batch(timeout=3)
        src.finish(replayed)
        await asyncio.sleep(0.3)
        assert src.spool.stats()["entries"]["done"] == 2


async def test_a_restart_dispatches_what_was_accepted_but_not_handled(tmp_path: Path) -> None:
    async with running(tmp_path, max_batch_events=5, max_concurrent_runs=1) as src:
        assert (await src.post(notification(12)))[0] == 200
        lost = await src.batch()  # dispatched, then the daemon dies before the run records anything
        assert lost["count"] == 5
    async with running(tmp_path, max_batch_events=100) as src:
        batch = await src.batch()
        assert batch["count"] == 12  # the interrupted five and the seven never dispatched
        src.finish(batch)
        await asyncio.sleep(0.3)
        assert src.spool.stats()["entries"]["done"] == 12


async def test_resolve_waits_for_the_open_of_its_episode(tmp_path: Path) -> None:
    async with running(tmp_path) as src:
        assert (await src.post(notification(1)))[0] == 200
        opening = await src.batch()
        assert (await src.post(notification(1, status="resolved")))[0] == 200
        await asyncio.sleep(0.3)
        assert src.queue.empty(), "the resolve was dispatched while its open runs"
        src.finish(opening)
        resolving = await src.batch()
        assert (resolving["resolved"], resolving["firing"]) == (1, 0)
        src.finish(resolving)


async def test_spool_that_cannot_be_written_answers_503_and_keeps_serving(tmp_path: Path) -> None:
    async with running(tmp_path, queue_timeout=0.5) as src:
        assert (await src.post(notification(1)))[0] == 200
        src.finish(await src.batch())
        # Another process holds the spool's write lock beyond queue_timeout: the notification is refused whole.
        blocker = spool_lib.open_spool("sqlite", str(tmp_path / "spool" / "intake.sqlite3"))
        blocker.ensure_ready()
        blocker._conn.execute("BEGIN EXCLUSIVE")  # a stuck writer
        try:
            status, body = await asyncio.wait_for(src.post(notification(3, first=10)), 30)
        finally:
            blocker._conn.execute("ROLLBACK")
            blocker.close()
        assert status == 503 and "intake spool" in body["reason"]
        assert src.spool.list(correlation_key=None, limit=10) and len(src.spool.list(limit=100)) == 1
        status, body = await src.post(notification(3, first=20))
        assert (status, body["new"]) == (200, 3)


def test_second_daemon_on_one_spool_is_refused(tmp_path: Path) -> None:
    first = spool_lib.open_spool("sqlite", str(tmp_path / "s.sqlite3"))
    first.lock_dispatcher()
    second = spool_lib.open_spool("sqlite", str(tmp_path / "s.sqlite3"))
    with pytest.raises(spool_lib.SpoolError, match="another running daemon"):
        second.lock_dispatcher()
    first.close()
    second.lock_dispatcher()
    second.close()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"spool_backend": "postgresql"}, "needs 'spool_dsn'"),
        ({"reconcile_interval": 60}, "needs 'alertmanager_url'"),
        ({"retry_initial_delay": 5, "retry_max_delay": 1}, "at least 'retry_initial_delay'"),
        ({"delivery": "queue"}, "one of batch, event"),
        ({"token": "a", "token_file": "/nonexistent"}, "mutually exclusive"),
        ({"token_file": "/nonexistent/token"}, "cannot read"),
    ],
)
def test_bad_intake_options(options: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABOPS_SPOOL_DSN", raising=False)
    monkeypatch.delenv("LABOPS_SPOOL_BACKEND", raising=False)
    with pytest.raises(ValueError, match=message):
        am.parse_config(options)


def test_token_file_is_read_and_never_shown(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("file-token-value\n")
    config = am.parse_config({"token_file": str(token_file)})
    assert config.token == "file-token-value" and "file-token-value" not in repr(config)
    token_file.write_text("two\nlines\n")
    with pytest.raises(ValueError, match="one line"):
        am.parse_config({"token_file": str(token_file)})


def test_recover_leaves_a_live_orphan_run_alone_and_takes_its_entries_back_once_it_dies(tmp_path: Path) -> None:
    """A daemon killed with SIGKILL leaves its ansible-playbook runs behind; a restart must not handle their entries twice."""
    path = str(tmp_path / "s.sqlite3")
    policy = spool_lib.RetryPolicy(1, 1, 60, 60)
    dispatcher = spool_lib.open_spool("sqlite", path)
    event = {"correlation_key": "ab" * 12, "alert": {"status": "firing"}, "meta": {"uuid": "u-orphan"}}
    dispatcher.accept([event])
    batch_id, _entries = dispatcher.claim(10, policy)
    orphan = spool_lib.open_spool("sqlite", path)
    orphan.hold_run(batch_id)  # what alert_intake does before it reads its entries
    assert dispatcher.recover() == 0 and dispatcher.stats()["entries"]["running"] == 1
    orphan.close()  # the orphan dies without recording anything
    assert dispatcher.recover(exclude=(batch_id,)) == 0, "a batch the dispatcher itself has in flight is never taken back"
    assert dispatcher.recover() == 1 and dispatcher.stats()["entries"]["queued"] == 1
    dispatcher.close()
