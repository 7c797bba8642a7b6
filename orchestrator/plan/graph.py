"""The team DAG: dependency order, waves, cycles, critical path, a rough timeline.

Pure functions over a validated :class:`~orchestrator.plan.models.Plan` (the loader
has already refused unknown dependencies and cycles), except
:func:`find_cycle`, which the loader runs on raw data before a plan exists.
Plan order breaks every tie, so the same plan always gives the same answer.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from orchestrator.plan.models import Plan

DEFAULT_ESTIMATE = 15 * 60.0
"""Seconds assumed for a team without an ``estimate`` (critical path, timeline)."""


def _deps(plan: Plan) -> Mapping[str, tuple[str, ...]]:
    return plan.dependencies()


def find_cycle(deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """A dependency cycle as a closed walk (``['db', 'auth', 'db']``), or ``None``.

    Edges to names that are not keys of ``deps`` are ignored (the loader
    reports those as unknown teams). Iterative, so a long chain cannot hit
    the recursion limit.
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(deps, white)
    for root in deps:
        if colour[root] != white:
            continue
        # Each node's children are listed once, when it is entered: a team with thousands
        # of upstream teams costs its edges, not their square.
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(deps[root]))]
        path: list[str] = [root]
        colour[root] = grey
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = black
                stack.pop()
                path.pop()
                continue
            state = colour.get(child)
            if state == grey:
                start = path.index(child)
                return [*path[start:], child]
            if state == white:
                colour[child] = grey
                stack.append((child, iter(deps[child])))
                path.append(child)
    return None


