# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Jira rich text (module_utils/_jira_markup.py): Markdown-ish -> ADF (v3) and wiki markup (v2), plain text back,
the comparison the modules use for idempotence, and Jira's field limits (summary, description, labels).

Every ADF document is checked twice: by the Jira simulator's validator (simulators/jira_adf.py, what the simulator
rejects with a 400) and by a stricter one here that follows jira.md section 6 to the letter (no empty text node, no
newline in a text node, listItem -> paragraph, only the nodes and marks this module emits).
"""

import base64
import http.client
import json
import random
import re
import time
import urllib.parse

import pytest

from ansible_collections.labops.itsm.plugins.module_utils import _alert_enrich as enrich
from ansible_collections.labops.itsm.plugins.module_utils import _jira_markup as jm
from simulators import jira_adf as sim_adf
from simulators.harness import start_in_thread

# ---------------------------------------------------------------------------------------------------------------------
# A strict ADF validator (jira.md section 6)
# ---------------------------------------------------------------------------------------------------------------------
INLINE_MARKS = {"strong", "em", "code", "link"}


class AdfError(AssertionError):
    pass


def _fail(path, message):
    raise AdfError(f"{path}: {message}")


def _keys(node, path, allowed, required=("type",)):
    if not isinstance(node, dict):
        _fail(path, f"node must be an object, not {type(node).__name__}")
    for key in required:
        if key not in node:
            _fail(path, f"missing {key!r}")
    extra = set(node) - set(allowed)
    if extra:
        _fail(path, f"unexpected keys {sorted(extra)}")


def _content(node, path, nonempty=True):
    content = node.get("content")
    if not isinstance(content, list):
        _fail(path, "content must be a list")
    if nonempty and not content:
        _fail(path, "content must not be empty")
    return content


def _validate_marks(marks, path):
    if not isinstance(marks, list) or not marks:
        _fail(path, "marks must be a non-empty list when present")
    seen = set()
    for idx, mark in enumerate(marks):
        mpath = f"{path}.marks[{idx}]"
        _keys(mark, mpath, ("type", "attrs"))
        kind = mark["type"]
        if kind not in INLINE_MARKS:
            _fail(mpath, f"unknown mark {kind!r}")
        if kind in seen:
            _fail(mpath, f"duplicate mark {kind!r}")
        seen.add(kind)
        if kind == "link":
            attrs = mark.get("attrs")
            if not isinstance(attrs, dict) or not isinstance(attrs.get("href"), str) or not attrs["href"]:
                _fail(mpath, "link needs attrs.href")
            if set(attrs) - {"href", "title"}:
                _fail(mpath, "unexpected link attrs")
            if any(c.isspace() for c in attrs["href"]):
                _fail(mpath, "href with whitespace")
        elif "attrs" in mark:
            _fail(mpath, f"{kind} takes no attrs")
    if "code" in seen and seen - {"code", "link"}:
        _fail(path, "the code mark combines with link only")


def _validate_inline(node, path):
    _keys(node, path, ("type", "text", "marks", "attrs"))
    kind = node["type"]
    if kind == "text":
        text = node.get("text")
        if not isinstance(text, str) or not text:
            _fail(path, "text node with empty or missing text")
        if "\n" in text or "\r" in text:
            _fail(path, "newline inside a text node (use hardBreak)")
        if "attrs" in node:
            _fail(path, "text takes no attrs")
        if "marks" in node:
            _validate_marks(node["marks"], path)
    elif kind == "hardBreak":
        if set(node) - {"type"}:
            _fail(path, "hardBreak takes nothing but its type")
    else:
        _fail(path, f"unknown inline node {kind!r}")


def _validate_paragraph(node, path):
    _keys(node, path, ("type", "content"), ("type", "content"))
    for idx, child in enumerate(_content(node, path)):
        _validate_inline(child, f"{path}.content[{idx}]")


def _validate_block(node, path):
    _keys(node, path, ("type", "content", "attrs"))
    kind = node["type"]
    if kind == "paragraph":
        _validate_paragraph(node, path)
    elif kind == "heading":
        attrs = node.get("attrs")
        if not isinstance(attrs, dict) or set(attrs) != {"level"}:
            _fail(path, "heading needs attrs.level (only)")
        level = attrs["level"]
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 6:
            _fail(path, f"heading level {level!r} not in 1..6")
        for idx, child in enumerate(_content(node, path)):
            _validate_inline(child, f"{path}.content[{idx}]")
    elif kind in ("bulletList", "orderedList"):
        if "attrs" in node:
            _fail(path, "list attrs are not emitted")
        for idx, item in enumerate(_content(node, path)):
            ipath = f"{path}.content[{idx}]"
            _keys(item, ipath, ("type", "content"), ("type", "content"))
            if item["type"] != "listItem":
                _fail(ipath, "a list holds listItem nodes")
            children = _content(item, ipath)
            if children[0].get("type") != "paragraph":
                _fail(ipath, "listItem must start with a paragraph")
            for cidx, child in enumerate(children):
                if child.get("type") != "paragraph":
                    _fail(f"{ipath}.content[{cidx}]", "listItem -> paragraph")
                _validate_paragraph(child, f"{ipath}.content[{cidx}]")
    elif kind == "codeBlock":
        if "attrs" in node:
            attrs = node["attrs"]
            if not isinstance(attrs, dict) or set(attrs) - {"language"} or not isinstance(attrs.get("language"), str) \
                    or not attrs["language"]:
                _fail(path, "codeBlock attrs: a non-empty language only")
        for idx, child in enumerate(_content(node, path)):
            cpath = f"{path}.content[{idx}]"
            _keys(child, cpath, ("type", "text"), ("type", "text"))
            if child["type"] != "text" or not isinstance(child["text"], str) or not child["text"]:
                _fail(cpath, "codeBlock holds non-empty text nodes without marks")
    elif kind == "rule":
        if set(node) != {"type"}:
            _fail(path, "rule takes nothing but its type")
    else:
        _fail(path, f"unknown block node {kind!r}")


def validate_adf(doc):
    """Raise AdfError unless ``doc`` is an ADF document Jira takes (jira.md section 6, strictly)."""
    json.dumps(doc)  # plain JSON types only
    _keys(doc, "doc", ("type", "version", "content"), ("type", "version", "content"))
    if doc["type"] != "doc":
        _fail("doc", "root type must be doc")
    if doc["version"] != 1 or isinstance(doc["version"], bool):
        _fail("doc", "version must be 1")
    for idx, block in enumerate(_content(doc, "doc")):
        _validate_block(block, f"doc.content[{idx}]")
    sim_adf.validate(doc)  # raises simulators.jira_adf.AdfError
    return doc


def adf(text):
    return validate_adf(jm.to_adf(text))


def nodes(doc):
    """All nodes of an ADF tree, depth first."""
    out = [doc]
    for child in doc.get("content") or []:
        out.extend(nodes(child))
    return out


def text_nodes(doc):
    return [node for node in nodes(doc) if node["type"] == "text"]


def marks_of(node):
    return sorted(mark["type"] for mark in node.get("marks", []))


def href_of(node):
    return next((mark["attrs"]["href"] for mark in node.get("marks", []) if mark["type"] == "link"), None)


def roundtrips(text):
    """Both flavours carry the same plain text as the input."""
    doc = adf(text)
    wiki = jm.to_wiki(text)
    assert jm.same_text(doc, text), (jm.adf_to_text(doc), text)
    assert jm.same_text(wiki, text), (jm.wiki_to_text(wiki), text)
    assert jm.same_text(doc, wiki)
    # not only through same_text's readings: the wiki stripped equals the ADF read back
    assert jm._normalise(jm.wiki_to_text(wiki)) == jm._normalise(jm.adf_to_text(doc))
    return doc, wiki


# ---------------------------------------------------------------------------------------------------------------------
# The validator itself rejects what Jira rejects
# ---------------------------------------------------------------------------------------------------------------------
GOOD_PARAGRAPH = {"type": "paragraph", "content": [{"type": "text", "text": "x"}]}


@pytest.mark.parametrize("doc, fragment", [
    ({"type": "doc", "content": [GOOD_PARAGRAPH]}, "missing 'version'"),
    ({"type": "doc", "version": 2, "content": [GOOD_PARAGRAPH]}, "version must be 1"),
    ({"type": "doc", "version": 1, "content": []}, "content must not be empty"),
    ({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}]},
     "empty or missing text"),
    ({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": "a\nb"}]}]},
     "newline inside a text node"),
    ({"type": "doc", "version": 1, "content": [{"type": "heading", "attrs": {"level": 7}, "content": [{"type": "text", "text": "h"}]}]},
     "not in 1..6"),
    ({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [
        {"type": "text", "text": "l", "marks": [{"type": "link", "attrs": {}}]}]}]}, "attrs.href"),
    ({"type": "doc", "version": 1, "content": [{"type": "bulletList", "content": [
        {"type": "listItem", "content": [{"type": "text", "text": "t"}]}]}]}, "listItem must start with a paragraph"),
    ({"type": "doc", "version": 1, "content": [{"type": "codeBlock", "content": [
        {"type": "text", "text": "x", "marks": [{"type": "strong"}]}]}]}, "unexpected keys"),
    ({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [
        {"type": "text", "text": "c", "marks": [{"type": "code"}, {"type": "strong"}]}]}]}, "code mark combines"),
    ({"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": []}]}, "content must not be empty"),
    ({"type": "doc", "version": 1, "content": [{"type": "blockquote", "content": [GOOD_PARAGRAPH]}]}, "unknown block"),
])
def test_the_validator_rejects_invalid_documents(doc, fragment):
    with pytest.raises(AdfError, match=re.escape(fragment)):
        validate_adf(doc)


@pytest.mark.parametrize("doc", [
    {"type": "doc", "content": [GOOD_PARAGRAPH]},
    {"type": "doc", "version": 1, "content": [{"type": "heading", "attrs": {"level": 7}, "content": []}]},
    {"type": "doc", "version": 1, "content": [{"type": "codeBlock", "content": [
        {"type": "text", "text": "x", "marks": [{"type": "strong"}]}]}]},
    {"type": "doc", "version": 1, "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}]},
])
def test_the_simulator_validator_rejects_invalid_documents(doc):
    with pytest.raises(sim_adf.AdfError):
        sim_adf.validate(doc)


def test_the_contract_example_is_valid():
    validate_adf({"type": "doc", "version": 1, "content": [
        {"type": "heading", "attrs": {"level": 3}, "content": [{"type": "text", "text": "HostDown"}]},
        {"type": "paragraph", "content": [
            {"type": "text", "text": "Severity: "}, {"type": "text", "text": "critical", "marks": [{"type": "strong"}]},
            {"type": "hardBreak"},
            {"type": "text", "text": "Alertmanager", "marks": [{"type": "link", "attrs": {"href": "https://am.example/#/alerts"}}]}]},
        {"type": "codeBlock", "attrs": {"language": "text"}, "content": [{"type": "text", "text": "instance=pve-node-03\njob=node"}]}]})


# ---------------------------------------------------------------------------------------------------------------------
# Alert texts
# ---------------------------------------------------------------------------------------------------------------------
SETTINGS = {"itsm_platform": "jira", "itsm_platform_options": {"jira": {"url": "http://jira"}}, "itsm_default_queue": "OPS",
            "itsm_severity_urgency": {"critical": "high"}, "itsm_default_impact": "medium"}
ASSET = {"itsm_impact": "high", "itsm_service": "svc_erp*db", "itsm_team": "platform_ops", "itsm_location": "dc-1 [rack 4]"}


def firing(description="Proxmox guest *erp-db-02* is down: `qm status` says {stopped}", **labels):
    alert = {"status": "firing", "fingerprint": "a1b2c3d4e5f60718", "startsAt": "2026-11-30T08:00:00Z",
             "labels": dict({"alertname": "PveGuestDown", "name": "erp-db-02", "severity": "critical", "team": "platform",
                             "job": "node_exporter", "instance": "pve-node-03:9100"}, **labels),
             "annotations": {"summary": "Proxmox guest erp-db-02 is down", "description": description,
                             "runbook_url": "https://wiki.example/runbooks/pve_guest_down#step_1"},
             "generatorURL": "http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22node_exporter%22%7D+%3D%3D+0&g0.tab=1"}
    request = enrich.request_for({"alert": alert, "group": {}, "meta": {"uuid": "uuid-1"}}, SETTINGS, ASSET)
    return request["inputs"]["event"]


def _details_paragraph(doc):
    return next(block for block in doc["content"] if block["type"] == "paragraph"
                and any(node.get("text", "").startswith("Alert:") for node in block["content"]))


def test_firing_details_keep_their_line_breaks_in_adf():
    details = firing()["details"]
    doc = roundtrips(details)[0]
    block_lines = details.split("\n\n", 1)[1].split("\n")
    paragraph = _details_paragraph(doc)
    assert sum(node["type"] == "hardBreak" for node in paragraph["content"]) == len(block_lines) - 1
    # every aligned "Key:   value" line is there verbatim (the spaces of the alignment included)
    text_lines = jm.adf_to_text(doc).split("\n")
    for line in block_lines:
        assert line in text_lines
    assert "             team platform_ops," in text_lines
    links = {href_of(node) for node in text_nodes(doc) if href_of(node)}
    assert links == {"https://wiki.example/runbooks/pve_guest_down#step_1",
                     "http://prometheus:9090/graph?g0.expr=up%7Bjob%3D%22node_exporter%22%7D+%3D%3D+0&g0.tab=1"}
    # the underscores of node_exporter, platform_ops and the URLs are text, not emphasis
    assert all(marks_of(node) in ([], ["link"]) for node in text_nodes(_details_paragraph(doc)))


def test_firing_details_keep_their_line_breaks_in_wiki():
    details = firing()["details"]
    wiki = jm.to_wiki(details)
    block_lines = details.split("\n\n", 1)[1].split("\n")
    wiki_lines = wiki.split("\n\n", 1)[1].split("\n")
    assert len(wiki_lines) == len(block_lines)
    assert wiki_lines[0] == "Alert:       PveGuestDown (critical)"
    assert "Labels:      alertname=PveGuestDown, instance=pve-node-03:9100, job=node\\_exporter, name=erp-db-02, " \
           "severity=critical, team=platform" in wiki_lines
    assert "Runbook:     [https://wiki.example/runbooks/pve_guest_down#step_1]" in wiki_lines
    assert "             location dc-1 \\[rack 4\\])" in wiki_lines
    assert jm.wiki_to_text(wiki).split("\n\n", 1)[1].split("\n") == block_lines


def test_firing_description_markup_and_title():
    event = firing()
    doc, wiki = roundtrips(event["details"])
    first = doc["content"][0]["content"]
    assert [(node["text"], marks_of(node)) for node in first] == [
        ("Proxmox guest ", []), ("erp-db-02", ["em"]), (" is down: ", []), ("qm status", ["code"]), (" says {stopped}", [])]
    assert wiki.split("\n", maxsplit=1)[0] == "Proxmox guest _erp-db-02_ is down: {{qm status}} says \\{stopped\\}"
    title = event["title"]
    assert title == "[S1] PveGuestDown erp-db-02: Proxmox guest erp-db-02 is down"
    assert jm.to_wiki(title) == "\\[S1\\] PveGuestDown erp-db-02: Proxmox guest erp-db-02 is down"
    assert jm.adf_to_text(adf(title)) == title


ALERT_WORDS = ["HostDown", "node_exporter", "pve-node-03:9100", "job=node", "5m", "{instance}", "[S2]", "a|b", "100%",
               "C:\\temp\\new", "x*y", "2*3*4", "snake_case_name", "--config.file", "-Xmx4g", "+0000", "a^b", "~user",
               "!important", "??", "(x)", ":)", "&amp;", "&#92;", "Störung", "Überhitzung", "🔥", "naïve", "日本語", "—",
               "https://grafana.example/d/abc_def/host?var-instance=pve_node_03&from=now-1h",
               "http://am.example/#/alerts?filter=%7Balertname%3D%22HostDown%22%7D", "h1.", "bq.", "#42", "{code}",
               "{noformat}", "{color:red}", "*", "_", "`", "\\", "1.", "-", "|", "[", "]"]


def _alert_like(rng):
    lines = []
    for dummy in range(rng.randint(1, 8)):
        shape = rng.random()
        if shape < 0.15:
            lines.append("")
        elif shape < 0.55:
            key = rng.choice(["Alert", "Started", "Asset", "Labels", "Source", "Runbook", "Fingerprint"]) + ":"
            lines.append(key.ljust(13) + " ".join(rng.choice(ALERT_WORDS) for dummy in range(rng.randint(1, 5))))
        elif shape < 0.65:
            lines.append(" " * 13 + " ".join(rng.choice(ALERT_WORDS) for dummy in range(rng.randint(1, 3))))
        else:
            lines.append(" ".join(rng.choice(ALERT_WORDS) for dummy in range(rng.randint(1, 10))))
    return "\n".join(lines)


def test_typical_alert_texts_roundtrip_and_stay_valid():
    rng = random.Random(9)
    checked = 0
    for dummy in range(400):
        text = _alert_like(rng)
        if not text.strip():
            continue
        roundtrips(text)
        checked += 1
    assert checked > 300


SOUP = list("ab c*_`[]()<>{}|\\#-+^~!?:;&.=/\n\t") + [
    "http://x.y/a_b", "https://e.x/*", "**", "__", "```", "1. ", "- ", "# ", "&amp;", "&#92;", "h1. ", "\n\n", "  ", "é",
    "🔥", "{code}", "[a](http://u/v)"]


def test_markup_soup_stays_valid_and_reads_the_same_in_both_flavours():
    """Random strings of markup characters, URLs and entities: valid ADF, and the wiki reads back as the ADF does."""
    rng = random.Random(2026)
    rendered = 0
    for dummy in range(3000):
        text = "".join(rng.choice(SOUP) for dummy in range(rng.randint(1, 30)))
        if not jm._markdown_text(text).strip():
            with pytest.raises(ValueError):
                jm.to_adf(text)
            continue
        doc = validate_adf(jm.to_adf(text))
        wiki = jm.to_wiki(text)
        assert jm._normalise(jm.wiki_to_text(wiki)) == jm._normalise(jm.adf_to_text(doc)), (text, wiki)
        assert jm.same_text(doc, text) and jm.same_text(wiki, text) and jm.same_text(wiki, doc)
        rendered += 1
    assert rendered > 2500


def test_plain_alert_lines_keep_every_character():
    """Text without Markdown constructs reads back character for character from both flavours."""
    rng = random.Random(4)
    words = [w for w in ALERT_WORDS if w not in ("*", "_", "`", "\\", "x*y", "2*3*4", "[", "]", "1.", "-", "{code}")]
    for dummy in range(200):
        line = "Labels:      " + " ".join(rng.choice(words) for dummy in range(rng.randint(1, 8)))
        assert jm.adf_to_text(adf(line)) == line
        assert jm.wiki_to_text(jm.to_wiki(line)) == line


# ---------------------------------------------------------------------------------------------------------------------
# Escaping: text that is wiki markup must stay text on v2
# ---------------------------------------------------------------------------------------------------------------------
PLAIN = [
    "{code}not a macro{code}", "{noformat}", "{color:red}red{color}", "{{not mono}}", "[~admin] [OPS-1] [x|http://e]",
    "a|b||c", "snake_case_name_here", "2*3*4", "-strike- +under+ ^sup^ ~sub~ ??cite??", "!image.png!", "x -- y --- z",
    ":) ;) :( :P :D (x) (y) (!) (i) (on)", "C:\\temp\\new and trailing\\", "&amp; &#92; &lt;b&gt; &copy AT&T",
    "Price: $5 ^_^", "#42 is not a list", "h3. not a heading", "bq. not a quote", "----------- no rule here",
]


def _unescaped(wiki, chars):
    """Characters of ``chars`` in ``wiki`` not preceded by a backslash."""
    return [m.group(0) for m in re.finditer(r"(?<!\\)[" + re.escape(chars) + "]", wiki)]


@pytest.mark.parametrize("text", PLAIN)
def test_wiki_special_characters_stay_text(text):
    line = "Note: " + text  # not at the start: a leading "-" or "#" is Markdown list/heading syntax
    wiki = jm.to_wiki(line)
    assert jm.wiki_to_text(wiki) == line
    assert jm.adf_to_text(adf(line)) == line
    assert not _unescaped(re.sub(r"\[https?://[^\]|]*\]", "", wiki), "{}[]|*_")  # a bare URL's link brackets aside
    assert "\\\\" not in wiki  # a double backslash is a wiki line break
    inert = re.sub(r"\\.", "\x00", wiki)  # what Jira reads as markup once the escaped characters are taken out
    for emoticon in (":)", ";)", ":(", ":P", ":D", "(x)", "(y)", "(!)", "(i)", "(on)"):
        assert emoticon not in inert
    assert "--" not in inert and "??" not in inert


@pytest.mark.parametrize("line, wiki", [
    ("#42 is not a list", "\\#42 is not a list"),
    ("h3. not a heading", "h3\\. not a heading"),
    ("bq. not a quote", "bq\\. not a quote"),
    ("2. not a list on its own", "2. not a list on its own"),
    ("C:\\temp", "C:&#92;temp"),
    ("see &amp;", "see &amp;amp;"),
    ("pve-node-03 up+down", "pve-node-03 up+down"),  # intraword: no escape needed
    ("a - b", "a \\- b"),
    ("H~2~O and x^2^", "H\\~2\\~O and x\\^2\\^"),
])
def test_wiki_line_start_and_context_escapes(line, wiki):
    assert jm.to_wiki(line) == wiki
    assert jm.wiki_to_text(wiki) == line


# ---------------------------------------------------------------------------------------------------------------------
# Markdown-ish constructs
# ---------------------------------------------------------------------------------------------------------------------
FULL = """# HostDown on pve-node-03

