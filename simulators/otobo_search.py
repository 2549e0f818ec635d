"""TicketSearch semantics: search expressions and criteria as observed on OTOBO 11.0 (MariaDB).

``Title``/``TicketNumber`` take a search expression: ``*`` wildcard, ``+``/``&&``/`` AND `` = and,
``||``/``|``/`` OR `` = or, ``!`` (at the start of a term) = not, parentheses group, backslash
escapes; matching is case-insensitive and exact without ``*``; an unparsable expression
matches nothing.  Dynamic-field criteria only count when their value is an object, which
a query string can never produce: that is how the stock GET route silently ignores them.
"""
from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from simulators.otobo_model import LOCKS, PRIORITIES, STATE_TYPES, STATES, Catalog, to_int

Matcher = Callable[[str], bool]


class ExpressionError(ValueError):
    """The search expression cannot be parsed (the search then matches nothing)."""


def _tokenize(expr: str) -> list[tuple[str, str]]:
    """Split into ('op', '&&'|'||'|'!'|'('|')') and ('term', text) tokens."""
    expr = re.sub(r"\s+AND\s+", "&&", expr)
    expr = re.sub(r"\s+OR\s+", "||", expr)
    tokens: list[tuple[str, str]] = []
    term = ""
    index = 0
    while index < len(expr):
        char = expr[index]
        pair = expr[index:index + 2]
        if char == "\\" and index + 1 < len(expr):
            term += "\\" + expr[index + 1]
            index += 2
            continue
        op = "&&" if pair == "&&" or char == "+" else "||" if pair == "||" or char == "|" else None
        if op or char in "()" or (char == "!" and not term.strip()):
            if term.strip():
                tokens.append(("term", term.strip()))
            term = ""
            tokens.append(("op", op or char))
            index += 2 if pair in ("&&", "||") else 1
            continue
        term += char
        index += 1
    if term.strip():
        tokens.append(("term", term.strip()))
    return tokens


def _term_matcher(term: str) -> Matcher:
    pattern = ""
    index = 0
    while index < len(term):
        char = term[index]
        if char == "\\" and index + 1 < len(term):
            pattern += re.escape(term[index + 1])
            index += 2
            continue
        pattern += ".*" if char == "*" else re.escape(char)
        index += 1
    regex = re.compile(pattern, re.IGNORECASE | re.DOTALL)
    return lambda value: regex.fullmatch(value) is not None


