"""Jira simulator: Atlassian Document Format (ADF) validation and conversions (contracts/jira.md §6).

:func:`validate` rejects what Jira Cloud rejects for the subset of the ADF schema a ticketing
client uses: the ``doc`` root (``type``, ``version`` 1, ``content``), the block nodes
``paragraph``, ``heading``, ``bulletList``, ``orderedList``, ``listItem``, ``codeBlock``, ``rule``,
``blockquote`` and ``panel``, the inline nodes ``text``, ``hardBreak``, ``mention``, ``emoji``,
``inlineCard``, and the marks ``strong``, ``em``, ``code``, ``link``, ``strike``, ``underline``,
``textColor``, ``subsup``.  Every node is a closed object (no unknown keys), as in the published
JSON schema.  :func:`to_text` and :func:`from_text` convert between ADF and the plain strings the
v2 API (Cloud) and Data Center speak.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BLOCKS = {"paragraph", "heading", "bulletList", "orderedList", "codeBlock", "rule", "blockquote", "panel"}
INLINES = {"text", "hardBreak", "mention", "emoji", "inlineCard"}
MARKS = {"strong", "em", "code", "link", "strike", "underline", "textColor", "subsup"}
PANEL_TYPES = {"info", "note", "warning", "success", "error"}
# What a listItem, blockquote and panel may contain.
LIST_ITEM_CHILDREN = {"paragraph", "bulletList", "orderedList", "codeBlock"}
QUOTE_CHILDREN = {"paragraph", "bulletList", "orderedList", "codeBlock"}
PANEL_CHILDREN = {"paragraph", "heading", "bulletList", "orderedList"}


class AdfError(ValueError):
    """The document is not valid ADF; the message names the JSON path of the first problem."""


def _fail(path: str, message: str) -> AdfError:
    return AdfError(f"{path}: {message}" if path else message)


def _keys(node: Mapping[str, Any], allowed: set[str], path: str) -> None:
    extra = sorted(set(node) - allowed)
    if extra:
        raise _fail(path, f"unexpected key(s) {', '.join(repr(k) for k in extra)} on node {node.get('type')!r}")


def _attrs(node: Mapping[str, Any], path: str, required: bool = False) -> dict[str, Any]:
    if "attrs" not in node:
        if required:
            raise _fail(path, f"node {node['type']!r} needs 'attrs'")
        return {}
    attrs = node["attrs"]
    if not isinstance(attrs, dict):
        raise _fail(f"{path}.attrs", "must be an object")
    return attrs


def _content(node: Mapping[str, Any], path: str, required: bool) -> list[Any]:
    if "content" not in node:
        if required:
            raise _fail(path, f"node {node['type']!r} needs a non-empty 'content' array")
        return []
    content = node["content"]
    if not isinstance(content, list):
        raise _fail(f"{path}.content", "must be an array")
    if required and not content:
        raise _fail(f"{path}.content", f"node {node['type']!r} needs at least one child")
    return content


def validate(doc: Any) -> None:
    """Raise :class:`AdfError` unless ``doc`` is a valid ADF document."""
    if not isinstance(doc, dict):
        raise AdfError("the document must be a JSON object")
    if doc.get("type") != "doc":
        raise _fail("", "the root node must have type 'doc'")
    if "version" not in doc:
        raise _fail("", "the root node needs 'version': 1")
    if doc["version"] != 1 or isinstance(doc["version"], bool):
        raise _fail("version", "must be 1")
    if "content" not in doc:
        raise _fail("", "the root node needs a 'content' array")
    _keys(doc, {"type", "version", "content"}, "")
    content = doc["content"]
    if not isinstance(content, list):
        raise _fail("content", "must be an array")
    for index, child in enumerate(content):
        _block(child, f"content[{index}]", BLOCKS)


def _node(node: Any, path: str) -> dict[str, Any]:
    if not isinstance(node, dict):
        raise _fail(path, "a node must be an object")
    kind = node.get("type")
    if not isinstance(kind, str) or not kind:
        raise _fail(path, "a node needs a 'type'")
    return node


def _block(node: Any, path: str, allowed: set[str]) -> None:
    node = _node(node, path)
    kind = node["type"]
    if kind not in BLOCKS and kind != "listItem":
        raise _fail(path, f"unknown or misplaced node type {kind!r}")
    if kind not in allowed:
        raise _fail(path, f"node {kind!r} is not allowed here")
    if kind == "paragraph":
        _keys(node, {"type", "content", "attrs", "marks"}, path)
        _inlines(_content(node, path, False), path)
    elif kind == "heading":
        _keys(node, {"type", "content", "attrs", "marks"}, path)
        level = _attrs(node, path, True).get("level")
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 6:
            raise _fail(f"{path}.attrs.level", "must be an integer 1-6")
        _inlines(_content(node, path, False), path)
    elif kind in ("bulletList", "orderedList"):
        _keys(node, {"type", "content", "attrs"}, path)
        if kind == "orderedList":
            order = _attrs(node, path).get("order", 1)
            if isinstance(order, bool) or not isinstance(order, int) or order < 0:
                raise _fail(f"{path}.attrs.order", "must be a non-negative integer")
        elif "attrs" in node:
            raise _fail(path, "bulletList takes no 'attrs'")
        for index, child in enumerate(_content(node, path, True)):
            _block(child, f"{path}.content[{index}]", {"listItem"})
    elif kind == "listItem":
        _keys(node, {"type", "content", "attrs"}, path)
        children = _content(node, path, True)
        first = children[0].get("type") if isinstance(children[0], dict) else None
        if first not in ("paragraph", "codeBlock"):
            raise _fail(f"{path}.content[0]", "a listItem must start with a paragraph or a codeBlock")
        for index, child in enumerate(children):
            _block(child, f"{path}.content[{index}]", LIST_ITEM_CHILDREN)
    elif kind == "codeBlock":
        _keys(node, {"type", "content", "attrs", "marks"}, path)
        attrs = _attrs(node, path)
        if "language" in attrs and attrs["language"] is not None and not isinstance(attrs["language"], str):
            raise _fail(f"{path}.attrs.language", "must be a string")
        for index, child in enumerate(_content(node, path, False)):
            child_path = f"{path}.content[{index}]"
            child = _node(child, child_path)
            if child["type"] != "text":
                raise _fail(child_path, "a codeBlock holds text nodes only")
            if child.get("marks"):
                raise _fail(child_path, "text in a codeBlock cannot have marks")
            _text(child, child_path)
    elif kind == "rule":
        _keys(node, {"type"}, path)
    elif kind == "blockquote":
        _keys(node, {"type", "content", "attrs"}, path)
        for index, child in enumerate(_content(node, path, True)):
            _block(child, f"{path}.content[{index}]", QUOTE_CHILDREN)
    elif kind == "panel":
        _keys(node, {"type", "content", "attrs"}, path)
        if _attrs(node, path, True).get("panelType") not in PANEL_TYPES:
            raise _fail(f"{path}.attrs.panelType", f"must be one of {', '.join(sorted(PANEL_TYPES))}")
        for index, child in enumerate(_content(node, path, True)):
            _block(child, f"{path}.content[{index}]", PANEL_CHILDREN)


def _inlines(children: list[Any], path: str) -> None:
    for index, child in enumerate(children):
        child_path = f"{path}.content[{index}]"
        child = _node(child, child_path)
        kind = child["type"]
        if kind not in INLINES:
            raise _fail(child_path, f"node {kind!r} is not an inline node")
        if kind == "text":
            _text(child, child_path)
        elif kind == "hardBreak":
            _keys(child, {"type", "attrs"}, child_path)
            text = _attrs(child, child_path).get("text", "\n")
            if text != "\n":
                raise _fail(f"{child_path}.attrs.text", "must be '\\n'")
        elif kind == "mention":
            _keys(child, {"type", "attrs"}, child_path)
            if not isinstance(_attrs(child, child_path, True).get("id"), str):
                raise _fail(f"{child_path}.attrs.id", "a mention needs a string id")
        elif kind == "emoji":
            _keys(child, {"type", "attrs"}, child_path)
            if not isinstance(_attrs(child, child_path, True).get("shortName"), str):
                raise _fail(f"{child_path}.attrs.shortName", "an emoji needs a string shortName")
        elif kind == "inlineCard":
            _keys(child, {"type", "attrs"}, child_path)
            attrs = _attrs(child, child_path, True)
            if not isinstance(attrs.get("url"), str) and not isinstance(attrs.get("data"), dict):
                raise _fail(f"{child_path}.attrs", "an inlineCard needs 'url' or 'data'")


def _text(node: dict[str, Any], path: str) -> None:
    _keys(node, {"type", "text", "marks"}, path)
    text = node.get("text")
    if not isinstance(text, str) or not text:
        raise _fail(path, "a text node needs a non-empty 'text' string")
    if "marks" not in node:
        return
    marks = node["marks"]
    if not isinstance(marks, list):
        raise _fail(f"{path}.marks", "must be an array")
    seen: set[str] = set()
    for index, mark in enumerate(marks):
        mark_path = f"{path}.marks[{index}]"
        if not isinstance(mark, dict) or mark.get("type") not in MARKS:
            raise _fail(mark_path, f"unknown mark {mark.get('type') if isinstance(mark, dict) else mark!r}")
        _keys(mark, {"type", "attrs"}, mark_path)
        kind = mark["type"]
        if kind in seen:
            raise _fail(mark_path, f"duplicate mark {kind!r}")
        seen.add(kind)
        attrs = mark.get("attrs", {})
        if not isinstance(attrs, dict):
            raise _fail(f"{mark_path}.attrs", "must be an object")
        if kind == "link" and (not isinstance(attrs.get("href"), str) or not attrs["href"]):
            raise _fail(f"{mark_path}.attrs.href", "a link mark needs a non-empty 'href'")
        if kind == "textColor" and not isinstance(attrs.get("color"), str):
            raise _fail(f"{mark_path}.attrs.color", "a textColor mark needs a 'color'")
        if kind == "subsup" and attrs.get("type") not in ("sub", "sup"):
            raise _fail(f"{mark_path}.attrs.type", "must be 'sub' or 'sup'")
    if "code" in seen and seen - {"code", "link"}:
        raise _fail(f"{path}.marks", "the code mark combines only with link")


# --------------------------------------------------------------------------- conversions


def to_text(doc: Any) -> str:
    """Plain text of an ADF document: blocks separated by a blank line, list items as ``* `` lines."""
    if not isinstance(doc, dict):
        return "" if doc is None else str(doc)
    return "\n\n".join(part for part in (_block_text(child, "") for child in doc.get("content") or []) if part)


def _block_text(node: Any, indent: str) -> str:
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    children = node.get("content") or []
    if kind in ("paragraph", "heading"):
        return _inline_text(children)
    if kind == "codeBlock":
        return "".join(child.get("text", "") for child in children if isinstance(child, dict))
    if kind == "rule":
        return "----"
    if kind in ("bulletList", "orderedList"):
        lines = []
        for number, item in enumerate(children, 1):
            bullet = f"{number}. " if kind == "orderedList" else "* "
            inner = [_block_text(child, indent + "  ") for child in (item.get("content") or []) if isinstance(item, dict)]
            text = "\n".join(part for part in inner if part)
            lines.append(indent + bullet + text)
        return "\n".join(lines)
    if kind in ("blockquote", "panel", "listItem"):
        return "\n".join(part for part in (_block_text(child, indent) for child in children) if part)
    return ""


def _inline_text(children: list[Any]) -> str:
    parts = []
    for child in children:
        if not isinstance(child, dict):
            continue
        kind = child.get("type")
        if kind == "text":
            parts.append(str(child.get("text", "")))
        elif kind == "hardBreak":
            parts.append("\n")
        elif kind == "mention":
            parts.append(str((child.get("attrs") or {}).get("text") or "@" + str((child.get("attrs") or {}).get("id", ""))))
        elif kind == "emoji":
            parts.append(str((child.get("attrs") or {}).get("shortName", "")))
        elif kind == "inlineCard":
            parts.append(str((child.get("attrs") or {}).get("url", "")))
    return "".join(parts)


def from_text(text: str) -> dict[str, Any]:
    """A minimal ADF document for a plain string: blank lines split paragraphs, single newlines become hardBreaks."""
    content: list[dict[str, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        inline: list[dict[str, Any]] = []
        for number, line in enumerate(block.split("\n")):
            if number:
                inline.append({"type": "hardBreak"})
            if line:
                inline.append({"type": "text", "text": line})
        content.append({"type": "paragraph", "content": inline})
    return {"type": "doc", "version": 1, "content": content}


def is_blank(doc: Any) -> bool:
    """True when the document shows nothing (no content, empty paragraphs, whitespace-only text)."""
    return not to_text(doc).strip()
