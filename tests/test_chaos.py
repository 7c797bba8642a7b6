"""Crash safety under fire: kill -9 orchestrators and Redis at random moments, then resume.

Fixed seeds; real `orchestrate` subprocesses, a real Redis, fake agents as real
processes. The longer soak is ``bench/soak_chaos.py``.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.support.crashkit import (
    Fixture,
    branch_files,
    chaos_plan,
    kill9,
    make_fixture,
    run_leftovers,
    succeeded_counts,
    wait_for,
)
from tests.support.gitrepo import GitRepo

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(240)]

SEED = 20240611


def _specs(teams: list[tuple[str, list[str]]], folder: Path, seed: int) -> dict[str, dict]:  # type: ignore[type-arg]
    rng = random.Random(seed)
    specs: dict[str, dict] = {}  # type: ignore[type-arg]
    for team, _ in teams:
        spec: dict[str, object] = {"sleep": round(rng.uniform(0.2, 1.0), 2)}
        if rng.random() < 0.2:
            spec["fail_once"] = str(folder / f"{team}.failed")
        specs[team] = spec
    return specs


def _second_repo(tmp_path: Path) -> GitRepo:
    path = tmp_path / "reference" / "repo"
    path.mkdir(parents=True)
    repo = GitRepo(path)
    repo.git("init", "--quiet", "-b", "main")
    repo.commit("initial", {"README.md": "# test repo\n"})
    return repo


def _finish(fx: Fixture, run_id: str) -> None:
    """Assertions every scenario shares: each team succeeded once, no agent started twice."""
    counts = succeeded_counts(fx.events(run_id))
    assert counts == {t: 1 for t, _ in fx.teams}, counts
    starts = fx.starts_of()
    pairs = [(t, a) for t, a, _ in starts]
    assert len(pairs) == len(set(pairs)), f"an attempt was started twice: {sorted(pairs)}"
    assert len({a for _, _, a in starts}) == len(starts), "an agent id was started twice"
    logs = fx.repo.path / ".orchestrate" / "runs" / run_id / "logs"
    assert run_leftovers(run_id, logs) == []


def test_twenty_teams_survive_five_kill_9s(
    git_repo: GitRepo, tmp_path: Path, redis_url: str
) -> None:
    """20 teams, the orchestrator killed -9 at random moments 5+ times, resumed after each:
    every team succeeds once, no agent runs twice, the integration branch is as a clean run's."""
    teams = chaos_plan(20, SEED)
    env = {"ORCHESTRATE_REDIS_URL": redis_url, "ORCHESTRATE_LEASE_TTL": "5"}
    ref_repo = _second_repo(tmp_path)
    ref = make_fixture(
        ref_repo, tmp_path / "ref", teams, specs=_specs(teams, tmp_path / "ref", SEED), env=env
    )
    done = ref.run("run", str(ref.plan_file), "--backoff", "0.05")
    assert done.returncode == 0, done.stdout + done.stderr
    ref_id = ref.run_id()
    expected = branch_files(ref_repo, f"orchestrate/{ref_id}/integration")

    fx = make_fixture(
        git_repo, tmp_path / "kit", teams, specs=_specs(teams, tmp_path / "kit", SEED), env=env
    )
    rng = random.Random(SEED)
    try:
        proc = fx.start("run", str(fx.plan_file), "--backoff", "0.05")
        run_id = fx.run_id()
        kills = 0
        while kills < 5 or proc.poll() is None:
            if kills >= 5:
                proc.wait(timeout=120)
                break
            time.sleep(rng.uniform(0.6, 1.6))
            if proc.poll() is not None:
                break
            kill9(proc)
            kills += 1
            proc = fx.start("resume", run_id, "--backoff", "0.05")
        assert kills >= 5, f"the run ended after {kills} kills: make the agents slower"
        assert proc.wait(timeout=120) == 0, fx.out.read_text()[-3000:]
        assert fx.run_status(run_id) == "succeeded"
        _finish(fx, run_id)
        assert branch_files(git_repo, f"orchestrate/{run_id}/integration") == expected
        assert sum(1 for line in fx.out.read_text().splitlines() if " attached " in line) >= 1
    finally:
        fx.kill_all()
        ref.kill_all()


def test_embedded_redis_killed_mid_run_then_resume(git_repo: GitRepo, tmp_path: Path) -> None:
    """kill -9 of the embedded Redis (appendfsync always) and of the orchestrator: resume
    restarts the server from its data and finishes the run with nothing lost."""
    teams = chaos_plan(6, SEED + 1)
    specs = {t: {"sleep": 0.6} for t, _ in teams}
    env = {"ORCHESTRATE_APPENDFSYNC": "always", "ORCHESTRATE_LEASE_TTL": "5"}
    fx = make_fixture(git_repo, tmp_path / "kit", teams, specs=specs, env=env)
    try:
        proc = fx.start("run", str(fx.plan_file), "--backoff", "0.05")
        run_id = fx.run_id()
        wait_for(lambda: "succeeded" in fx.statuses(run_id).values(), 60, "a team done")
        redis_dir = str(git_repo.path / ".orchestrate" / "redis")
        servers = [
            p
            for p in psutil.process_iter(["cmdline"])
            if "valkey-server" in " ".join(p.info["cmdline"] or [])
            and redis_dir in " ".join([*p.cmdline(), p.cwd()])
        ]
        assert servers, "no embedded server found"
        for server in servers:
            server.kill()
        time.sleep(0.2)
        kill9(proc)
        done = fx.run("resume", run_id, "--backoff", "0.05")
        assert done.returncode == 0, done.stdout + done.stderr
        assert fx.run_status(run_id) == "succeeded"
        _finish(fx, run_id)
    finally:
        fx.kill_all()
        fx.run("server", "stop")


