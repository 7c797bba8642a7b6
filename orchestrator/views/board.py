"""The board: where a run stands, one row per team, for ``status``, ``watch`` and ``run``.

:func:`build_snapshot` reads a :class:`BoardSnapshot` from the store (and the
run's recorded plan, for dependencies, attempts allowed and deliverables);
:func:`render_board` draws it with rich to fit the console (80 columns at
least: long fields are cut with an ellipsis); :func:`snapshot_json` is the
stable ``status --json`` document, whose JSON Schema is :data:`STATUS_SCHEMA`
(documented in ``docs/board.md``). :func:`live_board` redraws the board on
every event of the run (at most :data:`MAX_REFRESH` times a second) and
:func:`plain_events` prints timestamped event lines where there is no
terminal.

Every text an agent or a plan may have written (last lines, reasons) is made
safe for a terminal (:func:`~orchestrator.views.logs.printable`) before it reaches
the board, ``status --json`` or an event line: an escape sequence in an agent's
output is shown, never obeyed.

Deliverables progress is live when the board runs on the orchestrator's
machine: the team's worktree is looked at directly (a ``stat`` per path, the
first match per glob); otherwise the counts recorded at the end of each attempt
are shown.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import anyio
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.text import Text

from orchestrator.plan.models import Plan, format_duration
from orchestrator.redact import Redactor
from orchestrator.state.gates import approve_command, get_gates, reject_command
from orchestrator.state.models import parse_time
from orchestrator.state.status import RunStatus, TeamStatus
from orchestrator.views.logs import last_line, printable

if TYPE_CHECKING:
    from orchestrator.state.models import LeaseHolder
    from orchestrator.state.store import Event, Store, TeamState

SCHEMA_VERSION = 1
MAX_REFRESH = 4.0
"""Redraws per second at most."""
IDLE_REFRESH_MS = 1_000
"""Redraw at least this often (elapsed times, last lines, live deliverables)."""
Phase = Literal["teams", "integration", "done"]

_STATUS_STYLE: dict[str, str] = {
    TeamStatus.PENDING: "dim",
    TeamStatus.RUNNING: "bold yellow",
    TeamStatus.VERIFYING: "cyan",
    TeamStatus.RETRYING: "dark_orange",
    TeamStatus.SUCCEEDED: "green",
    TeamStatus.FAILED: "bold red",
    TeamStatus.BLOCKED: "magenta",
    TeamStatus.CANCELLED: "dim red",
    TeamStatus.AWAITING_APPROVAL: "bold blue",
    TeamStatus.PAUSED: "blue",
    RunStatus.INTEGRATING: "bold cyan",
    RunStatus.INTERRUPTED: "dark_orange",
}
"""A team's or a run's status -> its style (the run's pending, running... are the teams')."""
_GLYPH: dict[str, str] = {
    TeamStatus.PENDING: "·",
    TeamStatus.RUNNING: "▶",
    TeamStatus.VERIFYING: "?",
    TeamStatus.RETRYING: "↻",
    TeamStatus.SUCCEEDED: "✔",
    TeamStatus.FAILED: "✘",
    TeamStatus.BLOCKED: "⊘",
    TeamStatus.CANCELLED: "■",
    TeamStatus.AWAITING_APPROVAL: "⏸",
    TeamStatus.PAUSED: "⏸",
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ApprovalRow(_Model):
    """A team's approval gate (``approval: true``) as the board shows it."""

    status: str = Field(description="awaiting, approved or rejected.")
    attempt: int = Field(ge=0, description="The attempt whose work the gate is about.")
    by: str | None = Field(description="Who decided (user@host), once decided.")
    at: float | None = Field(description="Epoch seconds of the decision.")
    note: str | None = Field(description="The approver's note.")
    reason: str | None = Field(description="Why it was rejected.")
    approve: str = Field(description="The command that approves it.")
    reject: str = Field(description="The command that rejects it (fill in the reason).")


