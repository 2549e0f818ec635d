# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Secret redaction and meta minimisation (_redact)."""


import pytest

from ansible_collections.labops.itsm.plugins.module_utils._redact import (
    MAX_STRING,
    REDACTED,
    is_secret_key,
    minimise,
    redact,
    scrub_string,
    truncate,
)


@pytest.mark.parametrize(
    "key",
    ["password", "DB_Password", "passwd", "client_secret", "X-Auth-Token", "access_token", "api_key", "ApiKey",
     "Authorization", "session_id", "SessionID", "aws_credentials", "ssh_private_key", "private-key"],
)
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["priority", "state", "author", "title", "session", "key", "ticket_id", 42, None])
def test_ordinary_keys(key):
    assert not is_secret_key(key)


def test_nested_dicts_and_lists_are_redacted_without_touching_the_input():
    value = {
        "queue": "Raw",
        "Password": "hunter2",
        "nested": {"list": [{"api_key": "abc"}, {"keep": 1, "Token": ["a", "b"]}], "deeper": {"SessionID": "s"}},
    }
    result = redact(value)
    assert result == {
        "queue": "Raw",
        "Password": REDACTED,
        "nested": {"list": [{"api_key": REDACTED}, {"keep": 1, "Token": REDACTED}], "deeper": {"SessionID": REDACTED}},
    }
    assert value["Password"] == "hunter2"


@pytest.mark.parametrize(
    "text, leaked, expected",
    [
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig", "eyJhbG", "Authorization: " + REDACTED),
        ("curl -H 'authorization: Basic dXNlcjpwYXNz' https://x", "dXNlcjpwYXNz", None),
        ("proxy-authorization=Negotiate YIIabc", "YIIabc", None),
        ("sent bearer abcdef123456789 to the api", "abcdef123456789", "sent bearer %s to the api" % REDACTED),
        ("fetch https://bob:s3cr3t@otobo.example.com/api", "s3cr3t", "fetch https://bob:%s@otobo.example.com/api" % REDACTED),
        ("postgresql://ledger:pw%40x@db:5432/audit", "pw%40x", "postgresql://ledger:%s@db:5432/audit" % REDACTED),
        ("host=db password=topsecret dbname=audit", "topsecret", "host=db password=%s dbname=audit" % REDACTED),
        ("/otobo/nph-genericinterface.pl/Webservice/X/Ticket?SessionID=Zk9x1&UserLogin=a", "Zk9x1", None),
        ('{"token": "abc.def", "title": "disk"}', "abc.def", '{"token": "%s", "title": "disk"}' % REDACTED),
        ("line1\nAuthorization: token deadbeef\nline3", "deadbeef", "line1\nAuthorization: %s\nline3" % REDACTED),
    ],
)
def test_secrets_in_strings_are_scrubbed(text, leaked, expected):
    result = scrub_string(text)
    assert leaked not in result
    assert REDACTED in result
    if expected is not None:
        assert result == expected


@pytest.mark.parametrize("text", ["disk /var is 95% full", "basic authentication failed for user bob", "token refresh ok", ""])
def test_harmless_strings_are_unchanged(text):
    assert scrub_string(text) == text


def test_strings_inside_structures_are_scrubbed():
    assert redact({"note": ["see https://u:p4ss@h/x"]}) == {"note": ["see https://u:%s@h/x" % REDACTED]}


def test_truncate_marks_what_was_cut():
    assert truncate("a" * 10, 4) == "aaaa...[truncated 6 chars]"
    assert truncate("short", 10) == "short"


def test_minimise_caps_strings_lists_and_depth():
    value = {
        "log": "x" * 5000,
        "items": list(range(120)),
        "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}},
        "n": 3.5,
        "flag": True,
        "none": None,
        "raw": b"bytes",
    }
    result = minimise(value)
    assert result["log"].startswith("x" * MAX_STRING) and result["log"].endswith("[truncated 4488 chars]")
    assert len(result["items"]) == 51 and result["items"][-1] == "[70 more items omitted]"
    assert "nested too deep" in str(result["deep"])
    assert result["n"] == 3.5 and result["flag"] is True and result["none"] is None and result["raw"] == "bytes"


def test_minimise_caps_number_of_keys():
    result = minimise({"k%03d" % i: i for i in range(60)})
    assert len(result) == 51 and result["_omitted_keys"] == 10


def test_unknown_objects_become_strings():
    class Thing:
        def __str__(self):
            return "thing password=abc"

    assert redact({"x": Thing()}) == {"x": "thing password=%s" % REDACTED}


# -- one implementation: _http.scrub delegates to scrub_string (issue 6, A5) --------------------------


@pytest.mark.parametrize(
    "text,leak",
    [
        ("Authorization: Basic YWxlcnRib3Q6czNjcmV0", "YWxlcnRib3Q6czNjcmV0"),
        ("Proxy-Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("sent basic YWxlcnRib3Q6czNjcmV0 to the proxy", "YWxlcnRib3Q6czNjcmV0"),
        ("token was Bearer abcdefgh12345678", "abcdefgh12345678"),
        ("GET /Ticket?UserLogin=alertbot&Password=s3cret&Title=x", "s3cret"),
        ("GET /Ticket?SessionID=Hq5Q3F0e2QbJq5wWZ9mK1oD7cYxLtUaB", "Hq5Q3F0e2QbJq5wWZ9mK1oD7cYxLtUaB"),
        ("/api?pass=hunter22&x=1", "hunter22"),
        ("/api?auth=abc123xyz", "abc123xyz"),
        ('{"UserLogin": "alertbot", "Password": "s3cret"}', "s3cret"),
        ('{"client_secret":"abc","SessionID": "zzz999"}', "zzz999"),
        ("https://alertbot:s3cret@otobo.example/otobo", "s3cret"),
    ],
)
def test_http_scrub_and_scrub_string_agree(text, leak):
    from ansible_collections.labops.itsm.plugins.module_utils._http import scrub

    assert leak not in scrub_string(text)
    assert scrub(text) == scrub_string(text)


def test_basic_in_prose_is_kept():
    text = "the proxy wants Basic authentication"
    assert scrub_string(text) == text


def test_http_scrub_also_replaces_registered_values():
    from ansible_collections.labops.itsm.plugins.module_utils._http import scrub

    assert scrub("the value hunter2 and hunter2x leaked", ["hunter2", "hunter2x"]) == "the value %s and %s leaked" % (REDACTED, REDACTED)


def test_redact_masks_json_bodies_and_urls_inside_structures():
    record = {"request": {"url": "https://u:pw@h/x?Password=p1", "body": '{"Password": "p2"}',
                          "headers": {"Authorization": "Basic dTpwdw=="}}}
    flat = repr(redact(record))
    for leak in ("pw@", "p1", "p2", "dTpwdw"):
        assert leak not in flat
