"""Server-Sent Events fed from the run's Redis streams: one blocking ``XREAD`` at a time.

A run page's stream sends the board (``board``: its HTML and each team's
status) at once and again after every state event, each event (``event``) as
a line, and each team's newest log line (``line``) as it is stored. A team
page's stream sends every log line of the team (``line``: attempt, number,
text) and the team's state changes (``team``).

Every message carries an ``id:`` that is the reader's position in the
streams (:class:`Position`: ``<events id>|<log id>|<attempt>.<line number>``);
a browser that reconnects sends it back as ``Last-Event-ID`` and the stream
goes on from exactly there: no line is lost or sent twice. Lines the capped
log stream dropped in between are read back from the log files (``note``
says so). The runs page's stream sends the table (``runs``) when a run
changes or appears. When Redis is unreachable the stream says ``store:
reconnecting``, keeps trying, and says ``store: ok`` (with a fresh board) when
it is back.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from orchestrator.errors import StoreError
from orchestrator.views.board import format_event
from orchestrator.web.views import Board, Views, clean

if TYPE_CHECKING:
    from orchestrator.agents.base import AgentAdapter

BLOCK_MS = 5_000
"""One ``XREAD`` waits at most this long; then a keep-alive comment goes out."""
BOARD_EVERY = 2.0
"""Seconds between boards sent because log lines arrived (tokens, cost, last lines)."""
RETRY_MS = 1_000
STORE_RETRY = 1.0

BoardPayload = Callable[[Board], dict[str, Any]]
AdapterFor = Callable[[str], "AgentAdapter"]


def message(event: str, data: Any, event_id: str | None = None) -> str:
    """One SSE message (``data`` as JSON on one line)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _valid(entry_id: str) -> bool:
    ms, _, seq = entry_id.partition("-")
    return ms.isdigit() and seq.isdigit()


@dataclass(frozen=True)
class Position:
    """Where a reader stands: the events id, the log id and the (attempt, line number) of
    that log entry (to see a gap even when the entry was trimmed meanwhile)."""

    events: str
    log: str = "0-0"
    line: tuple[int, int] | None = None

    def __str__(self) -> str:
        at = f"|{self.line[0]}.{self.line[1]}" if self.line else ""
        return f"{self.events}|{self.log}{at}"


def parse_position(raw: str | None) -> Position | None:
    """``"<events id>|<log id>[|<attempt>.<n>]"`` (a Last-Event-ID) -> a Position; None when
    malformed."""
    if not raw:
        return None
    ev, _, rest = raw.partition("|")
    log, _, at = rest.partition("|")
    log = log or "0-0"
    if not (_valid(ev) and _valid(log)):
        return None
    a, _, n = at.partition(".")
    line = (int(a), int(n)) if a.isdigit() and n.isdigit() else None
    return Position(ev, log, line)


RUNS_FOLLOWED = 50
"""The runs page follows the events of this many newest runs."""


async def runs_stream(
    views: Views, render: Callable[[list[dict[str, Any]]], str]
) -> AsyncIterator[str]:
    """The runs page's stream: the table again when a shown run changes state or a new
    run appears (checked each time the blocking read times out)."""
    store = views.store
    yield f"retry: {RETRY_MS}\n\n"
    shown: list[str] | None = None
    cursors: dict[str, str] = {}
    changed = False
    down = False
    while True:
        try:
            ids = (await store.list_runs())[:RUNS_FOLLOWED]
            fresh = changed or down or ids != shown
            if fresh:  # where to wait from, then the table as it is now: nothing missed
                cursors = await store.events_tails(ids)
            if fresh and shown is not None:
                yield message("runs", {"html": render(await views.runs())})
            if down:
                down = False
                yield message("store", "ok")
            shown = ids
            changed = bool(await store.wait_events(cursors, block_ms=BLOCK_MS))
        except StoreError:
            if not down:
                down = True
                yield message("store", "reconnecting")
            await anyio.sleep(STORE_RETRY)
            continue
        if not changed:
            yield ": keep-alive\n\n"


