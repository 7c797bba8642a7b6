"""Throughput: a 1000-team graph run by orchestrate, by ``make -j8`` and by Prefect 3.

The graph: 10 layers of 100 teams, each team depending on 3 random teams of
the layer before (fixed seed 42). Every team's agent is ``true`` (an argv, no
shell); orchestrate runs it with ``max_parallel: 8`` and ``shared`` isolation
(no per-team git work: the graph walk and the agent processes only; use
``--isolation worktree`` for the other mode). The peers run the same command
with the same dependencies: a Makefile of phony targets under ``make -j8``, and
a Prefect 3 flow (bench/prefect_flow.py) in its own venv with 8 worker threads
(bench/prefect_env.sh makes the venv; without it, Prefect is reported as not
measured).

Wall times are whole processes, start to exit (orchestrate includes starting
its embedded valkey-server; Prefect its ephemeral API server, reported apart).
Targets: orchestrate <= 2x make; at 1000 teams <= 8 s, faster than Prefect's flow alone.

    .venv/bin/python bench/throughput.py             # 1000 teams
    .venv/bin/python bench/throughput.py --quick     # 3 layers of 10, no Prefect
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCH_DIR,
    GIT_ENV,
    Result,
    cleanup,
    git_repo,
    layered_graph,
    parser,
    plan_yaml,
    report,
    run_orchestrate,
)

COMMAND = ["true"]


def makefile(teams: list[tuple[str, list[str]]]) -> str:
    names = [t for t, _ in teams]
    lines = [f".PHONY: all {' '.join(names)}", f"all: {' '.join(names)}", ""]
    for tid, deps in teams:
        lines += [f"{tid}: {' '.join(deps)}", f"\t@{' '.join(COMMAND)}", ""]
    return "\n".join(lines)


def run_make(work: Path, teams: list[tuple[str, list[str]]], jobs: int) -> float:
    folder = work / "make"
    folder.mkdir()
    (folder / "Makefile").write_text(makefile(teams))
    start = time.perf_counter()
    subprocess.run(["make", "-s", f"-j{jobs}", "all"], cwd=folder, check=True)
    return time.perf_counter() - start


def run_orch(
    work: Path, teams: list[tuple[str, list[str]]], jobs: int, isolation: str
) -> tuple[float, int, float]:
    """(wall seconds, teams succeeded, CPU seconds of the command and what it waited for)."""
    repo = git_repo(work / "repo")
    (repo / "plan.yaml").write_text(
        plan_yaml(teams, command=COMMAND, isolation=isolation, max_parallel=jobs)
    )
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "add", "plan.yaml"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "plan"], cwd=repo, check=True, env=env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, proc = run_orchestrate(["run", "plan.yaml"], repo)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ok = proc.stdout.count(" succeeded  attempt")
    return wall, ok, cpu


def prefect_python() -> Path | None:
    venv = Path(os.environ.get("PREFECT_VENV", BENCH_DIR / ".venv-prefect"))
    py = venv / "bin" / "python"
    return py if py.exists() else None


def run_prefect(
    work: Path, teams: list[tuple[str, list[str]]], jobs: int, py: Path
) -> tuple[float, dict[str, float]] | str:
    """(process wall seconds, the flow's own numbers), or why it failed."""
    graph = work / "graph.json"
    graph.write_text(json.dumps({"command": COMMAND, "teams": teams}))
    home = work / "prefect-home"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        # a loaded machine may need longer than the default 20 s to start the server
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    }
    start = time.perf_counter()
    proc = subprocess.run(
        [str(py), str(BENCH_DIR / "prefect_flow.py"), str(graph), str(jobs)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(f"prefect flow failed:\n{proc.stderr[-3000:]}\n")
        last = [line for line in proc.stderr.strip().splitlines() if "Error" in line]
        return f"failed: {last[-1].strip() if last else 'exit ' + str(proc.returncode)}"
    return wall, json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--layers", type=int, default=None, help="default 10 (quick 3)")
    p.add_argument("--width", type=int, default=None, help="teams per layer: 100 (quick 10)")
    p.add_argument("--jobs", type=int, default=8, help="max_parallel and make -j (8)")
    p.add_argument("--isolation", choices=["shared", "worktree"], default="shared")
    p.add_argument(
        "--prefect",
        choices=["auto", "yes", "no"],
        default=None,
        help="run the Prefect peer: auto (if its venv exists; default), yes, no "
        "(--quick defaults to no)",
    )
    args = p.parse_args()
    layers = args.layers or (3 if args.quick else 10)
    width = args.width or (10 if args.quick else 100)
    teams = layered_graph(layers, width, min(3, width))
    n = len(teams)
    size = f"{n} teams, {layers}x{width}, fan-in 3, -j{args.jobs}"
    work = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    results: list[Result] = []
    try:
        make_s = run_make(work, teams, args.jobs)
        orch_s, ok, orch_cpu = run_orch(work, teams, args.jobs, args.isolation)
        if ok != n:
            sys.exit(f"orchestrate: {ok} of {n} teams succeeded")
        ratio = orch_s / make_s
        results += [
            Result("throughput", "make wall", make_s, "s", note=size),
            Result(
                "throughput",
                f"orchestrate wall ({args.isolation})",
                orch_s,
                "s",
                "<= 8 s" if n == 1000 else "-",
                orch_s <= 8 if n == 1000 else None,
                note=size,
            ),
            Result("throughput", "orchestrate / make", ratio, "x", "<= 2x", ratio <= 2),
            Result("throughput", "orchestrate teams/s", n / orch_s, "teams/s"),
            Result(
                "throughput",
                "orchestrate CPU (user + system)",
                orch_cpu,
                "s",
                note="the command and the processes it waited for (git, fork server)",
            ),
        ]
        report(results, args)  # now: the Prefect peer can take minutes
        results = []
        mode = args.prefect or ("no" if args.quick else "auto")
        py = prefect_python() if mode != "no" else None
        if mode == "yes" and py is None:
            sys.exit("no Prefect venv: run sh bench/prefect_env.sh")
        got = run_prefect(work, teams, args.jobs, py) if py is not None else None
        if isinstance(got, str):
            results.append(Result("throughput", "prefect", float("nan"), "s", note=got))
        elif got is not None:
            pf_wall, pf = got
            results += [
                Result(
                    "throughput",
                    "prefect wall (process)",
                    pf_wall,
                    "s",
                    note=f"import {pf['import_s']:.1f} s, server start (warm-up flow) "
                    f"{pf['warm_up_s']:.1f} s",
                ),
                Result("throughput", "prefect flow only", pf["flow_s"], "s", note=size),
                Result(
                    "throughput",
                    "orchestrate / prefect flow only",
                    orch_s / pf["flow_s"],
                    "x",
                    "< 1x",
                    orch_s < pf["flow_s"],
                ),
            ]
        elif mode != "no":
            results.append(
                Result(
                    "throughput",
                    "prefect",
                    float("nan"),
                    "s",
                    note="not measured: no venv (sh bench/prefect_env.sh)",
                )
            )
        if results:
            report(results, args)
    finally:
        cleanup(work, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
