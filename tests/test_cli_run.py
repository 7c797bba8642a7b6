"""`orchestrate run` as a user runs it: a real subprocess, a real Redis, fake agents."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.support.engine import SEVEN, files_for, plan_yaml, write_agent
from tests.support.gitrepo import GitRepo

ORCHESTRATE = [sys.executable, "-m", "orchestrator"]


def _env(redis_url: str, prefix: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ORCHESTRATE_REDIS_URL"] = redis_url
    env["ORCHESTRATE_KEY_PREFIX"] = prefix
    return env


def _plan(git_repo: GitRepo, text: str) -> Path:
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(text + f"repo: {git_repo.path.name}\n")
    return plan_file


def _run(plan_file: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ORCHESTRATE, "run", str(plan_file), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def test_run_succeeds_and_prints_events_and_summary(
    git_repo: GitRepo, redis_url: str, tmp_path: Path
) -> None:
    """`orchestrate run` on a good plan exits 0, prints timestamped events and a summary."""
    teams = SEVEN[:3]
    command, _ = write_agent(tmp_path / "agent", files_for(teams, api={"fail_attempts": 1}))
    plan_file = _plan(git_repo, plan_yaml(command, teams))
    env = _env(redis_url, f"t{uuid.uuid4().hex[:8]}")
    proc = _run(plan_file, env, "--max-parallel", "2", "--backoff", "0.05")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert re.search(r"^\d\d:\d\d:\d\d db +running +attempt 1/3  agent [0-9a-f]{7}$", out, re.M)
    assert re.search(r"^\d\d:\d\d:\d\d api +retrying +exit code 1", out, re.M)
    assert "run demo-" in out and " succeeded" in out
    assert "branches: orchestrate/demo-" in out and "report:   " in out
    assert "Traceback" not in proc.stderr


def test_failing_plan_exits_1(git_repo: GitRepo, redis_url: str, tmp_path: Path) -> None:
    """A plan whose team fails for good makes `orchestrate run` exit 1 naming the team."""
    teams = SEVEN[:2]
    command, _ = write_agent(tmp_path / "agent", files_for(teams, db={"fail_attempts": 9}))
    plan_file = _plan(git_repo, plan_yaml(command, teams, defaults={"retries": 0}))
    proc = _run(plan_file, _env(redis_url, f"t{uuid.uuid4().hex[:8]}"), "--backoff", "0.05")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "failed: db" in proc.stdout
    assert "blocked" in proc.stdout and "upstream team db failed" in proc.stdout


def test_bad_plan_exits_2(git_repo: GitRepo, redis_url: str, tmp_path: Path) -> None:
    """A plan with an unknown dependency is refused before anything runs (exit 2)."""
    command, _ = write_agent(tmp_path / "agent", {})
    plan_file = _plan(git_repo, plan_yaml(command, [("db", ["nope"])]))
    proc = _run(plan_file, _env(redis_url, f"t{uuid.uuid4().hex[:8]}"))
    assert proc.returncode == 2
    assert "nope" in proc.stderr
    assert not (git_repo.path / ".orchestrate" / "runs").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat.split(") ", 1)[1].startswith("Z")


def test_ctrl_c_interrupts_the_run(git_repo: GitRepo, redis_url: str, tmp_path: Path) -> None:
    """SIGINT stops the run: exit 130, run marked interrupted, no agent process left."""
    teams = [*SEVEN[:1], ("other", [])]
    pids = {t: tmp_path / f"{t}.pid" for t, _ in teams}
    spec = files_for(teams, **{t: {"hang": True, "pidfile": str(p)} for t, p in pids.items()})
    command, _ = write_agent(tmp_path / "agent", spec)
    plan_file = _plan(git_repo, plan_yaml(command, teams))
    prefix = f"t{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen(
        [*ORCHESTRATE, "run", str(plan_file)],
        env=_env(redis_url, prefix),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not all(p.exists() and p.read_text() for p in pids.values()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the agents never started"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out + err
    assert "interrupted" in out
    for path in pids.values():
        assert not _alive(int(path.read_text())), "an agent survived Ctrl-C"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        (run_id,) = client.zrange(f"{prefix}:runs", 0, -1)
        meta = client.hgetall(f"{prefix}:{{{run_id}}}:meta")
        assert meta["status"] == "interrupted"
        statuses = {t: client.hget(f"{prefix}:{{{run_id}}}:team:{t}", "status") for t, _ in teams}
        assert set(statuses.values()) == {"cancelled"}
    finally:
        client.close()
    assert json.dumps(meta)  # the run is recorded and readable


def _screen(base: list[str]) -> str:
    return subprocess.run(
        [*base, "capture-pane", "-p", "-t", "0", "-S", "-100"], capture_output=True, text=True
    ).stdout


@pytest.mark.slow
def test_run_shows_the_live_board_in_a_terminal(
    git_repo: GitRepo, redis_url: str, tmp_path: Path
) -> None:
    """`orchestrate run` in a real terminal (tmux) draws the live board while the teams
    work — a running team's row, then every team succeeded — instead of event lines,
    within 80 columns, then the summary and exit 0."""
    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed")
    teams = SEVEN[:3]
    command, _ = write_agent(tmp_path / "agent", files_for(teams, db={"sleep": 1.5}))
    plan_file = _plan(git_repo, plan_yaml(command, teams))
    env = _env(redis_url, f"t{uuid.uuid4().hex[:8]}")
    words = " ".join(
        f"{k}={shlex.quote(v)}"
        for k, v in env.items()
        if k.startswith("ORCHESTRATE_") or k in ("HOME", "PATH")
    )
    run = f"{sys.executable} -m orchestrator run {shlex.quote(str(plan_file))} --backoff 0.05"
    command_line = f"env {words} TERM=xterm-256color {run}; echo EXIT=$?; sleep 60"
    base = [tmux, "-L", f"orch-run-{uuid.uuid4().hex[:8]}", "-f", "/dev/null"]
    subprocess.run(
        [*base, "new-session", "-d", "-x", "80", "-y", "40", "-c", str(tmp_path), command_line],
        check=True,
    )
    try:
        seen_running = False
        screen = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "EXIT=" not in screen:
            time.sleep(0.1)
            screen = _screen(base)
            seen_running = seen_running or bool(re.search(r"^▶ db\s+running", screen, re.M))
        assert "EXIT=0" in screen, screen
        assert seen_running, "no live row of the running team"
        lines = screen.splitlines()
        for team, _ in teams:
            assert any(re.match(rf"^✔ {team}\s+succeeded", x) for x in lines), screen
        assert "phase done" in screen and "integrating" not in screen
        assert not re.search(r"^\d\d:\d\d:\d\d db +running", screen, re.M), screen
        assert "branches: orchestrate/" in screen  # the summary after the board
        assert all(len(x) <= 80 for x in lines)
    finally:
        subprocess.run([*base, "kill-server"], capture_output=True)


def test_missing_agent_executables_refuse_the_run(
    git_repo: GitRepo, redis_url: str, tmp_path: Path
) -> None:
    """A plan whose agents' executables are not installed is refused before the run starts:
    one line per missing executable naming the agent and its teams, exit 2, nothing recorded."""
    text = (
        "version: 1\nname: demo\ndefaults: {agent: codex}\n"
        "teams:\n  - {id: db, task: x}\n  - {id: api, task: y, agent: aider}\n"
    )
    plan_file = _plan(git_repo, text)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    git = shutil.which("git")
    assert git is not None
    (bin_dir / "git").symlink_to(git)  # git alone on PATH: no agent CLI, wherever CI put them
    env = {**_env(redis_url, f"t{uuid.uuid4().hex[:8]}"), "PATH": str(bin_dir)}
    proc = _run(plan_file, env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.splitlines()
    assert lines == [
        f"{plan_file}: agents.codex: executable 'codex' is not on PATH (used by db); "
        "install it or set agents.codex.command",
        f"{plan_file}: agents.aider: executable 'aider' is not on PATH (used by api); "
        "install it or set agents.aider.command",
        "orchestrate: the plan has 2 problem(s)",
    ]
    assert not (git_repo.path / ".orchestrate" / "runs").exists()


def test_summary_lines_up_short_ids_and_names_branches_once(tmp_path: Path) -> None:
    """The end-of-run summary: the team column is as wide as its header with ids like a/b/c,
    no row ends in spaces, the verdict does not repeat itself, branches are named once as a
    pattern (each row shows only its team part, nothing wraps at 100 columns), and the
    report's path is printed."""
    from orchestrator.cli._run import _summary
    from orchestrator.run.engine import RunResult
    from orchestrator.run.teamrun import TeamResult

    run_id = "a-rather-long-plan-name-20261122-151010-abcd"
    teams = {
        "a": TeamResult("a", "succeeded", 1, f"orchestrate/{run_id}/a"),
        "b": TeamResult("b", "cancelled", 2, f"orchestrate/{run_id}/b", "the run was cancelled"),
        "c": TeamResult("c", "pending"),
    }
    result = RunResult(
        run_id,
        "interrupted",
        teams,
        reason="interrupted; `orchestrate resume` finishes it",
        base_ref="main",
        base_commit="0123456789abcdef",
    )
    report = tmp_path / "runs" / run_id / "report.html"
    lines = _summary(result, report)
    assert lines[1] == f"run {run_id} interrupted; `orchestrate resume` finishes it"
    assert lines[2] == "  team  status     attempts  branch / reason"
    assert lines[3] == "  a     succeeded         1  a"
    assert lines[4] == "  b     cancelled         2  the run was cancelled"
    assert lines[5] == "  c     pending           0"
    assert f"branches: orchestrate/{run_id}/<team>" in lines
    assert f"report:   {report}" in lines
    assert f"resume:   orchestrate resume {run_id}" in lines
    assert all(line == line.rstrip() for line in lines)
    assert all(len(line) <= 100 for line in lines if not line.startswith("report:"))
    cancelled = RunResult(run_id, "cancelled", teams, reason="cancelled by h pid 1; resume")
    assert _summary(cancelled)[1] == f"run {run_id} cancelled by h pid 1; resume"
    failed = RunResult(run_id, "failed", teams, reason="failed: b")
    assert _summary(failed)[1] == f"run {run_id} failed: b"


