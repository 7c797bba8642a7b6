"""Units -> plan data: ids, dependencies, deliverables, roles, estimates, acceptance.

Every value not stated in so many words gets a comment (``comments``, keyed by
its path in the plan data) that the YAML writer puts beside it; ``notes`` holds
the same for the printed summary. Every line that names another team or speaks
of an order and gave no edge goes to ``unresolved``, with its line number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from orchestrator.mdimport import words
from orchestrator.mdimport.deliverables import deliverables_of
from orchestrator.mdimport.deps import Resolver, ends, mermaid_edges, sentence_edges, sentences
from orchestrator.mdimport.interpret import Findings, Group, Unit
from orchestrator.mdimport.parse import Line, Table
from orchestrator.mdimport.refs import is_none
from orchestrator.mdimport.tables import grid_edges, units_from_tables

Path_ = tuple[str | int, ...]


@dataclass
class Draft:
    """The plan as data (plain dicts/lists/strings) plus what was guessed or left out.

    ``unresolved``: lines that name a team or an order and gave no edge;
    ``no_edges``: set when several teams got no edge at all although the text
    speaks of dependencies (the lines that do).
    """

    data: dict[str, Any]
    comments: dict[Path_, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)
    no_edges: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # commands in collapsed <details> blocks


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


def _at(lineno: int) -> str:
    return f"line {lineno}" if lineno else "line ?"


def _assign_ids(units: list[Unit]) -> None:
    taken: set[str] = set()
    for n, u in enumerate(units, 1):
        base = ""
        if u.ticket and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", u.ticket):
            base = u.ticket
        base = base or words.slug(u.title) or words.slug(f"{u.kind or 'team'}-{u.key or n}")
        base = base or f"team-{n}"
        candidate, i = base, 2
        while candidate.lower() in taken:
            candidate, i = f"{base}-{i}", i + 1
        taken.add(candidate.lower())
        u.id = candidate


def _joined(talk: list[tuple[Unit | None, Line]]) -> list[tuple[Unit | None, Line]]:
    """Lines of one paragraph joined where a sentence runs on to the next line."""
    out: list[tuple[Unit | None, Line]] = []
    for owner, ln in talk:
        if out:
            prev_owner, prev = out[-1]
            if (
                prev_owner is owner
                and ln.lineno
                and ln.lineno == prev.lineno + prev.text.count("\n") + 1
                and not re.search(r"[.!?:]$", prev.text)
                and not ln.label
                and not ln.checkbox
            ):
                out[-1] = (owner, Line(text=f"{prev.text}\n{ln.text}", lineno=prev.lineno))
                continue
        out.append((owner, ln))
    return [(o, Line(text=ln.text.replace("\n", " "), lineno=ln.lineno)) for o, ln in out]


class _Edges:
    """The dependency lists being built, with a note or a report line for each decision."""

    def __init__(self, units: list[Unit], draft: Draft, note: Callable[[Path_, str], None]):
        self.deps: dict[str, list[str]] = {u.id: [] for u in units}
        self.index = {u.id: i for i, u in enumerate(units)}
        self.explicit: set[str] = set()
        self.draft = draft
        self.note = note

    def add(self, down: Unit, up: Unit, why: str | None, where: str) -> bool:
        """``down`` waits for ``up``; refused (and reported) when it would close a cycle."""
        if down is up or up.id in self.deps[down.id]:
            return True
        if _reaches(self.deps, up.id, down.id):
            self.draft.unresolved.append(
                f"{where}: {down.id} after {up.id} would close a cycle: not added"
            )
            return False
        self.deps[down.id].append(up.id)
        if why:
            self.note(("teams", self.index[down.id], "depends_on"), f"{up.id} {why}")
        return True

    def count(self) -> int:
        return sum(len(v) for v in self.deps.values())


def build(found: Findings, *, source: str) -> Draft:
    """Turn what :func:`~orchestrator.mdimport.interpret.walk` found into plan data."""
    used_tables = units_from_tables(found)
    if used_tables:  # table rows among heading teams: keep the document's order
        found.units.sort(key=lambda u: u.lineno or 10**9)
    units = found.units
    _assign_ids(units)
    draft = Draft(data={}, unplaced=list(found.unplaced), hidden=list(found.hidden))
    c, notes = draft.comments, draft.notes
    resolver = Resolver(units, found.groups)

    def note(path: Path_, text: str) -> None:
        old = c.get(path)
        c[path] = f"{old}; {text}" if old else text
        if path[0] == "teams":
            where = ".".join([units[int(path[1])].id, *(str(p) for p in path[2:])])
        else:
            where = ".".join(str(p) for p in path)
        notes.append(f"{where}: {text}")

    edges = _Edges(units, draft, note)
    deps, explicit = edges.deps, edges.explicit
    speaks: list[str] = []  # lines that speak of dependencies

    # 1. fields: Depends on / Blocked by / Abhängig von ...
    for u in units:
        for lines in u.fields.get("depends", []):
            explicit.add(u.id)
            for ln in lines:
                if not ln.text:
                    continue
                hits, missing, none = resolver.refs(ln.text, u, upstream=True)
                if not none:
                    speaks.append(f"{_at(ln.lineno)}: {ln.text}")
                for h in hits:
                    edges.add(u, h, None, _at(ln.lineno))
                if missing:
                    draft.unresolved.append(
                        f"{_at(ln.lineno)}: {u.id} depends on {ln.text!r}: "
                        f"{', '.join(repr(m) for m in missing)} names no team"
                    )
    # 2. tables: "Uses" / "Depends on" columns upstream, "Blocks" / "Enables" down; grids
    reverse: list[tuple[Unit, str, str, int]] = []  # (unit, teams it blocks, from, line)
    for where, table in found.tables:
        if any(table is t for t in used_tables):
            continue
        grid = grid_edges(table, lambda text: resolver.refs(text, None)[0])
        if grid is not None:
            cells, problems = grid
            for down, up, lineno in cells:
                explicit.add(down.id)
                edges.add(down, up, f"from the matrix in {where!r}", _at(lineno))
            draft.unresolved.extend(problems)
            speaks.extend(problems or [f"{_at(table.lineno)}: the matrix in {where!r}"])
            continue
        names = [words.field_name(h) for h in table.header]
        if "depends" not in names[1:] and "blocks" not in names[1:]:
            continue
        speaks.append(f"{_at(table.lineno)}: the table in {where!r}")
        for row in table.rows:
            if not row or not row[0].text:
                continue
            hits, _, _ = resolver.refs(row[0].text, None)
            if len(hits) != 1:
                draft.unresolved.append(
                    f"{_at(row[0].lineno)}: matrix row {row[0].text!r} matches no single team"
                )
                continue
            u = hits[0]
            for col, (name, cell) in enumerate(zip(names[1:], row[1:], strict=False), 1):
                if name == "depends":
                    explicit.add(u.id)
                    got, missing, _ = resolver.refs(cell.text, u)
                    for h in got:
                        edges.add(u, h, f"from the matrix in {where!r}", _at(cell.lineno))
                    for m in missing:
                        draft.unresolved.append(
                            f"{_at(cell.lineno)}: {row[0].text}: {m!r} names no team"
                        )
                elif name == "blocks":
                    reverse.append((u, cell.text, where, cell.lineno))
                elif cell.text and name not in ("task", "deliverables", "estimate", "owner"):
                    named = resolver.refs(cell.text, u)[0]
                    if named and not is_none(cell.text):  # "Coordinates With: SRCH-104"
                        head = table.header[col].strip()
                        draft.unresolved.append(
                            f"{_at(cell.lineno)}: {row[0].text}: {head} {cell.text!r} names "
                            f"{', '.join(x.id for x in named)}: not read as an order"
                        )
    # 3. Mermaid graph / flowchart: A --> B means B waits for A
    for code in found.graphs:
        got_edges, labels = mermaid_edges(code.content, code.lineno)

        def node(nid: str, labels: dict[str, str] = labels) -> list[Unit]:
            for text in (labels.get(nid), nid):
                if text:
                    hit = resolver.title(text) or resolver.refs(text, None)[0]
                    if len(hit) == 1:
                        return hit
            return []

        for e in got_edges:
            where = _at(e.lineno)
            speaks.append(f"{where}: {e.line}")
            a, b = node(e.up), node(e.down)
            if not e.directed:
                draft.unresolved.append(f"{where}: {e.line!r}: a link without an arrow: no order")
            elif not a or not b:
                bad = ", ".join(n for n, h in ((e.up, a), (e.down, b)) if not h)
                draft.unresolved.append(f"{where}: {e.line!r}: {bad} names no team")
            else:
                explicit.add(b[0].id)
                edges.add(b[0], a[0], f"from the graph ({where})", where)
    # 4. sentences: "Team 3 can only start once Team 1's schema is merged"
    for owner, ln in _joined(found.talk):
        for sent in sentences(ln.text):
            if words.PHASE_RULE.search(sent) and any(g.phase for g in found.groups):
                speaks.append(f"{_at(ln.lineno)}: {sent}")
                notes.append(f"{_at(ln.lineno)}: {sent!r}: each phase waits for the one before")
                continue
            res = sentence_edges(sent, owner, resolver)
            if not res.edges and words.INDEPENDENT.search(sent):
                continue  # "no dependencies: all teams run in parallel"
            if res.edges or res.problem or words.DEPENDENCY_TALK.search(sent):
                speaks.append(f"{_at(ln.lineno)}: {sent}")
            for down, up in res.edges:
                explicit.add(down.id)
                edges.add(down, up, f"from the sentence on {_at(ln.lineno)}", _at(ln.lineno))
            if res.problem:
                draft.unresolved.append(f"{_at(ln.lineno)}: {sent!r}: {res.problem}")
            elif not res.edges and words.DEPENDENCY_TALK.search(sent):
                draft.unresolved.append(
                    f"{_at(ln.lineno)}: {sent!r}: speaks of an order, names no team"
                )
    # 5. phases: sequential = each after the one before; else each after the end of the phase before
    prev_end: list[Unit] = []
    for g in found.groups:
        if not g.phase and g.mode != "sequential":
            continue
        before = prev_end if g.phase else []
        for u in g.units:
            if u.id not in explicit:
                for x in before:
                    edges.add(u, x, None, "phase order")
                if before:
                    note(("teams", edges.index[u.id], "depends_on"), f"guess: {_why(g)}")
            if g.mode == "sequential":
                before = [u]
        if g.units and g.phase:
            prev_end = ends(g)
    # 6. Blocks / Enables lines: the named teams wait for this one
    for u in units:
        for lines in u.fields.get("blocks", []):
            for ln in lines:
                if ln.text:
                    reverse.append((u, ln.text, "Blocks", ln.lineno))
    for u, text, where, lineno in reverse:
        downs, missing, none = resolver.refs(text, u)
        if not none:
            speaks.append(f"{_at(lineno)}: {text}")
        for down in downs:
            if u.id in deps[down.id] or _reaches(deps, u.id, down.id):
                continue
            edges.add(down, u, f"from {u.id}'s {where!r} line", _at(lineno))
        if missing and not downs:
            draft.unresolved.append(
                f"{_at(lineno)}: {u.id} blocks {text!r}: {', '.join(map(repr, missing))} "
                "names no team"
            )

    if len(units) > 1 and edges.count() == 0 and speaks:
        draft.no_edges = list(dict.fromkeys(speaks))

    teams: list[dict[str, Any]] = []
    for i, u in enumerate(units):
        teams.append(_team(u, i, deps[u.id], note))
    for i, u in enumerate(units):
        for g in found.groups:
            if u in ends(g) and g.gate and not teams[i].get("approval"):
                teams[i]["approval"] = True
                note(
                    ("teams", i, "approval"),
                    f"the Go/No-Go criteria of {g.title!r}: a person approves the end of "
                    "that phase",
                )
            if u in ends(g) and g.acceptance:
                teams[i].setdefault("acceptance", [])
                teams[i]["acceptance"].extend(
                    a for a in g.acceptance if a not in teams[i]["acceptance"]
                )
                note(
                    ("teams", i, "acceptance"),
                    f"the criteria of {g.title!r} (guess: they end that phase)",
                )

    if found.reviews:  # reviewed before the merge: a person approves each team merged last
        needed = {d for t in teams for d in t.get("depends_on", [])}
        for i, team in enumerate(teams):
            if team["id"] not in needed and not team.get("approval"):
                team["approval"] = True
                note(
                    ("teams", i, "approval"),
                    f"guess: {found.reviews[0]!r} before the integration: a person approves it",
                )

    front = found.front
    title = front.get("name") or front.get("title") or found.title or ""
    name = words.slug(title, limit=64) or words.slug(PurePath(source).stem, limit=64) or "imported"
    data: dict[str, Any] = {"version": 1, "name": name}
    c[("name",)] = f"from the title {title!r}" if title else f"guess: from the file name {source!r}"
    if front.get("description"):
        data["description"] = front["description"]
    data["repo"] = "."
    c[("repo",)] = "guess: the git repository is the folder of this plan file"
    agent = words.agent_kind(front.get("agent", "")) if front.get("agent") else None
    data["defaults"] = {"agent": agent or "claude-code"}
    if agent is None:
        c[("defaults", "agent")] = "guess: the document names no agent"
    data["teams"] = teams
    tests = list(dict.fromkeys(found.tests))
    if tests:
        data["integration"] = {"test": tests[0] if len(tests) == 1 else tests}
    draft.data = data
    return draft


def _team(u: Unit, i: int, deps: list[str], note: Any) -> dict[str, Any]:
    team: dict[str, Any] = {"id": u.id}
    extra: list[str] = []  # owners, branches, ...: the task text keeps them
    role_text = u.role_text
    role_from = "parentheses"
    roles = _texts(u.fields.get("role", []))
    owners = _texts(u.fields.get("owner", []))
    if roles:
        role_text, role_from = roles[0], "Role line"
    elif owners and words.guess_role(owners[0])[0]:
        role_text, role_from = owners[0], "Owner line"
    extra += [f"Owner: {o}" for o in owners]
    extra += [f"Branch: {b}" for b in _texts(u.fields.get("branch", []))]
    for text in _texts(u.fields.get("agent", [])):
        kind = words.agent_kind(text)
        if kind and "agent" not in team:
            team["agent"] = kind
            if kind != text.strip().lower():
                note(("teams", i, "agent"), f"from {text!r}")
        elif not kind and role_text is None and words.guess_role(text)[0]:
            role_text, role_from = text, "Agent line"
        else:
            extra.append(f"Agent: {text}")
    role, exact = words.guess_role(role_text) if role_text else (None, False)
    name = u.title
    if role_text and not role and role_from == "parentheses":
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
    if "agent" in team:  # keep the key order of a hand-written plan
        team["agent"] = team.pop("agent")
    tasks = _texts(u.fields.get("task", []))
    if tasks:
        task = "\n".join(tasks)
    elif u.prose:
        task = "\n".join(u.prose)
        note(("teams", i, "task"), "guess: the section's text, it has no Task line")
    else:
        task = u.title or u.source
        note(("teams", i, "task"), "guess: the title, the document gives no task text")
    team["task"] = "\n".join([task, *extra]) if extra else task
    delivs, guesses, not_paths = deliverables_of(u)
    if delivs:
        team["deliverables"] = delivs
    if guesses:
        note(("teams", i, "deliverables"), "guess: " + "; ".join(guesses))
    checks = [c for lines in u.fields.get("checks", []) for ln in lines for c in ln.codes]
    if checks:
        team["checks"] = checks
    acceptance = _texts(u.fields.get("acceptance", [])) + [
        a for a in not_paths if a not in _texts(u.fields.get("acceptance", []))
    ]
    if acceptance:
        team["acceptance"] = acceptance
    if u.gate:
        team["approval"] = True
        note(("teams", i, "approval"), "its Go/No-Go criteria: a person approves its work")
    team["depends_on"] = list(deps)
    est_texts = _texts(u.fields.get("estimate", [])) or (
        [u.estimate_text] if u.estimate_text else []
    )
    for text in est_texts:
        seconds = words.estimate_seconds(text)
        if seconds is None:
            continue
        from orchestrator.plan.models import format_duration

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
