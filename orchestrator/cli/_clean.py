"""Command: ``orchestrate clean [RUN]``: a finished run's worktrees and team branches go.

A run leaves a worktree per team under ``.orchestrate/worktrees/<run>/`` and a
branch per team (``orchestrate/<run>/<team>``); while a worktree holds a
branch, ``git branch -D`` refuses to delete it. ``clean`` removes both for a
finished run (succeeded, failed, cancelled), keeps the result branch
(``orchestrate/<run>/integration``) unless ``--all``, and keeps the run's record,
logs and reports. Without RUN it cleans every finished run and names the ones it
skipped. A run that is still running, interrupted (resumable) or held by a
live orchestrator is refused: exit 2.
"""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli import app
from orchestrator.cli._common import RedisUrlOpt, StateDirOpt


@app.command()
def clean(
    run_id: Annotated[
        str | None,
        typer.Argument(
            metavar="RUN",
            help="The run (default: every finished run).",
            show_default=False,
        ),
    ] = None,
    all_: Annotated[
        bool,
        typer.Option(
            "--all", help="Also delete the result branch (orchestrate/<run>/integration)."
        ),
    ] = False,
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """Remove a finished run's worktrees and team branches (the integration branch stays
    unless --all). Without RUN: every finished run."""
    from orchestrator.cli._resume import _where
    from orchestrator.cli._run import _echo
    from orchestrator.errors import UsageError
    from orchestrator.state.keys import check_name
    from orchestrator.state.runs import Cleaned, clean_run
    from orchestrator.state.status import RunStatus
    from orchestrator.state.store import Store, run_with_store

    if run_id is not None:
        try:
            check_name("run", run_id)
        except ValueError as exc:
            raise UsageError(f"no run {run_id!r}") from exc
    settings, layout = _where(state_dir, redis_url)

    async def go(store: Store) -> tuple[list[Cleaned], list[str]]:
        if run_id is not None:
            return [await clean_run(store, layout, run_id, result_too=all_)], []
        done, skipped = [], []
        for rid in await store.list_runs():
            run = await store.get_run(rid)
            if run.status not in RunStatus.FINAL:
                skipped.append(f"skipped run {rid}: {run.status}, not finished")
                continue
            try:
                done.append(await clean_run(store, layout, rid, result_too=all_))
            except UsageError as exc:  # a live orchestrator took it since
                skipped.append(f"skipped {exc}")
        return done, skipped

    done, skipped = run_with_store(settings, layout, go)
    for c in done:
        kept = f"; kept {', '.join(c.kept)} (--all deletes it)" if c.kept else ""
        _echo(
            f"run {c.run_id}: removed {len(c.worktrees)} worktree(s) and "
            f"{len(c.branches)} branch(es){kept}"
        )
    for line in skipped:
        _echo(line)
    if not done and not skipped:
        _echo("no runs to clean")
