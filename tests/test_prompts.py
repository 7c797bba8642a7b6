"""Prompts: what the agent of a team reads on each attempt."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.agents.prompts import (
    Feedback,
    PromptInput,
    UpstreamResult,
    load_role,
    render_feedback,
    render_prompt,
)
from orchestrator.errors import PlanError
from orchestrator.plan.models import Plan
from orchestrator.verify import CheckResult


def _plan(**extra: object) -> Plan:
    return Plan.model_validate(
        {
            "version": 1,
            "name": "demo",
            "teams": [
                {"id": "db", "task": "Set up the database.", "deliverables": ["src/db.py"]},
                {
                    "id": "api",
                    "name": "HTTP API",
                    "task": "Build the API on the database module.",
                    "deliverables": ["src/api.py", "tests/*.py"],
                    "checks": ["python -m pytest -q", ["ruff", "check", "src"]],
                    "acceptance": ["GET /health answers 200"],
                    "depends_on": ["db"],
                },
            ],
            **extra,
        }
    )


def _input(plan: Plan, **kw: object) -> PromptInput:
    args: dict[str, object] = {
        "run_id": "demo-20250101-000000-abcd",
        "plan": plan,
        "team": plan.team("api"),
        "attempt": 1,
        "max_attempts": 3,
        "workdir": Path("/work/wt/api"),
    }
    args.update(kw)
    return PromptInput(**args)  # type: ignore[arg-type]


def test_first_prompt_has_task_deliverables_checks_and_rules() -> None:
    """The agent is told its task, what to deliver, how it is checked, and to stay put."""
    text = render_prompt(_input(_plan()))
    assert "Build the API on the database module." in text
    assert "`src/api.py`" in text and "`tests/*.py`" in text
    assert "`python -m pytest -q`" in text and "`ruff check src`" in text
    assert "GET /health answers 200" in text
    assert "/work/wt/api" in text
    assert "Do not commit" in text
    assert "summary" in text
    assert "previous attempt" not in text


def test_upstream_files_and_messages_are_shown() -> None:
    """A downstream agent learns which files its upstream teams made and what they said."""
    up = UpstreamResult("db", "Database", ["src/db.py"], "Made the schema.\nUse get_conn().")
    text = render_prompt(_input(_plan(), upstream=[up]))
    assert "Database (`db`)" in text
    assert "`src/db.py`" in text
    assert "Use get_conn()." in text


def test_retry_prompt_carries_every_failure() -> None:
    """On a retry the agent sees the missing files, each failing check with its output tail."""
    fb = Feedback(
        attempt=1,
        reason="missing src/api.py",
        missing=["src/api.py: missing"],
        failed_checks=[
            CheckResult("python -m pytest -q", False, 1, "E  assert 1 == 2\n1 failed", 0.5),
            CheckResult("ruff check src", False, None, "", 600.0, timed_out=True),
        ],
        exit_code=0,
    )
    text = render_prompt(_input(_plan(), attempt=2, feedback=fb))
    assert "Attempt 1 ended" in text
    assert "src/api.py: missing" in text
    assert "check `python -m pytest -q` failed (exit 1)" in text
    assert "E  assert 1 == 2" in text
    assert "check `ruff check src` timed out" in text
    alone = render_feedback(_input(_plan(), attempt=2, feedback=fb))
    assert "Build the API" not in alone and "src/api.py: missing" in alone


def test_retry_prompt_explains_timeout_and_exit_code() -> None:
    """A timed-out attempt and a crashed agent are explained in words."""
    fb = Feedback(attempt=2, reason="timed out", timed_out=True, timeout=90.0)
    assert "ran out of time (the limit is 1m30s)" in render_feedback(_input(_plan(), feedback=fb))
    fb = Feedback(attempt=2, reason="exit 3", exit_code=3, agent_error="API overloaded")
    text = render_feedback(_input(_plan(), feedback=fb))
    assert "exited with code 3" in text and "API overloaded" in text


def test_shared_isolation_warns_about_neighbours() -> None:
    """In shared isolation the agent is told other teams work in the same folder."""
    text = render_prompt(_input(_plan(isolation="shared")))
    assert "Other teams work in this same directory" in text


def test_role_profile_body_leads_the_prompt(tmp_path: Path) -> None:
    """A team's role profile (a repo's own agents/X.md) is the prompt's opening."""
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "api-smith.md").write_text(
        "---\nname: api-smith\ndescription: builds APIs\n---\nYou build careful HTTP APIs.\n"
    )
    role = load_role("api-smith", tmp_path)
    text = render_prompt(_input(_plan(), role=role))
    assert text.startswith("You build careful HTTP APIs.")
    assert load_role(None, tmp_path) is None


