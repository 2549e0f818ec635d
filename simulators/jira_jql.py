"""Jira simulator: the JQL subset (contracts/jira.md §7) — tokenizer, parser, validation, evaluation, ordering.

Grammar::

    query   := [or] [ORDER BY sort ("," sort)*]
    or      := and ((OR | "||") and)*
    and     := not ((AND | "&&") not)*
    not     := (NOT | "!") not | "(" or ")" | clause
    clause  := field op value | field (IN | NOT IN) "(" value ("," value)* ")" | field IS [NOT] (EMPTY | NULL)
    sort    := field [ASC | DESC]

Fields: ``project``, ``labels``, ``status``, ``statusCategory``, ``resolution``, ``resolutiondate``,
``created``, ``updated``, ``key``/``issuekey``/``id``, ``issuetype``/``type``, ``component``, ``priority``,
``summary``/``description``/``text`` (``~`` and ``!~`` only).  Dates take a relative offset
(``-15m``, ``-2h``, ``-7d``, ``-1w``; a leading ``+`` or none means the future) or an absolute
``yyyy-MM-dd[ HH:mm]`` (UTC).  ``EMPTY`` never equals nor differs from a value: ``resolution != "X"``
does not match an unresolved issue.  Values are checked as Jira checks them: an unknown project,
status, resolution, issue type, component, priority or issue key is a 400, as is an unknown field,
an operator the field does not support, a function, or anything else outside this grammar.
"""
from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from simulators import jira_adf


class JqlError(ValueError):
    """Invalid or unsupported JQL: the simulator answers 400 with this message in ``errorMessages``."""


