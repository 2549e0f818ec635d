# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment:
    # Connection options of every Jira module (argument spec: module_utils/_jira.py JIRA_CONNECTION_ARGSPEC).
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the Jira site, for example V(https://acme.atlassian.net) (Cloud), V(https://jira.example.com) (Data Center),
        or V(https://api.atlassian.com/ex/jira/<cloudId>) for scoped API tokens and service accounts. No C(/rest/api) suffix.
      - If not set, the value of the E(JIRA_URL) environment variable is used.
    type: str
    required: true
    aliases: [server]
  deployment:
    description:
      - Which Jira answers at O(url). V(cloud) uses the REST API v3 (rich text as Atlassian Document Format, the enhanced
        JQL search C(/rest/api/3/search/jql)); V(datacenter) uses the REST API v2 (wiki markup strings, C(/rest/api/2/search)).
      - V(auto) takes V(cloud) for C(*.atlassian.net) and C(api.atlassian.com) URLs; for any other URL it asks
        C(GET /rest/api/2/serverInfo) once and keeps the answer in O(cache_dir).
      - If not set, the value of the E(JIRA_DEPLOYMENT) environment variable is used.
    type: str
    choices: [auto, cloud, datacenter]
    default: auto
  username:
    description:
      - Cloud - the Atlassian account's e-mail address (Basic authentication with O(password) as the API token).
      - Data Center - the user name (Basic authentication with O(password)); not needed with O(token).
      - If not set, the value of the E(JIRA_USERNAME) (or E(JIRA_EMAIL)) environment variable is used.
    type: str
    aliases: [email]
  password:
    description:
      - Cloud - the API token of O(username). Data Center - the password of O(username). Mutually exclusive with O(password_file).
      - If not set, the value of the E(JIRA_API_TOKEN) (or E(JIRA_PASSWORD)) environment variable is used.
    type: str
    aliases: [api_token]
  password_file:
    description:
      - File holding O(password) (the API token), read on the controller when the task runs (one trailing newline removed;
        keep it mode 0600). A daemon (ansible-rulebook) should prefer it to E(JIRA_API_TOKEN).
      - If not set, the value of the E(JIRA_API_TOKEN_FILE) (or E(JIRA_PASSWORD_FILE)) environment variable is used.
    type: path
    aliases: [api_token_file]
  token:
    description:
      - Data Center personal access token, sent as a C(Bearer) token in the C(Authorization) header. Takes precedence over O(username) and O(password).
        Mutually exclusive with O(token_file).
      - If not set, the value of the E(JIRA_PAT) environment variable is used.
    type: str
    aliases: [pat]
  token_file:
    description:
      - File holding O(token), read on the controller when the task runs.
      - If not set, the value of the E(JIRA_PAT_FILE) environment variable is used.
    type: path
  cache_dir:
    description:
      - Directory of the controller user where the Jira modules keep what they learn between tasks (0700) - the detected
        deployment of O(url), and the creation index of M(labops.itsm.jira_issue) (the issues this controller created per
        correlation label, named in every later search as C(reconcileIssues), so Jira Cloud's lagging search cannot hide
        them) with its lock files (one per label, so two runs for one label create one issue).
      - If not set, the value of the E(LABOPS_JIRA_CACHE) environment variable is used.
    type: path
    default: ~/.cache/labops/jira
  validate_certs:
    description:
      - Verify the TLS certificate of O(url).
      - If not set, the value of the E(JIRA_VALIDATE_CERTS) environment variable is used.
    type: bool
    default: true
  ca_path:
    description:
      - CA bundle (file or directory) used to verify the certificate of O(url).
    type: path
  timeout:
    description:
      - Timeout in seconds of each HTTP request.
      - Reads are retried 3 times after 1, 2 and 4 seconds on connection errors, timeouts and 5xx; HTTP 429 is retried after
        its C(Retry-After). A create whose reply was lost is not re-sent blindly.
    type: int
    default: 30
"""
