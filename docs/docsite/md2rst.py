"""Generate the docsite's RST guides from the Markdown guides under docs/.

The Markdown files stay the one source (they render on any Git host and ship in the
collection); antsibull-docs needs RST under docs/docsite/rst/ and its index,
docs/docsite/extra-docs.yml, both written here. Run ``make docs-rst`` after
editing a guide; tests/integration/test_docs.py fails while the RST is stale.

Covers the Markdown the guides use: headings, paragraphs, emphasis, inline code, links,
bullet and ordered lists (nested), fenced code, GFM tables (as list-tables) and quotes.
Anything else raises, so a new construct is noticed instead of rendered wrong.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

DOCS = Path(__file__).resolve().parents[1]
RST_DIR = DOCS / "docsite" / "rst"
LABEL_PREFIX = "ansible_collections.labops.itsm.docsite."
# The user guides of the docsite (paths relative to docs/, without .md); SOP pages are added.
GUIDES = ("event_source", "alert_path", "intake", "lifecycle", "audit_ledger", "metrics", "servicenow", "jira")
CODE_LANGUAGES = {"yaml": "yaml", "json": "json", "python": "python", "bash": "console", "sh": "console"}
# Inline markup must start after whitespace or one of these and end before whitespace or one of
# these (docutils' inline markup recognition rules); otherwise an escaped space separates it.
START_OK = set(" -:/'\"<([{")
END_OK = set(" -.,:;!?\\/'\")]}>")
HEADING_UNDERLINES = {2: "=", 3: "-", 4: "~", 5: "^"}


def page_names() -> list[str]:
    sops = sorted(f"sop/{path.stem}" for path in (DOCS / "sop").glob("*.md"))
    return list(GUIDES) + sops


def label(page: str) -> str:
    return LABEL_PREFIX + page.replace("/", ".")


def escape_text(text: str) -> str:
    text = re.sub(r"([\\*`|])", r"\\\1", text)
    # A trailing underscore makes a reference (word_), a leading one a target.
    return re.sub(r"_(?=\W|$)|(?<=\s)_|^_", r"\\_", text)


class Inline:
    """Renders one inline run; pieces of markup are glued to their neighbours safely."""

    def __init__(self, page: str, pages: set[str]):
        self.page = page
        self.pages = pages
        self.out: list[tuple[bool, str]] = []  # (is_markup, text)

    def render(self, node: SyntaxTreeNode) -> str:
        self.out = []
        self._children(node)
        return self._join()

    def _children(self, node: SyntaxTreeNode, plain: bool = False) -> None:
        for child in node.children:
            self._node(child, plain)

    def _node(self, node: SyntaxTreeNode, plain: bool) -> None:
        kind = node.type
        if kind == "text":
            self.out.append((False, escape_text(node.content)))
        elif kind in ("softbreak", "hardbreak"):
            self.out.append((False, " "))
        elif kind == "code_inline":
            content = node.content.strip()
            self.out.append((False, escape_text(content)) if plain else (True, f"``{content}``"))
        elif kind in ("strong", "em"):
            if plain:
                self._children(node, plain=True)
            else:
                self.out.append((True, self._wrapped(node, "**" if kind == "strong" else "*")))
        elif kind == "link":
            self._link(node, plain)
        elif kind == "html_inline":
            self.out.append((False, escape_text(node.content)))
        else:
            raise ValueError(f"docs/{self.page}.md: unsupported inline Markdown {kind!r}")

    def _wrapped(self, node: SyntaxTreeNode, marker: str) -> str:
        inner = Inline(self.page, self.pages)
        inner.out = []
        inner._children(node, plain=True)  # pylint: disable=protected-access
        return f"{marker}{inner._join().strip()}{marker}"  # pylint: disable=protected-access

    def _plain_text(self, node: SyntaxTreeNode) -> str:
        inner = Inline(self.page, self.pages)
        inner.out = []
        inner._children(node, plain=True)  # pylint: disable=protected-access
        return inner._join().strip()  # pylint: disable=protected-access

    def _link(self, node: SyntaxTreeNode, plain: bool) -> None:
        href = str(node.attrs.get("href", ""))
        target = self._page_of(href)
        if plain or (target is None and not re.match(r"(https?|mailto):", href)):
            # A file of the repository that is no docsite page: keep the text, drop the link.
            self._children(node, plain)
            return
        text = self._plain_text(node).replace("<", r"\<")
        if target is not None:
            self.out.append((True, f":ref:`{text} <{label(target)}>`"))
        else:
            self.out.append((True, f"`{text} <{href}>`__"))

    def _page_of(self, href: str) -> str | None:
        path = href.split("#", 1)[0]
        if not path.endswith(".md") or re.match(r"[a-z]+:", path):
            return None
        base = Path(self.page).parent
        resolved = (base / path[:-3]).as_posix()
        parts: list[str] = []
        for part in resolved.split("/"):
            if part == "..":
                if parts:
                    parts.pop()
            elif part not in (".", ""):
                parts.append(part)
        name = "/".join(parts)
        return name if name in self.pages else None

    def _join(self) -> str:
        text = ""
        previous_markup = False
        for is_markup, piece in self.out:
            if not piece:
                continue
            if (is_markup and text and text[-1] not in START_OK) or (previous_markup and piece[0] not in END_OK):
                text += "\\ "
            text += piece
            previous_markup = is_markup
        return text


class Converter:
    def __init__(self, page: str, pages: set[str]):
        self.page = page
        self.inline = Inline(page, pages)
        self.title_done = False

    def convert(self, markdown: str) -> str:
        parser = MarkdownIt("commonmark").enable("table")
        root = SyntaxTreeNode(parser.parse(markdown))
        lines = [
            f".. Generated from docs/{self.page}.md by docs/docsite/md2rst.py (make docs-rst): edit the Markdown.",
            "",
            f".. _{label(self.page)}:",
            "",
        ]
        lines += self.blocks(root)
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines) + "\n"

    def blocks(self, node: SyntaxTreeNode) -> list[str]:
        lines: list[str] = []
        for child in node.children:
            rendered = self.block(child)
            if rendered:
                lines += rendered + [""]
        return lines

    def block(self, node: SyntaxTreeNode) -> list[str]:
        handlers: dict[str, Callable[[SyntaxTreeNode], list[str]]] = {
            "heading": self.heading,
            "paragraph": self.paragraph,
            "bullet_list": self.bullet_list,
            "ordered_list": self.ordered_list,
            "fence": self.code,
            "code_block": self.code,
            "table": self.table,
            "blockquote": lambda n: indent(self.blocks(n), "   "),
            "hr": lambda n: ["----"],
        }
        if node.type not in handlers:
            raise ValueError(f"docs/{self.page}.md: unsupported Markdown block {node.type!r}")
        return handlers[node.type](node)

    def heading(self, node: SyntaxTreeNode) -> list[str]:
        text = self.inline.render(node.children[0])
        level = int(node.tag[1])
        if level == 1 and not self.title_done:
            self.title_done = True
            rule = "=" * len(text)
            return [rule, text, rule]
        return [text, HEADING_UNDERLINES[max(level, 2)] * len(text)]

    def paragraph(self, node: SyntaxTreeNode) -> list[str]:
        text = self.inline.render(node.children[0])
        if text.endswith("::"):
            text = text[:-1] + "\\:"
        return [text]

    def bullet_list(self, node: SyntaxTreeNode) -> list[str]:
        return self._list(node, lambda _: "- ")

    def ordered_list(self, node: SyntaxTreeNode) -> list[str]:
        start = int(node.attrs.get("start", 1) or 1)
        return self._list(node, lambda index: f"{start + index}. ")

    def _list(self, node: SyntaxTreeNode, marker: Callable[[int], str]) -> list[str]:
        lines: list[str] = []
        for index, item in enumerate(node.children):
            bullet = marker(index)
            body = self.blocks(item)
            while body and not body[-1]:
                body.pop()
            if not body:
                body = [""]
            lines.append((bullet + body[0]).rstrip())
            lines += indent(body[1:], " " * len(bullet))
            lines.append("")
        return lines[:-1]

    def code(self, node: SyntaxTreeNode) -> list[str]:
        language = CODE_LANGUAGES.get((node.info or "").strip().split(" ")[0], "text")
        body = node.content.rstrip("\n").split("\n")
        return [f".. code-block:: {language}", ""] + indent(body, "   ")

    def table(self, node: SyntaxTreeNode) -> list[str]:
        rows = [row for section in node.children for row in section.children]
        lines = [".. list-table::", "   :header-rows: 1", ""]
        for row in rows:
            cells = [self.inline.render(cell.children[0]) if cell.children else "" for cell in row.children]
            lines.append(f"   * - {cells[0]}".rstrip())
            lines += [f"     - {cell}".rstrip() for cell in cells[1:]]
        return lines


def indent(lines: list[str], prefix: str) -> list[str]:
    return [prefix + line if line else "" for line in lines]


def extra_docs_index(pages: list[str]) -> str:
    """docs/docsite/extra-docs.yml: the guides, then one page per SOP."""
    lines = [
        "---",
        "# Generated by docs/docsite/md2rst.py (make docs-rst) with the RST pages under rst/.",
        "sections:",
        "  - title: Guides",
        "    toctree:",
    ]
    lines += [f"      - {page}" for page in pages if not page.startswith("sop/")]
    lines += ["  - title: IMS standard operating procedures", "    toctree:"]
    lines += [f"      - {page}" for page in pages if page.startswith("sop/")]
    return "\n".join(lines) + "\n"


def render_all() -> dict[Path, str]:
    pages = page_names()
    rendered = {DOCS / "docsite" / "extra-docs.yml": extra_docs_index(pages)}
    for page in pages:
        markdown = (DOCS / f"{page}.md").read_text(encoding="utf-8")
        rendered[RST_DIR / f"{page}.rst"] = Converter(page, set(pages)).convert(markdown)
    return rendered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only report RST files that differ from the Markdown")
    args = parser.parse_args()
    rendered = render_all()
    stale = sorted(str(path.relative_to(DOCS.parent)) for path, text in rendered.items()
                   if not path.is_file() or path.read_text(encoding="utf-8") != text)
    known = set(rendered)
    orphans = sorted(str(path.relative_to(DOCS.parent)) for path in RST_DIR.rglob("*.rst")
                     if path not in known and path.read_text(encoding="utf-8").startswith(".. Generated from docs/"))
    if args.check:
        for name in stale + orphans:
            print(f"stale: {name}")
        return 1 if stale or orphans else 0
    for path, text in rendered.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for name in orphans:
        (DOCS.parent / name).unlink()
    print(f"wrote {len(rendered) - 1} pages under {RST_DIR.relative_to(DOCS.parent)} and their index")
    return 0


if __name__ == "__main__":
    sys.exit(main())