class TeamRow(_Model):
    """One team on the board (and one element of ``teams`` in ``status --json``)."""

    id: str = Field(description="The team id.")
    name: str | None = Field(description="The team's human-readable name, if the plan gives one.")
    status: str = Field(
        description="pending, running, verifying, retrying, succeeded, failed, blocked, "
        "cancelled, awaiting_approval, paused."
    )
    agent_id: str | None = Field(description="The agent id of the current (last) attempt.")
    host: str | None = Field(
        description="The node that runs (ran) the current attempt, with the ray executor."
    )
    session_id: str | None = Field(
        description="The agent CLI's own session (thread) id, where it reports one."
    )
    attempt: int = Field(ge=0, description="The current attempt; 0 before the first.")
    max_attempts: int = Field(
        ge=0,
        description="Attempts allowed: retries + 1, plus any attempt not counted "
        "(cut short by a crash, cancelled); what the agent's prompt says.",
    )
    deliverables_found: int = Field(ge=0, description="Deliverables present and non-empty.")
    deliverables_total: int = Field(ge=0, description="Deliverables the plan lists.")
    started: float | None = Field(description="Epoch seconds the current attempt started.")
    finished: float | None = Field(description="Epoch seconds the team finished.")
    elapsed_s: float | None = Field(
        description="Seconds since the team's first attempt started (to finished when done): "
        "every attempt and the pauses between them."
    )
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0)
    last_line: str | None = Field(description="The newest log line (human form), if any.")
    waiting_for: list[str] = Field(
        description="For a pending team: the upstream teams not yet succeeded."
    )
    reason: str | None = Field(description="Why it failed, was blocked or is retrying.")
    approval: ApprovalRow | None = Field(
        default=None, description="Its approval gate, once its work waited at one."
    )
    paused_until: float | None = Field(
        default=None,
        description="Status paused (a usage limit): epoch seconds its provider may start "
        "agents again.",
    )


class BoardSnapshot(_Model):
    """A whole run at one moment: the ``status --json`` document."""

    schema_version: Literal[1] = Field(description="Bumped on an incompatible change.")
    run_id: str
    status: str = Field(
        description="pending, running, integrating, succeeded, failed, interrupted, cancelled, "
        "paused (waiting for a person: an approval, or a budget raised)."
    )
    phase: Phase = Field(description="teams, integration or done.")
    plan_name: str | None
    created: float | None = Field(description="Epoch seconds the run was created.")
    finished: float | None = Field(description="Epoch seconds the run ended.")
    elapsed_s: float | None
    teams_total: int = Field(ge=0)
    teams_succeeded: int = Field(ge=0)
    teams_failed: int = Field(ge=0, description="Failed, blocked or cancelled teams.")
    deliverables_found: int = Field(ge=0)
    deliverables_total: int = Field(ge=0)
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0)
    reason: str | None = Field(description="Why the run ended as it did, when it says.")
    at: float = Field(description="Epoch seconds this snapshot was taken.")
    teams: list[TeamRow] = Field(description="One entry per team, in plan order.")

    @property
    def done(self) -> bool:
        return self.status in RunStatus.DONE


STATUS_SCHEMA: dict[str, Any] = BoardSnapshot.model_json_schema()
"""The JSON Schema of ``orchestrate status --json`` (also in docs/board.md)."""


def snapshot_json(snapshot: BoardSnapshot) -> dict[str, Any]:
    """The ``status --json`` document (validates against :data:`STATUS_SCHEMA`)."""
    return snapshot.model_dump(mode="json")


# -- building -------------------------------------------------------------------------


def _present(root: Path, pattern: str) -> bool:
    """Is there a non-empty file for this deliverable (a path or a glob) under ``root``?"""
    rel = pattern.lstrip("/")
    if not any(c in rel for c in "*?["):
        try:
            return (root / rel).stat().st_size > 0
        except OSError:
            return False
    try:
        return any(p.is_file() and p.stat().st_size > 0 for p in root.glob(rel))
    except (OSError, ValueError):
        return False


