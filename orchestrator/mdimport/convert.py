"""Markdown plan -> validated plan.yaml text: the offline importer's front door."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import OrchestrateError, UsageError
from orchestrator.plan.load import load_plan_text
from orchestrator.plan.models import AgentConfig, Plan, format_duration

READER_FAILED = "the offline reader could not read this document"


@dataclass(frozen=True)
class ImportResult:
    """A converted plan: its YAML, the validated model, what was guessed and what was left out.

    ``unresolved``: every line that names another team or speaks of an order and
    gave no edge (``line N: ...``). ``no_edges``: when several teams got no edge
    at all although the text speaks of dependencies, the lines that do (the
    caller refuses or warns, see :func:`no_edges_message`).
    """

    yaml_text: str
    plan: Plan
    notes: tuple[str, ...]
    unplaced: tuple[str, ...]
    unresolved: tuple[str, ...] = ()
    no_edges: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()  # commands found inside collapsed <details> blocks


def validate_text(text: str, *, path: Path) -> Plan:
    """Validate plan YAML the way ``orchestrate validate`` does (repository not checked).

    Raises :class:`PlanError`.
    """
    return load_plan_text(text, path=path, check_repo=False).plan


def import_markdown(
    text: str, *, source: str = "plan.md", plan_path: Path | None = None
) -> ImportResult:
    """Convert Markdown ``text`` (named ``source`` in messages) offline.

    Raises :class:`UsageError` when the document names no team at all, and
    :class:`PlanError` should the result not validate.
    """
    from orchestrator.mdimport.build import build
    from orchestrator.mdimport.emit import to_yaml
    from orchestrator.mdimport.interpret import walk
    from orchestrator.mdimport.parse import parse_markdown

    try:
        found = walk(parse_markdown(text))
        draft = build(found, source=source)
    except RecursionError as exc:  # a document nested deeper than the reader goes
        raise UsageError(
            f"{source}: {READER_FAILED}: nested too deeply; convert it with --agent KIND"
        ) from exc
    if not found.units:
        raise UsageError(
            f"{source}: no teams found: expected sections or list items such as '### Team 1: ...', "
            "'## Stream A', a 'Tasks:' list under a phase, or **Task:** / **Deliverables:** lines"
        )
    header = [
        f"Imported from {source} by `orchestrate import` (offline reader).",
        "A comment marks every value the document did not state outright: check those.",
    ]
    yaml_text = to_yaml(draft.data, draft.comments, header)
    plan = validate_text(yaml_text, path=plan_path or Path(source).with_suffix(".yaml"))
    return ImportResult(
        yaml_text=yaml_text,
        plan=plan,
        notes=tuple(draft.notes),
        unplaced=tuple(draft.unplaced),
        unresolved=tuple(dict.fromkeys(draft.unresolved)),
        no_edges=tuple(draft.no_edges),
        hidden=tuple(draft.hidden),
    )


def load_markdown_plan(path: Path) -> ImportResult:
    """Read and convert a Markdown plan file (for ``orchestrate run PLAN.md``)."""
    from orchestrator.plan.load import read_plan_file  # regular files only, size-limited

    try:
        text = read_plan_file(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    return import_markdown(text, source=path.name, plan_path=path.with_suffix(".yaml"))


def _agent_command(config: AgentConfig, team: str) -> str | None:
    """The command line the agent's adapter builds, with placeholders for the attempt's
    worktree and prompt; None when the adapter cannot show it without a real attempt."""
    from orchestrator.agents import adapter_for
    from orchestrator.agents.base import AgentContext

    if config.kind is None:
        return None
    ctx = AgentContext(
        config=config,
        kind=config.kind,
        team_id=team,
        attempt=1,
        agent_id="AGENT_ID",
        workdir=Path("WORKTREE"),
        prompt_file=Path("PROMPT_FILE"),
        prompt_text="PROMPT",
    )
    try:
        return shlex.join(adapter_for(config.kind).argv(ctx))
    except (OrchestrateError, OSError, ValueError, KeyError):  # the program name is shown instead
        return None


def commands(plan: Plan) -> list[str]:
    """Every command a run of ``plan`` starts, one line each: each agent's program (and
    who uses it), each team's checks, the integration's test command."""
    from orchestrator.agents import executable
    from orchestrator.run.preflight import agents_in_use

    out: list[str] = []
    for name, users in agents_in_use(plan).items():
        config = plan.agent_config(name)
        if config.kind is None:
            config = config.model_copy(update={"kind": "command"})
        shown = _agent_command(config, users[0])
        if shown is None:
            command = config.command
            shown = (
                (command if isinstance(command, str) else shlex.join(command))
                if command is not None
                else executable(config)
            )
            if config.args:
                shown = f"{shown} {shlex.join(config.args)}"
        out.append(f"agent {name}: {shown} (for {', '.join(users)})")
    for team in plan.teams:
        for check in team.checks:
            out.append(
                f"check of {team.id}: {check if isinstance(check, str) else shlex.join(check)}"
            )
    test = plan.integration.test
    for cmd in (test,) if isinstance(test, str | list) else test or ():
        out.append(f"integration test: {cmd if isinstance(cmd, str) else shlex.join(cmd)}")
    return out


def no_edges_message(result: ImportResult) -> list[str]:
    """The warning for several teams without a single dependency although the text speaks
    of dependencies ([] when that is not the case)."""
    if not result.no_edges:
        return []
    return [
        f"no dependency was read between the {len(result.plan.teams)} teams, although these "
        "lines speak of an order:",
        *(f"  {line}" for line in result.no_edges),
        "every team would start at once; fix the plan, convert it with --agent KIND, "
        "or pass --no-deps-ok if the teams really are independent",
    ]


def summary_lines(result: ImportResult) -> list[str]:
    """What the importer understood: one line per team, the commands a run starts, then the
    guesses, the leftovers and every dependency it could not read."""
    plan = result.plan
    out = [f"plan {plan.name}: {len(plan.teams)} team(s)"]
    for team in plan.teams:
        head = f"  {team.id}" + (f" ({team.name})" if team.name else "")
        bits = ["after " + ", ".join(team.depends_on) if team.depends_on else "first"]
        if team.agent:
            bits.append(f"agent {team.agent}")
        if team.role:
            bits.append(f"role {team.role}")
        if team.estimate:
            bits.append(f"est {format_duration(team.estimate)}")
        bits.append(f"{len(team.deliverables)} deliverable(s)")
        if team.acceptance:
            bits.append(f"{len(team.acceptance)} criteria")
        out.append(f"{head}: {'; '.join(bits)}")
        for path in team.deliverables:
            out.append(f"      {path}")
    test = plan.integration.test
    if test:
        out.append(f"integration test: {test!r}")
    cmds = commands(plan)
    out.append(f"commands a run starts ({len(cmds)}):")
    out.extend(f"  {c}" for c in cmds)
    out.extend(f"  note: {h}" for h in result.hidden)
    if result.notes:
        out.append(f"guessed ({len(result.notes)}):")
        out.extend(f"  {n}" for n in result.notes)
    if result.unplaced:
        out.append(f"not placed ({len(result.unplaced)}):")
        out.extend(f"  {u}" for u in result.unplaced)
    if result.unresolved:
        out.append(
            f"dependencies not read ({len(result.unresolved)}; check them, or convert with "
            "--agent KIND):"
        )
        out.extend(f"  {u}" for u in result.unresolved)
    return [_shown(line) for line in out]


def _shown(text: str) -> str:
    """``text`` as it may reach a terminal: the document is someone else's, so a control
    or format character (ESC of an OSC 52 clipboard write, CR, a right-to-left override)
    is written escaped (``\\x1b``), never acted on; the commands shown stay those that run."""
    if text.isprintable():
        return text
    return "".join(c if _safe_char(c) else c.encode("unicode_escape").decode() for c in text)


def _safe_char(c: str) -> bool:
    """Printable, or a space or emoji joiner (a title with a no-break space or a joined emoji)."""
    return c.isprintable() or c in "\u00a0\u200c\u200d\u202f\u3000"
