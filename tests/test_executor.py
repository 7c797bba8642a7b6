"""The executor interface and the local executor: idempotent attempts, the scheduler's hooks.

An executor is asked for attempt N of team T of a run and answers with an
:class:`AttemptOutcome`; the same key asked twice never starts a second agent,
and the executor writes no team transition (only the scheduler's hooks do).
"""

from __future__ import annotations

import ast
from pathlib import Path

import anyio
import pytest
import yaml

from orchestrator.agents.prompts import Feedback, UpstreamResult
from orchestrator.agents.runner import LiveAgents
from orchestrator.gitops import Git
from orchestrator.plan.load import load_plan
from orchestrator.run.attempt import RunSite
from orchestrator.run.executor import (
    AgentEnd,
    AttemptOutcome,
    AttemptRecord,
    AttemptRequest,
    AttemptStart,
)
from orchestrator.run.local_executor import LocalExecutor
from orchestrator.state.runs import create_run
from orchestrator.state.store import Store
from orchestrator.verify import CheckResult
from tests.support.agents import python_agent
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.anyio

AGENT = """\
import os, sys, time
with open(sys.argv[1], "a") as fh:
    fh.write(os.environ["ORCHESTRATE_AGENT_ID"] + "\\n")
time.sleep(0.5)
os.makedirs("src", exist_ok=True)
open("src/db.txt", "w").write("db\\n")
print("done")
"""