KEYWORDS = {"and", "or", "not", "in", "is", "empty", "null", "order", "by", "asc", "desc"}
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>!=|>=|<=|!~|&&|\|\||[=<>~!(),])
  | (?P<word>[^\s"'=!<>~(),&|+.;?*/%^$\#@\[\]]+)
""", re.VERBOSE)
_RELATIVE = re.compile(r"([-+]?)(\d+)([mhdw])")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_ABSOLUTE = re.compile(r"(\d{4})[-/](\d{1,2})[-/](\d{1,2})(?:\s+(\d{1,2}):(\d{2}))?")

# field name (lower case) -> (canonical name, kind)
FIELDS: dict[str, tuple[str, str]] = {
    "project": ("project", "single"), "labels": ("labels", "multi"), "status": ("status", "single"),
    "statuscategory": ("statusCategory", "single"), "resolution": ("resolution", "single"),
    "resolutiondate": ("resolutiondate", "date"), "resolved": ("resolutiondate", "date"),
    "created": ("created", "date"), "createddate": ("created", "date"),
    "updated": ("updated", "date"), "updateddate": ("updated", "date"),
    "key": ("key", "single"), "issuekey": ("key", "single"), "id": ("key", "single"),
    "issuetype": ("issuetype", "single"), "type": ("issuetype", "single"),
    "component": ("component", "multi"), "priority": ("priority", "single"),
    "summary": ("summary", "text"), "description": ("description", "text"), "text": ("text", "text"),
}
OPERATORS = {
    "single": {"=", "!=", "in", "not in", "is", "is not"},
    "multi": {"=", "!=", "in", "not in", "is", "is not"},
    "date": {"=", "!=", ">", ">=", "<", "<=", "is", "is not"},
    "text": {"~", "!~", "is", "is not"},
}
SORTABLE = {"created", "updated", "resolutiondate", "status", "key", "priority", "issuetype", "project", "summary"}
EMPTY = None  # the EMPTY / NULL value


@dataclass
class Token:
    kind: str  # string, op, word, end
    text: str
    pos: int

    @property
    def keyword(self) -> str:
        return self.text.lower() if self.kind == "word" else ""


@dataclass
class Clause:
    field: str
    kind: str
    op: str
    values: list[Any]  # strings, or [None] for EMPTY


@dataclass
class Junction:
    op: str  # "and" | "or"
    parts: list[Node]


@dataclass
class Negation:
    part: Node


Node = Clause | Junction | Negation


@dataclass
class Query:
    where: Node | None
    order: list[tuple[str, bool]] = field(default_factory=list)  # (canonical field, descending)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise JqlError(f"Error in the JQL Query: The character '{text[pos]}' is a reserved JQL character. You must enclose it in a "
                           f"string or use the escape '\\u{ord(text[pos]):04x}' instead. (line 1, character {pos + 1})")
        kind = match.lastgroup or ""
        if kind != "space":
            value = match.group()
            if kind == "string":
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            tokens.append(Token(kind, value, pos + 1))
        pos = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.index = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.index]

    def take(self) -> Token:
        tok = self.tokens[self.index]
        self.index += 1
        return tok

    def error(self, expected: str) -> JqlError:
        tok = self.tok
        got = "the end of the query" if tok.kind == "end" else f"'{tok.text}'"
        return JqlError(f"Error in the JQL Query: Expecting {expected} but got {got}. (line 1, character {tok.pos})")

    def parse(self) -> Query:
        where = None
        if not (self.tok.kind == "end" or self.tok.keyword == "order"):
            where = self.parse_or()
        order: list[tuple[str, bool]] = []
        if self.tok.keyword == "order":
            self.take()
            if self.tok.keyword != "by":
                raise self.error("'by'")
            self.take()
            while True:
                order.append(self.parse_sort())
                if self.tok.kind == "op" and self.tok.text == ",":
                    self.take()
                    continue
                break
        if self.tok.kind != "end":
            raise self.error("either 'OR' or 'AND'" if where is not None and not order else "',' or the end of the query")
        return Query(where, order)

    def parse_sort(self) -> tuple[str, bool]:
        tok = self.take()
        if tok.kind not in ("word", "string") or tok.keyword in KEYWORDS:
            self.index -= 1
            raise self.error("a field name")
        name = _field(tok.text)[0]
        if name.lower() not in SORTABLE:
            raise JqlError(f"Field '{tok.text}' does not support sorting.")
        descending = False
        if self.tok.keyword in ("asc", "desc"):
            descending = self.take().keyword == "desc"
        return name, descending

    def parse_or(self) -> Node:
        parts = [self.parse_and()]
        while self.tok.keyword == "or" or (self.tok.kind == "op" and self.tok.text == "||"):
            self.take()
            parts.append(self.parse_and())
        return parts[0] if len(parts) == 1 else Junction("or", parts)

    def parse_and(self) -> Node:
        parts = [self.parse_not()]
        while self.tok.keyword == "and" or (self.tok.kind == "op" and self.tok.text == "&&"):
            self.take()
            parts.append(self.parse_not())
        return parts[0] if len(parts) == 1 else Junction("and", parts)

    def parse_not(self) -> Node:
        if self.tok.keyword == "not" or (self.tok.kind == "op" and self.tok.text == "!"):
            self.take()
            return Negation(self.parse_not())
        if self.tok.kind == "op" and self.tok.text == "(":
            self.take()
            node = self.parse_or()
            if not (self.tok.kind == "op" and self.tok.text == ")"):
                raise self.error("')'")
            self.take()
            return node
        return self.parse_clause()

    def parse_clause(self) -> Clause:
        tok = self.tok
        if tok.kind not in ("word", "string") or tok.keyword in KEYWORDS:
            raise self.error("a field name")
        self.take()
        name, kind = _field(tok.text)
        op = self.parse_operator()
        if op not in OPERATORS[kind]:
            raise JqlError(f"The operator '{op.upper() if op[0].isalpha() else op}' is not supported by the '{tok.text}' field.")
        if op in ("is", "is not"):
            if self.tok.keyword not in ("empty", "null"):
                raise self.error("'EMPTY' or 'NULL'")
            self.take()
            return Clause(name, kind, op, [EMPTY])
        if op in ("in", "not in"):
            if not (self.tok.kind == "op" and self.tok.text == "("):
                raise self.error("'('")
            self.take()
            values = [self.parse_value()]
            while self.tok.kind == "op" and self.tok.text == ",":
                self.take()
                values.append(self.parse_value())
            if not (self.tok.kind == "op" and self.tok.text == ")"):
                raise self.error("')'")
            self.take()
            return Clause(name, kind, op, values)
        value = self.parse_value()
        if value is EMPTY and op in ("=", "!="):
            return Clause(name, kind, "is" if op == "=" else "is not", [EMPTY])
        if value is EMPTY:
            raise JqlError(f"The operator '{op}' does not support the EMPTY value.")
        return Clause(name, kind, op, [value])

    def parse_operator(self) -> str:
        tok = self.tok
        if tok.kind == "op" and tok.text in ("=", "!=", ">", ">=", "<", "<=", "~", "!~"):
            self.take()
            return tok.text
        if tok.keyword == "in":
            self.take()
            return "in"
        if tok.keyword == "not":
            self.take()
            if self.tok.keyword != "in":
                raise self.error("'IN'")
            self.take()
            return "not in"
        if tok.keyword == "is":
            self.take()
            if self.tok.keyword == "not":
                self.take()
                return "is not"
            return "is"
        raise self.error("operator")

    def parse_value(self) -> str | None:
        tok = self.tok
        if tok.kind == "string":
            self.take()
            return tok.text
        if tok.kind == "word" and tok.keyword in ("empty", "null"):
            self.take()
            return EMPTY
        if tok.kind == "word" and tok.keyword not in KEYWORDS:
            self.take()
            if self.tok.kind == "op" and self.tok.text == "(":
                raise JqlError(f"Error in the JQL Query: the function '{tok.text}()' is not supported by this simulator.")
            return tok.text
        raise self.error("either a value, 'EMPTY' or a list")


def _field(name: str) -> tuple[str, str]:
    known = FIELDS.get(name.lower())
    if known is None:
        raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
    return known


def parse(text: str) -> Query:
    """Parse JQL (raises :class:`JqlError`)."""
    return _Parser(text or "").parse()


# --------------------------------------------------------------------------- evaluation


@dataclass
class Catalog:
    """What the instance knows, for value validation: each map goes from a lower-case alias to the canonical value."""

    projects: Mapping[str, str]
    statuses: Mapping[str, str]
    categories: Mapping[str, str]
    resolutions: Mapping[str, str]
    issuetypes: Mapping[str, str]
    components: Mapping[str, str]
    priorities: Mapping[str, str]
    keys: Mapping[str, str]  # lower-case key or id -> key
    category_of: Callable[[str], str]  # status name -> category key


def parse_date(value: str, now: float) -> float:
    """A JQL date value (relative offset or absolute UTC date) as an epoch."""
    text = value.strip()
    rel = _RELATIVE.fullmatch(text)
    if rel:
        seconds = int(rel.group(2)) * _UNITS[rel.group(3)]
        return now - seconds if rel.group(1) == "-" else now + seconds
    parts = [p for p in text.split() if p]
    if len(parts) > 1 and all(_RELATIVE.fullmatch(p) for p in parts):
        total = 0.0
        for part in parts:
            match = _RELATIVE.fullmatch(part)
            assert match is not None
            sign = -1 if match.group(1) == "-" else 1
            total += sign * int(match.group(2)) * _UNITS[match.group(3)]
        return now + total
    absolute = _ABSOLUTE.fullmatch(text)
    if absolute:
        year, month, day = (int(absolute.group(i)) for i in (1, 2, 3))
        hour, minute = int(absolute.group(4) or 0), int(absolute.group(5) or 0)
        try:
            return float(calendar.timegm(time.struct_time((year, month, day, hour, minute, 0, 0, 0, 0))))
        except (ValueError, OverflowError):
            pass
    raise JqlError(f"Date value '{value}' for field is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', "
                   "'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'.")


Predicate = Callable[[Mapping[str, Any]], bool]


def compile_query(query: Query, catalog: Catalog, now: float) -> Predicate:
    """Validate the values of ``query`` against ``catalog`` and return the predicate over issue records."""
    if query.where is None:
        return lambda issue: True
    return _compile(query.where, catalog, now)


def _compile(node: Node, catalog: Catalog, now: float) -> Predicate:
    if isinstance(node, Junction):
        parts = [_compile(part, catalog, now) for part in node.parts]
        if node.op == "and":
            return lambda issue: all(part(issue) for part in parts)
        return lambda issue: any(part(issue) for part in parts)
    if isinstance(node, Negation):
        inner = _compile(node.part, catalog, now)
        return lambda issue: not inner(issue)
    return _clause(node, catalog, now)


def _canon(clause: Clause, catalog: Catalog, value: str) -> str:
    """The canonical value of ``value`` for ``clause.field`` (400 when the instance has no such value)."""
    lookup: Mapping[str, str] | None = {
        "project": catalog.projects, "status": catalog.statuses, "statusCategory": catalog.categories,
        "resolution": catalog.resolutions, "issuetype": catalog.issuetypes, "component": catalog.components,
        "priority": catalog.priorities,
    }.get(clause.field)
    if clause.field == "key":
        found = catalog.keys.get(value.lower())
        if found is None:
            raise JqlError(f"An issue with key '{value}' does not exist for field 'key'.")
        return found
    if lookup is None:
        return value
    found = lookup.get(value.lower())
    if found is None:
        raise JqlError(f"The value '{value}' does not exist for the field '{clause.field}'.")
    return found


def _current(clause: Clause, issue: Mapping[str, Any], catalog: Catalog) -> Any:
    name = clause.field
    if name == "labels":
        return [label.lower() for label in issue.get("labels") or []]
    if name == "component":
        return list(issue.get("components") or [])
    if name == "statusCategory":
        return catalog.category_of(issue["status"])
    if name == "text":
        return " ".join([str(issue.get("summary") or ""), jira_adf.to_text(issue.get("description"))])
    if name == "description":
        return jira_adf.to_text(issue.get("description"))
    return issue.get(name)


def _clause(clause: Clause, catalog: Catalog, now: float) -> Predicate:
    op = clause.op
    if op in ("is", "is not"):
        def is_empty(issue: Mapping[str, Any]) -> bool:
            value = _current(clause, issue, catalog)
            empty = value is None or value == [] or value == ""
            return empty if op == "is" else not empty
        return is_empty
    if clause.kind == "date":
        target = parse_date(str(clause.values[0]), now)
        compare: Callable[[float, float], bool] = {
            "=": lambda a, b: int(a // 60) == int(b // 60), "!=": lambda a, b: int(a // 60) != int(b // 60),
            ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
        }[op]

        def dated(issue: Mapping[str, Any]) -> bool:
            value = _current(clause, issue, catalog)
            return value is not None and compare(float(value), target)
        return dated
    if clause.kind == "text":
        words = [w for w in re.split(r"\W+", str(clause.values[0]).lower()) if w]

        def contains(issue: Mapping[str, Any]) -> bool:
            text = str(_current(clause, issue, catalog) or "").lower()
            found = all(word in text for word in words)
            return found if op == "~" else not found
        return contains
    resolution_unresolved = clause.field == "resolution" and any(str(v).lower() == "unresolved" for v in clause.values)
    if resolution_unresolved:
        if len(clause.values) != 1 or op not in ("=", "!="):
            raise JqlError("The value 'Unresolved' can only be used alone with '=' or '!='.")
        return _clause(Clause("resolution", "single", "is" if op == "=" else "is not", [EMPTY]), catalog, now)
    wanted = {_canon(clause, catalog, str(v)).lower() for v in clause.values}
    positive = op in ("=", "in")

    def match(issue: Mapping[str, Any]) -> bool:
        value = _current(clause, issue, catalog)
        if clause.kind == "multi":
            values = {str(v).lower() for v in value or []}
            if not values:
                return False  # EMPTY never equals nor differs
            hit = bool(values & wanted)
            return hit if positive else not hit
        if value is None or value == "":
            return False
        hit = str(value).lower() in wanted
        return hit if positive else not hit
    return match


def order_issues(issues: list[Mapping[str, Any]], order: list[tuple[str, bool]], rank: Callable[[str, Any], Any]) -> list[Mapping[str, Any]]:
    """Sort by ``order`` (empty values last in both directions); without ORDER BY by id (index order).

    ``rank(field, value)`` maps a field value to a sortable key (status and priority by their configured order).
    """
    result = sorted(issues, key=lambda issue: int(issue["id"]), reverse=bool(order and order[0][1]))
    for name, descending in reversed(order):
        present = [i for i in result if i.get(name) is not None]
        absent = [i for i in result if i.get(name) is None]
        present.sort(key=lambda issue, n=name: rank(n, issue.get(n)), reverse=descending)  # type: ignore[misc]
        result = present + absent
    return result
