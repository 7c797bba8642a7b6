"""Watching runs: ``logs``, ``status``, ``watch``, ``runs``.

Each finds the state folder (``--state-dir``, else ``.orchestrate/`` upward
from here) and its embedded Redis, or uses ``--redis-url``. Where there is no
state folder and no URL there is nothing to show: one line, exit 2, and no
server is started just to say so. RUN defaults to the newest run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli import app
from orchestrator.cli._common import RedisUrlOpt, StateDirOpt

if TYPE_CHECKING:
    from orchestrator.paths import StateLayout
    from orchestrator.settings import Settings
    from orchestrator.state.store import Store

RunArg = Annotated[
    str | None,
    typer.Argument(help="The run id (default: the newest run).", metavar="RUN", show_default=False),
]


def _open(state_dir: Path | None, redis_url: str | None) -> tuple[Settings, StateLayout]:
    from orchestrator.cli._common import load_settings
    from orchestrator.errors import NO_RUNS, UsageError
    from orchestrator.paths import StateLayout, find_state_dir

    settings = load_settings(state_dir=state_dir, redis_url=redis_url)
    root = settings.state_dir or find_state_dir()
    if root is not None:
        StateLayout(root).check()  # a damaged state folder: one line
    if root is None or not root.is_dir():
        if settings.redis_url is None:
            raise UsageError(NO_RUNS)
        root = Path.cwd() / ".orchestrate"  # logs on disk are not here; Redis has the rest
    layout = StateLayout(root.absolute())
    if settings.redis_url is None and not layout.redis_dir.is_dir():
        raise UsageError(NO_RUNS)
    return settings, layout


async def _run_or_team(
    store: Store, run: str | None, team: str | None, *, extra: tuple[str, ...] = ()
) -> tuple[str | None, str | None]:
    """``(run, team)`` of ``logs [RUN] [TEAM]``: a lone argument that names no run but a
    team of the newest run is that team (``orchestrate logs -f auth``)."""
    if run is None or team is not None:
        return run, team
    ids = await store.list_runs()
    if not ids or run in ids:
        return run, team
    newest = await store.get_run(ids[0])
    if run in newest.team_ids or run in extra:
        return None, run
    from orchestrator.errors import UsageError

    raise UsageError(
        f"no run or team {run!r} (teams of {ids[0]}: {', '.join(newest.team_ids)};"
        " `orchestrate runs` lists the runs)"
    )


def _run(state_dir: Path | None, redis_url: str | None, fn: Any) -> Any:
    settings, layout = _open(state_dir, redis_url)  # nothing here: say so before loading redis

    import anyio

    from orchestrator.cli._common import warn_damage
    from orchestrator.state.store import open_store

    async def main() -> Any:
        async with open_store(settings, layout) as store:
            warn_damage(settings, layout)
            return await fn(store, layout)

    return anyio.run(main)


@app.command()
def logs(
    run: Annotated[
        str | None,
        typer.Argument(
            help="The run id (default: the newest run); a team's id alone means that team "
            "of the newest run.",
            metavar="RUN",
            show_default=False,
        ),
    ] = None,
    team_arg: Annotated[
        str | None,
        typer.Argument(
            metavar="TEAM", help="One team (default: every team, interleaved).", show_default=False
        ),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the run ends.")
    ] = False,
    attempt: Annotated[
        int | None, typer.Option("--attempt", min=1, help="Only this attempt's lines.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Only lines of the last DURATION (90s, 5m, 1h).")
    ] = None,
    raw: Annotated[
        bool, typer.Option("--raw", help="The agent's output as printed (from the log files).")
    ] = False,
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """Print agents' output: one team, or every team interleaved in time order.

    Agent events read as short lines (tool calls, messages, results); --raw
    shows what the agent printed. With -f, follow until the run ends, then exit 0.
    `orchestrate logs -f auth` follows team auth of the newest run.
    """
    import time

    from orchestrator.errors import UsageError
    from orchestrator.paths import INTEGRATION
    from orchestrator.redact import Redactor
    from orchestrator.views.logs import (
        FileTail,
        LineFormatter,
        LogLine,
        adapter_of,
        history,
        raw_history,
        use_color,
    )
    from orchestrator.views.logs import (
        follow as follow_logs,
    )

    cutoff = None
    if since is not None:
        from orchestrator.plan.models import parse_duration

        try:
            cutoff = time.time() - parse_duration(since)
        except ValueError as exc:
            raise UsageError(f"--since: {exc}") from exc
    out = sys.stdout

    async def go(store: Store, layout: StateLayout) -> None:
        run_arg, team = await _run_or_team(store, run, team_arg, extra=(INTEGRATION,))
        run_id = await store.resolve_run(run_arg)
        state = await store.get_run(run_id)
        known = [*state.team_ids, INTEGRATION]  # the integration phase's output reads like a team's
        if team is not None and team not in known:
            raise UsageError(f"no team {team!r} in run {run_id} (teams: {', '.join(known)})")
        teams = [team] if team is not None else known
        fmt = LineFormatter(
            state.team_ids,  # the prefix width of the teams; _integration's lines may stick out
            color=use_color(out),
            prefix=team is None,
            redactor=Redactor.from_env(extra=store.secrets),
            mark_attempts=attempt is None,
            raw=raw,
        )

        def emit(line: LogLine) -> None:
            out.write(fmt(line) + "\n")

        lines: list[LogLine] = []
        after: dict[str, str] = {}
        shown: dict[str, tuple[int, int] | None] = {}
        tails: dict[str, dict[int, FileTail]] | None = None
        if raw:
            tails = {}
            for t in teams:
                got, tails[t] = raw_history(layout, run_id, t, attempt=attempt)
                lines += got
        else:
            from orchestrator.state.runs import recorded_plan

            plan = recorded_plan(state)
            for t in teams:
                found = await history(
                    store,
                    layout,
                    run_id,
                    t,
                    adapter=adapter_of(plan, t),
                    attempt=attempt,
                    since=cutoff,
                )
                lines += found.lines
                after[t] = found.last_id
                shown[t] = found.last_pos
            lines.sort()
        for line in lines:
            emit(line)
        out.flush()
        if follow:

            def emit_flush(line: LogLine) -> None:
                emit(line)
                out.flush()

            await follow_logs(
                store,
                layout,
                run_id,
                teams,
                emit_flush,
                after=after,
                raw_tails=tails,
                attempt=attempt,
                start=shown,
            )

    try:
        _run(state_dir, redis_url, go)
    except BrokenPipeError:  # `orchestrate logs | head`
        sys.stderr.close()
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command()
def status(
    run: RunArg = None,
    json_: Annotated[
        bool, typer.Option("--json", help="The board as JSON (schema: docs/board.md).")
    ] = False,
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """The board of a run, once: each team's status, attempts, files, time, tokens and cost."""
    import json

    from rich.console import Console

    from orchestrator.views.board import build_snapshot, render_board, snapshot_json

    async def go(store: Store, layout: StateLayout) -> Any:
        return await build_snapshot(store, await store.resolve_run(run))

    snap = _run(state_dir, redis_url, go)
    if json_:
        sys.stdout.write(json.dumps(snapshot_json(snap), indent=2) + "\n")
        return
    Console(highlight=False).print(render_board(snap))