Severity: **critical**, started *10 minutes ago* (_approx._)
See [the runbook](https://wiki.example/runbooks/host_down) or https://am.example/#/alerts.

## Checks
- ping `pve-node-03`
- check **IPMI _power_ state**
  (from the jump host)
* restart node_exporter

1. drain the node
2. reboot
3. uncordon

```bash
systemctl restart node_exporter
journalctl -u pve-cluster --since "-10m" | grep -i *error*
```

---
###### fine print"""


def test_full_document():
    doc, wiki = roundtrips(FULL)
    kinds = [block["type"] for block in doc["content"]]
    assert kinds == ["heading", "paragraph", "heading", "bulletList", "orderedList", "codeBlock", "rule", "heading"]
    assert [block["attrs"]["level"] for block in doc["content"] if block["type"] == "heading"] == [1, 2, 6]
    bullets = doc["content"][3]["content"]
    assert len(bullets) == 3 and [node["type"] for node in bullets[1]["content"][0]["content"]] == \
        ["text", "text", "text", "text", "hardBreak", "text"]
    assert [len(item["content"][0]["content"]) for item in doc["content"][4]["content"]] == [1, 1, 1]
    code = doc["content"][5]
    assert code["attrs"] == {"language": "bash"}
    assert code["content"][0]["text"].split("\n")[1].endswith("grep -i *error*")
    para = doc["content"][1]["content"]
    assert ("critical", ["strong"]) in [(n.get("text"), marks_of(n)) for n in para]
    assert ("10 minutes ago", ["em"]) in [(n.get("text"), marks_of(n)) for n in para]
    assert ("approx.", ["em"]) in [(n.get("text"), marks_of(n)) for n in para]
    assert ("the runbook", "https://wiki.example/runbooks/host_down") in [(n.get("text"), href_of(n)) for n in para]
    assert ("https://am.example/#/alerts", "https://am.example/#/alerts") in [(n.get("text"), href_of(n)) for n in para]
    assert wiki.split("\n\n") == [
        "h1. HostDown on pve-node-03",
        ("Severity: *critical*, started _10 minutes ago_ (_approx._)\n"
         "See [the runbook|https://wiki.example/runbooks/host_down] or [https://am.example/#/alerts]."),
        "h2. Checks",
        "* ping {{pve-node-03}}\n* check *IPMI _power_ state*\\\\(from the jump host)\n* restart node\\_exporter",
        "# drain the node\n# reboot\n# uncordon",
        "{code:bash}\nsystemctl restart node_exporter\njournalctl -u pve-cluster --since \"-10m\" | grep -i *error*\n{code}",
        "----",
        "h6. fine print",
    ]
    text = jm.adf_to_text(doc)
    assert "- check IPMI power state\n  (from the jump host)" in text
    assert "1. drain the node\n2. reboot\n3. uncordon" in text
    assert "the runbook (https://wiki.example/runbooks/host_down)" in text


@pytest.mark.parametrize("text, expected", [
    ("**bold _and em_ inside**", [("bold ", ["strong"]), ("and em", ["em", "strong"]), (" inside", ["strong"])]),
    ("*em **and strong** inside*", [("em ", ["em"]), ("and strong", ["em", "strong"]), (" inside", ["em"])]),
    ("***both***", [("both", ["em", "strong"])]),
    ("__strong__ and _em_", [("strong", ["strong"]), (" and ", []), ("em", ["em"])]),
    ("**code `x*y` in bold**", [("code ", ["strong"]), ("x*y", ["code"]), (" in bold", ["strong"])]),
    ("a*b*c and a_b_c", [("a*b*c and a_b_c", [])]),  # no emphasis inside words
    ("/var/log/*.log and /tmp/*", [("/var/log/*.log and /tmp/*", [])]),  # globs stay text
    ("* not em *", None),  # a bullet item, see the list tests
    ("**unclosed bold", [("**unclosed bold", [])]),
    ("``a ` b``", [("a ` b", ["code"])]),
    ("`unclosed code", [("`unclosed code", [])]),
    ("\\*not em\\* \\[x\\](y)", [("*not em* [x](y)", [])]),
    ("[text](javascript:alert(1))", [("[text](javascript:alert(1))", [])]),  # only http(s)/ftp/mailto links
    ("<https://e.example/a_b_>", [("https://e.example/a_b_", ["link"])]),
])
def test_inline_marks(text, expected):
    if expected is None:
        return
    doc = roundtrips(text)[0]
    assert [(node["text"], marks_of(node)) for node in text_nodes(doc)] == expected


def test_nested_emphasis_in_wiki():
    assert jm.to_wiki("**bold _and em_ inside**") == "*bold _and em_ inside*"
    assert jm.to_wiki("*em **and strong** inside*") == "_em *and strong* inside_"
    assert jm.to_wiki("***both***") == "*_both_*"
    assert jm.to_wiki("**code `x*y` in bold**") == "*code {{x\\*y}} in bold*"
    assert jm.to_wiki("**trailing space **x") == "\\*\\*trailing space \\*\\*x"


@pytest.mark.parametrize("text, href, label", [
    ("see https://grafana.example/d/abc_def/host_overview?var-instance=pve_node_03 now",
     "https://grafana.example/d/abc_def/host_overview?var-instance=pve_node_03", None),
    ("_em https://e.example/a_b_c em_", "https://e.example/a_b_c", None),
    ("**https://e.example/x_y**", "https://e.example/x_y", None),
    ("https://e.example/x_y_.", "https://e.example/x_y", None),  # trailing punctuation is not part of a bare URL
    ("**see https://e.example/**x**/y**", "https://e.example/**x**/y", None),
    ("[dash board](https://e.example/a_(b)_c*d*)", "https://e.example/a_(b)_c*d*", "dash board"),
    ("[**bold** link](https://e.example/x_y)", "https://e.example/x_y", "bold link"),
    ("(https://e.example/x_y).", "https://e.example/x_y", None),
    ("[](https://e.example/empty_label)", "https://e.example/empty_label", None),
])
def test_urls_with_underscores_and_asterisks(text, href, label):
    doc, wiki = roundtrips(text)
    linked = [node for node in text_nodes(doc) if href_of(node)]
    assert {href_of(node) for node in linked} == {href}
    assert "".join(node["text"] for node in linked) == (label or href)
    assert (("[" + href + "]") if label is None else ("|" + href + "]")) in wiki
    assert jm.wiki_to_text(wiki).count(href) == 1


def test_link_label_with_marks_inside_a_word_uses_braces():
    text = "[a](http://u/v)*[b](http://u/v)*"  # two links to one URL become one wiki link
    assert jm.to_wiki(text) == "[a{_}b{_}|http://u/v]"
    assert jm.wiki_to_text(jm.to_wiki(text)) == "ab (http://u/v)" == jm.adf_to_text(adf(text))


def test_wiki_links_keep_their_url_verbatim():
    assert jm.wiki_to_text("[https://e.example/a*b*c&amp;d&#92;]") == "https://e.example/a*b*c&amp;d&#92;"
    assert jm.wiki_to_text("[label *x*|https://e.example/a_b_]") == "label x (https://e.example/a_b_)"


def test_em_does_not_run_into_a_url():
    doc = adf("_em https://e.example/a_b_c em_")
    assert [(n["text"], marks_of(n)) for n in text_nodes(doc)] == [
        ("em ", ["em"]), ("https://e.example/a_b_c", ["em", "link"]), (" em", ["em"])]
    assert jm.to_wiki("_em https://e.example/a_b_c em_") == "_em [https://e.example/a_b_c] em_"
    # an underscore inside the URL never closes the emphasis
    doc = adf("_see https://e.example/a_b x_")
    assert [(n["text"], marks_of(n)) for n in text_nodes(doc)] == [
        ("see ", ["em"]), ("https://e.example/a_b", ["em", "link"]), (" x", ["em"])]


def test_markdown_backslash_escapes():
    doc, wiki = roundtrips("\\*not em\\* a\\\\b C:\\temp")
    assert jm.adf_to_text(doc) == "*not em* a\\b C:\\temp"  # "\\\\" is one backslash, "\\t" is no escape
    assert wiki == "\\*not em\\* a&#92;b C:&#92;temp"


def test_lists():
    doc = adf("- a\n* b\n+ c\n  continued\n\n- d after a blank line\n\n1. one\n1. two\n\n3. three\n\ntext\n\n7. seven alone")
    kinds = [block["type"] for block in doc["content"]]
    assert kinds == ["bulletList", "orderedList", "paragraph", "paragraph"]
    assert len(doc["content"][0]["content"]) == 4
    assert jm.adf_to_text(doc).split("\n") == ["- a", "- b", "- c", "  continued", "- d after a blank line", "",
                                               "1. one", "2. two", "3. three", "", "text", "", "7. seven alone"]
    # a nested item is a line of the item above, its marker kept as text (flattened, never lost)
    assert jm.to_wiki("1. one\n   - nested\n2. two") == "# one\\\\\\- nested\n# two"
    doc = roundtrips("1. one\n   - nested\n2. two")[0]
    assert jm.adf_to_text(doc) == "1. one\n   - nested\n2. two"


def test_code_fences():
    doc, wiki = roundtrips("before\n```python\nprint('*not em*')\n\n  x = {'a': [1]}\n```\nafter")
    assert [block["type"] for block in doc["content"]] == ["paragraph", "codeBlock", "paragraph"]
    assert doc["content"][1] == {"type": "codeBlock", "attrs": {"language": "python"},
                                 "content": [{"type": "text", "text": "print('*not em*')\n\n  x = {'a': [1]}"}]}
    assert "{code:python}\nprint('*not em*')\n\n  x = {'a': [1]}\n{code}" in wiki
    assert jm.to_wiki("```\nplain\n```") == "{noformat}\nplain\n{noformat}"
    assert jm.to_wiki("```text\nplain\n```") == "{noformat}\nplain\n{noformat}"
    assert jm.to_wiki("```yml\na: 1\n```") == "{code:yaml}\na: 1\n{code}"
    assert jm.to_wiki("~~~sh\nls\n~~~") == "{code:bash}\nls\n{code}"
    # code that quotes the wiki macros themselves
    doc, wiki = roundtrips("```\n{noformat}x{noformat}\n```")
    assert wiki == "{code}\n{noformat}x{noformat}\n{code}"
    doc, wiki = roundtrips("```java\n{code} and {noformat}\n```")
    assert "{code}" not in wiki.replace("\\{code\\}", "") and "\\{code\\}" in wiki


def test_unterminated_code_fence_runs_to_the_end():
    doc, wiki = roundtrips("text\n```\nline 1\n\nline *2*")
    assert doc["content"][1] == {"type": "codeBlock", "content": [{"type": "text", "text": "line 1\n\nline *2*"}]}
    assert wiki.endswith("{noformat}\nline 1\n\nline *2*\n{noformat}")


def test_empty_code_fence_and_headings_without_text():
    with pytest.raises(ValueError):
        jm.to_adf("```\n\n```")
    doc = adf("#\n\n# \n\n####### seven")
    assert [block["type"] for block in doc["content"]] == ["paragraph", "paragraph", "paragraph"]
    assert jm.adf_to_text(doc) == "#\n\n#\n\n####### seven"
    roundtrips("#\n\n####### seven")


@pytest.mark.parametrize("text", ["", "   ", "\n\n\t\n", None, "```", "```\n\n```"])
def test_empty_input(text):
    with pytest.raises(ValueError, match="empty"):
        jm.to_adf(text)
    with pytest.raises(ValueError):
        jm.rich_text(text, 3)
    assert jm.to_wiki(text) == ""
    assert jm.rich_text(text, 2) == ""
    assert jm.same_text(text or "", "")


def test_rich_text_by_api():
    assert jm.rich_text("**x**", 3) == {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "x", "marks": [{"type": "strong"}]}]}]}
    assert jm.rich_text("**x**", 2) == "*x*"


