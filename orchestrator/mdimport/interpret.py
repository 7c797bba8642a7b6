"""Sections, fields and tables -> units of work (future teams) with their facts.

The walk is structural: a heading or list item is a *unit* when it is named
like one ("Team 2: ...", "Stream A: ...", "SRCH-101: ...") or carries unit
fields (**Task:**, **Deliverables:**, **Dependencies:** ...), or when it sits in
a section that lists units ("## Work Items", "### Phase 1", a "Tasks:" list).
Phases group units and say how they chain (sequential / parallel). Everything
found but not used is kept in ``unplaced`` so the user sees it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from orchestrator.mdimport import words
from orchestrator.mdimport.parse import Block, Code, Document, Line, ListBlock, Para, Section, Table

_STRONG_FIELDS = {"task", "deliverables", "depends", "blocks"}
_ANY_FIELDS = _STRONG_FIELDS | {"role", "estimate", "acceptance"}
_NONE = re.compile(
    r"^(?:none|n/?a|nothing|no dependencies|independent|-+|\u2014|\u2013)\b|^-*$", re.IGNORECASE
)
_PAREN = re.compile(r"\(([^()]*)\)")
_TRAILING_EST = re.compile(
    rf"\s*[-\u2013\u2014:,]\s*(?P<est>{words.ESTIMATE.pattern})\s*$", re.IGNORECASE
)
_KEY = r"(?:\d+(?:\.\d+)*[A-Za-z]?|[A-Za-z])\b"
_REF = re.compile(
    rf"\b(?P<kind>{words.UNIT_WORDS})s?(?:\s+#?\s*|\s*#\s*)(?P<keys>{_KEY}(?:\s*(?:-|\u2013|\u2014|to|through|,|and|&|\+|/)\s*{_KEY})*)",
    re.IGNORECASE,
)
_RUNNERS = re.compile(
    r"^(?:pytest|python|py\.test|npm|npx|yarn|pnpm|bun|make|go|cargo|tox|nox|uv|poetry|hatch|bash|sh|\./|"
    r"mvn|gradle|\./gradlew|dotnet|bundle|rake|rspec|jest|vitest|phpunit|ctest|just|deno|mix|swift|flutter)\b"
)
_COMMAND_LINE = re.compile(
    r"\b(?:run|runs|running|execute|test|tests|suite|check|checks)\b", re.IGNORECASE
)
_KNOWN_FILES = {
    "dockerfile",
    "makefile",
    "procfile",
    "justfile",
    "gemfile",
    "rakefile",
    "license",
    "readme",
}
MAX_RANGE = 100
"""The longest range of team numbers a reference may span ("Teams 1-4")."""
_PATH = re.compile(r"^[\w.@~+-][\w./@*?{}\[\]+,-]*$")


@dataclass
class Unit:
    source: str
    kind: str | None
    key: str | None
    ticket: str | None
    title: str
    role_text: str | None = None
    estimate_text: str | None = None
    fields: dict[str, list[list[Line]]] = field(default_factory=dict)
    prose: list[str] = field(default_factory=list)
    group: Group | None = None
    id: str = ""

    def add(self, name: str, lines: list[Line]) -> None:
        self.fields.setdefault(name, []).append(lines)


@dataclass
class Group:
    title: str
    phase: bool
    mode: str | None  # "sequential", "parallel" or None
    units: list[Unit] = field(default_factory=list)
    acceptance: list[str] = field(default_factory=list)


@dataclass
class Findings:
    """What the walk found; :mod:`orchestrator.mdimport.build` turns it into plan data."""

    title: str | None
    units: list[Unit] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    tables: list[tuple[str, Table]] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)


def _item_lines(blocks: list[Block]) -> list[Line]:
    """Every line of every list item / paragraph in ``blocks``, flattened in order."""
    out: list[Line] = []
    for block in blocks:
        if isinstance(block, Para):
            out.extend(block.lines)
        elif isinstance(block, ListBlock):
            for item in block.items:
                out.extend(item.lines)
                out.extend(_item_lines(item.blocks))
    return out


def _has_fields(blocks: list[Block], names: set[str]) -> bool:
    for block in blocks:
        lines = block.lines if isinstance(block, Para) else []
        if isinstance(block, ListBlock):
            lines = [item.line for item in block.items]
        for ln in lines:
            if not ln.label or words.field_name(ln.label) not in names:
                continue
            if not ln.value and words.UNIT_LIST.match(ln.label):  # "Tasks:" over a list of units
                continue
            return True
    return False


def _is_unit_section(sec: Section) -> bool:
    kind, key, ticket = split_title(sec.title)[:3]
    return bool(kind and key) or bool(ticket) or _has_fields(sec.blocks, _STRONG_FIELDS)


def split_title(
    text: str,
) -> tuple[str | None, str | None, str | None, str, str | None, str | None]:
    """A unit's line -> (kind, key, ticket, title, role text, estimate text)."""
    role: str | None = None
    estimate: str | None = None
    m = _TRAILING_EST.search(text)
    if m:
        estimate, text = m.group("est"), text[: m.start()]
    kept = []
    for part in _PAREN.findall(text):
        if estimate is None and words.ESTIMATE.fullmatch(part.strip()):
            estimate = part.strip()
        elif role is None and words.looks_like_role(part):
            role = part.strip()
        else:
            kept.append(part)
            continue
        text = text.replace(f"({part})", " ")
    text = re.sub(r"\s+", " ", text).strip(" -:\u2013\u2014")
    kind, key, ticket, title = words.unit_head(text)
    return kind, key, ticket, title.strip(" -:\u2013\u2014"), role, estimate