def _found(state: TeamState, patterns: tuple[str, ...]) -> int:
    if state.status is TeamStatus.SUCCEEDED:
        return len(patterns)
    if state.worktree and state.status in TeamStatus.IN_FLIGHT:
        root = Path(state.worktree)
        if root.is_dir():
            return sum(_present(root, p) for p in patterns)
    recorded = [path.lstrip("/") for path, digest in state.deliverables.items() if digest]
    return sum(any(fnmatch.fnmatchcase(path, p.lstrip("/")) for path in recorded) for p in patterns)


def _phase(status: str) -> Phase:
    if status in RunStatus.DONE:
        return "done"
    return "integration" if status == RunStatus.INTEGRATING else "teams"


async def orchestrator_gone(store: Store, run_id: str) -> bool:
    """Does no live orchestrator hold the run's lease (a killed ``orchestrate run``)?

    A holder on another host cannot be checked: it counts as alive until its lease expires.
    """
    from orchestrator.state.lease import live_holder

    return await live_holder(store, run_id) is None


async def live_runs_of(
    store: Store, plan_name: str, *, newest: int = 20
) -> list[tuple[str, LeaseHolder]]:
    """The runs of the plan named ``plan_name`` (among the ``newest`` runs) that a live
    orchestrator still drives: (run id, lease holder), newest first."""
    from orchestrator.state.lease import live_holder

    found = []
    ids = [r for r in await store.list_runs() if r.startswith(f"{plan_name}-")][:newest]
    for run_id in ids:
        run = await store.get_run(run_id)
        if run.status.done or run.meta.get("plan_name", plan_name) != plan_name:
            continue
        holder = await live_holder(store, run_id)
        if holder is not None:
            found.append((run_id, holder))
    return found


