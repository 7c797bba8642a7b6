"""Reading agent output: what ``orchestrate logs`` shows, during a run and after it.

Where lines come from:

- the team's Redis stream ``orch:{run}:log:<team>``: the human lines the engine
  appended (each agent output line through its adapter's ``parse()`` and
  ``AgentEvent.display()``), each entry ``{a: attempt, l: line}``, its id the
  time it was added. The stream is capped (``log_stream_cap``);
- the attempt's log file ``runs/<run>/logs/<team>.<attempt>.log``: everything
  the agent printed, never capped (redacted by the supervisor).

Nothing is lost: ``XINFO STREAM`` tells how many entries were ever added and
how many are kept; the difference was trimmed, and those first lines are
rebuilt from the files (the same line splitting and the same adapter as the
engine). ``raw`` mode reads the files only.

Ordering: one team's lines are in the order the agent printed them; several
teams are interleaved by stream id (the time each line was stored). Lines
rebuilt from a file sort just before the team's oldest kept entry.

Agents' output is shown, never obeyed: :func:`printable` removes colour codes
and writes every other control character (escape sequences such as an OSC 52
clipboard write or a window-title change, carriage returns, bells) as visible
``\\xNN`` text, in ``orchestrate logs`` and on the board. ``--raw`` prints the
files exactly as the agent wrote them.

Following (:func:`follow`) waits on blocking ``XREAD`` s (one per team, and one
on the run's events to see it end), so a line shows a few milliseconds after
the engine stored it; it returns once the run's status is terminal and every
stream is drained.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from orchestrator.errors import OrchestrateError
from orchestrator.paths import StateLayout
from orchestrator.redact import Redactor

if TYPE_CHECKING:  # the adapters (and the plan models they pull in) load only when needed
    from orchestrator.agents.base import AgentAdapter
    from orchestrator.plan.models import Plan
    from orchestrator.state.store import LogEntry, Store


FOLLOW_BLOCK_MS = 1_000
"""One blocking read waits at most this long (then checks again)."""
_PAGE = 1_000
_LOG_NAME = re.compile(r"^(?P<team>.+)\.(?P<attempt>\d+)\.log$")

_SGR = re.compile(r"\x1b\[[0-9;:]*m")
"""A colour / style sequence: harmless, dropped."""
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""C0 (but tab and newline), DEL and C1 control characters: what a terminal acts on."""
_BIDI = re.compile(r"[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Direction marks, embeddings, overrides and isolates: they reorder what follows."""


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: colour codes removed, every other control
    character (ESC of an OSC 52 clipboard write or a title change, CR, BEL, ...) shown
    as ``\\xNN``, a direction override (U+202E, ...) as ``\\uNNNN``. Tabs and newlines
    stay."""
    if text.isprintable():
        return text
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", _SGR.sub("", text))
    return _BIDI.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_COLORS = (36, 33, 35, 32, 34, 91, 96, 93, 95, 92, 94)
"""ANSI foreground colours given to teams in turn."""


@dataclass(frozen=True, order=True)
class LogLine:
    """One line to show: its sort key, then who printed it and what."""

    key: tuple[int, int, int]
    """(milliseconds, sequence, sub): the stream id; file lines sort before the oldest entry."""
    team: str = field(compare=False)
    attempt: int = field(compare=False)
    text: str = field(compare=False)

    @property
    def ts(self) -> float:
        return self.key[0] / 1000


def parse_id(entry_id: str) -> tuple[int, int]:
    """``"1700000000000-3"`` -> ``(1700000000000, 3)``."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _split(data: bytes, max_line: int) -> Iterator[str]:
    """Lines of ``data`` exactly as the engine received them (see agentproc's splitter)."""
    start, size = 0, len(data)
    while start < size:
        end = data.find(b"\n", start, start + max_line + 1)
        if end < 0:
            end = min(size, start + max_line)
            nxt = end
        else:
            nxt = end + 1
        yield data[start:end].decode("utf-8", errors="replace").removesuffix("\r")
        start = nxt


def attempt_files(layout: StateLayout, run_id: str, team: str) -> list[tuple[int, Path]]:
    """The team's log files, ``(attempt, path)``, first attempt first."""
    folder = layout.logs_dir(run_id)
    found: list[tuple[int, Path]] = []
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return []
    for name in names:
        m = _LOG_NAME.match(name)
        if m and m["team"] == team:
            found.append((int(m["attempt"]), folder / name))
    return sorted(found)


class FileTail:
    """Complete lines appended to one file since the last call (a partial line waits)."""

    def __init__(self, path: Path, max_line: int = 64 * 1024) -> None:
        self.path = path
        self.offset = 0
        self._max = max_line

    def read(self, *, final: bool = False) -> list[str]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        cut = data.rfind(b"\n") + 1
        if final:
            cut = len(data)
        elif len(data) - cut >= self._max:  # an overlong partial line: its pieces now
            cut += (len(data) - cut) // self._max * self._max
        self.offset += cut
        return list(_split(data[:cut], self._max))


def display(adapter: AgentAdapter, lines: Sequence[str]) -> Iterator[str]:
    """The human lines of raw output lines, as the engine stores them."""
    for line in lines:
        for event in adapter.parse(line):
            yield event.display()


def adapter_of(plan: Plan | None, team: str) -> AgentAdapter:
    """The team's agent adapter; the plain-text one when the plan or kind is unknown."""
    from orchestrator.agents import adapter_for

    if plan is not None:
        try:
            config = plan.agent_config(plan.agent_name(plan.team(team)))
            return adapter_for(config.kind or "command")
        except (KeyError, OrchestrateError):
            pass
    return adapter_for("command")


async def last_line(store: Store, run_id: str, team: str) -> str | None:
    """The newest human line of a team, if any."""
    entry = await store.last_log(run_id, team)
    return entry.line if entry is not None else None


@dataclass
class TeamLog:
    """What :func:`history` found for one team: its lines and where the stream stops."""

    lines: list[LogLine]
    last_id: str
    last_pos: tuple[int, int] | None = (0, 0)
    """(attempt, line number) of the entry at ``last_id``; pass it to :func:`follow` as
    ``start`` so a gap is found even when that entry was trimmed before following began."""


async def history(
    store: Store,
    layout: StateLayout,
    run_id: str,
    team: str,
    *,
    adapter: AgentAdapter,
    attempt: int | None = None,
    since: float | None = None,
) -> TeamLog:
    """Every human line of ``team`` so far: trimmed ones rebuilt from the files, then the stream.

    ``since`` (epoch seconds) keeps stream lines stored at or after it; lines
    that only the files hold have no time and are left out when it is given.
    """
    entries = []
    after = "0-0"
    while True:
        page = await store.read_log(run_id, team, after=after, count=_PAGE)
        entries += page
        if len(page) < _PAGE:
            break
        after = page[-1].id
    if entries:
        after = entries[-1].id
    added, kept = await store.log_counts(run_id, team)
    trimmed = max(0, added - kept) if entries else 0
    out: list[LogLine] = []
    if trimmed and since is None:
        first_ms, first_seq = parse_id(entries[0].id)
        rebuilt: list[tuple[int, str]] = []
        for number, path in attempt_files(layout, run_id, team):
            if len(rebuilt) >= trimmed:
                break
            tail = FileTail(path)
            for text in display(adapter, tail.read(final=True)):
                rebuilt.append((number, text))
                if len(rebuilt) >= trimmed:
                    break
        for i, (number, text) in enumerate(rebuilt):
            if attempt is None or number == attempt:
                out.append(LogLine((first_ms, first_seq, i - len(rebuilt)), team, number, text))
    cutoff_ms = None if since is None else int(since * 1000)
    for entry in entries:
        ms, seq = parse_id(entry.id)
        if attempt is not None and entry.attempt != attempt:
            continue
        if cutoff_ms is not None and ms < cutoff_ms:
            continue
        out.append(LogLine((ms, seq, 0), team, entry.attempt, entry.line))
    last = entries[-1] if entries else None
    pos = (last.attempt, last.n) if last is not None and last.n else None
    return TeamLog(out, after, pos if last is not None else (0, 0))


def raw_history(
    layout: StateLayout, run_id: str, team: str, *, attempt: int | None = None
) -> tuple[list[LogLine], dict[int, FileTail]]:
    """Every line of the team's log files (raw), and a tail per file to follow from there."""
    out: list[LogLine] = []
    tails: dict[int, FileTail] = {}
    for number, path in attempt_files(layout, run_id, team):
        if attempt is not None and number != attempt:
            continue
        tail = FileTail(path)
        tails[number] = tail
        out += [LogLine((0, number, i), team, number, t) for i, t in enumerate(tail.read())]
    return out, tails


Emit = Callable[[LogLine], None]
Warn = Callable[[str], None]
AdapterFor = Callable[[str], "AgentAdapter"]


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


async def plan_adapters(store: Store, run_id: str) -> AdapterFor:
    """team -> its agent adapter, from the plan the run recorded (plain text if unreadable)."""
    from orchestrator.state.runs import recorded_plan

    plan = recorded_plan(await store.get_run(run_id))
    return lambda team: adapter_of(plan, team)


class _FileLines:
    """One attempt's human lines rebuilt from its log file, read forward, by line number."""

    def __init__(self, path: Path, adapter: AgentAdapter) -> None:
        self._tail = FileTail(path)
        self._adapter = adapter
        self._lines: list[str] = []
        self._first = 1
        """The line number of ``_lines[0]``."""

    def take(self, start: int, stop: int, *, final: bool) -> list[str]:
        """Lines numbered ``start`` to ``stop - 1`` (from 1); fewer if the file lacks them.

        ``final``: the attempt has ended, its last partial line counts.
        """
        while self._first + len(self._lines) < stop:
            new = self._tail.read(final=final)
            if not new:
                break
            self._lines += display(self._adapter, new)
        drop = max(0, start - self._first)
        del self._lines[:drop]
        self._first += drop
        got = self._lines[: max(0, stop - self._first)]
        return got


class _GapFiller:
    """Finds the lines a follower missed (trimmed by the cap before it read them) in the files.

    Every stream entry carries its attempt and line number ``n``; a jump
    between the last entry shown and the next one read is a gap.
    """

    def __init__(
        self,
        store: Store,
        layout: StateLayout,
        run_id: str,
        *,
        attempt: int | None,
        adapter: AdapterFor | None,
        warn: Warn,
    ) -> None:
        self._store, self._layout, self._run = store, layout, run_id
        self._attempt = attempt
        self._adapter = adapter
        self._warn: Warn | None = warn
        self._files: dict[tuple[str, int], _FileLines] = {}
        self.pos: dict[str, tuple[int, int] | None] = {}
        """Per team: (attempt, n) of the last entry shown; None when unknown."""

    async def start(self, team: str, after: str, known: tuple[int, int] | None = None) -> None:
        """Where ``team`` stands: ``known``, or the entry at ``after`` (``"0-0"``: nothing yet)."""
        if known is not None:
            self.pos[team] = known
            return
        if after == "0-0":
            self.pos[team] = (0, 0)
            return
        got = await self._store.read_log(self._run, team, after=_before(after), count=1)
        entry = got[0] if got and got[0].id == after else None
        self.pos[team] = (entry.attempt, entry.n) if entry is not None and entry.n else None
        if entry is None and got and self._warn is not None:
            self._warn(
                f"orchestrate logs: fell behind the log stream of {team} before following "
                f"began; some lines are only in the log files (orchestrate logs --raw)"
            )
            self._warn = None

    async def missed(self, team: str, entry: LogEntry) -> list[tuple[int, str]]:
        """The lines between the last one shown and ``entry`` (then ``entry`` is the last)."""
        pos, self.pos[team] = self.pos.get(team), (entry.attempt, entry.n) if entry.n else None
        if pos is None or not entry.n:
            return []
        (a0, n0), (a1, n1) = pos, (entry.attempt, entry.n)
        if (a1, n1) <= (a0, n0 + 1):
            return []
        spans: list[tuple[int, int, int, bool]] = []  # attempt, first n, stop n, ended
        if a1 == a0:
            spans.append((a1, n0 + 1, n1, False))
        else:
            for number in range(max(a0, 1), a1):
                total = await self._store.log_lines(self._run, team, number)
                first = n0 + 1 if number == a0 else 1
                if total >= first:
                    spans.append((number, first, total + 1, True))
            if n1 > 1:
                spans.append((a1, 1, n1, False))
        spans = [s for s in spans if self._attempt is None or s[0] == self._attempt]
        if not spans:
            return []
        if self._adapter is None:
            self._adapter = await plan_adapters(self._store, self._run)
        out: list[tuple[int, str]] = []
        wanted = 0
        for number, first, stop, ended in spans:
            wanted += stop - first
            files = self._files.get((team, number))
            if files is None:
                paths = dict(attempt_files(self._layout, self._run, team))
                if number not in paths:
                    continue
                files = _FileLines(paths[number], self._adapter(team))
                self._files[(team, number)] = files
            out += [(number, text) for text in files.take(first, stop, final=ended)]
        if self._warn is not None:
            lost = f" ({wanted - len(out)} not in the files either)" if len(out) < wanted else ""
            self._warn(
                f"orchestrate logs: fell behind the log stream (it keeps the newest "
                f"{self._store.settings.log_stream_cap} lines per team); {wanted} skipped "
                f"lines read back from the log files{lost}"
            )
            self._warn = None
        return out


def _before(entry_id: str) -> str:
    """The stream id just before ``entry_id`` (so that reading after it starts at it)."""
    ms, seq = parse_id(entry_id)
    if seq:
        return f"{ms}-{seq - 1}"
    return f"{ms - 1}-18446744073709551615" if ms else "0-0"


async def follow(
    store: Store,
    layout: StateLayout,
    run_id: str,
    teams: Sequence[str],
    emit: Emit,
    *,
    after: dict[str, str],
    raw_tails: dict[str, dict[int, FileTail]] | None = None,
    attempt: int | None = None,
    adapter: AdapterFor | None = None,
    warn: Warn = _stderr,
    start: Mapping[str, tuple[int, int] | None] | None = None,
) -> None:
    """Emit new lines of ``teams`` as they come, until the run ends (then drain and return).

    ``after``: per team, the stream id already shown. With ``raw_tails``, lines
    come from the log files instead (the stream only wakes us up). A follower
    that fell more than the stream cap behind gets the lines it missed from
    the log files (``adapter``: team -> its adapter, default from the run's
    plan) and ``warn`` says so, once, in one line (default: to stderr).
    ``start``: per team, :attr:`TeamLog.last_pos` of the history already shown.
    """
    gaps = _GapFiller(store, layout, run_id, attempt=attempt, adapter=adapter, warn=warn)
    if raw_tails is None:
        for team in teams:
            await gaps.start(team, after.get(team, "0-0"), (start or {}).get(team))

    def emit_raw(team: str, final: bool = False) -> None:
        assert raw_tails is not None
        tails = raw_tails.setdefault(team, {})
        for number, path in attempt_files(layout, run_id, team):
            if attempt is not None and number != attempt:
                continue
            tail = tails.setdefault(number, FileTail(path))
            for i, text in enumerate(tail.read(final=final)):
                emit(LogLine((int(time.time() * 1000), number, i), team, number, text))

    async def drain(team: str, block_ms: int | None) -> bool:
        got = await store.read_log(
            run_id, team, after=after.get(team, "0-0"), count=_PAGE, block_ms=block_ms
        )
        if got:
            after[team] = got[-1].id
        if raw_tails is not None:
            emit_raw(team)
            return bool(got)
        for entry in got:
            ms, seq = parse_id(entry.id)
            missed = await gaps.missed(team, entry)
            for i, (number, text) in enumerate(missed):
                emit(LogLine((ms, seq, i - len(missed)), team, number, text))
            if attempt is None or entry.attempt == attempt:
                emit(LogLine((ms, seq, 0), team, entry.attempt, entry.line))
        return bool(got)

    async def reader(team: str) -> None:
        while True:
            await drain(team, FOLLOW_BLOCK_MS)

    async def watcher(scope: anyio.CancelScope) -> None:
        # An event written between get_run and the XREAD on "$" is missed: the
        # next get_run, at most FOLLOW_BLOCK_MS later, sees the run's end anyway.
        last_event = "$"
        while True:
            if (await store.get_run(run_id)).status.done:  # no agent writes any more
                break
            got = await store.read_events(
                run_id, after=last_event, block_ms=FOLLOW_BLOCK_MS, count=1000
            )
            if got:
                last_event = got[-1].id
        scope.cancel()

    async with anyio.create_task_group() as tg:
        for team in teams:
            tg.start_soon(reader, team)
        tg.start_soon(watcher, tg.cancel_scope)
    # The run has ended: every writer is gone. Take what is left.
    for team in teams:
        while await drain(team, None):
            pass
        if raw_tails is not None:
            emit_raw(team, final=True)


def color_for(index: int) -> int:
    return _COLORS[index % len(_COLORS)]


def use_color(stream: Any) -> bool:
    """Colour for a terminal, unless ``NO_COLOR`` is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class LineFormatter:
    """``team | text`` lines, the team padded and coloured; secrets redacted on the way out,
    control characters made visible (:func:`printable`) unless ``raw``."""

    def __init__(
        self,
        teams: Sequence[str],
        *,
        color: bool,
        prefix: bool = True,
        redactor: Redactor | None = None,
        show_attempt: bool = False,
        mark_attempts: bool = True,
        raw: bool = False,
    ) -> None:
        self._width = max((len(t) for t in teams), default=0)
        self._color = {t: color_for(i) for i, t in enumerate(teams)} if color else {}
        self._prefix = prefix
        self._redactor = redactor or Redactor()
        self._show_attempt = show_attempt
        self._mark = mark_attempts
        self._raw = raw
        """Print the agent's bytes as they are (``--raw``); else :func:`printable`."""
        self._last_attempt: dict[str, int] = {}

    def __call__(self, line: LogLine) -> str:
        """The line as shown; a team's first line of a new attempt comes after a
        ``── attempt N ──`` line (with ``mark_attempts``; not for the integration phase)."""
        text = self._redactor.redact(line.text)
        out = self._one(line, text if self._raw else printable(text))
        before = self._last_attempt.get(line.team)
        self._last_attempt[line.team] = line.attempt
        new = before is not None and before != line.attempt
        if self._mark and new and not line.team.startswith("_"):
            return self._one(line, f"── attempt {line.attempt} ──") + "\n" + out
        return out

    def _one(self, line: LogLine, text: str) -> str:
        if not self._prefix:
            return text
        who = line.team.ljust(self._width)
        if self._show_attempt:
            who = f"{who} #{line.attempt}"
        code = self._color.get(line.team)
        if code is not None:
            who = f"\x1b[{code}m{who}\x1b[0m"
        return f"{who} | {text}"
