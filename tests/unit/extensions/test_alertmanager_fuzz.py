"""Fuzz corpus of the labops.itsm.alertmanager source, kept as a deterministic regression test.

A seeded generator produces every class of input that once answered 500 or was wrongly accepted
(type confusion, lone surrogates, impossible timestamps, NaN/Infinity, UTF-16/32/BOM bodies,
negative truncatedAlerts, bogus Content-Encoding, non-UTF-8 credentials) plus random mutations of
valid payloads, and posts them to the real source server (in-process aiohttp). Every answer must be
4xx with nothing queued, or 2xx with exactly the events an independent oracle derives from the body
(classes marked "reject" must be 4xx). Never a 5xx. A few thousand requests, seconds of run time.

The slow-loris tests at the end use real sockets against short configured timeouts.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import gzip
import hashlib
import importlib
import json
import random
import re
import socket
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

am = importlib.import_module("ansible_collections.labops.itsm.extensions.eda.plugins.event_source.alertmanager")

SEED = 20261203
RANDOM_MUTATIONS = 2400
FIXTURES = Path(__file__).parent / "fixtures"
TOKEN = "fuzz-token-5d1c"
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:labops.itsm:eda:alertmanager")
ORACLE_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})", re.ASCII)
UNICODE_DIGITS = ["\u0660", "\u0661", "\u0662", "\u0969", "\uff11", "\uff19", "\u09e8", "\U0001d7d8"]


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"webhook_{name}.json").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- oracle


def oracle_canonical(value: str) -> str | None:
    """Independent RFC 3339 check and canonical form (datetime.fromisoformat); None when invalid."""
    match = ORACLE_TIMESTAMP.fullmatch(value)
    if match is None:
        return None
    fraction, zone = match.group(1) or "", match.group(2)
    try:
        moment = datetime.datetime.fromisoformat(value[:19] + ("+00:00" if zone == "Z" else zone))
        utc = moment.astimezone(datetime.UTC)
    except (ValueError, OverflowError):
        return None
    if int(value[11:13]) > 23 or (zone != "Z" and (int(zone[1:3]) > 23 or int(zone[4:6]) > 59)):
        return None
    return utc.replace(tzinfo=None).isoformat() + fraction.rstrip("0").rstrip(".") + "Z"


def has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(char) <= 0xDFFF for char in value)
    if isinstance(value, dict):
        return any(has_surrogate(key) or has_surrogate(item) for key, item in value.items())
    if isinstance(value, list):
        return any(has_surrogate(item) for item in value)
    return False


def strict_json(body: bytes) -> Any:
    """The body as the contract defines it (UTF-8 JSON without NaN/Infinity), or raise ValueError."""

    def no_constant(name: str) -> None:
        raise ValueError(name)

    payload = json.loads(body.decode("utf-8"), parse_constant=no_constant)
    if has_surrogate(payload):
        raise ValueError("surrogate")
    return payload


def expected_events(payload: Any) -> list[dict[str, Any]] | None:
    """What the source must queue for ``payload``, or None when it must be rejected (4xx)."""
    def string_map(value: Any) -> bool:
        return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())

    def optional_str(value: Any) -> bool:
        return value is None or isinstance(value, str)

    if not isinstance(payload, dict) or payload.get("version") != "4":
        return None
    key, status, truncated = payload.get("groupKey"), payload.get("status", "firing"), payload.get("truncatedAlerts", 0)
    if not isinstance(key, str) or not key or status not in ("firing", "resolved") or not isinstance(status, str):
        return None
    if isinstance(truncated, bool) or not isinstance(truncated, int) or truncated < 0 or truncated >= 1 << 63:
        return None
    if not all(optional_str(payload.get(name)) for name in ("receiver", "notification_reason", "externalURL")):
        return None
    if not all(string_map(payload.get(name, {})) for name in ("groupLabels", "commonLabels", "commonAnnotations")):
        return None
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or len(alerts) > 1000:
        return None
    events = []
    for alert in alerts:
        if not isinstance(alert, dict) or not isinstance(alert.get("status"), str) or alert["status"] not in ("firing", "resolved"):
            return None
        fingerprint, labels = alert.get("fingerprint"), alert.get("labels")
        if not isinstance(fingerprint, str) or re.fullmatch(r"[0-9a-f]{16}", fingerprint, re.ASCII) is None:
            return None
        if not string_map(labels) or not labels.get("alertname") or not string_map(alert.get("annotations", {})):
            return None
        starts_at, ends_at = alert.get("startsAt"), alert.get("endsAt")
        canonical = oracle_canonical(starts_at) if isinstance(starts_at, str) else None
        if canonical is None or not optional_str(alert.get("generatorURL")):
            return None
        if ends_at is not None and (not isinstance(ends_at, str) or oracle_canonical(ends_at) is None):
            return None
        events.append(
            {
                "status": alert["status"],
                "fingerprint": fingerprint,
                "startsAt": starts_at,
                "correlation_key": hashlib.sha256(f"alertmanager|{fingerprint}|{canonical}".encode()).hexdigest()[:24],
                "uuid": str(uuid.uuid5(NAMESPACE, f"{key}|{fingerprint}|{alert['status']}|{canonical}")),
                "group_key": key,
            }
        )
    return events


# --------------------------------------------------------------------------- corpus


@dataclass
class Case:
    """One request of the corpus."""

    kind: str
    body: bytes
    must_reject: bool
    headers: dict[str, str] = field(default_factory=dict)
    raw_authorization: bytes | None = None


def dumps(payload: Any, rng: random.Random) -> bytes:
    ascii_only = rng.random() < 0.5
    text = json.dumps(payload, ensure_ascii=ascii_only, separators=(",", ":") if rng.random() < 0.5 else None)
    return text.encode("utf-8", "surrogatepass")


def valid_payload(rng: random.Random) -> dict[str, Any]:
    """A fixture, or a generated notification with 1-12 alerts and varied (valid) Unicode."""
    if rng.random() < 0.3:
        return fixture(rng.choice(["firing", "resolved", "am025"]))
    words = ["db01", "pve-prod", "Ünïcode", "€uro", "日本語", "emoji \U0001f525", "quote\"s", "back\\slash", "tab\t", "a&b<c>"]
    count = rng.randint(1, 12)
    alerts = []
    for index in range(count):
        status = rng.choice(["firing", "resolved"])
        year = rng.randint(1000, 9999)
        starts = f"{year:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
        starts += rng.choice(["", ".5", ".118", ".000", ".123456789", ".10"]) + rng.choice(["Z", "Z", "+02:00", "-05:30", "+00:00", "-00:00"])
        labels = {"alertname": rng.choice(words), "instance": f"node{index}:9100", rng.choice(words): rng.choice(words)}
        alerts.append(
            {
                "status": status,
                "labels": labels,
                "annotations": {"summary": rng.choice(words)},
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-03-14T10:00:00.5Z",
                "generatorURL": "http://prom/graph?g0.expr=up&g0.tab=1",
                "fingerprint": f"{rng.getrandbits(64):016x}",
            }
        )
    group_labels = {"alertname": alerts[0]["labels"]["alertname"]}
    return {
        "receiver": "eda-itsm",
        "status": "firing" if any(alert["status"] == "firing" for alert in alerts) else "resolved",
        "alerts": alerts,
        "groupLabels": group_labels,
        "commonLabels": group_labels,
        "commonAnnotations": {},
        "externalURL": "http://am:9093",
        "version": "4",
        "groupKey": "{}/{itsm=\"true\"}:{alertname=\"" + alerts[0]["labels"]["alertname"] + f"\", shard=\"{rng.randint(0, 99)}\"}}",
        "truncatedAlerts": 0,
        "notification_reason": rng.choice(["first notification", "new alerts added"]),
    }


def _random_alert(payload: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    return rng.choice(payload["alerts"])


def gen_valid(rng: random.Random) -> Iterator[Case]:
    for _index in range(150):
        yield Case("valid", dumps(valid_payload(rng), rng), must_reject=False)


def gen_status_types(rng: random.Random) -> Iterator[Case]:
    bad = [[], ["firing"], {}, {"firing": True}, 1, 0, True, None, 1.5, "FIRING", "", "firing "]
    for value in bad:
        for target in ("top", "alert"):
            payload = valid_payload(rng)
            if target == "top":
                payload["status"] = value
            else:
                _random_alert(payload, rng)["status"] = value
            yield Case("status-type", dumps(payload, rng), must_reject=True)


def gen_lone_surrogates(rng: random.Random) -> Iterator[Case]:
    surrogates = ["\ud800", "\udbff", "\udc00", "\udfff", "\ude00\ud83d", "x\ud83dy"]
    targets = ["groupKey", "receiver", "externalURL", "label-value", "label-key", "annotation", "generatorURL", "unknown-key"]
    for surrogate in surrogates:
        for target in targets:
            payload = valid_payload(rng)
            alert = _random_alert(payload, rng)
            if target in ("groupKey", "receiver", "externalURL"):
                payload[target] = payload[target] + surrogate
            elif target == "label-value":
                alert["labels"]["alertname"] += surrogate
            elif target == "label-key":
                alert["labels"]["k" + surrogate] = "v"
            elif target == "annotation":
                alert["annotations"]["summary"] = surrogate
            elif target == "generatorURL":
                alert["generatorURL"] += surrogate
            else:
                payload["future" + surrogate] = 1
            text = json.dumps(payload, ensure_ascii=True)  # \udXXX escapes
            yield Case("surrogate-escape", text.encode("ascii"), must_reject=True)
            # The same surrogate as (invalid) UTF-8 bytes, as `surrogatepass` would have decoded.
            yield Case("surrogate-bytes", json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass"), must_reject=True)


def bad_timestamps(rng: random.Random) -> list[str]:
    impossible = [
        "2026-13-45T99:99:99Z", "2026-00-10T00:00:00Z", "2026-02-30T00:00:00Z", "2026-02-29T00:00:00Z",
        "2026-04-31T00:00:00Z", "2026-01-32T00:00:00Z", "2026-01-00T00:00:00Z", "2026-01-01T24:00:00Z",
        "2026-01-01T23:60:00Z", "2026-01-01T23:59:60Z", "2026-01-01T23:59:99Z", "0000-01-01T00:00:00Z",
        "0000-12-31T23:00:00.5Z", "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00+23:60", "2026-01-01T00:00:00-99:99",
        "0001-01-01T00:00:00+00:01", "0001-01-01T00:30:00+01:00", "9999-12-31T23:59:59-00:01", "9999-12-31T23:00:00.5-01:00",
        "2026-02-30T10:00:00+02:00", "2026-13-01T00:00:00-05:00", "2026-01-01t00:00:00Z", "2026-01-01T00:00:00z",
        "2026-01-01 00:00:00Z", "2026-01-01T00:00:00", "2026-01-01T00:00:00.Z", "2026-01-01T00:00:00.1234567890Z",
        "+2026-01-01T00:00:00Z", "2026-1-01T00:00:00Z", "", "2026-01-01T00:00:00+0100",
    ]
    digits = []
    for _index in range(24):
        chars = list("2026-03-14T09:26:53.531Z")
        positions = [i for i, char in enumerate(chars) if char.isdigit()]
        chars[rng.choice(positions)] = rng.choice(UNICODE_DIGITS)
        digits.append("".join(chars))
    return impossible + digits


def gen_timestamps(rng: random.Random) -> Iterator[Case]:
    for value in bad_timestamps(rng):
        for key in ("startsAt", "endsAt"):
            payload = valid_payload(rng)
            _random_alert(payload, rng)[key] = value
            yield Case("timestamp", dumps(payload, rng), must_reject=True)


def gen_constants(rng: random.Random) -> Iterator[Case]:
    for token in ("NaN", "Infinity", "-Infinity"):
        for place in ("truncated", "top-unknown", "alert-unknown", "label"):
            text = json.dumps(valid_payload(rng))
            if place == "truncated":
                if '"truncatedAlerts": 0' in text:
                    text = text.replace('"truncatedAlerts": 0', f'"truncatedAlerts": {token}')
                else:
                    text = text[:-1] + f', "truncatedAlerts": {token}}}'
            elif place == "top-unknown":
                text = "{" + f'"future": {token}, ' + text[1:]
            elif place == "alert-unknown":
                text = text.replace('"status": "', f'"score": [{token}], "status": "', 2)
            else:
                text = text.replace('"alertname": ', f'"weight": {token}, "alertname": ', 1)
            yield Case("nan-infinity", text.encode(), must_reject=True)


def gen_encodings(rng: random.Random) -> Iterator[Case]:
    for encoding in ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "utf-8-sig"):
        for _index in range(4):
            text = json.dumps(valid_payload(rng), ensure_ascii=rng.random() < 0.5)
            yield Case("encoding", text.encode(encoding), must_reject=True)
    for _index in range(6):
        yield Case("encoding", b"\xef\xbb\xbf" + dumps(valid_payload(rng), rng), must_reject=True)
        payload = valid_payload(rng)
        payload["receiver"] = "eda-MARKER"
        yield Case("encoding", dumps(payload, rng).replace(b"MARKER", rng.choice([b"\xe9", b"\xff", b"\xc3", b"\xed\xbf\xbf"])), must_reject=True)


def gen_truncated(rng: random.Random) -> Iterator[Case]:
    for value in (-1, -rng.randint(2, 10**6), -(1 << 63), 1 << 63, 1 << 80, 1.0, 2.5, "3", [], True):
        payload = valid_payload(rng)
        payload["truncatedAlerts"] = value
        yield Case("truncated", dumps(payload, rng), must_reject=True)


def gen_content_encoding(rng: random.Random) -> Iterator[Case]:
    for encoding in ("gzip", "deflate", "x-gzip", "br", "gzip, identity", "compress", "GZIP"):
        body = dumps(valid_payload(rng), rng)
        yield Case("content-encoding", body, must_reject=True, headers={"Content-Encoding": encoding})
        yield Case("content-encoding", body[:40], must_reject=True, headers={"Content-Encoding": encoding})
    for _index in range(4):
        yield Case("content-encoding", gzip.compress(dumps(valid_payload(rng), rng), mtime=0), must_reject=True, headers={"Content-Encoding": "gzip"})


def gen_authorization(rng: random.Random) -> Iterator[Case]:
    values = [b"Bearer t\xe9st", b"Bearer \xff\xfe\xfd", b"Bearer " + TOKEN.encode() + b"\xe9", b"Bearer \xc3\xa9", b"Basic \xe9\xe9", b"b\xe9arer x", b"\x80"]
    for value in values:
        yield Case("authorization", dumps(valid_payload(rng), rng), must_reject=True, raw_authorization=value)


def random_value(rng: random.Random) -> Any:
    pool = [
        None, True, False, 0, -1, 7, 1.5, 1 << 70, "", "x", "firing", "resolved", "4", 4, [], {}, [1, [2, {"a": None}]],
        {"alertname": "X"}, {"alertname": 1}, "2026-03-14T09:26:53Z", "2026-02-30T09:26:53Z", "0001-01-01T00:00:00Z",
        "9582172f3995a11a", "9582172F3995A11A", "Ünïcode \U0001f525", "\u2028", "\x00",
    ]
    return copy.deepcopy(rng.choice(pool))


def _containers(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, (dict, list)):
        yield path, value
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            yield from _containers(item, path + (key,))


def mutate_structure(payload: dict[str, Any], rng: random.Random) -> None:
    _path, container = rng.choice(list(_containers(payload)))
    if isinstance(container, dict):
        choice = rng.random()
        if container and choice < 0.45:
            container[rng.choice(list(container))] = random_value(rng)
        elif container and choice < 0.75:
            del container[rng.choice(list(container))]
        else:
            container[rng.choice(["status", "version", "alerts", "labels", "startsAt", "endsAt", "new", "alertname"])] = random_value(rng)
    elif container:
        choice = rng.random()
        if choice < 0.4:
            container[rng.randrange(len(container))] = random_value(rng)
        elif choice < 0.7:
            del container[rng.randrange(len(container))]
        else:
            container.append(copy.deepcopy(rng.choice(container)))


def mutate_bytes(body: bytes, rng: random.Random) -> bytes:
    data = bytearray(body)
    choice = rng.random()
    position = rng.randrange(len(data))
    if choice < 0.35:
        data[position] = rng.randrange(256)
    elif choice < 0.55:
        data[position] = rng.choice(b'0123456789:-TZ.+"{}[],\\')
    elif choice < 0.7:
        del data[position:position + rng.randint(1, 8)]
    elif choice < 0.85:
        data[position:position] = rng.choice([b"\\u", b"\\ud800", b"\xed\xa0\x80", b"\xc0\xaf", b'"', b"\x00", b"NaN", b"-0", b"1e999"])
    else:
        data = data[:position]
    return bytes(data)


def gen_random_mutations(rng: random.Random) -> Iterator[Case]:
    for _index in range(RANDOM_MUTATIONS):
        payload = valid_payload(rng)
        for _step in range(rng.randint(1, 3)):
            mutate_structure(payload, rng)
        body = dumps(payload, rng)
        if rng.random() < 0.35:
            body = mutate_bytes(body, rng)
        yield Case("random-mutation", body, must_reject=False)


GENERATORS: list[Callable[[random.Random], Iterator[Case]]] = [
    gen_valid, gen_status_types, gen_lone_surrogates, gen_timestamps, gen_constants, gen_encodings,
    gen_truncated, gen_content_encoding, gen_authorization, gen_random_mutations,
]


def corpus(seed: int = SEED) -> list[Case]:
    rng = random.Random(seed)
    return [case for generator in GENERATORS for case in generator(rng)]


def test_corpus_is_deterministic_and_bounded() -> None:
    first, second = corpus(), corpus()
    assert [(case.kind, case.body, case.headers) for case in first] == [(case.kind, case.body, case.headers) for case in second]
    kinds = Counter(case.kind for case in first)
    assert 2500 <= len(first) <= 5000, kinds
    assert set(kinds) == {
        "valid", "status-type", "surrogate-escape", "surrogate-bytes", "timestamp", "nan-infinity", "encoding",
        "truncated", "content-encoding", "authorization", "random-mutation",
    }


@pytest.mark.parametrize("value", list(bad_timestamps(random.Random(SEED))))
def test_oracle_and_source_agree_that_bad_timestamps_are_invalid(value: str) -> None:
    assert oracle_canonical(value) is None
    with pytest.raises(ValueError):
        am.canonical_timestamp(value)


# --------------------------------------------------------------------------- running the corpus


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_listening(port: int) -> None:
    """Until the source accepts connections on ``port`` (at most about 4 s)."""
    for _attempt in range(200):
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.02)


async def raw_post(port: int, body: bytes, authorization: bytes) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"POST /alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\n"
    writer.write(head + b"Authorization: " + authorization + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return int(status_line.split()[1])


def check_events(case: Case, queued: list[dict[str, Any]]) -> None:
    """A 2xx must carry exactly the oracle's events for the body."""
    try:
        payload = strict_json(case.body)
    except ValueError:
        raise AssertionError(f"{case.kind}: accepted a body that is not strict UTF-8 JSON: {case.body[:200]!r}") from None
    expected = expected_events(payload)
    assert expected is not None, f"{case.kind}: accepted an invalid notification: {case.body[:300]!r}"
    assert len(queued) == len(expected), case.body[:300]
    for event, want in zip(queued, expected):
        json.dumps(event, ensure_ascii=False).encode("utf-8")  # no lone surrogates reach the rule engine
        assert event["alert"]["status"] == want["status"]
        assert event["alert"]["fingerprint"] == want["fingerprint"]
        assert event["alert"]["startsAt"] == want["startsAt"]
        assert event["correlation_key"] == want["correlation_key"]
        assert event["meta"]["uuid"] == want["uuid"]
        assert event["group"]["key"] == want["group_key"]


