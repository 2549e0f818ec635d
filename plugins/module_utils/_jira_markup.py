# -*- coding: utf-8 -*-
# Copyright: (c) 2026, labops.itsm contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Jira rich text: one Markdown-ish input, two flavours (Cloud v3 ADF, Data Center v2 wiki markup), and back.

The input language (what templates, alert texts and module users write):

* blocks: paragraphs separated by blank lines (a single newline is a line break: ADF ``hardBreak``, a wiki newline),
  ``# `` .. ``###### `` headings, ``- ``/``* ``/``+ `` bullet lists, ``1. `` ordered lists (a list starts at 1; a
  line such as ``2. foo`` on its own stays text), fenced code blocks (three or more backticks or tildes, optional
  language; an unterminated fence runs to the end; an empty one renders nothing), ``---``/``***``/``___`` rules.
  List items continue on indented lines (a line break inside the item); an indented (nested) list marker is such a
  line too, its marker kept as text: ADF and wiki get flat lists, nothing is lost.
* inline: ``**strong**``/``__strong__``, ``*em*``/``_em_`` (not inside words: ``snake_case`` and globs such as
  ``/var/log/*.log`` stay text), ``***both***``, ```code```, ``[text](url)`` (http, https, ftp, mailto), bare
  ``http(s)://`` URLs and ``<url>`` (never emphasis inside a URL), backslash escapes of ASCII punctuation.
  Inline markup does not span lines.

Everything else is text, and text stays text: on v3 it is plain ADF text nodes, on v2 the wiki special characters
(``{ } [ ] | * _ ^ ~`` always, ``- +`` unless inside a word, ``!`` before a non-space, ``??``, emoticons such as
``:)``/``(x)``, ``#``/``h1.``/``bq.`` at a line start, a backslash as ``&#92;``, ``&`` of an entity as ``&amp;``) are
escaped so that no alert text turns into wiki markup, a macro, an image or an emoticon. Bare URLs become ``[url]``
links on v2 (their ``_`` and ``*`` untouched). Terminal colour sequences and control characters are dropped.

Both flavours are rendered from one parse, and :func:`same_text` compares any two of ADF, wiki markup and the
Markdown-ish input as normalised plain text (whitespace runs collapsed, blank lines dropped), which is what the
modules use to decide that a comment or description is already there.

Pure functions, no I/O, Python 3.8 syntax (module_utils run on the managed node).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import re
import unicodedata
from typing import Any, Dict, List, Optional, Tuple

SUMMARY_MAX = 255
DESCRIPTION_MAX = 32767
LABEL_MAX = 255
ELLIPSIS = "\u2026"
TRUNCATED_NOTICE = "[truncated {0} chars]"

# ---------------------------------------------------------------------------------------------------------------------
# Intermediate representation: blocks of inline segments, rendered to ADF, wiki markup and plain text.
#   ("paragraph", [inline]) ("heading", level, [inline]) ("bullet", [[inline]]) ("ordered", [[inline]])
#   ("code", language or None, text) ("rule",)
#   inline: ("text", text, marks (tuple, subset of MARK_ORDER), href or None) or ("br",)
# ---------------------------------------------------------------------------------------------------------------------
MARK_ORDER = ("strong", "em", "code")
_ASCII_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$")
_HEADING_RE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_RULE_RE = re.compile(r"^ {0,3}(?:(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_BULLET_RE = re.compile(r"^[ \t]*[-*+][ \t]+(\S.*)$")
_ORDERED_RE = re.compile(r"^[ \t]*(\d{1,9})[.)][ \t]+(\S.*)$")
_URL_RE = re.compile(r"https?://[^\s<>\"'`\[\]{}|\\^]+", re.IGNORECASE)
_HREF_SCHEME_RE = re.compile(r"^(?:https?://|ftp://|mailto:)\S", re.IGNORECASE)
_LANG_RE = re.compile(r"^[A-Za-z0-9_+#.-]{1,32}$")
_URL_TRAILING = ".,;:!?*_~'\""
_EM_START = "*_`[(\"'<"
_MAX_LINK_TARGET = 8192


def _is_space(char: str) -> bool:
    return char == "" or char.isspace()


def _url_at(text: str, pos: int) -> Optional[str]:
    """The bare http(s) URL starting at ``pos`` (not inside a word), trailing punctuation left out, or None."""
    if pos > 0 and (text[pos - 1].isalnum() or text[pos - 1] in "/@"):
        return None
    match = _URL_RE.match(text, pos)
    if not match:
        return None
    url = match.group(0)
    while url:
        if url[-1] in _URL_TRAILING or url[-1] == ")" and url.count(")") > url.count("("):
            url = url[:-1]
        else:
            break
    return url if url.split("//", 1)[1] else None


def _safe_href(url: str) -> str:
    return url.replace(" ", "%20").replace("|", "%7C").replace("[", "%5B").replace("]", "%5D").replace("\\", "%5C")


def _code_span_end(text: str, pos: int, unclosed: Optional[Dict[int, int]] = None) -> Tuple[int, Optional[int]]:
    """For a backtick run at ``pos``: (run length, index of the matching closing run or None).

    ``unclosed`` (run length -> position) remembers runs that found no closer: none after them either."""
    run = 1
    while pos + run < len(text) and text[pos + run] == "`":
        run += 1
    if unclosed is not None and unclosed.get(run, len(text) + 1) <= pos:
        return run, None
    found_at = _code_span_close(text, pos, run)
    if found_at is None and unclosed is not None:
        unclosed[run] = pos
    return run, found_at


def _code_span_close(text: str, pos: int, run: int) -> Optional[int]:
    search = pos + run
    while True:
        found = text.find("`" * run, search)
        if found < 0:
            return None
        end = found + run
        if (end < len(text) and text[end] == "`") or text[found - 1] == "`":
            # a longer run is not a closer: skip the whole run
            while end < len(text) and text[end] == "`":
                end += 1
            search = end
            continue
        return found


def _link_at(text: str, pos: int) -> Optional[Tuple[str, str, int]]:
    """``[text](url)`` at ``pos``: (link text, href, end index) when the URL has an allowed scheme, else None.

    The link text holds no brackets and the target no whitespace or brackets (Markdown-ish, and linear: a line full
    of ``[`` costs one short scan per bracket)."""
    idx = pos + 1
    close = -1
    while idx < len(text):
        char = text[idx]
        if char == "\\":
            idx += 2
            continue
        if char == "[":
            return None
        if char == "]":
            close = idx
            break
        idx += 1
    if close < 0 or close + 1 >= len(text) or text[close + 1] != "(":
        return None
    depth = 0
    idx = close + 1
    end = -1
    limit = min(len(text), close + 1 + _MAX_LINK_TARGET)
    while idx < limit:
        char = text[idx]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                end = idx
                break
        elif char.isspace() or char in "[]<>":
            return None
        idx += 1
    if end < 0:
        return None
    target = text[close + 2:end]
    if not _HREF_SCHEME_RE.match(target):
        return None
    return text[pos + 1:close], _safe_href(target), end + 1


class _Inline:
    """Inline Markdown-ish of one line -> a list of segments (see the IR above)."""

    def __init__(self) -> None:
        self.out = []  # type: List[tuple]

    def emit(self, text: str, marks: frozenset, href: Optional[str]) -> None:
        if not text:
            return
        ordered = tuple(mark for mark in MARK_ORDER if mark in marks)
        if self.out and self.out[-1][0] == "text" and self.out[-1][2] == ordered and self.out[-1][3] == href:
            self.out[-1] = ("text", self.out[-1][1] + text, ordered, href)
        else:
            self.out.append(("text", text, ordered, href))

    def parse(self, text: str, marks: frozenset = frozenset(), href: Optional[str] = None) -> None:
        buf: List[str] = []
        failed: Dict[Tuple[str, int], int] = {}
        unclosed: Dict[int, int] = {}
        idx = 0
        size = len(text)

        def flush() -> None:
            if buf:
                self.emit("".join(buf), marks, href)
                del buf[:]

        while idx < size:
            char = text[idx]
            if char == "\\" and idx + 1 < size and text[idx + 1] in _ASCII_PUNCT:
                buf.append(text[idx + 1])
                idx += 2
                continue
            if char == "`":
                run, close = _code_span_end(text, idx, unclosed)
                if close is None:
                    buf.append("`" * run)
                    idx += run
                    continue
                content = text[idx + run:close]
                if len(content) > 2 and content[0] == " " and content[-1] == " " and content.strip():
                    content = content[1:-1]
                flush()
                self.emit(content, marks | {"code"}, href)
                idx = close + run
                continue
            if href is None and char == "[":
                link = _link_at(text, idx)
                if link is not None:
                    flush()
                    label, target, end = link
                    if label.strip():
                        self.parse(label, marks, target)
                    else:
                        self.emit(target, marks, target)
                    idx = end
                    continue
            if href is None and char == "<":
                end = text.find(">", idx)
                if end > idx:
                    inner = text[idx + 1:end]
                    if _HREF_SCHEME_RE.match(inner) and not any(c.isspace() for c in inner):
                        flush()
                        self.emit(inner, marks, _safe_href(inner))
                        idx = end + 1
                        continue
            if href is None and char in "hH":
                url = _url_at(text, idx)
                if url:
                    flush()
                    self.emit(url, marks, _safe_href(url))
                    idx += len(url)
                    continue
            if char in "*_":
                run = 1
                while idx + run < size and text[idx + run] == char:
                    run += 1
                close = None
                if run <= 3 and self._opens(text, idx, run) and failed.get((char, run), size + 1) > idx:
                    close = self._closer(text, idx + run, char, run, unclosed)
                    if close is None:
                        failed[(char, run)] = idx
                if close is None:
                    buf.append(char * run)
                    idx += run
                    continue
                flush()
                added = {1: ("em",), 2: ("strong",), 3: ("strong", "em")}[run]
                self.parse(text[idx + run:close], marks | frozenset(added), href)
                idx = close + run
                continue
            buf.append(char)
            idx += 1
        flush()

    @staticmethod
    def _opens(text: str, idx: int, run: int) -> bool:
        before = text[idx - 1] if idx > 0 else " "
        after = text[idx + run] if idx + run < len(text) else ""
        if _is_space(after) or before.isalnum():
            return False
        return after.isalnum() or after in _EM_START or ord(after) > 127

    @staticmethod
    def _closer(text: str, start: int, char: str, run: int, unclosed: Dict[int, int]) -> Optional[int]:
        idx = start
        size = len(text)
        while idx < size:
            cur = text[idx]
            if cur == "\\":
                idx += 2
                continue
            if cur == "`":
                length, close = _code_span_end(text, idx, unclosed)
                idx = close + length if close is not None else idx + length
                continue
            if cur == "[":
                link = _link_at(text, idx)
                if link is not None:
                    idx = link[2]
                    continue
            if cur in "hH":
                url = _url_at(text, idx)
                if url:
                    idx += len(url)
                    continue
            if cur == char:
                length = 1
                while idx + length < size and text[idx + length] == char:
                    length += 1
                after = text[idx + length] if idx + length < size else ""
                if length == run and idx > start and not text[idx - 1].isspace() and not after.isalnum():
                    return idx
                idx += length
                continue
            idx += 1
        return None


def _inline(line: str) -> List[tuple]:
    parser = _Inline()
    parser.parse(line)
    return parser.out


def _lines_inline(lines: List[str]) -> List[tuple]:
    """Several lines joined by hard breaks."""
    out: List[tuple] = []
    for line in lines:
        segments = _inline(line)
        if not segments:
            continue
        if out:
            out.append(("br",))
        out.extend(segments)
    return out


def _list_item(line: str) -> Optional[Tuple[str, str, Optional[int]]]:
    if _RULE_RE.match(line):
        return None
    match = _BULLET_RE.match(line)
    if match:
        return "bullet", match.group(1), None
    match = _ORDERED_RE.match(line)
    if match:
        return "ordered", match.group(2), int(match.group(1))
    return None


def _fence(line: str) -> Optional[Tuple[str, Optional[str]]]:
    match = _FENCE_RE.match(line)
    if not match:
        return None
    lang = match.group(2).lower()
    return match.group(1), (lang if _LANG_RE.match(lang) else None)


_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    """Line breaks as ``\\n``; terminal colour sequences, control characters (but tab and newline) and lone
    surrogates (undecodable bytes) out: Jira stores neither, and some databases refuse NUL."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL_RE.sub("", _ANSI_RE.sub("", text))
    return _SURROGATE_RE.sub("\ufffd", text)


def _parse(text: Any) -> List[tuple]:
    """Markdown-ish text -> blocks (the IR)."""
    if text is None:
        return []
    lines = _clean(str(text)).split("\n")
    blocks: List[tuple] = []
    para: List[str] = []

    def flush() -> None:
        if para:
            segments = _lines_inline(para)
            if segments:
                blocks.append(("paragraph", segments))
            del para[:]

    idx = 0
    while idx < len(lines):
        line = lines[idx].rstrip()
        if not line.strip():
            flush()
            idx += 1
            continue
        fence = _fence(line)
        if fence is not None:
            flush()
            marker, lang = fence
            body = []
            idx += 1
            while idx < len(lines):
                closing = lines[idx].strip()
                if closing and closing[0] == marker[0] and len(closing) >= len(marker) and closing == closing[0] * len(closing) \
                        and len(lines[idx]) - len(lines[idx].lstrip(" ")) <= 3:
                    idx += 1
                    break
                body.append(lines[idx].rstrip())
                idx += 1
            while body and not body[-1].strip():
                body.pop()
            while body and not body[0].strip():
                body.pop(0)
            if body:
                blocks.append(("code", lang, "\n".join(body)))
            continue
        heading = _HEADING_RE.match(line)
        if heading and heading.group(2).strip():
            segments = _inline(heading.group(2).strip())
            if segments:
                flush()
                blocks.append(("heading", len(heading.group(1)), segments))
                idx += 1
                continue
        if _RULE_RE.match(line):
            flush()
            blocks.append(("rule",))
            idx += 1
            continue
        item = _list_item(line)
        if item is not None and (item[0] == "bullet" or item[2] == 1):
            flush()
            idx = _parse_list(lines, idx, item[0], blocks)
            continue
        para.append(line if para else line.lstrip())  # continuation lines keep their indentation (aligned text)
        idx += 1
    flush()
    return blocks


def _parse_list(lines: List[str], idx: int, kind: str, blocks: List[tuple]) -> int:
    items: List[List[str]] = []
    while idx < len(lines):
        line = lines[idx].rstrip()
        if not line.strip():
            ahead = idx + 1
            while ahead < len(lines) and not lines[ahead].strip():
                ahead += 1
            nxt = _list_item(lines[ahead].rstrip()) if ahead < len(lines) else None
            if nxt is not None and nxt[0] == kind:
                idx = ahead
                continue
            break
        item = _list_item(line)
        if item is not None and not (items and line[0].isspace()):
            if item[0] != kind:
                break
            items.append([item[1]])
            idx += 1
            continue
        if item is not None:  # an indented (nested) item: a line of the item above, its marker kept as text
            items[-1].append(line.strip())
            idx += 1
            continue
        if not items or _fence(line) is not None or _RULE_RE.match(line) or _HEADING_RE.match(line) or not line[0].isspace():
            break
        items[-1].append(line.strip())
        idx += 1
    rendered = [_lines_inline(item) for item in items]
    rendered = [segments for segments in rendered if segments]
    if rendered:
        blocks.append((kind, rendered))
    return idx


# ---------------------------------------------------------------------------------------------------------------------
# ADF
# ---------------------------------------------------------------------------------------------------------------------
def _adf_inline(segments: List[tuple]) -> List[dict]:
    nodes: List[dict] = []
    for seg in segments:
        if seg[0] == "br":
            nodes.append({"type": "hardBreak"})
            continue
        text, marks, href = seg[1], seg[2], seg[3]
        if not text:
            continue
        if "code" in marks:
            marks = ("code",)  # ADF: the code mark combines with link only
        mark_list: List[dict] = [{"type": mark} for mark in marks]
        if href:
            mark_list.append({"type": "link", "attrs": {"href": href}})
        node: Dict[str, Any] = {"type": "text", "text": text}
        if mark_list:
            node["marks"] = mark_list
        if nodes and nodes[-1]["type"] == "text" and nodes[-1].get("marks") == node.get("marks"):
            nodes[-1]["text"] += text
        else:
            nodes.append(node)
    while nodes and nodes[-1]["type"] == "hardBreak":
        nodes.pop()
    while nodes and nodes[0]["type"] == "hardBreak":
        nodes.pop(0)
    return nodes


def _adf_blocks(blocks: List[tuple]) -> List[dict]:
    content: List[dict] = []
    for block in blocks:
        kind = block[0]
        if kind == "paragraph":
            inline = _adf_inline(block[1])
            if inline:
                content.append({"type": "paragraph", "content": inline})
        elif kind == "heading":
            inline = _adf_inline(block[2])
            if inline:
                content.append({"type": "heading", "attrs": {"level": block[1]}, "content": inline})
        elif kind in ("bullet", "ordered"):
            items = []
            for segments in block[1]:
                inline = _adf_inline(segments)
                if inline:
                    items.append({"type": "listItem", "content": [{"type": "paragraph", "content": inline}]})
            if items:
                content.append({"type": "bulletList" if kind == "bullet" else "orderedList", "content": items})
        elif kind == "code":
            node: Dict[str, Any] = {"type": "codeBlock", "content": [{"type": "text", "text": block[2]}]}
            if block[1]:
                node["attrs"] = {"language": block[1]}
            content.append(node)
        elif kind == "rule":
            content.append({"type": "rule"})
    return content


def to_adf(text: str) -> dict:
    """Markdown-ish text -> an Atlassian Document (``{"type": "doc", "version": 1, "content": [...]}``).

    Raises ValueError when there is nothing to render (empty or whitespace-only text): ADF has no empty document
    Jira would take, the caller leaves the field out instead.
    """
    content = _adf_blocks(_parse(text))
    if not content:
        raise ValueError("nothing to render as an Atlassian Document: the text is empty")
    return {"type": "doc", "version": 1, "content": content}


# ---------------------------------------------------------------------------------------------------------------------
# Wiki markup
# ---------------------------------------------------------------------------------------------------------------------
_WIKI_ALWAYS = "{}[]|*_^~"
_WIKI_CONTEXT = "-+"
_ENTITY_RE = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|amp|lt|gt|quot|apos|nbsp);")
_EMOTICON_RE = re.compile(r"[:;]-?[()PDpd](?!\w)|\((?:[yni/x!+?*-]|on|off|\*[rgby])\)")
_WIKI_LINE_START_RE = re.compile(r"^(\s*)(h[1-6]|bq)\.(?=\s|$)", re.IGNORECASE)
_WIKI_CODE_LANGS = {"sh": "bash", "shell": "bash", "console": "bash", "zsh": "bash", "yml": "yaml", "py": "python",
                    "js": "javascript", "ts": "javascript", "jsonc": "json", "ps1": "powershell", "rb": "ruby",
                    "cs": "c#", "csharp": "c#", "kt": "kotlin", "golang": "go"}
# the languages of Jira Data Center's {code} macro; any other language is shown as {noformat}
_WIKI_LANGS = frozenset(("actionscript", "ada", "applescript", "bash", "c", "c#", "c++", "cpp", "css", "erlang", "go",
                         "groovy", "haskell", "html", "java", "javascript", "js", "json", "lua", "nyan", "objc", "perl",
                         "php", "python", "r", "rainbow", "ruby", "scala", "sh", "sql", "swift", "visualbasic", "xml",
                         "yaml", "powershell", "kotlin", "diff", "docker", "dockerfile", "typescript"))
_WIKI_NOFORMAT_LANGS = ("text", "plain", "plaintext", "txt", "none", "noformat", "log")


def _wiki_escape(text: str) -> str:
    """Plain text -> wiki text that renders as exactly that text."""
    out = []
    size = len(text)
    emoticon_at = set()
    for match in _EMOTICON_RE.finditer(text):
        # escape one punctuation character of it so that no emoticon forms: "(" of "(x)", ")" of ":)", ":" of ":P"
        found = match.group(0)
        if found[0] == "(":
            emoticon_at.add(match.start())
        elif found[-1] in "()":
            emoticon_at.add(match.end() - 1)
        else:
            emoticon_at.add(match.start())
    for idx, char in enumerate(text):
        before = text[idx - 1] if idx > 0 else ""
        after = text[idx + 1] if idx + 1 < size else ""
        if char == "\\":
            out.append("&#92;")
        elif char == "&" and _ENTITY_RE.match(text, idx):
            out.append("&amp;")
        elif char in _WIKI_ALWAYS or char in _WIKI_CONTEXT and not (before.isalnum() and after.isalnum()):
            out.append("\\" + char)
        elif char == "!" and not _is_space(after):
            out.append("\\!")
        elif char == "?" and (after == "?" or before == "?"):
            out.append("\\?")
        elif idx in emoticon_at:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def _wiki_line_start(line: str) -> str:
    """Escape what Jira reads as block markup at the start of a line (lists, headings, quotes)."""
    stripped = line.lstrip()
    lead = line[:len(line) - len(stripped)]
    if stripped.startswith("#"):
        return lead + "\\" + stripped
    match = _WIKI_LINE_START_RE.match(line)
    if match:
        return match.group(1) + match.group(2) + "\\." + line[match.end():]
    return line


def _wiki_inline(segments: List[tuple]) -> str:
    """Segments -> wiki text; marks nest (``*a _b_*``), links group their segments, breaks become ``\\\\``."""
    pieces: List[str] = []
    stack: List[str] = []
    opener = {"strong": "*", "em": "_"}

    def close_to(keep: int) -> None:
        trailing = ""
        while pieces and pieces[-1] and pieces[-1][-1:].isspace() and len(stack) > keep:
            stripped = pieces[-1].rstrip()
            trailing = pieces[-1][len(stripped):] + trailing
            pieces[-1] = stripped
        while len(stack) > keep:
            pieces.append(opener[stack.pop()])
        if trailing:
            pieces.append(trailing)

    idx = 0
    while idx < len(segments):
        seg = segments[idx]
        if seg[0] == "br":
            close_to(0)
            pieces.append("\\\\")
            idx += 1
            continue
        href = seg[3]
        group = [seg]
        if href:
            while idx + len(group) < len(segments) and segments[idx + len(group)][0] == "text" \
                    and segments[idx + len(group)][3] == href:
                group.append(segments[idx + len(group)])
        wanted_set = {mark for mark in ("strong", "em") if all(mark in item[2] for item in group)}
        keep = 0
        while keep < len(stack) and stack[keep] in wanted_set:
            keep += 1
        # marks still open stay open (outermost first), the others open inside them
        wanted = stack[:keep] + [mark for mark in ("strong", "em") if mark in wanted_set and mark not in stack[:keep]]
        close_to(keep)
        if href:
            label = _wiki_label(group, stack + [mark for mark in wanted if mark not in stack])
            body = _wiki_open(stack, wanted)
            if "".join(item[1] for item in group) == href:
                pieces.append(body + "[" + href + "]")
            else:
                pieces.append(body + "[" + label + "|" + href + "]")
            idx += len(group)
            continue
        text = seg[1]
        lead = text[:len(text) - len(text.lstrip())]
        if lead and len(wanted) > len(stack):
            pieces.append(lead)
            text = text[len(lead):]
        body = _wiki_open(stack, wanted)
        pieces.append(body + _wiki_segment(text, tuple(m for m in seg[2] if m == "code")))
        idx += 1
    close_to(0)
    return "".join(pieces)


def _wiki_label(group: List[tuple], open_marks: List[str]) -> str:
    """The wiki text of a link's label: its segments with the marks not already open around the link; inside a word
    (``[a**b**](url)``) with Jira's brace form ``{*}b{*}``."""
    out = []
    for pos, item in enumerate(group):
        marks = tuple(mark for mark in item[2] if mark not in open_marks)
        before = group[pos - 1][1][-1:] if pos else ""
        after = group[pos + 1][1][:1] if pos + 1 < len(group) else ""
        body = _wiki_segment(item[1], marks)
        if (before.isalnum() or after.isalnum()) and ("strong" in marks or "em" in marks):
            body = _wiki_segment(item[1], tuple(mark for mark in marks if mark == "code"))
            for mark, char in (("em", "_"), ("strong", "*")):
                if mark in marks:
                    body = "{" + char + "}" + body + "{" + char + "}"
        out.append(body)
    return "".join(out)


def _wiki_open(stack: List[str], wanted: List[str]) -> str:
    """Open the marks of ``wanted`` beyond the ``stack`` (pushed onto it); the opening characters."""
    opener = {"strong": "*", "em": "_"}
    out = ""
    for mark in wanted[len(stack):]:
        stack.append(mark)
        out += opener[mark]
    return out


def _wiki_segment(text: str, marks: tuple) -> str:
    body = _wiki_escape(text)
    if "code" in marks:
        body = "{{" + body + "}}"
    if "em" in marks:
        body = "_" + body + "_"
    if "strong" in marks:
        body = "*" + body + "*"
    return body


def _wiki_blocks(blocks: List[tuple]) -> List[str]:
    out = []
    for block in blocks:
        kind = block[0]
        if kind == "paragraph":
            lines = _wiki_inline(block[1]).split("\\\\")
            out.append("\n".join(_wiki_line_start(line) for line in lines))
        elif kind == "heading":
            out.append(f"h{block[1]}. {_wiki_inline(block[2])}")
        elif kind in ("bullet", "ordered"):
            marker = "*" if kind == "bullet" else "#"
            out.append("\n".join(marker + " " + _wiki_inline(item) for item in block[1]))
        elif kind == "code":
            out.append(_wiki_code(block[1], block[2]))
        elif kind == "rule":
            out.append("----")
    return out


def _wiki_code(lang: Optional[str], text: str) -> str:
    lang = _WIKI_CODE_LANGS.get(lang or "", lang)
    if lang and lang in _WIKI_LANGS and "{code" not in text:
        return "{code:" + lang + "}\n" + text + "\n{code}"
    if "{noformat" not in text:
        return "{noformat}\n" + text + "\n{noformat}"
    if "{code" not in text:
        return "{code}\n" + text + "\n{code}"
    # the code quotes both macros: escaped text, line by line, keeps it readable and inert
    return "\n".join(_wiki_line_start(_wiki_escape(line)) for line in text.split("\n"))


def to_wiki(text: str) -> str:
    """Markdown-ish text -> Jira wiki markup (Data Center / v2 strings). Empty or blank text -> ``""``."""
    return "\n\n".join(_wiki_blocks(_parse(text)))


def rich_text(text: str, api: int) -> Any:
    """The rich-text value of a description/comment/textarea field: ADF for API 3, wiki markup otherwise."""
    return to_adf(text) if int(api) == 3 else to_wiki(text)


# ---------------------------------------------------------------------------------------------------------------------
# Plain text
# ---------------------------------------------------------------------------------------------------------------------
def _adf_inline_text(nodes: Any) -> str:
    out: List[str] = []
    group_text: List[str] = []
    group_href: List[Optional[str]] = [None]

    def flush() -> None:
        if group_href[0] is not None:
            label = "".join(group_text)
            href = group_href[0] or ""
            if label and label != href and href:
                out.append(label + " (" + href + ")")
            else:
                out.append(label or href)
        del group_text[:]
        group_href[0] = None

    for node in nodes if isinstance(nodes, list) else []:
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        href = None
        for mark in node.get("marks") or []:
            if isinstance(mark, dict) and mark.get("type") == "link":
                href = str((mark.get("attrs") or {}).get("href") or "")
        if href != group_href[0]:
            flush()
        if kind == "text":
            text = str(node.get("text") or "")
        elif kind == "hardBreak":
            text = "\n"
        elif kind in ("inlineCard", "blockCard", "embedCard"):
            text = str((node.get("attrs") or {}).get("url") or "")
        elif kind in ("mention", "emoji", "status", "placeholder"):
            attrs = node.get("attrs") or {}
            text = str(attrs.get("text") or attrs.get("shortName") or "")
        elif kind == "date":
            text = str((node.get("attrs") or {}).get("timestamp") or "")
        else:
            text = _adf_inline_text(node.get("content"))
        if href is not None:
            group_href[0] = href
            group_text.append(text)
        else:
            out.append(text)
    flush()
    return "".join(out)


def _indent_rest(text: str, prefix: str) -> str:
    lines = text.split("\n")
    return prefix + ("\n" + " " * len(prefix)).join(lines)


def _adf_block_text(node: Any) -> str:
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    content = node.get("content")
    if kind in ("paragraph", "heading"):
        return _adf_inline_text(content)
    if kind == "codeBlock":
        return "".join(str(child.get("text") or "") for child in content or [] if isinstance(child, dict))
    if kind == "rule":
        return "---"
    if kind in ("bulletList", "orderedList", "taskList", "decisionList"):
        start = (node.get("attrs") or {}).get("order") if kind == "orderedList" else None
        number = start if isinstance(start, int) and not isinstance(start, bool) else 1
        lines = []
        for item in content or []:
            prefix = f"{number}. " if kind == "orderedList" else "- "
            number += 1
            lines.append(_indent_rest(_adf_block_text(item), prefix))
        return "\n".join(lines)
    if kind in ("listItem", "taskItem", "decisionItem", "tableCell", "tableHeader"):
        if isinstance(content, list) and content and isinstance(content[0], dict) and content[0].get("type") == "text":
            return _adf_inline_text(content)
        return "\n".join(text for text in (_adf_block_text(child) for child in content or []) if text)
    if kind == "tableRow":
        return " | ".join(_adf_block_text(child).replace("\n", " ") for child in content or [])
    if kind == "table":
        return "\n".join(_adf_block_text(child) for child in content or [])
    if kind in ("text", "hardBreak", "mention", "emoji", "inlineCard", "date", "status"):
        return _adf_inline_text([node])
    if kind == "expand":
        title = str((node.get("attrs") or {}).get("title") or "")
        body = "\n\n".join(text for text in (_adf_block_text(child) for child in content or []) if text)
        return (title + "\n" + body) if title else body
    if isinstance(content, list):
        return "\n\n".join(text for text in (_adf_block_text(child) for child in content) if text)
    return ""


def adf_to_text(doc: Any) -> str:
    """Readable plain text of an ADF document (blocks separated by blank lines, ``- ``/``1. `` list items, links as
    ``text (href)`` unless the text is the href). A string is returned as it is, None as ``""``."""
    if doc is None:
        return ""
    if isinstance(doc, str):
        return doc
    if isinstance(doc, list):
        doc = {"type": "doc", "content": doc}
    return _adf_block_text(doc)


_WIKI_MACRO_BLOCK_RE = re.compile(r"\n?(?<!\\)\{(code|noformat)(?::[^}\n]*)?\}(.*?)(?<!\\)\{\1\}\n?", re.DOTALL)
_WIKI_HEADING_RE = re.compile(r"^\s*(?:h[1-6]|bq)\.\s+(.*)$")
_WIKI_RULE_RE = re.compile(r"^\s*-{4,}\s*$")
_WIKI_LIST_RE = re.compile(r"^\s*([*#-]+)\s+(.*)$")
_WIKI_DROP_MACRO_RE = re.compile(r"\{(?:[*_?+^~-]|color(?::[^}]*)?|quote|panel(?::[^}]*)?|anchor:[^}]*)\}")
_PLACEHOLDER = "\ue000"
_WIKI_MARKERS = ("*", "_", "-", "+", "^", "~", "??")


def _is_word(char: str) -> bool:
    return char.isalnum()


def _strip_pairs(text: str, token: str) -> str:
    """Remove the wiki formatting ``token`` pairs (``*bold*``, ``-strike-``, ``??cite??``...) from one line.

    An opener follows a non-word character and precedes a non-space, a closer the reverse; an opener pairs with
    the nearest closer after it. One linear pass (a line of ``*a *a *a`` must not cost quadratic time)."""
    size = len(token)
    mark = token[0]
    positions = []
    idx = text.find(token)
    while idx >= 0:
        positions.append(idx)
        idx = text.find(token, idx + size)
    if len(positions) < 2:
        return text
    drop = []
    opened = -1
    for pos in positions:
        before = text[pos - 1] if pos > 0 else " "
        after = text[pos + size] if pos + size < len(text) else " "
        can_close = opened >= 0 and not before.isspace() and before != mark and not _is_word(after) and after != mark
        if can_close:
            drop.append((opened, pos))
            opened = -1
        elif opened < 0 and not _is_word(before) and before != mark and not after.isspace() and after != mark:
            opened = pos
    if not drop:
        return text
    out = []
    last = 0
    for start, end in drop:
        out.append(text[last:start])
        out.append(text[start + size:end])
        last = end + size
    out.append(text[last:])
    return "".join(out)


def _entity(match: Any) -> str:
    name = match.group(1)
    named = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'", "nbsp": "\u00a0"}
    if name in named:
        return named[name]
    try:
        code = int("0" + name[1:], 16) if name[1] in "xX" else int(name[1:])
        return chr(code) if 0 < code < 0x110000 and not 0xD800 <= code <= 0xDFFF else match.group(0)
    except ValueError:  # pragma: no cover - the pattern only matches digits
        return match.group(0)


def _wiki_find(text: str, token: str, start: int) -> int:
    """The index of ``token`` at or after ``start`` that is not backslash-escaped, or -1."""
    idx = start
    while idx < len(text):
        if text[idx] == "\\":
            idx += 2
            continue
        if text.startswith(token, idx):
            return idx
        idx += 1
    return -1


def _wiki_inline_text(line: str) -> str:
    kept: List[str] = []
    out: List[str] = []
    unclosed: Dict[str, int] = {}  # closing token -> a position after which it does not occur
    idx = 0
    size = len(line)

    def keep(text: str) -> None:
        kept.append(text)
        out.append(_PLACEHOLDER)

    while idx < size:
        char = line[idx]
        if char == "\\" and idx + 1 < size:
            nxt = line[idx + 1]
            if nxt == "\\":
                keep("\n")
                idx += 2
                continue
            if not nxt.isalnum() and not nxt.isspace():
                keep(nxt)
                idx += 2
                continue
        if char == "&":
            match = _ENTITY_RE.match(line, idx)
            if match:
                keep(_entity(match))
                idx = match.end()
                continue
        if char == _PLACEHOLDER:
            keep(char)
            idx += 1
            continue
        if line.startswith("{{", idx) and idx < unclosed.get("}}", size + 1):
            end = _wiki_find(line, "}}", idx + 2)
            if end < 0:
                unclosed["}}"] = idx
            if end > idx + 2:
                keep(_wiki_inline_text(line[idx + 2:end]))
                idx = end + 2
                continue
        if char == "[" and idx < unclosed.get("]", size + 1):
            end = _wiki_find(line, "]", idx + 1)
            if end < 0:
                unclosed["]"] = idx
            if end > idx + 1:
                body = line[idx + 1:end]
                pipe = _wiki_find(body, "|", 0)
                if pipe >= 0:
                    label = _wiki_inline_text(body[:pipe])
                    href = body[pipe + 1:].strip()
                    keep(label + " (" + href + ")" if label and href and label != href else (label or href))
                elif _HREF_SCHEME_RE.match(body):
                    keep(body)  # [url]: the URL as written, no markup inside
                else:
                    keep(_wiki_inline_text(body))
                idx = end + 1
                continue
        if char == "{":
            match = _WIKI_DROP_MACRO_RE.match(line, idx)
            if match:
                idx = match.end()
                continue
        out.append(char)
        idx += 1
    text = "".join(out)
    for token in _WIKI_MARKERS:
        text = _strip_pairs(text, token)
    pending = iter(kept)
    return re.sub(_PLACEHOLDER, lambda match: next(pending), text)


def wiki_to_text(text: Any) -> str:
    """Jira wiki markup -> plain text (best effort): formatting, escapes and macros removed, links as ``text (url)``,
    ``{code}``/``{noformat}`` bodies verbatim, list items as ``- ``/``1. ``, rules as ``---``."""
    if text is None:
        return ""
    source = str(text).replace("\r\n", "\n").replace("\r", "\n")
    codes: List[str] = []

    def stash(match: Any) -> str:
        body = match.group(2)
        if body.startswith("\n"):
            body = body[1:]
        if body.endswith("\n"):
            body = body[:-1]
        codes.append(body)
        return "\n" + marker + "\n"

    marker = _PLACEHOLDER + "\ue001"
    while marker in source:
        marker += "\ue001"
    source = _WIKI_MACRO_BLOCK_RE.sub(stash, source)
    lines: List[str] = []
    counters: Dict[int, int] = {}
    pending = iter(codes)
    for line in source.split("\n"):
        if line == marker:
            lines.append(next(pending))
            counters = {}
            continue
        item = _WIKI_LIST_RE.match(line)
        if item and not _WIKI_RULE_RE.match(line):
            markers = item.group(1)
            depth = len(markers)
            counters = {level: count for level, count in counters.items() if level <= depth}
            indent = "  " * (depth - 1)
            if markers[-1] == "#":
                counters[depth] = counters.get(depth, 0) + 1
                lines.append(f"{indent}{counters[depth]}. {_wiki_inline_text(item.group(2))}")
            else:
                lines.append(indent + "- " + _wiki_inline_text(item.group(2)))
            continue
        counters = {}
        if _WIKI_RULE_RE.match(line):
            lines.append("---")
            continue
        heading = _WIKI_HEADING_RE.match(line)
        if heading:
            lines.append(_wiki_inline_text(heading.group(1)))
            continue
        if line.lstrip().startswith("|"):
            cells = [cell.strip() for cell in re.split(r"(?<!\\)\|+", line.strip())]
            lines.append(" | ".join(_wiki_inline_text(cell) for cell in cells if cell))
            continue
        lines.append(_wiki_inline_text(line))
    return "\n".join(lines).strip("\n")


def _markdown_text(text: Any) -> str:
    """Plain text of Markdown-ish input (what :func:`adf_to_text` of :func:`to_adf` gives; ``""`` when blank)."""
    content = _adf_blocks(_parse(text))
    return _adf_block_text({"type": "doc", "content": content}) if content else ""


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _plain_candidates(value: Any) -> set:
    if value is None:
        return {""}
    if isinstance(value, (dict, list)):
        return {_normalise(adf_to_text(value))}
    text = str(value)
    return {_normalise(text), _normalise(_markdown_text(text)), _normalise(wiki_to_text(text))}


def same_text(a: Any, b: Any) -> bool:
    """Whether ``a`` and ``b`` say the same thing, each an ADF document, wiki markup, Markdown-ish or plain text.

    Both are reduced to plain text (a string is read as plain, as Markdown-ish and as wiki markup: any reading of
    one that equals any reading of the other is a match) and compared with whitespace runs collapsed, blank lines
    dropped and Unicode NFC-normalised. Used for "is this comment/description already there" checks.
    """
    return bool(_plain_candidates(a) & _plain_candidates(b))


# ---------------------------------------------------------------------------------------------------------------------
# Field limits
# ---------------------------------------------------------------------------------------------------------------------
def _u16(text: str) -> int:
    """Length as Jira (Java) counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _cut(text: str, units: int) -> str:
    """The longest prefix of at most ``units`` UTF-16 units that does not split a character sequence."""
    if _u16(text) <= units:
        return text
    out = []
    used = 0
    for char in text:
        size = 2 if ord(char) > 0xFFFF else 1
        if used + size > units:
            break
        out.append(char)
        used += size
    cut = len(out)
    # do not split a base character from its combining marks, a ZWJ sequence or a variation selector
    while cut > 0 and cut < len(text) and (unicodedata.combining(text[cut]) or text[cut] in "\u200d\ufe0e\ufe0f"
                                           or text[cut - 1] == "\u200d"):
        cut -= 1
    return text[:cut]


_LINE_BREAKS_RE = re.compile("[\r\n\t\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def clip_summary(text: Any) -> str:
    """A valid Jira summary: one line (line breaks and tabs -> space, other control characters dropped, whitespace
    runs collapsed), at most 255 characters (UTF-16 units, as Jira counts), cut at a word when one is near the end,
    with ``…`` when cut."""
    if text is None:
        return ""
    flat = _LINE_BREAKS_RE.sub(" ", str(text))
    flat = "".join(char for char in flat if unicodedata.category(char) != "Cc")
    flat = " ".join(flat.split())
    if _u16(flat) <= SUMMARY_MAX:
        return flat
    head = _cut(flat, SUMMARY_MAX - 1)
    space = head.rfind(" ")
    if space >= len(head) - 32 and space > 0:
        head = head[:space]
    return head.rstrip() + ELLIPSIS


def _open_fence(lines: List[str]) -> Optional[str]:
    """The fence marker left open at the end of these lines, if any."""
    marker: Optional[str] = None
    for line in lines:
        if marker is None:
            fence = _fence(line.rstrip())
            if fence is not None:
                marker = fence[0]
        else:
            closing = line.strip()
            if closing and closing[0] == marker[0] and len(closing) >= len(marker) and closing == closing[0] * len(closing):
                marker = None
    return marker


def _clip_to(text: str, budget: int) -> Tuple[str, str]:
    """(the longest prefix ending at a line boundary within ``budget`` units, or at a character boundary when the
    first line alone is longer; the fence line that closes a code block it leaves open, or "")."""
    head = _cut(text, budget)
    if len(head) < len(text):
        newline = head.rfind("\n")
        if newline > 0:
            head = head[:newline]
    head = head.rstrip()
    fence = _open_fence(head.split("\n"))
    return head, ("\n" + fence if fence is not None else "")


def _rendered_size(text: str) -> int:
    """The largest of the text's length, its wiki markup's and its ADF document's (compact JSON) in UTF-16 units."""
    try:
        adf_size = _u16(json.dumps(to_adf(text), separators=(",", ":"), ensure_ascii=False))
    except ValueError:
        adf_size = 0
    return max(_u16(text), _u16(to_wiki(text)), adf_size)


def clip_description(text: Any, limit: int = DESCRIPTION_MAX) -> str:
    """Text that fits a Jira description (or comment) of ``limit`` characters: as given, as wiki markup (v2) and as
    an ADF document in compact JSON (v3; Jira Cloud checks the stored document, markup included, so this is the
    binding limit for many short lines).

    Unchanged when it fits. Otherwise cut at a line boundary (inside a single overlong line: at a character
    boundary), a code fence left open closed, and ``[truncated N chars]`` appended as its own paragraph (N: the
    characters of ``text`` left out). ``limit`` counts UTF-16 units, as Jira does. Raises ValueError for a limit
    below 200 (no room for the notice).
    """
    if text is None:
        return ""
    text = str(text)
    if _rendered_size(text) <= limit:
        return text
    if limit < 200:
        raise ValueError(f"clip_description: limit {limit} leaves no room for the truncation notice")
    reserve = _u16("\n\n" + TRUNCATED_NOTICE.format(len(text))) + 8  # the notice and a closing fence
    budget = limit - reserve
    while True:
        head, closing = _clip_to(text, max(0, budget))
        notice = TRUNCATED_NOTICE.format(len(text) - len(head))
        result = head + closing + "\n\n" + notice if head else notice
        size = _rendered_size(result)
        if size <= limit or not head:
            return result
        # shrink in proportion (wiki escaping may make the text longer), and by at least one character
        budget = min(budget * (limit - _u16(notice) - 8) // size, _u16(head) - 1)


def jira_label(text: Any, max_length: int = LABEL_MAX) -> str:
    """A valid Jira label for ``text``: whitespace runs -> ``_``, control characters dropped, case kept.

    Deterministic. Longer than ``max_length`` (UTF-16 units): a prefix, ``_`` and 16 hex characters of the
    SHA-256 of the whole label, so that two long texts with one prefix stay two labels. Raises ValueError for a text
    that leaves no label (empty, blank) or a ``max_length`` below 24.
    """
    if max_length < 24:
        raise ValueError("jira_label: max_length must be at least 24")
    if text is None:
        raise ValueError("jira_label: a label cannot be empty")
    label = unicodedata.normalize("NFC", str(text))
    label = "".join(char for char in label if unicodedata.category(char) != "Cc" or char.isspace())
    label = "_".join(label.split())
    if not label:
        raise ValueError(f"jira_label: a label cannot be empty or whitespace only ({text!r})")
    if _u16(label) <= max_length:
        return label
    digest = hashlib.sha256(label.encode("utf-8")).hexdigest()[:16]
    return _cut(label, max_length - 17).rstrip("_") + "_" + digest
