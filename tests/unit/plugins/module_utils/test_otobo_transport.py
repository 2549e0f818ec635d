# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""_http against real local sockets: TLS verification with CA-bundle environment variables, the
InsecureRequestWarning, and readable messages for refused, unresolvable, plain-HTTP and untrusted peers."""


import datetime
import json
import socket
import ssl
import threading
import warnings
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.labops.itsm.plugins.module_utils._errors import AmbiguousWriteError, CommunicationError
from ansible_collections.labops.itsm.plugins.module_utils._http import HttpClient, RetryPolicy

NO_RETRY = RetryPolicy(retries=0)


def _write_cert(tmp_path, common_name, sans):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path = tmp_path / (common_name + ".pem")
    key_path = tmp_path / (common_name + ".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):  # quiet
        pass


class _Server:
    def __init__(self, context=None):
        self.httpd = HTTPServer(("127.0.0.1", 0), _Handler)
        if context is not None:
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def tls_server(tmp_path):
    cert, key = _write_cert(tmp_path, "localhost", [x509.DNSName("localhost"), x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = _Server(context)
    server.cert = cert
    yield server
    server.stop()


@pytest.fixture()
def plain_server():
    server = _Server()
    yield server
    server.stop()


@pytest.fixture()
def other_ca(tmp_path):
    """A CA bundle that did not sign the server's certificate (what REQUESTS_CA_BUNDLE points at)."""
    cert, _key = _write_cert(tmp_path, "unrelated-ca", [x509.DNSName("unrelated.invalid")])
    return cert


def _client(url, **kwargs):
    return HttpClient("otobo", url, retry=NO_RETRY, timeout=5, **kwargs)


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_validate_certs_false_wins_over_ca_bundle_environment(tls_server, other_ca, monkeypatch, variable):
    monkeypatch.setenv(variable, other_ca)
    client = _client(f"https://127.0.0.1:{tls_server.port}", validate_certs=False)
    assert client.request("GET", "/x", operation="Probe").json() == {"ok": True}


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_ca_path_wins_over_ca_bundle_environment(tls_server, other_ca, monkeypatch, variable):
    monkeypatch.setenv(variable, other_ca)
    client = _client(f"https://127.0.0.1:{tls_server.port}", ca_path=tls_server.cert)
    assert client.request("GET", "/x", operation="Probe").json() == {"ok": True}


def test_default_verification_still_uses_the_environment_bundle(tls_server, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls_server.cert)
    client = _client(f"https://127.0.0.1:{tls_server.port}")
    assert client.request("GET", "/x", operation="Probe").json() == {"ok": True}


def test_untrusted_certificate_names_url_and_ca_path(tls_server, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    url = f"https://127.0.0.1:{tls_server.port}"
    with pytest.raises(CommunicationError) as caught:
        _client(url).request("GET", "/x", operation="TicketGet")
    message = str(caught.value)
    assert "TLS certificate is not trusted" in message and url in message and "ca_path" in message
    assert "urllib3" not in message and "HTTPSConnectionPool" not in message


def test_insecure_request_warning_is_suppressed_for_our_requests_only(tls_server):
    client = _client(f"https://127.0.0.1:{tls_server.port}", validate_certs=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client.request("GET", "/x", operation="Probe")
        from urllib3.exceptions import InsecureRequestWarning
        warnings.warn("someone else's", InsecureRequestWarning)
    assert [str(w.message) for w in caught] == ["someone else's"]


def test_connection_refused(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(CommunicationError) as caught:
        _client(url).request("POST", "/Ticket", operation="TicketCreate", json={"a": 1})
    assert not isinstance(caught.value, AmbiguousWriteError)  # never sent
    message = str(caught.value)
    assert "connection was refused" in message and url in message and "check host and port" in message


def test_dns_failure():
    url = "http://otobo.labops-test.invalid:8080"
    with pytest.raises(CommunicationError) as caught:
        _client(url).request("GET", "/x", operation="TicketSearch")
    message = str(caught.value)
    assert "host name could not be resolved" in message and url in message and "DNS" in message


def test_https_to_a_plain_http_port(plain_server):
    url = f"https://127.0.0.1:{plain_server.port}"
    with pytest.raises(CommunicationError) as caught:
        _client(url).request("GET", "/x", operation="TicketGet")
    message = str(caught.value)
    assert "plain HTTP" in message and url in message and "http://" in message


def test_plain_http_to_a_tls_port(tls_server):
    url = f"http://127.0.0.1:{tls_server.port}"
    with pytest.raises(CommunicationError) as caught:
        _client(url).request("GET", "/x", operation="TicketGet")
    message = str(caught.value)
    assert "closed the connection without an HTTP answer" in message and url in message and "https://" in message