def test_unicode():
    text = "Störung: **Überhitzung** 🔥 auf `knoten-ä` — naïve café 日本語\u00a0x"
    plain = "Störung: Überhitzung 🔥 auf knoten-ä — naïve café 日本語\u00a0x"
    doc, wiki = roundtrips(text)
    assert jm.adf_to_text(doc) == plain
    assert jm.wiki_to_text(wiki) == plain
    assert wiki == "Störung: *Überhitzung* 🔥 auf {{knoten-ä}} — naïve café 日本語\u00a0x"
    assert jm.same_text("Cafe\u0301", "Café")  # NFC


def test_carriage_returns_and_control_characters():
    doc, wiki = roundtrips("a\r\nb\rc")
    assert sum(node["type"] == "hardBreak" for node in nodes(doc)) == 2
    assert wiki == "a\nb\nc"


def test_terminal_colours_and_control_characters_are_dropped():
    text = "\x1b[31mERROR\x1b[0m disk \x00full\x07 on \udcff host\tx"
    doc = roundtrips(text)[0]
    assert jm.adf_to_text(doc) == "ERROR disk full on \ufffd host\tx"
    assert jm.to_wiki(text) == "ERROR disk full on \ufffd host\tx"
    json.dumps(doc).encode("utf-8")  # sendable


