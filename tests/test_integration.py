"""The integration phase against real repositories, a real Redis and scripted agents as processes.

Each test builds team branches ``orchestrate/<run>/<team>`` by hand (as the
engine would have left them), creates the run in the store and calls
:func:`orchestrator.run.integration.phase.integrate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.gitops import integration_branch, shared_branch, team_branch
from orchestrator.plan.load import load_plan
from orchestrator.run.integration.phase import (
    INTEGRATION,
    STORE_NAME,
    IntegrationResult,
    integrate,
    load_result,
)
from orchestrator.run.teamrun import Notice
from orchestrator.state.store import Store
from tests.support.agents import python_agent
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.anyio

RESOLVER = r"""
import os, subprocess
out = subprocess.run(["git", "diff", "--name-only", "--diff-filter=U"],
                     capture_output=True, text=True, check=True).stdout.split()
for path in out:
    lines = open(path).read().splitlines()
    keep = [l for l in lines if not l.startswith(("<<<<<<<", "=======", ">>>>>>>"))]
    open(path, "w").write("\n".join(keep) + "\n")
    print("resolved", path, flush=True)
"""

LAZY_RESOLVER = "print('I looked at it and left it as it was', flush=True)\n"

FIXER = r"""
import os
prompt = open(os.environ["ORCHESTRATE_PROMPT_FILE"]).read()
print("fixing: the prompt says", "MISSING-FIXED" in prompt)
os.makedirs("src", exist_ok=True)
open("src/fixed.txt", "w").write("fixed\n")
"""


@dataclass
class Scenario:
    repo: GitRepo
    store: Store
    run_id: str
    plan_file: Path
    notices: list[Notice]

    async def integrate(
        self, succeeded: Sequence[str] | None = None, **kw: Any
    ) -> IntegrationResult:
        loaded = load_plan(self.plan_file)
        teams = [t.id for t in loaded.plan.teams] if succeeded is None else succeeded
        async with self.store.lease(self.run_id) as lease:
            await self.store.run_transition(self.run_id, "running", epoch=lease.epoch)
            return await integrate(
                loaded,
                store=self.store,
                layout=self.repo.state_layout(),
                run_id=self.run_id,
                epoch=lease.epoch,
                base_commit=self.repo.head("main"),
                succeeded=teams,
                notify=self.notices.append,
                kill_grace=0.5,
                **kw,
            )

    def files(self, ref: str) -> set[str]:
        return set(self.repo.git("ls-tree", "-r", "--name-only", ref).splitlines())


async def scenario(
    repo: GitRepo,
    store: Store,
    teams: Sequence[tuple[str, Sequence[str], Mapping[str, str]]],
    *,
    integration: Mapping[str, Any] | None = None,
    agents: Mapping[str, str] | None = None,
    run_id: str = "demo-1",
    isolation: str = "worktree",
) -> Scenario:
    """Team branches (each from its first upstream branch, else main), the plan, the run."""
    folder = repo.path.parent
    doc: dict[str, Any] = {
        "version": 1,
        "name": "demo",
        "repo": repo.path.name,
        "isolation": isolation,
        "defaults": {"agent": "command", "timeout": "60s"},
        "agents": {
            name: {"kind": "command", "command": python_agent(folder / f"{name}.py", code)}
            for name, code in (agents or {}).items()
        },
        "teams": [
            {"id": tid, "task": f"Build the {tid} part (task of {tid}).", "depends_on": list(deps)}
            for tid, deps, _ in teams
        ],
        "integration": dict(integration or {}),
    }
    if not doc["agents"]:
        doc["agents"] = {"command": {"kind": "command", "command": ["true"]}}
    plan_file = folder / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    if isolation == "shared":
        repo.make_branch(shared_branch(run_id), {f: c for _, _, fs in teams for f, c in fs.items()})
    else:
        made: set[str] = set()
        while len(made) < len(teams):  # upstream branches first
            for tid, deps, files in teams:
                if tid not in made and set(deps) <= made:
                    start = team_branch(run_id, deps[0]) if deps else "main"
                    repo.make_branch(team_branch(run_id, tid), files, start=start)
                    made.add(tid)
    await store.create_run(run_id, meta={"plan": str(plan_file)}, team_ids=[t[0] for t in teams])
    return Scenario(repo, store, run_id, plan_file, [])


async def test_clean_merge_of_several_branches_in_dependency_order(
    git_repo: GitRepo, store: Store
) -> None:
    """Teams merge into orchestrate/<run>/integration in dependency order; the suite runs there,
    its output reaches the log file and the log stream; the user's branch is untouched."""
    before = git_repo.user_view()
    s = await scenario(
        git_repo,
        store,
        [
            ("api", ["db"], {"src/api.txt": "api\n"}),
            ("db", [], {"src/db.txt": "db\n"}),
            ("auth", ["db"], {"src/auth.txt": "auth\n"}),
        ],
        integration={"test": ["echo suite-ran", "test -f src/api.txt && test -f src/auth.txt"]},
    )
    result = await s.integrate()
    assert result.ok, result.reason
    assert result.merged == ["db", "api", "auth"]
    assert result.test_passed is True
    assert {"src/db.txt", "src/api.txt", "src/auth.txt"} <= s.files(integration_branch(s.run_id))
    assert git_repo.user_view() == before
    layout = git_repo.state_layout()
    assert "suite-ran" in layout.log_file(s.run_id, INTEGRATION, 1).read_text()
    lines = [e.line for e in await store.read_log(s.run_id, STORE_NAME)]
    assert "suite-ran" in lines
    stored = await load_result(store, s.run_id)
    assert stored is not None and stored.status == "succeeded"
    assert stored.commits.keys() == {"db", "api", "auth"}
    assert (await store.get_run(s.run_id)).meta["integration_branch"] == integration_branch(
        s.run_id
    )
    assert any(n.status == "integration succeeded" for n in s.notices)


