"""Per-team cost: a chain of 200 teams whose agent is ``true``, shared isolation.

Each team depends on the one before, so nothing overlaps: the run's length
divided by the teams is what orchestrate spends per team (notice the agent's
exit, record it, verify, commit, schedule the next, render its prompt, start
its supervisor and agent). Reported as ms per team over the run's own span
(first ``running`` event to last ``succeeded``: without the command's start and
the embedded server's) and over the whole process.

Beside it, the same chain:

- ``make`` (one phony target per team, each depending on the one before);
- a bare asyncio loop that, per team, makes two Redis round trips (``HSET``
  running, ``HSET`` succeeded, on the run's own server) and runs ``true`` with
  ``asyncio.create_subprocess_exec``: the floor of "a scheduler on Redis that
  starts a process per team" in Python.

The CPU time (user + system) of the command and of the processes it waited
for (git, the fork server) is given per team too: on a busy machine it moves
less than the wall time.

Target: <= 8 ms per team.

    .venv/bin/python bench/chain.py             # 200 teams
    .venv/bin/python bench/chain.py --quick     # 20 teams
"""

from __future__ import annotations

import asyncio
import os
import resource
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
    plan_yaml,
    report,
    run_orchestrate,
)

COMMAND = ["true"]


def chain(n: int) -> list[tuple[str, list[str]]]:
    return [(f"t{i}", [f"t{i - 1}"] if i else []) for i in range(n)]


def run_make(work: Path, n: int) -> float:
    folder = work / "make"
    folder.mkdir()
    lines = [".PHONY: " + " ".join(f"t{i}" for i in range(n)), ""]
    for tid, deps in chain(n):
        lines += [f"{tid}: {' '.join(deps)}", "\t@true", ""]
    (folder / "Makefile").write_text("\n".join(lines))
    start = time.perf_counter()
    subprocess.run(["make", "-s", f"t{n - 1}"], cwd=folder, check=True)
    return time.perf_counter() - start


def run_bare_loop(sock: Path, n: int) -> float:
    """Seconds for ``n`` teams: two Redis round trips and one ``true`` each, in sequence."""
    import redis.asyncio as aioredis

    async def go() -> float:
        client = aioredis.Redis(unix_socket_path=str(sock))
        try:
            await client.ping()
            start = time.perf_counter()
            for i in range(n):
                await client.hset(f"bench:{{chain}}:team:t{i}", "status", "running")
                proc = await asyncio.create_subprocess_exec(*COMMAND)
                await proc.wait()
                await client.hset(f"bench:{{chain}}:team:t{i}", "status", "succeeded")
            return time.perf_counter() - start
        finally:
            await client.aclose()

    return asyncio.run(go())


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--teams", type=int, default=None, help="chain length (default 200, quick 20)")
    args = p.parse_args()
    n = args.teams or (20 if args.quick else 200)
    work = Path(tempfile.mkdtemp(prefix="bench-chain-"))
    results: list[Result] = []
    try:
        repo = git_repo(work / "repo")
        (repo / "plan.yaml").write_text(plan_yaml(chain(n), command=COMMAND, isolation="shared"))
        env = {**os.environ, **GIT_ENV}
        subprocess.run(["git", "add", "plan.yaml"], cwd=repo, check=True)
        subprocess.run(["git", "commit", "-qm", "plan"], cwd=repo, check=True, env=env)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall, _ = run_orchestrate(["run", "plan.yaml"], repo)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        ev = event_times(repo, newest_run(repo))
        first = min((e["running"] for e in ev.values() if "running" in e), default=None)
        last = max((e["succeeded"] for e in ev.values() if "succeeded" in e), default=None)
        note = f"{n}-team chain, agent true, shared"
        if first is not None and last is not None:
            per_team = (last - first) / n * 1000
            results.append(
                Result(
                    "chain",
                    "orchestrate per team (run span)",
                    per_team,
                    "ms",
                    "<= 8 ms",
                    per_team <= 8,
                    note + "; first running to last succeeded",
                )
            )
        results.append(
            Result(
                "chain",
                "orchestrate per team (whole process)",
                wall / n * 1000,
                "ms",
                note=note + f"; run took {wall:.2f} s",
            )
        )
        results.append(
            Result(
                "chain",
                "orchestrate CPU per team (user + system)",
                cpu / n * 1000,
                "ms",
                note=note + "; the command and the processes it waited for (git, fork server)",
            )
        )
        make = run_make(work, n)
        results.append(Result("chain", "make per team", make / n * 1000, "ms", note=note))
        from orchestrator.settings import Settings  # path puts it in a short folder)
        from orchestrator.state.server import EmbeddedServer  # where its socket is (a long

        sock = EmbeddedServer(repo / ".orchestrate" / "redis", Settings()).socket_path
        bare = run_bare_loop(sock, n)
        results.append(
            Result(
                "chain",
                "bare asyncio + 2 Redis round trips per team",
                bare / n * 1000,
                "ms",
                note="HSET, spawn true, wait, HSET; same server",
            )
        )
        report(results, args)
    finally:
        cleanup(work, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
