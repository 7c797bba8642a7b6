"""The integration phase: merge the team branches, resolve, test, fix, bisect.

When no team can start any more, the engine calls :func:`integrate_run` (or
:func:`integrate` with explicit parts)::

    result = await integrate_run(ctx, partial=options.integrate_partial)
    if not result.ok: the run failed, result.reason says why (one line)

What it does, in order:

1. Decide what to integrate: every team must have succeeded, unless
   ``partial`` (``--integrate-partial`` / ``integration.partial``) says to
   integrate the teams that did and name the others (``left_out``).
2. ``worktree`` isolation: merge the team branches in dependency order into
   ``orchestrate/<run>/integration``, made from the base commit in its own
   worktree (``.orchestrate/worktrees/<run>/_integration``), one ``--no-ff``
   merge per team, remembering each merge commit (for bisection). ``shared``
   isolation: the run branch already holds every team's work; nothing is merged.
3. A conflict: with ``integration.resolver`` that agent runs in the worktree
   (``prompts/conflict.md.j2``: the files, both sides' teams and tasks); the
   files must hold no conflict marker afterwards and are committed as the
   merge. Otherwise integration fails naming each file and the teams on both sides.
4. The suite (``integration.test``: one command, or a list run in order) runs
   in the worktree under ``integration.timeout``, supervised like an agent: its
   output goes to ``logs/_integration.<n>.log`` and the ``_integration`` log
   stream. A failure with ``integration.fixer`` set: the fixer agent gets the
   output's tail (``prompts/fix.md.j2``), its change is committed, the suite
   runs again, up to ``integration.retries`` rounds.
5. Still failing, with ``integration.bisect``: the merge prefixes are tested
   by bisection (the worktree reset to each prefix's merge commit, then back)
   and the verdict names the team whose merge broke the suite.

The user's branches are never touched: everything happens in orchestrate's own
worktree. Progress and the final :class:`IntegrationResult` are written to the
store under the pseudo-team ``_integration`` (see :data:`STORE_NAME`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import anyio
import structlog

from orchestrator.agents.runner import LiveAgents
from orchestrator.errors import OrchestrateError
from orchestrator.gitops import Git, integration_branch, shared_branch, team_branch
from orchestrator.paths import INTEGRATION, SHARED_WORKTREE, StateLayout
from orchestrator.plan import graph
from orchestrator.plan.load import LoadedPlan
from orchestrator.run.integration.procs import TAIL_LINES, ProcessRunner, suite_commands
from orchestrator.run.runtypes import Notice, Notify
from orchestrator.state.integration import (
    STORE_NAME,
    AgentRecord,
    Bisection,
    Conflict,
    IntegrationResult,
    SuiteRun,
    load_result,
)
from orchestrator.state.status import IntegrationStatus, RunStatus, TeamStatus
from orchestrator.state.store import Store
from orchestrator.verify import command_text

if TYPE_CHECKING:
    from orchestrator.run.runtypes import RunContext

__all__ = [
    "INTEGRATION",
    "STORE_NAME",
    "AgentRecord",
    "Bisection",
    "Conflict",
    "IntegrationResult",
    "ProcessRunner",
    "SuiteRun",
    "integrate",
    "integrate_run",
    "load_result",
    "suite_commands",
]

log = structlog.get_logger("orchestrate.integration")


async def integrate_run(ctx: RunContext, *, partial: bool | None = None) -> IntegrationResult:
    """:func:`integrate` with the parts of the engine's run context."""
    return await integrate(
        ctx.loaded,
        store=ctx.store,
        layout=ctx.layout,
        run_id=ctx.run_id,
        epoch=ctx.epoch,
        base_commit=ctx.base_commit,
        succeeded=[t for t, r in ctx.results.items() if r.status is TeamStatus.SUCCEEDED],
        git=ctx.git,
        partial=partial,
        notify=ctx.notify,
        kill_grace=ctx.options.kill_grace,
        live=ctx.live,
    )


async def integrate(
    loaded: LoadedPlan,
    *,
    store: Store,
    layout: StateLayout,
    run_id: str,
    epoch: int,
    base_commit: str,
    succeeded: Collection[str],
    git: Git | None = None,
    partial: bool | None = None,
    notify: Notify | None = None,
    kill_grace: float = 5.0,
    live: LiveAgents | None = None,
) -> IntegrationResult:
    """Integrate the run's team branches (see the module docstring); never raises for a
    merge, test or agent failure: those are in the result. Store errors propagate."""
    phase = _Integration(
        loaded,
        store=store,
        layout=layout,
        run_id=run_id,
        epoch=epoch,
        base_commit=base_commit,
        git=git or Git(loaded.repo_root),
        notify=notify,
        kill_grace=kill_grace,
        live=live,
    )
    return await phase.run(succeeded, partial)


