"""ServiceNow simulator: field access (dot-walk, display values, journals) and the encoded query.

Grammar (contracts/servicenow.md §4): terms joined by ``^`` (AND) and ``^OR`` (OR with the previous
term), ``^NQ`` starts a new OR-ed block, ``^^`` is a literal caret; operators ``=``, ``!=``, ``LIKE``,
``NOT LIKE``, ``STARTSWITH``, ``ENDSWITH``, ``IN``, ``NOT IN``, ``ISEMPTY``, ``ISNOTEMPTY``, ``<``,
``<=``, ``>``, ``>=``, ``BETWEEN`` (``a@b``), ``ANYTHING``; ``ORDERBY<field>`` / ``ORDERBYDESC<field>``
anywhere; ``javascript:gs.dateGenerate(...)``, ``gs.getUserName()``, ``gs.getUserID()``,
``gs.nowDateTime()``, ``gs.daysAgo(n)``, ``gs.hoursAgo(n)``, ``gs.minutesAgo(n)`` value helpers.
String comparisons are case-insensitive, as on the platform's default collation.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from simulators.servicenow_model import JOURNAL_TABLE, FieldDef, Schema, Store, fmt_time

OPERATORS = ("ISNOTEMPTY", "ISEMPTY", "NOT LIKE", "NOT IN", "STARTSWITH", "ENDSWITH", "LIKE", "BETWEEN", "ANYTHING",
             "IN", "!=", "<=", ">=", "=", "<", ">")
_TERM = re.compile(r"([a-z0-9_.]+?)(" + "|".join(re.escape(op) for op in OPERATORS) + r")(.*)", re.DOTALL)
_JS = re.compile(r"javascript:\s*gs\.(\w+)\(([^)]*)\)\s*;?\s*", re.DOTALL)


@dataclass
class Term:
    field: str
    op: str
    value: str


@dataclass
class Query:
    """``blocks`` are OR-ed (``^NQ``); a block is an AND of OR-groups; ``order`` is (field, descending)."""

    blocks: list[list[list[Term]]] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)


def split_terms(text: str) -> list[str]:
    """Split on ``^`` while ``^^`` stays a literal caret inside a value."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "^":
            if text.startswith("^^", i):
                current.append("^")
                i += 2
                continue
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


def parse(text: str) -> Query:
    """Parse an encoded query; unparseable terms become a term with op ``?`` (dropped like unknown fields)."""
    query = Query()
    block: list[list[Term]] = []
    for raw in split_terms(text or ""):
        token = raw.strip()
        if not token or token == "EQ":
            continue
        if token.startswith("ORDERBYDESC"):
            query.order.append((token[len("ORDERBYDESC"):], True))
            continue
        if token.startswith("ORDERBY"):
            query.order.append((token[len("ORDERBY"):], False))
            continue
        is_or = False
        if token.startswith("NQ"):
            if block:
                query.blocks.append(block)
            block = []
            token = token[2:]
        elif token.startswith("OR"):
            is_or = True
            token = token[2:]
        match = _TERM.fullmatch(token)
        term = Term(match.group(1), match.group(2), match.group(3)) if match else Term(token, "?", "")
        if is_or and block:
            block[-1].append(term)
        else:
            block.append([term])
    if block:
        query.blocks.append(block)
    return query


