# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""HttpClient against a real local HTTP server (port 0) with a scripted reply queue."""


import email.utils
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from ansible_collections.labops.itsm.plugins.module_utils._errors import (
    AmbiguousWriteError,
    AuthError,
    CommunicationError,
    LabopsError,
    NotFoundError,
    PermissionDenied,
    UnexpectedResponseError,
    ValidationError,
)
from ansible_collections.labops.itsm.plugins.module_utils._http import (
    HttpClient,
    RetryPolicy,
    parse_retry_after,
    scrub,
    server_error_text,
)

DROP = "drop"  # close the connection after reading the request, without replying
HANG = "hang"  # reply later than the client timeout


class ScriptedServer:
    """Replies from a list of (status, headers, body) or DROP/HANG; records every request."""

    def __init__(self):
        self.replies = []
        self.requests = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                server.requests.append(dict(method=self.command, path=parts.path, query=parse_qs(parts.query),
                                            body=body, headers=dict(self.headers)))
                reply = server.replies.pop(0) if server.replies else (200, {}, b"{}")
                if reply == DROP:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if reply == HANG:
                    time.sleep(0.6)
                    reply = (200, {}, b"{}")
                status, headers, payload = reply
                if isinstance(payload, (dict, list)):
                    payload = json.dumps(payload).encode()
                elif isinstance(payload, str):
                    payload = payload.encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = ScriptedServer()
    yield srv
    srv.stop()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def client(server, sleeps):
    return HttpClient("otobo", server.url, timeout=0.3, sleep=sleeps.append)


def test_success_returns_status_headers_body_and_json(server, client):
    server.replies = [(200, {"Content-Type": "application/json", "X-Test": "1"}, {"TicketID": "42"})]
    response = client.request("GET", "/api/Ticket/42", operation="TicketGet", params={"DynamicFields": 1})
    assert response.status == 200
    assert response.headers["x-test"] == "1"
    assert response.body == b'{"TicketID": "42"}'
    assert response.json() == {"TicketID": "42"}
    assert server.requests[0]["query"] == {"DynamicFields": ["1"]}
    assert server.requests[0]["headers"]["Accept"] == "application/json"
    assert server.requests[0]["headers"]["User-Agent"].startswith("labops.itsm/")


def test_json_body_and_repeated_query_keys(server, client):
    server.replies = [(200, {}, {"ok": 1})]
    client.request("POST", "/x", operation="Op", params={"States": ["new", "open"]}, json={"a": [1, 2]})
    req = server.requests[0]
    assert req["query"] == {"States": ["new", "open"]}
    assert json.loads(req["body"]) == {"a": [1, 2]}
    assert req["headers"]["Content-Type"] == "application/json"


