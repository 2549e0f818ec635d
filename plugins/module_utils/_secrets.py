# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Controller-side secrets shared by the platform clients (OTOBO, ServiceNow).

* :func:`read_secret_file`: a password (or token) kept in a file (``password_file`` options);
* :class:`SessionCache`: a credential that outlives one task run (OTOBO SessionID, ServiceNow OAuth token),
  kept on disk in a file 0600 inside a 0700 directory of the controller user, keyed by a hash of what
  identifies it (server, account, ...), so that N tasks cost one login, not N.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import hashlib
import json
import os
import stat
import tempfile
from typing import Any, Callable, Iterator, Mapping, Optional

from ansible_collections.labops.itsm.plugins.module_utils._errors import ValidationError

try:
    import fcntl
    HAS_FCNTL = True
except ImportError:  # pragma: no cover - non-POSIX controllers are not supported by Ansible anyway
    HAS_FCNTL = False


def read_secret_file(path: str, option: str, warn: Optional[Callable[[str], None]] = None, *, platform: str) -> str:
    """The secret kept in the file ``path`` (option ``option`` of ``platform``), without one trailing newline.

    Errors name the file and the reason, never its content. A file that every user may read (or write) is used,
    with a warning: ``chmod 0600`` it.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ValidationError(f"{platform}: {option} {path} does not exist")
    except OSError as exc:
        raise ValidationError(f"{platform}: {option} {path} cannot be read: {exc.strerror or exc}")
    if not stat.S_ISREG(info.st_mode):
        raise ValidationError(f"{platform}: {option} {path} is not a regular file")
    if info.st_mode & (stat.S_IROTH | stat.S_IWOTH) and warn is not None:
        warn("{0}: {1} {2} is {3} by every user (mode {4:04o}); restrict it with chmod 0600".format(
            platform, option, path, "readable" if info.st_mode & stat.S_IROTH else "writable", stat.S_IMODE(info.st_mode)))
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ValidationError(f"{platform}: {option} {path} cannot be read: {exc.strerror or exc}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationError(f"{platform}: {option} {path} is not UTF-8 text") from None
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise ValidationError(f"{platform}: {option} {path} is empty")
    return text


class SessionCache:
    """Credentials kept on disk between task runs (file 0600 in a 0700 directory of the controller user).

    The key (``parts``) is hashed into the file name; callers include everything that must not ride on another
    account's credential (URL, user, a hash of the password). A cache that is not private to this user is
    ignored. ``load``/``store``/``forget`` keep a session id (OTOBO); ``load_entry``/``store_entry``/
    ``forget_entry`` keep a JSON object (ServiceNow: access and refresh token with their expiry).
    ``locked()`` serialises the processes that would otherwise each fetch a new credential at the same time.
    """

    def __init__(self, directory: str, *parts: str) -> None:
        self.directory = os.path.expanduser(directory)
        digest = hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:32]
        self.path = os.path.join(self.directory, digest + ".json")

    def _private(self, path: str) -> bool:
        info = os.stat(path)
        return info.st_uid == os.getuid() and not info.st_mode & 0o077

    # -- JSON entries --------------------------------------------------------------------

    def load_entry(self) -> Optional[dict]:
        try:
            if not (self._private(self.directory) and self._private(self.path)):
                return None
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def store_entry(self, entry: Mapping[str, Any]) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            if not self._private(self.directory):
                return
            handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".session-")  # created 0600
            with os.fdopen(handle, "w", encoding="utf-8") as stream:
                json.dump(dict(entry), stream)
            os.replace(temporary, self.path)
        except OSError:
            return  # a cache we cannot write only costs one login per run

    def forget_entry(self, matches: Callable[[Mapping[str, Any]], bool]) -> None:
        """Remove the entry when ``matches(entry)`` (only the credential that was rejected, not a newer one)."""
        entry = self.load_entry()
        if entry is not None and matches(entry):
            try:
                os.unlink(self.path)
            except OSError:
                pass

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock (flock) for this key while a credential is fetched; no lock when it cannot be had."""
        descriptor = None  # type: Optional[int]
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            if HAS_FCNTL and self._private(self.directory):
                descriptor = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError:
            if descriptor is not None:
                os.close(descriptor)
            descriptor = None
        try:
            yield
        finally:
            if descriptor is not None:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
                os.close(descriptor)

    # -- session ids (OTOBO) -------------------------------------------------------------

    def load(self) -> Optional[str]:
        session_id = (self.load_entry() or {}).get("session_id")
        return str(session_id) if session_id else None

    def store(self, session_id: str) -> None:
        self.store_entry({"session_id": session_id})

    def forget(self, session_id: str) -> None:
        self.forget_entry(lambda entry: entry.get("session_id") == session_id)
