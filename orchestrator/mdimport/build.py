"""Units -> plan data: ids, dependencies, deliverables, roles, estimates, acceptance.

Every value not stated in so many words gets a comment (``comments``, keyed by
its path in the plan data) that the YAML writer puts beside it; ``notes`` holds
the same for the printed summary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from orchestrator.mdimport import words
from orchestrator.mdimport.interpret import (
    Findings,
    Group,
    Unit,
    deliverables_of,
    is_none,
    ref_spans,
)
from orchestrator.mdimport.parse import Line, Table

Path_ = tuple[str | int, ...]


@dataclass
class Draft:
    """The plan as data (plain dicts/lists/strings) plus what was guessed or left out."""

    data: dict[str, Any]
    comments: dict[Path_, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)


def _phase_key(group: Group) -> str | None:
    m = words.PHASE.search(group.title)
    return m.group("key").lower() if m else None


def _ends(group: Group) -> list[Unit]:
    if not group.units:
        return []
    return [group.units[-1]] if group.mode == "sequential" else list(group.units)


class _Resolver:
    def __init__(self, units: list[Unit], groups: list[Group]) -> None:
        self.units = units
        self.groups = groups

    def key(self, kind: str, key: str) -> list[Unit]:
        if kind == "phase":
            for g in self.groups:
                if g.phase and _phase_key(g) == key:
                    return _ends(g)
            return []
        cands = [u for u in self.units if u.key == key]
        if len(cands) > 1:
            cands = [u for u in cands if u.kind == kind]
        return cands if len(cands) == 1 else []

    def ticket(self, token: str) -> list[Unit]:
        t = token.lower()
        exact = [u for u in self.units if u.ticket and u.ticket.lower() == t]
        if exact:
            return exact[:1]
        near = [
            u
            for u in self.units
            if u.ticket
            and (t.startswith(u.ticket.lower() + "-") or u.ticket.lower().startswith(t + "-"))
        ]
        return near if len(near) == 1 else []

    def title(self, text: str) -> list[Unit]:
        text = text.strip(" .;:")
        s = words.slug(text, limit=200)
        if not s or s in ("all", "everything", "any", "each", "the"):
            return []
        cands = [u for u in self.units if s in (u.id, words.slug(u.title, limit=200))]
        if len(cands) != 1:
            pat = re.compile(rf"\b{re.escape(text.lower())}\b")
            cands = [u for u in self.units if pat.search(u.title.lower())]
        return cands if len(cands) == 1 else []

    def refs(self, text: str, me: Unit | None) -> tuple[list[Unit], list[str], bool]:
        """(units named, names not understood, whether it says "none")."""
        if is_none(text):
            return [], [], True
        keys, tickets, rest = ref_spans(text)
        found: list[Unit] = []
        missing: list[str] = []
        for kind, key in keys:
            hit = self.key(kind or "", key)
            found.extend(hit) if hit else missing.append(f"{kind} {key}".strip())
        for token in tickets:
            hit = self.ticket(token)
            found.extend(hit) if hit else missing.append(token)
        if not keys and not tickets:
            for piece in re.split(r"\s*(?:,|;|\band\b|&|\+)\s*", rest):
                if piece.strip(" .-"):
                    hit = self.title(piece)
                    found.extend(hit) if hit else missing.append(piece.strip())
        out: list[Unit] = []
        for u in found:
            if u is not me and u not in out:
                out.append(u)
        return out, missing, False


def _why(g: Group) -> str:
    if g.mode == "sequential":
        return f"{g.title!r} runs in sequence"
    if g.mode == "parallel":
        return f"{g.title!r} runs in parallel after the phase before"
    return f"{g.title!r} says neither sequential nor parallel: parallel after the phase before"


def _reaches(deps: dict[str, list[str]], start: str, goal: str) -> bool:
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(deps.get(node, []))
    return False


def _texts(values: list[list[Line]]) -> list[str]:
    return [ln.text for lines in values for ln in lines if ln.text]


def _assign_ids(units: list[Unit]) -> None:
    taken: set[str] = set()
    for n, u in enumerate(units, 1):
        base = ""
        if u.ticket and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", u.ticket):
            base = u.ticket
        base = base or words.slug(u.title) or words.slug(f"{u.kind or 'team'}-{u.key or n}")
        candidate, i = base, 2
        while candidate.lower() in taken:
            candidate, i = f"{base}-{i}", i + 1
        taken.add(candidate.lower())
        u.id = candidate


def _units_from_tables(found: Findings) -> None:
    """With no units anywhere else, a table with a task column lists them, one per row."""
    for where, table in found.tables:
        names = [words.field_name(h) for h in table.header]
        if "task" not in names[1:] and "deliverables" not in names[1:]:
            continue
        for row in table.rows:
            if not row or not row[0].text:
                continue
            unit = Unit(source=row[0].text, kind=None, key=None, ticket=None, title=row[0].text)
            from orchestrator.mdimport.interpret import split_title

            unit.kind, unit.key, unit.ticket, unit.title, unit.role_text, unit.estimate_text = (
                split_title(row[0].text)
            )
            unit.title = unit.title or row[0].text
            for name, cell in zip(names[1:], row[1:], strict=False):
                if name and name != "ignore" and cell.text:
                    unit.add(name, [cell])
            found.units.append(unit)
        found.unplaced.append(f"{where}: teams read from a table's rows (guess)")


def build(found: Findings, *, source: str) -> Draft:
    """Turn what :func:`~orchestrator.mdimport.interpret.walk` found into plan data."""
    if not found.units:
        _units_from_tables(found)
    units = found.units
    _assign_ids(units)
    draft = Draft(data={}, unplaced=list(found.unplaced))
    c, notes = draft.comments, draft.notes
    resolver = _Resolver(units, found.groups)

    def note(path: Path_, text: str) -> None:
        old = c.get(path)
        c[path] = f"{old}; {text}" if old else text
        if path[0] == "teams":
            where = ".".join([units[int(path[1])].id, *(str(p) for p in path[2:])])
        else:
            where = ".".join(str(p) for p in path)
        notes.append(f"{where}: {text}")

    index = {u.id: i for i, u in enumerate(units)}
    deps: dict[str, list[str]] = {u.id: [] for u in units}
    explicit: set[str] = set()
    for u in units:
        for text in _texts(u.fields.get("depends", [])) or ([""] if "depends" in u.fields else []):
            hits, missing, _ = resolver.refs(text, u) if text else ([], [], True)
            explicit.add(u.id)
            deps[u.id].extend(h.id for h in hits if h.id not in deps[u.id])
            for m in missing:
                draft.unplaced.append(f"{u.id}: dependency {m!r} names no team")
    # matrix tables: a row per unit; "Uses" / "Depends on" upstream, "Blocks" / "Enables" down
    reverse: list[tuple[Unit, str, str]] = []  # (unit, text of teams it blocks, from)
    for where, table in found.tables:
        names = [words.field_name(h) for h in table.header]
        if "depends" not in names[1:] and "blocks" not in names[1:]:
            continue
        for row in table.rows:
            if not row or not row[0].text:
                continue
            hits, _, _ = resolver.refs(row[0].text, None)
            if len(hits) != 1:
                draft.unplaced.append(f"{where}: matrix row {row[0].text!r} matches no single team")
                continue
            u = hits[0]
            for name, cell in zip(names[1:], row[1:], strict=False):
                if name == "depends":
                    explicit.add(u.id)
                    got, missing, _ = resolver.refs(cell.text, u)
                    for h in got:
                        if h.id not in deps[u.id]:
                            deps[u.id].append(h.id)
                            note(
                                ("teams", index[u.id], "depends_on"),
                                f"{h.id} from the matrix in {where!r}",
                            )
                    for m in missing:
                        draft.unplaced.append(f"{where}: {row[0].text}: {m!r} names no team")
                elif name == "blocks":
                    reverse.append((u, cell.text, where))
    # phases: sequential = each after the one before; else each after the end of the phase before
    prev_end: list[Unit] = []
    for g in found.groups:
        if not g.phase and g.mode != "sequential":
            continue
        before = prev_end if g.phase else []
        for u in g.units:
            if u.id not in explicit:
                deps[u.id] = [x.id for x in before]
                if before:
                    note(("teams", index[u.id], "depends_on"), f"guess: {_why(g)}")
            if g.mode == "sequential":
                before = [u]
        if g.units and g.phase:
            prev_end = _ends(g)
    for u in units:
        for text in _texts(u.fields.get("blocks", [])):
            reverse.append((u, text, "Blocks"))
    for u, text, where in reverse:
        got, _, _ = resolver.refs(text, u)
        for down in got:
            if u.id in deps[down.id] or _reaches(deps, u.id, down.id):
                continue
            deps[down.id].append(u.id)
            note(("teams", index[down.id], "depends_on"), f"{u.id} from {u.id}'s {where!r} line")

    teams: list[dict[str, Any]] = []
    for i, u in enumerate(units):
        teams.append(_team(u, i, deps[u.id], note))
    for i, u in enumerate(units):
        for g in found.groups:
            if u in _ends(g) and g.acceptance:
                teams[i].setdefault("acceptance", [])
                teams[i]["acceptance"].extend(
                    a for a in g.acceptance if a not in teams[i]["acceptance"]
                )
                note(
                    ("teams", i, "acceptance"),
                    f"the criteria of {g.title!r} (guess: they end that phase)",
                )

    name = (
        words.slug(found.title or "", limit=64)
        or words.slug(PurePath(source).stem, limit=64)
        or "imported"
    )
    data: dict[str, Any] = {"version": 1, "name": name, "repo": "."}
    c[("name",)] = (
        f"from the title {found.title!r}"
        if found.title
        else f"guess: from the file name {source!r}"
    )
    c[("repo",)] = "guess: the git repository is the folder of this plan file"
    data["defaults"] = {"agent": "claude-code"}
    c[("defaults", "agent")] = "guess: the document names no agent"
    data["teams"] = teams
    tests = list(dict.fromkeys(found.tests))
    if tests:
        data["integration"] = {"test": tests[0] if len(tests) == 1 else tests}
    draft.data = data
    return draft


def _team(u: Unit, i: int, deps: list[str], note: Any) -> dict[str, Any]:
    team: dict[str, Any] = {"id": u.id}
    role_text = u.role_text
    role_from = "parentheses"
    owners = _texts(u.fields.get("role", []))
    if owners:
        role_text, role_from = owners[0], "Owner line"
    role, exact = words.guess_role(role_text) if role_text else (None, False)
    name = u.title
    if role_text and not exact:
        name = f"{u.title} ({role_text})"
    if name and name != u.id:
        team["name"] = name[:200]
    if role:
        team["role"] = role
        if not exact:
            note(("teams", i, "role"), f"guess: {role_text!r} ({role_from}) read as {role}")
    elif role_text:
        note(
            ("teams", i, "name"),
            f"{role_text!r} ({role_from}) is no built-in role: role left unset",
        )
    tasks = _texts(u.fields.get("task", []))
    if tasks:
        team["task"] = "\n".join(tasks)
    elif u.prose:
        team["task"] = "\n".join(u.prose)
        note(("teams", i, "task"), "guess: the section's text, it has no Task line")
    else:
        team["task"] = u.title or u.source
        note(("teams", i, "task"), "guess: the title, the document gives no task text")
    delivs, guessed = deliverables_of(u)
    if delivs:
        team["deliverables"] = delivs
        if guessed:
            note(("teams", i, "deliverables"), "guess: paths not in backticks")
    checks = [c for lines in u.fields.get("checks", []) for ln in lines for c in ln.codes]
    if checks:
        team["checks"] = checks
    acceptance = _texts(u.fields.get("acceptance", []))
    if acceptance:
        team["acceptance"] = acceptance
    team["depends_on"] = list(deps)
    est_texts = _texts(u.fields.get("estimate", [])) or (
        [u.estimate_text] if u.estimate_text else []
    )
    for text in est_texts:
        seconds = words.estimate_seconds(text)
        if seconds is None:
            continue
        from orchestrator.plan import format_duration

        why = []
        if words.ESTIMATE.search(text) and re.search(r"\d\s*(?:-|\u2013|\u2014|to)\s*\d", text):
            why.append("upper bound")
        if re.search(r"\b\d+(?:\.\d+)?\s*(?:d|days?|w|wks?|weeks?)\b", text, re.IGNORECASE):
            why.append("a day counts 24h")
        if seconds > words.MAX_ESTIMATE:
            seconds = words.MAX_ESTIMATE
            why.append("capped at the format's 7 days")
        team["estimate"] = format_duration(seconds)
        if why:
            note(("teams", i, "estimate"), f"from {text!r}: {', '.join(why)}")
        break
    return team


__all__ = ["Draft", "Table", "build"]
