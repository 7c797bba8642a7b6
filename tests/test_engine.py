"""The run engine end to end: real git repositories, a real Redis, fake agents as processes."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.plan.load import load_plan
from orchestrator.plan.models import Plan
from orchestrator.run.engine import EngineOptions, RunResult, Spending, start_run
from orchestrator.run.teamrun import Notice
from orchestrator.state.runs import new_run_id, plan_of_run
from orchestrator.state.store import Store, Usage
from tests.support.engine import (
    SEVEN,
    files_for,
    max_overlap,
    plan_yaml,
    read_times,
    write_agent,
)
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.anyio

FAST = EngineOptions(backoff_initial=0.01, backoff_max=0.05, backoff_jitter=0.01, kill_grace=1.0)


async def _run(
    git_repo: GitRepo,
    store: Store,
    text: str,
    options: EngineOptions = FAST,
) -> tuple[RunResult, list[Notice]]:
    plan_file = git_repo.path.parent / "plan.yaml"  # beside the repo: the user's tree stays clean
    plan_file.write_text(text + f"repo: {git_repo.path.name}\n")
    notices: list[Notice] = []
    loaded = load_plan(plan_file)
    result = await start_run(
        loaded,
        store=store,
        layout=git_repo.state_layout(),
        options=options,
        notify=notices.append,
    )
    return result, notices


def _files(git_repo: GitRepo, ref: str) -> set[str]:
    return set(git_repo.git("ls-tree", "-r", "--name-only", ref).splitlines())


async def test_seven_team_plan_completes_with_upstream_work_merged(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """A typical 7-team plan succeeds; each branch holds its files and its upstream teams'."""
    command, _ = write_agent(tmp_path / "agent", files_for(SEVEN))
    before = git_repo.user_view()
    result, notices = await _run(git_repo, store, plan_yaml(command, SEVEN))
    assert result.status == "succeeded", result.reason
    assert result.exit_code == 0
    upstream = {
        "db": set(),
        "auth": {"db"},
        "api": {"db"},
        "services": {"db"},
        "frontend": {"db", "auth", "api", "services"},
        "tests": {"db", "auth", "api", "services", "frontend"},
        "deploy": {"db", "auth", "api", "services", "frontend", "tests"},
    }
    for tid, ups in upstream.items():
        branch = f"orchestrate/{result.run_id}/{tid}"
        files = _files(git_repo, branch)
        assert f"src/{tid}.txt" in files
        assert {f"src/{u}.txt" for u in ups} <= files
        others = {f"src/{t}.txt" for t in upstream} - {f"src/{u}.txt" for u in ups | {tid}}
        assert not (others & files), f"{tid} sees work of teams it does not depend on"
        assert git_repo.author(branch) == "orchestrate <orchestrate@localhost>"
        assert tid in git_repo.git("log", "-1", "--format=%B", branch)
    teams = await store.get_teams(result.run_id)
    assert {t.status for t in teams.values()} == {"succeeded"}
    assert teams["db"].deliverables.keys() == {"src/db.txt"}
    assert all(teams["db"].deliverables.values())
    run = await store.get_run(result.run_id)
    assert run.status == "succeeded"
    assert run.meta["plan_sha256"]
    assert (git_repo.path / ".orchestrate" / "runs" / result.run_id / "plan.yaml").exists()
    assert git_repo.user_view() == before, "the user's branch or working tree changed"
    assert [n.status for n in notices if n.team == "db"] == ["running", "succeeded"]
    # The downstream prompt names what the upstream teams delivered.
    prompt = (
        git_repo.path / ".orchestrate" / "runs" / result.run_id / "prompts" / "frontend.1.md"
    ).read_text()
    assert "`src/auth.txt`" in prompt and "done: auth wrote" in prompt