def test_wiki_code_languages():
    assert jm.to_wiki("```cobol\nMOVE 1 TO X.\n```") == "{noformat}\nMOVE 1 TO X.\n{noformat}"  # not a Jira formatter
    assert jm.to_wiki("```SQL\nselect 1\n```") == "{code:sql}\nselect 1\n{code}"
    assert jm.to_adf("```cobol\nx\n```")["content"][0]["attrs"] == {"language": "cobol"}


def test_only_whitespace_lines_inside_text():
    doc = roundtrips("a\n   \nb")[0]
    assert [block["type"] for block in doc["content"]] == ["paragraph", "paragraph"]


# ---------------------------------------------------------------------------------------------------------------------
# Plain text back
# ---------------------------------------------------------------------------------------------------------------------
def test_adf_to_text_reads_what_jira_returns():
    # Jira Cloud hands documents back with its own node kinds and attributes
    doc = {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "attrs": {"localId": "p1"}, "content": [
            {"type": "text", "text": "Hi "}, {"type": "mention", "attrs": {"id": "5b10", "text": "@Alert Bot"}},
            {"type": "text", "text": " see "}, {"type": "inlineCard", "attrs": {"url": "https://e.example/x"}},
            {"type": "text", "text": " "}, {"type": "emoji", "attrs": {"shortName": ":fire:", "text": "🔥"}}]},
        {"type": "orderedList", "attrs": {"order": 3}, "content": [
            {"type": "listItem", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "three"}]},
                                             {"type": "bulletList", "content": [{"type": "listItem", "content": [
                                                 {"type": "paragraph", "content": [{"type": "text", "text": "sub"}]}]}]}]}]},
        {"type": "table", "content": [{"type": "tableRow", "content": [
            {"type": "tableHeader", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "k"}]}]},
            {"type": "tableCell", "content": [{"type": "paragraph", "content": [{"type": "text", "text": "v"}]}]}]}]},
        {"type": "panel", "attrs": {"panelType": "info"}, "content": [{"type": "paragraph", "content": [
            {"type": "text", "text": "in a panel"}]}]},
        {"type": "mediaSingle", "content": [{"type": "media", "attrs": {"id": "x", "type": "file"}}]}]}
    assert jm.adf_to_text(doc) == "Hi @Alert Bot see https://e.example/x 🔥\n\n3. three\n   - sub\n\nk | v\n\nin a panel"
    assert jm.adf_to_text(None) == "" and jm.adf_to_text("already text") == "already text"
    assert jm.adf_to_text(doc["content"][:1]) == "Hi @Alert Bot see https://e.example/x 🔥"