class _Walker:
    def __init__(self, doc: Document) -> None:
        self.found = Findings(title=doc.title)
        self.doc = doc

    # ------------------------------------------------------------ units
    def new_unit(self, text: str, group: Group | None) -> Unit:
        kind, key, ticket, title, role, est = split_title(text)
        unit = Unit(source=text, kind=kind, key=key, ticket=ticket, title=title or text)
        unit.role_text, unit.estimate_text, unit.group = role, est, group
        self.found.units.append(unit)
        if group is not None:
            group.units.append(unit)
        return unit

    def field_lines(
        self, owner: Unit | None, lines: list[Line], where: str, group: Group | None
    ) -> None:
        for ln in lines:
            name = words.field_name(ln.label) if ln.label else None
            if name is not None:
                value = [Line(text=ln.value, codes=ln.value_codes)] if ln.value else []
                self.put(owner, name, ln.label or "", value, where, group)
            elif owner is not None:
                owner.prose.append(ln.text)
            else:
                self.found.unplaced.append(f"{where}: {ln.text}")

    def put(
        self,
        owner: Unit | None,
        name: str,
        label: str,
        value: list[Line],
        where: str,
        group: Group | None,
    ) -> None:
        if name == "ignore":
            return
        if owner is not None:
            owner.add(name, value)
        elif name == "acceptance" and group is not None:
            group.acceptance.extend(v.text for v in value if v.text)
        elif name == "test" or (name == "checks" and group is None):
            self.found.tests.extend(value[0].codes if value else [])
        else:
            text = "; ".join(v.text for v in value)
            self.found.unplaced.append(f"{where}: {label}: {text}".rstrip(": "))

    # ------------------------------------------------------------ blocks
    def blocks(
        self,
        blocks: list[Block],
        where: str,
        *,
        group: Group | None,
        owner: Unit | None,
        listing: bool,
    ) -> None:
        i = 0
        while i < len(blocks):
            block = blocks[i]
            nxt = blocks[i + 1] if i + 1 < len(blocks) else None
            if isinstance(block, Para):
                last = block.lines[-1]
                opens_list = (
                    isinstance(nxt, ListBlock) and last.label is not None and not last.value
                )
                self.field_lines(
                    owner, block.lines[:-1] if opens_list else block.lines, where, group
                )
                if opens_list and isinstance(nxt, ListBlock):
                    label = last.label or ""
                    if owner is None and words.UNIT_LIST.match(label):
                        self.list_units(nxt, where, group)
                    else:
                        name = words.field_name(label)
                        value = []
                        for item in nxt.items:
                            value.extend(item.lines[:1])
                            for ln in item.lines[1:]:  # a label line lazily glued to the item
                                if ln.label and words.field_name(ln.label):
                                    self.field_lines(owner, [ln], where, group)
                                else:
                                    value.append(ln)
                            value.extend(_item_lines(item.blocks))
                        if name is None and owner is not None:
                            owner.prose.append(f"{label}: " + "; ".join(v.text for v in value))
                        elif name is None:
                            self.found.unplaced.append(
                                f"{where}: {label}: " + "; ".join(v.text for v in value)
                            )
                        else:
                            self.put(owner, name, label, value, where, group)
                    i += 1
            elif isinstance(block, ListBlock):
                if listing and owner is None:
                    self.list_units(block, where, group)
                else:
                    self.list_fields(block, where, group, owner)
            elif isinstance(block, Table):
                self.found.tables.append((where, block))
            elif isinstance(block, Code) and owner is None:
                self.found.unplaced.append(f"{where}: a code block ({block.info or 'no language'})")
            i += 1

    def list_units(self, block: ListBlock, where: str, group: Group | None) -> None:
        for item in block.items:
            if not item.line.text:
                continue
            unit = self.new_unit(item.line.text, group)
            self.field_lines(unit, item.lines[1:], where, group)
            self.blocks(item.blocks, unit.source, group=group, owner=unit, listing=False)

    def list_fields(
        self, block: ListBlock, where: str, group: Group | None, owner: Unit | None
    ) -> None:
        for item in block.items:
            line = item.line
            name = words.field_name(line.label) if line.label else None
            if name is not None:
                value = [Line(text=line.value, codes=line.value_codes)] if line.value else []
                value += list(item.lines[1:]) + _item_lines(item.blocks)
                self.put(owner, name, line.label or "", value, where, group)
            elif owner is None and _has_fields(item.blocks, _ANY_FIELDS):
                unit = self.new_unit(line.text, group)
                self.field_lines(unit, item.lines[1:], where, group)
                self.blocks(item.blocks, unit.source, group=group, owner=unit, listing=False)
            elif owner is not None:
                owner.prose.extend(ln.text for ln in item.lines + _item_lines(item.blocks))
            elif line.text:
                self.found.unplaced.append(f"{where}: {line.text}")

    # ------------------------------------------------------------ sections
    def section(self, sec: Section, group: Group | None) -> None:
        title = sec.title
        kind, _key, ticket = split_title(title)[:3]
        if INTEGRATION_SECTION(title) and not (kind or ticket):
            self.integration(sec)
            return
        heading = _PAREN.sub(" ", title).strip(" -:")
        is_group = bool(words.PHASE.search(title)) or bool(
            words.UNIT_LIST.match(re.sub(r"\s+", " ", heading))
        )
        holds_units = not is_group and any(_is_unit_section(c) for c in sec.children)
        is_group = is_group or holds_units  # "## Stream A" over "### Work item FOO-1" sections
        if not is_group and _is_unit_section(sec):
            unit = self.new_unit(title, group)
            self.blocks(sec.blocks, unit.source, group=group, owner=unit, listing=False)
            for child in sec.children:  # "#### Deliverables" under a team heading
                name = words.field_name(child.title)
                lines = _item_lines(child.blocks)
                if name is not None:
                    self.put(unit, name, child.title, lines, unit.source, group)
                else:
                    unit.prose.extend(ln.text for ln in lines)
            return
        intro = " ".join(ln.text for b in sec.blocks[:1] if isinstance(b, Para) for ln in b.lines)
        probe = f"{title} {intro}"
        mode = (
            "sequential"
            if words.SEQUENTIAL.search(probe)
            else "parallel"
            if words.PARALLEL.search(probe)
            else None
        )
        if words.PHASE.search(title):
            phase = Group(title=title, phase=True, mode=mode)
            self.found.groups.append(phase)
            self.blocks(sec.blocks, title, group=phase, owner=None, listing=True)
            for child in sec.children:
                self.section(child, phase)
            return
        listing = bool(words.UNIT_LIST.match(re.sub(r"\s+", " ", heading)))
        if (listing or holds_units) and group is None:
            group = Group(title=title, phase=False, mode=mode)
            self.found.groups.append(group)
        self.blocks(sec.blocks, title, group=group, owner=None, listing=listing)
        for child in sec.children:
            self.section(child, group)

    def integration(self, sec: Section) -> None:
        def visit(s: Section) -> None:
            for block in s.blocks:
                if isinstance(block, Code) and block.info.lower() in (
                    "",
                    "sh",
                    "bash",
                    "shell",
                    "console",
                    "zsh",
                ):
                    for raw in block.content.splitlines():
                        cmd = raw.strip().removeprefix("$ ").strip()
                        if cmd and not cmd.startswith("#"):
                            self.found.tests.append(cmd)
            for ln in _item_lines(s.blocks):
                cmds = [
                    c
                    for c in ln.codes
                    if _RUNNERS.match(c) or (_COMMAND_LINE.search(ln.text) and " " in c)
                ]
                if cmds:
                    self.found.tests.extend(cmds)
                elif ln.value or not ln.label:
                    self.found.unplaced.append(f"{sec.title}: {ln.text}")
            for child in s.children:
                visit(child)

        visit(sec)

    def run(self) -> Findings:
        where = self.doc.title or "preamble"
        self.blocks(self.doc.preamble, where, group=None, owner=None, listing=False)
        for sec in self.doc.sections:
            self.section(sec, None)
        return self.found


