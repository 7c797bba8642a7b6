"""Commands: ``orchestrate ui``, ``orchestrate cancel-team``, ``orchestrate retry-team``.

``ui`` serves the live web dashboard (:mod:`orchestrator.web`) of the runs in
this repository's state folder until Ctrl-C. Starlette and uvicorn are the
``web`` extra; they are imported only here, when the dashboard is asked for.
:func:`beside` starts the same server beside a run (``orchestrate run --ui``).

``cancel-team`` and ``retry-team`` are the dashboard's team actions
(:mod:`orchestrator.run.control`). Exit codes: 0 done, 2 bad usage (unknown run
or team, a team in the wrong state, a port in use).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli import app
from orchestrator.cli._common import RedisUrlOpt, StateDirOpt

if TYPE_CHECKING:
    from orchestrator.paths import StateLayout
    from orchestrator.run.engine import RunResult
    from orchestrator.state.store import Store

OnStarted = Callable[[str], None]
Go = Callable[["Store", OnStarted | None], Coroutine[Any, Any, "RunResult"]]

HostOpt = Annotated[
    str,
    typer.Option(
        "--host",
        help="Address to listen on. Anything but loopback needs the access token printed "
        "at start (or --token-file).",
    ),
]
PortOpt = Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")]
TeamArg = Annotated[str, typer.Argument(metavar="TEAM", help="The team id.")]
RunIdArg = Annotated[str, typer.Argument(metavar="RUN", help="The run id.")]


def _web() -> Any:
    """The web package, or one clear line when the ``web`` extra is not installed."""
    from orchestrator.errors import UsageError

    try:
        import orchestrator.web.server as server
    except ImportError as exc:
        raise UsageError(
            f"the dashboard needs the web extra ({exc.name} is missing): "
            "pip install 'orchestrate[web]'"
        ) from exc
    return server


def _say(line: str) -> None:
    from orchestrator.cli._run import _echo

    _echo(line)


@app.command()
def ui(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8765,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="Read the access token from this file instead of making one up.",
            dir_okay=False,
        ),
    ] = None,
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """Serve the live web dashboard of this repository's runs (until Ctrl-C).

    Loopback only by default (http://127.0.0.1:8765). With --host 0.0.0.0 it is
    reachable from the network and asks for the token it prints.
    """
    import signal

    import anyio

    from orchestrator.cli._resume import _where
    from orchestrator.state.store import open_store

    server = _web()
    from orchestrator.web.app import WebConfig
    from orchestrator.web.security import Access

    settings, layout = _where(state_dir, redis_url)
    access = Access.for_bind(host, token_file)
    sock = server.bind(host, port)

    async def main() -> None:
        async with open_store(settings, layout) as store:
            ui_server = server.UiServer(WebConfig(store, layout, access, redis_url), sock)
            _say(f"orchestrate ui: {server.address(sock, host, access.token)}")
            if access.token is not None and token_file is None:
                _say("the address holds the access token: share it only with who may act on runs")
            async with anyio.create_task_group() as tg:
                tg.start_soon(ui_server.serve)
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for _ in signals:
                        break
                await ui_server.stop()

    try:
        anyio.run(main)
    finally:
        sock.close()


def beside(
    go: Go, *, layout: StateLayout, redis_url: str | None, port: int
) -> tuple[Go, Callable[[], None]]:
    """``go`` (a run) with the dashboard served beside it on loopback ``port``, and a
    function that prints the address. The port is taken now: a port in use stops
    the run before it starts."""
    import anyio

    server = _web()
    from orchestrator.run.engine import first_error
    from orchestrator.web.app import WebConfig
    from orchestrator.web.security import Access

    host = server.DEFAULT_HOST
    access = Access.for_bind(host, None)
    sock = server.bind(host, port)

    async def wrapped(store: Store, on_started: OnStarted | None) -> RunResult:
        ui_server = server.UiServer(WebConfig(store, layout, access, redis_url), sock)
        results: list[RunResult] = []
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(ui_server.serve)
                try:
                    results.append(await go(store, on_started))
                finally:
                    with anyio.CancelScope(shield=True):
                        await ui_server.stop()
        except BaseExceptionGroup as group:
            raise first_error(group) from group
        return results[0]

    def announce() -> None:
        _say(f"dashboard: {server.address(sock, host, None)}")

    return wrapped, announce


def _team_action(
    fn_name: str, run_id: str, team: str, state_dir: Path | None, redis_url: str | None
) -> Any:
    import anyio

    from orchestrator.cli._resume import _where
    from orchestrator.run import control
    from orchestrator.state.keys import check_name
    from orchestrator.state.store import open_store

    check_name("run", run_id)
    check_name("team", team)
    settings, layout = _where(state_dir, redis_url)
    fn = getattr(control, fn_name)

    async def main() -> Any:
        async with open_store(settings, layout) as store:
            return await fn(store, run_id, team)

    return anyio.run(main)


@app.command("cancel-team")
def cancel_team(
    run_id: RunIdArg,
    team: TeamArg,
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """Cancel one team: its agent is stopped, the teams after it are blocked, the rest go on."""
    done = _team_action("cancel_team", run_id, team, state_dir, redis_url)
    how = "" if done.live else " (no orchestrator drives the run: marked in the store)"
    _say(f"team {team} of run {run_id}: {done.status}{how}")


@app.command("retry-team")
def retry_team(
    run_id: RunIdArg,
    team: TeamArg,
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """Retry a failed team with a fresh set of retries (and unblock the teams after it).

    On a live run its orchestrator starts it at once; otherwise the next
    `orchestrate resume RUN` runs it.
    """
    done = _team_action("retry_team", run_id, team, state_dir, redis_url)
    if done.live:
        _say(f"team {team} of run {run_id}: {done.status}")
        return
    unblocked = f"; unblocked: {', '.join(done.unblocked)}" if done.unblocked else ""
    _say(
        f"team {team} of run {run_id} will be retried{unblocked}: "
        f"`orchestrate resume {run_id}` runs it"
    )
