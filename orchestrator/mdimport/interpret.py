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
from orchestrator.mdimport.deliverables import path_of
from orchestrator.mdimport.parse import (
    Block,
    Code,
    Document,
    Line,
    ListBlock,
    ListItem,
    Para,
    Section,
    Table,
)
from orchestrator.mdimport.titles import PAREN, cut_order_clause, inline_fields, split_title

_ARROW_ART = re.compile(r"[-\u2500=]+[>\u25ba\u25b6]|[\u2192\u27f6\u2794\u279c\u21d2]|<[-\u2500]+")
_PLAIN_INFO = {"", "text", "txt", "plain", "plaintext", "ascii"}
_STRONG_FIELDS = {"task", "deliverables", "depends", "blocks"}
_ANY_FIELDS = _STRONG_FIELDS | {"role", "estimate", "acceptance"}
_RUNNERS = re.compile(
    r"^(?:pytest|python|py\.test|npm|npx|yarn|pnpm|bun|make|go|cargo|tox|nox|uv|poetry|hatch|bash|sh|\./|"
    r"mvn|gradle|\./gradlew|dotnet|bundle|rake|rspec|jest|vitest|phpunit|ctest|just|deno|mix|swift|flutter)\b"
)
_COMMAND_LINE = re.compile(
    r"\b(?:run|runs|running|execute|test|tests|suite|check|checks)\b", re.IGNORECASE
)


@dataclass(eq=False)  # a unit is itself: compared by identity
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
    lineno: int = 0
    gate: bool = False  # it has go/no-go criteria: a person approves its work
    number: int | None = None  # its number in an ordered list (the key unless told otherwise)

    def add(self, name: str, lines: list[Line]) -> None:
        self.fields.setdefault(name, []).append(lines)


@dataclass(eq=False)
class Group:
    title: str
    phase: bool  # its units wait for the group before (phases; numbered groups: a guess)
    mode: str | None  # "sequential", "parallel" or None
    units: list[Unit] = field(default_factory=list)
    acceptance: list[str] = field(default_factory=list)
    gate: bool = False  # go/no-go criteria: a person approves the end of the group

    @property
    def key(self) -> str | None:
        """ "2" for "Phase 2: ..." or "Group 2 - ..."; None when the title has no number."""
        m = words.PHASE.search(self.title) or _GROUP_KEY.match(clean_head(self.title))
        return m.group("key").lower() if m else None

    @property
    def word(self) -> str | None:
        """The group's kind word, lowercased ("phase", "group", ...)."""
        m = _GROUP_KEY.match(clean_head(self.title))
        return m.group("word").lower() if m else None


_GROUP_KEY = re.compile(
    rf"^(?P<word>{words.GROUP_HEAD.pattern[4:-3]})\s*(?P<key>\d+|[IVX]+\b|[A-Z]\b)",
    re.IGNORECASE,
)


def clean_head(title: str) -> str:
    return re.sub(r"^[^\w]+", "", title)


@dataclass
class Findings:
    """What the walk found; :mod:`orchestrator.mdimport.build` turns it into plan data.

    ``talk`` holds every line of free text (with the unit it belongs to) that
    may state an order between units; ``graphs`` the Mermaid blocks.
    """

    title: str | None
    units: list[Unit] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    tables: list[tuple[str, Table]] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)
    reviews: list[str] = field(default_factory=list)
    """Review steps of the integration section ("Code review (2 reviewers)")."""
    talk: list[tuple[Unit | None, Line]] = field(default_factory=list)
    graphs: list[Code] = field(default_factory=list)
    front: dict[str, str] = field(default_factory=dict)
    aside_tables: list[Table] = field(default_factory=list)  # in sections that hold no team
    hidden: list[str] = field(default_factory=list)  # commands inside collapsed blocks


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


def _unit_like_item(item: ListItem) -> bool:
    """A list item that names a unit: a unit head, a bold name, or fields of its own."""
    line = item.line
    if not line.text:
        return False
    kind, key, ticket = split_title(line.text)[:3]
    if (kind and key) or (ticket and line.label is None):
        return True
    if line.bold and not words.field_name(line.bold):
        return True
    if line.checkbox and line.label and _named_label(line.label):
        return True  # "- [ ] **search-api**: query endpoint"
    if line.label and re.fullmatch(r"[a-z]+(?:[-_][a-z]+)+", line.label):
        return True  # "- api-gateway: the routing core" (an issue id such as mob-1a2 is not)
    if inline_fields(line.text)[1]:
        return True
    return _has_fields(item.blocks, _ANY_FIELDS) or any(
        ln.label and words.field_name(ln.label) in _STRONG_FIELDS for ln in item.lines[1:]
    )