class Accessor:
    """Reads raw and display values of a row's fields, following dot-walked references."""

    def __init__(self, schema: Schema, store: Store) -> None:
        self.schema = schema
        self.store = store

    def resolve(self, table: str, path: str) -> tuple[str, FieldDef] | None:
        """(table owning the last field, its definition) for ``a.b.c``; None when any hop is unknown."""
        parts = path.split(".")
        current = table
        for index, name in enumerate(parts):
            fdef = self.schema.field(current, name)
            if fdef is None:
                return None
            if index == len(parts) - 1:
                return current, fdef
            if fdef.kind != "reference" or fdef.ref not in self.schema.tables:
                return None
            current = fdef.ref
        return None

    def target(self, table: str, row: Mapping[str, str], path: str) -> tuple[str, Mapping[str, str], str] | None:
        """Walk all but the last hop: (table, row, last field name), None when a reference is empty/broken."""
        parts = path.split(".")
        current, record = table, row
        for name in parts[:-1]:
            fdef = self.schema.field(current, name)
            if fdef is None or fdef.kind != "reference":
                return None
            ref_row = self.store.table(fdef.ref).get(record.get(name, ""))
            if ref_row is None:
                return None
            current, record = fdef.ref, ref_row
        return current, record, parts[-1]

    def raw(self, table: str, row: Mapping[str, str], path: str) -> str:
        hit = self.target(table, row, path)
        if hit is None:
            return ""
        current, record, name = hit
        fdef = self.schema.field(current, name)
        if fdef is not None and fdef.kind == "journal":
            return ""
        return record.get(name, "")

    def display(self, table: str, row: Mapping[str, str], path: str) -> str:
        hit = self.target(table, row, path)
        if hit is None:
            return ""
        current, record, name = hit
        fdef = self.schema.field(current, name)
        if fdef is None:
            return ""
        if fdef.kind == "journal":
            return self.journal_text(current, record.get("sys_id", ""), name, fdef.label)
        return self.display_of(fdef, record.get(name, ""))

    def display_of(self, fdef: FieldDef, raw: str) -> str:
        if fdef.kind == "choice":
            return fdef.choice_label(raw)
        if fdef.kind == "reference":
            return self.ref_display(fdef.ref, raw)
        return raw

    def ref_display(self, table: str, sys_id: str) -> str:
        tdef = self.schema.table(table)
        target = self.store.table(table).get(sys_id) if sys_id else None
        if tdef is None or target is None:
            return ""
        return target.get(tdef.display, "")

    def journal_entries(self, table: str, sys_id: str, element: str) -> list[Mapping[str, str]]:
        entries = [row for row in self.store.table(JOURNAL_TABLE).values()
                   if row.get("element_id") == sys_id and row.get("element") == element and row.get("name") == table]
        # Newest first; within one second the later insert first.
        ordered = sorted(enumerate(entries), key=lambda pair: (pair[1].get("sys_created_on", ""), pair[0]), reverse=True)
        return [row for _index, row in ordered]

    def journal_text(self, table: str, sys_id: str, element: str, label: str) -> str:
        """All entries newest first, each ``<date> - <user display name> (<label>)`` then the text."""
        chunks = []
        for entry in self.journal_entries(table, sys_id, element):
            author = entry.get("sys_created_by", "")
            user = next((u for u in self.store.table("sys_user").values() if u.get("user_name") == author), None)
            name = (user or {}).get("name") or author
            chunks.append(f"{entry.get('sys_created_on', '')} - {name} ({label})\n{entry.get('value', '')}\n\n")
        return "".join(chunks)


@dataclass
class Context:
    """Who asks and when (for the ``javascript:gs.*`` value helpers)."""

    user_name: str = ""
    user_id: str = ""
    now: float = 0.0


def expand_value(value: str, ctx: Context) -> str:
    """Replace ``javascript:gs.<helper>(...)`` by its value; other text stays as it is."""
    def repl(match: re.Match[str]) -> str:
        name, args = match.group(1), [a.strip().strip("'\"") for a in match.group(2).split(",") if a.strip()]
        if name == "dateGenerate" and args:
            return f"{args[0]} {args[1] if len(args) > 1 else '00:00:00'}"
        if name == "getUserName":
            return ctx.user_name
        if name == "getUserID":
            return ctx.user_id
        if name == "nowDateTime":
            return fmt_time(ctx.now)
        units = {"daysAgo": 86400, "hoursAgo": 3600, "minutesAgo": 60}
        if name in units:
            try:
                return fmt_time(ctx.now - float(args[0] if args else 0) * units[name])
            except ValueError:
                return match.group(0)
        return match.group(0)
    return _JS.sub(repl, value)


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _bool_norm(value: str) -> str:
    low = value.strip().lower()
    return {"1": "true", "0": "false", "yes": "true", "no": "false"}.get(low, low)


