"""What the pages show, read from the store and the disk, redacted, ready for the templates.

Every text that leaves here went through the server's :class:`Redactor` (the
environment's secrets and the Redis password). The board of a run (the part
that changes) is built at most once per ``BOARD_TTL`` for all viewers.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from orchestrator.errors import UsageError
from orchestrator.paths import StateLayout
from orchestrator.plan.models import Plan, format_duration
from orchestrator.redact import Redactor
from orchestrator.state.keys import check_name
from orchestrator.state.runs import recorded_plan
from orchestrator.state.status import TeamStatus
from orchestrator.state.store import Event, RunState, Store
from orchestrator.views.board import BoardSnapshot, build_snapshot

BOARD_TTL = 0.5
"""Seconds one built board serves every viewer of the run."""
RUNS_SHOWN = 200
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")


class NotFound(Exception):
    """An unknown run, team or file: the page is a 404."""


def clean(text: str, redactor: Redactor) -> str:
    """A line as a page shows it: secrets out, terminal escapes out."""
    return _ANSI.sub("", redactor.redact(text))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{seconds:.0f}s" if seconds < 60 else format_duration(seconds)


def stamp(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""


@dataclass
class Board:
    """One run's changing part, rendered once and shared by every viewer."""

    at: float
    snapshot: BoardSnapshot
    report: dict[str, Any]
    plan: Plan | None
    host: str | None = None
    """Where the run's orchestrator (and so its agents) runs, while one does."""
    payload: dict[str, Any] | None = None
    """What the run page's stream sends (built once per board)."""