def test_plan_template_is_used_and_can_include_builtin(tmp_path: Path) -> None:
    """A plan's own prompt_template (relative to the plan file) replaces the bundled one."""
    (tmp_path / "my.md.j2").write_text(
        "CUSTOM {{ team.id }} {{ attempt }}\n"
        "{% if feedback %}{% include 'retry.md.j2' %}{% endif %}"
    )
    plan = _plan(prompt_template="my.md.j2")
    fb = Feedback(attempt=1, reason="missing x", missing=["x: missing"])
    text = render_prompt(_input(plan, feedback=fb), plan_file=tmp_path / "plan.yaml")
    assert text.startswith("CUSTOM api 1")
    assert "x: missing" in text


def test_broken_template_is_a_plan_error(tmp_path: Path) -> None:
    """A template with an unknown variable or bad syntax stops the run with a clear line."""
    (tmp_path / "bad.md.j2").write_text("{{ no_such_thing }}")
    (tmp_path / "syntax.md.j2").write_text("{% if %}")
    plan_file = tmp_path / "plan.yaml"
    with pytest.raises(PlanError, match="no_such_thing"):
        render_prompt(_input(_plan(prompt_template="bad.md.j2")), plan_file=plan_file)
    with pytest.raises(PlanError, match="prompt_template"):
        render_prompt(_input(_plan(prompt_template="syntax.md.j2")), plan_file=plan_file)
    with pytest.raises(PlanError, match="not found"):
        render_prompt(_input(_plan(prompt_template="absent.j2")), plan_file=plan_file)


def test_bundled_template_renders_by_name_and_misspelt_variables_fail() -> None:
    """`render_template` renders a bundled template (the integration's fixer prompt) with the
    given variables; a missing variable is a plan error, not a silent blank."""
    from orchestrator.agents.prompts import render_template
    from orchestrator.resources import prompts_dir

    names = sorted(p.name for p in prompts_dir().iterdir() if p.name.endswith(".j2"))
    assert "fix.md.j2" in names and "conflict.md.j2" in names
    plan = _plan()
    text = render_template(
        "fix.md.j2",
        {"run_id": "demo-1", "plan": plan, "commands": ["pytest -q"],
         "failed_command": "pytest -q", "reason": "exit 1", "output_tail": "E   boom-here",
         "teams": list(plan.teams), "left_out": [], "round": 1, "rounds": 2,
         "workdir": "/w", "branch": "orchestrate/demo-1/integration"},
    )  # fmt: skip
    assert "boom-here" in text and "pytest -q" in text
    with pytest.raises(PlanError):
        render_template("fix.md.j2", {"run_id": "demo-1"})
    with pytest.raises(PlanError):
        render_template("no-such.md.j2", {})


def test_edited_plan_template_is_picked_up_by_the_next_render(tmp_path: Path) -> None:
    """Templates are compiled once per process, yet a plan template edited during a run
    (a retry after the user fixed it) renders its new text, not a stale compiled copy."""
    import os

    tpl = tmp_path / "live.md.j2"
    tpl.write_text("FIRST {{ team.id }}\n")
    os.utime(tpl, (1_000_000, 1_000_000))
    plan = _plan(prompt_template="live.md.j2")
    plan_file = tmp_path / "plan.yaml"
    assert render_prompt(_input(plan), plan_file=plan_file).startswith("FIRST api")
    tpl.write_text("SECOND {{ team.id }}\n")
    os.utime(tpl, (2_000_000, 2_000_000))
    assert render_prompt(_input(plan), plan_file=plan_file).startswith("SECOND api")