async def test_failed_first_attempt_is_retried_with_feedback(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """An agent failing its first attempt succeeds on the second, whose prompt says what broke."""
    teams = [("db", [])]
    command, times = write_agent(tmp_path / "agent", files_for(teams, db={"fail_attempts": 1}))
    result, notices = await _run(git_repo, store, plan_yaml(command, teams))
    assert result.status == "succeeded"
    assert result.teams["db"].attempts == 2
    prompts = git_repo.path / ".orchestrate" / "runs" / result.run_id / "prompts"
    second = (prompts / "db.2.md").read_text()
    assert "Attempt 1 ended" in second
    assert "exit code 1" in second
    assert "db broke" in second  # the end of its output
    assert "previous attempt" not in (prompts / "db.1.md").read_text()
    attempts = await store.get_attempts(result.run_id, "db")
    assert len(attempts) == 2
    assert attempts[0].agent_id != attempts[1].agent_id
    assert any(n.status == "retrying" for n in notices)
    assert [t["attempt"] for t in read_times(times)] == [1, 2]


async def test_exit_zero_without_deliverables_is_retried(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """An agent that exits 0 but forgot its deliverables is retried, told which file is missing."""
    teams = [("db", [])]
    command, _ = write_agent(tmp_path / "agent", files_for(teams, db={"skip_files_attempts": 1}))
    result, notices = await _run(git_repo, store, plan_yaml(command, teams))
    assert result.status == "succeeded"
    assert result.teams["db"].attempts == 2
    retry = [n for n in notices if n.status == "retrying"]
    assert retry and "missing src/db.txt" in retry[0].detail
    prompts = git_repo.path / ".orchestrate" / "runs" / result.run_id / "prompts"
    assert "src/db.txt: missing" in (prompts / "db.2.md").read_text()


async def test_failing_check_fails_the_team_after_retries(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """A check that never passes fails the team once its retries are spent, naming the check."""
    teams = [("db", [])]
    command, times = write_agent(tmp_path / "agent", files_for(teams))
    text = plan_yaml(
        command, teams, checks={"db": ["echo nope-from-check; exit 4"]}, defaults={"retries": 1}
    )
    result, _ = await _run(git_repo, store, text)
    assert result.status == "failed" and result.exit_code == 1
    assert result.teams["db"].status == "failed"
    assert "check `echo nope-from-check; exit 4` failed (exit 4)" in (
        result.teams["db"].reason or ""
    )
    assert len(read_times(times)) == 2
    prompts = git_repo.path / ".orchestrate" / "runs" / result.run_id / "prompts"
    assert "nope-from-check" in (prompts / "db.2.md").read_text()


async def test_failed_team_blocks_only_its_downstream(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """When a team fails, teams downstream of it are blocked and independent teams go on."""
    teams = [("db", []), ("auth", ["db"]), ("ui", []), ("e2e", ["auth", "ui"]), ("docs", ["ui"])]
    spec = files_for(teams, db={"fail_attempts": 5})
    command, times = write_agent(tmp_path / "agent", spec)
    result, _ = await _run(git_repo, store, plan_yaml(command, teams, defaults={"retries": 0}))
    status = {t: r.status for t, r in result.teams.items()}
    assert status == {
        "db": "failed",
        "auth": "blocked",
        "ui": "succeeded",
        "e2e": "blocked",
        "docs": "succeeded",
    }
    assert result.status == "failed"
    assert "upstream team db failed" in (result.teams["auth"].reason or "")
    assert {t["team"] for t in read_times(times)} == {"db", "ui", "docs"}
    stored = await store.get_teams(result.run_id)
    assert stored["e2e"].status == "blocked"


async def test_max_parallel_is_never_exceeded(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """No more than max_parallel agents run at once (from the agents' own start/end times)."""
    teams: list[tuple[str, list[str]]] = [(f"t{i}", []) for i in range(6)]
    command, times = write_agent(
        tmp_path / "agent", files_for(teams, **{t: {"sleep": 0.4} for t, _ in teams})
    )
    text = plan_yaml(command, teams, max_parallel=2)
    result, _ = await _run(git_repo, store, text)
    assert result.status == "succeeded"
    recorded = read_times(times)
    assert len(recorded) == 6
    assert max_overlap(recorded) == 2
    # Plan order when more are ready than slots: t0 and t1 start first.
    first = sorted(recorded, key=lambda t: t["start"])[:2]
    assert {t["team"] for t in first} == {"t0", "t1"}


async def test_max_parallel_option_overrides_the_plan(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """--max-parallel 1 runs the teams one after another even if the plan allows more."""
    teams: list[tuple[str, list[str]]] = [(f"t{i}", []) for i in range(3)]
    command, times = write_agent(
        tmp_path / "agent", files_for(teams, **{t: {"sleep": 0.2} for t, _ in teams})
    )
    options = EngineOptions(max_parallel=1, backoff_initial=0.01, backoff_jitter=0.01)
    result, _ = await _run(git_repo, store, plan_yaml(command, teams), options)
    assert result.status == "succeeded"
    assert max_overlap(read_times(times)) == 1


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie still answers kill(0): look at its state
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(") ", 1)[1].startswith("Z")
    except OSError:
        return True


async def test_hanging_agent_is_killed_at_its_timeout(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """An agent that hangs is stopped at the team's timeout, fails, and leaves no process."""
    teams = [("db", [])]
    pidfile = tmp_path / "agent.pid"
    spec: dict[str, Any] = files_for(teams, db={"hang": True, "pidfile": str(pidfile)})
    command, _ = write_agent(tmp_path / "agent", spec)
    text = plan_yaml(command, teams, defaults={"timeout": "1s", "retries": 0})
    started = time.monotonic()
    result, _ = await _run(git_repo, store, text)
    assert time.monotonic() - started < 20
    assert result.teams["db"].status == "failed"
    assert "timed out" in (result.teams["db"].reason or "")
    pid = int(pidfile.read_text())
    assert _gone(pid), "the hanging agent survived its timeout"


async def test_fail_fast_stops_starting_teams(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """With fail_fast, no team starts after the first failure; the rest stay not started."""
    teams: list[tuple[str, list[str]]] = [("bad", []), ("later", [])]
    command, times = write_agent(tmp_path / "agent", files_for(teams, bad={"fail_attempts": 9}))
    options = EngineOptions(max_parallel=1, fail_fast=True, backoff_initial=0.01)
    text = plan_yaml(command, teams, defaults={"retries": 0})
    result, notices = await _run(git_repo, store, text, options)
    assert result.status == "failed"
    assert result.teams["later"].status == "pending"
    assert "fail-fast" in (result.teams["later"].reason or "")
    assert {t["team"] for t in read_times(times)} == {"bad"}
    assert any(n.status == "stopping" for n in notices)


async def test_shared_isolation_completes(git_repo: GitRepo, store: Store, tmp_path: Path) -> None:
    """The same 7-team plan in shared isolation: one branch holds every team's work."""
    command, _ = write_agent(tmp_path / "agent", files_for(SEVEN))
    result, _ = await _run(git_repo, store, plan_yaml(command, SEVEN, isolation="shared"))
    assert result.status == "succeeded", result.reason
    branch = f"orchestrate/{result.run_id}/run"
    assert {f"src/{t}.txt" for t, _ in SEVEN} <= _files(git_repo, branch)
    log = git_repo.git("log", "--format=%s", branch).splitlines()
    # Teams side by side: a commit may carry a neighbour's finished files too.
    assert 1 <= sum("orchestrate: team" in line for line in log) <= 7
    assert all(r.branch == branch for r in result.teams.values())


async def test_agent_gets_its_environment_without_orchestrate_secrets(
    git_repo: GitRepo, store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Agents see the plan env and ORCHESTRATE_RUN/TEAM/..., never ORCHESTRATE_REDIS_URL."""
    monkeypatch.setenv("ORCHESTRATE_REDIS_URL", "redis://:hunter2@example:6379/0")
    monkeypatch.setenv("USER_THING", "kept")
    out = tmp_path / "env.txt"
    script = tmp_path / "envagent.py"
    script.write_text(
        "import os\n"
        f"lines = [f'{{k}}={{v}}' for k, v in os.environ.items()]\n"
        f"open({str(out)!r}, 'w').write('\\n'.join(lines))\n"
        "open('src.txt', 'w').write('x')\n"
    )
    teams = [("db", [])]
    text = plan_yaml(
        ["python3", str(script)], teams, deliverables={"db": ["src.txt"]}, env={"PLAN_VAR": "p"}
    )
    result, _ = await _run(git_repo, store, text)
    assert result.status == "succeeded", result.reason
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert "ORCHESTRATE_REDIS_URL" not in env
    assert "hunter2" not in out.read_text()
    assert env["USER_THING"] == "kept" and env["PLAN_VAR"] == "p"
    assert env["ORCHESTRATE_TEAM"] == "db" and env["ORCHESTRATE_ATTEMPT"] == "1"
    assert env["ORCHESTRATE_RUN"] == result.run_id
    assert len(env["ORCHESTRATE_AGENT_ID"]) == 7
    prompt = await anyio.Path(env["ORCHESTRATE_PROMPT_FILE"]).read_text()
    assert prompt.startswith("# Your assignment")


async def test_conflicting_upstream_branches_fail_the_team_naming_files(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """When upstream teams changed the same file differently, the downstream team fails
    naming the file, instead of running on a half-merged tree."""
    teams = [("left", []), ("right", []), ("join", ["left", "right"])]
    spec = files_for(
        teams,
        left={"files": {"src/left.txt": "l\n", "shared.txt": "left\n"}},
        right={"files": {"src/right.txt": "r\n", "shared.txt": "right\n"}},
    )
    command, times = write_agent(tmp_path / "agent", spec)
    result, _ = await _run(git_repo, store, plan_yaml(command, teams))
    assert result.teams["left"].status == "succeeded"
    assert result.teams["right"].status == "succeeded"
    assert result.teams["join"].status == "failed"
    assert "shared.txt" in (result.teams["join"].reason or "")
    assert "join" not in {t["team"] for t in read_times(times)}


def test_budget_stops_runs_and_teams() -> None:
    """Once spent, the run's or a team's budget stops new attempts, saying which and how much."""
    plan = Plan.model_validate(
        {
            "version": 1,
            "name": "b",
            "budget": {"tokens": 1000},
            "teams": [
                {"id": "a", "task": "x", "budget": {"usd": 1.0}},
                {"id": "b", "task": "y"},
            ],
        }
    )
    budget = Spending(plan)
    a, b = plan.team("a"), plan.team("b")
    assert budget.exhausted(a) is None
    budget.add("a", Usage(input_tokens=10, output_tokens=10, cost_usd=1.5))
    assert budget.exhausted(a) == "the team's budget is spent: $1.50 of $1.00"
    assert budget.exhausted(b) is None
    budget.add("b", Usage(input_tokens=900, output_tokens=100))
    assert budget.exhausted(None) == "the run's budget is spent: 1020 of 1000 tokens"
    assert budget.exhausted(b) is not None


def test_backoff_grows_and_stays_bounded() -> None:
    """Retries wait longer each time (with jitter), never beyond the maximum."""
    options = EngineOptions(backoff_initial=1.0, backoff_max=5.0, backoff_jitter=0.0)
    assert [options.backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    jittery = EngineOptions(backoff_initial=1.0, backoff_max=100.0, backoff_jitter=1.0)
    assert all(1.0 <= jittery.backoff(1) <= 2.0 for _ in range(20))


def test_run_id_format() -> None:
    """Run ids read `<plan>-<YYYYMMDD-HHMMSS>-<4 hex>` and differ between runs."""
    when = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
    run_id = new_run_id("zekka", now=when)
    assert re.fullmatch(r"zekka-20250304-050607-[0-9a-f]{4}", run_id)
    assert len({new_run_id("p") for _ in range(50)}) > 1


async def test_run_records_its_plan_for_resume(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """A run keeps the plan it started with: editing plan.yaml later does not change it."""
    teams = [("db", [])]
    command, _ = write_agent(tmp_path / "agent", files_for(teams))
    text = plan_yaml(command, teams)
    result, _ = await _run(git_repo, store, text)
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(text.replace("Build the db part.", "Something else."))
    run = await store.get_run(result.run_id)
    again = plan_of_run(run.meta, run_id=result.run_id)
    assert again.plan.team("db").task == "Build the db part."
    assert again.repo_root == git_repo.path.resolve()
    assert run.meta["base_commit"] == git_repo.head("main")
    assert run.meta["plan_sha256"] == again.sha256
