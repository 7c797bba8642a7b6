"""Dispatch latency: from an upstream agent's exit to the downstream agent's start.

A chain of N teams (default 200) t0 <- t1 <- ... whose agent is a tiny shell
command that appends ``<team> start <epoch>`` and ``<team> end <epoch>`` to a
file ($TS_FILE). The gap of each link is ``start(t[i+1]) - end(t[i])``: the
agent's exit, the supervisor noticing it, the orchestrator noticing that,
bookkeeping in Redis, git, starting the next supervisor, and the next agent's
own start (``sh`` + ``date``), which is measured separately and reported as
``agent start`` so the orchestrator's share can be read off.

Runs with ``shared`` isolation (target p50 <= 5 ms, p99 <= 25 ms) and with
``worktree`` isolation, next to the bare cost of what git has to do per team in
the same repository (``git worktree add`` + write a file + ``git add -A`` +
``git commit``; target: worktree p50 within 1.5x of it).

    .venv/bin/python bench/dispatch.py            # 200 teams, both modes
    .venv/bin/python bench/dispatch.py --quick    # 6 teams
    .venv/bin/python bench/dispatch.py --teams 50 --isolation shared
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    GIT_ENV,
    Result,
    cleanup,
    event_times,
    git_repo,
    newest_run,
    parser,
    pct,
    plan_yaml,
    read_stamps,
    report,
    run_orchestrate,
)

STAMP = 'printf \'%s {what} %s\\n\' {team} "$(date +%s.%N)" >> "$TS_FILE"'
SHARED_CMD = STAMP.replace("{what}", "start") + "; " + STAMP.replace("{what}", "end")
WORKTREE_CMD = (
    STAMP.replace("{what}", "start")
    + "; echo {team} > {team}.txt; "
    + STAMP.replace("{what}", "end")
)


def chain(n: int) -> list[tuple[str, list[str]]]:
    return [(f"t{i}", [f"t{i - 1}"] if i else []) for i in range(n)]


def gaps(stamps: dict[str, dict[str, float]], n: int) -> list[float]:
    out = []
    for i in range(1, n):
        up, down = stamps.get(f"t{i - 1}", {}), stamps.get(f"t{i}", {})
        if "end" in up and "start" in down:
            out.append(down["start"] - up["end"])
    return out


def breakdown(repo: Path, stamps: dict[str, dict[str, float]], n: int) -> dict[str, list[float]]:
    """Each link split in three from the supervisors' status files (seconds).

    ``exit``: the agent's last stamp to its supervisor's ``ended`` (the supervisor
    sees the exit, cleans the group, writes the status with fsync);
    ``engine``: that ``ended`` to the next supervisor's ``started`` (the
    orchestrator notices, records, commits, renders, spawns; includes the next
    supervisor's interpreter start); ``agent``: ``started`` to the next agent's
    first stamp (``sh`` + ``date``).
    """
    status: dict[str, dict[str, float]] = {}
    for f in repo.glob(".orchestrate/runs/*/logs/*.1.status"):
        status[f.name.split(".")[0]] = json.loads(f.read_text())
    ev = event_times(repo, newest_run(repo))
    parts: dict[str, list[float]] = {
        "exit": [],
        "engine": [],
        "agent": [],
        "engine 1 notice exit (ended->verifying)": [],
        "engine 2 verify+commit (verifying->succeeded)": [],
        "engine 3 schedule (succeeded->next running)": [],
        "engine 4 prepare+spawn (running->supervisor started)": [],
    }
    for i in range(1, n):
        up, down = f"t{i - 1}", f"t{i}"
        if up in status and down in status and "end" in stamps.get(up, {}):
            parts["exit"].append(status[up]["ended"] - stamps[up]["end"])
            parts["engine"].append(status[down]["started"] - status[up]["ended"])
            parts["agent"].append(stamps[down]["start"] - status[down]["started"])
            e_up, e_down = ev.get(up, {}), ev.get(down, {})
            if {"verifying", "succeeded"} <= e_up.keys() and "running" in e_down:
                parts["engine 1 notice exit (ended->verifying)"].append(
                    e_up["verifying"] - status[up]["ended"]
                )
                parts["engine 2 verify+commit (verifying->succeeded)"].append(
                    e_up["succeeded"] - e_up["verifying"]
                )
                parts["engine 3 schedule (succeeded->next running)"].append(
                    e_down["running"] - e_up["succeeded"]
                )
                parts["engine 4 prepare+spawn (running->supervisor started)"].append(
                    status[down]["started"] - e_down["running"]
                )
    return parts


def run_chain(
    work: Path, n: int, isolation: str
) -> tuple[list[float], float, dict[str, list[float]]]:
    repo = git_repo(work / f"repo-{isolation}")
    ts = work / f"ts-{isolation}.txt"
    cmd = SHARED_CMD if isolation == "shared" else WORKTREE_CMD
    (repo / "plan.yaml").write_text(
        plan_yaml(chain(n), command=cmd, isolation=isolation, env={"TS_FILE": str(ts)})
    )
    subprocess.run(["git", "add", "plan.yaml"], cwd=repo, check=True)
    subprocess.run(
        ["git", "commit", "-qm", "plan"], cwd=repo, check=True, env={**os.environ, **GIT_ENV}
    )
    wall, _ = run_orchestrate(["run", "plan.yaml"], repo)
    stamps = read_stamps(ts)
    return gaps(stamps, n), wall, breakdown(repo, stamps, n)


def agent_start_cost(work: Path, samples: int) -> tuple[float, float, float]:
    """Median seconds from spawning to the first stamp: bare ``sh -c``, under a supervisor
    started as a fresh interpreter, and under one forked by the fork server (warm)."""
    from orchestrator.forkserver import ForkServer

    ts = work / "ts-start.txt"
    env = {**os.environ, "TS_FILE": str(ts)}
    cmd = STAMP.replace("{what}", "start").replace("{team}", "x")
    bare, supervised, forked = [], [], []
    server = ForkServer()
    try:
        for i in range(samples + 1):
            ts.unlink(missing_ok=True)
            log, status = work / f"f{i}.log", work / f"f{i}.status"
            fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            request = {
                "argv": ["sh", "-c", cmd],
                "cwd": str(work),
                "env": env,
                "log": str(log),
                "status": str(status),
                "secrets": [],
                "stdin": None,
            }
            t0 = time.time()
            try:
                server.spawn(request, fd)
            finally:
                os.close(fd)
            while not status.exists():
                time.sleep(0.005)
            if i:  # the first one starts the helper itself
                forked.append(read_stamps(ts)["x"]["start"] - t0)
    finally:
        server.close()
    for i in range(samples):
        ts.unlink(missing_ok=True)
        t0 = time.time()
        subprocess.run(["sh", "-c", cmd], env=env, check=True)
        bare.append(read_stamps(ts)["x"]["start"] - t0)
        ts.unlink(missing_ok=True)
        log, status = work / f"s{i}.log", work / f"s{i}.status"
        t0 = time.time()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator.supervisor",
                "--log",
                str(log),
                "--status",
                str(status),
                "--",
                "sh",
                "-c",
                cmd,
            ],
            env=env,
            check=True,
        )
        supervised.append(read_stamps(ts)["x"]["start"] - t0)
    return statistics.median(bare), statistics.median(supervised), statistics.median(forked)


def bare_git(work: Path, n: int) -> list[float]:
    """Per team: ``git worktree add -b`` from the previous branch, write a file, add, commit."""
    repo = git_repo(work / "repo-bare")
    env = {**os.environ, **GIT_ENV}
    prev = "main"
    out = []
    for i in range(n):
        wt = work / "bare-wt" / f"t{i}"
        t0 = time.perf_counter()
        subprocess.run(
            ["git", "worktree", "add", "-q", "-b", f"bare/t{i}", str(wt), prev],
            cwd=repo,
            check=True,
            env=env,
            capture_output=True,
        )
        (wt / f"t{i}.txt").write_text(f"t{i}\n")
        subprocess.run(["git", "add", "-A"], cwd=wt, check=True, env=env)
        subprocess.run(["git", "commit", "-q", "-m", f"t{i}"], cwd=wt, check=True, env=env)
        out.append(time.perf_counter() - t0)
        prev = f"bare/t{i}"
    return out


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--teams", type=int, default=None, help="chain length (default 200, quick 6)")
    p.add_argument("--isolation", choices=["both", "shared", "worktree"], default="both")
    args = p.parse_args()
    n = args.teams or (6 if args.quick else 200)
    results: list[Result] = []
    work = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    try:
        bare_sh, supervised, forked = agent_start_cost(work, 5 if args.quick else 30)
        results.append(
            Result(
                "dispatch",
                "agent start (sh+date), bare",
                bare_sh * 1000,
                "ms",
                note="spawn to first stamp, no orchestrate",
            )
        )
        results.append(
            Result(
                "dispatch",
                "agent start under supervisor",
                supervised * 1000,
                "ms",
                note="python -m orchestrator.supervisor -- sh -c ...",
            )
        )
        results.append(
            Result(
                "dispatch",
                "agent start under a forked supervisor",
                forked * 1000,
                "ms",
                note="the fork server's spawn request to the first stamp",
            )
        )
        modes = ["shared", "worktree"] if args.isolation == "both" else [args.isolation]
        for mode in modes:
            g, wall, parts = run_chain(work, n, mode)
            if not g:
                sys.exit(f"{mode}: no gaps measured")
            p50, p99 = pct(g, 50) * 1000, pct(g, 99) * 1000
            note = f"{n} teams, {len(g)} links, run took {wall:.1f} s"
            for part, values in parts.items():
                if values:
                    results.append(
                        Result(
                            "dispatch",
                            f"{mode} p50 part: {part}",
                            pct(values, 50) * 1000,
                            "ms",
                            note="see breakdown() in dispatch.py",
                        )
                    )
            if mode == "shared":
                results.append(
                    Result("dispatch", "shared p50", p50, "ms", "<= 5 ms", p50 <= 5, note)
                )
                results.append(
                    Result("dispatch", "shared p99", p99, "ms", "<= 25 ms", p99 <= 25, note)
                )
                results.append(
                    Result(
                        "dispatch",
                        "shared p50 minus bare agent start",
                        p50 - bare_sh * 1000,
                        "ms",
                        note="the orchestrator's share",
                    )
                )
            else:
                bare = bare_git(work, n)
                b50 = pct(bare, 50) * 1000
                results.append(Result("dispatch", "worktree p50", p50, "ms", note=note))
                results.append(Result("dispatch", "worktree p99", p99, "ms", note=note))
                results.append(
                    Result(
                        "dispatch",
                        "bare git worktree add+commit p50",
                        b50,
                        "ms",
                        note=f"{n} times, same repo shape",
                    )
                )
                results.append(
                    Result(
                        "dispatch",
                        "worktree p50 / bare git",
                        p50 / b50,
                        "x",
                        "<= 1.5x",
                        p50 / b50 <= 1.5,
                    )
                )
        report(results, args)
    finally:
        cleanup(work, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