def test_wiki_to_text_reads_human_wiki():
    wiki = ("h2. Title\n* a\n** nested\n* b\n# one\n# two\nplain *bold* _em_ -strike- +ins+ {{mono}} ??cite?? "
            "{color:red}red{color} [link|http://e.example] [http://e.example/bare] [~admin]\n"
            "{code:java}\nint *x* = 1;\n{code}\n----\n||h1||h2||\n|c1|c2|\nline\\\\break &#92; \\{escaped\\}")
    assert jm.wiki_to_text(wiki).split("\n") == [
        "Title", "- a", "  - nested", "- b", "1. one", "2. two",
        "plain bold em strike ins mono cite red link (http://e.example) http://e.example/bare ~admin",
        "int *x* = 1;", "---", "h1 | h2", "c1 | c2", "line", "break \\ {escaped}"]
    assert jm.wiki_to_text(None) == ""


# ---------------------------------------------------------------------------------------------------------------------
# same_text: the idempotence check of comments and descriptions
# ---------------------------------------------------------------------------------------------------------------------
def test_same_text_across_flavours():
    text = "Alert **HostDown** on `pve-node-03`\nsee https://am.example/#/alerts"
    doc, wiki = jm.to_adf(text), jm.to_wiki(text)
    for a in (text, doc, wiki):
        for b in (text, doc, wiki):
            assert jm.same_text(a, b)
    # what Jira may do to a stored document: split text nodes, add attributes, re-space
    rewritten = json.loads(json.dumps(doc))
    first = rewritten["content"][0]
    first["attrs"] = {"localId": "abc"}
    first["content"][0:1] = [{"type": "text", "text": "Alert"}, {"type": "text", "text": "  "}]
    assert jm.same_text(rewritten, text)
    assert jm.same_text("Alert HostDown on pve-node-03\nsee https://am.example/#/alerts", doc)  # plain text too


