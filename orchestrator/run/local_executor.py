"""The default executor: attempts run on this machine, in the orchestrator's process.

:class:`LocalExecutor` does each :class:`~orchestrator.run.executor.AttemptRequest`
with an :class:`~orchestrator.run.attempt.Attempt` in the caller's task, so a
cancelled caller stops (or, when the hooks say so, detaches from) its agent.
The agents themselves run under supervisors in sessions of their own and
outlive the orchestrator; a resume re-attaches to them through the request's
``attach``.

Idempotent per key ``(run, team, attempt)``: a request for a key that is
running waits for it and gets the same outcome (no second agent); a request
for a key that ended gets its outcome again. A key whose attempt was
abandoned (cancelled, or failed with an error) may be asked for again.
Across orchestrator processes the scheduler never asks for an attempt that
was started before without its ``attach`` record: a resume reconciles each
team from the store first (:mod:`orchestrator.run.resume`), so a crashed
orchestrator's agent is followed, never started again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import anyio

from orchestrator.agents.runner import run_secrets
from orchestrator.errors import AgentError
from orchestrator.run.attempt import Attempt, RunSite
from orchestrator.run.executor import AttemptHooks, AttemptKey, AttemptOutcome, AttemptRequest

if TYPE_CHECKING:
    from orchestrator.run.runtypes import RunContext


@dataclass
class _Slot:
    done: anyio.Event = field(default_factory=anyio.Event)
    outcome: AttemptOutcome | None = None


class LocalExecutor:
    """Runs attempts on this machine (see the module docstring)."""

    name = "local"

    def __init__(self, site: RunSite) -> None:
        self.site = site
        self._slots: dict[AttemptKey, _Slot] = {}
        self.started = 0
        """Attempts this executor began (not those it attached a second caller to)."""

    @classmethod
    async def for_run(cls, ctx: RunContext) -> LocalExecutor:
        """The executor of ``ctx``'s run; makes the run's worktree in ``shared`` isolation."""
        site = RunSite(
            run_id=ctx.run_id,
            loaded=ctx.loaded,
            store=ctx.store,
            layout=ctx.layout,
            git=ctx.git,
            kill_grace=ctx.options.kill_grace,
            live=ctx.live,
            shared_worktree=ctx.shared_worktree,
            shared_branch=ctx.shared_branch,
            secrets=run_secrets(ctx.store.secrets),
        )
        if site.shared_worktree is not None and site.shared_branch is not None:
            await site.git.add_worktree(site.shared_worktree, site.shared_branch, ctx.base_commit)
        return cls(site)

    async def run_attempt(self, request: AttemptRequest, hooks: AttemptHooks) -> AttemptOutcome:
        key = request.key
        slot = self._slots.get(key)
        if slot is not None:  # running or done: never a second agent
            await slot.done.wait()
            if slot.outcome is None:
                raise AgentError(
                    f"attempt {request.attempt} of team {request.team_id} ended without an outcome"
                )
            return slot.outcome
        slot = self._slots[key] = _Slot()
        self.started += 1
        try:
            slot.outcome = await Attempt(self.site, request, hooks).run()
            return slot.outcome
        finally:
            if slot.outcome is None:  # abandoned: a later request may run it again
                del self._slots[key]
            slot.done.set()

    async def aclose(self) -> None:
        """Forget the outcomes kept for repeated requests (safe twice)."""
        self._slots.clear()
