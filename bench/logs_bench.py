"""Logs: a chatty agent's cost, every line in ``orchestrate logs``, and ``logs -f`` lag.

Part 1 (volume). One team whose agent prints 1,000,000 numbered lines of 100
bytes (``seq -f %099.0f``: 99 digits + newline). Compared with the same command
writing to a file (no orchestrate), reported three ways:

- ``agent under orchestrate``: the agent's own start-to-exit (the supervisor's
  status file): does being logged slow the agent down?
- ``until all lines stored``: from the agent's start to the team's
  ``succeeded`` event, i.e. until every line went through the engine into
  Redis. Target: <= 1.5x the bare command;
- the whole ``orchestrate run`` process, start to exit (fixed start-up costs).

Then ``orchestrate logs RUN TEAM`` must print every line, in order: checked
number by number (the Redis stream is capped, older lines come from the file).

Part 2 (lag). 8 teams whose agents print 100-byte lines as fast as they can
for a few seconds, each line carrying the time it was printed, while
``orchestrate logs -f`` follows the run: lag = time the follower printed a line
- time the agent printed it; p50 / p99 / max over every line seen.

    .venv/bin/python bench/logs_bench.py             # 1,000,000 lines; 8 agents x 10 s
    .venv/bin/python bench/logs_bench.py --quick     # 2,000 lines; 8 agents x 1 s at 200 lines/s
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    GIT_ENV,
    ORCHESTRATE,
    Result,
    cleanup,
    git_repo,
    parser,
    pct,
    plan_yaml,
    report,
    run_orchestrate,
)

FAST_PRINTER = r"""
import sys, time
start = time.time()
end = start + float(sys.argv[1])
rate = float(sys.argv[2])  # lines per second; 0: as fast as possible
out = sys.stdout
pad = "x" * 60
i = 0
while True:
    now = time.time()
    if now >= end:
        break
    # one 100-byte line: 'L <epoch 17.6f> <seq 10> pad...'
    out.write(f"L {now:17.6f} {i:010d} {pad}\n"[:99] + "\n")
    i += 1
    if rate:
        out.flush()
        time.sleep(max(0.0, start + i / rate - time.time()))
out.flush()
"""


def commit_plan(repo: Path, text: str) -> None:
    (repo / "plan.yaml").write_text(text)
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "add", "plan.yaml"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "plan"], cwd=repo, check=True, env=env)


def run_id_of(repo: Path) -> str:
    runs = sorted((repo / ".orchestrate" / "runs").iterdir(), key=lambda p: p.stat().st_mtime)
    return runs[-1].name


def team_done_at(repo: Path, run_id: str, team: str) -> float:
    """When the team's ``succeeded`` transition was written (from its events)."""
    import anyio

    from orchestrator.paths import StateLayout
    from orchestrator.settings import Settings
    from orchestrator.state.store import open_store

    async def go() -> float:
        layout = StateLayout(repo / ".orchestrate")
        async with open_store(Settings(), layout) as store:
            found = 0.0
            after = "0-0"
            while True:
                events = await store.read_events(run_id, after=after)
                if not events:
                    return found
                for ev in events:
                    if ev.team == team and ev.to == "succeeded" and not found:
                        found = ev.ts
                    after = ev.id

    return anyio.run(go)


def volume(work: Path, lines: int) -> list[Result]:
    command = f"seq -f %099.0f 1 {lines}"
    bare_file = work / "bare.out"
    start = time.perf_counter()
    subprocess.run(["sh", "-c", f"{command} > {bare_file}"], check=True)
    bare = time.perf_counter() - start
    assert bare_file.stat().st_size == lines * 100, bare_file.stat().st_size

    repo = git_repo(work / "repo-volume")
    commit_plan(repo, plan_yaml([("chatty", [])], command=command))
    wall, _ = run_orchestrate(["run", "plan.yaml"], repo)
    run_id = run_id_of(repo)
    status = json.loads(
        (repo / ".orchestrate" / "runs" / run_id / "logs" / "chatty.1.status").read_text()
    )
    agent = status["ended"] - status["started"]
    done = team_done_at(repo, run_id, "chatty")
    stored = done - status["started"] if done else float("nan")

    start = time.perf_counter()
    proc = subprocess.run(
        [*ORCHESTRATE, "logs", run_id, "chatty"],
        cwd=repo,
        capture_output=True,
        check=True,
    )
    logs_s = time.perf_counter() - start
    got = proc.stdout.split(b"\n")
    if got and got[-1] == b"":
        got.pop()
    expected_ok = len(got) == lines and all(int(line) == i + 1 for i, line in enumerate(got))
    size = f"{lines} lines x 100 B"
    ratio = stored / bare
    return [
        Result("logs", "bare command to a file", bare, "s", note=size),
        Result("logs", "agent under orchestrate (start to exit)", agent, "s", note=size),
        Result("logs", "until all lines stored", stored, "s", note="agent start to team succeeded"),
        Result("logs", "until all lines stored / bare", ratio, "x", "<= 1.5x", ratio <= 1.5),
        Result("logs", "orchestrate run process", wall, "s", note="start-up, server, run, exit"),
        Result("logs", "ingest rate", lines / stored, "lines/s"),
        Result(
            "logs",
            "`orchestrate logs` prints every line",
            float(expected_ok),
            "bool",
            "1",
            expected_ok,
            f"{len(got)} lines printed in {logs_s:.1f} s",
        ),
    ]


