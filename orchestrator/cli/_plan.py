"""Commands about the plan itself: validate, plan, init, schema, quickstart.

None of them starts an agent or touches a run's state; only ``init`` (one new
``plan.yaml``) and ``quickstart`` (a new demo repository) write anything.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from orchestrator.cli import app

if TYPE_CHECKING:
    from rich.console import Console

    from orchestrator.plan.models import Plan

PlanArg = Annotated[
    Path,
    typer.Argument(
        help="The plan file (plan.yaml).", metavar="PLAN", dir_okay=False, show_default=False
    ),
]


@app.command()
def validate(plan_file: PlanArg) -> None:
    """Check a plan without running it: every problem, one line each (exit 2), or a summary."""
    from orchestrator.plan.graph import waves
    from orchestrator.plan.load import load_plan

    loaded = load_plan(plan_file)
    plan = loaded.plan
    n_waves = len(waves(plan))
    base = plan.base or "the current branch"
    typer.echo(
        f"{plan_file}: ok: plan '{plan.name}', {len(plan.teams)} team(s) in {n_waves} wave(s), "
        f"max_parallel {plan.max_parallel}, isolation {plan.isolation}, "
        f"repo {loaded.repo_root} (from {base})"
    )
    from orchestrator.run.preflight import unseen_files

    for warning in unseen_files(loaded):  # stderr: the summary line stays alone on stdout
        typer.echo(f"warning: {warning}", err=True)


def _clock(seconds: float, *, fine: bool) -> str:
    """``T+20`` (minutes), or ``T+0:05`` (minutes:seconds) for a plan of a few minutes."""
    if fine:
        m, s = divmod(round(seconds), 60)
        return f"T+{m}:{s:02d}"
    minutes = round(seconds / 60)
    return f"T+{minutes:02d}" if minutes < 100 else f"T+{minutes // 60}h{minutes % 60:02d}"


@app.command("plan")
def show_plan(plan_file: PlanArg) -> None:
    """Show the schedule before anything runs: waves, critical path, timeline, warnings."""
    from rich.console import Console

    from orchestrator.plan import graph
    from orchestrator.plan.load import load_plan
    from orchestrator.plan.models import format_duration

    loaded = load_plan(plan_file)
    plan = loaded.plan
    console = Console(highlight=False)
    estimated = any(t.estimate for t in plan.teams)
    # Sentences are not cut into lines here: the terminal wraps them, a pipe keeps them whole.
    console.print(
        f"[bold]{plan.name}[/]: {len(plan.teams)} team(s), max_parallel {plan.max_parallel}, "
        f"isolation {plan.isolation}, repo {loaded.repo_root}",
        soft_wrap=True,
    )

    console.print("[bold]Waves[/] (teams that can run together)", soft_wrap=True)
    if len(plan.teams) > _TABLE_MAX_TEAMS:  # a table measures every cell: seconds per thousand
        for n, wave in enumerate(graph.waves(plan), start=1):
            console.print(f"wave {n}: {', '.join(wave)}", soft_wrap=True, markup=False)
    else:
        _waves_table(console, plan)

    path, total = graph.critical_path(plan)
    note = (
        ""
        if estimated
        else f" (no estimates: each team counted as {format_duration(graph.DEFAULT_ESTIMATE)})"
    )
    console.print(
        f"[bold]Critical path[/]: {' -> '.join(path)}  ~{format_duration(total)}{note}",
        soft_wrap=True,
    )

    slots = graph.simulate(plan)
    starts: dict[float, list[str]] = {}
    for slot in slots:
        starts.setdefault(slot.start, []).append(slot.team)
    end = max((s.finish for s in slots), default=0.0)
    fine = end < 10 * 60
    steps = [f"{_clock(t, fine=fine)} {', '.join(ids)}" for t, ids in sorted(starts.items())]
    console.print(
        f"[bold]Timeline[/] (max_parallel {plan.max_parallel}): "
        + " / ".join(steps)
        + f" / {_clock(end, fine=fine)} done",
        soft_wrap=True,
    )

    warnings: list[str] = []
    for o in graph.deliverable_overlaps(plan):
        warnings.append(
            f"teams {o.team_a!r} and {o.team_b!r} may run at the same time and both deliver "
            f"{o.deliverable_a!r}"
            + ("" if o.deliverable_a == o.deliverable_b else f" / {o.deliverable_b!r}")
            + ": a merge conflict waiting to happen (make one depend on the other?)"
        )
    from orchestrator.run.preflight import missing_agents, unseen_files

    for m in missing_agents(loaded, guess_shell=True):
        warnings.append(f"agent {m.agent!r}: {m}")
    warnings.extend(unseen_files(loaded))
    for w in warnings:
        console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    if not warnings:
        console.print("No warnings.")


_TABLE_MAX_TEAMS = 500
"""Above this many teams, ``plan`` lists each wave on one line instead of a table."""


def _waves_table(console: Console, plan: Plan) -> None:
    from rich.markup import escape
    from rich.table import Table

    from orchestrator.plan import graph
    from orchestrator.plan.models import format_duration

    table = Table()
    table.add_column("wave", justify="right")
    table.add_column("team")
    table.add_column("depends on")
    table.add_column("agent")
    table.add_column("estimate", justify="right")
    for n, wave in enumerate(graph.waves(plan), start=1):
        for k, tid in enumerate(wave):
            team = plan.team(tid)
            table.add_row(
                str(n) if k == 0 else "",
                tid + (f"\n[dim]{escape(team.name)}[/]" if team.name else ""),
                ", ".join(team.depends_on) or "-",
                plan.agent_name(team),
                format_duration(team.estimate) if team.estimate else "-",
            )
    console.print(table)


_AGENT_CLIS = ("claude-code", "codex", "aider", "gemini", "opencode")


def _git_root(cwd: Path) -> Path | None:
    import subprocess

    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return Path(proc.stdout.strip()) if proc.returncode == 0 else None


@app.command()
def init(
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing plan.yaml.")
    ] = False,
) -> None:
    """Write a commented starter plan.yaml at the root of the current git repository."""
    import jinja2

    from orchestrator.errors import UsageError
    from orchestrator.resources import configs_dir

    root = _git_root(Path.cwd())
    if root is None:
        raise UsageError("init: not inside a git repository (run `git init` first)")
    target = root / "plan.yaml"
    if target.exists() and not force:
        raise UsageError(f"init: {target} already exists; not overwriting it (--force to replace)")
    from orchestrator.agents import executable
    from orchestrator.plan.models import AgentConfig

    programs = {kind: executable(AgentConfig(kind=kind)) for kind in _AGENT_CLIS}
    found = [kind for kind in _AGENT_CLIS if shutil.which(programs[kind])]
    template = (configs_dir() / "init" / "plan.yaml.j2").read_text(encoding="utf-8")
    text = jinja2.Template(template, keep_trailing_newline=True).render(
        name=_safe_name(root.name),
        agent=found[0] if found else "claude-code",
        found=found,
        missing=[k for k in _AGENT_CLIS if k not in found],
        executables=programs,
    )
    target.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {target}")
    typer.echo(
        "agent CLIs on PATH: "
        + (", ".join(found) if found else "none found (install one, e.g. claude)")
    )
    typer.echo(
        "next: edit the teams, then `orchestrate validate plan.yaml && orchestrate plan plan.yaml`"
    )


def _safe_name(text: str) -> str:
    import re

    name = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-_")[:64]
    return name or "my-plan"


@app.command()
def schema() -> None:
    """Print the JSON Schema of plan.yaml (for yaml-language-server and other editors)."""
    import json

    from orchestrator.plan.models import Plan

    typer.echo(json.dumps(Plan.model_json_schema(), indent=2))


@app.command()
def quickstart(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Where to create the demo repository (new or empty).",
            metavar="DIR",
            show_default=False,
        ),
    ],
) -> None:
    """Create a demo git repository with a plan and a scripted agent (no API key needed)."""
    import shlex
    import subprocess

    from orchestrator.errors import UsageError
    from orchestrator.plan.load import load_plan
    from orchestrator.resources import configs_dir

    target = directory.absolute()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"quickstart: {directory} exists and is not an empty directory")
    source = configs_dir() / "quickstart"
    try:
        target.mkdir(parents=True, exist_ok=True)
        for name in ("plan.yaml", "agent.py", "README.md"):
            shutil.copyfile(source / name, target / name)
        (target / "agent.py").chmod(0o755)
        (target / ".gitignore").write_text("__pycache__/\n.orchestrate/\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"quickstart: cannot create {directory}: {exc.strerror or exc}") from exc
    ident = ["-c", "user.name=orchestrate", "-c", "user.email=orchestrate@localhost"]
    steps = (
        ["git", "init", "--quiet", "--initial-branch=main"],
        ["git", *ident, "add", "--all"],
        [
            "git",
            *ident,
            "commit",
            "--quiet",
            "--no-verify",
            "-m",
            "quickstart: demo plan and agent",
        ],
    )
    for argv in steps:
        proc = subprocess.run(argv, cwd=target, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise UsageError(f"quickstart: `{' '.join(argv)}` failed: {proc.stderr.strip()}")
    load_plan(target / "plan.yaml")  # the bundled demo must be valid; a PlanError here is a bug
    shown = shlex.quote(str(directory))
    typer.echo(f"created a demo repository in {shown}: plan.yaml, agent.py (a scripted agent)")
    typer.echo("next:")
    typer.echo(f"  cd {shown} && orchestrate plan plan.yaml && orchestrate run plan.yaml")