@pytest.mark.parametrize("a, b", [
    ("Alert HostDown", "Alert HostUp"),
    ("[runbook](https://wiki.example/a)", "[runbook](https://wiki.example/b)"),
    ("line 1\nline 2", "line 2\nline 1"),
    ("", "x"),
    (None, "x"),
])
def test_same_text_sees_differences(a, b):
    assert not jm.same_text(a, b)
    assert not jm.same_text(jm.to_wiki(a) if a else a, jm.to_adf(b))


def test_same_text_ignores_whitespace_layout_only():
    assert jm.same_text("a   b\n\n\nc  ", " a b\nc")
    assert jm.same_text(jm.to_adf("a\n\nb"), jm.to_wiki("a\nb"))
    assert not jm.same_text("ab", "a b")


# ---------------------------------------------------------------------------------------------------------------------
# Field limits
# ---------------------------------------------------------------------------------------------------------------------
def _u16(text):
    return len(text.encode("utf-16-le")) // 2


def _stored_sizes(text):
    """What Jira counts: the text (as sent on v2 it is its wiki markup) and the ADF document as compact JSON (v3)."""
    return (_u16(text), _u16(jm.to_wiki(text)),
            _u16(json.dumps(jm.to_adf(text), separators=(",", ":"), ensure_ascii=False)))