def INTEGRATION_SECTION(title: str) -> bool:
    return bool(words.INTEGRATION.search(title))


def walk(doc: Document) -> Findings:
    """Everything the document says, sorted into units, groups, tables and leftovers."""
    return _Walker(doc).run()


# ------------------------------------------------------------------ facts of one unit


def path_of(code: str) -> str | None:
    """A deliverable path from a code span (leading '/' = repo root), or None."""
    code = code.strip()
    if not code or " " in code or "://" in code or not _PATH.match(code.lstrip("/")):
        return None
    path = code.lstrip("/")
    path = path.removeprefix("./")
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if ".." in path.split("/") or not path:
        return None
    if "/" in path or "." in name[1:] or name.lower() in _KNOWN_FILES or name.startswith("."):
        return path + "**" if path.endswith("/") else path
    return None


def deliverables_of(unit: Unit) -> tuple[list[str], bool]:
    """(paths, any guessed) from the unit's Deliverables / Files fields."""
    out: list[str] = []
    guessed = False
    for lines in unit.fields.get("deliverables", []):
        for ln in lines:
            paths = [p for p in (path_of(c) for c in ln.codes) if p]
            if not paths and not ln.codes and ln.text:
                first = ln.text.split()[0].strip(",;")
                p = path_of(first)
                if p:
                    paths, guessed = [p], True
            for p in paths:
                if p not in out:
                    out.append(p)
    return out, guessed


