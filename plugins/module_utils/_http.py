# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The one HTTP client of labops.itsm.

A thin layer over a pooled ``requests.Session`` that owns timeouts, TLS, JSON
encoding, the retry policy and error messages. Platform specifics (envelopes,
error codes, sessions) live in the adapters (``_otobo`` ...).

Retry policy (seed 001, "3 attempts, 1 s / 2 s / 4 s"): the first attempt plus
``retries=3`` retries, waiting ``base_delay * 2 ** n`` seconds before retry n+1,
i.e. exactly 1 s, 2 s, 4 s with the defaults (no jitter unless ``jitter`` > 0),
every delay capped by ``max_delay`` (30 s). Retried are:

* connection errors and timeouts,
* HTTP 429 (waiting ``Retry-After`` seconds or until its HTTP date when given,
  capped by ``max_delay``; otherwise the backoff delay),
* HTTP 5xx (a caller may cap retries per status, e.g. OTOBO's deterministic 500).

Other 4xx are never retried. POST and PATCH are not idempotent: they are only
retried when the caller passes ``retry_unsafe=True``. A POST/PATCH that fails after
the request may have reached the server (read timeout, connection dropped after
sending, 5xx) raises :class:`AmbiguousWriteError` so the caller can look the
record up instead of re-sending blindly. Failures that prove the request never
left (connection refused, connect timeout) and 429 are retried for every method.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import email.utils
import json as _json
import random
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, cast

try:
    import requests
    import requests.exceptions as rexc
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError as _imp_err:  # pragma: no cover - exercised by the sanity import test
    requests = None  # type: ignore[assignment]
    rexc = None  # type: ignore[assignment]
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = _imp_err

from ansible_collections.labops.itsm.plugins.module_utils._errors import (
    AmbiguousWriteError,
    AuthError,
    CommunicationError,
    NotFoundError,
    PermissionDenied,
    UnexpectedResponseError,
    ValidationError,
)
from ansible_collections.labops.itsm.plugins.module_utils._redact import REDACTED, scrub_string

USER_AGENT = "labops.itsm/0.1.0"
UNSAFE_METHODS = frozenset(("POST", "PATCH"))
SERVER_TEXT_LIMIT = 300
MASK = REDACTED
AMBIGUOUS_SUFFIX = " (the write may or may not have been applied)"
EMPTY_BODY = "(empty body)"


def scrub(text: Any, secrets: Iterable[str] = ()) -> str:
    """Remove credentials from ``text``: the registered secret values, then ``_redact.scrub_string``
    (the collection's one list of secret patterns: headers, Bearer/Basic, URL userinfo, key=value pairs)."""
    result = "" if text is None else str(text)
    for secret in sorted((s for s in secrets if s and len(s) >= 3), key=len, reverse=True):
        result = result.replace(secret, MASK)
    return scrub_string(result)


def truncate(text: str, limit: int = SERVER_TEXT_LIMIT) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[:limit] + "... (truncated)"


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a request again."""

    retries: int = 3
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.0
    retry_statuses: frozenset = field(default_factory=lambda: frozenset((429, 500, 502, 503, 504)))

    def backoff(self, retry_number: int) -> float:
        """Delay before retry ``retry_number`` (0 based): 1, 2, 4 ... capped."""
        delay = self.base_delay * (self.factor ** retry_number)
        if self.jitter:
            delay += random.uniform(0, self.jitter * delay)  # nosec - not crypto
        return min(delay, self.max_delay)

    def retry_after(self, header: Optional[str], retry_number: int, now: Optional[float] = None) -> float:
        """Delay for a 429/503 reply: ``Retry-After`` (seconds or HTTP date) or backoff, capped."""
        delay = parse_retry_after(header, now)
        if delay is None:
            return self.backoff(retry_number)
        return min(max(delay, 0.0), self.max_delay)

    def is_retryable_status(self, status: int) -> bool:
        return status in self.retry_statuses or status >= 500


def parse_retry_after(header: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait according to a ``Retry-After`` header, or None when absent/invalid."""
    if not header:
        return None
    value = header.strip()
    if value.isdigit():
        return float(value)
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    current = time.time() if now is None else now
    return max(parsed.timestamp() - current, 0.0)


@dataclass
class HttpResponse:
    """A received HTTP response (any status the caller accepted)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    context: str = ""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """Decoded JSON body; UnexpectedResponseError when the body is not JSON."""
        try:
            return _json.loads(self.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise UnexpectedResponseError(
                f"{self.context}: HTTP {self.status} with a body that is not JSON: {truncate(self.text, 120)}",
                status=self.status,
            )


def server_error_text(body: bytes) -> str:
    """The server's own error text from a JSON or plain-text error body."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = _json.loads(text)
    except ValueError:
        return text
    return _find_message(data) or text


def _find_message(data: Any) -> str:
    if isinstance(data, dict):
        for key in ("Error", "error"):
            if isinstance(data.get(key), dict):
                return _find_message(data[key])
        parts = [str(data[k]) for k in ("ErrorCode", "ErrorMessage", "faultstring", "message", "detail") if data.get(k)]
        if parts:
            return ": ".join(parts)
        if isinstance(data.get("error"), str):
            return data["error"]
        if isinstance(data.get("errorMessages"), list) and data["errorMessages"]:
            return "; ".join(str(m) for m in data["errorMessages"])
    return ""


_STATUS_ERRORS = {
    400: ValidationError,
    401: AuthError,
    403: PermissionDenied,
    404: NotFoundError,
    422: ValidationError,
}


class _Attempt:
    """Outcome of one try: a response or a transport exception (and whether it was sent)."""

    def __init__(self, response: Any = None, error: Optional[BaseException] = None, sent: bool = True) -> None:
        self.response = response
        self.error = error
        self.sent = sent


class HttpClient:
    """One pooled HTTP client per platform connection."""

    def __init__(
        self,
        platform: str,
        base_url: str,
        *,
        validate_certs: bool = True,
        ca_path: Optional[str] = None,
        timeout: float = 30,
        retry: Optional[RetryPolicy] = None,
        headers: Optional[Mapping[str, str]] = None,
        auth: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        session: Any = None,
    ) -> None:
        if not base_url or not re.match(r"(?i)^https?://[^/]+", base_url):
            raise ValidationError(f"{platform}: url must start with http:// or https:// and name a host, got {scrub(base_url)!r}")
        self.platform = platform
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self._secrets: set = set()
        self.sent = 0  # HTTP requests sent (every attempt, retries included): the call counts modules report
        self.session = session if session is not None else requests.Session()
        # Passed with every request as well: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE replace a
        # session-level verify, which would silently undo validate_certs: false and ca_path.
        self.verify = ca_path if (ca_path and validate_certs) else bool(validate_certs)
        self.session.verify = self.verify
        self.session.headers.update({"Accept": "application/json", "User-Agent": USER_AGENT})
        if headers:
            self.session.headers.update(dict(headers))
        if auth is not None:
            self.session.auth = auth

    def register_secret(self, value: Optional[str]) -> None:
        """Values that must never appear in an error message (passwords, session ids)."""
        if value:
            self._secrets.add(str(value))

    def scrub(self, text: Any) -> str:
        return scrub(text, self._secrets)

    def close(self) -> None:
        self.session.close()

    # -- public -----------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        params: Any = None,
        json: Any = None,
        form: Optional[Mapping[str, Any]] = None,
        expected: Iterable[int] = (200,),
        retry_unsafe: bool = False,
        status_retry_caps: Optional[Mapping[int, int]] = None,
    ) -> HttpResponse:
        """Send one logical request, with retries; return the response or raise.

        The body is ``json`` (JSON) or ``form`` (form-urlencoded, e.g. an OAuth token request).
        ``status_retry_caps`` limits retries for single statuses (``{500: 1}``).
        """
        if json is not None and form is not None:
            raise ValueError("json and form are mutually exclusive")
        method = method.upper()
        expected = tuple(expected)
        context = self._context(operation, method, path)
        retries_done = 0
        per_status: dict = {}
        while True:
            attempt = self._send(method, path, params, json, form)
            delay = self._retry_delay(attempt, method, retry_unsafe, retries_done, per_status, status_retry_caps, expected)
            if delay is None:
                return self._finish(attempt, method, context, expected)
            self.sleep(delay)
            retries_done += 1

    # -- internals --------------------------------------------------------------

    def _context(self, operation: str, method: str, path: str) -> str:
        clean_path = self.scrub(path.split("?", 1)[0])
        return f"{self.platform} {operation} ({method} {clean_path})"

    def _send(self, method: str, path: str, params: Any, body: Any, form: Optional[Mapping[str, Any]] = None) -> _Attempt:
        url = self.base_url + path
        kwargs = {"params": params, "timeout": self.timeout, "verify": self.verify}
        if body is not None:
            kwargs["json"] = body
        if form is not None:
            kwargs["data"] = dict(form)
        self.sent += 1
        try:
            return _Attempt(response=self._request(method, url, kwargs))
        except rexc.ConnectTimeout as exc:
            return _Attempt(error=exc, sent=False)
        except rexc.SSLError as exc:
            return _Attempt(error=exc, sent=False)
        except rexc.ConnectionError as exc:
            return _Attempt(error=exc, sent=_maybe_sent(exc))
        except rexc.Timeout as exc:
            return _Attempt(error=exc, sent=True)
        except rexc.RequestException as exc:
            return _Attempt(error=exc, sent=False)

    def _request(self, method: str, url: str, kwargs: dict) -> Any:
        if self.verify is not False:
            return self.session.request(method, url, **kwargs)
        # validate_certs: false was asked for: urllib3's InsecureRequestWarning for these requests only
        # (a process-wide filter would hide it for every other library too).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", _insecure_warning_class())
            return self.session.request(method, url, **kwargs)

    def _retry_delay(
        self,
        attempt: _Attempt,
        method: str,
        retry_unsafe: bool,
        retries_done: int,
        per_status: dict,
        caps: Optional[Mapping[int, int]],
        expected: tuple,
    ) -> Optional[float]:
        """Seconds to wait before the next try, or None to stop."""
        if retries_done >= self.retry.retries:
            return None
        if attempt.error is not None:
            if isinstance(attempt.error, rexc.SSLError) or not _is_transport_retryable(attempt.error):
                return None
            if attempt.sent and method in UNSAFE_METHODS and not retry_unsafe:
                return None
            return self.retry.backoff(retries_done)
        status = attempt.response.status_code
        if status in expected or not self.retry.is_retryable_status(status):
            return None
        if status != 429 and method in UNSAFE_METHODS and not retry_unsafe:
            return None
        if caps and status in caps:
            if per_status.get(status, 0) >= caps[status]:
                return None
            per_status[status] = per_status.get(status, 0) + 1
        if status in (429, 503):
            return self.retry.retry_after(attempt.response.headers.get("Retry-After"), retries_done)
        return self.retry.backoff(retries_done)

    def _finish(self, attempt: _Attempt, method: str, context: str, expected: tuple) -> HttpResponse:
        if attempt.error is not None:
            raise self._transport_error(attempt, method, context)
        resp = attempt.response
        response = HttpResponse(status=resp.status_code, headers=resp.headers, body=resp.content or b"", context=context)
        if resp.status_code in expected:
            return response
        raise self._status_error(response, method, context)

    def _transport_error(self, attempt: _Attempt, method: str, context: str) -> Exception:
        reason = self.scrub(describe_transport_error(cast(BaseException, attempt.error), self.base_url, self.timeout))
        if attempt.sent and method in UNSAFE_METHODS:
            return AmbiguousWriteError(
                f"{context}: no reply after the request was sent; the write may or may not have been applied ({reason})",
                platform=self.platform,
            )
        return CommunicationError(f"{context}: request failed: {reason}", platform=self.platform)

    def _status_error(self, response: HttpResponse, method: str, context: str) -> Exception:
        status = response.status
        server_text = truncate(self.scrub(server_error_text(response.body))) or EMPTY_BODY
        message = f"{context}: HTTP {status}: {server_text}"
        details = dict(platform=self.platform, status=status, server_text=server_text)
        if status >= 500 and method in UNSAFE_METHODS:
            return AmbiguousWriteError(message + AMBIGUOUS_SUFFIX, **details)
        if status == 429:
            return CommunicationError(message + " (rate limited, retries exhausted)", **details)
        error_class = _STATUS_ERRORS.get(status, UnexpectedResponseError)
        return error_class(message, **details)