class Matcher:
    """Evaluates one table's query terms against rows."""

    def __init__(self, accessor: Accessor, table: str, ctx: Context) -> None:
        self.acc = accessor
        self.table = table
        self.ctx = ctx

    def known(self, term: Term) -> bool:
        return term.op != "?" and self.acc.resolve(self.table, term.field) is not None

    def term(self, term: Term, row: Mapping[str, str]) -> bool:
        resolved = self.acc.resolve(self.table, term.field)
        assert resolved is not None
        fdef = resolved[1]
        raw = self.acc.raw(self.table, row, term.field)
        op, value = term.op, expand_value(term.value, self.ctx)
        if op == "ANYTHING":
            return True
        if op == "ISEMPTY":
            return raw == ""
        if op == "ISNOTEMPTY":
            return raw != ""
        if op in ("=", "!="):
            return self._equals(fdef, raw, row, term.field, value) == (op == "=")
        if op in ("IN", "NOT IN"):
            hit = any(self._equals(fdef, raw, row, term.field, item) for item in value.split(","))
            return hit == (op == "IN")
        text = self._text(fdef, raw, row, term.field).lower()
        needle = value.lower()
        if op in ("LIKE", "NOT LIKE"):
            return (needle in text) == (op == "LIKE")
        if op == "STARTSWITH":
            return text.startswith(needle)
        if op == "ENDSWITH":
            return text.endswith(needle)
        if op == "BETWEEN":
            low, _sep, high = value.partition("@")
            return self._compare(fdef, raw, expand_value(low, self.ctx), ">=") and self._compare(fdef, raw, expand_value(high, self.ctx), "<=")
        return self._compare(fdef, raw, value, op)

    def _text(self, fdef: FieldDef, raw: str, row: Mapping[str, str], path: str) -> str:
        if fdef.kind == "reference":
            return self.acc.display(self.table, row, path)
        return raw

    def _equals(self, fdef: FieldDef, raw: str, row: Mapping[str, str], path: str, value: str) -> bool:
        if fdef.kind == "boolean":
            return _bool_norm(raw) == _bool_norm(value)
        if raw.lower() == value.lower():
            return True
        if fdef.kind == "reference" and raw and value:
            return self.acc.display(self.table, row, path).lower() == value.lower()
        if (fdef.numeric or fdef.kind == "integer") and raw and value:
            left, right = _number(raw), _number(value)
            return left is not None and left == right
        return False

    @staticmethod
    def _compare(fdef: FieldDef, raw: str, value: str, op: str) -> bool:
        if raw == "":
            return False
        left: float | str = raw.lower()
        right: float | str = value.lower()
        if fdef.numeric or fdef.kind == "integer":
            lnum, rnum = _number(raw), _number(value)
            if lnum is None or rnum is None:
                return False
            left, right = lnum, rnum
        checks: dict[str, Callable[[float | str, float | str], bool]] = {
            "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}  # type: ignore[operator]
        return checks[op](left, right)


def run_query(accessor: Accessor, table: str, rows: Iterable[dict[str, str]], query: Query, ctx: Context,
              invalid_returns_no_rows: bool = False) -> list[dict[str, str]]:
    """Filter and order ``rows``; terms naming unknown fields are dropped (or, when configured, match nothing)."""
    matcher = Matcher(accessor, table, ctx)
    blocks: list[list[list[Term]]] = []
    for block in query.blocks:
        groups = []
        for group in block:
            kept = [term for term in group if matcher.known(term)]
            if len(kept) != len(group) and invalid_returns_no_rows:
                return []
            if kept:
                groups.append(kept)
        blocks.append(groups)
    result = [row for row in rows
              if not blocks or any(all(any(matcher.term(t, row) for t in group) for group in block) for block in blocks)]
    for name, descending in reversed(query.order):
        resolved = accessor.resolve(table, name)
        if resolved is None:
            continue
        fdef = resolved[1]

        def key(row: dict[str, str], name: str = name, fdef: FieldDef = fdef) -> tuple[int, float, str]:
            raw = accessor.raw(table, row, name)
            if fdef.numeric or fdef.kind == "integer":
                num = _number(raw)
                return (0 if num is not None else 1, num if num is not None else 0.0, "")
            text = accessor.display(table, row, name) if fdef.kind == "reference" else raw
            return (0, 0.0, text.lower())
        result.sort(key=key, reverse=descending)
    return result
