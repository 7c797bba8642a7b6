"""``orchestrate run PLAN``: run a plan to its end.

On a terminal the user sees the live board (:func:`orchestrator.views.board.live_board`)
from the moment the run is running until it ends; elsewhere (CI logs, pipes)
plain timestamped event lines (:func:`format_notice`). Then a summary.
``-v`` adds the structured debug log (run, team, agent id) on stderr.

Exit codes: 0 every team succeeded and the integration's test suite passed
(or none is configured), 1 a team or the integration failed, 2 a bad plan or
usage, 3 paused waiting for approval (only teams with ``approval: true`` waiting at
their gate are left: ``orchestrate approve`` or ``reject`` them, then ``orchestrate
resume``), 4 paused because the budget is spent (``orchestrate resume RUN
--budget-usd N``), 130 interrupted (Ctrl-C / SIGTERM / SIGHUP) or cancelled (the run
can be resumed).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli import app
from orchestrator.cli._common import RedisUrlOpt, StateDirOpt

if TYPE_CHECKING:
    from rich.console import Console

    from orchestrator.paths import StateLayout
    from orchestrator.plan.load import LoadedPlan
    from orchestrator.run.engine import RunResult
    from orchestrator.run.runtypes import EngineOptions, Notice
    from orchestrator.settings import Settings
    from orchestrator.state.store import Store

OnStarted = Callable[[str], None]
BOARD_GRACE = 5.0
"""Seconds the board may take to draw the run's end once the run returned."""


def format_notice(notice: Notice, width: int) -> str:
    """``14:02:11 db        running    attempt 1/3  agent 3f9c2e1``."""
    import time

    from orchestrator.views.logs import printable

    clock = time.strftime("%H:%M:%S", time.localtime(notice.at))
    who = (notice.team or "run").ljust(width)
    line = f"{clock} {who}  {notice.status:<10} {printable(notice.detail)}"
    return line.rstrip()


def _echo(line: str) -> None:
    """A line on stdout; nothing when stdout is gone (a closed terminal: the run goes on
    recording its end)."""
    try:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    except OSError:
        pass


def terminal_console() -> Console | None:
    """A rich console when stdout is a terminal (the live board), else None (plain lines)."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else None


class Output:
    """Where a run's progress goes: event lines, or the live board once the run started."""

    def __init__(self, console: Console | None, width: int) -> None:
        self.console = console
        self.width = width
        self.board_on = False

    def notice(self, notice: Notice) -> None:
        if not self.board_on:  # the board shows the rest
            _echo(format_notice(notice, self.width))

    async def drive(
        self, store: Store, go: Callable[[OnStarted | None], Awaitable[RunResult]]
    ) -> RunResult:
        """Run ``go`` (a run or a resume, given an ``on_started`` callback) to its end,
        with the live board beside it on a terminal."""
        console = self.console
        if console is None:
            return await go(None)
        import anyio

        from orchestrator.errors import OrchestrateError
        from orchestrator.run.engine import first_error
        from orchestrator.views.board import live_board

        started: list[str] = []
        is_started, board_ended = anyio.Event(), anyio.Event()

        def on_started(run_id: str) -> None:
            self.board_on = True
            started.append(run_id)
            is_started.set()

        async def show() -> None:
            await is_started.wait()
            try:
                await live_board(store, started[0], console)
            except (OrchestrateError, OSError) as exc:  # the run goes on without its board
                self.board_on = False
                _echo(f"the live board stopped: {exc}")
            finally:
                board_ended.set()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(show)
                result = await go(on_started)
                if is_started.is_set():
                    with anyio.move_on_after(BOARD_GRACE):
                        await board_ended.wait()
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise first_error(group) from group
        return result

    def run(
        self,
        settings: Settings,
        layout: StateLayout,
        go: Callable[[Store, OnStarted | None], Awaitable[RunResult]],
        *,
        before: Callable[[Store], Awaitable[None]] | None = None,
    ) -> RunResult:
        """Open the store and :meth:`drive` ``go`` (after ``before``) to its end."""
        import anyio

        from orchestrator.cli._common import warn_damage
        from orchestrator.state.store import open_store

        async def main() -> RunResult:
            async with open_store(settings, layout) as store:
                warn_damage(settings, layout)
                if before is not None:
                    await before(store)
                return await self.drive(store, lambda on_started: go(store, on_started))

        return anyio.run(main)


ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="Where teams run: local (this machine) or ray (a Ray cluster's nodes). "
        "Default: the plan's executor, else local (resume: the run's).",
        show_default=False,
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="The Ray cluster (HOST:PORT) of --executor ray. Default: auto, the cluster "
        "started on this machine or $RAY_ADDRESS (resume: the run's).",
        show_default=False,
    ),
]


