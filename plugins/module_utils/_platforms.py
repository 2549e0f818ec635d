# -*- coding: utf-8 -*-
# Copyright: (c) 2025, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""The platform registry: which ticket platforms ``ims_sop`` can govern and what each one is configured with.

An entry names the platform, its options (an Ansible argument spec of the adapter's connection and mapping
options, with ``no_log`` and environment fallbacks) and a factory that builds its ``TicketPlatform``.
``ims_sop`` takes ``platform`` (a registry name), ``platform_options`` (validated here) and ``queue``.
Jira joined by registering one more entry, as ServiceNow did.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.labops.itsm.plugins.module_utils._errors import LabopsError, ValidationError
from ansible_collections.labops.itsm.plugins.module_utils._jira import (
    JIRA_CONNECTION_ARGSPEC,
    JIRA_CONNECTION_MUTUALLY_EXCLUSIVE,
    connection_secrets,
)
from ansible_collections.labops.itsm.plugins.module_utils._jira import client_from_params as jira_client
from ansible_collections.labops.itsm.plugins.module_utils._jira_ims import (
    DEFAULT_LABEL_PREFIX,
    DEFAULT_LABELS,
    DEFAULT_LINK_TYPE,
    DEFAULT_RESOLUTION,
)
from ansible_collections.labops.itsm.plugins.module_utils._jira_ims import platform_from_params as jira_platform
from ansible_collections.labops.itsm.plugins.module_utils._otobo import (
    OTOBO_CONNECTION_ARGSPEC,
    OTOBO_CONNECTION_MUTUALLY_EXCLUSIVE,
    OTOBO_CONNECTION_REQUIRED_ONE_OF,
    client_from_params,
    connection_password,
)
from ansible_collections.labops.itsm.plugins.module_utils._otobo_ims import platform_from_params
from ansible_collections.labops.itsm.plugins.module_utils._platform import TicketPlatform
from ansible_collections.labops.itsm.plugins.module_utils._servicenow import (
    SERVICENOW_CONNECTION_ARGSPEC,
    SERVICENOW_CONNECTION_MUTUALLY_EXCLUSIVE,
    SERVICENOW_CONNECTION_REQUIRED_ONE_OF,
)
from ansible_collections.labops.itsm.plugins.module_utils._servicenow import client_from_params as servicenow_client
from ansible_collections.labops.itsm.plugins.module_utils._servicenow import connection_password as servicenow_password
from ansible_collections.labops.itsm.plugins.module_utils._servicenow_ims import DEFAULT_CLOSE_CODE, DEFAULT_QUEUE
from ansible_collections.labops.itsm.plugins.module_utils._servicenow_ims import platform_from_params as servicenow_platform

DEFAULT_PLATFORM = "otobo"

Factory = Callable[..., TicketPlatform]


def _ignore(message: str) -> None:
    """Warnings sink when the caller passes none."""


def _no_file_secrets(options: Mapping[str, Any]) -> Iterable[str]:
    return ()


class PlatformEntry:
    """One registered platform: ``name``, ``option_spec`` and ``factory(options, *, queue, warn)``.

    ``mutually_exclusive`` and ``required_one_of`` constrain the options as in an AnsibleModule;
    ``file_secrets(validated_options)`` yields the secrets the adapter reads from files (``password_file``),
    so that callers can mask them like the ``no_log`` options.
    """

    def __init__(self, name: str, option_spec: Mapping[str, Any], factory: Factory,
                 mutually_exclusive: Sequence[Sequence[str]] = (), required_one_of: Sequence[Sequence[str]] = (),
                 file_secrets: Callable[[Mapping[str, Any]], Iterable[str]] = _no_file_secrets) -> None:
        self.name = name
        self.option_spec = dict(option_spec)
        self.factory = factory
        self.mutually_exclusive = [list(group) for group in mutually_exclusive]
        self.required_one_of = [list(group) for group in required_one_of]
        self.file_secrets = file_secrets

    def __repr__(self) -> str:
        return f"PlatformEntry({self.name!r})"


def _otobo_factory(options: Mapping[str, Any], *, queue: Optional[str], warn: Callable[[str], None]) -> TicketPlatform:
    client = client_from_params(options, warn=warn)
    return platform_from_params(dict(options, queue=queue), client)


OTOBO_OPTION_SPEC = dict(
    OTOBO_CONNECTION_ARGSPEC,
    customer_user=dict(type="str"),
    state_map=dict(type="dict"),
    ticket_types=dict(type="dict"),
    priority_map=dict(type="dict"),
    dynamic_field_map=dict(type="dict"),
)


def _otobo_file_secrets(options: Mapping[str, Any]) -> Iterable[str]:
    if not options.get("password_file") or options.get("password"):
        return ()
    try:
        return (connection_password(options),)
    except LabopsError:  # the factory raises the same error with its message; nothing to mask
        return ()


def _servicenow_factory(options: Mapping[str, Any], *, queue: Optional[str], warn: Callable[[str], None]) -> TicketPlatform:
    client = servicenow_client(options, warn=warn)
    return servicenow_platform(dict(options, queue=queue), client)


SERVICENOW_OPTION_SPEC = dict(
    SERVICENOW_CONNECTION_ARGSPEC,
    assignment_group=dict(type="str", default=DEFAULT_QUEUE),
    caller=dict(type="str"),
    field_map=dict(type="dict"),
    state_map=dict(type="dict"),
    close_code=dict(type="str", default=DEFAULT_CLOSE_CODE),
    team_groups=dict(type="dict"),
    severity_map=dict(type="dict"),
    cmdb_lookup=dict(type="bool", default=True),
)


