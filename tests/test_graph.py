"""The team graph: order, waves, cycles, critical path, timeline, overlapping deliverables."""

from __future__ import annotations

import random
from typing import Any

import pytest

from orchestrator.plan import graph
from orchestrator.plan.models import Plan


def make_plan(*teams: dict[str, Any], max_parallel: int = 4) -> Plan:
    return Plan.model_validate(
        {
            "version": 1,
            "name": "g",
            "max_parallel": max_parallel,
            "teams": [{"task": "t", **t} for t in teams],
        }
    )


PLAN = make_plan(
    {"id": "db", "estimate": "20m", "deliverables": ["src/db/*.py"]},
    {"id": "auth", "depends_on": ["db"], "estimate": "30m", "deliverables": ["src/auth.py"]},
    {"id": "api", "depends_on": ["db"], "estimate": "10m", "deliverables": ["src/**/*.py"]},
    {"id": "services", "depends_on": ["db"], "estimate": "5m"},
    {"id": "tests", "depends_on": ["auth", "api"], "estimate": "15m"},
)


def test_topo_order_keeps_plan_order_for_ties() -> None:
    """Teams come after their upstream teams; otherwise in the order the plan lists them."""
    assert graph.topo_order(PLAN) == ["db", "auth", "api", "services", "tests"]


def test_waves() -> None:
    """Waves group teams that can run together."""
    assert graph.waves(PLAN) == [["db"], ["auth", "api", "services"], ["tests"]]


def test_find_cycle_returns_closed_walk() -> None:
    """A cycle comes back as a closed walk, printable as 'a -> b -> a'."""
    assert graph.find_cycle({"db": ["auth"], "auth": ["db"]}) == ["db", "auth", "db"]
    assert graph.find_cycle({"a": ["a"]}) == ["a", "a"]
    assert graph.find_cycle({"a": [], "b": ["a"], "c": ["b", "zzz"]}) is None


def test_find_cycle_long_chain_does_not_recurse() -> None:
    """A 5000-team chain is checked without hitting the recursion limit."""
    deps = {f"t{i}": [f"t{i + 1}"] for i in range(5000)}
    deps["t5000"] = ["t0"]
    cycle = graph.find_cycle(deps)
    assert cycle is not None and cycle[0] == cycle[-1] and len(cycle) == 5002


def test_upstream_and_downstream() -> None:
    """Upstream is transitive and ordered; downstream is transitive."""
    assert graph.upstream(PLAN, "tests") == ["db", "auth", "api"]
    assert graph.downstream(PLAN, "db") == {"auth", "api", "services", "tests"}
    assert graph.downstream(PLAN, "tests") == set()


def test_critical_path_by_estimate() -> None:
    """The critical path follows the largest summed estimates."""
    assert graph.critical_path(PLAN) == (["db", "auth", "tests"], 65 * 60.0)


def test_critical_path_default_estimate() -> None:
    """Teams without estimates count the default each."""
    plan = make_plan({"id": "a"}, {"id": "b", "depends_on": ["a"]}, {"id": "c"})
    assert graph.critical_path(plan, default_estimate=60) == (["a", "b"], 120.0)


def test_simulate_respects_max_parallel() -> None:
    """The timeline starts at most max_parallel teams at once, in plan order."""
    plan = PLAN.model_copy(update={"max_parallel": 2})
    slots = {s.team: (s.start, s.finish) for s in graph.simulate(plan)}
    assert slots["db"] == (0, 1200)
    assert slots["auth"] == (1200, 3000)
    assert slots["api"] == (1200, 1800)
    assert slots["services"] == (1800, 2100)
    assert slots["tests"] == (3000, 3900)


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/sub/a.py", False),
        ("src/**/*.py", "src/sub/deep/a.py", True),
        ("src/**/*.py", "src/a.py", True),
        ("src/*.js", "src/*.py", False),
        ("docs/*.md", "src/*", False),
        ("src/[ab].py", "src/c.py", True),
        ("./x.txt", "x.txt", True),
    ],
)
def test_globs_overlap(a: str, b: str, overlap: bool) -> None:
    """Two deliverables overlap when some path could match both."""
    assert graph.globs_overlap(a, b) is overlap
    assert graph.globs_overlap(b, a) is overlap


