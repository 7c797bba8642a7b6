"""Commands: ``orchestrate resume [RUN]`` and ``orchestrate cancel [RUN]``.

Exit codes of ``resume`` are those of ``run``: 0 every team succeeded (and the
suite passed), 1 the run failed or another live orchestrator holds it, 2 bad
usage (an unknown run, a ``--plan`` that changes teams already done), 130
interrupted or cancelled.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli import app
from orchestrator.cli._common import RedisUrlOpt, StateDirOpt
from orchestrator.cli._run import ExecutorOpt, RayAddressOpt

if TYPE_CHECKING:
    from orchestrator.paths import StateLayout
    from orchestrator.settings import Settings

RunArg = Annotated[
    str | None,
    typer.Argument(help="The run id (default: the newest run).", metavar="RUN", show_default=False),
]


def _where(state_dir: Path | None, redis_url: str | None) -> tuple[Settings, StateLayout]:
    from orchestrator.cli._common import load_settings
    from orchestrator.errors import UsageError
    from orchestrator.paths import StateLayout, find_state_dir

    settings = load_settings(state_dir=state_dir, redis_url=redis_url)
    root = settings.state_dir or find_state_dir()
    if root is not None:
        StateLayout(root).check()  # a damaged state folder: one line, before anything starts
    if root is None or not root.is_dir():
        raise UsageError(
            "no .orchestrate state folder here or above; run this in the plan's repository "
            "or pass --state-dir"
        )
    return settings, StateLayout(root.absolute())


@app.command()
def resume(
    run_id: RunArg = None,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Give failed teams fresh attempts (and unblock)."),
    ] = False,
    plan: Annotated[
        Path | None,
        typer.Option(
            "--plan", help="Accept this edited plan (teams already done must be unchanged)."
        ),
    ] = None,
    max_parallel: Annotated[
        int | None,
        typer.Option("--max-parallel", min=1, max=256, help="Agents at once (overrides the plan)."),
    ] = None,
    backoff: Annotated[
        float,
        typer.Option("--backoff", min=0.0, max=600.0, help="Seconds before the first retry."),
    ] = 2.0,
    integrate_partial: Annotated[
        bool,
        typer.Option("--integrate-partial", help="Integrate the teams that succeeded anyway."),
    ] = False,
    budget_usd: Annotated[
        float | None,
        typer.Option(
            "--budget-usd", min=0.0, help="Raise the run's budget to this many dollars first."
        ),
    ] = None,
    budget_tokens: Annotated[
        int | None,
        typer.Option("--budget-tokens", min=1, help="Raise the run's token budget first."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug log on stderr.")] = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """Finish a run after a crash: re-attach running agents, redo what was cut short.

    A run paused for approval goes on with the decisions taken meanwhile; one paused
    because its budget is spent goes on with --budget-usd / --budget-tokens.

    Teams that succeeded are kept; running agents are followed again; failed
    teams stay failed unless --retry-failed. Exit codes as `run`.
    """
    import dataclasses

    from orchestrator.cli._run import (
        OnStarted,
        Output,
        _configure_logging,
        _echo,
        _summary,
        engine_options,
        executor_of,
        join_cluster,
        state_hint,
        terminal_console,
    )
    from orchestrator.run.engine import RunResult
    from orchestrator.run.resume import resume_run
    from orchestrator.state.store import Store

    _configure_logging(verbose)
    settings, layout = _where(state_dir, redis_url)
    options = engine_options(
        max_parallel=max_parallel, backoff=backoff, integrate_partial=integrate_partial
    )
    out = Output(terminal_console(), 12)

    async def go(store: Store, on_started: OnStarted | None) -> RunResult:
        rid = await store.resolve_run(run_id)
        meta = (await store.get_run(rid)).meta  # the run's executor and cluster, unless overridden
        chosen = executor_of(executor, meta.get("executor"))
        address = join_cluster(chosen, ray_address or meta.get("ray_address"))
        return await resume_run(
            rid,
            store=store,
            layout=layout,
            options=dataclasses.replace(options, executor=chosen, ray_address=address),
            notify=out.notice,
            retry_failed=retry_failed,
            plan_file=plan,
            on_started=on_started,
            budget_usd=budget_usd,
            budget_tokens=budget_tokens,
        )

    result = out.run(settings, layout, go)
    if result.teams:
        for line in _summary(result, layout.report_file(result.run_id, "html"), state_hint(layout)):
            _echo(line)
    raise typer.Exit(result.exit_code)


@app.command()
def cancel(
    run_id: RunArg = None,
    grace: Annotated[
        float,
        typer.Option("--grace", min=0.0, max=300.0, help="Seconds between SIGTERM and SIGKILL."),
    ] = 5.0,
    ray_address: RayAddressOpt = None,
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """Cancel a run: stop its agents (whole process groups) and mark it cancelled.

    A live orchestrator of the run notices and stops. `orchestrate resume`
    continues a cancelled run. A run of the ray executor has its agents stopped
    on their hosts (its cluster, or --ray-address).
    """
    import anyio

    from orchestrator.cli._run import _echo
    from orchestrator.run.resume import Cancelled, cancel_run
    from orchestrator.state.lease import live_holder
    from orchestrator.state.status import RunStatus
    from orchestrator.state.store import open_store

    settings, layout = _where(state_dir, redis_url)

    async def main() -> Cancelled:
        async with open_store(settings, layout) as store:
            rid = await store.resolve_run(run_id)
            meta = (await store.get_run(rid)).meta
            if meta.get("executor") == "ray" and await live_holder(store, rid) is None:
                # Its agents run on the cluster's hosts and no orchestrator is there to stop
                # them (a live one stops them itself once the run is marked): stop them there.
                from orchestrator.run.ray_executor import (
                    connect_cluster,
                    running_on_hosts,
                    stop_on_hosts,
                )

                address = connect_cluster(ray_address or meta.get("ray_address") or "auto")
                on_hosts[:] = [
                    await stop_on_hosts(address, await running_on_hosts(store, rid), rid)
                ]
            return await cancel_run(rid, store=store, grace=grace)

    on_hosts: list[int] = []
    done = anyio.run(main)
    if done.status is RunStatus.SUCCEEDED:
        _echo(f"run {done.run_id} already succeeded; nothing to cancel")
        return
    if on_hosts:
        _echo(f"{on_hosts[0]} agent(s) stopped on their hosts")
    teams = f"; teams cancelled: {', '.join(done.teams)}" if done.teams else ""
    _echo(
        f"run {done.run_id} cancelled: {done.stopped} process(es) stopped{teams}; "
        f"`orchestrate resume {done.run_id}` continues it"
    )