class _Integration:
    def __init__(
        self,
        loaded: LoadedPlan,
        *,
        store: Store,
        layout: StateLayout,
        run_id: str,
        epoch: int,
        base_commit: str,
        git: Git,
        notify: Notify | None,
        kill_grace: float,
        live: LiveAgents | None = None,
    ) -> None:
        self.loaded = loaded
        self.plan = loaded.plan
        self.cfg = loaded.plan.integration
        self.store = store
        self.run_id = run_id
        self.epoch = epoch
        self.git = git
        self._notify = notify
        self.shared = self.plan.isolation == "shared"
        if self.shared:
            self.worktree = layout.worktree(run_id, SHARED_WORKTREE)
            self.branch = shared_branch(run_id)
        else:
            self.worktree = layout.worktree(run_id, INTEGRATION)
            self.branch = integration_branch(run_id)
        self.procs = ProcessRunner(
            loaded,
            store=store,
            layout=layout,
            run_id=run_id,
            epoch=epoch,
            kill_grace=kill_grace,
            live=live,
        )
        self.result = IntegrationResult(
            status=IntegrationStatus.RUNNING,
            isolation=self.plan.isolation,
            branch=self.branch,
            worktree=str(self.worktree),
            base_commit=base_commit,
            started=time.time(),
        )

    # -- recording ----------------------------------------------------------------------

    def say(self, status: str, detail: str = "") -> None:
        log.info(detail, status=status)
        if self._notify is not None:
            self._notify(Notice(time.time(), None, status, detail))

    async def record(self, phase: str, line: str | None = None) -> None:
        """Write the phase and the result so far to the store (and a line to the log stream)."""
        self.result.phase = phase
        await self.store.update_attempt(
            self.run_id,
            STORE_NAME,
            0,
            {"phase": phase, "result": self.result.model_dump_json()},
            epoch=self.epoch,
        )
        if line:
            await self.store.append_log(self.run_id, STORE_NAME, 0, [line])

    async def finish(self, status: IntegrationStatus, reason: str | None) -> IntegrationResult:
        r = self.result
        r.status = status
        r.reason = reason
        r.finished = time.time()
        if not self.shared and status is not IntegrationStatus.SKIPPED:
            try:
                r.head = await self.git.head(self.worktree)
            except OrchestrateError:
                r.head = None
        await self.record("done", f"integration {status}" + (f": {reason}" if reason else ""))
        self.say(f"integration {status}", reason or f"branch {self.branch}")
        return r

    # -- the phase ----------------------------------------------------------------------

    async def run(self, succeeded: Collection[str], partial: bool | None) -> IntegrationResult:
        r = self.result
        order = graph.topo_order(self.plan)
        ok = [t for t in order if t in succeeded]
        r.left_out = [t for t in order if t not in succeeded]
        r.order = ok
        if partial is None:
            partial = self.cfg.partial
        if not ok:
            return await self.finish(
                IntegrationStatus.SKIPPED, "no team succeeded: nothing to integrate"
            )
        if r.left_out and not partial:
            return await self.finish(
                IntegrationStatus.SKIPPED,
                f"not every team succeeded ({', '.join(r.left_out)}); "
                "integrate the others with --integrate-partial",
            )
        await self.store.run_transition(
            self.run_id,
            RunStatus.INTEGRATING,
            epoch=self.epoch,
            fields={"integration_branch": self.branch},
            reason="integrating " + ", ".join(ok),
        )
        if r.left_out:
            self.say(RunStatus.INTEGRATING, f"{', '.join(ok)}; left out: {', '.join(r.left_out)}")
        else:
            self.say(RunStatus.INTEGRATING, ", ".join(ok))
        try:
            failure = await self.merge_all(ok)
            if failure is not None:
                return await self.finish(IntegrationStatus.FAILED, failure)
            failure = await self.test_and_fix()
        except OrchestrateError as exc:
            return await self.finish(IntegrationStatus.FAILED, str(exc))
        if failure is not None:
            return await self.finish(IntegrationStatus.FAILED, failure)
        return await self.finish(IntegrationStatus.SUCCEEDED, None)

    # -- merging ------------------------------------------------------------------------

    async def merge_all(self, teams: Sequence[str]) -> str | None:
        """Merge each team's branch in order; a failure's one-line description, or None."""
        r = self.result
        if self.shared:
            await self.git.add_worktree(self.worktree, self.branch, r.base_commit)
            r.merged = list(teams)
            await self.record("merged", "shared isolation: the run branch holds every team")
            return None
        await self.git.add_worktree(self.worktree, self.branch, r.base_commit)
        await self.git.abort_merge(self.worktree)  # a merge a crashed run left behind
        await self.record("merging")
        for team in teams:
            branch = team_branch(self.run_id, team)
            merged = await self.git.merge(
                self.worktree,
                [branch],
                message=f"orchestrate: integrate team {team} ({{branch}})",
                abort_on_conflict=False,
            )
            if not merged.ok:
                failure = await self.conflict(team, list(merged.conflicts))
                if failure is not None:
                    return failure
            r.merged.append(team)
            r.commits[team] = await self.git.head(self.worktree)
            await self.record("merging", f"merged {team}")
            self.say("merged", f"{team} into {self.branch}")
        return None

    async def _teams_touching(self, files: Sequence[str]) -> dict[str, list[str]]:
        """For each file, the teams already merged whose branch changed it."""
        changed: dict[str, set[str]] = {}
        for team in self.result.merged:
            branch = team_branch(self.run_id, team)
            changed[team] = set(await self.git.changed_between(self.result.base_commit, branch))
        return {f: [t for t in self.result.merged if f in changed[t]] for f in files}

    async def conflict(self, team: str, files: list[str]) -> str | None:
        others = await self._teams_touching(files)
        c = Conflict(team=team, files=files, others=others)
        self.result.conflicts.append(c)
        self.say("conflict", c.describe())
        await self.record("conflict", c.describe())
        resolver = self.cfg.resolver
        if resolver is None:
            await self.git.abort_merge(self.worktree)
            c.resolution = "unresolved: no integration.resolver"
            return f"merge conflict: {c.describe()} (no integration.resolver to resolve it)"
        prompt = self.procs.render(
            "conflict.md.j2",
            files=files,
            team=self.plan.team(team),
            others=[self.plan.team(t) for t in sorted({t for ts in others.values() for t in ts})],
            sides={f: others.get(f, []) for f in files},
            workdir=str(self.worktree),
            branch=self.branch,
        )
        self.say("resolving", f"{resolver} on {', '.join(files)}")
        before = await self.git.head(self.worktree)
        record = await self.procs.agent("resolver", resolver, self.worktree, prompt)
        self.result.agents.append(record)
        c.resolver_agent_id = record.agent_id
        left = await self.git.conflict_markers(self.worktree, files)
        if record.ok and not left:
            sha = await self.git.commit_all(
                self.worktree,
                f"orchestrate: integrate team {team}, conflicts resolved by agent "
                f"{record.agent_id}\n\nFiles: {', '.join(files)}\n",
            )
            if sha is None and await self.git.head(self.worktree) == before:
                record_reason = "the resolver left nothing to commit"
            else:
                c.resolved = True
                c.resolution = f"resolved by {resolver} (agent {record.agent_id})"
                await self.record("merging", f"conflict resolved by agent {record.agent_id}")
                self.say("resolved", f"{', '.join(files)} by agent {record.agent_id}")
                return None
        elif not record.ok:
            record_reason = f"the resolver failed: {record.reason}"
        else:
            record_reason = "conflict markers left in " + ", ".join(left)
        await self.git.abort_merge(self.worktree)
        c.resolution = f"unresolved: {record_reason}"
        return f"merge conflict: {c.describe()}; {record_reason}"

    # -- testing ------------------------------------------------------------------------

    async def run_suite(self, purpose: str, round_: int, prefix: list[str] | None) -> SuiteRun:
        commands = suite_commands(self.cfg.test)
        deadline = time.monotonic() + self.cfg.timeout
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        run = SuiteRun(
            purpose=purpose, round=round_, prefix=prefix, passed=True, started=time.time()
        )
        for command in commands:
            left = max(0.1, deadline - time.monotonic())
            proc = await self.procs.command(command, self.worktree, limit=left, tail=tail)
            run.logs.append(proc.log)
            if not proc.ok:
                run.passed = False
                run.failed_command = proc.command
                run.exit_code = proc.exit_code
                run.reason = proc.reason
                break
        run.finished = time.time()
        run.tail = "\n".join(tail) if not run.passed else ""
        self.result.suite.append(run)
        return run

    async def test_and_fix(self) -> str | None:
        r = self.result
        if not suite_commands(self.cfg.test):
            await self.record("tested", "no integration.test: nothing to run")
            return None
        await self.record("testing")
        self.say("testing", " && ".join(command_text(c) for c in suite_commands(self.cfg.test)))
        run = await self.run_suite("integration", 0, None)
        rounds = 0
        while not run.passed and self.cfg.fixer is not None and rounds < self.cfg.retries:
            rounds += 1
            failed = f"the suite failed ({run.reason}); fixer round {rounds}"
            self.say(IntegrationStatus.FAILED, failed)
            await self.record("fixing", f"suite failed: {run.reason}; fixer round {rounds}")
            changed = await self.fix(run, rounds)
            if changed:
                run = await self.run_suite("integration", rounds, None)
        r.test_passed = run.passed
        if run.passed:
            await self.record("tested", "the suite passed")
            self.say(
                "passed", "the test suite passed" + (f" after {rounds} fix(es)" if rounds else "")
            )
            return None
        failure = f"the test suite failed: {run.reason}"
        if self.cfg.fixer is not None and rounds:
            failure += f" (after {rounds} fixer round{'s' if rounds > 1 else ''})"
        if self.cfg.bisect and not self.shared and r.merged:
            await self.record("bisecting", "bisecting the merges")
            verdict = await self.bisect()
            failure += f"; {verdict.verdict}"
        return failure

    async def fix(self, run: SuiteRun, round_: int) -> bool:
        """Run the fixer once; True when it changed something (committed)."""
        fixer = self.cfg.fixer
        assert fixer is not None
        prompt = self.procs.render(
            "fix.md.j2",
            commands=suite_commands(self.cfg.test),
            failed_command=run.failed_command,
            reason=run.reason,
            output_tail=run.tail,
            teams=[self.plan.team(t) for t in self.result.merged],
            left_out=self.result.left_out,
            round=round_,
            rounds=self.cfg.retries,
            workdir=str(self.worktree),
            branch=self.branch,
        )
        before = await self.git.head(self.worktree)
        record = await self.procs.agent("fixer", fixer, self.worktree, prompt)
        self.result.agents.append(record)
        sha = await self.git.commit_all(
            self.worktree,
            f"orchestrate: integration fix by agent {record.agent_id} (round {round_})\n",
        )
        changed = sha is not None or await self.git.head(self.worktree) != before
        if not changed:
            self.say("fixer", f"agent {record.agent_id} changed nothing ({record.reason or 'ok'})")
        return changed

    async def bisect(self) -> Bisection:
        """Find the first merge prefix that fails; the worktree ends where it started."""
        r = self.result
        teams = list(r.merged)
        commits = [r.base_commit] + [r.commits[t] for t in teams]
        tip = await self.git.head(self.worktree)
        tested: dict[int, bool] = {}
        lo, hi = -1, len(teams)  # prefix lo passes (virtually for -1), prefix hi fails
        try:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                await self.git.reset_hard(self.worktree, commits[mid])
                self.say("bisecting", "with " + (", ".join(teams[:mid]) or "no team merged"))
                run = await self.run_suite("bisect", 0, teams[:mid])
                tested[mid] = run.passed
                if run.passed:
                    lo = mid
                else:
                    hi = mid
        finally:
            with anyio.CancelScope(shield=True):
                await self.git.reset_hard(self.worktree, tip)
        if hi == 0:
            verdict = "the suite fails on the base commit already, before any team is merged"
            culprit = None
        elif lo == -1 or hi - lo != 1:  # pragma: no cover - the loop ends with hi == lo + 1
            verdict, culprit = "bisection found no culprit", None
        else:
            culprit = teams[hi - 1]
            good = teams[: hi - 1]
            if good:
                verdict = f"the suite passes with {_join(good)} and fails once {culprit} is merged"
            else:
                verdict = f"the suite passes on the base and fails once {culprit} is merged"
        b = Bisection(passes_with=teams[: max(hi - 1, 0)], culprit=culprit, verdict=verdict,
                      tested={str(k): v for k, v in sorted(tested.items())})  # fmt: skip
        r.bisection = b
        await self.record("bisected", verdict)
        self.say("bisected", verdict)
        return b


def _join(items: Sequence[str]) -> str:
    return ", ".join(items)
