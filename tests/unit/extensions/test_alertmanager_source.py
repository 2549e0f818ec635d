"""Unit tests of the labops.itsm.alertmanager event source against a real local aiohttp server."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import hashlib
import importlib
import ipaddress
import json
import random
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

am = importlib.import_module("ansible_collections.labops.itsm.extensions.eda.plugins.event_source.alertmanager")

FIXTURES = Path(__file__).parent / "fixtures"
SOURCE_DIR = Path(__file__).resolve().parents[3] / "extensions" / "eda" / "plugins" / "event_source"
TOKEN = "s3cr3t-t0ken-for-unit-tests"
ALERT_KEYS = {"status", "fingerprint", "startsAt", "endsAt", "labels", "annotations", "generatorURL"}
GROUP_KEYS = {"key", "key_hash", "status", "receiver", "labels", "common_labels", "common_annotations"} | {
    "notification_reason",
    "external_url",
    "truncated_alerts",
}


def load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"webhook_{name}.json").read_text(encoding="utf-8"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def expected_key(fingerprint: str, starts_at: str) -> str:
    return hashlib.sha256(f"alertmanager|{fingerprint}|{starts_at}".encode()).hexdigest()[:24]


def expected_uuid(group_key: str, fingerprint: str, status: str, starts_at: str) -> str:
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, "urn:labops.itsm:eda:alertmanager")
    return str(uuid.uuid5(namespace, f"{group_key}|{fingerprint}|{status}|{starts_at}"))


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def drain(queue: asyncio.Queue) -> list[dict[str, Any]]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


class Source:
    """A running source: its base URL, queue and task."""

    def __init__(self, url: str, queue: asyncio.Queue, task: asyncio.Task, ssl_ctx: ssl.SSLContext | None) -> None:
        self.url = url
        self.queue = queue
        self.task = task
        self.ssl = ssl_ctx

    async def post(self, body: Any, headers: dict[str, str] | None = None, path: str = "/alertmanager", raw: bytes | None = None) -> tuple[int, Any, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json", **(headers if headers is not None else bearer())}
        async with aiohttp.ClientSession() as session, session.post(self.url + path, data=data, headers=hdrs, ssl=self.ssl if self.ssl else True) as resp:
            return resp.status, await resp.json(content_type=None), resp.headers

    async def get(self, path: str) -> tuple[int, Any, Any]:
        async with aiohttp.ClientSession() as session, session.get(self.url + path, ssl=self.ssl if self.ssl else True) as resp:
            return resp.status, await resp.json(content_type=None), resp.headers


async def wait_listening(port: int) -> None:
    for _index in range(200):
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise AssertionError(f"source did not listen on {port}")


@asynccontextmanager
async def running(args: dict[str, Any] | None = None, queue: asyncio.Queue | None = None, client_ssl: ssl.SSLContext | None = None) -> AsyncIterator[Source]:
    port = free_port()
    options = {"port": port, "token": TOKEN, "delivery": "event", **(args or {})}
    options = {key: value for key, value in options.items() if value is not None}
    queue = queue if queue is not None else asyncio.Queue()
    task = asyncio.create_task(am.main(queue, options))
    waiter = asyncio.create_task(wait_listening(port))
    done, _pending = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED, timeout=10)
    if task in done:
        waiter.cancel()
        task.result()
    assert waiter in done, "source did not start"
    scheme = "https" if options.get("certfile") else "http"
    try:
        yield Source(f"{scheme}://127.0.0.1:{port}", queue, task, client_ssl)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)


# --------------------------------------------------------------------------- events


async def test_firing_notification_becomes_one_event_per_alert() -> None:
    payload = load("firing")
    async with running() as src:
        status, body, _headers = await src.post(payload)
        events = drain(src.queue)
    assert status == 200
    assert body == {"status": "accepted", "accepted": 2}
    assert len(events) == 2
    for event, raw in zip(events, payload["alerts"]):
        assert set(event) == {"alert", "group", "correlation_key", "meta"}
        assert set(event["alert"]) == ALERT_KEYS
        assert set(event["group"]) == GROUP_KEYS
        assert event["alert"] == {key: raw[key] for key in ALERT_KEYS}
        assert event["correlation_key"] == expected_key(raw["fingerprint"], raw["startsAt"])
        assert event["meta"] == {
            "uuid": expected_uuid(payload["groupKey"], raw["fingerprint"], "firing", raw["startsAt"]),
            "endpoint": "/alertmanager",
        }
    group = events[0]["group"]
    assert group == {
        "key": payload["groupKey"],
        "key_hash": hashlib.sha256(payload["groupKey"].encode()).hexdigest(),
        "status": "firing",
        "receiver": "eda-itsm",
        "labels": payload["groupLabels"],
        "common_labels": payload["commonLabels"],
        "common_annotations": payload["commonAnnotations"],
        "notification_reason": "new alerts added",
        "external_url": payload["externalURL"],
        "truncated_alerts": 0,
    }


async def test_resolved_keeps_correlation_key_and_changes_uuid() -> None:
    async with running() as src:
        assert (await src.post(load("firing")))[0] == 200
        assert (await src.post(load("resolved")))[0] == 200
        firing_a, firing_b, resolved_a, resolved_b = drain(src.queue)
    for fired, resolved in ((firing_a, resolved_a), (firing_b, resolved_b)):
        assert resolved["alert"]["status"] == "resolved"
        assert resolved["alert"]["endsAt"] != "0001-01-01T00:00:00Z"
        assert resolved["correlation_key"] == fired["correlation_key"]
        assert resolved["meta"]["uuid"] != fired["meta"]["uuid"]
    assert resolved_a["group"]["notification_reason"] == "all alerts resolved"


async def test_replayed_notification_gives_identical_uuid_and_key() -> None:
    async with running() as src:
        await src.post(load("firing"))
        await src.post(load("firing"))
        first, second, third, fourth = drain(src.queue)
    assert (first["meta"]["uuid"], first["correlation_key"]) == (third["meta"]["uuid"], third["correlation_key"])
    assert (second["meta"]["uuid"], second["correlation_key"]) == (fourth["meta"]["uuid"], fourth["correlation_key"])
    assert first["meta"]["uuid"] != second["meta"]["uuid"]


async def test_alertmanager_025_shape_is_accepted() -> None:
    payload = load("am025")
    assert "notification_reason" not in payload and "routeLabels" not in payload
    async with running() as src:
        status, body, _headers = await src.post(payload)
        (event,) = drain(src.queue)
    assert (status, body["accepted"]) == (200, 1)
    assert event["group"]["notification_reason"] is None
    assert event["alert"]["labels"]["alertname"] == "HostDown"


async def test_unknown_keys_are_ignored_and_not_forwarded() -> None:
    payload = load("firing")
    payload["futureTopLevel"] = {"x": 1}
    payload["alerts"][0]["futureAlertKey"] = "y"
    async with running() as src:
        status, _body, _headers = await src.post(payload)
        events = drain(src.queue)
    assert status == 200
    assert "futureAlertKey" not in events[0]["alert"]
    assert "futureTopLevel" not in json.dumps(events)


async def test_no_credentials_or_headers_reach_events() -> None:
    headers = {**bearer(), "Cookie": "session=cookie-value-123", "X-Forwarded-For": "10.9.8.7"}
    async with running() as src:
        status, _body, _headers = await src.post(load("firing"), headers=headers)
        events = drain(src.queue)
    assert status == 200
    text = json.dumps(events)
    for secret in (TOKEN, "Authorization", "cookie-value-123", "Cookie", "10.9.8.7", "headers"):
        assert secret not in text
    assert all(set(event["meta"]) == {"uuid", "endpoint"} for event in events)


@pytest.mark.parametrize(
    ("label", "value", "hosts"),
    [
        ("instance", "db01.lab.example.org:9100", ["db01.lab.example.org"]),
        ("instance", "[2001:db8::12]:9100", ["2001:db8::12"]),
        ("instance", "2001:db8::12", ["2001:db8::12"]),
        ("node", "pve02", ["pve02"]),
    ],
)
async def test_hosts_from_label(label: str, value: str, hosts: list[str]) -> None:
    payload = load("am025")
    payload["alerts"][0]["labels"][label] = value
    async with running({"hosts_from_label": label}) as src:
        await src.post(payload)
        (event,) = drain(src.queue)
    assert event["meta"]["hosts"] == hosts


async def test_no_host_limit_by_default_even_with_instance_label() -> None:
    async with running() as src:
        await src.post(load("firing"))
        events = drain(src.queue)
    assert all("hosts" not in event["meta"] for event in events)


async def test_hosts_from_label_absent_label_sets_no_hosts() -> None:
    async with running({"hosts_from_label": "no_such_label"}) as src:
        await src.post(load("firing"))
        events = drain(src.queue)
    assert all("hosts" not in event["meta"] for event in events)


# --------------------------------------------------------------------------- rejections


def _mutations() -> list[tuple[str, Any]]:
    def setter(path: tuple[Any, ...], value: Any):
        def apply(payload: dict[str, Any]) -> dict[str, Any]:
            target = payload
            for part in path[:-1]:
                target = target[part]
            if value is KeyError:
                del target[path[-1]]
            else:
                target[path[-1]] = value
            return payload

        return apply

    return [
        ("version", setter(("version",), "3")),
        ("version", setter(("version",), 4)),
        ("version", setter(("version",), KeyError)),
        ("groupKey", setter(("groupKey",), KeyError)),
        ("groupKey", setter(("groupKey",), 17)),
        ("alerts", setter(("alerts",), KeyError)),
        ("alerts", setter(("alerts",), {"a": 1})),
        ("alerts[1]", setter(("alerts", 1), "not an object")),
        ("alerts[0].status", setter(("alerts", 0, "status"), "pending")),
        ("alerts[0].fingerprint", setter(("alerts", 0, "fingerprint"), KeyError)),
        ("alerts[0].fingerprint", setter(("alerts", 0, "fingerprint"), "XYZ")),
        ("alerts[1].fingerprint", setter(("alerts", 1, "fingerprint"), "9582172F3995A11A")),
        ("alerts[0].labels", setter(("alerts", 0, "labels"), KeyError)),
        ("alerts[0].labels", setter(("alerts", 0, "labels", "severity"), 3)),
        ("alerts[0].labels.alertname", setter(("alerts", 0, "labels", "alertname"), KeyError)),
        ("alerts[0].startsAt", setter(("alerts", 0, "startsAt"), KeyError)),
        ("alerts[0].startsAt", setter(("alerts", 0, "startsAt"), "yesterday")),
        ("alerts[0].endsAt", setter(("alerts", 0, "endsAt"), 0)),
        ("alerts[0].annotations", setter(("alerts", 0, "annotations"), ["x"])),
        ("groupLabels", setter(("groupLabels",), "x")),
        ("status", setter(("status",), "unknown")),
        ("truncatedAlerts", setter(("truncatedAlerts",), "0")),
    ]


@pytest.mark.parametrize(("field_name", "mutate"), _mutations(), ids=lambda item: item if isinstance(item, str) else "")
async def test_invalid_payload_is_400_and_queues_nothing(field_name: str, mutate: Any) -> None:
    payload = mutate(load("firing"))
    async with running() as src:
        status, body, _headers = await src.post(payload)
        assert drain(src.queue) == []
    assert status == 400
    assert body["status"] == "rejected"
    assert body["reason"].startswith(field_name)


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe\x00garbage", b"[" * 200000, b'"a string"', b"[]"])
async def test_malformed_body_is_400_and_daemon_keeps_serving(raw: bytes) -> None:
    async with running() as src:
        status, body, _headers = await src.post(None, raw=raw)
        assert status == 400
        assert body["status"] == "rejected"
        assert (await src.post(load("firing")))[0] == 200
        assert not src.task.done()
        assert len(drain(src.queue)) == 2


async def test_oversize_body_is_413() -> None:
    payload = load("firing")
    payload["commonAnnotations"]["filler"] = "x" * 5000
    async with running({"max_body_bytes": 4096}) as src:
        status, body, _headers = await src.post(payload)
        assert drain(src.queue) == []
    assert status == 413
    assert "max_body_bytes" in body["reason"]


async def test_oversize_chunked_body_without_length_is_413() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _index in range(10):
            yield b" " * 1024

    async with running({"max_body_bytes": 4096}) as src:
        async with aiohttp.ClientSession() as session, session.post(src.url + "/alertmanager", data=chunks(), headers=bearer()) as resp:
            assert resp.status == 413
        assert (await src.post(load("am025")))[0] == 200


async def test_too_many_alerts_is_413() -> None:
    payload = load("firing")
    async with running({"max_alerts": 1}) as src:
        status, body, _headers = await src.post(payload)
        assert drain(src.queue) == []
    assert status == 413
    assert "max_alerts" in body["reason"]


@pytest.mark.parametrize(
    "headers",
    [{}, bearer("wrong"), bearer(TOKEN + "x"), {"Authorization": TOKEN}, {"Authorization": "Basic " + base64.b64encode(f"u:{TOKEN}".encode()).decode()}],
    ids=["missing", "wrong", "longer", "no-scheme", "basic-instead"],
)
async def test_bad_or_missing_token_is_401_with_challenge(headers: dict[str, str]) -> None:
    async with running() as src:
        status, body, resp_headers = await src.post(load("firing"), headers=headers)
        assert drain(src.queue) == []
    assert status == 401
    assert resp_headers.getall("WWW-Authenticate") == ['Bearer realm="alertmanager"']
    assert TOKEN not in json.dumps(body)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (basic("alertmanager", "pa:ss"), 200),
        (basic("alertmanager", "nope"), 401),
        (basic("other", "pa:ss"), 401),
        ({"Authorization": "Basic !!!"}, 401),
        (bearer(), 401),
    ],
    ids=["good", "bad-password", "bad-user", "not-base64", "bearer-not-configured"],
)
async def test_basic_auth(headers: dict[str, str], expected: int) -> None:
    async with running({"token": None, "basic_auth_user": "alertmanager", "basic_auth_password": "pa:ss"}) as src:
        status, _body, resp_headers = await src.post(load("am025"), headers=headers)
    assert status == expected
    if expected == 401:
        assert resp_headers.getall("WWW-Authenticate") == ['Basic realm="alertmanager", charset="UTF-8"']


async def test_token_and_basic_auth_both_accepted_when_both_configured() -> None:
    async with running({"basic_auth_user": "am", "basic_auth_password": "pw"}) as src:
        assert (await src.post(load("am025"), headers=bearer()))[0] == 200
        assert (await src.post(load("am025"), headers=basic("am", "pw")))[0] == 200
        status, _body, resp_headers = await src.post(load("am025"), headers={})
    assert status == 401
    assert len(resp_headers.getall("WWW-Authenticate")) == 2


async def test_wrong_path_is_404_and_wrong_method_is_405() -> None:
    async with running() as src:
        assert (await src.post(load("am025"), path="/other"))[0] == 404
        assert (await src.post(load("am025"), path="/alertmanager/x"))[0] == 404
        status, body, headers = await src.get("/alertmanager")
        assert (status, headers["Allow"]) == (405, "POST")
        assert body["status"] == "rejected"
        status, _body, headers = await src.post(load("am025"), path="/alertmanager/health")
        assert (status, headers["Allow"]) == (405, "GET, HEAD")
        assert drain(src.queue) == []


async def test_custom_path() -> None:
    async with running({"path": "/hooks/am/"}) as src:
        assert (await src.post(load("am025"), path="/hooks/am/"))[0] == 200
        assert (await src.post(load("am025"), path="/alertmanager"))[0] == 404
        assert (await src.get("/hooks/am/health"))[0] == 200
        (event,) = drain(src.queue)
    assert event["meta"]["endpoint"] == "/hooks/am/"


async def test_health_reports_counters_without_auth() -> None:
    async with running() as src:
        await src.post(load("firing"))
        await src.post(load("am025"), headers={})
        await src.post(None, raw=b"{")
        status, body, _headers = await src.get("/alertmanager/health")
    assert status == 200
    assert body == {
        "status": "ok",
        "pending_events": 0,
        "dropped_events": 0,
        "accepted_requests": 1,
        "accepted_events": 2,
        "rejected_requests": 2,
        "rejected_by_status": {"400": 1, "401": 1},
    }


# --------------------------------------------------------------------------- back-pressure and lifecycle


async def test_buffer_full_answers_503_with_nothing_queued_then_recovers() -> None:
    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    async with running({"queue_timeout": 0.3, "max_alerts": 2, "max_pending_events": 2}, queue=queue) as src:
        # Two events admitted: one on the (single-slot) rulebook queue, one pending in the buffer.
        assert (await src.post(load("firing")))[0] == 200
        status, body, _headers = await src.post(load("firing"))
        assert status == 503
        assert "no room for 2 events" in body["reason"]
        health = (await src.get("/alertmanager/health"))[1]
        assert (queue.qsize(), health["pending_events"]) == (1, 1)

        async def consume(count: int) -> list[dict[str, Any]]:
            return [await queue.get() for _index in range(count)]

        consumer = asyncio.create_task(consume(4))
        status, body, _headers = await src.post(load("firing"))
        events = await asyncio.wait_for(consumer, 5)
        health = (await src.get("/alertmanager/health"))[1]
    assert (status, body["accepted"]) == (200, 2)
    # The rejected notification left nothing behind: exactly the two accepted ones, in order.
    assert [event["alert"]["fingerprint"] for event in events] == ["9582172f3995a11a", "0440fbdf50e8e590"] * 2
    assert health["rejected_by_status"] == {"503": 1}
    assert (health["accepted_events"], health["pending_events"]) == (4, 0)


async def test_notification_is_admitted_whole_or_not_at_all() -> None:
    """A 1,000-alert notification against a buffer with room for fewer: 503 and not one event queued."""
    payload = load("firing")
    template = payload["alerts"][0]
    payload["alerts"] = [dict(template, fingerprint=f"{index:016x}") for index in range(1000)]
    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    async with running({"queue_timeout": 0.3, "max_alerts": 1000, "max_pending_events": 1000}, queue=queue) as src:
        assert (await src.post(load("am025")))[0] == 200  # one event on the queue ...
        assert (await src.post(load("firing")))[0] == 200  # ... two pending: 998 places left
        status, body, _headers = await src.post(payload)
        assert status == 503, body
        health = (await src.get("/alertmanager/health"))[1]
        assert (queue.qsize(), health["pending_events"], health["accepted_events"]) == (1, 2, 3)
        queue.get_nowait()
        status, body, _headers = await asyncio.wait_for(src.post(payload), 10)
        assert status == 503  # still no room for all 1,000 while nobody consumes
        received = [queue.get_nowait()]
        consumer = asyncio.create_task(asyncio.wait_for(_take(queue, 1001), 20))
        status, body, _headers = await src.post(payload)
        received += await consumer
    assert (status, body["accepted"]) == (200, 1000)
    assert [event["alert"]["fingerprint"] for event in received[:2]] == ["9582172f3995a11a", "0440fbdf50e8e590"]
    assert [event["alert"]["fingerprint"] for event in received[2:]] == [f"{index:016x}" for index in range(1000)]


async def _take(queue: asyncio.Queue, count: int) -> list[dict[str, Any]]:
    return [await queue.get() for _index in range(count)]


async def test_waiting_notifications_are_admitted_in_arrival_order() -> None:
    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    async with running({"queue_timeout": 5, "max_alerts": 2, "max_pending_events": 2}, queue=queue) as src:
        assert (await src.post(load("firing")))[0] == 200
        first = asyncio.create_task(src.post(load("resolved")))
        await asyncio.sleep(0.1)
        second = asyncio.create_task(src.post(load("am025")))
        await asyncio.sleep(0.1)
        events = await asyncio.wait_for(_take(queue, 5), 10)
        assert (await first)[0] == 200 and (await second)[0] == 200
    assert [event["alert"]["status"] for event in events] == ["firing", "firing", "resolved", "resolved", "firing"]
    assert events[4]["alert"]["labels"]["alertname"] == "HostDown"


async def test_cancel_answers_waiting_request_503_and_closes_listener() -> None:
    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    port = free_port()
    options = {"port": port, "token": TOKEN, "delivery": "event", "queue_timeout": 60, "max_alerts": 2, "max_pending_events": 2}
    task = asyncio.create_task(am.main(queue, options))
    await asyncio.wait_for(wait_listening(port), 10)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"http://127.0.0.1:{port}/alertmanager", json=load("firing"), headers=bearer()) as first:
            assert first.status == 200
        request = asyncio.create_task(session.post(f"http://127.0.0.1:{port}/alertmanager", json=load("firing"), headers=bearer()))
        await asyncio.sleep(0.2)
        assert not request.done()
        task.cancel()
        resp = await asyncio.wait_for(request, 10)
        assert resp.status == 503
        assert (await resp.json())["reason"] == "shutting down"
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


async def test_port_in_use_raises() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        with pytest.raises(am.ConfigError, match="cannot listen on 127.0.0.1:"):
            await asyncio.wait_for(am.main(asyncio.Queue(), {"port": sock.getsockname()[1]}), 10)


# --------------------------------------------------------------------------- TLS


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str, issuer_key: ec.EllipticCurvePrivateKey, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    cert_path, key_path = path.with_suffix(".crt"), path.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(name="pki")
def fixture_pki(tmp_path: Path) -> dict[str, str]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("unit-test-ca", ca_key, "unit-test-ca", ca_key, True)
    ca_cert = _write(tmp_path / "ca", ca, ca_key)[0]
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert, server_keyfile = _write(tmp_path / "server", _certificate("localhost", server_key, "unit-test-ca", ca_key, False), server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert, client_keyfile = _write(tmp_path / "client", _certificate("alertmanager", client_key, "unit-test-ca", ca_key, False), client_key)
    return {"ca": ca_cert, "cert": server_cert, "key": server_keyfile, "client_cert": client_cert, "client_key": client_keyfile}


async def test_tls(pki: dict[str, str]) -> None:
    client = ssl.create_default_context(cafile=pki["ca"])
    async with running({"certfile": pki["cert"], "keyfile": pki["key"]}, client_ssl=client) as src:
        assert (await src.post(load("am025")))[0] == 200
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                await session.post(src.url.replace("https", "http") + "/alertmanager", json=load("am025"), headers=bearer())
        assert len(drain(src.queue)) == 1


async def test_mutual_tls_requires_client_certificate(pki: dict[str, str]) -> None:
    without_cert = ssl.create_default_context(cafile=pki["ca"])
    with_cert = ssl.create_default_context(cafile=pki["ca"])
    with_cert.load_cert_chain(pki["client_cert"], pki["client_key"])
    async with running({"certfile": pki["cert"], "keyfile": pki["key"], "cafile": pki["ca"]}, client_ssl=with_cert) as src:
        assert (await src.post(load("am025")))[0] == 200
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.post(src.url + "/alertmanager", json=load("am025"), headers=bearer(), ssl=without_cert) as resp:
                    await resp.read()
        assert len(drain(src.queue)) == 1


async def test_missing_certificate_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot load TLS material"):
        await am.main(asyncio.Queue(), {"port": free_port(), "certfile": str(tmp_path / "missing.pem")})


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"port": "http"}, "port"),
        ({"port": 70000}, "port"),
        ({"port": True}, "port"),
        ({"path": "alertmanager"}, "path"),
        ({"path": "/{x}"}, "path"),
        ({"token": ""}, "token"),
        ({"token": 123}, "token"),
        ({"basic_auth_user": "u"}, "go together"),
        ({"basic_auth_user": "u:x", "basic_auth_password": "p"}, "must not contain"),
        ({"keyfile": "/k.pem"}, "need 'certfile'"),
        ({"cafile": "/ca.pem"}, "need 'certfile'"),
        ({"max_body_bytes": 10}, "max_body_bytes"),
        ({"max_alerts": 0}, "max_alerts"),
        ({"queue_timeout": 0}, "queue_timeout"),
        ({"queue_timeout": "soon"}, "queue_timeout"),
        ({"header_timeout": 0}, "header_timeout"),
        ({"body_timeout": -1}, "body_timeout"),
        ({"body_timeout": 4000}, "body_timeout"),
        ({"max_pending_events": 10}, "at least 'max_alerts'"),
        ({"max_alerts": 20, "max_pending_events": 19}, "at least 'max_alerts'"),
        ({"port": "\u0661\u0662"}, "port"),
        ({"allow_unauthenticated": "maybe"}, "allow_unauthenticated"),
        ({"tokn": "x"}, "unknown option"),
        ({"feedback": True}, "feedback"),
        ({"host": "0.0.0.0"}, "non-loopback"),
        ({"host": "192.0.2.10"}, "non-loopback"),
    ],
)
def test_bad_arguments_raise_value_error(args: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        am.parse_config(args)


def test_defaults_and_coercion() -> None:
    assert am.parse_config({}) == am.Config(
        host="127.0.0.1", port=5000, path="/alertmanager", max_body_bytes=1048576, max_alerts=1000,
        max_pending_events=5000, queue_timeout=10.0, header_timeout=10.0, body_timeout=30.0,
    )
    config = am.parse_config({"host": "0.0.0.0", "port": "5443", "token": "t", "queue_timeout": "2.5", "allow_unauthenticated": "false"})
    assert (config.port, config.queue_timeout, config.health_path) == (5443, 2.5, "/alertmanager/health")
    assert am.parse_config({"host": "0.0.0.0", "allow_unauthenticated": True}).authenticated is False
    assert am.parse_config({"host": "::1"}).host == "::1"
    assert am.parse_config({"eda_feedback_queue": object()}).port == 5000


def test_secrets_not_in_config_repr() -> None:
    text = repr(am.parse_config({"token": "tok-value", "basic_auth_user": "u", "basic_auth_password": "pw-value"}))
    assert "tok-value" not in text and "pw-value" not in text


def _documented_options() -> dict[str, Any]:
    return yaml.safe_load(am.DOCUMENTATION)["options"]


def test_documentation_schema_and_config_agree() -> None:
    schema = json.loads((SOURCE_DIR / "schemas" / "alertmanager.json").read_text(encoding="utf-8"))
    documented = _documented_options()
    config_fields = set(am.Config.__dataclass_fields__)
    # *_file options are read into their secret's field at start-up; they have no field of their own.
    assert set(documented) == set(schema["properties"]) == config_fields | am._FILE_OPTIONS
    defaults = am.Config()
    for name, spec in documented.items():
        if name in am._FILE_OPTIONS or name == "max_concurrent_runs":  # the CPU count, at most 4
            continue
        assert spec.get("default") == schema["properties"][name].get("default") == getattr(defaults, name), name
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate({"port": 5443, "token": "t", "certfile": "/c.pem", "cafile": "/ca.pem"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"cafile": "/ca.pem"}, schema)
    yaml.safe_load(am.EXAMPLES)


def test_build_events_does_not_share_group_dicts() -> None:
    events = am.build_events(copy.deepcopy(load("firing")), am.parse_config({}))
    assert events[0]["group"] == events[1]["group"]
    assert events[0]["group"] is not events[1]["group"]


@pytest.mark.parametrize("name", ["a|b|firing|c", "{}:{alertname=\"Ünïcode\"}|0440fbdf50e8e590|resolved|2026-05-04T08:02:17.5Z", ""])
def test_event_uuid_is_rfc4122_uuid5(name: str) -> None:
    parts = name.split("|") if name else ["", "", "", ""]
    assert am.event_uuid(*parts) == str(uuid.uuid5(am.EVENT_UUID_NAMESPACE, "|".join(parts)))
    assert uuid.UUID(am.event_uuid(*parts)).version == 5


def test_undefined_rulebook_variable_is_named_in_the_error() -> None:
    """ansible-rulebook hands an undefined ``{{ VAR }}`` over as a jinja2 StrictUndefined object."""
    jinja2 = pytest.importorskip("jinja2")
    undefined = jinja2.StrictUndefined(name="LABOPS_WEBHOOK_TOKEN")
    with pytest.raises(am.ConfigError, match="option 'token' uses the undefined rulebook variable 'LABOPS_WEBHOOK_TOKEN'"):
        am.parse_config({"token": undefined})
    with pytest.raises(ValueError, match="^labops.itsm.alertmanager: invalid source configuration: option 'token' is empty"):
        am.parse_config({"token": ""})


# --------------------------------------------------------------------------- canonical startsAt and keys

# Golden values computed with the source before the strict timestamp checks: valid input keeps
# its canonical form and correlation key (tickets are found by them).
GOLDEN_TIMESTAMPS = [
    ("2026-05-04T07:15:02.118Z", "2026-05-04T07:15:02.118Z", "4bdda7e873da2ed3f70af197"),
    ("2026-05-04T07:15:02Z", "2026-05-04T07:15:02Z", "d3e1052de9f6d2221ad9dc88"),
    ("2026-05-04T07:15:02.000Z", "2026-05-04T07:15:02Z", "d3e1052de9f6d2221ad9dc88"),
    ("2026-05-04T07:15:02.100Z", "2026-05-04T07:15:02.1Z", "b4b1344f59c32931bfcfe6b3"),
    ("2026-05-04T09:15:02.5+02:00", "2026-05-04T07:15:02.5Z", "e89a8999ad2ee25a76b8520a"),
    ("2026-05-04T02:15:02-05:00", "2026-05-04T07:15:02Z", "d3e1052de9f6d2221ad9dc88"),
    ("2026-05-04T07:15:02.000000000+00:00", "2026-05-04T07:15:02Z", "d3e1052de9f6d2221ad9dc88"),
    ("2026-05-04T07:15:02-00:00", "2026-05-04T07:15:02Z", "d3e1052de9f6d2221ad9dc88"),
    ("2026-01-01T00:30:00+01:00", "2025-12-31T23:30:00Z", "de36b1f044669f173962553d"),
    ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "cbfdd4f5f0338c3b3fb2b33c"),
    ("9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59.999999999Z", "f8d62cfa65fa1175b8a95bd2"),
    ("2024-02-29T23:59:59.120-12:45", "2024-03-01T12:44:59.12Z", "3845b1f84edde6188bb1363f"),
]


@pytest.mark.parametrize(("value", "canonical", "key"), GOLDEN_TIMESTAMPS)
def test_canonical_timestamp_and_key_unchanged_for_valid_input(value: str, canonical: str, key: str) -> None:
    assert am.canonical_timestamp(value) == canonical
    assert am.correlation_key("9582172f3995a11a", am.canonical_timestamp(value)) == key


def _random_valid_timestamps(count: int) -> list[str]:
    rng = random.Random(4711)
    values = []
    for _index in range(count):
        moment = datetime.datetime(1000, 1, 1) + datetime.timedelta(seconds=rng.randrange(int(9.0e5) * 86400 * 3))
        fraction = rng.choice(["", ".0", ".5", ".118", ".000", ".120", "." + str(rng.randrange(10**9)).zfill(9)])
        zone = rng.choice(["Z", "Z", "+00:00", "-00:00", f"+{rng.randrange(24):02d}:{rng.randrange(60):02d}",
                           f"-{rng.randrange(24):02d}:{rng.randrange(60):02d}"])
        values.append(moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + zone)
    return values


def test_canonical_timestamp_pinned_to_module_utils_time() -> None:
    """The source keeps a self-contained copy of _time.canonical_timestamp; both agree on valid input."""
    time_utils = importlib.import_module("ansible_collections.labops.itsm.plugins.module_utils._time")
    checked = 0
    for value in _random_valid_timestamps(3000):
        try:
            expected = time_utils.canonical_timestamp(value)
        except ValueError:
            continue  # outside years 1-9999 once moved to UTC: the source rejects it (asserted below)
        assert am.canonical_timestamp(value) == expected, value
        checked += 1
    assert checked > 2900
    with pytest.raises(ValueError):
        am.canonical_timestamp("9999-12-31T23:30:00-01:00")


async def test_stalled_tls_handshake_is_closed_after_header_timeout(pki: dict[str, str]) -> None:
    client = ssl.create_default_context(cafile=pki["ca"])
    async with running({"certfile": pki["cert"], "keyfile": pki["key"], "header_timeout": 0.4}, client_ssl=client) as src:
        port = int(src.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x16\x03\x01")  # the start of a ClientHello, never finished
        started = asyncio.get_running_loop().time()
        data = await asyncio.wait_for(reader.read(), 5)
        waited = asyncio.get_running_loop().time() - started
        writer.close()
        assert data == b"" and 0.3 <= waited <= 3.0
        assert (await src.post(load("am025")))[0] == 200
