"""``orchestrate run PLAN``: run a plan to its end.

The user-facing output is plain timestamped event lines (one function,
:func:`format_notice`, so a live board can replace it) and a summary at the
end. ``-v`` adds the structured debug log (run, team, agent id) on stderr.

Exit codes: 0 every team succeeded and the integration's test suite passed
(or none is configured), 1 a team or the integration failed, 2 a bad plan or
usage, 130 interrupted (Ctrl-C / SIGTERM) or cancelled (the run can be resumed).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli import app
from orchestrator.cli._common import RedisUrlOpt, StateDirOpt

if TYPE_CHECKING:
    from orchestrator.engine import RunResult
    from orchestrator.planload import LoadedPlan
    from orchestrator.teamrun import Notice


def format_notice(notice: Notice, width: int) -> str:
    """``14:02:11 db        running    attempt 1/3  agent 3f9c2e1``."""
    import time

    clock = time.strftime("%H:%M:%S", time.localtime(notice.at))
    who = (notice.team or "run").ljust(width)
    line = f"{clock} {who}  {notice.status:<10} {notice.detail}"
    return line.rstrip()


def _echo(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


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


def _load(plan_file: Path) -> LoadedPlan:
    """The plan: YAML directly, or a Markdown coordination plan through the importer."""
    from orchestrator.errors import UsageError
    from orchestrator.planload import load_plan, load_plan_text

    if plan_file.suffix.lower() != ".md":
        return load_plan(plan_file)
    try:
        from orchestrator.mdimport.convert import load_markdown_plan, summary_lines
    except ImportError as exc:
        raise UsageError(
            f"{plan_file}: running a Markdown plan needs the Markdown importer, which this "
            "installation lacks; write a plan.yaml instead"
        ) from exc
    imported = load_markdown_plan(plan_file)
    for line in summary_lines(imported):
        _echo(line)
    # Validated again as YAML beside the Markdown file: its repo, base branch and roles.
    return load_plan_text(imported.yaml_text, path=plan_file.absolute().with_suffix(".yaml"))


def _summary(result: RunResult, repo_root: Path) -> list[str]:
    lines = [""]
    verdict = result.status if not result.reason else f"{result.status}: {result.reason}"
    lines.append(f"run {result.run_id} {verdict}")
    width = max(len(t) for t in result.teams) if result.teams else 4
    lines.append(f"  {'team'.ljust(width)}  {'status':<10} {'attempts':>8}  branch / reason")
    for team, res in result.teams.items():
        tail = res.branch or ""
        if res.status != "succeeded" and res.reason:
            tail = res.reason
        lines.append(f"  {team.ljust(width)}  {res.status:<10} {res.attempts:>8}  {tail}")
    lines.append("")
    integ = result.integration
    if integ is not None:
        tail = integ.branch if integ.ok else (integ.reason or "")
        lines.append(f"integration {integ.status}: {tail}")
    lines.append(f"branches: git -C {repo_root} branch --list 'orchestrate/{result.run_id}/*'")
    if result.base_commit:
        lines.append(f"base: {result.base_ref} ({result.base_commit[:10]})")
    if result.status in ("interrupted", "cancelled"):
        lines.append(f"resume:   orchestrate resume {result.run_id}")
    return lines


@app.command()
def run(
    plan_file: Annotated[
        Path, typer.Argument(help="The plan (plan.yaml, or a Markdown coordination plan).")
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
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """Run a plan: every team's agent in its own worktree, retries, integration, a summary.

    Exit 0 when every team succeeded and the test suite passed, 1 when a team
    or the integration failed, 2 for a bad plan, 130 when interrupted or
    cancelled (continue it with `orchestrate resume`).
    """
    import anyio

    from orchestrator.engine import EngineOptions, start_run
    from orchestrator.paths import STATE_DIR_NAME, StateLayout
    from orchestrator.settings import Settings
    from orchestrator.store import open_store

    _configure_logging(verbose)
    loaded = _load(plan_file)
    overrides: dict[str, Any] = {}
    if redis_url:
        overrides["redis_url"] = redis_url
    if state_dir is not None:
        overrides["state_dir"] = state_dir
    settings = Settings(**overrides)
    root = settings.state_dir or loaded.repo_root / STATE_DIR_NAME
    layout = StateLayout(root.absolute()).ensure()
    options = EngineOptions(
        max_parallel=max_parallel,
        fail_fast=fail_fast,
        backoff_initial=backoff,
        backoff_jitter=backoff,
        handle_signals=True,
        integrate_partial=integrate_partial,
    )
    width = max(3, *(len(t.id) for t in loaded.plan.teams))

    def notify(notice: Notice) -> None:
        _echo(format_notice(notice, width))

    def created(info: Any) -> None:
        _echo(f"run {info.run_id}: {len(loaded.plan.teams)} teams from {info.base_ref}")

    async def main() -> RunResult:
        async with open_store(settings, layout) as store:
            return await start_run(
                loaded,
                store=store,
                layout=layout,
                options=options,
                notify=notify,
                on_created=created,
            )

    result = anyio.run(main)
    for line in _summary(result, loaded.repo_root):
        _echo(line)
    raise typer.Exit(result.exit_code)