@app.command()
def watch(
    run: RunArg = None,
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """The board of a run, live, until the run ends (Ctrl-C leaves; the run goes on).

    Where the output is not a terminal, prints timestamped event lines instead.
    """
    from rich.console import Console

    from orchestrator.views.board import live_board, plain_events

    console = Console(highlight=False)

    async def go(store: Store, layout: StateLayout) -> None:
        run_id = await store.resolve_run(run)
        if console.is_terminal:
            await live_board(store, run_id, console)
        else:
            await plain_events(store, run_id, sys.stdout)

    try:
        _run(state_dir, redis_url, go)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


@app.command()
def runs(
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """The runs, newest first: status, start, duration, teams succeeded / failed."""
    import time

    from orchestrator.plan.models import format_duration
    from orchestrator.views.board import BoardSnapshot, build_snapshot

    async def go(store: Store, layout: StateLayout) -> list[BoardSnapshot]:
        ids = await store.list_runs()
        return [await build_snapshot(store, r) for r in ids]

    snaps: list[BoardSnapshot] = _run(state_dir, redis_url, go)
    if not snaps:
        from orchestrator.errors import NO_RUNS

        sys.stdout.write(NO_RUNS + "\n")
        return
    # The run id last: the columns stay aligned in 80 columns however long the plan's name.
    sys.stdout.write(f"{'status':<11} {'started':<11}  {'took':>7}  {'ok/failed/all':<13}  run\n")
    for s in snaps:
        started = time.strftime("%m-%d %H:%M", time.localtime(s.created)) if s.created else ""
        took = format_duration(s.elapsed_s) if s.elapsed_s is not None else ""
        counts = f"{s.teams_succeeded}/{s.teams_failed}/{s.teams_total}"
        sys.stdout.write(f"{s.status:<11} {started:<11}  {took:>7}  {counts:<13}  {s.run_id}\n")