async def build_snapshot(
    store: Store,
    run_id: str,
    *,
    now: float | None = None,
    redactor: Redactor | None = None,
    plan: Plan | None = None,
) -> BoardSnapshot:
    """The run as it stands; UsageError for an unknown run."""
    run = await store.get_run(run_id)
    states = await store.get_teams(run_id)
    if plan is None:
        from orchestrator.state.runs import recorded_plan

        plan = recorded_plan(run)
    now = time.time() if now is None else now
    redactor = redactor or Redactor.from_env()
    rows: list[TeamRow] = []
    gated_ids = {t.id for t in plan.teams if t.approval} if plan is not None else None
    gated = [t for t in states if gated_ids is None or t in gated_ids]
    gates = await get_gates(store, run_id, gated) if gated else {}
    for team_id, state in states.items():
        team = None
        if plan is not None:
            try:
                team = plan.team(team_id)
            except KeyError:
                team = None
        patterns = team.deliverables if team is not None else ()
        deps = team.depends_on if team is not None else ()
        waiting = [
            d
            for d in deps
            if state.status is TeamStatus.PENDING
            and getattr(states.get(d), "status", "") != TeamStatus.SUCCEEDED
        ]
        max_attempts = plan.retries(team) + 1 if plan is not None and team is not None else 0
        recorded = state.fields.get("max_attempts", "")
        if recorded.isdigit():  # the engine's count, uncounted (crashed, cancelled) attempts in
            max_attempts = int(recorded)
        started = state.started if state.attempt else None
        first = parse_time(state.fields.get("first_started")) or started  # every attempt's time
        elapsed = None
        if first is not None:
            elapsed = max(0.0, (state.finished or now) - first)
        line = await last_line(store, run_id, team_id)
        gate = gates.get(team_id)
        approval = None
        if gate is not None:
            approval = ApprovalRow(
                status=gate.status.value,
                attempt=gate.attempt,
                by=gate.by,
                at=gate.at,
                note=printable(redactor.redact(gate.note)) if gate.note else None,
                reason=printable(redactor.redact(gate.reason)) if gate.reason else None,
                approve=approve_command(run_id, team_id),
                reject=reject_command(run_id, team_id),
            )
        rows.append(
            TeamRow(
                id=team_id,
                name=team.name if team is not None else None,
                status=state.status,
                agent_id=state.agent_id,
                host=state.fields.get("host") or None,
                session_id=state.session_id,
                attempt=state.attempt,
                max_attempts=max(max_attempts, state.attempt),
                deliverables_found=_found(state, patterns),
                deliverables_total=len(patterns),
                started=started,
                finished=state.finished,
                elapsed_s=elapsed,
                input_tokens=state.usage.input_tokens,
                output_tokens=state.usage.output_tokens,
                cost_usd=max(0.0, state.usage.cost_usd),
                last_line=printable(redactor.redact(line)) if line is not None else None,
                waiting_for=waiting,
                reason=printable(redactor.redact(state.error or state.reason or "")) or None
                if state.status
                not in (TeamStatus.RUNNING, TeamStatus.SUCCEEDED, TeamStatus.PENDING)
                else None,
                approval=approval,
                paused_until=parse_time(state.fields.get("paused_until"))
                if state.status is TeamStatus.PAUSED
                else None,
            )
        )
    reason = printable(redactor.redact(run.meta.get("reason") or "")) or None
    if not run.status.done and await orchestrator_gone(store, run_id):
        reason = f"no orchestrator is running it (killed?): `orchestrate resume {run_id}`"
    created = run.created or parse_time(run.meta.get("created"))
    finished = parse_time(run.meta.get("finished")) if run.status.done else None
    if finished is None and run.status.done:
        finished = run.updated
    return BoardSnapshot(
        schema_version=1,
        run_id=run_id,
        status=run.status,
        phase=_phase(run.status),
        plan_name=run.meta.get("plan_name"),
        created=created,
        finished=finished,
        elapsed_s=None if created is None else max(0.0, (finished or now) - created),
        teams_total=len(rows),
        teams_succeeded=sum(r.status == TeamStatus.SUCCEEDED for r in rows),
        teams_failed=sum(r.status in TeamStatus.UNSUCCESSFUL for r in rows),
        deliverables_found=sum(r.deliverables_found for r in rows),
        deliverables_total=sum(r.deliverables_total for r in rows),
        input_tokens=run.usage.input_tokens,
        output_tokens=run.usage.output_tokens,
        cost_usd=max(0.0, run.usage.cost_usd),
        reason=reason,
        at=now,
        teams=rows,
    )


# -- rendering ------------------------------------------------------------------------


def _tokens(n: int) -> str:
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def _clock(at: float, now: float) -> str:
    """``14:05`` today (local time), ``Dec 04 14:05`` on another day."""
    local = time.localtime(at)
    same_day = time.localtime(now)[:3] == local[:3]
    return time.strftime("%H:%M" if same_day else "%b %d %H:%M", local)


def _elapsed(seconds: float | None) -> str:
    return "" if seconds is None else format_duration(seconds)


def _bar(done: int, total: int, width: int, style: str = "green") -> Text:
    text = Text()
    if total <= 0:
        return text.append("─" * width, style="dim")
    full = round(width * min(done, total) / total)
    text.append("━" * full, style=style)
    text.append("─" * (width - full), style="dim")
    return text


def _cell(
    value: str, width: int, style: str = "", *, right: bool = False, pad: bool = True
) -> Text:
    text = Text(value, style=style, no_wrap=True)
    text.truncate(width, overflow="ellipsis")
    if not pad:  # the last thing on its line: no trailing spaces
        return text
    spaces = " " * (width - text.cell_len)
    return Text(spaces, style=style) + text if right else text + Text(spaces)


