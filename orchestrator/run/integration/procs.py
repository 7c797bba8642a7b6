"""The integration phase's processes (see :mod:`orchestrator.run.integration.phase`).

:class:`ProcessRunner` starts the suite's commands and the resolver/fixer
agents under the supervisor, numbered ``_integration.<n>`` (log file, prompt
file, log stream, one attempt record each). What the phase did is recorded in
the records of :mod:`orchestrator.state.integration` (re-exported here).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.agents.base import exit_reason
from orchestrator.agents.process import AgentProcess, Launch, Outcome
from orchestrator.agents.runner import AgentJob, LiveAgents, run_agent, run_secrets
from orchestrator.envs import work_env
from orchestrator.errors import OrchestrateError
from orchestrator.paths import INTEGRATION, StateLayout
from orchestrator.plan.load import LoadedPlan
from orchestrator.state.integration import (
    STORE_NAME,
    AgentRecord,
    Bisection,
    Conflict,
    IntegrationResult,
    SuiteRun,
)
from orchestrator.state.status import IntegrationStatus
from orchestrator.state.store import Store, new_agent_id
from orchestrator.verify import command_text

__all__ = [
    "STORE_NAME",
    "TAIL_LINES",
    "AgentRecord",
    "Bisection",
    "CommandResult",
    "Conflict",
    "IntegrationResult",
    "ProcessRunner",
    "SuiteRun",
    "suite_commands",
]

TAIL_LINES = 80
"""Lines of a failing suite's output kept for the fixer and the report."""

def suite_commands(test: object) -> list[str | tuple[str, ...]]:
    """``integration.test`` as a list of commands.

    A string is one shell command; a list is a list of commands, like ``checks:``
    (each a shell string or an argv list).
    """
    if test is None:
        return []
    if isinstance(test, str):
        return [test]
    out: list[str | tuple[str, ...]] = []
    for item in test if isinstance(test, tuple | list) else ():
        out.append(item if isinstance(item, str) else tuple(str(a) for a in item))
    return out


# -- running processes: the suite's commands and the resolver/fixer agents --------------------


@dataclass(frozen=True)
class CommandResult:
    """One command of the test suite, run."""

    command: str
    ok: bool
    exit_code: int | None
    reason: str | None
    log: str


