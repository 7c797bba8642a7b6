"""Plan analysis at scale: `validate` and `plan` of long chains, and each graph function.

A chain is the worst shape for the dependency analysis (every team is upstream of
all the later ones); each team delivers its own glob (``src/<i>/*.py``), and a last
team waits for all of them (a wide fan-in). Measured: the whole ``orchestrate
validate`` and ``orchestrate plan`` processes (wall clock, output to a pipe), and
in-process the loader and each function of ``orchestrator.plan.graph``.

Targets: `plan` of 4,000 chained teams under 5 s, 20,000 under 30 s (it took 55 s
and more than 2 minutes before the graph functions were made near-linear).

    .venv/bin/python bench/plan_graph.py                 # 4,000 and 20,000 teams
    .venv/bin/python bench/plan_graph.py --quick         # 500 teams
    .venv/bin/python bench/plan_graph.py --teams 1000 --teams 8000
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import GIT_ENV, ORCHESTRATE, Result, cleanup, git_repo, parser, report

TARGETS_S = {4000: 5.0, 20000: 30.0}


def chain_plan(n: int) -> str:
    """``n`` chained teams with a glob deliverable each, then one team after all of them."""
    lines = ["version: 1", "name: chain", "teams:"]
    for i in range(n):
        dep = f", depends_on: [t{i - 1}]" if i else ""
        lines.append(f"  - {{id: t{i}, task: p{i}, deliverables: ['src/{i}/*.py']{dep}}}")
    lines.append(
        f"  - {{id: last, task: all, depends_on: [{', '.join(f't{i}' for i in range(n))}]}}"
    )
    return "\n".join(lines) + "\n"


def wall(argv: list[str], cwd: Path) -> float:
    """Seconds ``argv`` took; exits the benchmark if it failed."""
    start = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, env={**os.environ, **GIT_ENV}, check=False
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed: {proc.stderr.strip()[:500]}")
    return took


def in_process(plan_path: Path) -> list[tuple[str, float]]:
    """Seconds of the loader and of each graph function, in this process."""
    from orchestrator.plan import graph
    from orchestrator.plan.load import load_plan

    start = time.perf_counter()
    plan = load_plan(plan_path).plan
    out = [("load_plan", time.perf_counter() - start)]
    deps = {t.id: t.depends_on for t in plan.teams}
    steps = (
        ("find_cycle", lambda: graph.find_cycle(deps)),
        ("topo_order", lambda: graph.topo_order(plan)),
        ("waves", lambda: graph.waves(plan)),
        ("critical_path", lambda: graph.critical_path(plan)),
        ("simulate", lambda: graph.simulate(plan)),
        ("deliverable_overlaps", lambda: graph.deliverable_overlaps(plan)),
    )
    for name, step in steps:
        start = time.perf_counter()
        step()
        out.append((name, time.perf_counter() - start))
    return out


def main() -> int:
    p = parser(__doc__)
    p.add_argument(
        "--teams", type=int, action="append", help="chain length (repeatable; 4000 and 20000)"
    )
    args = p.parse_args()
    sizes = args.teams or ([500] if args.quick else [4000, 20000])
    work = Path(tempfile.mkdtemp(prefix="bench-plan-graph-"))
    results: list[Result] = []
    try:
        repo = git_repo(work / "repo")
        for n in sizes:
            plan = repo / f"chain{n}.yaml"
            plan.write_text(chain_plan(n))
            for command in ("validate", "plan"):
                took = wall([*ORCHESTRATE, command, plan.name], repo)
                target = TARGETS_S.get(n) if command == "plan" else None
                results.append(
                    Result(
                        "plan_graph",
                        f"{command} ({n} chained teams)",
                        took,
                        "s",
                        f"< {target:.0f} s" if target else "-",
                        None if target is None else took < target,
                        "whole process, output to a pipe",
                    )
                )
            for name, took in in_process(plan):
                results.append(
                    Result("plan_graph", f"{name} ({n} chained teams)", took * 1000, "ms")
                )
        report(results, args)
    finally:
        cleanup(work, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