async def test_conflict_resolved_by_a_scripted_resolver(git_repo: GitRepo, store: Store) -> None:
    """A conflict goes to the resolver agent with the files and both teams' tasks in its prompt;
    its marker-free result is committed as the merge and integration goes on."""
    s = await scenario(
        git_repo,
        store,
        [
            ("db", [], {"src/app.txt": "db line\n"}),
            ("api", [], {"src/app.txt": "api line\n"}),
            ("docs", [], {"docs/x.md": "x\n"}),
        ],
        integration={"resolver": "fixit", "test": "grep -q 'db line' src/app.txt"},
        agents={"fixit": RESOLVER},
    )
    result = await s.integrate()
    assert result.ok, result.reason
    assert result.merged == ["db", "api", "docs"]
    (conflict,) = result.conflicts
    assert conflict.team == "api" and conflict.files == ["src/app.txt"]
    assert conflict.others == {"src/app.txt": ["db"]}
    assert conflict.resolved and conflict.resolver_agent_id == result.agents[0].agent_id
    branch = integration_branch(s.run_id)
    text = git_repo.git("show", f"{branch}:src/app.txt")
    assert "db line" in text and "api line" in text and "<<<<<<<" not in text
    prompt = git_repo.state_layout().prompt_file(s.run_id, INTEGRATION, 1).read_text()
    assert "src/app.txt" in prompt and "task of db" in prompt and "task of api" in prompt


async def test_conflict_without_resolver_fails_naming_files_and_teams(
    git_repo: GitRepo, store: Store
) -> None:
    """Without a resolver a conflict fails the integration with each file and the two teams;
    the integration worktree is left clean (merge aborted)."""
    before = git_repo.user_view()
    s = await scenario(
        git_repo,
        store,
        [
            ("db", [], {"src/app.txt": "db\n", "src/b.txt": "db\n"}),
            ("api", [], {"src/app.txt": "api\n", "src/b.txt": "api\n"}),
        ],
        integration={"test": "true"},
    )
    result = await s.integrate()
    assert result.status == "failed"
    assert result.reason is not None
    assert "src/app.txt between db and api" in result.reason
    assert "src/b.txt between db and api" in result.reason
    assert result.merged == ["db"] and result.test_passed is None
    worktree = Path(result.worktree)
    assert git_repo.git("status", "--porcelain", cwd=worktree) == ""
    assert git_repo.user_view() == before
    stored = await load_result(store, s.run_id)
    assert stored is not None and stored.conflicts[0].resolution.startswith("unresolved")


async def test_resolver_that_leaves_markers_fails(git_repo: GitRepo, store: Store) -> None:
    """A resolver whose result still holds conflict markers fails the integration, saying so."""
    s = await scenario(
        git_repo,
        store,
        [("db", [], {"a.txt": "db\n"}), ("api", [], {"a.txt": "api\n"})],
        integration={"resolver": "lazy"},
        agents={"lazy": LAZY_RESOLVER},
    )
    result = await s.integrate()
    assert result.status == "failed"
    assert result.reason is not None and "conflict markers left in a.txt" in result.reason


async def test_failing_suite_fixed_by_a_scripted_fixer(git_repo: GitRepo, store: Store) -> None:
    """A failing suite goes to the fixer with its output's tail; the fix is committed on the
    integration branch and the suite passes on the second run."""
    s = await scenario(
        git_repo,
        store,
        [("db", [], {"src/db.txt": "db\n"})],
        integration={
            "test": "test -f src/fixed.txt || { echo MISSING-FIXED; exit 3; }",
            "fixer": "fixer",
            "retries": 2,
        },
        agents={"fixer": FIXER},
    )
    result = await s.integrate()
    assert result.ok, result.reason
    assert [(r.round, r.passed) for r in result.suite] == [(0, False), (1, True)]
    assert result.suite[0].exit_code == 3 and "MISSING-FIXED" in result.suite[0].tail
    (fixer,) = result.agents
    assert fixer.role == "fixer" and fixer.ok
    assert "src/fixed.txt" in s.files(integration_branch(s.run_id))
    log = git_repo.state_layout().log_file(s.run_id, INTEGRATION, fixer.n).read_text()
    assert "the prompt says True" in log