def test_run_help_names_the_plan_argument_plan() -> None:
    """`orchestrate run --help` names its argument PLAN, not the parameter's name."""
    proc = subprocess.run(
        [*ORCHESTRATE, "run", "--help"], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0
    assert "PLAN" in proc.stdout and "plan_file" not in proc.stdout.lower()


def test_a_second_run_of_a_live_plan_says_so(
    git_repo: GitRepo, redis_url: str, tmp_path: Path
) -> None:
    """`orchestrate run plan.yaml` while another run of the same plan is live: one line on
    stderr naming that run and its pid, and the new run goes ahead all the same."""
    teams = [("db", [])]
    pid_file = tmp_path / "db.pid"
    command, _ = write_agent(
        tmp_path / "agent", files_for(teams, db={"hang": True, "pidfile": str(pid_file)})
    )
    plan_file = _plan(git_repo, plan_yaml(command, teams))
    prefix = f"t{uuid.uuid4().hex[:8]}"
    env = _env(redis_url, prefix)
    first = subprocess.Popen(
        [*ORCHESTRATE, "run", str(plan_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not (pid_file.exists() and pid_file.read_text()):
            assert first.poll() is None and time.monotonic() < deadline, "db never started"
            time.sleep(0.05)
        write_agent(tmp_path / "agent", files_for(teams))  # the second run's agent ends
        second = _run(plan_file, env)
        assert second.returncode == 0, second.stdout + second.stderr
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        try:
            runs = client.zrange(f"{prefix}:runs", 0, -1)
        finally:
            client.close()
        (live,) = [r for r in runs if r not in second.stdout]
        note = f"note: run {live} of this plan is still running (pid {first.pid}); starting another"
        assert second.stderr.splitlines() == [note], second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        try:
            first.wait(timeout=30)
        except subprocess.TimeoutExpired:
            first.kill()
            first.wait()
