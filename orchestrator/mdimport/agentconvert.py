"""``orchestrate import --agent KIND``: an agent CLI converts the plan, we validate.

The agent runs like a team's agent (same adapter, same supervised process) in
a scratch folder: its prompt holds the Markdown, the plan format and, from the
second try on, the problems validation found in its last answer. It writes
``plan.yaml`` in its working folder (or prints it in a ```yaml block). At most
:data:`MAX_TRIES` tries; the last problems are raised as a :class:`PlanError`.
"""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from pathlib import Path

from orchestrator.errors import AgentError, PlanError
from orchestrator.mdimport.convert import ImportResult, validate_text
from orchestrator.plan.models import AgentConfig, Plan

MAX_TRIES = 3
DEFAULT_TIMEOUT = 15 * 60.0
_YAML_BLOCK = re.compile(r"```ya?ml[^\n]*\n(.*?)```", re.DOTALL)

_INSTRUCTIONS = """\
Convert the Markdown coordination plan below into an `orchestrate` plan file.

Write the result to the file {answer} (YAML, nothing else in it). Rules:
- `version: 1`, `name:` a slug of the document title, `repo: .`.
- One entry of `teams:` per team / session / task / stream / work item, with a
  unique `id` (letters, digits, '-', '_'), a non-empty `task`, `depends_on`
  (ids of upstream teams), `deliverables` (repository paths; drop a leading
  '/'), `estimate` (e.g. 30m, 4h, 72h: the upper bound of a range; at most 168h),
  `acceptance` (prose criteria: go/no-go, success criteria, completion signals).
- `role:` only one of: {roles}; otherwise leave it out.
- A sequential phase: each task depends on the one before; a parallel phase:
  each stream depends on the end of the phase before.
- An integration section's test command in backticks becomes `integration.test`.
- Put a YAML comment on every value you had to guess.

The plan format, as JSON Schema:
{schema}

The Markdown plan ({source}):
----8<----
{markdown}
----8<----
"""

_RETRY = """\

Your previous answer did not validate. The problems:
{problems}

Your previous answer:
----8<----
{previous}
----8<----
Write the corrected plan to {answer}.
"""


def _prompt(markdown: str, source: str, answer: Path, problems: str, previous: str) -> str:
    from orchestrator.mdimport.words import BUILTIN_ROLES

    schema = json.dumps(Plan.model_json_schema(), indent=1)
    text = _INSTRUCTIONS.format(
        answer=answer,
        roles=", ".join(BUILTIN_ROLES),
        schema=schema,
        source=source,
        markdown=markdown,
    )
    if problems:
        text += _RETRY.format(problems=problems, previous=previous, answer=answer)
    return text


async def _one_try(
    config: AgentConfig, workdir: Path, prompt: str, attempt: int, limit: float
) -> tuple[str, list[str]]:
    """Run the agent once; (its answer file's text or '', its output lines).

    It runs as every agent does (:func:`orchestrator.agents.runner.run_agent`): the
    user's environment without orchestrate's own (no ``ORCHESTRATE_*``, so no
    Redis URL), its ``env:`` on top, the prompt redacted and never on argv.
    """
    from orchestrator.agents.runner import AgentJob, run_agent, run_secrets
    from orchestrator.envs import work_env

    kind = config.kind or "command"
    job = AgentJob(
        config=config.model_copy(update={"kind": kind}),
        team_id="import",
        attempt=attempt,
        agent_id=uuid.uuid4().hex[:12],
        workdir=workdir,
        prompt=prompt,
        prompt_file=workdir / f"prompt.{attempt}.md",
        log=workdir / f"agent.{attempt}.log",
        status=workdir / f"agent.{attempt}.status",
        env=work_env(allow=None, layers=[config.env]),
        secrets=run_secrets(),
    )
    lines: list[str] = []

    async def on_lines(shown: list[str], _session: str | None) -> None:
        lines.extend(shown)

    ran = await run_agent(job, timeout=limit, stall_timeout=None, on_lines=on_lines)
    verdict = ran.verdict
    answer = workdir / "plan.yaml"
    if answer.is_file():
        text = answer.read_text(encoding="utf-8")
        answer.unlink()
        return text, lines
    shown = "\n".join([*lines, verdict.result or ""])
    blocks = _YAML_BLOCK.findall(shown)
    if blocks:
        return str(blocks[-1]), lines
    if not verdict.success:
        raise AgentError(f"agent {kind} failed: {verdict.reason or 'no plan written'}")
    return "", lines


async def convert_async(
    text: str,
    *,
    source: str,
    config: AgentConfig,
    output: Path,
    tries: int = MAX_TRIES,
    limit: float = DEFAULT_TIMEOUT,
) -> ImportResult:
    """Have the agent of ``config`` convert Markdown ``text``; validate; feed problems back."""
    problems = previous = ""
    last_error: PlanError | None = None
    with tempfile.TemporaryDirectory(prefix="orchestrate-import-") as tmp:
        workdir = Path(tmp)
        for attempt in range(1, tries + 1):
            prompt = _prompt(text, source, workdir / "plan.yaml", problems, previous)
            answer, _ = await _one_try(config, workdir, prompt, attempt, limit)
            try:
                if not answer.strip():
                    raise PlanError([])
                plan = validate_text(answer, path=output)
            except PlanError as exc:
                last_error = exc
                problems = "\n".join(str(p) for p in exc.problems) or "no plan was written"
                previous = answer
                continue
            note = f"converted by agent {config.kind} (try {attempt} of {tries})"
            return ImportResult(yaml_text=answer, plan=plan, notes=(note,), unplaced=())
    if last_error is not None and last_error.problems:
        raise last_error
    raise AgentError(f"agent {config.kind} wrote no plan in {tries} tries")


def convert_with_agent(
    markdown: Path, *, kind: str, output: Path, command: str | None = None
) -> ImportResult:
    """Synchronous entry for the CLI: ``kind`` is a built-in agent kind."""
    import anyio
    from pydantic import ValidationError

    from orchestrator.errors import UsageError

    try:
        config = AgentConfig.model_validate({"kind": kind, "command": command})
    except ValidationError as exc:
        raise UsageError(f"--agent {kind}: not an agent kind") from exc
    from orchestrator.plan.load import read_plan_file  # regular files only, size-limited

    try:
        text = read_plan_file(markdown).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"cannot read {markdown}: {exc}") from exc
    return anyio.run(
        lambda: convert_async(text, source=markdown.name, config=config, output=output)
    )