def test_deliverable_overlaps_only_for_concurrent_teams() -> None:
    """Only teams that may run at the same time are warned about (db is upstream of api)."""
    found = graph.deliverable_overlaps(PLAN)
    assert [(o.team_a, o.team_b) for o in found] == [("auth", "api")]
    assert (found[0].deliverable_a, found[0].deliverable_b) == ("src/auth.py", "src/**/*.py")


def _reference_overlaps(plan: Plan) -> list[graph.Overlap]:
    """The definition, written the obvious quadratic way: every pair in plan order, skipped
    when one is upstream of the other, reported with its first overlapping deliverables."""
    deps = {t.id: set(t.depends_on) for t in plan.teams}

    def ups(tid: str) -> set[str]:
        seen: set[str] = set()
        todo = list(deps[tid])
        while todo:
            cur = todo.pop()
            if cur not in seen:
                seen.add(cur)
                todo.extend(deps[cur])
        return seen

    out = []
    teams = list(plan.teams)
    for i, a in enumerate(teams):
        for b in teams[i + 1 :]:
            if a.id in ups(b.id) or b.id in ups(a.id):
                continue
            for da in a.deliverables:
                hit = next((db for db in b.deliverables if graph.globs_overlap(da, db)), None)
                if hit is not None:
                    out.append(graph.Overlap(a.id, da, b.id, hit))
                    break
    return out


@pytest.mark.parametrize("seed", range(30))
def test_deliverable_overlaps_match_the_definition(seed: int) -> None:
    """On random DAGs with random paths and globs, the fast search finds exactly the pairs
    (and deliverables, in plan order) that comparing every pair finds."""
    rnd = random.Random(seed)
    pieces = [
        "src/a.py",
        "src/b.py",
        "src/*.py",
        "src/**",
        "docs/*.md",
        "src/sub/c.py",
        "**/*.py",
        "x.txt",
        "src/[ab].py",
        "src/s?b/*",
        "docs/a.md",
        "src/",
    ]
    n = rnd.randint(2, 25)
    teams = []
    for i in range(n):
        ups = rnd.sample(range(i), k=min(i, rnd.randint(0, 3)))
        teams.append(
            {
                "id": f"t{i}",
                "depends_on": [f"t{j}" for j in ups],
                "deliverables": rnd.sample(pieces, k=rnd.randint(0, 3)),
            }
        )
    rnd.shuffle(teams)  # plan order differs from dependency order
    plan = make_plan(*teams)
    assert graph.deliverable_overlaps(plan) == _reference_overlaps(plan)


def test_globs_overlap_on_very_long_paths() -> None:
    """A deliverable thousands of characters long is compared without recursion."""
    deep = "/".join(["d"] * 3000) + "/x.py"
    assert graph.globs_overlap(deep, "**/x.py")
    assert not graph.globs_overlap(deep, "**/y.py")
    assert graph.globs_overlap(deep, deep)


@pytest.mark.slow
def test_a_20000_team_chain_is_planned() -> None:
    """`orchestrate plan` on 20,000 chained teams (each with a glob deliverable, and a last
    team that waits for all of them) completes: every graph function is near-linear. Before,
    the overlap search recomputed the dependency order per team and never finished."""
    n = 20_000
    teams = [
        {
            "id": f"t{i}",
            "deliverables": [f"src/{i}/*.py"],
            "depends_on": [f"t{i - 1}"] if i else [],
        }
        for i in range(n)
    ]
    teams.append({"id": "last", "depends_on": [f"t{i}" for i in range(n)]})
    plan = make_plan(*teams)
    assert graph.find_cycle({t.id: t.depends_on for t in plan.teams}) is None
    order = graph.topo_order(plan)
    assert order[0] == "t0" and order[-1] == "last"
    assert len(graph.waves(plan)) == n + 1
    path, total = graph.critical_path(plan)
    assert len(path) == n + 1 and total == (n + 1) * graph.DEFAULT_ESTIMATE
    assert graph.simulate(plan)[-1].finish == total
    assert graph.deliverable_overlaps(plan) == []
