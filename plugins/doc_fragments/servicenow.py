# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # Connection options of every ServiceNow module (argument spec: module_utils/_servicenow.py SERVICENOW_CONNECTION_ARGSPEC).
    DOCUMENTATION = r"""
options:
  instance:
    description:
      - The ServiceNow instance - a URL such as V(https://acme.service-now.com) or a bare instance name such as V(acme)
        (meaning C(https://acme.service-now.com)). C(http://) URLs are accepted (simulators, test rigs).
      - If not set, the value of the E(SN_HOST) or E(SN_INSTANCE) environment variable is used.
    type: str
    required: true
    aliases: [host]
  username:
    description:
      - User for Basic authentication or the OAuth password grant.
      - If not set, the value of the E(SN_USERNAME) environment variable is used.
    type: str
  password:
    description:
      - Password of O(username). Mutually exclusive with O(password_file).
      - If not set, the value of the E(SN_PASSWORD) environment variable is used.
    type: str
  password_file:
    description:
      - File holding the password of O(username), read on the controller when the task runs (one trailing newline
        removed; keep it mode 0600). A daemon (ansible-rulebook) should prefer it to E(SN_PASSWORD).
      - If not set, the value of the E(SN_PASSWORD_FILE) environment variable is used.
    type: path
  client_id:
    description:
      - OAuth client id (an OAuth API endpoint of the instance). With O(client_secret) the module authenticates with OAuth
        (a bearer token) instead of Basic.
      - If not set, the value of the E(SN_CLIENT_ID) environment variable is used.
    type: str
  client_secret:
    description:
      - OAuth client secret.
      - If not set, the value of the E(SN_CLIENT_SECRET) (or E(SN_SECRET_ID)) environment variable is used.
    type: str
  grant_type:
    description:
      - OAuth grant. Default V(password) when O(username) is set, else V(client_credentials).
    type: str
    choices: [password, client_credentials]
  api_key:
    description:
      - REST API key, sent as the C(x-sn-apikey) header (takes precedence over the other credentials).
      - If not set, the value of the E(SN_API_KEY) environment variable is used.
    type: str
  token_cache:
    description:
      - Directory where OAuth tokens are kept between task runs (0600 files in a 0700 directory owned by the controller user,
        one per instance, client, user and grant), so tasks reuse one token until it expires and then refresh it with
        the refresh token. An empty string requests a token per task.
      - M(labops.itsm.servicenow_incident) also keeps the sys_ids of referenced records it has learnt here.
      - If not set, the value of the E(LABOPS_SERVICENOW_TOKEN_CACHE) environment variable is used.
    type: path
    default: ~/.cache/labops/servicenow
  validate_certs:
    description:
      - Verify the instance's TLS certificate.
      - If not set, the value of the E(SN_VALIDATE_CERTS) environment variable is used.
    type: bool
    default: true
  ca_path:
    description:
      - CA bundle (file or directory) used to verify the instance's certificate.
    type: path
  timeout:
    description:
      - Timeout in seconds of each HTTP request.
      - Reads are retried 3 times after 1, 2 and 4 seconds on connection errors, timeouts, HTTP 429 (waiting at least its
        C(Retry-After)) and 5xx. A write whose reply was lost is not re-sent blindly.
    type: int
    default: 30
"""
