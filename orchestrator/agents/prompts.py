"""Render what an agent reads: the team prompt and, on a retry, the feedback.

Templates are Jinja2 (``StrictUndefined``: a misspelt variable is an error,
not an empty string; no autoescaping: this is Markdown, not HTML) and live in
the bundled ``prompts/`` folder:

* ``team.md.j2`` — the whole prompt of one attempt: role profile, task, working
  rules, deliverables, checks, acceptance criteria, what the upstream teams
  delivered, and (from the second attempt on) ``retry.md.j2``.
* ``retry.md.j2`` — what went wrong last time; also sent alone when an agent's
  own session is resumed (:func:`render_feedback`).

Every prompt reaches its agent through :func:`write_prompt`, which redacts
the whole text first: a check's output, an agent's last lines, an upstream
team's summary or a conflicted file may hold a secret, and the prompt is
sent to a model. The file is the user's alone (0600).

A plan may name its own template with ``prompt_template`` (at plan or team
level, a path relative to the plan file). It is looked up beside itself first,
then among the bundled templates, so it can ``{% include "retry.md.j2" %}`` or
``{% extends "team.md.j2" %}``. A broken template is a :class:`PlanError`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import PlanError, Problem
from orchestrator.plan.models import Plan, Team
from orchestrator.plan.models import format_duration as _format_duration
from orchestrator.plan.roles import RoleProfile
from orchestrator.redact import Redactor
from orchestrator.resources import prompts_dir
from orchestrator.verify import CheckResult, command_text

TEAM_TEMPLATE = "team.md.j2"
RETRY_TEMPLATE = "retry.md.j2"


@dataclass(frozen=True)
class UpstreamResult:
    """What one upstream team delivered, as the downstream prompt shows it."""

    team: str
    title: str
    files: Sequence[str] = ()
    final_message: str | None = None
    branch: str | None = None


@dataclass(frozen=True)
class Feedback:
    """Why an attempt did not pass; rendered by ``retry.md.j2``."""

    attempt: int
    reason: str
    missing: Sequence[str] = ()
    failed_checks: Sequence[CheckResult] = ()
    timed_out: bool = False
    stalled: bool = False
    timeout: float | None = None
    exit_code: int | None = None
    agent_error: str | None = None
    log_tail: str | None = None

    @property
    def timeout_text(self) -> str:
        return _format_duration(self.timeout) if self.timeout else "the team's timeout"


@dataclass(frozen=True)
class PromptInput:
    """Everything a prompt template may use."""

    run_id: str
    plan: Plan
    team: Team
    attempt: int
    max_attempts: int
    workdir: Path
    role: RoleProfile | None = None
    upstream: Sequence[UpstreamResult] = ()
    feedback: Feedback | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def variables(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "plan": self.plan,
            "team": self.team,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "workdir": str(self.workdir),
            "role": self.role,
            "upstream": list(self.upstream),
            "feedback": self.feedback,
            "deliverables": list(self.team.deliverables),
            "checks": [command_text(c) for c in self.team.checks],
            "acceptance": list(self.team.acceptance),
            "shared": self.plan.isolation == "shared",
            **self.extra,
        }


@functools.lru_cache(maxsize=32)
def _environment(search: tuple[Path, ...]) -> Any:
    """One Jinja environment per template search path, kept for the process.

    Building an environment per render threw its template cache away, so every
    attempt recompiled ``team.md.j2`` (~35 ms). The ``FileSystemLoader`` still
    notices an edited template (it compares mtimes), so caching is safe.
    """
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(p) for p in search]),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=False,
    )


def template_path(plan: Plan, team: Team, plan_file: Path | None) -> Path | None:
    """The plan's own template for ``team`` (team level wins), or ``None`` for the bundled one."""
    name = team.prompt_template or plan.prompt_template
    if name is None:
        return None
    base = plan_file.parent if plan_file is not None else Path.cwd()
    return (base / name).resolve()


def _render(template_file: Path | None, default_name: str, variables: Mapping[str, Any]) -> str:
    import jinja2

    builtin = prompts_dir()
    if template_file is None:
        env, name, shown = _environment((builtin,)), default_name, default_name
    else:
        env = _environment((template_file.parent, builtin))
        name, shown = template_file.name, str(template_file)
    try:
        text: str = env.get_template(name).render(**variables)
    except jinja2.TemplateNotFound as exc:
        raise PlanError([Problem(shown, "prompt_template", f"template not found: {exc}")]) from exc
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or shown
        message = exc.message or "syntax error"
        raise PlanError([Problem(where, "prompt_template", message, exc.lineno)]) from exc
    except jinja2.TemplateError as exc:
        raise PlanError([Problem(shown, "prompt_template", str(exc))]) from exc
    return text.strip() + "\n"


def render_template(name: str, variables: Mapping[str, Any]) -> str:
    """A bundled template of ``prompts/`` (``conflict.md.j2``, ``fix.md.j2``, ...) rendered
    with ``variables``; a missing variable or a broken template is a :class:`PlanError`."""
    return _render(None, name, variables)


def render_prompt(inp: PromptInput, *, plan_file: Path | None = None) -> str:
    """The full prompt of one attempt (``team.md.j2`` or the plan's own template)."""
    return _render(template_path(inp.plan, inp.team, plan_file), TEAM_TEMPLATE, inp.variables())


def render_feedback(inp: PromptInput) -> str:
    """Only the feedback part (``retry.md.j2``), for a resumed agent session."""
    if inp.feedback is None:
        raise ValueError("render_feedback needs feedback")
    return _render(None, RETRY_TEMPLATE, inp.variables())


def load_role(role: str | None, repo_root: Path) -> RoleProfile | None:
    """The team's role profile, or ``None`` when the team names no role."""
    if role is None:
        return None
    from orchestrator.plan.roles import resolve_role

    return resolve_role(role, repo_root)


def write_prompt(path: Path, text: str, redactor: Redactor) -> str:
    """Write ``text``, redacted, to ``path`` (0600, its folder 0700); returns what was written.

    The one way a prompt is written: whatever it quotes (check output, log
    lines, summaries, file contents) reaches the agent without a secret in it.
    """
    text = redactor.redact(text)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return text