def _servicenow_file_secrets(options: Mapping[str, Any]) -> Iterable[str]:
    if not options.get("password_file") or options.get("password"):
        return ()
    try:
        return tuple(value for value in (servicenow_password(options),) if value)
    except LabopsError:  # the factory raises the same error with its message; nothing to mask
        return ()


def _jira_factory(options: Mapping[str, Any], *, queue: Optional[str], warn: Callable[[str], None]) -> TicketPlatform:
    client = jira_client(options, warn=warn)
    return jira_platform(dict(options, queue=queue), client, warn=warn)


JIRA_OPTION_SPEC = dict(
    JIRA_CONNECTION_ARGSPEC,
    project=dict(type="str"),
    issue_types=dict(type="dict"),
    statuses=dict(type="dict"),
    resolution=dict(type="str", default=DEFAULT_RESOLUTION),
    priority_map=dict(type="dict"),
    field_map=dict(type="dict"),
    label_prefix=dict(type="str", default=DEFAULT_LABEL_PREFIX),
    labels=dict(type="list", elements="str", default=list(DEFAULT_LABELS)),
    link_type=dict(type="str", default=DEFAULT_LINK_TYPE),
)


def _jira_file_secrets(options: Mapping[str, Any]) -> Iterable[str]:
    if not (options.get("password_file") or options.get("token_file")):
        return ()
    try:
        return tuple(value for value in connection_secrets(options) if value)
    except LabopsError:  # the factory raises the same error with its message; nothing to mask
        return ()


REGISTRY = {
    "otobo": PlatformEntry("otobo", OTOBO_OPTION_SPEC, _otobo_factory, mutually_exclusive=OTOBO_CONNECTION_MUTUALLY_EXCLUSIVE,
                           required_one_of=OTOBO_CONNECTION_REQUIRED_ONE_OF, file_secrets=_otobo_file_secrets),
    "servicenow": PlatformEntry("servicenow", SERVICENOW_OPTION_SPEC, _servicenow_factory,
                                mutually_exclusive=SERVICENOW_CONNECTION_MUTUALLY_EXCLUSIVE,
                                required_one_of=SERVICENOW_CONNECTION_REQUIRED_ONE_OF, file_secrets=_servicenow_file_secrets),
    "jira": PlatformEntry("jira", JIRA_OPTION_SPEC, _jira_factory, mutually_exclusive=JIRA_CONNECTION_MUTUALLY_EXCLUSIVE,
                          file_secrets=_jira_file_secrets),
}  # type: dict[str, PlatformEntry]


def platform_names() -> list:
    """The registered platforms, sorted (``ims_sop``'s ``platform`` choices)."""
    return sorted(REGISTRY)


def entry(platform: str) -> PlatformEntry:
    try:
        return REGISTRY[platform]
    except KeyError:
        raise ValidationError("platform {0!r} is not supported; choose one of {1}".format(platform, ", ".join(platform_names())))


def option_names(platform: str) -> frozenset:
    """The option names ``platform_options`` accepts for ``platform``: the options and their aliases (``api_token``)."""
    spec = entry(platform).option_spec
    return frozenset(spec) | frozenset(alias for option in spec.values() for alias in option.get("aliases") or ())


def _mapping(options: Any) -> dict:
    if options is not None and not isinstance(options, Mapping):
        raise ValidationError(f"platform_options must be a mapping, got {type(options).__name__}")
    return dict(options or {})


def _validate(platform: str, options: Optional[Mapping[str, Any]]) -> Any:
    found = entry(platform)
    validator = ArgumentSpecValidator(found.option_spec, mutually_exclusive=found.mutually_exclusive or None,
                                      required_one_of=found.required_one_of or None)
    return validator.validate(_mapping(options))


def secret_values(platform: str, options: Optional[Mapping[str, Any]]) -> set:
    """The values of ``options`` (and of their environment fallbacks) that are secret (``no_log`` options).

    Secrets the adapter reads from files (OTOBO's ``password_file``) are included.
    Callers register them for masking (``module.no_log_values.update(...)``) before anything can echo them.
    """
    result = _validate(platform, options)
    values = {str(value) for value in result._no_log_values if value not in (None, "")}  # pylint: disable=protected-access
    if not result.error_messages:
        values.update(value for value in entry(platform).file_secrets(result.validated_parameters) if value)
    return values


def validate_options(platform: str, options: Optional[Mapping[str, Any]]) -> dict:
    """``options`` checked against the platform's ``option_spec``: types, required, defaults, env fallbacks applied.

    Unknown keys raise ValidationError naming them and the allowed ones.
    """
    allowed = option_names(platform)
    unknown = sorted(set(_mapping(options)) - allowed)
    if unknown:
        raise ValidationError("platform_options for {0}: unknown option(s) {1}; allowed: {2}".format(
            platform, ", ".join(unknown), ", ".join(sorted(allowed))), platform=platform)
    result = _validate(platform, options)
    if result.error_messages:
        raise ValidationError("platform_options for {0}: {1}".format(platform, "; ".join(result.error_messages)), platform=platform)
    return result.validated_parameters


def build_platform(platform: str, options: Optional[Mapping[str, Any]], *, queue: Optional[str] = None,
                   warn: Optional[Callable[[str], None]] = None) -> TicketPlatform:
    """The ``TicketPlatform`` adapter of ``platform``, configured by ``options``, routing to ``queue`` (adapter default when None)."""
    validated = validate_options(platform, options)
    return entry(platform).factory(validated, queue=queue, warn=warn or _ignore)