async def test_fuzz_corpus_never_5xx_and_queues_only_valid_notifications() -> None:
    cases = corpus()
    port = free_port()
    queue: asyncio.Queue = asyncio.Queue()
    options = {"port": port, "token": TOKEN, "delivery": "event", "max_body_bytes": 262144, "header_timeout": 5, "body_timeout": 5}
    task = asyncio.create_task(am.main(queue, options))
    await wait_listening(port)
    outcomes: Counter[tuple[str, int]] = Counter()
    queued_total = 0
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession() as session:
            for case in cases:
                if case.raw_authorization is not None:
                    status = await raw_post(port, case.body, case.raw_authorization)
                else:
                    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", **case.headers}
                    async with session.post(f"http://127.0.0.1:{port}/alertmanager", data=case.body, headers=headers) as resp:
                        status = resp.status
                        await resp.read()
                await asyncio.sleep(0)
                queued = []
                while not queue.empty():
                    queued.append(queue.get_nowait())
                outcomes[(case.kind, status // 100 * 100)] += 1
                assert status < 500, f"{case.kind} answered {status}: {case.body[:300]!r} {case.headers}"
                if case.must_reject or status >= 400:
                    assert 400 <= status < 500, f"{case.kind} answered {status}: {case.body[:300]!r}"
                    assert queued == [], f"{case.kind}: a rejected request queued events"
                else:
                    check_events(case, queued)
                    queued_total += len(queued)
            async with session.get(f"http://127.0.0.1:{port}/alertmanager/health") as resp:
                health = await resp.json()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    elapsed = time.monotonic() - started
    print(f"fuzz: {len(cases)} requests in {elapsed:.1f}s: {dict(sorted(outcomes.items()))}")
    assert not task.done() or task.cancelled()
    assert (health["pending_events"], health["accepted_events"]) == (0, queued_total)
    # The corpus really exercises both sides: every valid payload accepted, many mutations rejected.
    assert outcomes[("valid", 200)] == sum(1 for case in cases if case.kind == "valid")
    assert outcomes[("random-mutation", 200)] > 100 and outcomes[("random-mutation", 400)] > 500
    assert elapsed < 60


async def test_fuzz_corpus_in_batch_delivery_persists_only_valid_notifications(tmp_path: Path) -> None:
    """The same corpus against the durable intake: a rejected request leaves the spool untouched, an accepted one
    adds (or absorbs) exactly its alerts, and every stored event is valid UTF-8 JSON."""
    spool_lib = importlib.import_module("ansible_collections.labops.itsm.plugins.module_utils._spool")
    cases = corpus()
    port = free_port()
    spool_path = tmp_path / "spool.sqlite3"
    queue: asyncio.Queue = asyncio.Queue()
    options = {"port": port, "token": TOKEN, "spool_path": str(spool_path), "max_concurrent_runs": 1,
               "max_body_bytes": 262144, "header_timeout": 5, "body_timeout": 5}
    task = asyncio.create_task(am.main(queue, options))
    await wait_listening(port)
    reader = spool_lib.open_spool("sqlite", str(spool_path))

    def stored() -> int:
        stats = reader.stats()
        return sum(stats["entries"].values()) + stats["absorbed_repeats"]

    try:
        async with aiohttp.ClientSession() as session:
            for case in cases:
                before = stored()
                if case.raw_authorization is not None:
                    status = await raw_post(port, case.body, case.raw_authorization)
                else:
                    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", **case.headers}
                    async with session.post(f"http://127.0.0.1:{port}/alertmanager", data=case.body, headers=headers) as resp:
                        status = resp.status
                        await resp.read()
                assert status < 500, f"{case.kind} answered {status}: {case.body[:300]!r}"
                if case.must_reject or status >= 400:
                    assert stored() == before, f"{case.kind}: a rejected request changed the spool"
                else:
                    expected = expected_events(strict_json(case.body))
                    assert expected is not None, f"{case.kind}: accepted an invalid notification: {case.body[:300]!r}"
                    assert stored() - before == len(expected), case.body[:300]
        for entry in reader.list(limit=100000):
            json.dumps(entry.event, ensure_ascii=False).encode("utf-8")
    finally:
        reader.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# --------------------------------------------------------------------------- slow loris (real sockets)


HEADER_TIMEOUT = 0.4
BODY_TIMEOUT = 0.4
CLOSE_BOUND = 3.0  # generous bound on a shared 2-core machine; the timeouts themselves are 0.4 s


class Server:
    """The source on a free port with short timeouts."""

    def __init__(self, queue: asyncio.Queue, port: int, task: asyncio.Task) -> None:
        self.queue, self.port, self.task = queue, port, task

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@pytest.fixture(name="server")
async def fixture_server() -> Any:
    port = free_port()
    queue: asyncio.Queue = asyncio.Queue()
    args = {"port": port, "token": TOKEN, "delivery": "event", "header_timeout": HEADER_TIMEOUT, "body_timeout": BODY_TIMEOUT}
    task = asyncio.create_task(am.main(queue, args))
    await wait_listening(port)
    yield Server(queue, port, task)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def request_bytes(body: bytes, keep_alive: bool = True) -> bytes:
    head = (
        b"POST /alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
        + (b"" if keep_alive else b"Connection: close\r\n")
        + b"Content-Length: %d\r\n\r\n" % len(body)
    )
    return head + body


async def read_until_closed(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), CLOSE_BOUND + 2)
    return data, time.monotonic() - started


@pytest.mark.parametrize(
    "partial",
    [b"", b"P", b"POST /alertmanager HT", b"POST /alertmanager HTTP/1.1\r\nHost: x\r\n", request_bytes(b"{}")[:-10]],
    ids=["nothing", "one-byte", "request-line", "some-headers", "almost-all-headers"],
)
async def test_stalled_headers_are_closed_after_header_timeout(server: Server, partial: bytes) -> None:
    reader, writer = await server.connect()
    writer.write(partial)
    await writer.drain()
    data, waited = await read_until_closed(reader)
    assert HEADER_TIMEOUT * 0.8 <= waited <= CLOSE_BOUND
    assert data == (b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" if partial else b"")
    writer.close()
    assert server.queue.empty()


async def test_trickled_headers_are_closed_at_the_total_deadline(server: Server) -> None:
    """One header byte every 50 ms keeps the connection busy but never completes: closed at header_timeout."""
    reader, writer = await server.connect()

    async def trickle() -> None:
        for byte in request_bytes(b"{}")[:-6]:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)

    trickler = asyncio.create_task(trickle())
    data, waited = await read_until_closed(reader)
    trickler.cancel()
    await asyncio.gather(trickler, return_exceptions=True)
    assert data.startswith(b"HTTP/1.1 408")
    assert HEADER_TIMEOUT * 0.8 <= waited <= CLOSE_BOUND
    writer.close()


async def test_stalled_body_answers_408_and_closes(server: Server) -> None:
    body = json.dumps(fixture("firing")).encode()
    reader, writer = await server.connect()
    writer.write(request_bytes(body)[: -len(body) + 20])
    await writer.drain()
    data, waited = await read_until_closed(reader)
    assert BODY_TIMEOUT * 0.8 <= waited <= CLOSE_BOUND
    assert data.startswith(b"HTTP/1.1 408 ")
    assert b"body_timeout" in data
    writer.close()
    assert server.queue.empty()


async def test_kept_alive_connection_survives_idle_and_still_has_header_deadline(server: Server) -> None:
    body = json.dumps(fixture("am025")).encode()
    reader, writer = await server.connect()
    writer.write(request_bytes(body))
    await writer.drain()
    assert (await asyncio.wait_for(reader.readuntil(b'"accepted": 1}'), 5)).startswith(b"HTTP/1.1 200 OK")
    await asyncio.sleep(HEADER_TIMEOUT * 2)  # idle between requests is not a header stall
    writer.write(request_bytes(body))
    await writer.drain()
    assert (await asyncio.wait_for(reader.readuntil(b'"accepted": 1}'), 5)).startswith(b"HTTP/1.1 200 OK")
    writer.write(b"POST /alertmanager HTTP/1.1\r\nHost: x\r\n")
    await writer.drain()
    data, waited = await read_until_closed(reader)
    assert data.endswith(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert waited <= CLOSE_BOUND
    writer.close()
    assert server.queue.qsize() == 2


async def test_many_slow_connections_do_not_block_valid_requests(server: Server) -> None:
    slow = [await server.connect() for _index in range(60)]
    for index, (_reader, writer) in enumerate(slow):
        writer.write(request_bytes(b'{"version": "4"}')[: 10 + index])
    started = time.monotonic()
    url = f"http://127.0.0.1:{server.port}/alertmanager"
    async with aiohttp.ClientSession() as session, session.post(url, json=fixture("firing"), headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200
    assert time.monotonic() - started < CLOSE_BOUND
    results = await asyncio.gather(*(read_until_closed(reader) for reader, _writer in slow))
    assert all(data.startswith(b"HTTP/1.1 408") and waited <= CLOSE_BOUND for data, waited in results)
    for _reader, writer in slow:
        writer.close()
    assert server.queue.qsize() == 2
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{server.port}/alertmanager/health") as resp:
        assert (await resp.json())["rejected_by_status"] == {"408": 60}
