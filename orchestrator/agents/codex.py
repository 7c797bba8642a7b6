"""The ``codex`` kind: OpenAI's Codex CLI, ``codex exec``.

Command line (checked against Codex 0.169.0)::

    codex exec --json --skip-git-repo-check -C WORKTREE -s workspace-write
               [-m M] [ARGS...] [resume SESSION] -  < PROMPT_FILE

The prompt ``-`` means: read it from stdin, which is the prompt file (never the
command line); stdin is never left open (Codex would wait on it).
``ARGS`` is the place for ``-c key=value`` overrides such as a model
provider; they go before ``resume`` because that subcommand takes few flags.
The JSON lines: ``thread.started`` (the thread id, which ``resume`` takes),
``item.completed`` items (``command_execution``, ``file_change``,
``agent_message``, ``mcp_tool_call``, ``web_search``, ``error`` warnings),
``turn.completed`` with usage, ``turn.failed`` / ``error`` on an API failure
(exit 1). Codex reports no cost. The last ``agent_message`` is the result.
"""

from __future__ import annotations

from typing import Any, ClassVar

from orchestrator.agents._jsonl import as_int, error_event, load, obj, tool_line
from orchestrator.agents.base import AgentAdapter, AgentContext, AgentEvent


class CodexAdapter(AgentAdapter):
    """Codex: ``exec --json`` in a workspace-write sandbox rooted at the worktree."""

    kind: ClassVar[str] = "codex"
    default_command: ClassVar[str] = "codex"
    sandbox: ClassVar[str] = "workspace-write"
    prompt_on_stdin: ClassVar[bool] = True

    def argv(self, ctx: AgentContext) -> list[str]:
        argv = [
            *self.base_argv(ctx.config),
            "exec",
            "--json",
            "--skip-git-repo-check",
            "-C",
            str(ctx.workdir),
            *self._sandbox_args(ctx.config.args),
            *self.model_args(ctx, "-m"),
            *ctx.config.args,
        ]
        if ctx.resume_session_id:
            argv += ["resume", ctx.resume_session_id]
        return [*argv, "-"]  # the prompt: read from stdin

    def _sandbox_args(self, args: tuple[str, ...]) -> list[str]:
        """``-s workspace-write`` unless the agent's args choose (Codex refuses ``-s`` twice)."""
        own = ("-s", "--sandbox", "--dangerously-bypass-approvals-and-sandbox")
        if any(a in own or a.startswith("--sandbox=") for a in args):
            return []
        return ["-s", self.sandbox]

    def parse(self, line: str) -> list[AgentEvent]:
        data = load(line)
        if data is None:
            return super().parse(line)
        kind = data.get("type")
        if kind == "thread.started":
            thread = data.get("thread_id")
            return [
                AgentEvent(type="session", session_id=thread if isinstance(thread, str) else None)
            ]
        if kind == "item.completed":
            item = data.get("item")
            return _item(item) if isinstance(item, dict) else []
        if kind == "turn.completed":
            usage = obj(data.get("usage"))
            return [
                AgentEvent(
                    type="usage",
                    input_tokens=as_int(usage.get("input_tokens")),
                    output_tokens=as_int(usage.get("output_tokens")),
                    cache_tokens=as_int(usage.get("cached_input_tokens")),
                )
            ]
        if kind == "turn.failed":
            error = obj(data.get("error"))
            text = str(error.get("message") or "the turn failed")
            return [error_event(text), AgentEvent(type="result", text=text, is_error=True)]
        if kind == "error":
            # Reconnect notices and the message turn.failed repeats: log, don't judge.
            return [AgentEvent(type="message", text=f"error: {data.get('message', '')}")]
        return []  # turn.started, item.started, item.updated


def _item(item: dict[str, Any]) -> list[AgentEvent]:
    kind = item.get("type")
    if kind == "agent_message":
        text = str(item.get("text") or "")
        # Stateless parsing: every agent message may be the last one; the
        # judgement keeps the last result, which is the final answer.
        return [AgentEvent(type="result", text=text)] if text.strip() else []
    if kind == "command_execution":
        line = tool_line("Bash", {"command": _unwrap(str(item.get("command") or ""))})
        code = item.get("exit_code")
        if isinstance(code, int) and code != 0:
            line += f"  (exit {code})"
        return [AgentEvent(type="tool", text=line)]
    if kind == "file_change":
        changes = item.get("changes") or []
        paths = [
            f"{c.get('kind', 'edit')} {c.get('path', '')}" for c in changes if isinstance(c, dict)
        ]
        return [AgentEvent(type="tool", text=tool_line("Edit", ", ".join(paths)))]
    if kind == "mcp_tool_call":
        name = f"{item.get('server', 'mcp')}.{item.get('tool', 'tool')}"
        return [AgentEvent(type="tool", text=tool_line(name, item.get("arguments")))]
    if kind == "web_search":
        return [AgentEvent(type="tool", text=tool_line("WebSearch", str(item.get("query") or "")))]
    if kind == "error":
        return [AgentEvent(type="message", text=f"warning: {item.get('message', '')}")]
    return []  # reasoning, todo_list


def _unwrap(command: str) -> str:
    """``/bin/bash -lc "npm test"`` -> ``npm test``: show what the model asked to run."""
    for prefix in ("/bin/bash -lc ", "bash -lc ", "/bin/sh -c ", "sh -c ", "/bin/zsh -lc "):
        if command.startswith(prefix):
            inner = command[len(prefix) :].strip()
            if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "\"'":
                inner = inner[1:-1]
            return inner
    return command


Adapter = CodexAdapter
