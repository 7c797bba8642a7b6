"""Command: import (a Markdown coordination plan -> plan.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import app


@app.command(name="import")
def import_plan(
    markdown: Annotated[
        Path,
        typer.Argument(
            help="The Markdown plan (PLAN.md).",
            metavar="PLAN.md",
            dir_okay=False,
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Where to write the plan (default: PLAN.yaml beside it)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing output file.")
    ] = False,
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            help="Have this agent kind (claude-code, codex, ...) convert the plan instead of the "
            "offline reader.",
        ),
    ] = None,
    no_deps_ok: Annotated[
        bool,
        typer.Option(
            "--no-deps-ok",
            help="No warning when several teams got no dependency although the text speaks "
            "of some.",
        ),
    ] = False,
    agent_command: Annotated[
        str | None,
        typer.Option(
            "--agent-command",
            help="The agent's command line (default: the kind's own executable); "
            "for --agent command: the whole command, with {prompt_file} and {workdir}.",
        ),
    ] = None,
) -> None:
    """Convert a Markdown coordination plan into plan.yaml and print what was understood.

    Offline by default: teams, dependencies, deliverables, roles, estimates and
    criteria are read from the document's structure; every guessed value gets a
    comment in the YAML, every dependency it could not read is listed with its
    line, and every command a run would start is shown. Exit 2 if the document
    names no team.
    """
    from orchestrator.errors import UsageError
    from orchestrator.mdimport import load_markdown_plan, no_edges_message, summary_lines

    if not markdown.exists() and not markdown.is_symlink():
        raise UsageError(f"no such file: {markdown}")
    # Anything else that is no regular file (a FIFO, /dev/zero) is refused, named, by the
    # reader, which never opens it.
    target = output or markdown.with_suffix(".yaml")
    if target.resolve() == markdown.resolve():
        raise UsageError(f"the output would overwrite the Markdown plan {markdown}; give -o")
    if target.exists() and not force:
        raise UsageError(f"{target} exists; pass --force to overwrite it")
    if agent is not None:
        from orchestrator.mdimport.agentconvert import convert_with_agent
        from orchestrator.plan.models import BUILTIN_AGENT_KINDS

        if agent not in BUILTIN_AGENT_KINDS:
            raise UsageError(f"--agent: unknown kind {agent!r} ({', '.join(BUILTIN_AGENT_KINDS)})")
        result = convert_with_agent(markdown, kind=agent, output=target, command=agent_command)
    else:
        result = load_markdown_plan(markdown)
    for line in summary_lines(result):
        typer.echo(line)
    warning = [] if no_deps_ok else no_edges_message(result)
    if warning:
        typer.echo("\n".join(["", f"WARNING: {warning[0]}", *warning[1:], ""]), err=True)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(result.yaml_text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc}") from exc
    typer.echo(f"wrote {target}")
