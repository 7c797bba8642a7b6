"""The generic ``command`` kind: run any program as the agent.

``command:`` is either a list (an argv, run without a shell) or a string (run
with ``/bin/sh -c``). In each element the placeholders ``{prompt_file}``,
``{workdir}``, ``{team}``, ``{attempt}``, ``{agent_id}`` are replaced; in a
shell string they are replaced already quoted for the shell, so write them
bare: ``my-agent --prompt {prompt_file}``. Other braces are left alone. The
agent's ``args:`` are appended (quoted, for a string). Every output line is a
``text`` event; the attempt succeeds when the program exits 0 in time.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import ClassVar

from orchestrator.agents.base import AgentAdapter, AgentContext
from orchestrator.errors import AgentError
from orchestrator.plan.models import AgentConfig

SHELL = "/bin/sh"


def placeholders(ctx: AgentContext) -> dict[str, str]:
    """The values of ``{prompt_file}``, ``{workdir}``, ``{team}``, ``{attempt}``, ``{agent_id}``."""
    return {
        "prompt_file": str(ctx.prompt_file),
        "workdir": str(ctx.workdir),
        "team": ctx.team_id,
        "attempt": str(ctx.attempt),
        "agent_id": ctx.agent_id,
    }


def substitute(text: str, values: Mapping[str, str], *, quote: bool = False) -> str:
    """Replace each ``{name}`` of ``values`` in ``text``; other braces stay as they are.

    One pass over ``text``: a value is never searched for placeholders again, so a
    worktree path that contains ``{workdir}`` (or ``{prompt_file}``) stays as it is.
    """
    if not values:
        return text
    pattern = re.compile("|".join(re.escape("{" + name + "}") for name in values))

    def value(match: re.Match[str]) -> str:
        found = values[match.group()[1:-1]]
        return shlex.quote(found) if quote else found

    return pattern.sub(value, text)


class CommandAdapter(AgentAdapter):
    """Any program; success is exit code 0."""

    kind: ClassVar[str] = "command"
    default_command: ClassVar[str] = SHELL

    def argv(self, ctx: AgentContext) -> list[str]:
        command = ctx.config.command
        values = placeholders(ctx)
        if command is None or not command:
            raise AgentError(f"team {ctx.team_id}: an agent of kind 'command' needs a command:")
        if isinstance(command, str):
            script = substitute(command, values, quote=True)
            if ctx.config.args:
                script += " " + shlex.join(substitute(a, values) for a in ctx.config.args)
            return [SHELL, "-c", script]
        return [substitute(part, values) for part in (*command, *ctx.config.args)]

    def executable(self, config: AgentConfig) -> str:
        command = config.command
        if isinstance(command, str) or not command:
            return SHELL  # what the shell then runs is only known inside the worktree
        return command[0]


Adapter = CommandAdapter