def is_none(text: str) -> bool:
    return bool(_NONE.match(text.strip()))


def expand_keys(keys: str) -> list[str]:
    """ "1-4" -> 1,2,3,4; "1, 3" -> 1,3; "A-C" -> a,b,c."""
    out: list[str] = []
    parts = re.split(r"\s*(?:,|and|&|\+|/)\s*", keys.strip())
    for part in parts:
        m = re.fullmatch(r"(\w+)\s*(?:-|\u2013|\u2014|to|through)\s*(\w+)", part.strip())
        if m and m.group(1).isdigit() and m.group(2).isdigit():
            lo, hi = int(m.group(1)), int(m.group(2))
            if 0 <= hi - lo < MAX_RANGE:  # checked before the walk: "1-99999999999" is no range
                out.extend(str(n) for n in range(lo, hi + 1))
            else:
                out.append(part.strip().lower())
        elif m and len(m.group(1)) == 1 and len(m.group(2)) == 1 and m.group(1).isalpha():
            lo_c, hi_c = ord(m.group(1).lower()), ord(m.group(2).lower())
            out.extend(chr(c) for c in range(lo_c, hi_c + 1))
        elif part.strip():
            out.append(part.strip().lower())
    return out


def ref_spans(text: str) -> tuple[list[tuple[str | None, str]], list[str], str]:
    """Parse a dependency text into ([(kind, key)], [tickets], leftover text)."""
    keys: list[tuple[str | None, str]] = []
    rest = _PAREN.sub(" ", text)
    for m in list(_REF.finditer(rest)):
        kind = re.sub(r"[\s-]+", "", m.group("kind").lower())
        keys.extend((kind, k) for k in expand_keys(m.group("keys")))
    rest = _REF.sub(" ", rest)
    phases = [("phase", m.group("key").lower()) for m in words.PHASE.finditer(rest)]
    keys.extend((k, v) for k, v in phases)
    rest = words.PHASE.sub(" ", rest)
    tickets = re.findall(rf"(?<![\w-]){words.TICKET}", rest)
    for t in tickets:
        rest = rest.replace(t, " ")
    return keys, tickets, rest
