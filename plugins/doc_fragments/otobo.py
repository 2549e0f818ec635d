# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # Connection options of every OTOBO module (argument spec: module_utils/_otobo.py OTOBO_CONNECTION_ARGSPEC).
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Scheme, host and optional port of the OTOBO (or Znuny) server, for example V(https://otobo.lab.example).
      - Do not include the path; see O(path_prefix) and O(webservice).
      - If not set, the value of the E(OTOBO_URL) environment variable is used.
    type: str
    required: true
  webservice:
    description:
      - Name of the GenericInterface web service that provides the ticket operations
        (an admin imports the sample C(GenericTicketConnectorREST) definition under this name).
    type: str
    default: GenericTicketConnectorREST
  path_prefix:
    description:
      - URL path of the application. Znuny installations use V(/znuny) or V(/otrs).
    type: str
    default: /otobo
  username:
    description:
      - Agent login used for the web service.
      - If not set, the value of the E(OTOBO_USERNAME) environment variable is used.
    type: str
    required: true
  password:
    description:
      - Password of O(username).
      - If not set, the value of the E(OTOBO_PASSWORD) environment variable is used.
      - One of O(password) and O(password_file) is required; they are mutually exclusive (their environment
        variables included).
      - A daemon (ansible-rulebook) should prefer O(password_file), because ansible-runner writes the whole
        environment of every playbook run into its artifacts, so E(OTOBO_PASSWORD) would end up on disk.
    type: str
  password_file:
    description:
      - File that holds the password of O(username), read on the controller when the task runs; one trailing
        newline is removed. Keep it private (mode 0600); a file that every user may read or write is used with
        a warning.
      - A missing, unreadable or empty file fails the task with an error that names the file, never its content.
      - If not set, the value of the E(OTOBO_PASSWORD_FILE) environment variable is used.
    type: path
    version_added: 0.2.0
  use_session:
    description:
      - V(true) (the default) authenticates with a session (SessionCreate) and sends its SessionID instead of the
        password, so the password travels only in the body of one SessionCreate and never in a query string.
        The session is kept in O(session_cache) and reused by later task runs, because OTOBO's web service has
        no operation that removes a session and a session per run would stay in OTOBO's session table until its
        idle timeout (2 hours by default). A rejected session is re-created once.
      - V(false) sends O(username) and O(password) with each operation and opens no session; GET operations
        (TicketGet, TicketSearch) then carry the password in the query string, where web server access logs
        may record it.
    type: bool
    default: true
  session_cache:
    description:
      - Directory where the SessionID is kept between task runs (one file per URL, web service, agent and
        password, mode 0600 in a 0700 directory owned by the controller user; a cache that is not private is
        ignored). Set to an empty string to create one session per task run instead.
      - If not set, the value of the E(LABOPS_OTOBO_SESSION_CACHE) environment variable is used.
    type: path
    default: ~/.cache/labops.itsm/otobo-sessions
  validate_certs:
    description:
      - Verify the server's TLS certificate.
      - If not set, the value of the E(OTOBO_VALIDATE_CERTS) environment variable is used.
    type: bool
    default: true
  ca_path:
    description:
      - CA bundle (file or directory) used to verify the server's certificate.
    type: path
  timeout:
    description:
      - Timeout in seconds of each HTTP request.
      - Failed reads are retried 3 times after 1, 2 and 4 seconds (connection errors, timeouts, HTTP 429 and 5xx;
        HTTP 500 only once because OTOBO's own 500 answers repeat). Writes that may have reached the server are not
        re-sent blindly; the modules read the ticket back first.
    type: int
    default: 30
  search_route:
    description:
      - Route of an additional TicketSearch operation that accepts a JSON body. The stock GET route cannot search
        dynamic fields, OTOBO silently drops such criteria and matches every ticket.
      - Used together with O(correlation_field) to find tickets by correlation key. When that search finds nothing,
        the title marker search follows, so a ticket whose field was never filled is not opened twice.
    type: dict
    suboptions:
      method:
        description:
          - HTTP method of the route.
        type: str
        choices: [POST, PATCH, PUT]
        default: POST
      path:
        description:
          - Route path below the web service, for example V(/TicketSearch).
        type: str
        required: true
  correlation_field:
    description:
      - Name of a ticket dynamic field that stores the correlation key, for example V(LabopsCorrelationKey).
      - Without it the key is only kept in the title marker C([ck:<key>]).
    type: str
"""
