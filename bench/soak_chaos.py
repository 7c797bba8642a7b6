"""Chaos soak: many random kill -9s of `orchestrate run`/`resume` on a larger plan.

    .venv/bin/python bench/soak_chaos.py [--teams 40] [--kills 20] [--seed 7] [--rounds 3]

Needs git and valkey-server (the embedded server: ``appendfsync always``). Each
round builds a repository in a temp folder, runs the plan while killing the
orchestrator (and, every fifth kill, the embedded Redis) at random moments,
resuming after each kill, then checks what the in-suite chaos test checks:
every team succeeded exactly once, no attempt started twice, the integration
branch holds every deliverable, no process of the run is left. Prints one line
per round and exits 1 on the first broken round.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.crashkit import (
    branch_files,
    chaos_plan,
    kill9,
    make_fixture,
    run_leftovers,
    succeeded_counts,
)
from tests.support.gitrepo import GitRepo


def _repo(folder: Path) -> GitRepo:
    path = folder / "repo"
    path.mkdir(parents=True)
    repo = GitRepo(path)
    repo.git("init", "--quiet", "-b", "main")
    repo.commit("initial", {"README.md": "# soak\n"})
    return repo


def _kill_redis(repo: GitRepo) -> None:
    where = str(repo.path / ".orchestrate" / "redis")
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        try:
            if "valkey-server" in cmd and where in cmd + " " + proc.cwd():
                proc.kill()
        except psutil.Error:
            pass


def soak_round(seed: int, teams_n: int, kills_n: int) -> str:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        folder = Path(tmp)
        repo = _repo(folder)
        teams = chaos_plan(teams_n, seed)
        specs = {}
        for team, _ in teams:
            spec: dict[str, object] = {"sleep": round(rng.uniform(0.2, 2.0), 2)}
            if rng.random() < 0.2:
                spec["fail_once"] = str(folder / f"{team}.failed")
            specs[team] = spec
        fx = make_fixture(
            repo,
            folder / "kit",
            teams,
            specs=specs,
            env={"ORCHESTRATE_APPENDFSYNC": "always", "ORCHESTRATE_LEASE_TTL": "5"},
            max_parallel=6,
        )
        try:
            proc = fx.start("run", str(fx.plan_file), "--backoff", "0.05")
            run_id = fx.run_id()
            kills = 0
            while kills < kills_n:
                time.sleep(rng.uniform(0.3, 2.5))
                if proc.poll() is not None:
                    break
                if kills % 5 == 4:
                    _kill_redis(repo)
                    time.sleep(0.1)
                kill9(proc)
                kills += 1
                proc = fx.start("resume", run_id, "--backoff", "0.05")
            code = proc.wait(timeout=600)
            problems = []
            if code != 0:
                problems.append(f"last command exited {code}")
            counts = succeeded_counts(fx.events(run_id))
            if counts != {t: 1 for t, _ in teams}:
                problems.append(f"succeeded events {dict(counts)}")
            pairs = [(t, a) for t, a, _ in fx.starts_of()]
            if len(pairs) != len(set(pairs)):
                problems.append("an attempt started twice")
            files = branch_files(repo, f"orchestrate/{run_id}/integration")
            want = {"README.md", *(f"src/{t}.txt" for t, _ in teams)}
            if files != want:
                problems.append(f"integration files differ: {sorted(files ^ want)}")
            logs = repo.path / ".orchestrate" / "runs" / run_id / "logs"
            left = run_leftovers(run_id, logs)
            if left:
                problems.append(f"left processes: {left}")
            verdict = "ok" if not problems else "BROKEN: " + "; ".join(problems)
            return f"seed {seed}: {kills} kills, {len(pairs)} attempts: {verdict}"
        finally:
            fx.kill_all()
            subprocess.run(
                [sys.executable, "-m", "orchestrator", "server", "stop"],
                cwd=repo.path,
                env=fx.env,
                capture_output=True,
                check=False,
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", type=int, default=40)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="One small round (20 teams, 5 kills).")
    args = parser.parse_args()
    if args.quick:
        args.teams, args.kills, args.rounds = 20, 5, 1
    for n in range(args.rounds):
        line = soak_round(args.seed + n, args.teams, args.kills)
        print(line, flush=True)
        if "BROKEN" in line:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
