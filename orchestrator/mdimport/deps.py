"""Dependencies said in words: references to teams, sentences, Mermaid graphs.

:class:`Resolver` turns a reference ("Team 1", "#3", "Teams 1-4", "SRCH-101",
"Phase 2", a team's title or id) into the units it names. :func:`mentions`
finds every such reference in a sentence, :func:`sentence_edges` reads which
side waits for which ("Team 3 can only start once Team 1's schema is merged",
"Erst wenn Team 1 fertig ist, kann Team 3 beginnen"), and
:func:`mermaid_edges` reads ``graph`` / ``flowchart`` blocks (``A --> B``: B
waits for A). Nothing here guesses silently: whatever names a team or speaks of
an order and gives no edge comes back as a reason, for the import's report.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.mdimport import words

if TYPE_CHECKING:
    from orchestrator.mdimport.interpret import Group, Unit

REF_HEAD = re.compile(rf"^(?:{words.UNIT_WORDS}|{words.PHASE_WORDS}|#)", re.IGNORECASE)
ALL = re.compile(
    r"^(?:all|all(?: the)?(?: other)? teams|all others|every(?:one| team| other team)|everything|"
    r"alle|alle(?: anderen)? teams|todos|todos los (?:dem\u00e1s )?equipos|"
    r"todos los equipos|tous|toutes les \u00e9quipes|tutti)$",
    re.IGNORECASE,
)
_ARROWS = re.compile(
    r"<[-\u2500]+|\u2190|[-\u2500=]+[>\u25ba\u25b6]|[\u2192\u27f6\u2794\u279c\u21d2]"
)
_BACK_ARROWS = re.compile(r"<[-\u2500]+|\u2190")
_GENERIC = re.compile(
    r"\b(?:the|team|teams|squad|group|work|workstream|stream|service|'s|das|die|der|el|la|"
    r"equipo|\u00e9quipe|le|les)\b",
    re.IGNORECASE,
)
_HASH_REF = re.compile(r"(?<![\w&#])#(?P<key>\d+(?:\.\d+)*[A-Za-z]?)\b")
_CLAUSE = re.compile(r",|;|\bthen\b|\bdann\b|\bentonces\b|\bpuis\b|\balors\b")
_SENTENCE = re.compile(r"(?<=[.!?;])\s+(?=[A-Z\u00c0-\u024f\u0400-\u04ff\"'`*(#])")


def _phase_key(group: Group) -> str | None:
    m = words.PHASE.search(group.title)
    return m.group("key").lower() if m else None


def ends(group: Group) -> list[Unit]:
    """The units that end a group: its last one when sequential, else all of them."""
    if not group.units:
        return []
    return [group.units[-1]] if group.mode == "sequential" else list(group.units)


class Resolver:
    """References -> units, among the units and groups the walk found."""

    def __init__(self, units: list[Unit], groups: list[Group]) -> None:
        self.units = units
        self.groups = groups
        self._names: tuple[dict[str, list[Unit]], re.Pattern[str] | None] | None = None

    def names(self) -> tuple[dict[str, list[Unit]], re.Pattern[str] | None]:
        """Every way a unit is written out in prose (lowercased) and one pattern for them
        all, built once: a pattern per unit and sentence would be quadratic."""
        if self._names is None:
            table: dict[str, list[Unit]] = {}
            for u in self.units:
                spelled = {u.id.lower(), u.title.lower()}
                if u.key and re.fullmatch(r"[a-z]+\d+[a-z]?", u.key):
                    spelled.add(u.key)  # a table's row id: "A3"
                for name in spelled:
                    if len(name) >= 4 or name == u.key:
                        table.setdefault(name, []).append(u)
            table = {k: v for k, v in table.items() if len(v) == 1}
            alternatives = "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True))
            pattern = re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])") if table else None
            self._names = (table, pattern)
        return self._names

    def key(self, kind: str, key: str) -> list[Unit]:
        if kind == "phase":
            for g in self.groups:
                if g.phase and _phase_key(g) == key:
                    return ends(g)
            return []
        groups = [g for g in self.groups if g.units and g.word == kind and g.key == key]
        if len(groups) == 1 and not any(u.kind == kind for u in self.units):
            return ends(groups[0])  # "needs Group 1": the end of that group
        cands = [u for u in self.units if u.key == key]
        if len(cands) > 1 and kind:
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
        if len(near) == 1:
            return near
        ids = [u for u in self.units if u.id.lower() == t or (u.key and u.key == t)]
        return ids if len(ids) == 1 else []

    def title(self, text: str) -> list[Unit]:
        text = text.strip(" .;:*`\"'")
        s = words.slug(text, limit=200)
        if not s or s in ("all", "everything", "any", "each", "the", "none"):
            return []
        low = text.lower()
        cands = [
            u
            for u in self.units
            if s in (u.id.lower(), words.slug(u.title, limit=200)) or (u.key and u.key == low)
        ]
        if len(cands) != 1:
            pat = re.compile(rf"\b{re.escape(low)}\b")
            cands = [u for u in self.units if pat.search(u.title.lower())]
        if len(cands) != 1:  # "the backend team", "auth work": the generic word goes
            short = _GENERIC.sub(" ", low).strip()
            if short and short != low:
                return self.title(short)
        return cands if len(cands) == 1 else []

    def refs(
        self, text: str, me: Unit | None, *, upstream: bool = False
    ) -> tuple[list[Unit], list[str], bool]:
        """(units named, names not understood, whether it says "none").

        ``upstream``: the text says what ``me`` waits for, so "all other teams" is
        every other unit (as a downstream list it is too broad to read)."""
        from orchestrator.mdimport.refs import is_none, ref_spans

        if is_none(text):
            return [], [], True
        if ALL.match(text.strip(" .")):
            if upstream and me is not None:
                return [u for u in self.units if u is not me], [], False
            return [], [f"{text.strip()} (too broad to read as teams)"], False
        keys, tickets, rest = ref_spans(text)
        found: list[Unit] = []
        missing: list[str] = []
        for kind, key in keys:
            hit = self.key(kind or "", key)
            found.extend(hit) if hit else missing.append(f"{kind or '#'} {key}".strip())
        for token in tickets:
            hit = self.ticket(token)
            found.extend(hit) if hit else missing.append(token)
        if not keys and not tickets:
            pieces = re.split(
                r"\s*(?:,|;|\band\b|\bund\b|\by\b|\bet\b|\bor\b|&|\+)\s*", rest.strip()
            )
            for piece in pieces:
                piece = re.sub(r"^(?:the|die|der|das|el|la|los|las|le|les)\s+", "", piece.strip())
                if piece.strip(" .-"):
                    hit = self.title(piece)
                    found.extend(hit) if hit else missing.append(piece.strip())
        out: list[Unit] = []
        for u in found:
            if u is not me and u not in out:
                out.append(u)
        return out, missing, False


# ------------------------------------------------------------------ mentions in free text


@dataclass
class Mention:
    start: int
    end: int
    units: list[Unit]
    text: str


def mentions(text: str, resolver: Resolver) -> list[Mention]:
    """Every reference to a unit in ``text``, in order (an unknown "Team 9" has no units)."""
    from orchestrator.mdimport.refs import MAX_WALKED, REF, expand_keys

    found: list[Mention] = []
    starts: list[int] = []  # of ``found``, sorted: the mentions never overlap each other

    def add(start: int, end: int, units: list[Unit], raw: str) -> None:
        # Only the mention starting last before ``end`` can overlap [start, end): a look
        # per mention, not a scan of all (a sentence naming 20,000 teams took minutes).
        at = bisect.bisect_left(starts, end)
        if at and found[at - 1].end > start:
            return
        starts.insert(at, start)
        found.insert(at, Mention(start, end, units, raw))

    budget = [MAX_WALKED]  # shared by every reference of the text
    for m in REF.finditer(text):
        kind = re.sub(r"[\s-]+", "", m.group("kind").lower())
        units: list[Unit] = []
        for key in expand_keys(m.group("keys"), budget):
            for u in resolver.key(kind, key):
                if u not in units:
                    units.append(u)
        add(m.start(), m.end(), units, m.group(0))
    for m in words.PHASE.finditer(text):
        add(m.start(), m.end(), resolver.key("phase", m.group("key").lower()), m.group(0))
    for m in _HASH_REF.finditer(text):
        add(m.start(), m.end(), resolver.key("", m.group("key").lower()), m.group(0))
    for m in re.finditer(rf"(?<![\w-]){words.TICKET}", text):
        hit = resolver.ticket(m.group(0))
        if hit or not re.fullmatch(r"[a-z]+(?:-[a-z]+)+\d*", m.group(0)):
            add(m.start(), m.end(), hit, m.group(0))
    names, pattern = resolver.names()
    if pattern is not None:  # ids, titles and table row ids ("A3") written out
        for m in pattern.finditer(text.lower()):
            add(m.start(), m.end(), names[m.group(0)], text[m.start() : m.end()])
    return found


@dataclass
class SentenceResult:
    edges: list[tuple[Unit, Unit]] = field(default_factory=list)  # (waits, for)
    problem: str | None = None  # why it gave no edge although it should have


def sentence_edges(text: str, owner: Unit | None, resolver: Resolver) -> SentenceResult:
    """The order one sentence states between units (``owner``: the unit it belongs to)."""
    found = mentions(text, resolver)
    others = [m for m in found if m.units and not (owner is not None and m.units == [owner])]
    unknown = [m.text for m in found if not m.units]
    cues = sorted(
        [(m.start(), m.end(), "waits") for m in words.WAITS.finditer(text)]
        + [(m.start(), m.end(), "precedes") for m in words.PRECEDES.finditer(text)]
        + [
            (m.start(), m.end(), "waits" if _BACK_ARROWS.fullmatch(m.group(0)) else "precedes")
            for m in _ARROWS.finditer(text)
        ]
    )
    cues = [c for c in cues if not any(m.start <= c[0] < m.end for m in found)]
    kept: list[tuple[int, int, str]] = []
    for c in cues:  # overlapping cues ("starts after" and "after"): the first
        if not kept or c[0] >= kept[-1][1]:
            kept.append(c)
    cues = kept
    result = SentenceResult()
    if not others and not unknown:
        return result
    if not cues:
        unknown = [m.text for m in found if not m.units and REF_HEAD.match(m.text)]
        if not others and not unknown:
            return result
        if unknown:
            result.problem = f"names {', '.join(unknown)}, which is no team found"
        else:
            names = ", ".join(sorted({u.id for m in others for u in m.units}))
            result.problem = f"names {names} but says no order"
        return result

    def units_in(lo: int, hi: int) -> list[Unit]:
        out: list[Unit] = []
        for m in found:
            if lo <= m.start < hi:
                out.extend(u for u in m.units if u not in out)
        return out

    first = cues[0][0]
    subject = units_in(0, first)
    bounds = [c[0] for c in cues[1:]] + [len(text)]
    arrows = {c[0] for c in cues if _ARROWS.fullmatch(text[c[0] : c[1]])}
    previous: tuple[int, list[Unit]] | None = None
    for (start, end, kind), stop in zip(cues, bounds, strict=True):
        objects = units_in(end, stop)
        if previous is not None and start in arrows and previous[0] in arrows:
            subject = previous[1]  # "A ──► B ──► C": C comes after B, not after A
        previous = (start, objects)
        downs, ups = (subject, objects) if kind == "waits" else (objects, subject)
        if not subject:
            # "After Team 1 is merged, Team 3 starts" / "Before Team 3 starts, Team 1 ..."
            clause = _CLAUSE.search(text, end)
            if clause is not None and clause.start() < stop:
                head, tail = units_in(end, clause.start()), units_in(clause.end(), stop)
                if kind == "waits":
                    ups, downs = head, tail or ([owner] if owner else [])
                else:
                    downs, ups = head, tail or ([owner] if owner else [])
            elif owner is not None:
                downs, ups = ([owner], objects) if kind == "waits" else (objects, [owner])
        for d in downs:
            for u in ups:
                if d is not u and (d, u) not in result.edges:
                    result.edges.append((d, u))
    if not result.edges:
        named = sorted({u.id for m in others for u in m.units})
        result.problem = (
            f"names {', '.join(named)}, but the other side of the order is no team found"
            if named
            else "speaks of an order but names no team found"
        )
        if unknown:
            result.problem = f"names {', '.join(unknown)}, which is no team found"
    elif unknown:
        result.problem = f"also names {', '.join(unknown)}, which is no team found"
    return result


def sentences(text: str) -> list[str]:
    """``text`` cut into sentences (a line may hold several)."""
    return [s for s in _SENTENCE.split(text) if s.strip()]


# ------------------------------------------------------------------ Mermaid

_MERMAID_SKIP = re.compile(
    r"^(?:graph|flowchart|subgraph|end|style|classDef|class|click|linkStyle|direction)\b"
)
_NODE = re.compile(
    r"^\s*(?P<id>[\w\u00c0-\uffff.-]+?)\s*(?:"
    r"\(\[(?P<l1>.*?)\]\)|\[\[(?P<l2>.*?)\]\]|\[\((?P<l3>.*?)\)\]|\(\((?P<l4>.*?)\)\)|"
    r"\[(?P<l5>.*?)\]|\((?P<l6>.*?)\)|\{\{(?P<l7>.*?)\}\}|\{(?P<l8>.*?)\}|>(?P<l9>.*?)\]"
    r")?\s*(?::::\w+)?\s*$"
)
_LINK_TEXT = re.compile(r"(--|==|-\.)\s+[^-=>|]+?\s+(-->|==>|\.->|---|===)")
_ARROW = re.compile(r"\s*(<?(?:-{2,}|={2,}|-\.+-?)(?:>|o|x)?)(?:\|[^|]*\|)?\s*")


@dataclass(frozen=True)
class MermaidEdge:
    lineno: int
    up: str  # node id that comes first
    down: str  # node id that waits
    directed: bool
    line: str


def mermaid_edges(content: str, first_line: int) -> tuple[list[MermaidEdge], dict[str, str]]:
    """(edges, node id -> label) of a Mermaid ``graph`` / ``flowchart`` block."""
    labels: dict[str, str] = {}
    edges: list[MermaidEdge] = []
    lines = content.split("\n")
    if not lines or not re.match(
        r"^\s*(?:graph|flowchart)\b",
        next((ln for ln in lines if ln.strip() and not ln.strip().startswith("%%")), ""),
    ):
        return [], {}
    for n, raw in enumerate(lines):
        line = raw.split("%%", 1)[0].strip().rstrip(";")
        if not line or _MERMAID_SKIP.match(line):
            continue
        for stmt in line.split(";"):
            stmt = _LINK_TEXT.sub(lambda m: m.group(2), stmt.strip())
            parts = _ARROW.split(stmt)
            nodes: list[list[str]] = []
            arrows: list[str] = []
            for i, part in enumerate(parts):
                if i % 2:
                    arrows.append(part)
                    continue
                group = []
                for piece in re.split(r"\s+&\s+", part.strip()):
                    m = _NODE.match(piece)
                    if m is None or not m.group("id"):
                        continue
                    label = next((g for g in m.groups()[1:] if g is not None), None)
                    if label is not None:
                        labels[m.group("id")] = label.strip().strip("\"'")
                    group.append(m.group("id"))
                nodes.append(group)
            for i, arrow in enumerate(arrows):
                if i + 1 >= len(nodes):
                    break
                left, right = nodes[i], nodes[i + 1]
                forward, backward = arrow.endswith((">", "o", "x")), arrow.startswith("<")
                for a in left:
                    for b in right:
                        if forward and not backward:
                            edges.append(MermaidEdge(first_line + n, a, b, True, raw.strip()))
                        elif backward and not forward:
                            edges.append(MermaidEdge(first_line + n, b, a, True, raw.strip()))
                        else:
                            edges.append(MermaidEdge(first_line + n, a, b, False, raw.strip()))
    return edges, labels
