"""The team DAG: dependency order, waves, cycles, critical path, a rough timeline.

Pure functions over a validated :class:`~orchestrator.plan.Plan` (the loader
has already refused unknown dependencies and cycles), except
:func:`find_cycle`, which the loader runs on raw data before a plan exists.
Plan order breaks every tie, so the same plan always gives the same answer.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from orchestrator.plan import Plan

DEFAULT_ESTIMATE = 15 * 60.0
"""Seconds assumed for a team without an ``estimate`` (critical path, timeline)."""


def _deps(plan: Plan) -> dict[str, tuple[str, ...]]:
    return {t.id: t.depends_on for t in plan.teams}


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
        stack: list[tuple[str, int]] = [(root, 0)]
        path: list[str] = [root]
        colour[root] = grey
        while stack:
            node, i = stack[-1]
            children = [d for d in deps[node] if d in colour]
            if i < len(children):
                stack[-1] = (node, i + 1)
                child = children[i]
                if colour[child] == grey:
                    start = path.index(child)
                    return [*path[start:], child]
                if colour[child] == white:
                    colour[child] = grey
                    stack.append((child, 0))
                    path.append(child)
            else:
                colour[node] = black
                stack.pop()
                path.pop()
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
    done: dict[str, float] = {}
    running: list[tuple[float, int, str]] = []  # (finish, index, team)
    started: dict[str, float] = {}
    now = 0.0
    while len(done) < len(deps):
        ready = sorted(
            (t for t in deps if t not in started and all(d in done for d in deps[t])),
            key=index.__getitem__,
        )
        for tid in ready:
            if len(running) >= plan.max_parallel:
                break
            started[tid] = now
            heapq.heappush(running, (now + _estimate(plan, tid, default_estimate), index[tid], tid))
        if not running:  # only a cycle could get us here; the loader refuses those
            raise ValueError("the plan's dependencies contain a cycle")
        now, _, tid = heapq.heappop(running)
        done[tid] = now
        while running and running[0][0] == now:
            _, _, other = heapq.heappop(running)
            done[other] = now
    return sorted(
        (Slot(t, started[t], done[t]) for t in deps), key=lambda s: (s.start, index[s.team])
    )


# --- deliverable overlap ----------------------------------------------------

_ANY, _STAR, _DSTAR = "\x00?", "\x00*", "\x00**"


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
    p, q = _tokens(a), _tokens(b)
    memo: dict[tuple[int, int], bool] = {}

    def single_ok(x: str, y: str) -> bool:
        if x == _ANY:
            return y != "/"
        if y == _ANY:
            return x != "/"
        return x == y

    def f(i: int, j: int) -> bool:
        key = (i, j)
        if key in memo:
            return memo[key]
        memo[key] = False
        result = False
        if i == len(p) and j == len(q):
            result = True
        elif i < len(p) and p[i] in (_STAR, _DSTAR):
            result = f(i + 1, j) or (
                j < len(q)
                and (q[j] in (_STAR, _DSTAR) or p[i] == _DSTAR or q[j] != "/")
                and f(i, j + 1)
            )
        elif j < len(q) and q[j] in (_STAR, _DSTAR):
            result = f(i, j + 1) or (i < len(p) and (q[j] == _DSTAR or p[i] != "/") and f(i + 1, j))
        elif i < len(p) and j < len(q):
            result = single_ok(p[i], q[j]) and f(i + 1, j + 1)
        memo[key] = result
        return result

    return f(0, 0)


@dataclass(frozen=True)
class Overlap:
    """Two teams that may run at the same time and may write the same file."""

    team_a: str
    deliverable_a: str
    team_b: str
    deliverable_b: str


def deliverable_overlaps(plan: Plan) -> list[Overlap]:
    """Pairs of teams, neither upstream of the other, whose deliverables may name one file."""
    ups = {t.id: set(upstream(plan, t.id)) for t in plan.teams}
    out: list[Overlap] = []
    teams = list(plan.teams)
    for i, a in enumerate(teams):
        for b in teams[i + 1 :]:
            if a.id in ups[b.id] or b.id in ups[a.id]:
                continue
            for da in a.deliverables:
                hit = next((db for db in b.deliverables if globs_overlap(da, db)), None)
                if hit is not None:
                    out.append(Overlap(a.id, da, b.id, hit))
                    break
    return out
