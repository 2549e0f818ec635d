# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""OtoboClient against a small local fake of GenericTicketConnectorREST (contract §1-§4 behaviours).

The fake copies what matters to the adapter: HTTP 200 + Error envelopes, credentials only
read from the query string on GET, ids as strings, AccessDenied for unknown tickets, ``{}``
for no hits, DynamicField criteria silently dropped on the GET search route.
"""


import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from ansible_collections.labops.itsm.plugins.module_utils._errors import (
    AmbiguousWriteError,
    AuthError,
    LabopsError,
    PermissionDenied,
    UnexpectedResponseError,
    ValidationError,
)
from ansible_collections.labops.itsm.plugins.module_utils._http import HttpClient
from ansible_collections.labops.itsm.plugins.module_utils._otobo import (
    OtoboClient,
    build_ticket_payload,
    client_from_params,
    is_closed_state,
    normalize_ticket,
    state_type,
    title_with_marker,
    to_int,
)

BASE = "/otobo/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST"
KEY = "3f9c2a7b1d0e4c55aa00bb11"
STATE_TYPES = {"new": "new", "open": "open", "closed successful": "closed", "pending reminder": "pending reminder"}


class FakeOtobo:
    def __init__(self):
        self.tickets = {}
        self.sessions = set()
        self.calls = []
        self.faults = []  # (operation, status, body) applied after the operation ran
        self.next_id = 100
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(parts.query).items()}
                data = dict(query)
                if self.command != "GET" and raw:
                    data = dict(json.loads(raw), **query)
                status, body = fake.dispatch(self.command, parts.path[len(BASE):], data)
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- behaviour ----------------------------------------------------------------------

    def dispatch(self, method, route, data):
        routes = [
            ("POST", r"^/Session$", "SessionCreate"), ("POST", r"^/Ticket$", "TicketCreate"),
            ("GET", r"^/Ticket$", "TicketSearch"), ("POST", r"^/TicketSearch$", "TicketSearch"),
            ("GET", r"^/Ticket/([^/]+)$", "TicketGet"), ("PATCH", r"^/Ticket/([^/]+)$", "TicketUpdate"),
            ("GET", r"^/TicketHistory/([^/]+)$", "TicketHistoryGet"),
        ]
        for verb, pattern, operation in routes:
            match = re.match(pattern, route)
            if verb == method and match:
                self.calls.append((operation, method, dict(data)))
                result = self.operation(operation, data, match.groups())
                for fault in list(self.faults):
                    if fault[0] == operation:
                        self.faults.remove(fault)
                        return fault[1], fault[2]
                return 200, result
        return 500, b"HTTP::REST Error while determine Operation for request URI '%s'." % route.encode()

    def operation(self, operation, data, groups):
        if operation == "SessionCreate":
            if data.get("UserLogin") == "alertbot" and data.get("Password") == "s3cret":
                sid = "S%031d" % len(self.sessions)
                self.sessions.add(sid)
                return {"SessionID": sid}
            return error("SessionCreate.AuthFail", "SessionCreate: Authorization failing!")
        if not self.authenticated(data):
            return error(operation + ".AuthFail", operation + ": User could not be authenticated!")
        return getattr(self, operation.lower())(data, *groups)

    def authenticated(self, data):
        if "SessionID" in data:
            return data["SessionID"] in self.sessions
        return data.get("UserLogin") == "alertbot" and data.get("Password") == "s3cret"

    def ticketcreate(self, data):
        ticket = data.get("Ticket") or {}
        if not ticket.get("Title"):
            return error("TicketCreate.MissingParameter", "TicketCreate: Ticket->Title parameter is missing!")
        self.next_id += 1
        tid = self.next_id
        dfs = data.get("DynamicField") or []
        article = dict(data["Article"], ArticleID=tid * 10, ArticleNumber=1, TicketID=tid, SenderTypeID="2")
        self.tickets[tid] = dict(
            TicketID=tid, TicketNumber="20250611100%05d" % tid, Title=ticket["Title"], State=ticket.get("State", "new"),
            StateType=STATE_TYPES.get(ticket.get("State", "new"), "open"), Queue=ticket.get("Queue"),
            Priority=ticket.get("Priority"), CustomerUserID=ticket.get("CustomerUser"), ServiceID="",
            DynamicField=[{"Name": "LabopsCorrelationKey", "Value": None}] + [dict(d) for d in dfs],
            Article=[article])
        return {"TicketID": str(tid), "TicketNumber": self.tickets[tid]["TicketNumber"], "ArticleID": tid * 10}

    def ticketget(self, data, tid):
        ticket = self.tickets.get(int(tid)) if tid.isdigit() else None
        if ticket is None:
            return error("TicketGet.AccessDenied", "TicketGet: User does not have access to the ticket!")
        result = {k: v for k, v in ticket.items() if k not in ("DynamicField", "Article")}
        if data.get("DynamicFields") == "1":
            result["DynamicField"] = ticket["DynamicField"]
        if data.get("AllArticles") == "1":
            result["Article"] = ticket["Article"]
        return {"Ticket": [result]}

    def ticketsearch(self, data):
        hits = sorted(self.tickets, reverse=True)
        if data.get("Title"):
            pattern = re.escape(data["Title"]).replace(r"\*", ".*")
            hits = [t for t in hits if re.match("^" + pattern + "$", self.tickets[t]["Title"], re.IGNORECASE)]
        if data.get("States"):
            states = data["States"] if isinstance(data["States"], list) else [data["States"]]
            hits = [t for t in hits if self.tickets[t]["State"] in states]
        for name, crit in data.items():
            if name.startswith("DynamicField_") and isinstance(crit, dict):  # only works with a body
                hits = [t for t in hits if {"Name": name[13:], "Value": crit.get("Equals")} in self.tickets[t]["DynamicField"]]
        return {"TicketID": [str(t) for t in hits]} if hits else {}

    def ticketupdate(self, data, tid):
        ticket = self.tickets.get(int(tid))
        if ticket is None:
            return error("TicketUpdate.AccessDenied", "TicketUpdate: User does not have access to the ticket!")
        for key, value in (data.get("Ticket") or {}).items():
            ticket[key] = value
            if key == "State":
                ticket["StateType"] = STATE_TYPES.get(value, "open")
        for df in data.get("DynamicField") or []:
            ticket["DynamicField"] = [d for d in ticket["DynamicField"] if d["Name"] != df["Name"]] + [df]
        result = {"TicketID": str(tid), "TicketNumber": ticket["TicketNumber"]}
        if data.get("Article"):
            article_id = int(tid) * 10 + len(ticket["Article"])
            ticket["Article"].append(dict(data["Article"], ArticleID=article_id, TicketID=int(tid)))
            result["ArticleID"] = article_id
        return result

    def tickethistoryget(self, data, tid):
        return {"TicketHistory": [{"TicketID": tid, "History": [
            {"HistoryType": "NewTicket", "HistoryTypeID": 1, "TicketID": tid, "ArticleID": 0, "StateID": 1}]}]}


def error(code, message):
    return {"Error": {"ErrorCode": code, "ErrorMessage": message}}


@pytest.fixture
def fake():
    srv = FakeOtobo()
    yield srv
    srv.stop()


@pytest.fixture
def sleeps():
    return []


def make_client(fake, sleeps, **kwargs):
    http = HttpClient("otobo", fake.url, timeout=2, sleep=sleeps.append)
    kwargs.setdefault("username", "alertbot")
    kwargs.setdefault("password", "s3cret")
    warned = []
    kwargs.setdefault("warn", warned.append)
    client = OtoboClient(http, **kwargs)
    client.warned = warned  # what the client reported through its warn callback
    return client


@pytest.fixture
def client(fake, sleeps):
    return make_client(fake, sleeps)


TICKET = {"title": "Disk full [ck:%s]" % KEY, "queue": "Raw", "priority": "3 normal", "state": "new",
          "customer_user": "monitoring"}
ARTICLE = {"subject": "Disk full", "body": "97%", "content_type": "text/plain; charset=utf8"}


def test_create_get_roundtrip_with_session(fake, sleeps):
    client = make_client(fake, sleeps, use_session=True)
    created = client.create_ticket(TICKET, ARTICLE, {"LabopsCorrelationKey": KEY})
    assert created == {"ticket_id": 101, "ticket_number": "2025061110000101", "article_id": 1010}
    ticket = client.get_ticket(101, articles=True)
    assert ticket["ticket_id"] == 101 and isinstance(ticket["ticket_id"], int)
    assert ticket["dynamic_fields"] == {"LabopsCorrelationKey": KEY}
    assert ticket["articles"][0]["subject"] == "Disk full"
    assert ticket["articles"][0]["article_id"] == 1010
    ops = [(c[0], c[1]) for c in fake.calls]
    assert ops == [("SessionCreate", "POST"), ("TicketCreate", "POST"), ("TicketGet", "GET")]
    # one session, sent in the body for POST and in the query string for GET
    assert fake.calls[1][2]["SessionID"] == fake.calls[2][2]["SessionID"]
    assert "Password" not in fake.calls[1][2] and "Password" not in fake.calls[2][2]


def test_credentials_without_session_go_in_query_for_get(fake, sleeps):
    client = make_client(fake, sleeps, use_session=False)
    assert client.search_ticket_ids(Title="*nothing*") == []
    assert fake.calls[0][0] == "TicketSearch"
    assert fake.calls[0][2]["UserLogin"] == "alertbot"


def test_get_ticket_missing_is_none(client):
    assert client.get_ticket(999) is None


def test_auth_fail_maps_to_auth_error_without_secret(fake, sleeps):
    client = make_client(fake, sleeps, password="wrong-pass", use_session=True)
    with pytest.raises(AuthError) as err:
        client.get_ticket(1)
    assert "SessionCreate.AuthFail" in str(err.value)
    assert "wrong-pass" not in json.dumps(err.value.fail_kwargs())


def test_expired_session_is_recreated_once(fake, sleeps):
    client = make_client(fake, sleeps, use_session=True)
    client.search_ticket_ids(Title="x")
    fake.sessions.clear()  # server forgets the session
    assert client.search_ticket_ids(Title="x") == []
    assert [c[0] for c in fake.calls] == ["SessionCreate", "TicketSearch", "TicketSearch", "SessionCreate", "TicketSearch"]


def test_session_rejected_twice_raises(fake, sleeps, monkeypatch):
    client = make_client(fake, sleeps, use_session=True)
    client.search_ticket_ids(Title="x")
    monkeypatch.setattr(fake, "authenticated", lambda data: "SessionID" not in data)
    with pytest.raises(AuthError, match="TicketSearch.AuthFail"):
        client.search_ticket_ids(Title="x")


def test_validation_error_from_envelope(client):
    with pytest.raises(ValidationError, match=r"otobo TicketCreate \(POST /otobo/.*/Ticket\): TicketCreate.MissingParameter"):
        client.create_ticket(dict(TICKET, title=""), ARTICLE)


def test_update_missing_ticket_is_permission_denied(client):
    with pytest.raises(PermissionDenied):
        client.update_ticket(999, {"state": "open"})


def test_search_ids_coerced_and_empty_result(fake, client):
    client.create_ticket(TICKET, ARTICLE)
    assert client.search_ticket_ids(Title="*%s*" % KEY) == [101]
    assert client.search_ticket_ids(Title="*ffff0000*") == []


def test_dynamic_field_criteria_refused_on_get(client):
    with pytest.raises(ValidationError, match="GET search route"):
        client.search_ticket_ids(DynamicField_LabopsCorrelationKey=KEY)


def test_search_by_dynamic_field_needs_route(client):
    with pytest.raises(ValidationError, match="search_route"):
        client.search_by_dynamic_field("LabopsCorrelationKey", KEY)


def test_search_route_get_refused(fake, sleeps):
    with pytest.raises(ValidationError):
        make_client(fake, sleeps, search_route={"method": "GET", "path": "/Ticket"})


def test_find_by_correlation_key_title_search_verifies(fake, client):
    client.create_ticket(dict(TICKET, title="other [ck:%s0]" % KEY[:-1]), ARTICLE)  # similar, not equal key
    assert client.find_by_correlation_key(KEY) is None
    client.create_ticket(TICKET, ARTICLE)
    found = client.find_by_correlation_key(KEY)
    assert found["ticket_id"] == 102
    assert client.warned == []


def test_find_by_correlation_key_dynamic_field_route(fake, sleeps):
    client = make_client(fake, sleeps, search_route={"method": "POST", "path": "/TicketSearch"},
                         correlation_field="LabopsCorrelationKey")
    client.create_ticket(dict(TICKET, title="no marker"), ARTICLE, {"LabopsCorrelationKey": KEY})
    found = client.find_by_correlation_key(KEY)
    assert found["ticket_id"] == 101
    search = next(c for c in fake.calls if c[0] == "TicketSearch")
    assert search[1] == "POST" and search[2]["DynamicField_LabopsCorrelationKey"] == {"Equals": KEY}


def test_find_by_correlation_key_picks_newest_open_and_warns(fake, client):
    client.create_ticket(TICKET, ARTICLE)
    client.create_ticket(TICKET, ARTICLE)
    client.create_ticket(dict(TICKET, state="closed successful"), ARTICLE)
    found = client.find_by_correlation_key(KEY)
    assert found["ticket_id"] == 102
    assert len(client.warned) == 1
    assert "3 tickets carry correlation key" in client.warned[0]


def test_find_by_correlation_key_open_only(fake, client):
    client.create_ticket(dict(TICKET, state="closed successful"), ARTICLE)
    assert client.find_by_correlation_key(KEY) is not None
    assert client.find_by_correlation_key(KEY, open_only=True) is None
    assert fake.calls[-1][2]["States"] == ["new", "open", "pending reminder", "pending auto close+", "pending auto close-"]


def test_find_by_correlation_key_rejects_unsafe_key(client):
    with pytest.raises(ValidationError):
        client.find_by_correlation_key("*) OR (*")


def test_find_by_number(fake, client):
    client.create_ticket(TICKET, ARTICLE)
    fake.ticketsearch = lambda data: {"TicketID": ["101"]} if data.get("TicketNumber") == "2025061110000101" else {}
    assert client.find_ticket_by_number("2025061110000101")["ticket_id"] == 101
    assert client.find_ticket_by_number("2025061110000999") is None


def test_update_adds_article_and_is_not_retried(fake, client, sleeps):
    client.create_ticket(TICKET, ARTICLE)
    fake.faults.append(("TicketUpdate", 503, b"busy"))
    with pytest.raises(AmbiguousWriteError):
        client.update_ticket(101, article={"subject": "s", "body": "b", "content_type": "text/plain; charset=utf8"})
    assert sleeps == []
    assert len(fake.tickets[101]["Article"]) == 2  # applied although the reply failed


def test_field_only_update_is_retried(fake, client, sleeps):
    client.create_ticket(TICKET, ARTICLE)
    fake.faults.append(("TicketUpdate", 503, b"busy"))
    assert client.update_ticket(101, {"state": "open"}) == {"ticket_id": 101, "ticket_number": "2025061110000101", "article_id": None}
    assert sleeps == [1.0]
    assert client.get_ticket(101)["state_type"] == "open"


def test_create_5xx_is_ambiguous(fake, client, sleeps):
    fake.faults.append(("TicketCreate", 500, b'{"faultcode":"Server","faultstring":"Article could not be created"}'))
    with pytest.raises(AmbiguousWriteError, match="Article could not be created"):
        client.create_ticket(TICKET, ARTICLE)
    assert sleeps == []


def test_error_envelope_inside_a_5xx_is_definite(fake, client, sleeps):
    fake.faults.append(("TicketCreate", 502, b'{"Error":{"ErrorCode":"TicketCreate.AccessDenied","ErrorMessage":"TicketCreate: no"}}'))
    with pytest.raises(PermissionDenied, match="nothing was written") as err:
        client.create_ticket(TICKET, ARTICLE)
    assert not isinstance(err.value, AmbiguousWriteError)
    assert err.value.details["error_code"] == "TicketCreate.AccessDenied"


def test_create_refused_with_ticket_could_not_be_created_is_definite(fake, client, sleeps):
    fake.faults.append(("TicketCreate", 500, b'{"faultcode":"Server","faultstring":"Ticket could not be created"}'))
    with pytest.raises(ValidationError, match="nothing was written.*wrong case") as err:
        client.create_ticket(TICKET, ARTICLE)
    assert not isinstance(err.value, AmbiguousWriteError)
    assert sleeps == []


def test_transport_rejection_500_is_not_ambiguous(fake, client):
    client.base_path += "/nonexistent"
    with pytest.raises(UnexpectedResponseError) as err:
        client.create_ticket(TICKET, ARTICLE)
    assert not isinstance(err.value, AmbiguousWriteError)
    assert "Error while determine Operation" in str(err.value)


def test_get_500_retried_once_only(fake, client, sleeps):
    client.base_path += "/nonexistent"
    client.session_id = "S" + "0" * 31
    fake.sessions.add(client.session_id)
    with pytest.raises(UnexpectedResponseError):
        client.get_ticket(1)
    assert sleeps == [1.0]


def test_history_and_url(fake, client):
    client.create_ticket(TICKET, ARTICLE)
    history = client.history(101)
    assert history[0]["TicketID"] == 101 and history[0]["HistoryType"] == "NewTicket"
    assert client.ticket_url(101) == fake.url + "/otobo/index.pl?Action=AgentTicketZoom;TicketID=101"


def test_path_prefix_and_webservice_quoting(fake, sleeps):
    client = make_client(fake, sleeps, path_prefix="znuny/", webservice="My Service")
    assert client.base_path == "/znuny/nph-genericinterface.pl/Webservice/My%20Service"
    assert client.ticket_url(5).endswith("/znuny/index.pl?Action=AgentTicketZoom;TicketID=5")


def test_missing_credentials():
    with pytest.raises(ValidationError):
        OtoboClient(HttpClient("otobo", "http://h"), username="", password="x")


def test_client_from_params(fake):
    client = client_from_params(dict(url=fake.url, username="alertbot", password="s3cret", validate_certs=False,
                                     ca_path=None, timeout=5, webservice=None, use_session=False,
                                     search_route=None, correlation_field=None, path_prefix=None))
    assert client.http.session.verify is False and client.http.timeout == 5
    assert client.use_session is False


@pytest.mark.parametrize("name, kind", [
    ("new", "new"), ("open", "open"), ("closed successful", "closed"), ("Closed Unsuccessful", "closed"),
    ("pending reminder", "pending reminder"), ("pending auto close+", "pending auto"), ("merged", "merged"),
    ("closed with workaround", "closed"), ("pending customer", "pending reminder"), ("weird", None), (None, None),
])
def test_state_type(name, kind):
    assert state_type(name) == kind


def test_closed_state_helpers():
    assert is_closed_state("closed successful")
    assert not is_closed_state("open")
    assert is_closed_state("resolved", known={"resolved": "closed"})


def test_to_int():
    assert to_int("42") == 42 and to_int(42) == 42 and to_int("") is None and to_int(None) is None
    with pytest.raises(UnexpectedResponseError):
        to_int("abc")


def test_title_with_marker():
    assert title_with_marker("Disk full ", KEY) == "Disk full [ck:%s]" % KEY
    assert title_with_marker("Disk full [ck:%s]" % KEY, KEY) == "Disk full [ck:%s]" % KEY
    assert title_with_marker("x", None) == "x"


def test_build_ticket_payload():
    payload = build_ticket_payload({"title": "t", "queue": "Raw", "owner": None},
                                   {"subject": "s", "body": "b", "is_visible_for_customer": False}, {"B": 2, "A": 1})
    assert payload == {"Ticket": {"Title": "t", "Queue": "Raw"},
                       "Article": {"Subject": "s", "Body": "b", "IsVisibleForCustomer": 0},
                       "DynamicField": [{"Name": "A", "Value": 1}, {"Name": "B", "Value": 2}]}
    with pytest.raises(ValidationError, match="unknown ticket field"):
        build_ticket_payload({"colour": "red"})


def test_normalize_ticket_handles_strings_and_single_article():
    ticket = normalize_ticket({"TicketID": "7", "TicketNumber": 123, "State": "open",
                               "DynamicField": [{"Name": "A", "Value": None}], "Article": {"ArticleID": "3", "IsVisibleForCustomer": "1"}})
    assert ticket["ticket_id"] == 7 and ticket["ticket_number"] == "123" and ticket["state_type"] == "open"
    assert ticket["dynamic_fields"] == {"A": None}
    assert ticket["articles"][0]["article_id"] == 3 and ticket["articles"][0]["is_visible_for_customer"] is True


def test_errors_are_labops_errors(client):
    with pytest.raises(LabopsError):
        client.update_ticket("abc")


# -- misconfiguration answers: the operation never ran, so they are neither ambiguous nor "not found" ---------


def test_url_with_web_service_path_is_rejected(fake, sleeps):
    http = HttpClient("otobo", fake.url + BASE, sleep=sleeps.append)
    with pytest.raises(ValidationError, match="url must name only scheme, host and port"):
        OtoboClient(http, username="alertbot", password="s3cret")


def test_no_route_500_names_the_hint_and_drops_the_ambiguity_note(fake, client):
    client.search_route = {"method": "POST", "path": "/NoSuchSearch"}
    client.correlation_field = "LabopsCorrelationKey"
    with pytest.raises(UnexpectedResponseError) as err:
        client.find_by_correlation_key(KEY)
    assert not isinstance(err.value, AmbiguousWriteError)
    message = str(err.value)
    assert "check webservice, path_prefix and search_route; nothing was written" in message
    assert "may or may not" not in message
    assert err.value.details["status"] == 500


def test_http_404_is_a_wrong_url_not_a_missing_ticket(sleeps):
    harness = pytest.importorskip("simulators.harness")
    with harness.start_in_thread("otobo") as sim:
        http = HttpClient("otobo", sim.url, timeout=5, sleep=sleeps.append)
        client = OtoboClient(http, username="alertbot", password="s3cret", use_session=False, path_prefix="/znuny")
        with pytest.raises(UnexpectedResponseError, match="check url and path_prefix") as err:
            client.get_ticket(1)  # ticket 1 exists: a swallowed 404 would report it missing
    assert err.value.details["status"] == 404
    assert sleeps == []


def test_http_403_from_a_proxy_is_not_a_missing_ticket(fake, client, monkeypatch):
    client.create_ticket(TICKET, ARTICLE)
    fake.faults.append(("TicketGet", 403, b"Forbidden by proxy"))
    with pytest.raises(PermissionDenied, match="HTTP 403: Forbidden by proxy"):
        client.get_ticket(101)
    assert client.get_ticket(999) is None  # the envelope's AccessDenied still means "no such ticket"


def test_empty_500_is_an_unknown_web_service():
    harness = pytest.importorskip("simulators.harness")
    with harness.start_in_thread("otobo") as sim:
        http = HttpClient("otobo", sim.url, timeout=5, sleep=lambda _s: None)
        client = OtoboClient(http, username="alertbot", password="s3cret", webservice="NoSuchService")
        with pytest.raises(UnexpectedResponseError) as err:
            client.login()
    assert not isinstance(err.value, AmbiguousWriteError)
    assert "HTTP 500: (empty body)" in str(err.value)
    assert "check webservice 'NoSuchService'; nothing was written" in str(err.value)