class Hooks:
    """The scheduler's side, recording what the executor asked for (and writing nothing)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def starting(self, start: AttemptStart) -> None:
        self.calls.append(f"starting {start.agent_id}")

    async def attached(self, record: AttemptRecord, running: bool) -> None:
        self.calls.append("attached")

    async def ended(self, end: AgentEnd) -> None:
        self.calls.append(f"ended ok={end.ok}")

    def leave_running(self) -> bool:
        return False


async def test_the_same_attempt_asked_twice_starts_one_agent(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """Two requests for (run, team, attempt 1) at once, and a third after it ended: one
    agent runs, all three get the same outcome (verified and committed), and the team's
    status in the store is untouched: only the scheduler writes transitions."""
    started = tmp_path / "started.txt"
    command = python_agent(tmp_path / "agent.py", AGENT)
    doc = {
        "version": 1,
        "name": "demo",
        "repo": git_repo.path.name,
        "defaults": {"agent": "fake", "timeout": "60s"},
        "agents": {"fake": {"kind": "command", "command": [*command, str(started)]}},
        "teams": [{"id": "db", "task": "Build the db.", "deliverables": ["src/db.txt"]}],
    }
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    loaded = load_plan(plan_file)
    layout = git_repo.state_layout()
    layout.ensure()
    git = Git(loaded.repo_root)
    info = await create_run(store, layout, loaded, git)
    async with store.lease(info.run_id) as lease:
        site = RunSite(
            run_id=info.run_id,
            loaded=loaded,
            store=store,
            layout=layout,
            git=git,
            kill_grace=1.0,
            live=LiveAgents(),
        )
        executor = LocalExecutor(site)
        request = AttemptRequest(
            run_id=info.run_id,
            team_id="db",
            attempt=1,
            epoch=lease.epoch,
            max_attempts=1,
            base_commit=info.base_commit,
        )
        hooks = Hooks()
        outcomes: list[AttemptOutcome] = []

        async def ask() -> None:
            outcomes.append(await executor.run_attempt(request, hooks))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            tg.start_soon(ask)
        outcomes.append(await executor.run_attempt(request, hooks))
        await executor.aclose()
    assert len(started.read_text().splitlines()) == 1  # one agent
    assert executor.started == 1
    first = outcomes[0]
    assert all(o is first for o in outcomes)
    assert first.ok and first.commit and first.files == ["src/db.txt"]
    assert first.key == (info.run_id, "db", 1)
    assert hooks.calls == [f"starting {first.agent_id}", "ended ok=True"]
    assert git_repo.git("log", "-1", "--format=%H", f"orchestrate/{info.run_id}/db") == (
        first.commit
    )
    team = await store.get_team(info.run_id, "db")
    assert team.status == "pending"  # the executor wrote attempt records, no transition
    assert [e.line for e in await store.read_log(info.run_id, "db")] == ["done"]  # once


def test_requests_and_outcomes_cross_a_wire_as_json() -> None:
    """What a remote executor receives and returns survives JSON: the feedback with its
    failing checks, the upstream results, an attach record, deliverable hashes, usage."""
    feedback = Feedback(
        attempt=1,
        reason="check `pytest` failed (exit 1)",
        missing=("src/a.py: missing",),
        failed_checks=(CheckResult("pytest", False, 1, "1 failed", 0.4),),
        log_tail="last line",
    )
    request = AttemptRequest(
        run_id="demo-1",
        team_id="api",
        attempt=2,
        epoch=7,
        max_attempts=3,
        base_commit="abc123",
        feedback=feedback,
        session_id="S1",
        upstream=[UpstreamResult(team="db", title="DB", files=["src/db.py"], final_message="ok")],
        attach=AttemptRecord(
            attempt=2, agent_id="a1", pid=42, create_time=1.5, log=Path("/l"),
            status=Path("/s"), offset=10,
        ),
    )  # fmt: skip
    back = AttemptRequest.model_validate_json(request.model_dump_json())
    assert back.key == ("demo-1", "api", 2) and back.epoch == 7
    assert back.feedback is not None and back.feedback.failed_checks[0].output_tail == "1 failed"
    assert back.upstream[0].files == ["src/db.py"] and back.attach == request.attach
    outcome = AttemptOutcome(
        run_id="demo-1", team_id="api", attempt=2, ok=True, commit="def456",
        deliverables={"src/api.py": "f" * 64, "docs/*.md": None}, feedback=feedback,
    )  # fmt: skip
    again = AttemptOutcome.model_validate_json(outcome.model_dump_json())
    assert again.files == ["src/api.py"] and again.commit == "def456" and again.host


ROOT = Path(__file__).resolve().parent.parent / "orchestrator"
TYPES = {"RunContext", "Notice", "Notify", "TeamResult", "EngineOptions", "Spending", "Recovery"}


def test_no_module_imports_the_scheduler_for_a_run_wide_type() -> None:
    """The run-wide types live in runtypes: no module of the package takes one of them from
    teamrun or engine."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in (
                "orchestrator.run.teamrun",
                "orchestrator.run.engine",
            ):
                names = {a.name for a in node.names} & TYPES
                if names:
                    offenders.append(f"{path.relative_to(ROOT)}: {sorted(names)}")
    assert offenders == []


async def test_an_unknown_executor_is_refused_before_the_run_is_recorded(
    git_repo: GitRepo, store: Store, tmp_path: Path
) -> None:
    """`EngineOptions(executor="nope")`: one usage error (exit 2) naming the known executors,
    and no run is created (nothing left `running`)."""
    from orchestrator.errors import UsageError
    from orchestrator.run.engine import EngineOptions, start_run

    plan_file = git_repo.path.parent / "plan.yaml"
    doc = {"version": 1, "name": "demo", "repo": git_repo.path.name,
           "agents": {"fake": {"kind": "command", "command": ["true"]}},
           "defaults": {"agent": "fake"}, "teams": [{"id": "db", "task": "x"}]}  # fmt: skip
    plan_file.write_text(yaml.safe_dump(doc))
    with pytest.raises(UsageError, match="unknown executor 'nope' \\(known: local, ray\\)") as err:
        await start_run(
            load_plan(plan_file),
            store=store,
            layout=git_repo.state_layout(),
            options=EngineOptions(executor="nope"),
        )
    assert err.value.exit_code == 2
    assert await store.list_runs() == []