def _insecure_warning_class() -> type:
    try:
        from urllib3.exceptions import InsecureRequestWarning  # pylint: disable=import-outside-toplevel
    except ImportError:  # pragma: no cover - urllib3 comes with requests
        return Warning
    return InsecureRequestWarning


def _error_chain_text(error: BaseException) -> str:
    """The text of ``error`` and every exception behind it (requests wraps urllib3 wraps socket/ssl)."""
    parts = []
    seen = set()
    current = error  # type: Optional[BaseException]
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        for arg in getattr(current, "args", ()):
            if isinstance(arg, BaseException):
                parts.append(f"{type(arg).__name__}: {arg}")
                reason = getattr(arg, "reason", None)
                if isinstance(reason, BaseException):
                    parts.append(f"{type(reason).__name__}: {reason}")
        current = current.__cause__ or current.__context__ or getattr(current, "reason", None)
        if not isinstance(current, BaseException):
            current = None
    return " | ".join(parts)


# (markers in the exception chain, what failed, what to check); the first match wins.
_TRANSPORT_DIAGNOSES = (
    (("CERTIFICATE_VERIFY_FAILED", "certificate verify failed"), "the server's TLS certificate is not trusted",
     "set ca_path to the CA certificate (PEM) that signed it; validate_certs: false only for a throw-away lab"),
    (("Hostname mismatch", "doesn't match", "hostname mismatch"), "the server's TLS certificate is for another host name",
     "use the host name the certificate names in url, or fix the certificate"),
    (("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure", "http request", "unknown protocol"),
     "the TLS handshake failed (the port answers plain HTTP, not HTTPS)",
     "use http:// in url, or the port where the server speaks TLS"),
    (("SSLError", "SSL:", "TLSV1_ALERT", "sslv3 alert"), "the TLS handshake failed",
     "check that url points at an HTTPS port and that client and server share a TLS version and cipher"),
    (("NameResolutionError", "Name or service not known", "nodename nor servname", "getaddrinfo failed",
      "Temporary failure in name resolution", "No address associated"),
     "the host name could not be resolved", "check the host name in url and the controller's DNS"),
    (("Connection refused", "ConnectionRefusedError", "actively refused"), "the connection was refused (nothing listens there)",
     "check host and port in url and that the server (or its proxy) is running"),
    (("ConnectTimeout", "timed out while connecting"), "no connection within the timeout",
     "check host, port and firewalls between the controller and the server"),
    (("RemoteDisconnected", "BadStatusLine", "Connection aborted", "ConnectionResetError", "Connection reset"),
     "the server closed the connection without an HTTP answer",
     "if url uses http://, the port may expect https://; otherwise check the server's or proxy's logs"),
    (("ReadTimeout", "Read timed out"), "no answer within the timeout",
     "the server may be overloaded; raise timeout or check the server"),
)


def describe_transport_error(error: BaseException, base_url: str, timeout: Any = None) -> str:
    """What failed, where and what to check, for a connection/TLS/timeout failure (no urllib3 internals)."""
    chain = _error_chain_text(error)
    lowered = chain.lower()
    for markers, what, check in _TRANSPORT_DIAGNOSES:
        if any(marker.lower() in lowered for marker in markers):
            if "timeout" in what and timeout:
                what = f"{what} ({timeout} s)"
            return f"{what} at {base_url}; {check}"
    return f"{type(error).__name__} at {base_url}: {truncate(chain, 200)}"


def _is_transport_retryable(error: BaseException) -> bool:
    return isinstance(error, (rexc.ConnectionError, rexc.Timeout))


def _maybe_sent(error: BaseException) -> bool:
    """False only when the connection was never established (refused, DNS, connect timeout)."""
    text = repr(error)
    not_sent_markers = ("NewConnectionError", "ConnectTimeout", "NameResolutionError", "Connection refused", "Failed to establish")
    return not any(marker in text for marker in not_sent_markers)