async def run_stream(
    views: Views, run_id: str, payload: BoardPayload, last_id: str | None
) -> AsyncIterator[str]:
    """The run page's stream (see the module docstring)."""
    store = views.store
    yield f"retry: {RETRY_MS}\n\n"
    pos = parse_position(last_id)
    ev: str | None = pos.events if pos is not None else None
    logs: dict[str, str] | None = None
    last_board = 0.0
    down = False
    while True:
        try:
            if logs is None:  # (again after Redis was away) start at the streams' ends
                run = await views.run(run_id)
                ev_tail, logs = await store.stream_tails(run_id, list(run.team_ids))
                ev = ev or ev_tail
                if down:
                    views.forget(run_id)
                yield message("board", payload(await views.board(run_id)), ev)
                last_board = time.monotonic()
            if down:
                down = False
                yield message("store", "ok")
            assert ev is not None
            events, lines = await store.read_run_streams(
                run_id, events_after=ev, logs_after=logs, block_ms=BLOCK_MS
            )
        except StoreError:
            if not down:
                down = True
                logs = None
                yield message("store", "reconnecting")
            await anyio.sleep(STORE_RETRY)
            continue
        newest: dict[str, str] = {}
        for line in lines:
            logs[line.team] = line.id
            newest[line.team] = line.line
        for team, text in newest.items():
            yield message("line", {"team": team, "t": clean(text, views.redactor)})
        if events:
            ev = events[-1].id
            for e in events:
                yield message("event", {"t": clean(format_event(e), views.redactor)}, ev)
        if events or (lines and time.monotonic() - last_board >= BOARD_EVERY):
            if events:
                views.forget(run_id)
            try:
                board = await views.board(run_id)
            except StoreError:
                continue
            yield message("board", payload(board), ev)
            last_board = time.monotonic()
        if not events and not lines:
            yield ": keep-alive\n\n"


async def team_stream(
    views: Views, run_id: str, team: str, start: Position, adapter: AdapterFor
) -> AsyncIterator[str]:
    """The team page's stream from ``start``: see the module docstring. Lines the reader
    missed because the capped stream dropped them meanwhile (a long disconnection) are
    read back from the log files, as ``orchestrate logs -f`` does."""
    from orchestrator.views.logs import _GapFiller

    store = views.store
    yield f"retry: {RETRY_MS}\n\n"
    ev, log, at = start.events, start.log, start.line
    notes: list[str] = []
    gaps = _GapFiller(store, views.layout, run_id, attempt=None, adapter=adapter, warn=notes.append)
    down = False
    started = False
    while True:
        try:
            if not started:
                await gaps.start(team, log, at)
                started = True
            events, lines = await store.read_run_streams(
                run_id, events_after=ev, logs_after={team: log}, block_ms=BLOCK_MS
            )
            if down:
                down = False
                yield message("store", "ok")
        except StoreError:
            if not down:
                down = True
                yield message("store", "reconnecting")
            await anyio.sleep(STORE_RETRY)
            continue
        for line in lines:
            try:
                missed = await gaps.missed(team, line)
            except StoreError:
                missed = []
            for a, text in missed:  # no id: a reconnect in here starts from the line before
                yield message("line", {"a": a, "n": 0, "t": clean(text, views.redactor)})
            for note in notes:
                text = note.removeprefix("orchestrate logs: ")
                yield message("note", {"t": clean(text, views.redactor)})
            notes.clear()
            log = line.id
            at = (line.attempt, line.n) if line.n else None
            data = {"a": line.attempt, "n": line.n, "t": clean(line.line, views.redactor)}
            yield message("line", data, str(Position(ev, log, at)))
        if events:
            ev = events[-1].id
            mine = [e for e in events if e.team == team or e.type == "run"]
            if mine:
                try:
                    state = await store.get_team(run_id, team)
                    run = await store.get_run(run_id)
                except StoreError:
                    continue
                data = {
                    "status": state.status,
                    "attempt": state.attempt,
                    "run_status": run.status,
                    "reason": clean(state.error or state.reason or "", views.redactor),
                    "events": [clean(format_event(e), views.redactor) for e in mine],
                }
                yield message("team", data, str(Position(ev, log, at)))
        if not events and not lines:
            yield ": keep-alive\n\n"