class _Parser:
    """Recursive descent: or_expr := and_expr ('||' and_expr)*; and_expr := unary ('&&' unary)*."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def parse(self) -> Matcher:
        if not self.tokens:
            raise ExpressionError("empty expression")
        matcher = self._or()
        if self.pos != len(self.tokens):
            raise ExpressionError("trailing tokens")
        return matcher

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _or(self) -> Matcher:
        parts = [self._and()]
        while self._peek() == ("op", "||"):
            self.pos += 1
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else (lambda value: any(part(value) for part in parts))

    def _and(self) -> Matcher:
        parts = [self._unary()]
        while self._peek() == ("op", "&&"):
            self.pos += 1
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else (lambda value: all(part(value) for part in parts))

    def _unary(self) -> Matcher:
        token = self._peek()
        if token is None:
            raise ExpressionError("unexpected end")
        self.pos += 1
        if token == ("op", "!"):
            inner = self._unary()
            return lambda value: not inner(value)
        if token == ("op", "("):
            inner = self._or()
            if self._peek() != ("op", ")"):
                raise ExpressionError("unbalanced parenthesis")
            self.pos += 1
            return inner
        if token[0] == "term":
            return _term_matcher(token[1])
        raise ExpressionError(f"unexpected {token[1]!r}")


def compile_expression(expr: str) -> Matcher:
    """Compile a Title/TicketNumber search expression; raises ExpressionError when unparsable."""
    return _Parser(_tokenize(expr)).parse()


def as_list(value: Any) -> list[Any]:
    """Criteria may be scalars or lists (repeated query keys); empty strings carry no criterion."""
    items = value if isinstance(value, list) else [value]
    return [item for item in items if item is not None and item != ""]


# --------------------------------------------------------------------------- criteria


class NoMatch(Exception):
    """A criterion names something that does not exist: TicketSearch returns no tickets."""


def _ids(values: Iterable[Any]) -> set[int]:
    result = set()
    for value in values:
        number = to_int(value)
        if number is None:
            raise NoMatch(value)
        result.add(number)
    return result


def _names(values: Iterable[Any], table: Mapping[int, str], exact: bool) -> set[int]:
    result = set()
    for value in values:
        text = str(value)
        found = [key for key, name in table.items() if (name == text if exact else name.lower() == text.lower())]
        if not found:
            raise NoMatch(value)
        result.update(found)
    return result


def _set_filter(data: Mapping[str, Any], catalog: Catalog) -> list[tuple[str, set[int]]]:
    """(ticket key, allowed IDs) pairs from the name and ID criteria present in ``data``."""
    states = {sid: name for sid, name, _t in STATES}
    filters: list[tuple[str, set[int]]] = []
    specs: list[tuple[str, str, Callable[[list[Any]], set[int]]]] = [
        ("Queues", "QueueID", lambda v: _names(v, catalog.queues, False)),
        ("QueueIDs", "QueueID", _ids),
        ("States", "StateID", lambda v: _names(v, states, False)),
        ("StateIDs", "StateID", _ids),
        ("Priorities", "PriorityID", lambda v: _names(v, PRIORITIES, True)),
        ("PriorityIDs", "PriorityID", _ids),
        ("Types", "TypeID", lambda v: _names(v, catalog.types, True)),
        ("TypeIDs", "TypeID", _ids),
        ("Locks", "LockID", lambda v: _names(v, LOCKS, True)),
        ("LockIDs", "LockID", _ids),
        ("OwnerIDs", "OwnerID", _ids),
        ("ResponsibleIDs", "ResponsibleID", _ids),
    ]
    for key, ticket_key, convert in specs:
        values = as_list(data.get(key))
        if values:
            filters.append((ticket_key, convert(values)))
    for key, convert_type in (("StateType", _state_type_names), ("StateTypeIDs", _state_type_ids)):
        values = as_list(data.get(key))
        if values:
            filters.append(("StateID", convert_type(values)))
    return filters


def _state_type_names(values: list[Any]) -> set[int]:
    """``StateType`` compares type *names* (case-insensitively): ``Open`` means type open, not new."""
    wanted = {str(value).lower() for value in values}
    return {sid for sid, _name, state_type in STATES if state_type in wanted}


def _state_type_ids(values: list[Any]) -> set[int]:
    wanted = _ids(values)
    return {sid for sid, _name, state_type in STATES if STATE_TYPES[state_type] in wanted}


def _text_filters(data: Mapping[str, Any]) -> list[tuple[str, Matcher]]:
    filters: list[tuple[str, Matcher]] = []
    for key, ticket_key in (("Title", "Title"), ("TicketNumber", "TicketNumber"), ("CustomerID", "CustomerID"),
                            ("CustomerUserLogin", "CustomerUserID")):
        values = [str(value) for value in as_list(data.get(key))]
        if not values:
            continue
        try:
            matchers = [compile_expression(value) if key in ("Title", "TicketNumber") else _term_matcher(value) for value in values]
        except ExpressionError as exc:
            raise NoMatch(key) from exc
        filters.append((ticket_key, lambda text, ms=matchers: any(m(text) for m in ms)))
    return filters


_TIME_CRITERIA = {
    "TicketCreateTimeNewerMinutes": ("Created", "newer", "minutes"), "TicketCreateTimeOlderMinutes": ("Created", "older", "minutes"),
    "TicketCreateTimeNewerDate": ("Created", "newer", "date"), "TicketCreateTimeOlderDate": ("Created", "older", "date"),
    "TicketChangeTimeNewerMinutes": ("Changed", "newer", "minutes"), "TicketChangeTimeOlderMinutes": ("Changed", "older", "minutes"),
    "TicketChangeTimeNewerDate": ("Changed", "newer", "date"), "TicketChangeTimeOlderDate": ("Changed", "older", "date"),
}


def _time_filters(data: Mapping[str, Any], now: float) -> list[Callable[[Mapping[str, Any]], bool]]:
    filters: list[Callable[[Mapping[str, Any]], bool]] = []
    for key, (ticket_key, direction, unit) in _TIME_CRITERIA.items():
        value = data.get(key)
        if value in (None, "") or isinstance(value, (list, dict)):
            continue
        if unit == "minutes":
            minutes = to_int(value)
            if minutes is None:
                raise NoMatch(key)
            limit = now - minutes * 60
        else:
            try:
                limit = float(calendar.timegm(time.strptime(str(value), "%Y-%m-%d %H:%M:%S")))
            except ValueError as exc:
                raise NoMatch(key) from exc
        if direction == "newer":
            filters.append(lambda t, k=ticket_key, lim=limit: t[k] >= lim)
        else:
            filters.append(lambda t, k=ticket_key, lim=limit: t[k] <= lim)
    return filters


# --------------------------------------------------------------------------- dynamic fields (POST route only)


def _df_value_matcher(spec: Mapping[str, Any]) -> Callable[[Any], bool] | None:
    """Operators Equals, Like, GreaterThan(Equals), SmallerThan(Equals), Empty; None when unusable."""
    checks: list[Callable[[Any], bool]] = []
    for operator, operand in spec.items():
        if operator == "Empty":
            checks.append(lambda v, want=bool(operand): (v in (None, "")) == want)
        elif operator in ("Equals", "Like", "GreaterThan", "GreaterThanEquals", "SmallerThan", "SmallerThanEquals"):
            checks.append(_df_operator(operator, operand))
    if not checks:
        return None
    return lambda value: all(check(value) for check in checks)


def _df_operator(operator: str, operand: Any) -> Callable[[Any], bool]:
    operands = [str(item) for item in as_list(operand)]
    if operator == "Like":
        matchers = [_term_matcher(item) for item in operands]
        return lambda v: v is not None and any(m(str(v)) for m in matchers)
    lowered = [item.lower() for item in operands]
    compare: dict[str, Callable[[str, str], bool]] = {
        "Equals": lambda a, b: a == b, "GreaterThan": lambda a, b: a > b, "GreaterThanEquals": lambda a, b: a >= b,
        "SmallerThan": lambda a, b: a < b, "SmallerThanEquals": lambda a, b: a <= b,
    }
    func = compare[operator]
    return lambda v: v is not None and any(func(str(v).lower(), item) for item in lowered)


def _df_filters(data: Mapping[str, Any], catalog: Catalog) -> list[tuple[str, Callable[[Any], bool]]]:
    """Only object-valued criteria for known fields count; scalars and unknown names are ignored."""
    specs: list[tuple[str, Any]] = []
    for key, value in data.items():
        if key.startswith("DynamicField_") and isinstance(value, dict):
            specs.append((key[len("DynamicField_"):], value))
    for item in as_list(data.get("DynamicField")):
        if isinstance(item, dict) and isinstance(item.get("Name"), str):
            specs.append((item["Name"], {k: v for k, v in item.items() if k != "Name"}))
    filters = []
    for name, spec in specs:
        matcher = _df_value_matcher(spec)
        if name in catalog.dynamic_fields and matcher is not None:
            filters.append((name, matcher))
    return filters


# --------------------------------------------------------------------------- entry point

_SORT_KEYS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "Age": lambda t: t["Created"], "Created": lambda t: t["Created"], "Changed": lambda t: t["Changed"],
    "Ticket": lambda t: t["TicketNumber"], "TicketNumber": lambda t: t["TicketNumber"], "Title": lambda t: t["Title"].lower(),
    "Queue": lambda t: t["QueueID"], "State": lambda t: t["StateID"], "Priority": lambda t: t["PriorityID"],
    "Owner": lambda t: t["OwnerID"], "Responsible": lambda t: t["ResponsibleID"], "Lock": lambda t: t["LockID"],
    "Type": lambda t: t["TypeID"], "CustomerID": lambda t: t["CustomerID"], "CustomerUser": lambda t: t["CustomerUserID"],
    "PendingTime": lambda t: t["PendingUntil"],
}


def search(tickets: Iterable[Mapping[str, Any]], data: Mapping[str, Any], catalog: Catalog, now: float) -> list[int]:
    """Ticket IDs matching ``data``, sorted (default newest first) and limited (default 500)."""
    try:
        sets = _set_filter(data, catalog)
        texts = _text_filters(data)
        times = _time_filters(data, now)
    except NoMatch:
        return []
    dfs = _df_filters(data, catalog)
    hits = [
        t for t in tickets
        if all(t[key] in allowed for key, allowed in sets)
        and all(match(str(t[key])) for key, match in texts)
        and all(check(t) for check in times)
        and all(match(t["DynamicField"].get(name)) for name, match in dfs)
    ]
    sort_by = str(as_list(data.get("SortBy"))[0]) if as_list(data.get("SortBy")) else "Age"
    key_func = _SORT_KEYS.get(sort_by, _SORT_KEYS["Age"])
    order = str(as_list(data.get("OrderBy"))[0]) if as_list(data.get("OrderBy")) else "Down"
    hits.sort(key=lambda t: (key_func(t), t["TicketID"]), reverse=order != "Up")
    limit = to_int(as_list(data.get("Limit"))[0]) if as_list(data.get("Limit")) else None
    return [t["TicketID"] for t in hits[: limit or 500]]