def executor_of(name: str | None, default: str | None) -> str:
    """The executor to use: ``--executor``, else ``default`` (the plan's, the run's), else local."""
    from orchestrator.errors import UsageError
    from orchestrator.run.executor import EXECUTORS

    chosen = name or default or "local"
    if chosen not in EXECUTORS:
        raise UsageError(f"--executor {chosen!r}: expected one of {', '.join(EXECUTORS)}")
    return chosen


def join_cluster(executor: str, address: str | None) -> str:
    """For the ray executor: join the cluster now (before anything is recorded); its address."""
    if executor != "ray":
        return address or "auto"
    from orchestrator.run.ray_executor import connect_cluster

    return connect_cluster(address or "auto")


def engine_options(
    *,
    max_parallel: int | None,
    backoff: float,
    integrate_partial: bool,
    fail_fast: bool = False,
    executor: str = "local",
    ray_address: str = "auto",
) -> EngineOptions:
    """The engine's options from `run`'s and `resume`'s shared flags."""
    from orchestrator.run.runtypes import EngineOptions

    return EngineOptions(
        max_parallel=max_parallel,
        fail_fast=fail_fast,
        backoff_initial=backoff,
        backoff_jitter=backoff,
        handle_signals=True,
        integrate_partial=integrate_partial,
        executor=executor,
        ray_address=ray_address,
    )


def _configure_logging(verbose: bool) -> None:
    import logging

    import structlog

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.WARNING
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def _load(plan_file: Path, *, yes: bool = False, no_deps_ok: bool = False) -> LoadedPlan:
    """The plan: YAML directly, or a Markdown coordination plan through the importer.

    A Markdown plan is shown first (teams, and every command a run starts); then
    the user confirms on a terminal, or gave ``--yes``. Several teams without a
    single dependency although the text speaks of some are refused unless
    ``--no-deps-ok``.
    """
    from orchestrator.errors import UsageError
    from orchestrator.plan.load import load_plan, load_plan_text

    if plan_file.suffix.lower() not in (".md", ".markdown"):
        return load_plan(plan_file)
    try:
        from orchestrator.mdimport.convert import (
            commands,
            load_markdown_plan,
            no_edges_message,
            summary_lines,
        )
    except ImportError as exc:
        raise UsageError(
            f"{plan_file}: running a Markdown plan needs the Markdown importer, which this "
            "installation lacks; write a plan.yaml instead"
        ) from exc
    imported = load_markdown_plan(plan_file)
    for line in summary_lines(imported):
        _echo(line)
    # Validated again as YAML beside the Markdown file: its repo, base branch and roles.
    loaded = load_plan_text(imported.yaml_text, path=plan_file.absolute().with_suffix(".yaml"))
    warning = no_edges_message(imported)
    if warning and not no_deps_ok:
        for line in warning[:-1]:
            sys.stderr.write(f"{line}\n")
        raise UsageError(
            f"{plan_file}: no dependency read between its teams although the lines above speak "
            "of an order; fix the plan, or pass --no-deps-ok if the teams are independent"
        )
    _confirm(plan_file, len(commands(loaded.plan)), yes=yes)
    return loaded


def _confirm(plan_file: Path, count: int, *, yes: bool) -> None:
    """Ask before running the commands a Markdown plan starts (listed just above)."""
    from orchestrator.errors import UsageError

    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"{plan_file}: a Markdown plan runs the {count} command(s) listed above; "
            "pass --yes to run them without a terminal to ask on"
        )
    try:
        answer = input(f"run the {count} command(s) listed above? [y/N] ")
    except EOFError:
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise UsageError(f"{plan_file}: not confirmed; nothing was run")


