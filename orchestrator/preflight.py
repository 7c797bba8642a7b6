"""What can be checked on this machine before a run starts: the agents' executables.

``orchestrate plan`` shows these as warnings; ``run`` and ``resume`` refuse to
start (exit 2, one line each) rather than burn every attempt of a team on
"command not found".
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.agents import adapter_for, executable
from orchestrator.errors import PlanError, Problem
from orchestrator.plan import AgentConfig, Plan
from orchestrator.planload import LoadedPlan


@dataclass(frozen=True)
class MissingAgent:
    """An agent the plan uses whose program this machine lacks."""

    agent: str
    executable: str
    users: tuple[str, ...]
    """Team ids, and ``integration.resolver`` / ``integration.fixer``."""

    def __str__(self) -> str:
        return (
            f"executable {self.executable!r} is not on PATH (used by {', '.join(self.users)}); "
            f"install it or set agents.{self.agent}.command"
        )


def agents_in_use(plan: Plan) -> dict[str, list[str]]:
    """Each agent the plan uses (teams, then integration), with who uses it, in plan order."""
    users: dict[str, list[str]] = {}
    for team in plan.teams:
        users.setdefault(plan.agent_name(team), []).append(team.id)
    for role in ("resolver", "fixer"):
        name = getattr(plan.integration, role)
        if name:
            users.setdefault(name, []).append(f"integration.{role}")
    return users


def _kind(plan: Plan, name: str) -> AgentConfig:
    config = plan.agent_config(name)
    return config if config.kind else config.model_copy(update={"kind": "command"})


def _shell_program(command: str) -> str | None:
    """The program a shell command line starts with, when that is plain to see."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or "$" in words[0] or "=" in words[0]:
        return None
    return None if words[0] in _SHELL_WORDS else words[0]


_SHELL_WORDS = frozenset(
    {"cd", "exec", "eval", "export", "set", "source", ".", ":", "true", "false", "test", "["}
    | {"if", "for", "while", "case", "{", "(", "!", "env"}
)


def missing_agents(loaded: LoadedPlan, *, guess_shell: bool = False) -> list[MissingAgent]:
    """The agents whose executable cannot be found (relative paths: from the repository).

    A ``command`` agent written as a shell string runs ``/bin/sh``, which is
    there; with ``guess_shell`` its first word is checked too (for warnings: it
    may be a function or alias the shell knows).
    """
    plan = loaded.plan
    missing = []
    for name, users in agents_in_use(plan).items():
        config = _kind(plan, name)
        assert config.kind is not None
        program: str | None = executable(config)
        if adapter_for(config.kind).missing_executable(config, loaded.repo_root) is None:
            program = None
            if guess_shell and config.kind == "command" and isinstance(config.command, str):
                first = _shell_program(config.command)
                if first and "/" not in first and shutil.which(first) is None:
                    program = first
        if program is not None:
            missing.append(MissingAgent(name, program, tuple(users)))
    return missing


def require_agents(loaded: LoadedPlan, missing: Sequence[MissingAgent] | None = None) -> None:
    """Raise :class:`PlanError` (exit 2, one line per agent) when an executable is missing."""
    missing = missing_agents(loaded) if missing is None else missing
    if missing:
        raise PlanError([Problem(str(loaded.path), f"agents.{m.agent}", str(m)) for m in missing])