class ProcessRunner:
    """Runs the integration's processes under the supervisor, numbered ``_integration.<n>``.

    Output goes to ``logs/_integration.<n>.log`` and the integration's log stream;
    each process is recorded as attempt ``n`` of the integration in the store.
    """

    def __init__(
        self,
        loaded: LoadedPlan,
        *,
        store: Store,
        layout: StateLayout,
        run_id: str,
        epoch: int,
        kill_grace: float,
        live: LiveAgents | None = None,
    ) -> None:
        self.live = live
        self.loaded = loaded
        self.plan = loaded.plan
        self.store = store
        self.layout = layout
        self.run_id = run_id
        self.epoch = epoch
        self.kill_grace = kill_grace
        self.n = _last_number(layout.logs_dir(run_id))

    def render(self, template: str, **variables: Any) -> str:
        """A bundled prompt template with the run's variables."""
        from orchestrator.agents.prompts import render_template

        return render_template(template, {"run_id": self.run_id, "plan": self.plan, **variables})

    def _next(self) -> int:
        self.n += 1
        return self.n

    async def _record(self, n: int, fields: dict[str, str]) -> None:
        await self.store.update_attempt(
            self.run_id, STORE_NAME, n, {"attempt": str(n), **fields}, epoch=self.epoch
        )

    async def _supervise(
        self,
        n: int,
        argv: Sequence[str],
        workdir: Path,
        env: dict[str, str],
        *,
        limit: float,
        stall_timeout: float | None,
        on_line: Callable[[str], list[str]],
    ) -> Outcome:
        layout = self.layout
        launch = Launch(
            argv=list(argv),
            cwd=workdir,
            env=env,
            log=layout.log_file(self.run_id, INTEGRATION, n),
            status=layout.status_file(self.run_id, INTEGRATION, n),
            secrets=self.store.secrets,
        )

        async def on_lines(lines: list[str]) -> None:
            shown = [s for line in lines for s in on_line(line)]
            await self.store.append_log(self.run_id, STORE_NAME, n, shown)

        proc = await AgentProcess.start(launch)
        with contextlib.ExitStack() as stack:
            if self.live is not None:
                stack.enter_context(self.live.track(proc))
            async with proc:
                await self._record(n, {"pid": str(proc.pid)})
                return await proc.run(
                    timeout=limit,
                    stall_timeout=stall_timeout,
                    on_lines=on_lines,
                    grace=self.kill_grace,
                )

    def _env(self, layers: Sequence[Mapping[str, str]] = ()) -> dict[str, str]:
        """The work environment (the agents' without ``ORCHESTRATE_*``): the suite's."""
        return work_env(allow=self.plan.env_allow, layers=[self.plan.env, *layers])

    async def command(
        self, command: str | tuple[str, ...], workdir: Path, *, limit: float, tail: deque[str]
    ) -> CommandResult:
        """One command of the test suite; its output's end is added to ``tail``."""
        n = self._next()
        text = command_text(command)
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
        log_path = str(self.layout.log_file(self.run_id, INTEGRATION, n))
        started = time.time()
        await self._record(
            n, {"role": "test", "command": text, "started": repr(started), "log": log_path}
        )

        def keep(line: str) -> list[str]:
            tail.append(line)
            return [line]

        try:
            outcome = await self._supervise(
                n,
                argv,
                workdir,
                self._env(),
                limit=limit,
                stall_timeout=None,
                on_line=keep,
            )
        except OrchestrateError as exc:
            reason: str | None = f"`{text}` could not run: {exc}"
            await self._record(n, {"finished": repr(time.time()), "reason": reason or ""})
            return CommandResult(text, False, None, reason, log_path)
        reason = exit_reason(outcome)
        if reason is not None:
            reason = f"`{text}` {reason}"
        await self._record(
            n,
            {
                "finished": repr(time.time()),
                "exit_code": "" if outcome.exit_code is None else str(outcome.exit_code),
                "reason": reason or "",
                "status": IntegrationStatus.SUCCEEDED if outcome.ok else IntegrationStatus.FAILED,
            },
        )
        return CommandResult(text, outcome.ok, outcome.exit_code, reason, log_path)

    async def agent(self, role: str, agent_name: str, workdir: Path, prompt: str) -> AgentRecord:
        """Run the resolver or fixer agent once in ``workdir`` with ``prompt``."""
        n = self._next()
        agent_id = new_agent_id()
        config = self.plan.agent_config(agent_name)
        prompt_file = self.layout.prompt_file(self.run_id, INTEGRATION, n)
        log_path = self.layout.log_file(self.run_id, INTEGRATION, n)
        started = time.time()
        record = AgentRecord(
            role=role, agent=agent_name, agent_id=agent_id, n=n, started=started,
            finished=started, log=str(log_path),
        )  # fmt: skip
        await self._record(
            n,
            {"role": role, "agent": agent_name, "agent_id": agent_id, "started": repr(started),
             "log": str(log_path), "prompt_file": str(prompt_file)},
        )  # fmt: skip
        job = AgentJob(
            config=config, team_id=INTEGRATION, attempt=n, agent_id=agent_id, workdir=workdir,
            prompt=prompt, prompt_file=prompt_file, log=log_path,
            status=self.layout.status_file(self.run_id, INTEGRATION, n),
            env=self._env([config.env]),
            orchestrate={
                "ORCHESTRATE_RUN": self.run_id, "ORCHESTRATE_TEAM": INTEGRATION,
                "ORCHESTRATE_AGENT_ID": agent_id, "ORCHESTRATE_ATTEMPT": str(n),
                "ORCHESTRATE_PROMPT_FILE": str(prompt_file), "ORCHESTRATE_ROLE": role,
            },
            secrets=run_secrets(self.store.secrets), run_id=self.run_id,
        )  # fmt: skip

        async def launched(proc: AgentProcess) -> None:
            await self._record(n, {"pid": str(proc.pid)})

        async def lines(shown: list[str], _session: str | None) -> None:
            await self.store.append_log(self.run_id, STORE_NAME, n, shown)

        try:
            ran = await run_agent(
                job, timeout=self.plan.defaults.timeout,
                stall_timeout=self.plan.defaults.stall_timeout, grace=self.kill_grace,
                on_started=launched, on_lines=lines, tail_lines=TAIL_LINES, live=self.live,
            )  # fmt: skip
            outcome, verdict = ran.outcome, ran.verdict
        except OrchestrateError as exc:
            record = record.model_copy(update={"finished": time.time(), "reason": str(exc)})
            await self._record(
                n,
                {
                    "finished": repr(record.finished),
                    "reason": str(exc),
                    "status": IntegrationStatus.FAILED,
                },
            )
            return record
        record = record.model_copy(
            update={
                "finished": time.time(),
                "exit_code": outcome.exit_code,
                "ok": verdict.success,
                "reason": verdict.reason,
                "input_tokens": verdict.input_tokens,
                "output_tokens": verdict.output_tokens,
                "cost_usd": verdict.cost_usd or 0.0,
            }
        )
        await self._record(
            n,
            {
                "finished": repr(record.finished),
                "exit_code": "" if outcome.exit_code is None else str(outcome.exit_code),
                "reason": verdict.reason or "",
                "status": (
                    IntegrationStatus.SUCCEEDED if verdict.success else IntegrationStatus.FAILED
                ),
            },
        )
        usage = ran.usage
        if usage.tokens or usage.cost_usd:
            await self.store.add_usage(self.run_id, STORE_NAME, usage, epoch=self.epoch, attempt=n)
        return record


def _last_number(logs: Path) -> int:
    """The highest ``_integration.<n>.log`` already there (a resumed run goes on counting)."""
    best = 0
    for path in logs.glob(f"{INTEGRATION}.*.log") if logs.is_dir() else ():
        number = path.name[len(INTEGRATION) + 1 : -len(".log")]
        if number.isdigit():
            best = max(best, int(number))
    return best