async def test_failing_suite_bisected_to_the_team_that_broke_it(
    git_repo: GitRepo, store: Store
) -> None:
    """A suite that still fails is bisected over the merges: the verdict names the team whose
    merge broke it, and the integration branch is left at the full merge."""
    s = await scenario(
        git_repo,
        store,
        [
            ("db", [], {"src/db.txt": "db\n"}),
            ("auth", ["db"], {"src/auth.txt": "auth\n"}),
            ("api", ["db"], {"src/api.txt": "api\n"}),
            ("services", ["db"], {"src/services.txt": "broken\n"}),
            ("ui", ["db"], {"src/ui.txt": "ui\n"}),
        ],
        integration={"test": "! grep -rq broken src"},
    )
    result = await s.integrate()
    assert result.status == "failed"
    assert result.bisection is not None
    assert result.bisection.culprit == "services"
    assert result.bisection.verdict == (
        "the suite passes with db, auth, api and fails once services is merged"
    )
    assert result.reason is not None and result.bisection.verdict in result.reason
    tip = git_repo.head(integration_branch(s.run_id))
    assert tip == result.commits["ui"] == result.head
    assert all(r.purpose == "bisect" for r in result.suite[1:]) and len(result.suite) <= 4


async def test_bisect_can_be_switched_off(git_repo: GitRepo, store: Store) -> None:
    """integration.bisect: false reports the failure without re-running the suite."""
    s = await scenario(
        git_repo,
        store,
        [("db", [], {"x": "1"}), ("api", [], {"y": "2"})],
        integration={"test": "exit 1", "bisect": False},
    )
    result = await s.integrate()
    assert result.status == "failed" and result.bisection is None and len(result.suite) == 1


async def test_partial_integration_names_the_teams_left_out(
    git_repo: GitRepo, store: Store
) -> None:
    """By default nothing is integrated unless every team succeeded; partial integrates the
    teams that did and names the others."""
    s = await scenario(
        git_repo,
        store,
        [("db", [], {"src/db.txt": "db\n"}), ("api", [], {"src/api.txt": "api\n"})],
        integration={"test": "test -f src/db.txt"},
    )
    skipped = await s.integrate(succeeded=["db"])
    assert skipped.status == "skipped" and skipped.reason is not None
    assert "api" in skipped.reason and "--integrate-partial" in skipped.reason
    result = await s.integrate(succeeded=["db"], partial=True)
    assert result.ok, result.reason
    assert result.merged == ["db"] and result.left_out == ["api"]
    assert "src/api.txt" not in s.files(integration_branch(s.run_id))


async def test_shared_isolation_tests_the_run_branch_without_merging(
    git_repo: GitRepo, store: Store
) -> None:
    """In shared isolation the run branch is the integration branch: no merge, the suite runs
    in the shared worktree."""
    s = await scenario(
        git_repo,
        store,
        [("db", [], {"src/db.txt": "db\n"}), ("api", [], {"src/api.txt": "api\n"})],
        integration={"test": "test -f src/db.txt && test -f src/api.txt"},
        isolation="shared",
    )
    result = await s.integrate()
    assert result.ok, result.reason
    assert result.branch == shared_branch(s.run_id) and result.commits == {}
    assert not git_repo.git("branch", "--list", integration_branch(s.run_id))


async def test_suite_runs_in_the_agents_environment_without_orchestrate_variables(
    git_repo: GitRepo, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test suite gets what a team's agent gets (the plan's env, env_allow) and never an
    ORCHESTRATE_* variable such as the Redis URL with its password."""
    monkeypatch.setenv("ORCHESTRATE_REDIS_URL", "redis://:hunter2-pw@example:6379/0")
    monkeypatch.setenv("LEFT_OUT", "no")
    s = await scenario(
        git_repo,
        store,
        [("db", [], {"src/db.txt": "db\n"})],
        integration={"test": "env | grep -E '^(ORCHESTRATE_|PLAN_VAR|LEFT_OUT)' ; true"},
    )
    doc = yaml.safe_load(s.plan_file.read_text())
    doc |= {"env": {"PLAN_VAR": "plan-value"}, "env_allow": ["PATH"]}
    s.plan_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = await s.integrate()
    assert result.ok, result.reason
    output = git_repo.state_layout().log_file(s.run_id, INTEGRATION, 1).read_text()
    assert "PLAN_VAR=plan-value" in output
    assert "ORCHESTRATE_" not in output and "LEFT_OUT" not in output
