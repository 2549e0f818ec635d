"""The OTOBO simulator against contracts/otobo.md, over real HTTP (no mocks)."""
from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from simulators.harness import InThreadSimulator, start_in_thread, start_simulator
from simulators.otobo import parse_query
from simulators.otobo_model import checksum_tn
from simulators.otobo_search import ExpressionError, compile_expression

AGENT = {"UserLogin": "alertbot", "Password": "s3cret"}
CUSTOMER = {"CustomerUserLogin": "monitoring", "Password": "m0nitoring"}


class Client:
    """Minimal HTTP client with a selectable source address (to act as a second client IP)."""

    def __init__(self, sim: InThreadSimulator | Any, source: str | None = None) -> None:
        self.sim = sim
        self.source = source

    def raw(self, method: str, path: str, params: Any = None, body: Any = None, *, raw_body: bytes | None = None,
            full_path: str | None = None) -> tuple[int, dict[str, str], bytes]:
        base = urllib.parse.urlsplit(self.sim.otobo_base)
        target = full_path if full_path is not None else base.path + path
        if params:
            target += "?" + (params if isinstance(params, str) else urllib.parse.urlencode(params, doseq=True))
        data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
        conn = http.client.HTTPConnection(base.hostname, base.port, timeout=10, source_address=(self.source, 0) if self.source else None)
        try:
            conn.request(method, target, body=data, headers={"Content-Type": "application/json"} if data is not None else {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def call(self, method: str, path: str, params: Any = None, body: Any = None) -> Any:
        status, headers, payload = self.raw(method, path, params, body)
        assert status == 200, (status, payload)
        assert headers["content-type"] == "application/json; charset=UTF-8"
        return json.loads(payload)

    def session(self, creds: dict[str, str] | None = None) -> str:
        return self.call("POST", "/Session", body=creds or AGENT)["SessionID"]


@pytest.fixture(scope="module")
def sim() -> Iterator[InThreadSimulator]:
    server = start_in_thread("otobo", {"post_search_route": True})
    yield server
    server.stop()


@pytest.fixture()
def client(sim: InThreadSimulator) -> Client:
    sim.reset()
    return Client(sim)


def ticket_body(**ticket: Any) -> dict[str, Any]:
    base = {"Title": "[FIRING] HostDown pve-node1", "Queue": "Raw", "State": "new", "Priority": "5 very high", "CustomerUser": "monitoring"}
    base.update(ticket)
    return {
        **AGENT, "Ticket": {k: v for k, v in base.items() if v is not None},
        "Article": {"CommunicationChannel": "Internal", "SenderType": "system", "Subject": "HostDown pve-node1",
                    "Body": "instance=pve-node1", "ContentType": "text/plain; charset=utf8"},
    }


def create(client: Client, **ticket: Any) -> dict[str, Any]:
    result = client.call("POST", "/Ticket", body=ticket_body(**ticket))
    assert "Error" not in result, result
    return result


def error(result: dict[str, Any]) -> tuple[str, str]:
    assert set(result) == {"Error"} and set(result["Error"]) == {"ErrorCode", "ErrorMessage"}, result
    return result["Error"]["ErrorCode"], result["Error"]["ErrorMessage"]


# ---------------------------------------------------------------- routing and transport


@pytest.mark.parametrize("method,path", [("GET", "/Ticket/1/"), ("PUT", "/Ticket/1"), ("DELETE", "/Ticket/1"), ("POST", "/Nope"), ("GET", "/ticket/1")])
def test_unrouted_requests_are_500_with_the_transport_message(client: Client, method: str, path: str) -> None:
    status, headers, body = client.raw(method, path, body={"a": 1} if method in ("PUT", "POST") else None)
    assert status == 500
    assert headers["content-type"].startswith("text/plain")
    assert body.decode() == f"HTTP::REST Error while determine Operation for request URI '{path}'."


def test_head_is_an_empty_500(client: Client) -> None:
    status, _headers, body = client.raw("HEAD", "/Ticket/1")
    assert (status, body) == (500, b"")


def test_unknown_webservice_is_empty_500_without_content_type(client: Client) -> None:
    status, headers, body = client.raw("GET", "", full_path="/otobo/nph-genericinterface.pl/Webservice/Elasticsearch/Ticket/1")
    assert (status, body) == (500, b"") and "content-type" not in headers
    status, headers, body = client.raw("GET", "", full_path="/otobo/nph-genericinterface.pl/WebserviceID/1/Ticket/1")
    assert (status, body) == (500, b"") and "content-type" not in headers


def test_webservice_id_route_and_whole_path_without_subpath(client: Client) -> None:
    status, _h, body = client.raw("POST", "", full_path="/otobo/nph-genericinterface.pl/WebserviceID/2/Session", body=AGENT)
    assert status == 200 and "SessionID" in json.loads(body)
    full = "/otobo/nph-genericinterface.pl/Webservice/GenericTicketConnectorREST"
    status, _h, body = client.raw("GET", "", full_path=full)
    assert body.decode() == f"HTTP::REST Error while determine Operation for request URI '{full}'."


@pytest.mark.parametrize("raw,message", [
    (b"{}", "Unsupported request content structure."), (b"[]", "Unsupported request content structure."),
    (b"5", "Unsupported request content structure."), (b"UserLogin=alertbot", "Error while decoding request content."),
    (b"[{\"Ticket\": {}}]", "Internal Server Error"),
])
def test_body_structure_errors(client: Client, raw: bytes, message: str) -> None:
    status, headers, body = client.raw("POST", "/Ticket", params=AGENT, raw_body=raw)
    assert (status, body.decode()) == (500, message)
    assert headers["content-type"].startswith("text/plain")


def test_empty_body_and_arrays_reach_the_operation(client: Client) -> None:
    assert error(client.call("POST", "/Session"))[1] == "SessionCreate: Password parameter is missing!"
    status, _h, body = client.raw("POST", "/Session", raw_body=b'[{"UserLogin":"alertbot"}]')
    assert status == 200 and error(json.loads(body)) == ("SessionCreate.MissingParameter", "SessionCreate: The request is empty!")
    assert error(client.call("POST", "/Ticket"))[0] == "TicketCreate.MissingParameter"


def test_query_and_path_parameters_override_the_body(client: Client) -> None:
    result = client.call("POST", "/Session", params={"Password": "s3cret"}, body={"UserLogin": "alertbot", "Password": "wrong"})
    assert "SessionID" in result
    sid = client.session()
    # GET ignores the body: credentials there are never seen.
    _status, _h, body = client.raw("GET", "/Ticket", raw_body=json.dumps({"SessionID": sid}).encode())
    assert error(json.loads(body)) == ("TicketSearch.AuthFail", "TicketSearch: Authorization failing!")


def test_query_parsing_rules() -> None:
    parsed = parse_query("a=1&a=2;b=x+y&c=%3D%26&d=0&e=new,open&f=g=h&k%2Bx=1+1")
    assert parsed == {"a": ["1", "2"], "b": "x y", "c": "=&", "d": "", "e": "new,open", "f": "g", "k+x": "1 1"}


def test_body_over_max_length_is_413() -> None:
    with start_in_thread("otobo", {"max_length": 1000}) as small:
        status, headers, body = Client(small).raw("POST", "/Session", body={"UserLogin": "x" * 2000, "Password": "p"})
    assert (status, body.decode()) == (413, "Payload Too Large")
    assert headers["content-type"].startswith("text/plain")


# ---------------------------------------------------------------- authentication and sessions


def test_credential_checks_in_order(client: Client) -> None:
    body = ticket_body()
    no_creds = {k: v for k, v in body.items() if k not in AGENT}
    assert error(client.call("POST", "/Ticket", body=no_creds)) == (
        "TicketCreate.MissingParameter", "TicketCreate: UserLogin, CustomerUserLogin or SessionID is required!")
    assert error(client.call("POST", "/Ticket", body={**no_creds, "UserLogin": "alertbot"})) == (
        "TicketCreate.MissingParameter", "TicketCreate: Password or SessionID is required!")
    assert error(client.call("POST", "/Ticket", body={**no_creds, "UserLogin": "alertbot", "Password": "nope"})) == (
        "TicketCreate.AuthFail", "TicketCreate: User could not be authenticated!")
    # An invalid SessionID is the only credential looked at: no fallback to a valid password.
    assert error(client.call("POST", "/Ticket", body={**body, "SessionID": "x" * 32}))[0] == "TicketCreate.AuthFail"
    assert error(client.call("POST", "/Session", body={"UserLogin": "alertbot", "Password": "bad"})) == (
        "SessionCreate.AuthFail", "SessionCreate: Authorization failing!")


def test_session_ids_and_session_get(client: Client) -> None:
    sid = client.session()
    assert len(sid) == 32 and sid.isalnum()
    data = {item["Key"]: item["Value"] for item in client.call("GET", f"/Session/{sid}")["SessionData"]}
    assert data["UserLogin"] == "alertbot" and data["UserType"] == "User" and data["SessionSource"] == "GenericInterface"
    assert data["UserRemoteAddr"] == "127.0.0.1" and all(v is None or isinstance(v, str) for v in data.values())
    assert error(client.call("GET", "/Session/" + "y" * 32)) == ("SessionGet.SessionInvalid", "SessionGet: SessionID is Invalid!")


def test_session_from_another_ip_fails_and_is_deleted(client: Client, sim: InThreadSimulator) -> None:
    sid = client.session()
    other = Client(sim, source="127.0.0.2")
    assert error(other.call("GET", "/Ticket/1", params={"SessionID": sid}))[0] == "TicketGet.AuthFail"
    assert error(client.call("GET", "/Ticket/1", params={"SessionID": sid})) == ("TicketGet.AuthFail", "TicketGet: Authorization failing!")
    assert sim.state()["sessions"] == 0


def test_session_idle_timeout(client: Client, sim: InThreadSimulator) -> None:
    sid = client.session()
    sim.advance_clock(7000)
    assert "Ticket" in client.call("GET", "/Ticket/1", params={"SessionID": sid})
    sim.advance_clock(7201)
    assert error(client.call("GET", "/Ticket/1", params={"SessionID": sid}))[0] == "TicketGet.AuthFail"


def test_customer_login_types_and_visibility(client: Client) -> None:
    body = ticket_body()
    for key in AGENT:
        body.pop(key)
    result = client.call("POST", "/Ticket", body={**body, **CUSTOMER})
    assert all(isinstance(result[key], str) for key in ("TicketID", "TicketNumber", "ArticleID"))
    ticket = client.call("GET", f"/Ticket/{result['TicketID']}", params={**CUSTOMER, "AllArticles": 1})["Ticket"][0]
    assert ticket["OwnerID"] == 1 and ticket["Article"][0]["SenderType"] == "system"
    assert error(client.call("GET", "/Ticket/1", params=CUSTOMER))[0] == "TicketGet.AccessDenied"
    assert client.call("GET", "/Ticket", params=CUSTOMER) == {"TicketID": [result["TicketID"]]}
    assert error(client.call("GET", f"/TicketHistory/{result['TicketID']}", params=CUSTOMER)) == (
        "TicketHistoryGet.AuthFail", "TicketHistoryGet: User needs to an Agent!")


# ---------------------------------------------------------------- TicketCreate


def test_create_id_types_ticket_number_and_side_effects(client: Client) -> None:
    result = create(client, Title="  padded title  ")
    assert isinstance(result["TicketID"], str) and isinstance(result["TicketNumber"], str) and isinstance(result["ArticleID"], int)
    number = result["TicketNumber"]
    assert len(number) == 16 and number[8:10] == "10" and number[10:15] == "00001" and checksum_tn(number[:15]) == number
    ticket = client.call("GET", f"/Ticket/{result['TicketID']}", params={**AGENT, "AllArticles": 1})["Ticket"][0]
    assert ticket["TicketID"] == int(result["TicketID"]) and ticket["Title"] == "padded title"
    assert (ticket["Owner"], ticket["Lock"], ticket["Responsible"], ticket["CustomerID"]) == ("alertbot", "unlock", "root@localhost", "monitoring-co")
    assert (ticket["ServiceID"], ticket["SLAID"]) == ("", "") and "Service" not in ticket and "DynamicField" not in ticket
    article = ticket["Article"][0]
    assert article["From"] == '"Mon Itoring" <monitoring@corp.test>' and article["To"] == "Raw" and article["SenderTypeID"] == "2"
    assert set(article) == {
        "ArticleID", "ArticleNumber", "TicketID", "Subject", "Body", "SenderType", "SenderTypeID", "CommunicationChannelID",
        "IsVisibleForCustomer", "ContentType", "MimeType", "Charset", "ContentCharset", "From", "To", "Cc", "Bcc", "ReplyTo",
        "MessageID", "InReplyTo", "References", "IncomingTime", "TimeUnit", "IsEdited", "IsDeleted", "CreateBy", "ChangeBy",
        "CreateTime", "ChangeTime"}
    assert create(client)["TicketNumber"][10:15] == "00002"


def test_create_with_owner_locks_and_state_is_case_insensitive(client: Client) -> None:
    result = create(client, Owner="root@localhost", State="OPEN")
    ticket = client.call("GET", f"/Ticket/{result['TicketID']}", params=AGENT)["Ticket"][0]
    assert (ticket["Owner"], ticket["Lock"], ticket["State"], ticket["StateType"]) == ("root@localhost", "lock", "open", "open")


@pytest.mark.parametrize("ticket,expected", [
    ({"Title": None, "CustomerUser": None}, ("MissingParameter", "Ticket->Title parameter is missing!")),
    ({"CustomerUser": None, "Queue": "Nope"}, ("MissingParameter", "Ticket->CustomerUser parameter is missing!")),
    ({"CustomerUser": "unknown-login"}, ("InvalidParameter", "Ticket->CustomerUser parameter is invalid!")),
    ({"CustomerUser": "someone@corp.test"}, ("InvalidParameter", "Ticket->CustomerUser parameter is invalid!")),
    ({"Queue": None, "Priority": "bad"}, ("MissingParameter", "Ticket->QueueID or Ticket->Queue parameter is required!")),
    ({"Queue": "Nope", "Priority": "bad"}, ("InvalidParameter", "Ticket->QueueID or Ticket->Queue parameter is invalid!")),
    ({"Type": "Incident"}, ("InvalidParameter", "Ticket->TypeID or Ticket->Type parameter is invalid!")),
    ({"State": None}, ("MissingParameter", "Ticket->StateID or Ticket->State parameter is required!")),
    ({"State": "bogus", "Priority": "bad"}, ("InvalidParameter", "Ticket->StateID or Ticket->State parameter is invalid!")),
    ({"Priority": "5 VERY HIGH"}, ("InvalidParameter", "Ticket->PriorityID or Ticket->Priority parameter is invalid!")),
    ({"Owner": "ghost"}, ("InvalidParameter", "Ticket->OwnerID or Ticket->Owner parameter is invalid!")),
    ({"PendingTime": {"Diff": 5, "Year": 2025}}, ("InvalidParameter", "Ticket->PendingTime parameter is invalid!")),
    ({"Queue": "Junk"}, ("AccessDenied", "Can not create tickets in given Queue or QueueID!")),
])
def test_create_ticket_checks(client: Client, ticket: dict[str, Any], expected: tuple[str, str]) -> None:
    code, message = error(client.call("POST", "/Ticket", body=ticket_body(**ticket)))
    assert (code, message) == (f"TicketCreate.{expected[0]}", f"TicketCreate: {expected[1]}")


def test_create_check_order_across_parts(client: Client) -> None:
    body = ticket_body(Priority="bad")
    body["Article"].pop("Body")
    body["DynamicField"] = [{"Name": "Nope", "Value": "x"}]
    assert error(client.call("POST", "/Ticket", body=body))[1].startswith("TicketCreate: Ticket->PriorityID")  # ticket before article
    body["Ticket"]["Priority"] = "3 normal"
    assert error(client.call("POST", "/Ticket", body=body))[1] == "TicketCreate: Article->Body parameter is missing!"  # article before DF
    body["Article"]["Body"] = "x"
    assert error(client.call("POST", "/Ticket", body=body)) == ("TicketCreate.InvalidParameter", "TicketCreate: DynamicField->Name parameter is invalid!")
    body["DynamicField"] = [{"Name": "AlertFingerprint"}]
    assert error(client.call("POST", "/Ticket", body=body))[1] == "TicketCreate: DynamicField->Value  parameter is missing!"
    body["DynamicField"] = {}
    assert error(client.call("POST", "/Ticket", body=body))[1] == "TicketCreate: DynamicField parameter is missing or not valid!"
    body["DynamicField"], body["Attachment"] = None, [{"Content": "aGVsbG8=", "ContentType": "text/plain"}]
    assert error(client.call("POST", "/Ticket", body=body))[1] == "TicketCreate: Attachment->Filename  parameter is missing!"
    assert error(client.call("POST", "/Ticket", body={**AGENT, "Ticket": body["Ticket"]}))[1] == "TicketCreate: Article parameter is missing or not valid!"


@pytest.mark.parametrize("article,message", [
    ({"CommunicationChannel": "Chat"}, "Article->CommunicationChannel or Article->CommunicationChannelID parameter is invalid or not supported!"),
    ({"SenderType": "robot"}, "Article->SenderTypeID or Ticket->SenderType parameter is invalid!"),
    ({"ContentType": "text/plain; charset=nonsense-charset"}, "Article->ContentType is invalid!"),
    ({"ContentType": None}, "Article->ContentType or Ticket->MimeType and Article->Charset parameters are required!"),
    ({"NoAgentNotify": 2}, "Article->NoAgentNotify is invalid!"),
])
def test_create_article_checks(client: Client, article: dict[str, Any], message: str) -> None:
    body = ticket_body()
    body["Article"].update(article)
    body["Article"] = {k: v for k, v in body["Article"].items() if v is not None}
    assert error(client.call("POST", "/Ticket", body=body))[1] == f"TicketCreate: {message}"


def test_internal_faults_are_500_text_plain(client: Client) -> None:
    status, headers, payload = client.raw("POST", "/Ticket", body=ticket_body(Queue="raw"))
    assert status == 500 and headers["content-type"].startswith("text/plain")
    assert json.loads(payload) == {"faultcode": "Server", "faultstring": "Ticket could not be created, please contact the system administrator"}
    body = ticket_body()
    body["DynamicField"] = ["AlertFingerprint"]
    status, _h, payload = client.raw("POST", "/Ticket", body=body)
    assert status == 500 and json.loads(payload)["faultstring"] == "TicketCreate: Ticket->DynamicField parameter is invalid!"
    assert [t["TicketID"] for t in client.sim.state()["tickets"]] == [1]


def test_customer_user_mail_rule_without_mx_check() -> None:
    with start_in_thread("otobo", {"check_mx": False}) as relaxed:
        client = Client(relaxed)
        result = create(client, CustomerUser="someone@corp.test")
        ticket = client.call("GET", f"/Ticket/{result['TicketID']}", params=AGENT)["Ticket"][0]
        assert (ticket["CustomerUserID"], ticket["CustomerID"]) == ("someone@corp.test", "")
        assert error(client.call("POST", "/Ticket", body=ticket_body(CustomerUser="a@example.com")))[0] == "TicketCreate.InvalidParameter"


def test_dynamic_fields_and_history_after_create(client: Client) -> None:
    body = ticket_body()
    body["DynamicField"] = {"Name": "AlertFingerprint", "Value": "3f9c2a7b1d0e4c55"}
    result = client.call("POST", "/Ticket", body=body)
    ticket = client.call("GET", f"/Ticket/{result['TicketID']}", params={**AGENT, "DynamicFields": 1})["Ticket"][0]
    fields = {item["Name"]: item["Value"] for item in ticket["DynamicField"]}
    assert fields == {"AlertFingerprint": "3f9c2a7b1d0e4c55", "LabopsCorrelationKey": None, "IMSStatus": None, "IMSSeverity": None,
                      "ProcessManagementProcessID": None, "ProcessManagementActivityID": None}
    history = client.call("GET", f"/TicketHistory/{result['TicketID']}", params=AGENT)["TicketHistory"][0]
    assert history["TicketID"] == result["TicketID"]
    entries = [(h["HistoryType"], h["Name"], h["ArticleID"]) for h in history["History"]]
    tn, tid = result["TicketNumber"], result["TicketID"]
    assert entries == [
        ("NewTicket", f"%%{tn}%%Raw%%5 very high%%new%%{tid}", 0),
        ("CustomerUpdate", "%%CustomerID=monitoring-co;CustomerUser=monitoring;", 0),
        ("TicketDynamicFieldUpdate", "%%FieldName%%AlertFingerprint%%Value%%3f9c2a7b1d0e4c55%%OldValue%%", 0),
        ("NewTicket", "%%GenericInterface Create", result["ArticleID"]),
        ("OwnerUpdate", "%%alertbot%%3", 0),
    ]
    assert all(h["TicketID"] == tid for h in history["History"])
    assert error(client.call("GET", "/TicketHistory/999", params=AGENT)) == (
        "TicketHistoryGet.AccessDenied", "TicketHistoryGet: User does not have access to the ticket 999!")


def test_include_ticket_data() -> None:
    with start_in_thread("otobo", {"include_ticket_data": True}) as verbose:
        client = Client(verbose)
        result = create(client)
        assert isinstance(result["Ticket"], dict) and result["Ticket"]["Article"]["Subject"] == "HostDown pve-node1"
        assert len(result["Ticket"]["DynamicField"]) == 6
        updated = client.call("PATCH", f"/Ticket/{result['TicketID']}", body={**AGENT, "Ticket": {"Title": "t2"}})
        assert updated["ArticleID"] == result["ArticleID"] and "Subject" not in updated["Ticket"]["Article"]


# ---------------------------------------------------------------- TicketGet


def test_ticket_get_access_denied_and_lists(client: Client) -> None:
    first, second = create(client), create(client)
    for bad in ("999", "abc", f"{first['TicketID']},999"):
        assert error(client.call("GET", f"/Ticket/{bad}", params=AGENT)) == (
            "TicketGet.AccessDenied", "TicketGet: User does not have access to the ticket!")
    ids = f"{first['TicketID']},{second['TicketID']}"
    assert [t["TicketID"] for t in client.call("GET", f"/Ticket/{ids}", params=AGENT)["Ticket"]] == [int(first["TicketID"]), int(second["TicketID"])]
    listed = client.call("GET", "/TicketList", params={**AGENT, "TicketID": [first["TicketID"], second["TicketID"]]})
    assert len(listed["Ticket"]) == 2
    welcome = client.call("GET", "/Ticket/1", params=AGENT)["Ticket"][0]
    assert (welcome["Title"], welcome["TicketNumber"]) == ("Welcome to OTOBO!", "2015071510123456")


# ---------------------------------------------------------------- TicketSearch


def test_search_expressions_unit() -> None:
    title = "[FIRING] HostDown pve-node1 [ck:abc123]"
    assert compile_expression("*pve-node1*")(title)
    assert compile_expression("*PVE-NODE1*")(title)
    assert not compile_expression("pve-node1")(title)
    assert compile_expression(title.lower())(title)
    assert compile_expression("*HostDown* AND *ck:abc123*")(title)
    assert compile_expression("*nothing*||*HostDown*")(title)
    assert compile_expression("*HostDown*&&!*nothing*")(title)
    assert not compile_expression("(*HostDown*+*nothing*)")(title)
    assert compile_expression(r"*\**")("a*b") and not compile_expression(r"*\**")("ab")
    with pytest.raises(ExpressionError):
        compile_expression("(unbalanced")


def test_search_over_http(client: Client, sim: InThreadSimulator) -> None:
    sim.advance_clock(600)  # the welcome ticket is now 10 minutes old
    first = create(client, Title="disk full on pve-node1")
    second = create(client, Title="HostDown pve-node2", State="open", Priority="3 normal")
    first_id, second_id = first["TicketID"], second["TicketID"]
    assert client.call("GET", "/Ticket", params={**AGENT, "Title": "*PVE-node1*"}) == {"TicketID": [first_id]}
    assert client.call("GET", "/Ticket", params={**AGENT, "Title": "(unbalanced"}) == {}
    assert client.call("GET", "/Ticket", params={**AGENT, "Title": "pve-node2"}) == {}
    assert client.call("GET", "/Ticket", params={**AGENT, "StateType": "Open"}) == {"TicketID": [second_id]}
    assert client.call("GET", "/Ticket", params={**AGENT, "States": "new,open"}) == {}
    both = client.call("GET", "/Ticket", params={**AGENT, "States": ["new", "open"], "Queues": "Raw"})["TicketID"]
    assert both == [second_id, first_id, "1"]
    assert client.call("GET", "/Ticket", params={**AGENT, "States": ["new", "open"], "OrderBy": "Up", "Limit": 2})["TicketID"] == ["1", first_id]
    assert client.call("GET", "/Ticket", params={**AGENT, "Priorities": "3 normal", "TicketCreateTimeNewerMinutes": 5}) == {"TicketID": [second_id]}
    assert client.call("GET", "/Ticket", params={**AGENT, "TicketNumber": first["TicketNumber"]}) == {"TicketID": [first_id]}


def test_get_route_ignores_dynamic_field_criteria(client: Client) -> None:
    body = ticket_body()
    body["DynamicField"] = [{"Name": "AlertFingerprint", "Value": "fp-1"}]
    created = client.call("POST", "/Ticket", body=body)
    for key in ("DynamicField_AlertFingerprint", "DynamicField_AlertFingerprint.Equals", "DynamicField_AlertFingerprint[Equals]"):
        result = client.call("GET", "/Ticket", params={**AGENT, key: "does-not-exist"})
        assert result == {"TicketID": [created["TicketID"], "1"]}, key  # the trap: every ticket matches


def test_post_search_route_dynamic_field_criteria(client: Client) -> None:
    body = ticket_body()
    body["DynamicField"] = [{"Name": "AlertFingerprint", "Value": "3f9c2a7b"}]
    created = client.call("POST", "/Ticket", body=body)["TicketID"]

    def search(criteria: dict[str, Any]) -> Any:
        return client.call("POST", "/TicketSearch", body={**AGENT, **criteria})

    assert search({"DynamicField_AlertFingerprint": {"Equals": "3f9c2a7b"}}) == {"TicketID": [created]}
    assert search({"DynamicField": {"Name": "AlertFingerprint", "Like": "3f9c*"}, "States": ["new"]}) == {"TicketID": [created]}
    assert search({"DynamicField_AlertFingerprint": {"Equals": "other"}}) == {}
    assert search({"DynamicField_AlertFingerprint": "other"}) == {"TicketID": [created, "1"]}  # scalars are ignored
    assert search({"DynamicField_Unknown": {"Equals": "x"}}) == {"TicketID": [created, "1"]}


# ---------------------------------------------------------------- TicketUpdate


def test_update_types_number_precedence_and_only_changes(client: Client) -> None:
    first, second = create(client), create(client)
    result = client.call("PATCH", f"/Ticket/{first['TicketID']}", body={**AGENT, "Article": {
        "Subject": "note", "Body": "b", "ContentType": "text/plain; charset=utf8"}})
    assert result["TicketID"] == first["TicketID"] and isinstance(result["ArticleID"], int)
    # TicketNumber wins over the path's TicketID, and then TicketID is a number.
    result = client.call("PATCH", f"/Ticket/{first['TicketID']}", body={**AGENT, "TicketNumber": second["TicketNumber"], "Ticket": {"State": "new"}})
    assert result == {"TicketID": int(second["TicketID"]), "TicketNumber": second["TicketNumber"]}
    before = len(client.call("GET", f"/TicketHistory/{second['TicketID']}", params=AGENT)["TicketHistory"][0]["History"])
    assert client.call("PATCH", f"/Ticket/{second['TicketID']}", body=AGENT) == {"TicketID": second["TicketID"], "TicketNumber": second["TicketNumber"]}
    after = len(client.call("GET", f"/TicketHistory/{second['TicketID']}", params=AGENT)["TicketHistory"][0]["History"])
    assert before == after
    assert error(client.call("PATCH", "/Ticket/999", body=AGENT)) == ("TicketUpdate.AccessDenied", "TicketUpdate: User does not have access to the ticket!")
    assert error(client.call("PATCH", "/Ticket/1", body={**AGENT, "Ticket": "x"})) == (
        "TicketUpdate.InvalidParameter", "TicketUpdate: Ticket parameter is not valid!")


def test_closing_a_locked_ticket_resets_owner(client: Client) -> None:
    tid = create(client, Owner="alertbot")["TicketID"]
    note = {"Subject": "RESOLVED", "Body": "ok", "ContentType": "text/plain; charset=utf8", "SenderType": "agent"}
    result = client.call("PATCH", f"/Ticket/{tid}", body={**AGENT, "Ticket": {"State": "closed successful", "Priority": "2 low"}, "Article": note})
    ticket = client.call("GET", f"/Ticket/{tid}", params=AGENT)["Ticket"][0]
    assert (ticket["State"], ticket["Lock"], ticket["Owner"], ticket["OwnerID"]) == ("closed successful", "unlock", "root@localhost", 1)
    history = client.call("GET", f"/TicketHistory/{tid}", params=AGENT)["TicketHistory"][0]["History"]
    tail = [(h["HistoryType"], h["Name"]) for h in history[-6:]]
    assert tail == [
        ("AddNote", "%%GenericInterface Note"), ("StateUpdate", "%%new%%closed successful%%"), ("Unlock", "%%unlock"),
        ("OwnerUpdate", "Reset owner to root@localhost."), ("PriorityUpdate", "%%5 very high%%5%%2 low%%2"), ("Misc", "Reset of unlock time."),
    ]
    assert history[-6]["ArticleID"] == result["ArticleID"]
    # Reopening does not restore the owner; closing an unlocked ticket keeps its owner.
    client.call("PATCH", f"/Ticket/{tid}", body={**AGENT, "Ticket": {"State": "open", "Owner": "alertbot"}})
    client.call("PATCH", f"/Ticket/{tid}", body={**AGENT, "Ticket": {"State": "closed successful"}})
    assert client.call("GET", f"/Ticket/{tid}", params=AGENT)["Ticket"][0]["Owner"] == "alertbot"


def test_pending_state_rules(client: Client) -> None:
    tid = create(client)["TicketID"]
    assert error(client.call("PATCH", f"/Ticket/{tid}", body={**AGENT, "Ticket": {"State": "pending reminder"}})) == (
        "TicketUpdate.MissingParameter", "Can't set a ticket on a pending state without pendig time!")
    client.call("PATCH", f"/Ticket/{tid}", body={**AGENT, "Ticket": {"State": "pending reminder", "PendingTime": {"Diff": 60}}})
    ticket = client.call("GET", f"/Ticket/{tid}", params=AGENT)["Ticket"][0]
    assert ticket["State"] == "pending reminder" and 3500 <= ticket["UntilTime"] <= 3600
    # TicketCreate accepts a pending state without PendingTime (UntilTime 0).
    created = create(client, State="pending reminder")["TicketID"]
    assert client.call("GET", f"/Ticket/{created}", params=AGENT)["Ticket"][0]["UntilTime"] == 0


def test_update_permission_denials_only_for_changes() -> None:
    agents = [{"login": "alertbot", "password": "s3cret", "id": 3, "deny_rw_queues": ["Raw"]}]
    with start_in_thread("otobo", {"agents": agents}) as restricted:
        client = Client(restricted)
        assert client.call("PATCH", "/Ticket/1", body={**AGENT, "Ticket": {"Title": "renamed", "State": "new"}})["TicketID"] == "1"
        assert error(client.call("PATCH", "/Ticket/1", body={**AGENT, "Ticket": {"State": "open"}})) == (
            "TicketUpdate.AccessDenied", "TicketUpdate: Does not have permissions to update state!")
        note = {"Subject": "s", "Body": "b", "ContentType": "text/plain; charset=utf8"}
        assert error(client.call("PATCH", "/Ticket/1", body={**AGENT, "Article": note}))[1] == "TicketUpdate: Does not have permissions to create new articles!"


# ---------------------------------------------------------------- faults and control API


def test_http_status_fault_counts_and_operation_filter(client: Client, sim: InThreadSimulator) -> None:
    sim.inject(kind="http_status", status=503, count=2, operations=["TicketCreate"])
    assert "SessionID" in client.call("POST", "/Session", body=AGENT)  # other operations unaffected
    for _attempt in range(2):
        status, headers, _body = client.raw("POST", "/Ticket", body=ticket_body())
        assert status == 503 and headers["content-type"].startswith("text/plain")
    create(client)
    assert len(sim.state()["tickets"]) == 2 and sim.state()["requests"]["TicketCreate"] == 3


def test_429_with_retry_after(client: Client, sim: InThreadSimulator) -> None:
    sim.inject(kind="http_status", status=429, retry_after=7, count=1)
    status, headers, _body = client.raw("GET", "/Ticket/1", params=AGENT)
    assert (status, headers["retry-after"]) == (429, "7")


@pytest.mark.parametrize("after_apply,expect_tickets", [(False, 1), (True, 2)])
def test_drop_fault_before_and_after_apply(client: Client, sim: InThreadSimulator, after_apply: bool, expect_tickets: int) -> None:
    sim.inject(kind="drop", count=1, operations=["TicketCreate"], after_apply=after_apply)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        client.raw("POST", "/Ticket", body=ticket_body())
    assert len(sim.state()["tickets"]) == expect_tickets


def test_http_status_after_apply_is_an_ambiguous_write(client: Client, sim: InThreadSimulator) -> None:
    sim.inject(kind="http_status", status=502, count=1, operations=["TicketCreate"], after_apply=True)
    assert client.raw("POST", "/Ticket", body=ticket_body())[0] == 502
    titles = [t["Title"] for t in sim.state()["tickets"]]
    assert titles == ["Welcome to OTOBO!", "[FIRING] HostDown pve-node1"]


def test_auth_expiry_and_latency_faults(client: Client, sim: InThreadSimulator) -> None:
    sid = client.session()
    sim.inject(kind="auth_expiry", count=1, operations=["TicketGet"])
    assert error(client.call("GET", "/Ticket/1", params={"SessionID": sid}))[0] == "TicketGet.AuthFail"
    sid = client.session()
    sim.inject(kind="latency", seconds=0.05, count=1)
    assert "Ticket" in client.call("GET", "/Ticket/1", params={"SessionID": sid})
    assert sim.state()["faults"] == []


def test_control_api_validation_and_reset(client: Client, sim: InThreadSimulator) -> None:
    with pytest.raises(Exception, match="HTTP 400"):
        sim.inject(kind="explode")
    with pytest.raises(Exception, match="HTTP 400"):
        sim.inject(kind="latency")
    sim.inject(kind="http_status", status=500)
    assert len(sim.control("GET", "faults")["faults"]) == 1
    sim.clear_faults()
    create(client)
    sim.reset()
    state = sim.state()
    assert [t["TicketID"] for t in state["tickets"]] == [1] and state["requests"] == {} and state["faults"] == []
    assert sim.health()["status"] == "ok"


# ---------------------------------------------------------------- subprocess: persistence and log hygiene


def test_subprocess_persistence_and_masked_log(tmp_path: Any) -> None:
    state_file = tmp_path / "otobo-state.json"
    with start_simulator("otobo", {"state_file": str(state_file)}) as proc:
        client = Client(proc)
        sid = client.session()
        created = create(client)
        client.call("GET", "/Ticket/1", params={"SessionID": sid})
        log = proc.log()
    assert "s3cret" not in log and sid not in log and "SessionID=***" in log
    with start_simulator("otobo", {"state_file": str(state_file)}) as again:
        client = Client(again)
        ticket = client.call("GET", f"/Ticket/{created['TicketID']}", params=AGENT)["Ticket"][0]
        assert ticket["TicketNumber"] == created["TicketNumber"]
        assert create(client)["TicketNumber"][10:15] == "00002"


# ---------------------------------------------------------------- ticket types (config ticket_types)

ITSM_TYPES = ["Incident", "Problem", "RfC"]


def test_stock_install_knows_only_unclassified(client: Client) -> None:
    from simulators.otobo import build_app
    from simulators.otobo_model import DEFAULT_CONFIG

    assert DEFAULT_CONFIG["ticket_types"] == [] and build_app().catalog.types == {1: "Unclassified"}
    ticket_id = create(client, Type="Unclassified")["TicketID"]
    ticket = client.call("GET", f"/Ticket/{ticket_id}", params=AGENT)["Ticket"][0]
    assert (ticket["Type"], ticket["TypeID"]) == ("Unclassified", 1)
    for wrong in ({"TypeID": 2}, {"Type": "Problem"}):
        assert error(client.call("POST", "/Ticket", body=ticket_body(**wrong))) == (
            "TicketCreate.InvalidParameter", "TicketCreate: Ticket->TypeID or Ticket->Type parameter is invalid!")
    assert client.call("GET", "/Ticket", params={**AGENT, "Types": "Incident"}) == {}


def test_configured_ticket_types_create_get_update_search() -> None:
    with start_in_thread("otobo", {"ticket_types": ITSM_TYPES, "post_search_route": True}) as server:
        client = Client(server)
        incident = create(client, Type="Incident")["TicketID"]
        change = create(client, TypeID="4")["TicketID"]
        plain = create(client)["TicketID"]

        def get(ticket_id: str) -> dict[str, Any]:
            return client.call("GET", f"/Ticket/{ticket_id}", params=AGENT)["Ticket"][0]

        assert [(get(t)["Type"], get(t)["TypeID"]) for t in (incident, change, plain)] == [("Incident", 2), ("RfC", 4), ("Unclassified", 1)]
        # names match exactly; unknown names and IDs are still rejected
        for wrong in ({"Type": "incident"}, {"Type": "Change"}, {"TypeID": 5}):
            assert error(client.call("POST", "/Ticket", body=ticket_body(**wrong)))[0] == "TicketCreate.InvalidParameter", wrong
        assert error(client.call("PATCH", f"/Ticket/{plain}", body={**AGENT, "Ticket": {"Type": "Known Error"}})) == (
            "TicketUpdate.InvalidParameter", "TicketUpdate: Ticket->TypeID or Ticket->Type parameter is invalid!")
        assert get(plain)["TypeID"] == 1
        # a type change is written and recorded like OTOBO's TypeUpdate history entry
        client.call("PATCH", f"/Ticket/{incident}", body={**AGENT, "Ticket": {"Type": "Problem"}})
        assert (get(incident)["Type"], get(incident)["TypeID"]) == ("Problem", 3)
        history = client.call("GET", f"/TicketHistory/{incident}", params=AGENT)["TicketHistory"][0]["History"]
        assert (history[-1]["HistoryType"], history[-1]["Name"], history[-1]["TypeID"]) == ("TypeUpdate", "%%Problem%%3%%Incident%%2", 3)
        # search by type name (exact) and ID, on both routes
        assert client.call("GET", "/Ticket", params={**AGENT, "Types": "Problem"}) == {"TicketID": [incident]}
        assert client.call("GET", "/Ticket", params={**AGENT, "Types": ["RfC", "Problem"], "OrderBy": "Up"}) == {"TicketID": [incident, change]}
        assert client.call("GET", "/Ticket", params={**AGENT, "TypeIDs": 1, "OrderBy": "Up"}) == {"TicketID": ["1", plain]}
        assert client.call("GET", "/Ticket", params={**AGENT, "Types": "problem"}) == {}
        assert client.call("POST", "/TicketSearch", body={**AGENT, "Types": ["RfC"]}) == {"TicketID": [change]}
        assert {t["TicketID"]: t["Type"] for t in server.state()["tickets"]} == {
            1: "Unclassified", int(incident): "Problem", int(change): "RfC", int(plain): "Unclassified"}


@pytest.mark.parametrize("types,message", [
    ("Incident", "ticket_types must be a list"),
    (["Incident", "Incident"], "type 'Incident' already exists"),
    (["Unclassified"], "type 'Unclassified' already exists"),
    ([""], "is not a type name"),
    ([" Incident"], "is not a type name"),
    ([7], "is not a type name"),
])
def test_ticket_types_config_is_validated(types: Any, message: str) -> None:
    from simulators.base import ConfigError
    from simulators.otobo import build_app

    with pytest.raises(ConfigError, match=message):
        build_app({"ticket_types": types})


def test_state_file_must_agree_with_ticket_types(tmp_path: Any) -> None:
    from simulators.base import ConfigError
    from simulators.otobo import build_app

    state_file = tmp_path / "state.json"
    with start_in_thread("otobo", {"ticket_types": ITSM_TYPES, "state_file": str(state_file)}) as server:
        number = create(Client(server), Type="RfC")["TicketNumber"]
    reloaded = build_app({"ticket_types": ITSM_TYPES, "state_file": str(state_file)})
    assert reloaded.store.find_by_number(number)["TypeID"] == 4
    with pytest.raises(ConfigError, match=r"tickets use TypeID \[4\]"):
        build_app({"ticket_types": ["Incident"], "state_file": str(state_file)})
