"""Markdown plan -> validated plan.yaml text: the offline importer's front door."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from orchestrator.errors import PlanError, Problem, UsageError
from orchestrator.plan import Plan, format_duration


@dataclass(frozen=True)
class ImportResult:
    """A converted plan: its YAML, the validated model, what was guessed and what was left out."""

    yaml_text: str
    plan: Plan
    notes: tuple[str, ...]
    unplaced: tuple[str, ...]


def validate_text(text: str, *, path: Path) -> Plan:
    """Validate plan YAML the way ``orchestrate validate`` does (repository not checked).

    Uses :func:`orchestrator.planload.load_plan_text` when that module exists;
    else the pydantic models alone. Raises :class:`PlanError`.
    """
    try:
        planload = importlib.import_module("orchestrator.planload")
    except ImportError:
        planload = None
    if planload is not None:
        loaded = planload.load_plan_text(text, path=path, check_repo=False)
        plan: Plan = loaded.plan
        return plan
    try:
        return Plan.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise PlanError([Problem(file=str(path), where="", message=f"not YAML: {exc}")]) from exc
    except ValidationError as exc:
        problems = [
            Problem(file=str(path), where=".".join(str(p) for p in err["loc"]), message=err["msg"])
            for err in exc.errors()
        ]
        raise PlanError(problems) from exc


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

    found = walk(parse_markdown(text))
    if not found.units:
        from orchestrator.mdimport.build import _units_from_tables

        _units_from_tables(found)
    if not found.units:
        raise UsageError(
            f"{source}: no teams found: expected sections or list items such as '### Team 1: ...', "
            "'## Stream A', a 'Tasks:' list under a phase, or **Task:** / **Deliverables:** lines"
        )
    draft = build(found, source=source)
    header = [
        f"Imported from {source} by `orchestrate import` (offline reader).",
        "A comment marks every value the document did not state outright: check those.",
    ]
    yaml_text = to_yaml(draft.data, draft.comments, header)
    plan = validate_text(yaml_text, path=plan_path or Path(source).with_suffix(".yaml"))
    return ImportResult(
        yaml_text=yaml_text, plan=plan, notes=tuple(draft.notes), unplaced=tuple(draft.unplaced)
    )


def load_markdown_plan(path: Path) -> ImportResult:
    """Read and convert a Markdown plan file (for ``orchestrate run PLAN.md``)."""
    from orchestrator.planload import read_plan_file  # regular files only, size-limited

    try:
        text = read_plan_file(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {path}: {exc}") from exc
    return import_markdown(text, source=path.name, plan_path=path.with_suffix(".yaml"))


def summary_lines(result: ImportResult) -> list[str]:
    """What the importer understood: one line per team, then the guesses and the leftovers."""
    plan = result.plan
    out = [f"plan {plan.name}: {len(plan.teams)} team(s)"]
    for team in plan.teams:
        head = f"  {team.id}" + (f" ({team.name})" if team.name else "")
        bits = ["after " + ", ".join(team.depends_on) if team.depends_on else "first"]
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
    if result.notes:
        out.append(f"guessed ({len(result.notes)}):")
        out.extend(f"  {n}" for n in result.notes)
    if result.unplaced:
        out.append(f"not placed ({len(result.unplaced)}):")
        out.extend(f"  {u}" for u in result.unplaced)
    return out
