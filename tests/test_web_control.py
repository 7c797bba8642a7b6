"""Cancel one team, retry one failed team: on a live run (the engine acts) and on a finished one.

Real engine runs (in this process), a real Redis, fake agents as processes; the
requests go through the store exactly as `orchestrate cancel-team` /
`retry-team` and the dashboard's buttons send them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.errors import UsageError
from orchestrator.plan.load import load_plan
from orchestrator.run import control
from orchestrator.run.engine import EngineOptions, RunResult, start_run
from orchestrator.run.resume import resume_run
from orchestrator.settings import Settings
from orchestrator.state.store import Store
from tests.support.engine import files_for, plan_yaml, write_agent
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.anyio

FAST = EngineOptions(backoff_initial=0.01, backoff_max=0.05, backoff_jitter=0.01, kill_grace=1.0)


async def _until(check: Callable[[], Awaitable[bool]], limit: float) -> None:
    """Wait (at most ``limit`` s) until ``check()`` holds: another process's state, polled."""
    with anyio.fail_after(limit):
        while not await check():  # noqa: ASYNC110 (the store of a run, not an event of ours)
            await anyio.sleep(0.05)


async def _status(store: Store, run_id: str, team: str) -> str:
    return (await store.get_team(run_id, team)).status


async def _live(
    git_repo: GitRepo,
    store: Store,
    text: str,
    act: Callable[[str], Awaitable[Any]],
) -> tuple[RunResult, Any]:
    """Run the plan ``text``; once it is running, ``act(run_id)`` beside it."""
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(text + f"repo: {git_repo.path.name}\n")
    started: list[str] = []
    is_started = anyio.Event()
    out: dict[str, Any] = {}

    def on_started(run_id: str) -> None:
        started.append(run_id)
        is_started.set()

    async def run() -> None:
        out["result"] = await start_run(
            load_plan(plan_file),
            store=store,
            layout=git_repo.state_layout(),
            options=FAST,
            on_started=on_started,
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(30):
            await is_started.wait()
        out["acted"] = await act(started[0])
    return out["result"], out["acted"]


async def test_cancel_team_on_a_live_run_stops_it_blocks_downstream_and_the_rest_goes_on(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """cancel-team on a running team: its agent stops at once (not after its 30 s), the team is
    cancelled with the reason, the team after it is blocked, an independent team succeeds."""
    teams = [("slow", []), ("after", ["slow"]), ("other", [])]
    command, _ = write_agent(
        tmp_path / "agent", files_for(teams, slow={"sleep": 30.0}, other={"sleep": 1.0})
    )

    async def act(run_id: str) -> control.Done:
        await _until(lambda: _is(store, run_id, "slow", "running"), 20)
        return await control.cancel_team(store, run_id, "slow")

    t0 = time.monotonic()
    result, done = await _live(git_repo, store, plan_yaml(command, teams), act)
    assert time.monotonic() - t0 < 20
    assert done.live and done.status == "cancelled"
    assert result.teams["slow"].status == "cancelled"
    assert result.teams["after"].status == "blocked"
    assert result.teams["other"].status == "succeeded"
    state = await store.get_team(result.run_id, "slow")
    assert state.reason == "cancelled on request"


async def test_cancel_team_on_a_pending_team_keeps_it_from_starting(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """cancel-team on a team still waiting for its upstream: it never starts; the upstream
    team finishes normally."""
    teams = [("first", []), ("second", ["first"])]
    command, times = write_agent(tmp_path / "agent", files_for(teams, first={"sleep": 1.5}))

    async def act(run_id: str) -> control.Done:
        return await control.cancel_team(store, run_id, "second")

    result, done = await _live(git_repo, store, plan_yaml(command, teams), act)
    assert done.live and done.status == "cancelled"
    assert result.teams["first"].status == "succeeded"
    assert result.teams["second"].status == "cancelled"
    assert "second" not in times.read_text()


async def test_retry_team_on_a_live_run_starts_it_again_and_unblocks_downstream(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """retry-team on a team that failed (no retries left) while another team still runs: the
    engine starts it at attempt 2 with the failure as feedback, and the team after it,
    blocked meanwhile, runs too: the whole run succeeds."""
    teams = [("flaky", []), ("after", ["flaky"]), ("other", [])]
    command, _ = write_agent(
        tmp_path / "agent", files_for(teams, flaky={"fail_attempts": 1}, other={"sleep": 6.0})
    )
    text = plan_yaml(command, teams, defaults={"retries": 0})

    async def act(run_id: str) -> control.Done:
        await _until(lambda: _is(store, run_id, "after", "blocked"), 20)
        return await control.retry_team(store, run_id, "flaky")

    result, done = await _live(git_repo, store, text, act)
    assert done.live and done.status in ("retrying", "running", "verifying", "succeeded")
    assert result.status == "succeeded", result.reason
    assert {t: r.status for t, r in result.teams.items()} == {
        "flaky": "succeeded",
        "after": "succeeded",
        "other": "succeeded",
    }
    state = await store.get_team(result.run_id, "flaky")
    assert state.attempt == 2
    prompt = git_repo.path / ".orchestrate" / "runs" / result.run_id / "prompts" / "flaky.2.md"
    assert "Attempt 1 ended without the team being done: exit code 1" in prompt.read_text()


async def test_retry_team_on_a_finished_run_marks_it_for_resume(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """retry-team after the run failed: the team is retrying, the team after it pending again;
    `resume` then runs both and the run succeeds. Retrying a team that did not fail is refused."""
    teams = [("flaky", []), ("after", ["flaky"])]
    command, _ = write_agent(tmp_path / "agent", files_for(teams, flaky={"fail_attempts": 1}))

    async def act(run_id: str) -> None:
        return None

    result, _ = await _live(
        git_repo, store, plan_yaml(command, teams, defaults={"retries": 0}), act
    )
    assert result.status == "failed"
    done = await control.retry_team(store, result.run_id, "flaky")
    assert not done.live and done.status == "retrying" and done.unblocked == ("after",)
    with pytest.raises(UsageError, match="only a failed team"):
        await control.retry_team(store, result.run_id, "after")
    again = await resume_run(
        result.run_id, store=store, layout=git_repo.state_layout(), options=FAST
    )
    assert again.status == "succeeded", again.reason
    assert (await store.get_team(result.run_id, "flaky")).attempt == 2


async def _is(store: Store, run_id: str, team: str, status: str) -> bool:
    return await _status(store, run_id, team) == status


def test_cli_team_actions_refuse_bad_input_in_one_line(
    store_settings: Settings, tmp_path: Path
) -> None:
    """`cancel-team` / `retry-team` with an unknown run or team, or a team in the wrong
    state: one line on stderr, exit 2, no traceback."""
    import redis

    url = store_settings.redis_url.get_secret_value()  # type: ignore[union-attr]
    env = dict(os.environ)
    env["ORCHESTRATE_REDIS_URL"] = url
    env["ORCHESTRATE_KEY_PREFIX"] = store_settings.key_prefix
    state = tmp_path / "state"
    state.mkdir()
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        prefix = store_settings.key_prefix
        r.zadd(f"{prefix}:runs", {"r1": time.time()})
        r.hset(f"{prefix}:{{r1}}:meta", mapping={"status": "running", "plan": "plan.yaml"})
        r.rpush(f"{prefix}:{{r1}}:teams", "db")
        r.hset(f"{prefix}:{{r1}}:team:db", mapping={"status": "pending", "attempt": "0"})
    finally:
        r.close()
    cases = [
        (["retry-team", "r1", "db"], "only a failed team"),
        (["cancel-team", "r1", "nope"], "has no team 'nope'"),
        (["cancel-team", "nope", "db"], "nope"),
        (["retry-team", "r1", "bad:id"], "not a valid id"),
    ]
    for args, said in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator", *args, "--state-dir", str(state)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and said in lines[0], (args, proc.stderr)


@pytest.fixture
def store_settings(redis_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,  # type: ignore[arg-type]
        key_prefix=f"t{uuid.uuid4().hex[:10]}",
    )


def test_retry_button_on_a_finished_run_resumes_it_in_the_background(
    git_repo: GitRepo, tmp_path: Path, redis_url: str
) -> None:
    """The dashboard's Retry on a failed team of a run no orchestrator drives: the team is
    marked, a resume starts in the background (its output in the run's resume.log) and
    the run ends succeeded, the team at attempt 2."""
    import re

    import httpx
    import redis

    teams = [("flaky", []), ("after", ["flaky"])]
    command, _ = write_agent(tmp_path / "agent", files_for(teams, flaky={"fail_attempts": 1}))
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(
        plan_yaml(command, teams, defaults={"retries": 0}) + f"repo: {git_repo.path.name}\n"
    )
    prefix = f"t{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "ORCHESTRATE_REDIS_URL": redis_url, "ORCHESTRATE_KEY_PREFIX": prefix}
    orchestrate = [sys.executable, "-m", "orchestrator"]
    ran = subprocess.run(
        [*orchestrate, "run", str(plan_file), "--backoff", "0"], cwd=git_repo.path, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert ran.returncode == 1, ran.stdout + ran.stderr
    run_id = re.search(r"run (\S+) failed", ran.stdout).group(1)  # type: ignore[union-attr]
    with subprocess.Popen(
        [*orchestrate, "ui", "--port", "0"], cwd=git_repo.path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as ui:  # fmt: skip
        try:
            assert ui.stdout is not None
            base = re.search(r"(http://\S+/)", ui.stdout.readline()).group(1)  # type: ignore[union-attr]
            with httpx.Client(base_url=base, timeout=30) as client:
                page = client.get(f"/runs/{run_id}/teams/flaky")
                csrf = re.search(r'name="csrf-token" content="(\w+)"', page.text).group(1)  # type: ignore[union-attr]
                done = client.post(
                    f"/runs/{run_id}/teams/flaky/retry", headers={"X-CSRF-Token": csrf}
                )
                assert done.status_code == 200, done.text
                assert done.json() == {
                    "run": run_id, "team": "flaky", "status": "retrying", "live": False
                }
            r = redis.Redis.from_url(redis_url, decode_responses=True)
            try:
                deadline = time.monotonic() + 90
                while r.hget(f"{prefix}:{{{run_id}}}:meta", "status") != "succeeded":
                    assert time.monotonic() < deadline, "the background resume did not finish"
                    time.sleep(0.2)
                assert r.hget(f"{prefix}:{{{run_id}}}:team:flaky", "attempt") == "2"
            finally:
                r.close()
            log = git_repo.path / ".orchestrate" / "runs" / run_id / "resume.log"
            while f"run {run_id} succeeded" not in log.read_text():  # its summary: it ends
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        finally:
            ui.terminate()
            ui.wait(20)