def test_clip_summary_single_line():
    assert jm.clip_summary("  FIRING\tHostDown\r\npve-node-03\x00\x07 \u2028 done  ") == "FIRING HostDown pve-node-03 done"
    assert jm.clip_summary(None) == "" and jm.clip_summary("") == ""
    exact = "x" * 255
    assert jm.clip_summary(exact) == exact


def test_clip_summary_cuts_long_text():
    words = " ".join("word%03d" % i for i in range(100))
    clipped = jm.clip_summary("[S1] HostDown: " + words)
    assert len(clipped) <= 255 and clipped.endswith("…") and "\n" not in clipped
    assert clipped[:-1].rstrip() == clipped[:-1] and ("[S1] HostDown: " + words).startswith(clipped[:-1])
    assert clipped[-2] != " " and re.search(r"word\d{3}…$", clipped)  # cut at a word
    nospace = jm.clip_summary("y" * 400)
    assert nospace == "y" * 254 + "…"


def test_clip_summary_counts_like_jira():
    emoji = "🔥" * 200  # 400 UTF-16 units: Jira counts 400, Python 200
    clipped = jm.clip_summary(emoji)
    assert _u16(clipped) <= 255 and clipped.endswith("…") and set(clipped[:-1]) == {"🔥"}
    family = "👨\u200d👩\u200d👧" * 60
    clipped = jm.clip_summary(family)
    assert _u16(clipped) <= 255 and not clipped[:-1].endswith("\u200d")
    accents = "e\u0301" * 300
    clipped = jm.clip_summary(accents)
    assert _u16(clipped) <= 255 and clipped[:-1].endswith("\u0301")


def test_clip_description_short_text_unchanged():
    details = firing()["details"]
    assert jm.clip_description(details) == details
    assert jm.clip_description(None) == ""


def test_clip_description_cuts_at_a_line_boundary():
    lines = ["line %05d: value=%s" % (i, "v" * (i % 37)) for i in range(3000)]
    text = "\n".join(lines)
    clipped = jm.clip_description(text)
    sizes = _stored_sizes(clipped)
    assert max(sizes) <= 32767
    body, notice = clipped.rsplit("\n\n", 1)
    kept = body.split("\n")
    assert kept == lines[:len(kept)] and len(kept) < len(lines)
    assert notice == "[truncated %d chars]" % (len(text) - len(body))
    assert max(sizes) > 32767 - 500  # not needlessly short (the ADF JSON of 3000 short lines is the binding size)
    roundtrips(clipped)
    small = jm.clip_description(text, limit=500)
    kept = small.split("\n\n", maxsplit=1)[0].split("\n")
    assert max(_stored_sizes(small)) <= 500 and small.endswith("chars]") and kept == lines[:len(kept)]


def test_clip_description_single_long_line_and_limits():
    clipped = jm.clip_description("z" * 40000)
    assert max(_stored_sizes(clipped)) <= 32767 and clipped.startswith("z" * 32000)
    assert clipped.endswith("[truncated %d chars]" % (40000 - len(clipped.split("\n\n", maxsplit=1)[0])))
    with pytest.raises(ValueError):
        jm.clip_description("z" * 300, limit=150)
    assert jm.clip_description("z" * 20, limit=150) == "z" * 20  # fits: the limit is not checked


