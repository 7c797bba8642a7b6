"""Markdown -> a small tree of sections, paragraphs, lists and tables.

The reader never looks at raw lines: markdown-it-py parses the document
(CommonMark plus tables) and this module walks its syntax tree. What comes out
is deliberately plain: a :class:`Section` per heading with the blocks under it,
and every run of inline text split into :class:`Line` objects (one per source
line), each knowing its leading **bold label**, its `code spans` and its text
with emoji removed. A pipe table inside a fenced code block (a common way to
draw a dependency matrix) is read as a table too.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

_CHECKBOX = re.compile(r"^\s*\[[ xX~-]?\]\s*")
_PLAIN_LABEL = re.compile(r"^([^\W\d_][\w ./&'()-]{0,40}?)\s*:\s*(.*)$")
_FRONT = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_SPACES = re.compile(r"[ \t]+")


def clean(text: str) -> str:
    """``text`` without emoji / pictographs, variation selectors and doubled spaces."""
    kept = [
        ch
        for ch in text
        if unicodedata.category(ch) not in ("So", "Cs", "Co") and ch not in "\ufe0f\ufe0e\u200d"
    ]
    return _SPACES.sub(" ", "".join(kept)).strip()


@dataclass
class Line:
    """One line of inline text.

    ``text`` keeps code spans in backticks; ``label`` is the leading label (bold,
    or plain ``Word:``; ``label_bold`` says which) and ``value`` what follows it;
    ``bold`` is a leading bold phrase that is not a label (``**SRCH-1: Config**``).
    """

    text: str
    codes: list[str] = field(default_factory=list)
    label: str | None = None
    label_bold: bool = False
    value: str = ""
    value_codes: list[str] = field(default_factory=list)
    bold: str | None = None
    lineno: int = 0  # 1-based line in the source; 0 when unknown
    checkbox: bool = False  # the line started with a task-list box ("- [ ] ...")


@dataclass
class Para:
    lines: list[Line]


@dataclass
class ListItem:
    lines: list[Line]  # the item's own text (first paragraph)
    blocks: list[Block]  # what is nested under it (further paragraphs, sub-lists)
    number: int | None = None  # its number in an ordered list

    @property
    def line(self) -> Line:
        return self.lines[0] if self.lines else Line(text="")


@dataclass
class ListBlock:
    ordered: bool
    items: list[ListItem]


@dataclass
class Table:
    header: list[str]
    rows: list[list[Line]]
    lineno: int = 0


@dataclass
class Code:
    info: str
    content: str
    lineno: int = 0  # the line of the first content line


Block = Para | ListBlock | Table | Code


@dataclass
class Section:
    level: int
    heading: Line
    blocks: list[Block] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)
    outline: bool = False  # its numbered siblings number the document's parts, not its teams

    @property
    def title(self) -> str:
        return self.heading.text


@dataclass
class Document:
    title: str | None
    preamble: list[Block]
    sections: list[Section]  # top-level sections (below the title, if any)
    front: dict[str, str] = field(default_factory=dict)  # YAML front matter (string values)
    collapsed: list[tuple[int, int]] = field(default_factory=list)  # <details> line ranges

    def is_collapsed(self, lineno: int) -> bool:
        """Whether line ``lineno`` sits inside a collapsed ``<details>`` block."""
        return any(a <= lineno <= b for a, b in self.collapsed)


# ---------------------------------------------------------------- inline


def _make_line(parts: list[tuple[str, str]]) -> Line:
    """Build a :class:`Line` from (kind, text) parts; kind is text, code or strong."""
    text = clean("".join(f"`{t}`" if k == "code" else t for k, t in parts))
    box = bool(_CHECKBOX.match(text))
    text = _CHECKBOX.sub("", text)
    codes = [t.strip() for k, t in parts if k == "code" and t.strip()]
    line = Line(text=text, codes=codes, checkbox=box)
    # a leading bold phrase (emoji and checkboxes before it do not count)
    lead = [(k, t) for k, t in parts if not (k == "text" and not clean(_CHECKBOX.sub("", t)))]
    if lead and lead[0][0] == "strong":
        bold = clean(lead[0][1])
        rest_parts = parts[parts.index(lead[0]) + 1 :]
        rest = clean("".join(f"`{t}`" if k == "code" else t for k, t in rest_parts))
        rest_codes = [t.strip() for k, t in rest_parts if k == "code" and t.strip()]
        if bold.endswith(":"):
            line.label, line.value = bold[:-1].strip(), rest
        elif rest.startswith(":"):
            line.label, line.value = bold, rest[1:].strip()
        else:
            line.bold = bold
        if line.label is not None:
            line.label_bold = True
            line.value_codes = rest_codes
        return line
    m = _PLAIN_LABEL.match(text)
    if m and "`" not in m.group(1):
        line.label, line.value = m.group(1).strip(), m.group(2).strip()
        line.value_codes = [c for c in codes if f"`{c}`" in line.value]
    return line


def _inline_lines(node: SyntaxTreeNode) -> list[Line]:
    first = node.map[0] + 1 if node.map else 0
    lines: list[list[tuple[str, str]]] = [[]]
    strong = 0
    for child in node.children:
        kind = child.type
        if kind in ("softbreak", "hardbreak"):
            lines.append([])
        elif kind == "code_inline":
            lines[-1].append(("code", child.content))
        elif kind == "strong":
            lines[-1].append(("strong", _plain(child)))
            strong += 1
        elif kind in ("text", "html_inline"):
            lines[-1].append(("text", child.content))
        else:  # em, link, image, s: their text
            lines[-1].append(("text", _plain(child)))
    out = []
    for n, parts in enumerate(lines):
        if "".join(t for _, t in parts).strip():
            line = _make_line(parts)
            line.lineno = first + n if first else 0
            out.append(line)
    return out


def _plain(node: SyntaxTreeNode) -> str:
    if node.type in ("text", "code_inline", "html_inline"):
        return node.content
    if node.type == "code_inline":
        return f"`{node.content}`"
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(_plain(c) for c in node.children)


def _lines_of(node: SyntaxTreeNode) -> list[Line]:
    inline = next((c for c in node.children if c.type == "inline"), None)
    return _inline_lines(inline) if inline is not None else []


# ---------------------------------------------------------------- blocks


def _fenced_table(content: str, lineno: int = 0) -> Table | None:
    """A pipe table drawn inside a code fence, or None."""
    rows = [r for r in content.splitlines() if r.strip()]
    if len(rows) < 3 or not all("|" in r for r in rows[:2]):
        return None
    sep = rows[1].replace("|", "").replace(":", "").replace("-", "").replace("+", "").strip()
    if sep:
        return None

    def cells(row: str) -> list[str]:
        row = row.strip()
        if row.startswith("|"):
            row = row[1:]
        if row.endswith("|"):
            row = row[:-1]
        return [clean(c) for c in row.split("|")]

    header = cells(rows[0])
    body = []
    for n, r in enumerate(content.splitlines()):
        if n < 2 or "|" not in r or not r.strip():
            continue
        row = [_make_line([("text", c)]) for c in cells(r)]
        for cell in row:
            cell.lineno = lineno + n if lineno else 0
        body.append(row)
    return Table(header=header, rows=body, lineno=lineno)


def _table(node: SyntaxTreeNode) -> Table:
    header: list[str] = []
    rows: list[list[Line]] = []
    for part in node.children:
        for tr in part.children:
            cells = [_inline_lines(c.children[0]) if c.children else [] for c in tr.children]
            merged = [
                Line(
                    text=" ".join(ln.text for ln in cell),
                    codes=[x for ln in cell for x in ln.codes],
                    lineno=tr.map[0] + 1 if tr.map else 0,
                )
                if cell
                else Line(text="")
                for cell in cells
            ]
            if part.type == "thead":
                header = [m.text for m in merged]
            else:
                rows.append(merged)
    return Table(header=header, rows=rows, lineno=node.map[0] + 1 if node.map else 0)


def _blocks(nodes: list[SyntaxTreeNode]) -> list[Block]:
    out: list[Block] = []
    for node in nodes:
        if node.type == "paragraph":
            lines = _lines_of(node)
            if lines:
                out.append(Para(lines))
        elif node.type in ("bullet_list", "ordered_list"):
            items = []
            ordered = node.type == "ordered_list"
            start = int(str(node.attrs.get("start", 1))) if ordered else 0
            for n, li in enumerate(node.children):
                first = li.children[0] if li.children else None
                own = _lines_of(first) if first is not None and first.type == "paragraph" else []
                rest = li.children[1:] if own else li.children
                number = start + n if ordered else None
                items.append(ListItem(lines=own, blocks=_blocks(list(rest)), number=number))
            out.append(ListBlock(ordered=node.type == "ordered_list", items=items))
        elif node.type == "table":
            out.append(_table(node))
        elif node.type in ("fence", "code_block"):
            at = node.map[0] + (2 if node.type == "fence" else 1) if node.map else 0
            table = _fenced_table(node.content, at)
            out.append(
                table
                if table is not None
                else Code(info=node.info.strip(), content=node.content, lineno=at)
            )
        elif node.type == "blockquote":
            out.extend(_blocks(list(node.children)))
    return out


def parse_markdown(text: str) -> Document:
    """Parse ``text`` into a :class:`Document` (never fails: any text is some document)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").lstrip("\ufeff")
    front: dict[str, str] = {}
    m = _FRONT.match(text)
    if m:
        front = _front_matter(m.group(1))
        if front or m.group(1).strip() == "":
            text = "\n" * m.group(0).count("\n") + text[m.end() :]  # keep the line numbers
    md = MarkdownIt("commonmark").enable("table")
    root = SyntaxTreeNode(md.parse(text))
    title: str | None = None
    preamble: list[Block] = []
    top: list[Section] = []
    stack: list[Section] = []
    pending: list[SyntaxTreeNode] = []

    def flush() -> None:
        blocks = _blocks(pending)
        pending.clear()
        if stack:
            stack[-1].blocks.extend(blocks)
        else:
            preamble.extend(blocks)

    collapsed: list[tuple[int, int]] = []
    opened: list[int] = []
    h1s = sum(1 for n in root.children if n.type == "heading" and n.tag == "h1")
    # several "# ..." headings are the document's sections, not one title over them
    for node in root.children:
        if node.type == "html_block" and node.map:
            opens = len(re.findall(r"<details\b", node.content, re.IGNORECASE))
            closes = len(re.findall(r"</details\s*>", node.content, re.IGNORECASE))
            opened.extend([node.map[0] + 1] * opens)
            for _ in range(min(closes, len(opened))):
                collapsed.append((opened.pop(), node.map[1]))
        if node.type != "heading":
            pending.append(node)
            continue
        flush()
        level = int(node.tag[1:])
        lines = _lines_of(node)
        heading = lines[0] if lines else Line(text="")
        if level == 1 and title is None and not top and not stack and h1s == 1:
            title = heading.text
            continue
        section = Section(level=level, heading=heading)
        while stack and stack[-1].level >= level:
            stack.pop()
        (stack[-1].children if stack else top).append(section)
        stack.append(section)
    flush()
    collapsed.extend((start, len(text.split("\n"))) for start in opened)  # never closed
    return Document(
        title=title,
        preamble=preamble,
        sections=top,
        front=front,
        collapsed=collapsed,
    )


def _front_matter(body: str) -> dict[str, str]:
    """The scalar fields of a YAML front matter block ({} when it is not a YAML mapping)."""
    import yaml

    try:
        data = yaml.safe_load(body)
    except yaml.YAMLError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(k).lower(): str(v).strip()
        for k, v in data.items()
        if isinstance(v, str | int | float) and not isinstance(v, bool) and str(v).strip()
    }
