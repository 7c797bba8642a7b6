"""Tables: a table that lists the teams (one per row), and dependency matrices.

A *team table* has a name (or id) column and columns the reader knows
(``Task``, ``Files``, ``Depends on``, ...): each row is a unit. A *grid*
matrix has teams as its column headers and a mark (``x``, ``✓``) where the
row's team waits for the column's.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from orchestrator.mdimport import words
from orchestrator.mdimport.interpret import Findings, Unit
from orchestrator.mdimport.parse import Line, Table
from orchestrator.mdimport.titles import split_title

_ID = re.compile(r"^(?:id|#|key|nr\.?|no\.?|n[\u00ba\u00b0]|ticket|code|ref|kennung)$", re.I)
_NAME = re.compile(
    r"^(?:team|teams|name|title|component|work ?item|item|area|module|service|stream|squad|"
    r"equipo|\u00e9quipe|equipe|gruppe|komponente|nombre|nom|titel|titre|t\u00edtulo|"
    r"arbeitspaket|paket|work ?package)$",
    re.IGNORECASE,
)
_USEFUL = {"task", "deliverables", "depends", "blocks", "owner", "agent", "estimate", "acceptance"}
_MARK = re.compile(
    r"^(?:x|\u2713|\u2714|\u2705|\u25cf|\u2022|\*|yes|ja|s\u00ed|si|oui|y|needs?)$", re.I
)


def _columns(table: Table) -> tuple[int | None, int | None, list[str | None]]:
    """(id column, name column, field per column) of a table that lists teams."""
    header = [h.strip() for h in table.header]
    names = [words.field_name(h) for h in header]
    id_col = next((i for i, h in enumerate(header) if _ID.match(h)), None)
    name_col = next((i for i, h in enumerate(header) if i != id_col and _NAME.match(h)), None)
    heads = [split_title(r[0].text)[:3] for r in table.rows if r and r[0].text]
    if name_col is None and heads and all((k and key) or t for k, key, t in heads):
        name_col = 0  # "| Agent 1 | ..." / "| SRCH-101 | ...": the first column names the team
    if name_col is None:
        tasks = [i for i, n in enumerate(names) if n == "task" and i != id_col]
        name_col = next(
            (i for i, n in enumerate(names) if i != id_col and (n is None or len(tasks) > 1)),
            None,
        )
        if name_col is None and tasks:
            name_col = tasks[0]  # "| Task | Owner | Depends on |": the task names the row
    fields = [None if i in (id_col, name_col) else n for i, n in enumerate(names)]
    return id_col, name_col, fields


def _cell(row: list[Line], i: int | None) -> Line | None:
    return row[i] if i is not None and i < len(row) else None


def is_team_table(table: Table) -> bool:
    id_col, name_col, fields = _columns(table)
    if name_col is None and id_col is None:
        return False
    return any(f in _USEFUL for f in fields)


def _names_known_units(table: Table, units: list[Unit]) -> bool:
    """Whether the table's rows name units found elsewhere (then it is a matrix)."""
    known: set[str] = set()
    for u in units:
        known.update(x.lower() for x in (u.ticket, u.key, words.slug(u.title)) if x)
        if u.kind and u.key:
            known.add(f"{u.kind} {u.key}")
    hits = 0
    rows = [r for r in table.rows if r and r[0].text]
    for row in rows:
        kind, key, ticket, title = split_title(row[0].text)[:4]
        probe = {x.lower() for x in (ticket, key, words.slug(title)) if x}
        if kind and key:
            probe.add(f"{kind} {key}")
        near = ticket is not None and any(ticket.lower().startswith(k + "-") for k in known)
        hits += bool(probe & known) or near
    return bool(rows) and hits * 2 >= len(rows)


def units_from_tables(found: Findings) -> list[Table]:
    """Tables that list teams (and do not name the units found elsewhere): one unit per row."""
    used: list[Table] = []
    for where, table in found.tables:
        if any(table is t for t in found.aside_tables):
            continue
        if not is_team_table(table) or _names_known_units(table, found.units):
            continue
        id_col, name_col, fields = _columns(table)
        for row in table.rows:
            ident, name = _cell(row, id_col), _cell(row, name_col)
            text = (name.text if name else "") or (ident.text if ident else "")
            if not text:
                continue
            kind, key, ticket, title, role, est = split_title(text)
            free = [i for i, f in enumerate(fields) if f is None and i not in (id_col, name_col)]
            has_task = "task" in fields
            if not title and (has_task or free):  # "| Agent 1 | Database schema | ..."
                col = fields.index("task") if has_task else free[0]
                described = _cell(row, col)
                if described is not None and 0 < len(described.text) <= 60:
                    title = described.text
            if ident is not None and ident.text:
                raw = ident.text.strip().lstrip("#")
                if re.fullmatch(words.TICKET, raw):
                    ticket = raw
                else:
                    key = raw.lower()
            unit = Unit(source=text, kind=kind, key=key, ticket=ticket, title=title or text)
            unit.role_text, unit.estimate_text = role, est
            unit.lineno = row[0].lineno if row else table.lineno
            for i, (fname, c) in enumerate(zip(fields, row, strict=False)):
                if fname and fname != "ignore" and c.text:
                    unit.add(fname, [c])
                elif fname is None and i in free and c.text:
                    if not has_task and i == free[0]:
                        unit.add("task", [c])
                    else:
                        unit.prose.append(f"{table.header[i].strip()}: {c.text}")
            found.units.append(unit)
        used.append(table)
        found.unplaced.append(f"{where}: teams read from the rows of a table (guess)")
    return used


def grid_edges(
    table: Table, resolve: Callable[[str], list[Unit]]
) -> tuple[list[tuple[Unit, Unit, int]], list[str]] | None:
    """A matrix with teams as column headers: [(row team, column team it waits for, line)].

    None when the table is not such a grid. ``resolve`` maps a header or row
    label to the units it names (the import's resolver).
    """
    heads = table.header[1:]
    cols = [resolve(h) for h in heads]
    if len(heads) < 2 or sum(1 for c in cols if len(c) == 1) < len(heads) - 1:
        return None
    corner = table.header[0].lower()
    reverse = bool(re.search(r"block|enable|unblock|feeds|before|blockiert|bloquea|bloque", corner))
    edges: list[tuple[Unit, Unit, int]] = []
    problems: list[str] = []
    for row in table.rows:
        if not row or not row[0].text:
            continue
        who = resolve(row[0].text)
        if len(who) != 1:
            problems.append(
                f"line {row[0].lineno}: matrix row {row[0].text!r} names no single team"
            )
            continue
        for col, c in zip(cols, row[1:], strict=False):
            mark = c.text.strip()
            if not mark or mark in ("-", "\u2014", "\u2013", "0", "no", "nein", "n/a"):
                continue
            if not _MARK.match(mark) or len(col) != 1:
                problems.append(f"line {c.lineno}: matrix cell {mark!r} not read as a dependency")
                continue
            down, up = (col[0], who[0]) if reverse else (who[0], col[0])
            if down is not up:
                edges.append((down, up, c.lineno))
    return edges, problems
