"""Commands: the run report (``orchestrate report [RUN] [--format md|json|html]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import app
from orchestrator.cli._common import RedisUrlOpt, StateDirOpt


@app.command()
def report(
    run_id: Annotated[
        str | None, typer.Argument(metavar="RUN", help="The run (default: the newest).")
    ] = None,
    fmt: Annotated[
        list[str] | None,
        typer.Option(
            "--format",
            help="md, json or html; repeat for several (default: all three).",
        ),
    ] = None,
    stdout: Annotated[
        bool, typer.Option("--stdout", help="Print the report (one format) instead of a path.")
    ] = False,
    state_dir: StateDirOpt = None,
    redis_url: RedisUrlOpt = None,
) -> None:
    """Write the run's report to .orchestrate/runs/<run>/report.{md,json,html}.

    Per team: attempts (agent id, duration, exit, reason, tokens, cost),
    deliverables and checks; per run: the integration (merge order, conflicts,
    test suite, bisection), totals, parallel efficiency and a timeline.
    """
    from orchestrator.cli._common import load_settings
    from orchestrator.errors import UsageError
    from orchestrator.paths import StateLayout, default_state_dir, find_state_dir
    from orchestrator.state.store import Store, run_with_store
    from orchestrator.views.report import FORMATS, build_report, render, write_reports

    formats = list(dict.fromkeys(f.lower() for f in (fmt or FORMATS)))
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise UsageError(f"unknown report format {bad[0]!r}: use md, json or html")
    if stdout and len(formats) != 1:
        raise UsageError("--stdout prints one format: give --format md, json or html")
    settings = load_settings(redis_url=redis_url)
    root = state_dir or settings.state_dir or find_state_dir() or default_state_dir()
    layout = StateLayout(Path(root).absolute())
    layout.check()  # a damaged state folder: one line
    if settings.redis_url is None and not Path(root).is_dir():
        raise UsageError(f"no state folder at {root}: no run has been started here")

    async def go(store: Store) -> str | dict[str, Path]:
        run = await store.resolve_run(run_id)
        if stdout:
            return render(await build_report(store, run), formats[0])
        return await write_reports(store, layout, run, formats)

    out = run_with_store(settings, layout, go)
    if isinstance(out, str):
        typer.echo(out, nl=False)
        return
    for fmt_name, path in out.items():
        typer.echo(f"{fmt_name:<5} {path}")