def test_kill_between_agent_exit_and_commit(
    git_repo: GitRepo, tmp_path: Path, redis_url: str
) -> None:
    """The orchestrator dies after an agent ended well but before its commit: resume judges
    and commits it once, without starting the agent again."""
    teams = [("db", []), ("api", ["db"])]
    fx = make_fixture(
        git_repo,
        tmp_path / "kit",
        teams,
        specs={"db": {"sleep": 0.2}, "api": {"sleep": 0.2}},
        env={"ORCHESTRATE_REDIS_URL": redis_url},
    )
    try:
        crashed = fx.run_cmd_env(
            ["run", str(fx.plan_file)], {"ORCHESTRATE_TEST_CRASH_AT": "before-commit:db"}
        )
        assert crashed == -signal.SIGKILL
        run_id = fx.run_id()
        assert fx.statuses(run_id)["db"] == "verifying"
        done = fx.run("resume", run_id)
        assert done.returncode == 0, done.stdout + done.stderr
        _finish(fx, run_id)
        assert [t for t, _, _ in fx.starts_of()] == ["db", "api"]
        log = git_repo.git("log", "--format=%s", f"orchestrate/{run_id}/db")
        assert log.count("orchestrate: team db") == 1
    finally:
        fx.kill_all()


def test_two_resumes_at_once_exactly_one_wins(
    git_repo: GitRepo, tmp_path: Path, redis_url: str
) -> None:
    """Two `orchestrate resume` started together: one runs the run, the other exits 1 naming
    the holder of the run's lease."""
    teams = [("db", []), ("api", [])]
    fx = make_fixture(
        git_repo,
        tmp_path / "kit",
        teams,
        specs={"db": {"sleep": 3.0}, "api": {"sleep": 3.0}},
        env={"ORCHESTRATE_REDIS_URL": redis_url},
    )
    try:
        proc = fx.start("run", str(fx.plan_file))
        run_id = fx.run_id()
        wait_for(lambda: len(fx.starts_of()) == 2, 30, "both agents started")
        kill9(proc)
        outs = [tmp_path / "a.txt", tmp_path / "b.txt"]
        both = [fx.start("resume", run_id, out=o) for o in outs]
        codes = sorted(p.wait(timeout=60) for p in both)
        assert codes == [0, 1], [o.read_text() for o in outs]
        loser = next(o for o, p in zip(outs, both, strict=True) if p.returncode == 1)
        lines = [ln for ln in loser.read_text().splitlines() if ln.strip() and "$ " not in ln]
        assert len(lines) == 1 and "already being run by" in lines[0], lines
        _finish(fx, run_id)
    finally:
        fx.kill_all()


def test_stopped_orchestrator_past_its_lease_is_refused_when_it_wakes(
    git_repo: GitRepo, tmp_path: Path, redis_url: str
) -> None:
    """SIGSTOP an orchestrator past its lease, resume, SIGCONT the old one: its writes are
    refused, it exits non-zero with one line, and it leaves the agents to the resume."""
    teams = [("db", []), ("api", [])]
    fx = make_fixture(
        git_repo,
        tmp_path / "kit",
        teams,
        specs={"db": {"sleep": 3.0}, "api": {"sleep": 3.0}},
        env={"ORCHESTRATE_REDIS_URL": redis_url, "ORCHESTRATE_LEASE_TTL": "1"},
    )
    old_out = tmp_path / "old.txt"
    try:
        old = fx.start("run", str(fx.plan_file), out=old_out)
        run_id = fx.run_id()
        wait_for(lambda: len(fx.starts_of()) == 2, 30, "both agents started")
        old.send_signal(signal.SIGSTOP)
        time.sleep(1.6)
        new = fx.start("resume", run_id)
        wait_for(lambda: " attached " in fx.out.read_text(), 30, "the resume attached")
        old.send_signal(signal.SIGCONT)
        assert old.wait(timeout=30) not in (0, None)
        assert new.wait(timeout=60) == 0, fx.out.read_text()
        errors = [ln for ln in old_out.read_text().splitlines() if "error" in ln]
        assert len(errors) == 1 and ("lease" in errors[0] or "stale" in errors[0]), errors
        assert "Traceback" not in old_out.read_text()
        _finish(fx, run_id)
    finally:
        fx.kill_all()