def _shown_path(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, else as it is."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def state_hint(layout: StateLayout) -> str:
    """`` --state-dir DIR`` when a command typed here would not find ``layout`` by itself
    (the plan's ``repo:`` is elsewhere), else ``""``: for the hints a summary prints."""
    import shlex

    from orchestrator.paths import find_state_dir

    here = find_state_dir()
    if here is not None and here.resolve() == layout.root.resolve():
        return ""
    return f" --state-dir {shlex.quote(_shown_path(layout.root))}"


def _summary(result: RunResult, report: Path | None = None, hint: str = "") -> list[str]:
    """The end-of-run summary: the verdict, a row per team, where the branches and report are.
    ``hint`` (:func:`state_hint`) goes after the commands it suggests.

    Branches are named once as a pattern (``orchestrate/<run>/<team>``); a row
    shows only its part after ``orchestrate/<run>/`` (a long run id would wrap
    every row otherwise).
    """
    from orchestrator.state.status import RunStatus, TeamStatus
    from orchestrator.views.logs import printable  # an agent's words: shown, never obeyed

    lines = [""]
    reason = printable(result.reason or "")
    verdict: str
    if not reason:
        verdict = result.status
    elif reason.startswith(result.status):  # "interrupted; ..." says it already
        verdict = reason
    else:
        verdict = f"{result.status}: {reason}"
    lines.append(f"run {result.run_id} {verdict}")
    prefix = f"orchestrate/{result.run_id}/"
    width = max(4, *(len(t) for t in result.teams)) if result.teams else 4
    lines.append(f"  {'team'.ljust(width)}  {'status':<10} {'attempts':>8}  branch / reason")
    for team, res in result.teams.items():
        tail = (res.branch or "").removeprefix(prefix)
        if res.status is not TeamStatus.SUCCEEDED and res.reason:
            tail = printable(res.reason)
        row = f"  {team.ljust(width)}  {res.status:<10} {res.attempts:>8}  {tail}"
        lines.append(row.rstrip())
    lines.append("")
    integ = result.integration
    if integ is not None:
        tail = integ.branch if integ.ok else (integ.reason or "")
        lines.append(f"integration {integ.status}: {tail}".rstrip())
    lines.append(f"branches: {prefix}<team>")
    if report is not None:
        lines.append(f"report:   {_shown_path(report)}")
    if result.base_commit:
        lines.append(f"base:     {result.base_ref} ({result.base_commit[:10]})")
    if result.status is RunStatus.PAUSED and result.awaiting:
        from orchestrator.state.gates import approve_command, reject_command

        for team in result.awaiting:
            lines.append(f"approve:  {approve_command(result.run_id, team)}{hint}")
            lines.append(f"reject:   {reject_command(result.run_id, team)}{hint}")
    if result.status in (RunStatus.INTERRUPTED, RunStatus.CANCELLED, RunStatus.PAUSED):
        lines.append(f"resume:   orchestrate resume {result.run_id}{hint}")
    if result.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) and result.teams:
        lines.append(
            f"clean:    orchestrate clean {result.run_id}{hint}  (worktrees, team branches)"
        )
    return lines


async def _note_live_runs(store: Store, plan_name: str) -> None:
    """One line on stderr per run of the same plan still driven by a live orchestrator
    (two runs at once are allowed; starting one by mistake should not go unnoticed)."""
    import socket

    from orchestrator.views.board import live_runs_of

    for run_id, holder in await live_runs_of(store, plan_name):
        where = f"pid {holder.pid}"
        if holder.host != socket.gethostname():
            where += f" on {holder.host}"
        sys.stderr.write(
            f"note: run {run_id} of this plan is still running ({where}); starting another\n"
        )
        sys.stderr.flush()


