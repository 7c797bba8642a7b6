"""What can be checked on this machine before a run starts.

The agents' executables: ``orchestrate plan`` shows missing ones as warnings;
``run`` and ``resume`` refuse to start (exit 2, one line each) rather than burn
every attempt of a team on "command not found".

Files the teams will not see: every team starts from a commit, so untracked and
uncommitted files are not in its worktree. ``validate``, ``plan`` and ``run``
warn about them, first about those a command of the plan names.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.agents import adapter_for, executable
from orchestrator.errors import PlanError, Problem
from orchestrator.paths import STATE_DIR_NAME
from orchestrator.plan.load import LoadedPlan
from orchestrator.plan.models import AgentConfig, Plan


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


# --- files the teams will not see ---------------------------------------------------

_SHOWN_FILES = 5


def _changed_files(repo: Path) -> dict[str, str]:
    """Path (relative to the repository root) -> ``"untracked"`` or ``"uncommitted"``, for
    each file ``git status`` lists (ignored files are not listed); empty if git fails."""
    try:
        proc = subprocess.run(
            ["git", "status", "--porcelain=v1", "-z", "--untracked-files=all"],
            cwd=repo,
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    if proc.returncode != 0:
        return {}
    out: dict[str, str] = {}
    entries = iter(proc.stdout.decode("utf-8", "surrogateescape").split("\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            next(entries, None)  # the original path of a rename or copy
        out[path] = "untracked" if code == "??" else "uncommitted"
    return out


def _command_words(command: str | Sequence[str]) -> list[str]:
    if isinstance(command, str):
        try:
            words = shlex.split(command)
        except ValueError:
            words = command.split()
    else:
        words = list(command)
    out = []
    for word in words:
        for part in word.split("=", 1)[-1:]:  # --script=tools/run.sh names tools/run.sh
            path = part.removeprefix("{workdir}/")
            while path.startswith("./"):
                path = path[2:]
            if path:
                out.append(path)
    return out


def unseen_files(loaded: LoadedPlan) -> list[str]:
    """Warnings about files the teams will not see: untracked or uncommitted files in the
    repository (every team starts from a commit), first those a command of the plan names
    (an agent's command or args, a check, the integration test), then how many in all."""
    changed = _changed_files(loaded.repo_root)
    plan = loaded.plan
    skip = {loaded.path, loaded.path.with_suffix(".md")}  # the plan (or its Markdown source)
    for template in [plan.prompt_template, *(t.prompt_template for t in plan.teams)]:
        if template:
            skip.add((loaded.path.parent / template).absolute())
    files = {
        path: state
        for path, state in changed.items()
        if path != STATE_DIR_NAME  # the state folder, or a file in its place (damaged)
        and not path.startswith(f"{STATE_DIR_NAME}/")
        and (loaded.repo_root / path).absolute() not in skip
    }
    if not files:
        return []
    commands: list[tuple[str, str | Sequence[str]]] = []
    for name, users in agents_in_use(plan).items():
        config = plan.agent_config(name)
        label = f"agent {name!r} (used by {', '.join(users)})"
        if config.command:
            commands.append((f"{label}: its command", config.command))
        if config.args:
            commands.append((f"{label}: its args", config.args))
    for team in plan.teams:
        for check in team.checks:
            commands.append((f"team {team.id!r}: its check", check))
    test = plan.integration.test  # a shell string, or a list of commands like checks:
    for item in [test] if isinstance(test, str) else test or ():
        commands.append(("integration.test", item))
    warnings: list[str] = []
    for who, command in commands:
        for word in dict.fromkeys(_command_words(command)):
            state = files.get(word)
            if state == "untracked":
                warnings.append(
                    f"{who} names {word!r}, which is untracked: the teams' worktrees will not "
                    "have it (commit it first)"
                )
            elif state == "uncommitted":
                warnings.append(
                    f"{who} names {word!r}, which has uncommitted changes: the teams will see "
                    "its committed version"
                )
    names = sorted(files)
    shown = ", ".join(names[:_SHOWN_FILES])
    more = f" and {len(names) - _SHOWN_FILES} more" if len(names) > _SHOWN_FILES else ""
    warnings.append(
        f"{len(names)} uncommitted or untracked file(s) in {loaded.repo_root} will not be seen "
        f"by the teams, which start from a commit: {shown}{more} (commit or stash them first)"
    )
    return warnings