def topo_order(plan: Plan) -> list[str]:
    """Every team id, each after all of its upstream teams; plan order breaks ties."""
    deps = _deps(plan)
    index = {tid: i for i, tid in enumerate(deps)}
    children: dict[str, list[str]] = {tid: [] for tid in deps}
    missing = dict.fromkeys(deps, 0)
    for tid, ups in deps.items():
        for up in set(ups):
            children[up].append(tid)
            missing[tid] += 1
    ready = [(index[t], t) for t, n in missing.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, tid = heapq.heappop(ready)
        order.append(tid)
        for child in children[tid]:
            missing[child] -= 1
            if missing[child] == 0:
                heapq.heappush(ready, (index[child], child))
    if len(order) != len(deps):
        raise ValueError("the plan's dependencies contain a cycle")
    return order


def waves(plan: Plan) -> list[list[str]]:
    """Teams grouped by depth: wave n holds the teams whose longest upstream chain has n links."""
    deps = _deps(plan)
    depth: dict[str, int] = {}
    for tid in topo_order(plan):
        depth[tid] = 1 + max((depth[d] for d in deps[tid]), default=-1)
    out: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
    for tid in deps:  # plan order inside a wave
        out[depth[tid]].append(tid)
    return out


def upstream(plan: Plan, team_id: str, *, order: Mapping[str, int] | None = None) -> list[str]:
    """Every team ``team_id`` depends on, directly or not, in dependency order.

    ``order``: each team's index in :func:`topo_order`, for callers that ask
    often (computing the order is the costly part on a large plan).
    """
    deps = _deps(plan)
    seen: set[str] = set()
    todo = list(deps[team_id])
    while todo:
        tid = todo.pop()
        if tid not in seen:
            seen.add(tid)
            todo.extend(deps[tid])
    if order is None:
        return [t for t in topo_order(plan) if t in seen]
    return sorted(seen, key=order.__getitem__)


def downstream(plan: Plan, team_id: str) -> set[str]:
    """Every team that depends on ``team_id``, directly or not."""
    children: dict[str, list[str]] = {t.id: [] for t in plan.teams}
    for t in plan.teams:
        for up in t.depends_on:
            children[up].append(t.id)
    seen: set[str] = set()
    todo = list(children[team_id])
    while todo:
        tid = todo.pop()
        if tid not in seen:
            seen.add(tid)
            todo.extend(children[tid])
    return seen


def _estimate(plan: Plan, team_id: str, default: float) -> float:
    est = plan.team(team_id).estimate
    return default if est is None else est


def critical_path(
    plan: Plan, default_estimate: float = DEFAULT_ESTIMATE
) -> tuple[list[str], float]:
    """The chain of teams with the largest summed estimate, and that sum in seconds.

    Teams without an ``estimate`` count ``default_estimate`` seconds.
    """
    deps = _deps(plan)
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for tid in topo_order(plan):
        best: str | None = None
        for d in deps[tid]:
            if best is None or finish[d] > finish[best]:
                best = d
        via[tid] = best
        finish[tid] = (finish[best] if best else 0.0) + _estimate(plan, tid, default_estimate)
    if not finish:
        return [], 0.0
    end = max(finish, key=lambda t: finish[t])  # first in topo order wins a tie
    chain: list[str] = []
    cur: str | None = end
    while cur is not None:
        chain.append(cur)
        cur = via[cur]
    return chain[::-1], finish[end]


@dataclass(frozen=True)
class Slot:
    """When a team would start and finish in :func:`simulate` (seconds from the start)."""

    team: str
    start: float
    finish: float


def simulate(plan: Plan, default_estimate: float = DEFAULT_ESTIMATE) -> list[Slot]:
    """A rough schedule: teams start as soon as their upstream teams finish and a slot is free.

    Honours ``max_parallel``; among ready teams, plan order goes first. Every
    team is assumed to succeed at its first attempt in its estimate.
    """
    deps = _deps(plan)
    index = {tid: i for i, tid in enumerate(deps)}
    children: dict[str, list[str]] = {tid: [] for tid in deps}
    missing = dict.fromkeys(deps, 0)
    for tid, ups in deps.items():
        for up in set(ups):
            children[up].append(tid)
            missing[tid] += 1
    ready = [(index[t], t) for t, n in missing.items() if n == 0]  # (plan index, team)
    heapq.heapify(ready)
    running: list[tuple[float, int, str]] = []  # (finish, plan index, team)
    started: dict[str, float] = {}
    done: dict[str, float] = {}
    now = 0.0

    def finish(tid: str) -> None:
        done[tid] = now
        for child in children[tid]:
            missing[child] -= 1
            if missing[child] == 0:
                heapq.heappush(ready, (index[child], child))

    while len(done) < len(deps):
        while ready and len(running) < plan.max_parallel:
            _, tid = heapq.heappop(ready)
            started[tid] = now
            heapq.heappush(running, (now + _estimate(plan, tid, default_estimate), index[tid], tid))
        if not running:  # only a cycle could get us here; the loader refuses those
            raise ValueError("the plan's dependencies contain a cycle")
        now, _, tid = heapq.heappop(running)
        finish(tid)
        while running and running[0][0] == now:
            finish(heapq.heappop(running)[2])
    return sorted(
        (Slot(t, started[t], done[t]) for t in deps), key=lambda s: (s.start, index[s.team])
    )


# --- deliverable overlap ----------------------------------------------------

_ANY, _STAR, _DSTAR = "\x00?", "\x00*", "\x00**"
_SPECIAL = frozenset({_ANY, _STAR, _DSTAR})


def _tokens(pattern: str) -> tuple[str, ...]:
    """A glob as tokens: literal characters, ``?``/``[..]`` (one char), ``*``, ``**``."""
    text = pattern.replace("\\", "/").removeprefix("./")
    out: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("**/", i):
            out.append(_DSTAR)
            i += 3
        elif text.startswith("**", i):
            out.append(_DSTAR)
            i += 2
        elif text[i] == "*":
            out.append(_STAR)
            i += 1
        elif text[i] == "?":
            out.append(_ANY)
            i += 1
        elif text[i] == "[" and "]" in text[i + 2 :]:
            out.append(_ANY)  # a character class: conservatively, any one character
            i = text.index("]", i + 2) + 1
        else:
            out.append(text[i])
            i += 1
    return tuple(out)


def globs_overlap(a: str, b: str) -> bool:
    """Whether some path could match both deliverables ``a`` and ``b`` (paths or globs).

    ``*`` and ``?`` stay within one folder, ``**`` crosses folders. Character
    classes count as any character, so the answer errs on the side of "yes".
    """
    return _tokens_overlap(_tokens(a), _tokens(b))


def _tokens_overlap(p: tuple[str, ...], q: tuple[str, ...]) -> bool:
    """:func:`globs_overlap` on tokens: ``f(i, j)`` (can ``p[i:]`` and ``q[j:]`` match one
    path?) filled in from the ends, one row at a time: no recursion, so any length works."""
    lp, lq = len(p), len(q)
    if not any(t in _SPECIAL for t in p) and not any(t in _SPECIAL for t in q):
        return p == q
    wild = (_STAR, _DSTAR)
    below = [False] * (lq + 1)  # row i + 1
    below[lq] = False
    for i in range(lp, -1, -1):
        row = [False] * (lq + 1)
        for j in range(lq, -1, -1):
            if i == lp and j == lq:
                ok = True
            elif i < lp and p[i] in wild:
                ok = below[j] or (
                    j < lq and (q[j] in wild or p[i] == _DSTAR or q[j] != "/") and row[j + 1]
                )
            elif j < lq and q[j] in wild:
                ok = row[j + 1] or (i < lp and (q[j] == _DSTAR or p[i] != "/") and below[j])
            elif i < lp and j < lq:
                x, y = p[i], q[j]
                same = y != "/" if x == _ANY else x != "/" if y == _ANY else x == y
                ok = same and below[j + 1]
            else:
                ok = False
            row[j] = ok
        below = row
    return below[0]


@dataclass(frozen=True)
class Overlap:
    """Two teams that may run at the same time and may write the same file."""

    team_a: str
    deliverable_a: str
    team_b: str
    deliverable_b: str


def deliverable_overlaps(plan: Plan) -> list[Overlap]:
    """Pairs of teams, neither upstream of the other, whose deliverables may name one file.

    In plan order (``team_a`` before ``team_b``), each pair once with its first overlapping
    deliverables. Near-linear in the plan's size: deliverables are compared only with those
    whose fixed prefix agrees, and "neither upstream of the other" is a bit test against
    each team's set of upstream teams (an integer used as a bit set, indexed by dependency
    order, dropped once every downstream team has taken it over).
    """
    order = topo_order(plan)
    pos = {tid: i for i, tid in enumerate(order)}
    deps = _deps(plan)
    owners: dict[tuple[str, ...], int] = {}  # deliverable tokens -> bit set of teams
    for team in plan.teams:
        for item in team.deliverables:
            tokens = _tokens(item)
            owners[tokens] = owners.get(tokens, 0) | (1 << pos[team.id])
    index = _PrefixIndex(owners)
    partners: dict[tuple[str, ...], int] = {}  # tokens -> teams with an overlapping deliverable
    pending = dict.fromkeys(deps, 0)  # downstream teams yet to take over a team's bit set
    for direct in deps.values():
        for up in set(direct):
            pending[up] += 1
    above: dict[str, int] = {}  # team -> bit set of its upstream teams (while still needed)
    pairs: list[tuple[str, str]] = []
    for i, tid in enumerate(order):
        ups = 0
        for up in set(deps[tid]):
            ups |= above[up] | (1 << pos[up])
            pending[up] -= 1
            if pending[up] == 0:
                del above[up]
        if pending[tid]:
            above[tid] = ups
        mask = 0
        for item in plan.team(tid).deliverables:
            tokens = _tokens(item)
            if tokens not in partners:
                partners[tokens] = index.overlapping(tokens)
            mask |= partners[tokens]
        mask &= ((1 << i) - 1) & ~ups  # earlier in dependency order and not upstream
        while mask:
            low = mask & -mask
            pairs.append((order[low.bit_length() - 1], tid))
            mask ^= low
    plan_index = {t.id: n for n, t in enumerate(plan.teams)}
    out: list[Overlap] = []
    for x, y in sorted(
        (tuple(sorted(pair, key=plan_index.__getitem__)) for pair in pairs),
        key=lambda pair: (plan_index[pair[0]], plan_index[pair[1]]),
    ):
        a, b = plan.team(x), plan.team(y)
        for da in a.deliverables:
            hit = next((db for db in b.deliverables if globs_overlap(da, db)), None)
            if hit is not None:
                out.append(Overlap(a.id, da, b.id, hit))
                break
    return out


class _PrefixIndex:
    """Deliverables (as tokens, each with its bit set of teams) looked up by overlap.

    Two deliverables can only overlap if their fixed prefixes (the characters before the
    first wildcard) agree as far as the shorter goes: so one is a prefix of the other.
    Those with a longer prefix are a range of the sorted prefixes; those with a shorter
    one are found by looking up each prefix of the asked one.
    """

    def __init__(self, owners: dict[tuple[str, ...], int]) -> None:
        self.by_prefix: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        for tokens, teams in owners.items():
            self.by_prefix.setdefault(_prefix(tokens), []).append((tokens, teams))
        self.sorted = sorted(self.by_prefix)

    def overlapping(self, tokens: tuple[str, ...]) -> int:
        """The bit set of every team with a deliverable that may overlap ``tokens``."""
        prefix = _prefix(tokens)
        keys: list[str] = [prefix[:k] for k in range(len(prefix)) if prefix[:k] in self.by_prefix]
        at = bisect.bisect_left(self.sorted, prefix)
        while at < len(self.sorted) and self.sorted[at].startswith(prefix):
            keys.append(self.sorted[at])
            at += 1
        found = 0
        for key in keys:
            for other, teams in self.by_prefix[key]:
                if other == tokens or _tokens_overlap(tokens, other):
                    found |= teams
        return found


def _prefix(tokens: tuple[str, ...]) -> str:
    out: list[str] = []
    for token in tokens:
        if token in _SPECIAL:
            break
        out.append(token)
    return "".join(out)