def test_form_body_and_the_count_of_requests_sent(server, client, sleeps):
    server.replies = [(503, {}, "busy"), (200, {}, {"access_token": "t"})]
    client.request("POST", "/oauth_token.do", operation="token", form={"grant_type": "password", "username": "a b"}, retry_unsafe=True)
    req = server.requests[-1]
    assert req["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(req["body"].decode()) == {"grant_type": ["password"], "username": ["a b"]}
    assert client.sent == 2 and sleeps == [1.0]      # every attempt counts, retries included
    with pytest.raises(ValueError):
        client.request("POST", "/x", operation="Op", json={"a": 1}, form={"b": 2})
    assert client.sent == 2


def test_backoff_sequence_is_exactly_1_2_4_then_fails(server, client, sleeps):
    server.replies = [(503, {}, "busy")] * 4
    with pytest.raises(UnexpectedResponseError) as err:
        client.request("GET", "/t", operation="TicketSearch")
    assert sleeps == [1.0, 2.0, 4.0]
    assert len(server.requests) == 4
    assert "otobo TicketSearch (GET /t): HTTP 503: busy" in str(err.value)
    assert err.value.fail_kwargs()["status"] == 503


def test_retry_then_success(server, client, sleeps):
    server.replies = [(502, {}, "bad gw"), (504, {}, "gw timeout"), (200, {}, {"ok": True})]
    assert client.request("GET", "/t", operation="Op").json() == {"ok": True}
    assert sleeps == [1.0, 2.0]


@pytest.mark.parametrize("status, error", [
    (400, ValidationError), (401, AuthError), (403, PermissionDenied), (404, NotFoundError),
    (409, UnexpectedResponseError), (413, UnexpectedResponseError), (422, ValidationError),
])
def test_other_4xx_are_never_retried_and_mapped(server, client, sleeps, status, error):
    server.replies = [(status, {}, {"error": {"message": "nope %d" % status}})]
    with pytest.raises(error) as err:
        client.request("GET", "/t", operation="Op")
    assert sleeps == []
    assert len(server.requests) == 1
    assert "HTTP %d: nope %d" % (status, status) in str(err.value)


def test_429_honours_retry_after_seconds(server, client, sleeps):
    server.replies = [(429, {"Retry-After": "7"}, "slow down"), (200, {}, {})]
    client.request("GET", "/t", operation="Op")
    assert sleeps == [7.0]


def test_429_retry_after_capped_by_max_delay(server, sleeps):
    client = HttpClient("otobo", server.url, timeout=0.3, sleep=sleeps.append, retry=RetryPolicy(max_delay=5))
    server.replies = [(429, {"Retry-After": "3600"}, ""), (200, {}, {})]
    client.request("GET", "/t", operation="Op")
    assert sleeps == [5]


def test_429_retry_after_http_date(server, client, sleeps):
    when = email.utils.formatdate(time.time() + 10, usegmt=True)
    server.replies = [(429, {"Retry-After": when}, ""), (200, {}, {})]
    client.request("GET", "/t", operation="Op")
    assert len(sleeps) == 1 and 8.0 <= sleeps[0] <= 10.0


def test_429_without_retry_after_uses_backoff_and_is_retried_for_post(server, client, sleeps):
    server.replies = [(429, {}, ""), (429, {}, ""), (201, {}, {"id": 1})]
    response = client.request("POST", "/t", operation="Create", json={"a": 1}, expected=(201,))
    assert response.status == 201
    assert sleeps == [1.0, 2.0]


def test_429_exhausted_is_a_communication_error(server, client, sleeps):
    server.replies = [(429, {"Retry-After": "1"}, "")] * 4
    with pytest.raises(CommunicationError, match="rate limited"):
        client.request("GET", "/t", operation="Op")
    assert sleeps == [1.0, 1.0, 1.0]


def test_parse_retry_after():
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("12") == 12.0
    now = 1_700_000_000
    assert parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


def test_post_5xx_without_opt_in_is_ambiguous_and_not_resent(server, client, sleeps):
    server.replies = [(503, {}, "overloaded"), (200, {}, {})]
    with pytest.raises(AmbiguousWriteError) as err:
        client.request("POST", "/Ticket", operation="TicketCreate", json={"x": 1})
    assert isinstance(err.value, CommunicationError)
    assert len(server.requests) == 1
    assert sleeps == []
    assert "may or may not have been applied" in str(err.value)


def test_patch_5xx_with_opt_in_is_retried_then_ambiguous(server, client, sleeps):
    server.replies = [(500, {}, "e")] * 4
    with pytest.raises(AmbiguousWriteError):
        client.request("PATCH", "/Ticket/1", operation="TicketUpdate", json={"x": 1}, retry_unsafe=True)
    assert sleeps == [1.0, 2.0, 4.0]
    assert len(server.requests) == 4


def test_status_retry_caps_limit_deterministic_500(server, client, sleeps):
    server.replies = [(500, {}, "no route")] * 4
    with pytest.raises(UnexpectedResponseError):
        client.request("GET", "/t", operation="Op", status_retry_caps={500: 1})
    assert len(server.requests) == 2
    assert sleeps == [1.0]


def test_post_dropped_connection_after_send_is_ambiguous(server, client, sleeps):
    server.replies = [DROP, (200, {}, {})]
    with pytest.raises(AmbiguousWriteError, match="no reply after the request was sent"):
        client.request("POST", "/Ticket", operation="TicketCreate", json={"x": 1})
    assert len(server.requests) == 1
    assert sleeps == []


def test_post_read_timeout_is_ambiguous(server, client):
    server.replies = [HANG]
    with pytest.raises(AmbiguousWriteError):
        client.request("POST", "/Ticket", operation="TicketCreate", json={"x": 1})


def test_get_dropped_connection_is_retried(server, client, sleeps):
    server.replies = [DROP, (200, {}, {"ok": 1})]
    assert client.request("GET", "/t", operation="Op").json() == {"ok": 1}
    assert sleeps == [1.0]


def test_get_timeouts_exhausted_is_communication_error(server, client, sleeps):
    server.replies = [HANG] * 4
    with pytest.raises(CommunicationError) as err:
        client.request("GET", "/t", operation="Op")
    assert not isinstance(err.value, AmbiguousWriteError)
    assert sleeps == [1.0, 2.0, 4.0]


def test_connection_refused_post_is_retried_because_nothing_was_sent(sleeps):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    client = HttpClient("otobo", "http://127.0.0.1:%d" % port, timeout=0.3, sleep=sleeps.append)
    with pytest.raises(CommunicationError) as err:
        client.request("POST", "/Ticket", operation="TicketCreate", json={})
    assert not isinstance(err.value, AmbiguousWriteError)
    assert sleeps == [1.0, 2.0, 4.0]
    assert "otobo TicketCreate (POST /Ticket): request failed: the connection was refused (nothing listens there) at http://127.0.0.1:" in str(err.value)


def test_secrets_never_in_messages(server, client):
    client.register_secret("s3cret-password")
    client.register_secret("Hq5Q3F0e2QbJq5wWZ9mK1oD7cYxLtUaB")
    server.replies = [(400, {}, "bad request for Password=s3cret-password and SessionID=Hq5Q3F0e2QbJq5wWZ9mK1oD7cYxLtUaB token=abc")]
    with pytest.raises(LabopsError) as err:
        client.request("GET", "/t?SessionID=Hq5Q3F0e2QbJq5wWZ9mK1oD7cYxLtUaB", operation="TicketGet",
                       params={"Password": "s3cret-password"})
    text = str(err.value) + json.dumps(err.value.fail_kwargs())
    assert "s3cret" not in text
    assert "Hq5Q3F0e" not in text
    assert "abc" not in text
    assert "(GET /t)" in text


def test_secrets_never_in_transport_error_messages(server, client):
    client.register_secret("s3cret-password")
    server.replies = [HANG] * 4
    with pytest.raises(CommunicationError) as err:
        client.request("GET", "/t", operation="TicketGet", params={"UserLogin": "bot", "Password": "s3cret-password"})
    assert "s3cret" not in str(err.value)


def test_server_text_is_truncated(server, client):
    server.replies = [(400, {}, "x" * 5000)]
    with pytest.raises(ValidationError) as err:
        client.request("GET", "/t", operation="Op")
    assert len(str(err.value)) < 500
    assert str(err.value).endswith("(truncated)")


def test_empty_error_body(server, client):
    server.replies = [(500, {}, b"")]
    with pytest.raises(UnexpectedResponseError, match=r"HTTP 500: \(empty body\)"):
        client.request("GET", "/t", operation="Op", status_retry_caps={500: 0})


def test_non_json_body_on_json(server, client):
    server.replies = [(200, {}, "<html>")]
    response = client.request("GET", "/t", operation="Op")
    with pytest.raises(UnexpectedResponseError, match="not JSON"):
        response.json()


def test_tls_settings():
    assert HttpClient("p", "https://h").session.verify is True
    assert HttpClient("p", "https://h", validate_certs=False).session.verify is False
    assert HttpClient("p", "https://h", ca_path="/etc/ca.pem").session.verify == "/etc/ca.pem"


@pytest.mark.parametrize("url", ["", "otobo.example", "ftp://x", "http://"])
def test_bad_base_url(url):
    with pytest.raises(ValidationError):
        HttpClient("otobo", url)


def test_scrub_patterns():
    assert scrub("a?Password=x&b=1") == "a?Password=********&b=1"
    assert scrub('{"Password": "x", "SessionID":"y"}') == '{"Password": "********", "SessionID":"********"}'
    assert scrub("Authorization: Bearer abc.def") == "Authorization: ********"
    assert scrub("the value hunter2 leaked", ["hunter2"]) == "the value ******** leaked"


def test_server_error_text_variants():
    assert server_error_text(b'{"Error":{"ErrorCode":"X.AuthFail","ErrorMessage":"m"}}') == "X.AuthFail: m"
    assert server_error_text(b'{"faultcode":"Server","faultstring":"boom"}') == "boom"
    assert server_error_text(b'{"errorMessages":["a","b"]}') == "a; b"
    assert server_error_text(b"plain") == "plain"


def test_retry_policy_backoff_and_jitter():
    policy = RetryPolicy()
    assert [policy.backoff(n) for n in range(3)] == [1.0, 2.0, 4.0]
    assert RetryPolicy(max_delay=3).backoff(5) == 3
    jittered = RetryPolicy(jitter=0.5)
    assert all(1.0 <= jittered.backoff(0) <= 1.5 for dummy in range(20))