@dataclass
class Views:
    """Reads for the pages of one server."""

    store: Store
    layout: StateLayout
    redactor: Redactor
    _boards: dict[str, Board] = field(default_factory=dict)
    _locks: dict[str, anyio.Lock] = field(default_factory=dict)
    _plans: dict[str, Plan | None] = field(default_factory=dict)

    async def run(self, run_id: str) -> RunState:
        try:
            check_name("run", run_id)
            return await self.store.get_run(run_id)
        except UsageError as exc:
            raise NotFound(f"no run {run_id!r}") from exc

    async def plan(self, run: RunState) -> Plan | None:
        if run.run_id not in self._plans:
            self._plans[run.run_id] = recorded_plan(run)
        return self._plans[run.run_id]

    async def runs(self) -> list[dict[str, Any]]:
        """One row per run, newest first."""
        rows = []
        now = time.time()
        for run_id in (await self.store.list_runs())[:RUNS_SHOWN]:
            run = await self.store.get_run(run_id)
            teams = await self.store.get_teams(run_id)
            finished = _float(run.meta.get("finished"))
            created = run.created
            rows.append(
                {
                    "id": run_id,
                    "status": run.status,
                    "plan": run.meta.get("plan_name", ""),
                    "started": stamp(created),
                    "duration": duration(
                        None if created is None else (finished or now) - created
                    ),
                    "done": sum(t.status is TeamStatus.SUCCEEDED for t in teams.values()),
                    "total": len(teams),
                    "cost": run.usage.cost_usd,
                }
            )
        return rows

    async def board(self, run_id: str) -> Board:
        """The run's board, at most ``BOARD_TTL`` old (one build serves every viewer)."""
        lock = self._locks.setdefault(run_id, anyio.Lock())
        async with lock:
            got = self._boards.get(run_id)
            if got is not None and time.monotonic() - got.at < BOARD_TTL:
                return got
            from orchestrator.views.report import build_report

            run = await self.run(run_id)
            plan = await self.plan(run)
            snapshot = await build_snapshot(self.store, run_id, redactor=self.redactor, plan=plan)
            report = await build_report(self.store, run_id)
            holder = None if snapshot.done else await self.store.lease_holder(run_id)
            host = holder.host if holder is not None else None
            board = Board(time.monotonic(), snapshot, report, plan, host)
            self._boards[run_id] = board
            return board

    async def events(self, run_id: str, last: int = 100) -> list[str]:
        """The run's newest events as lines, newest first."""
        from orchestrator.views.board import format_event

        got: list[Event] = []
        after = "0-0"
        while True:
            page = await self.store.read_events(run_id, after=after, count=1000)
            got = (got + page)[-last:]
            if len(page) < 1000:
                break
            after = page[-1].id
        return [clean(format_event(e), self.redactor) for e in reversed(got)]

    def forget(self, run_id: str) -> None:
        """The next :meth:`board` is built afresh (an event arrived)."""
        self._boards.pop(run_id, None)

    async def team(self, run_id: str, team: str) -> dict[str, Any]:
        """Everything the team page shows but its log."""
        run = await self.run(run_id)
        if team not in run.team_ids:
            raise NotFound(f"run {run_id} has no team {team!r}")
        plan = await self.plan(run)
        spec = None
        if plan is not None and team in {t.id for t in plan.teams}:
            spec = plan.team(team)
        from orchestrator.views.report import _outcome

        state = await self.store.get_team(run_id, team)
        attempts = []
        for a in await self.store.get_attempts(run_id, team):
            prompt_path = a.fields.get("prompt_file") or str(
                self.layout.prompt_file(run_id, team, a.attempt)
            )
            attempts.append(
                {
                    "n": a.attempt,
                    "status": _outcome(a, state),
                    "agent_id": a.agent_id or "",
                    "started": stamp(a.started),
                    "duration": duration(
                        (a.finished - a.started) if a.finished and a.started else None
                    ),
                    "exit_code": a.exit_code,
                    "reason": self.redactor.redact(a.reason or ""),
                    "uncounted": a.fields.get("uncounted", ""),
                    "prompt": (prompt := self._read(Path(prompt_path))),
                    "feedback": feedback_of(prompt),
                    "checks": self._checks(a.fields.get("checks")),
                    "tokens": a.usage.tokens,
                    "cost": a.usage.cost_usd,
                }
            )
        patterns = spec.deliverables if spec is not None else ()
        found = [
            {"path": p, "present": digest is not None}
            for p, digest in sorted(state.deliverables.items())
        ]
        return {
            "id": team,
            "name": spec.title if spec is not None else team,
            "task": self.redactor.redact(spec.task) if spec is not None else "",
            "depends_on": list(spec.depends_on) if spec is not None else [],
            "status": state.status,
            "attempt": state.attempt,
            "agent_id": state.agent_id or "",
            "branch": state.branch or "",
            "reason": self.redactor.redact(state.error or state.reason or ""),
            "tokens": state.usage.tokens,
            "cost": state.usage.cost_usd,
            "commands": [_command(c) for c in spec.checks] if spec is not None else [],
            "patterns": list(patterns),
            "files": found,
            "attempts": attempts,
            "run_status": run.status,
        }

    def _read(self, path: Path, limit: int = 200_000) -> str:
        try:
            with path.open("rb") as fh:
                text = fh.read(limit).decode("utf-8", "replace")
        except OSError:
            return ""
        return clean(text, self.redactor)

    def _checks(self, raw: str | None) -> list[dict[str, Any]]:
        try:
            stored = json.loads(raw) if raw else []
        except ValueError:
            return []
        out = []
        for c in stored if isinstance(stored, list) else []:
            if not isinstance(c, dict):
                continue
            out.append(
                {
                    "command": self.redactor.redact(str(c.get("command", ""))),
                    "passed": bool(c.get("passed")),
                    "exit_code": c.get("exit_code"),
                    "timed_out": bool(c.get("timed_out")),
                    "duration": duration(_float(str(c.get("duration") or ""))),
                    "output": clean(str(c.get("output") or ""), self.redactor),
                }
            )
        return out

    async def file(self, run_id: str, team: str, path: str) -> tuple[str, str]:
        """A deliverable's content on the team's branch: (branch, text). NotFound if absent."""
        run = await self.run(run_id)
        if team not in run.team_ids:
            raise NotFound(f"run {run_id} has no team {team!r}")
        state = await self.store.get_team(run_id, team)
        if path not in state.deliverables or state.deliverables[path] is None:
            raise NotFound(f"team {team} has no deliverable {path!r}")
        root = run.meta.get("repo_root")
        branch = state.branch or ""
        if not root or not branch:
            raise NotFound(f"team {team} has no branch yet")
        text = await _show(Path(root), branch, path)
        return branch, clean(text, self.redactor)


async def _show(root: Path, branch: str, path: str) -> str:
    """``git show BRANCH:PATH`` (at most 1 MB), or NotFound."""
    proc = await anyio.run_process(
        ["git", "-C", str(root), "show", f"{branch}:{path.lstrip('/')}"], check=False
    )
    if proc.returncode != 0:
        raise NotFound(f"{path} is not on {branch}")
    return proc.stdout[:1_000_000].decode("utf-8", "replace")


FEEDBACK_HEADING = "## Your previous attempt did not pass"


def feedback_of(prompt: str) -> str:
    """The retry feedback inside a prompt (``retry.md.j2``'s section), or ``""``."""
    start = prompt.find(FEEDBACK_HEADING)
    if start < 0:
        return ""
    lines = prompt[start:].splitlines()
    out = [lines[0]]
    fenced = False
    for line in lines[1:]:
        if line.startswith("```"):
            fenced = not fenced
        elif line.startswith(("# ", "## ")) and not fenced:
            break
        out.append(line)
    return "\n".join(out).strip()


def _command(check: str | Sequence[str]) -> str:
    from orchestrator.verify import command_text

    return command_text(check)


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def statuses(snapshot: BoardSnapshot) -> Mapping[str, str]:
    return {row.id: row.status for row in snapshot.teams}