def _head(s: BoardSnapshot, width: int) -> Text:
    """``run ID  STATUS  phase P  ELAPSED``; short of room the phase goes first, then the
    middle of the run id (its unique tail is kept), never the status."""
    right = f"  {_elapsed(s.elapsed_s)}"
    status = Text.assemble("  ", (s.status, _STATUS_STYLE.get(s.status, "")))
    phase = Text.assemble(("  phase ", "dim"), s.phase)
    room = width - len("run ") - status.cell_len - len(right)
    if len(s.run_id) + phase.cell_len > room:
        phase = Text()
    run_id = s.run_id
    if len(run_id) > room:
        keep = max(0, room - 1)
        tail = min(12, keep // 2)
        run_id = run_id[: keep - tail] + "…" + (run_id[-tail:] if tail else "")
    head = Text.assemble(("run ", "dim"), (run_id, "bold"), status, phase, right)
    head.truncate(width, overflow="ellipsis")
    return head


class Board:
    """A rich renderable of one snapshot; lays itself out for the console's width."""

    def __init__(self, snapshot: BoardSnapshot) -> None:
        self.snapshot = snapshot

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Group(*self.lines(max(40, options.max_width)))

    def lines(self, width: int) -> list[Text]:
        s = self.snapshot
        head = _head(s, width)
        failed = sum(t.status in (TeamStatus.FAILED, TeamStatus.BLOCKED) for t in s.teams)
        cancelled = sum(t.status == TeamStatus.CANCELLED for t in s.teams)
        done = s.teams_succeeded + s.teams_failed
        totals = (
            f" {s.teams_succeeded}/{s.teams_total} done"
            + (f", {failed} failed" if failed else "")
            + (f", {cancelled} cancelled" if cancelled else "")
            + f"  files {s.deliverables_found}/{s.deliverables_total}"
            + f"  {_tokens(s.input_tokens + s.output_tokens)} tok  ${s.cost_usd:.2f}"
        )
        bar_w = max(10, width - len(totals) - 1)
        bar_style = "red" if failed else "yellow" if cancelled else "green"
        overall = _bar(done, s.teams_total, bar_w, bar_style)
        overall.append(totals)
        overall.truncate(width, overflow="ellipsis")
        out = [head, overall]
        if s.reason and (s.done or s.status in (RunStatus.RUNNING, RunStatus.INTEGRATING)):
            for part in Text(s.reason, style="dim").wrap(Console(width=width), width)[:3]:
                part.rstrip()
                out.append(part)
        out.append(Text())
        name_w = max(4, min(14, max((len(t.id) for t in s.teams), default=4)))
        # glyph, name, status, agent, attempt, (bar), files, elapsed; then tokens, cost
        fixed = 2 + name_w + 1 + 10 + 1 + 7 + 1 + 5 + 1 + 6 + 1 + 6
        show_tokens = show_cost = True
        if width - fixed - 16 < 4:
            show_cost = False
            show_tokens = width - fixed - 8 >= 4
        fixed += 8 * (show_tokens + show_cost)
        bar_w = max(4, min(12, width - fixed))
        for t in s.teams:
            st = _STATUS_STYLE.get(t.status, "")
            row = Text.assemble(
                (_GLYPH.get(t.status, " ") + " ", st),
                _cell(t.id, name_w, "bold"),
                " ",
                _cell(t.status, 10, st),
                " ",
                _cell(t.agent_id or "", 7, "dim"),
                " ",
                _cell(f"{t.attempt}/{t.max_attempts}" if t.attempt else "", 5, right=True),
                " ",
                _bar(t.deliverables_found, t.deliverables_total, bar_w),
                _cell(f"{t.deliverables_found}/{t.deliverables_total}", 6, right=True),
                " ",
                _cell(_elapsed(t.elapsed_s), 6, right=True),
            )
            if show_tokens:
                tok = _tokens(t.input_tokens + t.output_tokens) + "t"
                row.append_text(Text(" ") + _cell(tok, 7, "dim", right=True))
            if show_cost:
                row.append_text(Text(" ") + _cell(f"${t.cost_usd:.2f}", 7, "dim", right=True))
            row.truncate(width, overflow="ellipsis")
            out.append(row)
            detail = ""
            if t.status == TeamStatus.AWAITING_APPROVAL and t.approval is not None:
                detail = f"waits for approval: {t.approval.approve}"
            elif t.status == TeamStatus.PAUSED and t.paused_until is not None:
                detail = t.reason or f"paused until {_clock(t.paused_until, s.at)}"
            elif t.waiting_for:
                detail = "waits for " + ", ".join(t.waiting_for)
            elif t.reason and t.status not in (TeamStatus.RUNNING, TeamStatus.SUCCEEDED):
                detail = t.reason
            elif t.last_line:
                detail = " ".join(t.last_line.split())
            # where it runs (ray executor)
            if t.host and t.status not in (TeamStatus.PENDING, TeamStatus.BLOCKED):
                detail = f"on {t.host}" + (f": {detail}" if detail else "")
            if detail:
                out.append(Text("  └ ", style="dim") + _cell(detail, width - 4, "dim", pad=False))
        return out


def render_board(snapshot: BoardSnapshot) -> Board:
    """The board of ``snapshot`` as a rich renderable."""
    return Board(snapshot)


# -- live -----------------------------------------------------------------------------


async def live_board(
    store: Store,
    run_id: str,
    console: Console,
    *,
    until_done: bool = True,
    on_snapshot: Callable[[BoardSnapshot], None] | None = None,
) -> BoardSnapshot:
    """Show the board live on ``console`` (rich Live), redrawn on each event of the run.

    Returns the last snapshot once the run has ended (with ``until_done``);
    otherwise runs until cancelled.
    """
    from rich.live import Live

    redactor = Redactor.from_env()
    from orchestrator.state.runs import recorded_plan

    run = await store.get_run(run_id)
    plan = recorded_plan(run)
    snap = await build_snapshot(store, run_id, redactor=redactor, plan=plan)
    last_event = "$"
    with Live(render_board(snap), console=console, auto_refresh=False, transient=False) as live:
        while True:
            if on_snapshot is not None:
                on_snapshot(snap)
            if until_done and snap.done:
                return snap
            drawn = time.monotonic()
            events = await store.read_events(run_id, after=last_event, block_ms=IDLE_REFRESH_MS)
            if events:
                last_event = events[-1].id
            pause = 1 / MAX_REFRESH - (time.monotonic() - drawn)
            if pause > 0:
                await anyio.sleep(pause)
            snap = await build_snapshot(store, run_id, redactor=redactor, plan=plan)
            live.update(render_board(snap), refresh=True)


def format_event(event: Event, width: int = 10) -> str:
    """``14:02:11 db         running    attempt 1  reason``."""
    clock = time.strftime("%H:%M:%S", time.localtime(event.ts or time.time()))
    who = (event.team or "run").ljust(width)
    parts = [f"{clock} {who} {event.to:<10}"]
    if event.attempt:
        parts.append(f"attempt {event.attempt}")
    if event.type == "lease":
        parts = [f"{clock} {who} lease {event.to}"]
    if event.reason:
        parts.append(event.reason)
    return "  ".join(parts).rstrip()


async def plain_events(
    store: Store, run_id: str, out: IO[str], *, until_done: bool = True, after: str = "0-0"
) -> None:
    """Print the run's events as timestamped lines to ``out`` until the run ends."""
    redactor = Redactor.from_env()
    run = await store.get_run(run_id)
    width = max([3, *(len(t) for t in run.team_ids)])
    while True:
        events = await store.read_events(run_id, after=after)
        if not events:
            if until_done and (await store.get_run(run_id)).status.done:
                return
            events = await store.read_events(run_id, after=after, block_ms=IDLE_REFRESH_MS)
        for event in events:
            out.write(printable(redactor.redact(format_event(event, width))) + "\n")
        if events:
            after = events[-1].id
            out.flush()
