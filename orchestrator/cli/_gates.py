"""Commands: ``orchestrate approve RUN TEAM`` and ``orchestrate reject RUN TEAM --reason``.

A team with ``approval: true`` waits, once it has succeeded, for one of these.
The decision (who, when, the note or reason) is written atomically to the
run's state, with its event; the orchestrator running the run picks it up at
once, and a run nobody is running picks it up at ``orchestrate resume``.

Exit codes: 0 decided; 2 bad usage (unknown run or team, a team that is not
waiting for approval or was decided already, a rejection without a reason);
1 the state store could not be reached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli import app
from orchestrator.cli._common import RedisUrlOpt, StateDirOpt

if TYPE_CHECKING:
    from orchestrator.state.gates import Decision, GateState
    from orchestrator.state.store import Store

RunArg = Annotated[str, typer.Argument(help="The run id.", metavar="RUN", show_default=False)]
TeamArg = Annotated[
    str, typer.Argument(help="The team waiting for approval.", metavar="TEAM", show_default=False)
]


def _decide(
    run_id: str,
    team: str,
    decision: Decision,
    text: str,
    state_dir: object,
    redis_url: str | None,
) -> tuple[GateState, str | None]:
    """Record the decision; returns the gate and who holds the run live (host pid), if anyone."""
    from pathlib import Path

    from orchestrator.cli._resume import _where
    from orchestrator.errors import UsageError
    from orchestrator.state.gates import decide, decider
    from orchestrator.state.keys import check_name
    from orchestrator.state.lease import live_holder
    from orchestrator.state.store import run_with_store

    check_name("run", run_id)
    check_name("team", team)
    settings, layout = _where(state_dir if isinstance(state_dir, Path) else None, redis_url)

    async def go(store: Store) -> tuple[GateState, str | None]:
        run = await store.get_run(run_id)
        if team not in run.team_ids:
            shown = ", ".join(run.team_ids[:20])
            raise UsageError(f"no team {team!r} in run {run_id} (its teams: {shown})")
        gate = await decide(store, run_id, team, decision, by=decider(), text=text)
        holder = await live_holder(store, run_id)
        live = f"pid {holder.pid} on {holder.host}" if holder is not None else None
        return gate, live

    return run_with_store(settings, layout, go)


def _next_step(run_id: str, live: str | None, waiting: str) -> str:
    if live is not None:
        return f"the orchestrator running {run_id} ({live}) {waiting} now"
    return f"no orchestrator is running {run_id}: `orchestrate resume {run_id}` continues it"


@app.command()
def approve(
    run_id: RunArg,
    team: TeamArg,
    note: Annotated[
        str, typer.Option("--note", help="A note kept with the approval (events, report).")
    ] = "",
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """Approve a team waiting for approval: the teams that depend on it may start."""
    from orchestrator.cli._run import _echo
    from orchestrator.state.gates import Decision

    gate, live = _decide(run_id, team, Decision.APPROVE, note, state_dir, redis_url)
    said = f": {gate.note}" if gate.note else ""
    _echo(f"approved {team} (attempt {gate.attempt}) of run {run_id} as {gate.by}{said}")
    _echo(_next_step(run_id, live, "starts the teams that depend on it"))


@app.command()
def reject(
    run_id: RunArg,
    team: TeamArg,
    reason: Annotated[
        str,
        typer.Option(
            "--reason", help="What is wrong: the feedback of the team's next attempt (required)."
        ),
    ] = "",
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """Reject a team waiting for approval: it gets another attempt with the reason as
    feedback, or fails when its retries are spent."""
    from orchestrator.cli._run import _echo
    from orchestrator.state.gates import Decision

    gate, live = _decide(run_id, team, Decision.REJECT, reason, state_dir, redis_url)
    _echo(f"rejected {team} (attempt {gate.attempt}) of run {run_id} as {gate.by}: {gate.reason}")
    _echo(_next_step(run_id, live, "sends it back with your reason"))