@app.command()
def run(
    plan_file: Annotated[
        Path,
        typer.Argument(
            metavar="PLAN", help="The plan (plan.yaml, or a Markdown coordination plan)."
        ),
    ],
    max_parallel: Annotated[
        int | None,
        typer.Option("--max-parallel", min=1, max=256, help="Agents at once (overrides the plan)."),
    ] = None,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Start no team after the first failure.")
    ] = False,
    backoff: Annotated[
        float,
        typer.Option(
            "--backoff",
            min=0.0,
            max=600.0,
            help="Seconds before the first retry; doubles each retry, plus jitter.",
        ),
    ] = 2.0,
    integrate_partial: Annotated[
        bool,
        typer.Option(
            "--integrate-partial",
            help="Integrate the teams that succeeded even when others did not.",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug log (run, team, agent) on stderr.")
    ] = False,
    ui: Annotated[
        bool, typer.Option("--ui", help="Serve the web dashboard beside the run (loopback).")
    ] = False,
    ui_port: Annotated[
        int, typer.Option("--ui-port", min=0, max=65535, help="The dashboard's port.")
    ] = 8765,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            help="A Markdown plan: run the commands it lists without asking "
            "(needed without a terminal).",
        ),
    ] = False,
    no_deps_ok: Annotated[
        bool,
        typer.Option(
            "--no-deps-ok",
            help="A Markdown plan whose teams got no dependency although its text speaks of "
            "some: run it anyway.",
        ),
    ] = False,
) -> None:
    """Run a plan: every team's agent in its own worktree, retries, integration, a summary.

    Exit 0 when every team succeeded and the test suite passed, 1 when a team
    or the integration failed, 2 for a bad plan, 130 when interrupted or
    cancelled (continue it with `orchestrate resume`).
    """

    from orchestrator.cli._common import load_settings
    from orchestrator.paths import STATE_DIR_NAME, StateLayout
    from orchestrator.run.engine import start_run

    _configure_logging(verbose)
    loaded = _load(plan_file, yes=yes, no_deps_ok=no_deps_ok)
    from orchestrator.run.preflight import require_agents, unseen_files

    for warning in unseen_files(loaded):
        sys.stderr.write(f"warning: {warning}\n")
    chosen = executor_of(executor, loaded.plan.executor)
    if chosen == "local":  # on a cluster each host looks for the agents on its own node
        require_agents(loaded)  # before anything is recorded: nothing to resume, half started
    settings = load_settings(state_dir=state_dir, redis_url=redis_url)
    if chosen == "ray":  # the nodes write to the store too: not a local socket
        from orchestrator.run.ray_executor import require_network_store

        require_network_store(settings)
    address = join_cluster(chosen, ray_address)
    root = settings.state_dir or loaded.repo_root / STATE_DIR_NAME
    layout = StateLayout(root.absolute()).ensure()
    options = engine_options(
        max_parallel=max_parallel,
        backoff=backoff,
        integrate_partial=integrate_partial,
        fail_fast=fail_fast,
        executor=chosen,
        ray_address=address,
    )
    out = Output(terminal_console(), max(3, *(len(t.id) for t in loaded.plan.teams)))

    def created(info: Any) -> None:
        _echo(f"run {info.run_id}: {len(loaded.plan.teams)} teams from {info.base_ref}")

    async def go(store: Store, on_started: OnStarted | None) -> RunResult:
        return await start_run(
            loaded,
            store=store,
            layout=layout,
            options=options,
            notify=out.notice,
            on_created=created,
            on_started=on_started,
        )

    async def before(store: Store) -> None:
        if chosen == "ray":  # a team no node can take, no remote, a store nodes cannot reach
            from orchestrator.run.ray_executor import prepare_cluster

            await prepare_cluster(loaded, settings, address)
        await _note_live_runs(store, loaded.plan.name)

    runner: Callable[[Store, OnStarted | None], Awaitable[RunResult]] = go
    if ui:  # the dashboard beside the run (orchestrator/cli/_ui.py)
        from orchestrator.cli._ui import beside

        runner, announce = beside(go, layout=layout, redis_url=redis_url, port=ui_port)
        announce()
    result = out.run(settings, layout, runner, before=before)
    for line in _summary(result, layout.report_file(result.run_id, "html"), state_hint(layout)):
        _echo(line)
    raise typer.Exit(result.exit_code)