def lag(work: Path, agents: int, seconds: float, rate: float) -> list[Result]:
    repo = git_repo(work / "repo-lag")
    script = work / "printer.py"
    script.write_text(FAST_PRINTER)
    teams = [(f"p{i}", []) for i in range(agents)]
    commit_plan(
        repo,
        plan_yaml(
            teams,
            command=[sys.executable, str(script), str(seconds), str(rate)],
            max_parallel=agents,
        ),
    )
    env = {**os.environ, **GIT_ENV}
    runner = subprocess.Popen(
        [*ORCHESTRATE, "run", "plan.yaml"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    runs = repo / ".orchestrate" / "runs"
    deadline = time.time() + 60
    while not (runs.is_dir() and any(runs.iterdir())):
        if time.time() > deadline or runner.poll() is not None:
            sys.exit("the lag run did not start")
        time.sleep(0.01)
    run_id = run_id_of(repo)
    follower = subprocess.Popen(
        [*ORCHESTRATE, "logs", "-f", run_id],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=1 << 20,
    )
    lags: list[float] = []
    seen = 0

    def read() -> None:
        nonlocal seen
        assert follower.stdout is not None
        for raw in follower.stdout:
            now = time.time()
            seen += 1
            k = raw.find(b"L ")
            if k >= 0:
                try:
                    lags.append(now - float(raw[k + 2 : k + 19]))
                except ValueError:
                    pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    runner.wait(timeout=3600)
    try:
        follower.wait(timeout=600)
    except subprocess.TimeoutExpired:
        follower.kill()
    reader.join(timeout=30)
    if runner.returncode != 0:
        assert runner.stderr is not None
        sys.exit(f"lag run failed: {runner.stderr.read().decode()[-2000:]}")
    printed = 0
    for f in (runs / run_id / "logs").glob("*.log"):
        with f.open("rb") as fh:
            printed += sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    speed = f"{rate:g} lines/s each" if rate else "full speed"
    note = f"{agents} agents x {seconds:g} s at {speed}, {printed} lines printed, {seen} followed"
    p99 = pct(lags, 99) * 1000
    return [
        Result("logs", "logs -f lag p50", pct(lags, 50) * 1000, "ms", note=note),
        Result("logs", "logs -f lag p99", p99, "ms", note=note),
        Result("logs", "logs -f lag max", max(lags, default=float("nan")) * 1000, "ms"),
        Result("logs", "lines printed per second (all agents)", printed / seconds, "lines/s"),
    ]


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--lines", type=int, default=None, help="default 1,000,000 (quick 2,000)")
    p.add_argument("--agents", type=int, default=8)
    p.add_argument("--seconds", type=float, default=None, help="lag part: default 10 (quick 1)")
    p.add_argument(
        "--rate",
        type=float,
        default=None,
        help="lag part: lines/s per agent, 0 = full speed (default; quick 200)",
    )
    p.add_argument("--part", choices=["both", "volume", "lag"], default="both")
    args = p.parse_args()
    lines = args.lines or (2_000 if args.quick else 1_000_000)
    seconds = args.seconds or (1.0 if args.quick else 10.0)
    work = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    results: list[Result] = []
    try:
        if args.part in ("both", "volume"):
            results += volume(work, lines)
        if args.part in ("both", "lag"):
            rate = args.rate if args.rate is not None else (200.0 if args.quick else 0.0)
            results += lag(work, args.agents, seconds, rate)
        report(results, args)
    finally:
        cleanup(work, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