def _named_label(label: str) -> bool:
    """A label that names a unit ("search-api", "Auth service"), not a field or a note."""
    return (
        words.field_name(label) is None
        and len(label.split()) <= 4
        and not words.not_a_team(label)
        and not re.fullmatch(r"[\d\s.:/-]+", label)
    )


def _lists_units(block: ListBlock) -> bool:
    """Whether a list (not introduced by a label) lists units rather than steps or notes."""
    items = [i for i in block.items if i.line.text]
    if not items:
        return False
    like = sum(1 for i in items if _unit_like_item(i))
    single = like == 1 and (bool(items[0].blocks) or items[0].line.checkbox)
    return like == len(items) and (len(items) > 1 or single)


def _free_lists(blocks: list[Block]) -> list[ListBlock]:
    """The lists in ``blocks`` not introduced by a label line ("Files:" over a list)."""
    out = []
    for prev, block in zip([None, *blocks], blocks, strict=False):
        if not isinstance(block, ListBlock):
            continue
        last = prev.lines[-1] if isinstance(prev, Para) else None
        if last and last.label and not last.value and not words.UNIT_LIST.match(last.label):
            continue  # "Files:" over a list: the list is that field's value
        out.append(block)
    return out


def _own_lists_units(sec: Section) -> bool:
    """Whether the section's own lists are units: "## Group A" over "1. ...", "2. ..."."""
    if _has_fields([b for b in sec.blocks if not isinstance(b, ListBlock)], _STRONG_FIELDS):
        return False
    lists = _free_lists(sec.blocks)
    if any(_lists_units(b) for b in lists):
        return True
    grouping = bool(words.GROUP_HEAD.match(re.sub(r"^[^\w]+", "", sec.title)))
    return grouping and any(b.ordered and len(b.items) > 1 for b in lists)


def _is_unit_section(sec: Section) -> bool:
    kind, key, ticket = split_title(sec.title)[:3]
    aside = words.not_a_team(sec.title) and not (kind and key) and not ticket
    if aside and (
        words.not_a_team(sec.title, whole=True) or not _has_fields(sec.blocks, _STRONG_FIELDS)
    ):
        return False  # "Summary API" with a Task line is a team; "Risks" never
    if _own_lists_units(sec) and not _has_fields(sec.blocks, _STRONG_FIELDS - {"task"}):
        return False
    return (
        bool(kind and key)
        or bool(ticket)
        or _has_fields(sec.blocks, _STRONG_FIELDS)
        or bool(inline_fields(sec.title)[1])
        or (bool(words.NUMBERED.match(sec.title)) and bool(sec.blocks) and not sec.outline)
        or sum(words.field_name(c.title) in _STRONG_FIELDS for c in sec.children) >= 2
    )


def _para_unit(para: Para) -> bool:
    """A paragraph that starts with a unit's name: a bold name, or "Team 2: ..."."""
    line = para.lines[0]
    if line.bold and _named_label(line.bold):
        return True
    kind, key, ticket = split_title(line.text)[:3]
    return bool((kind and key) or ticket) and line.label is not None


def _mark_outlines(sections: list[Section]) -> None:
    """ "## 1. Overview", "## 2. Teams", "## 5. Risks": numbers of the document's parts.

    Numbered siblings are an outline when one of them holds no team (risks, ...) or
    holds teams of its own; then a number alone makes none of them a team."""
    numbered = [s for s in sections if words.NUMBERED.match(s.title)]
    outline = any(
        words.not_a_team(s.title) or any(_is_unit_section(c) for c in s.children) for s in numbered
    )
    for s in sections:
        s.outline = outline
        _mark_outlines(s.children)