def test_clip_description_closes_an_open_fence():
    text = "intro\n```\n" + "\n".join("log line %d *x*" % i for i in range(4000))
    clipped = jm.clip_description(text, limit=2000)
    assert max(_stored_sizes(clipped)) <= 2000
    doc = adf(clipped)
    assert [block["type"] for block in doc["content"]] == ["paragraph", "codeBlock", "paragraph"]
    assert jm.adf_to_text(doc).endswith("[truncated %d chars]" % (len(text) - len(clipped.split("\n```\n\n", maxsplit=1)[0])))


def test_clip_description_fits_every_stored_form():
    # a backslash is 5 characters in wiki markup (&#92;) and 2 in JSON: the clip makes what is stored fit, not the input
    text = "\n".join("C:\\a\\b\\c\\d %d" % i for i in range(6000))
    assert _u16(text) < 100000
    clipped = jm.clip_description(text, limit=4000)
    sizes = _stored_sizes(clipped)
    assert max(sizes) <= 4000 and max(sizes) > 3500 and sizes[1] > 2 * sizes[0]
    assert text.startswith(clipped.rsplit("\n\n", 1)[0])


def test_jira_label():
    assert jm.jira_label("labops-0123abcd") == "labops-0123abcd"
    assert jm.jira_label("  Host Down\tin  DC 1 ") == "Host_Down_in_DC_1"
    assert jm.jira_label("MixedCase") == "MixedCase"
    assert jm.jira_label("Störung 🔥") == "Störung_🔥"
    for bad in ("", "   ", "\t\n", None):
        with pytest.raises(ValueError):
            jm.jira_label(bad)
    with pytest.raises(ValueError):
        jm.jira_label("x", max_length=10)


def test_jira_label_long_is_deterministic_and_distinct():
    base = "alertgroup-" + "k" * 300
    one, two = jm.jira_label(base + "1"), jm.jira_label(base + "2")
    assert one == jm.jira_label(base + "1")
    assert one != two and len(one) == 255 == len(two) and one[:200] == two[:200]
    assert not any(char.isspace() for char in one) and re.search(r"_[0-9a-f]{16}$", one)
    short = jm.jira_label("a b " * 50, max_length=40)
    assert len(short) == 40 and " " not in short
    emoji = jm.jira_label("🔥" * 200)
    assert _u16(emoji) <= 255


# ---------------------------------------------------------------------------------------------------------------------
# Very long and hostile inputs stay fast
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "*" * 32767, "_" * 32767, "*a " * 11000, "_a " * 11000, "x" + "`" * 32767, "`a``" * 8000, "[" * 32767, "[a](" * 8000,
    "**a " * 8000, "x\n" * 16000, "- item\n" * 5000, "http://" * 4000 + "x", "\\" * 32767,
])
def test_hostile_inputs_are_linear_enough(text):
    started = time.monotonic()
    doc = adf(text)
    wiki = jm.to_wiki(text)
    assert jm.same_text(doc, wiki)
    assert jm.wiki_to_text(text) is not None  # the same text read as (human) wiki markup
    clipped = jm.clip_description(text * 2, limit=20000)
    assert max(_stored_sizes(clipped)) <= 20000
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------------------------------------------------------------
# Through Jira's REST API (the simulator, real HTTP): what is sent is accepted and reads back as the same text
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim():
    server = start_in_thread("jira")
    yield server
    server.stop()


def _call(sim, method, path, body=None, auth=("bot@example.com", "jira-api-token")):
    url = urllib.parse.urlsplit(sim.url)
    headers = {"Accept": "application/json", "Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()}
    data = None
    if body is not None:
        data = json.dumps(body).encode("utf-8")
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, (json.loads(payload) if payload else None)
    finally:
        conn.close()


def _issue_fields(event, api):
    return {"project": {"key": "OPS"}, "issuetype": {"name": "Incident"},
            "summary": jm.clip_summary(event["title"] + "\n" + "x" * 400),
            "description": jm.rich_text(jm.clip_description(event["details"]), api),
            "labels": [jm.jira_label("labops-" + "k" * 300), jm.jira_label("Alert Manager")]}


@pytest.mark.parametrize("mode, api, auth", [("cloud", 3, ("bot@example.com", "jira-api-token")),
                                             ("datacenter", 2, ("itsm.bot", "bot-pw"))])
def test_jira_takes_the_description_comment_summary_and_labels(sim, mode, api, auth):
    sim.reset()
    sim.set_config(mode=mode)
    event = firing()
    status, created = _call(sim, "POST", f"/rest/api/{api}/issue", {"fields": _issue_fields(event, api)}, auth)
    assert status == 201, created
    comment = "Repeated **FIRING**: `HostDown` on pve-node-03, see https://am.example/#/alerts?f=a_b\n- one\n- two"
    status, posted = _call(sim, "POST", f"/rest/api/{api}/issue/{created['key']}/comment", {"body": jm.rich_text(comment, api)}, auth)
    assert status == 201, posted
    status, issue = _call(sim, "GET", f"/rest/api/{api}/issue/{created['key']}?fields=summary,description,labels,comment",
                          auth=auth)
    assert status == 200, issue
    fields = issue["fields"]
    assert isinstance(fields["description"], dict if api == 3 else str)
    assert jm.same_text(fields["description"], event["details"])
    assert not jm.same_text(fields["description"], firing(description="another description")["details"])
    assert jm.same_text(fields["comment"]["comments"][0]["body"], comment)
    assert len(fields["summary"]) <= 255 and fields["summary"].startswith(event["title"] + " x")
    assert sorted(fields["labels"]) == sorted([jm.jira_label("labops-" + "k" * 300), "Alert_Manager"])
    if api == 3:  # Cloud v2 reads the same issue as plain text: still the same text
        status, legacy = _call(sim, "GET", f"/rest/api/2/issue/{created['key']}?fields=description", auth=auth)
        assert status == 200 and isinstance(legacy["fields"]["description"], str)
        assert jm.same_text(legacy["fields"]["description"], event["details"])


def test_jira_rejects_the_wrong_flavour(sim):
    """The flavour matters: a wiki string where v3 wants ADF is a 400 (so rich_text must be given the right api)."""
    sim.reset()
    sim.set_config(mode="cloud")
    fields = _issue_fields(firing(), 2)
    status, body = _call(sim, "POST", "/rest/api/3/issue", {"fields": fields})
    assert status == 400 and "description" in body["errors"]