class _Walker:
    def __init__(self, doc: Document, *, loose: bool = False) -> None:
        self.found = Findings(title=doc.title, front=dict(doc.front))
        self.doc = doc
        self.loose = loose  # every leaf section with text is a unit (no unit found otherwise)
        self.grouping = False  # inside a "Group N" / "Phase N" section: numbered items are units

    # ------------------------------------------------------------ units
    def new_unit(self, line: Line, group: Group | None, number: int | None = None) -> Unit:
        text, inline = inline_fields(line.text)
        kind, key, ticket, title, role, est = split_title(text or line.text)
        unit_paths: list[str] = []
        if line.label and not line.bold and _named_label(line.label) and not (kind or ticket):
            label = line.label  # "search-api: query endpoint": the label names the unit
            line = Line(
                text=line.text,
                codes=line.codes,
                bold=label,
                lineno=line.lineno,
                checkbox=line.checkbox,
            )
            text = text if text.startswith(label) else line.text
        bold_name = bool(line.bold) and not kind and not ticket and not key
        if key is None and ticket is None and number is not None:
            key = str(number)  # "3. **Reindex worker**" is item #3
        if line.bold and bold_name:
            title = inline_fields(line.bold)[0] or title
        for code in line.codes:  # "Users service — `svc/users.py`": a deliverable
            path = path_of(code)
            if path is not None and f"`{code}`" in title:
                title = title.replace(f"`{code}`", " ")
                unit_paths.append(path)
        title = cut_order_clause(re.sub(r"\s+", " ", title))
        unit = Unit(source=line.text, kind=kind, key=key, ticket=ticket, title=title or text)
        unit.role_text, unit.estimate_text, unit.group = role, est, group
        unit.lineno = line.lineno
        for path in unit_paths:
            unit.add("bare", [Line(text=path, codes=[path], lineno=line.lineno)])
        if number is not None and key == str(number):
            unit.number = number
        for name, value in inline:
            unit.add(name, [Line(text=value, codes=re.findall(r"`([^`]+)`", value),
                                 lineno=line.lineno)])  # fmt: skip
        if line.bold and bold_name and text != line.bold:
            rest = text.replace(line.bold, "", 1).strip(" -:\u2013\u2014")
            rest = cut_order_clause(rest) if rest else rest
            if rest:
                unit.prose.append(rest)
                self.found.talk.append((unit, Line(text=rest, lineno=line.lineno)))
        if words.WAITS.search(text) or words.PRECEDES.search(text):
            self.found.talk.append((unit, Line(text=text, lineno=line.lineno)))
        self.found.units.append(unit)
        if group is not None:
            group.units.append(unit)
        return unit

    def free(self, owner: Unit | None, ln: Line, where: str) -> None:
        """A line of free text: part of its unit's task, or not placed; read for an order."""
        self.found.talk.append((owner, ln))
        if owner is not None:
            owner.prose.append(ln.text)
        else:
            self.found.unplaced.append(f"{where}: {ln.text}")

    def field_lines(
        self, owner: Unit | None, lines: list[Line], where: str, group: Group | None
    ) -> None:
        for ln in lines:
            name = words.field_name(ln.label) if ln.label else None
            if name is not None:
                value = (
                    [Line(text=ln.value, codes=ln.value_codes, lineno=ln.lineno)]
                    if ln.value
                    else []
                )
                self.put(owner, name, ln.label or "", value, where, group)
            elif owner is not None and self.bare_path(owner, ln):
                continue
            else:
                self.free(owner, ln, where)

    def bare_path(self, owner: Unit, ln: Line) -> bool:
        """A line that is only a path ("- `billing/gateway.py`"): the unit's deliverable."""
        text = ln.text.strip()
        head = re.split(r"\s+[-\u2013\u2014:]\s+", text, maxsplit=1)[0].strip()
        code = head.strip("`") if head.startswith("`") and head.endswith("`") else None
        if code is None and "`" in head:
            return False
        path = path_of(code, strict=False) if code is not None else path_of(head, strict=True)
        if path is None:
            return False
        owner.add("bare", [Line(text=path, codes=[path], lineno=ln.lineno)])
        return True

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
        if name in ("checks", "test"):
            for v in value:
                if v.lineno and self.doc.is_collapsed(v.lineno):
                    self.found.hidden.append(
                        f"line {v.lineno}: {label} inside a collapsed <details> block: "
                        + ", ".join(f"`{c}`" for c in v.codes)
                    )
        if name == "acceptance" and words.GO_NO_GO.match(label):
            if owner is not None:
                owner.gate = True
            elif group is not None:
                group.gate = True
        if owner is not None:
            owner.add(name, value)
            if name in ("task", "acceptance"):
                self.found.talk.extend((owner, v) for v in value)
        elif name == "acceptance" and group is not None:
            group.acceptance.extend(v.text for v in value if v.text)
        elif name == "test" or (name == "checks" and group is None):
            self.found.tests.extend(value[0].codes if value else [])
        else:
            text = "; ".join(v.text for v in value)
            self.found.unplaced.append(f"{where}: {label}: {text}".rstrip(": "))
            if name in ("depends", "blocks"):
                lineno = next((v.lineno for v in value if v.lineno), 0)
                self.found.talk.append((None, Line(text=f"{label}: {text}", lineno=lineno)))

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
                        runs: list[tuple[str, list[Line]]] = [(label, [])]
                        for item in nxt.items:
                            runs[-1][1].extend(item.lines[:1])
                            for ln in item.lines[1:]:  # a label line lazily glued to the item
                                if ln.label and words.field_name(ln.label) and not ln.value:
                                    runs.append((ln.label, []))  # the next items are its value
                                elif ln.label and words.field_name(ln.label):
                                    self.field_lines(owner, [ln], where, group)
                                else:
                                    runs[-1][1].append(ln)
                            runs[-1][1].extend(_item_lines(item.blocks))
                        for run_label, value in runs:
                            self.labelled(owner, run_label, value, where, group)
                    i += 1
            elif isinstance(block, ListBlock):
                if owner is None and (
                    listing or _lists_units(block) or (self.grouping and block.ordered)
                ):
                    self.list_units(block, where, group)
                else:
                    self.list_fields(block, where, group, owner)
            elif isinstance(block, Table):
                self.found.tables.append((where, block))
            elif isinstance(block, Code):
                if block.info.lower().startswith("mermaid") or re.match(
                    r"\s*(?:graph|flowchart)\b", block.content
                ):
                    self.found.graphs.append(block)
                elif _ARROW_ART.search(block.content) and block.info.lower() in _PLAIN_INFO:
                    for n, raw in enumerate(block.content.split("\n")):  # "Team 1 ──► Team 2"
                        if raw.strip():
                            self.found.talk.append(
                                (owner, Line(text=raw.strip(), lineno=block.lineno + n))
                            )
                elif owner is None:
                    self.found.unplaced.append(
                        f"{where}: a code block ({block.info or 'no language'})"
                    )
            i += 1

    def labelled(
        self, owner: Unit | None, label: str, value: list[Line], where: str, group: Group | None
    ) -> None:
        """``label:`` over the lines of a list."""
        name = words.field_name(label)
        if name is None:
            for v in value:
                self.free(
                    owner, Line(text=f"{label}: {v.text}", codes=v.codes, lineno=v.lineno), where
                )
        else:
            self.put(owner, name, label, value, where, group)

    def section_blocks(
        self, blocks: list[Block], where: str, *, group: Group | None, listing: bool
    ) -> None:
        """A section's own blocks; paragraphs that start with a unit's name ("**Team
        Alpha** — ...", "Team 2: ...") open a unit that the blocks after them belong to."""
        heads = [i for i, b in enumerate(blocks) if isinstance(b, Para) and _para_unit(b)]
        if not heads or not (listing or len(heads) > 1):
            self.blocks(blocks, where, group=group, owner=None, listing=listing)
            return
        self.blocks(blocks[: heads[0]], where, group=group, owner=None, listing=listing)
        for start, end in zip(heads, [*heads[1:], len(blocks)], strict=True):
            para = blocks[start]
            assert isinstance(para, Para)
            unit = self.new_unit(para.lines[0], group)
            self.field_lines(unit, para.lines[1:], where, group)
            self.blocks(
                blocks[start + 1 : end], unit.source, group=group, owner=unit, listing=False
            )

    def list_units(self, block: ListBlock, where: str, group: Group | None) -> None:
        for item in block.items:
            if not item.line.text:
                continue
            unit = self.new_unit(item.line, group, item.number)
            self.field_lines(unit, item.lines[1:], where, group)
            self.blocks(item.blocks, unit.source, group=group, owner=unit, listing=False)

    def list_fields(
        self, block: ListBlock, where: str, group: Group | None, owner: Unit | None
    ) -> None:
        for item in block.items:
            line = item.line
            name = words.field_name(line.label) if line.label else None
            if name is not None:
                value = (
                    [Line(text=line.value, codes=line.value_codes, lineno=line.lineno)]
                    if line.value
                    else []
                )
                value += list(item.lines[1:]) + _item_lines(item.blocks)
                self.put(owner, name, line.label or "", value, where, group)
            elif owner is None and _has_fields(item.blocks, _ANY_FIELDS):
                unit = self.new_unit(line, group, item.number)
                self.field_lines(unit, item.lines[1:], where, group)
                self.blocks(item.blocks, unit.source, group=group, owner=unit, listing=False)
            elif owner is not None:
                for ln in item.lines + _item_lines(item.blocks):
                    if not self.bare_path(owner, ln):
                        self.free(owner, ln, where)
            elif line.text:
                for ln in item.lines + _item_lines(item.blocks):
                    self.free(None, ln, where)

    # ------------------------------------------------------------ sections
    def aside(self, sec: Section) -> None:
        """A section that holds no unit (risks, status, ...): read only for an order."""
        for ln in _item_lines(sec.blocks):
            self.found.talk.append((None, ln))
        for block in sec.blocks:
            if isinstance(block, Table):
                self.found.tables.append((sec.title, block))
                self.found.aside_tables.append(block)
            elif isinstance(block, Code) and (
                block.info.lower().startswith("mermaid")
                or re.match(r"\s*(?:graph|flowchart)\b", block.content)
            ):
                self.found.graphs.append(block)
        for child in sec.children:
            if _is_unit_section(child) or any(_is_unit_section(c) for c in child.children):
                self.section(child, None)
            else:
                self.aside(child)

    def unit_section(self, sec: Section, group: Group | None) -> None:
        unit = self.new_unit(sec.heading, group)
        self.blocks(sec.blocks, unit.source, group=group, owner=unit, listing=False)
        for child in sec.children:  # "#### Deliverables" under a team heading
            name = words.field_name(child.title)
            lines = _item_lines(child.blocks)
            if name is not None and name != "ignore":
                self.put(unit, name, child.title, lines, unit.source, group)
            elif name is None:
                for ln in lines:
                    self.free(unit, ln, unit.source)

    def section(self, sec: Section, group: Group | None, *, listed: bool = False) -> None:
        title = sec.title
        kind, key, ticket = split_title(title)[:3]
        named = bool((kind and key) or ticket)
        if words.not_a_team(title) and not named and not _is_unit_section(sec):
            self.aside(sec)
            return
        if INTEGRATION_SECTION(title) and not named:
            self.integration(sec)
            return
        heading = PAREN.sub(" ", title).strip(" -:")
        listing = bool(words.UNIT_LIST.match(re.sub(r"\s+", " ", heading)))
        is_group = bool(words.PHASE.search(title)) and not (named and _is_unit_section(sec))
        is_group = is_group or listing
        holds_units = not is_group and (
            any(_is_unit_section(c) for c in sec.children) or _own_lists_units(sec)
        )
        is_group = is_group or holds_units  # "## Stream A" over "### Work item FOO-1" sections
        leaf = not sec.children and any(isinstance(b, Para | ListBlock) for b in sec.blocks)
        if not is_group and (
            _is_unit_section(sec) or (listed and bool(sec.blocks)) or (self.loose and leaf)
        ):
            self.unit_section(sec, group)
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
            self.section_blocks(sec.blocks, title, group=phase, listing=True)
            for child in sec.children:
                self.section(child, phase, listed=True)
            return
        self.grouping = holds_units and bool(words.GROUP_HEAD.match(clean_head(title)))
        if (listing or holds_units) and group is None:
            group = Group(title=title, phase=False, mode=mode)
            group.phase = self.grouping and group.key is not None  # "Group 2" follows "Group 1"
            self.found.groups.append(group)
        self.section_blocks(sec.blocks, title, group=group, listing=listing)
        self.grouping = False
        for child in sec.children:
            self.section(child, group, listed=listing)

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
                    if words.REVIEW.search(ln.text):
                        self.found.reviews.append(ln.text)
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


def _compound_keys(found: Findings) -> None:
    """Items numbered from 1 in each of several groups: "Task 1.2" is item 2 of group 1."""
    counts: dict[str, int] = {}
    for u in found.units:
        if u.key:
            counts[u.key] = counts.get(u.key, 0) + 1
    for u in found.units:
        if u.number is not None and counts.get(u.key or "", 0) > 1 and u.group is not None:
            gkey = u.group.key
            if gkey:
                u.key = f"{gkey}.{u.number}"


def walk(doc: Document) -> Findings:
    """Everything the document says, sorted into units, groups, tables and leftovers.

    When the structure names no unit at all, the walk is repeated with every
    section that has text of its own and no sub-section taken as a unit.
    """
    _mark_outlines(doc.sections)
    found = _Walker(doc).run()
    _compound_keys(found)
    if not found.units and not any(
        words.field_name(h) in ("task", "deliverables", "depends")
        for _, t in found.tables
        for h in t.header
    ):
        loose = _Walker(doc, loose=True).run()
        if loose.units:
            _compound_keys(loose)
            loose.unplaced.append("no section is named like a team: every section with text is one")
            return loose
    return found
