"""`orchestrate logs` reading: stream history, the file fallback past the cap, following."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from orchestrator.agents import adapter_for
from orchestrator.paths import StateLayout
from orchestrator.redact import Redactor
from orchestrator.settings import Settings
from orchestrator.state.store import Store, open_store
from orchestrator.views.logs import (
    FileTail,
    LineFormatter,
    LogLine,
    attempt_files,
    follow,
    history,
    raw_history,
)
from tests.support.redis import make_run

pytestmark = pytest.mark.anyio

CMD = adapter_for("command")


@pytest.fixture
def layout(tmp_path: Path) -> StateLayout:
    return StateLayout(tmp_path / ".orchestrate")


@pytest.fixture
async def capped(settings: Settings, layout: StateLayout) -> AsyncIterator[Store]:
    """A store whose log streams keep about 100 lines per team."""
    async with open_store(settings.model_copy(update={"log_stream_cap": 100}), layout) as s:
        yield s


def write_log(layout: StateLayout, run: str, team: str, attempt: int, lines: list[str]) -> None:
    path = layout.log_file(run, team, attempt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


async def store_lines(store: Store, run: str, team: str, attempt: int, lines: list[str]) -> None:
    for i in range(0, len(lines), 250):  # the engine appends in batches
        await store.append_log(run, team, attempt, lines[i : i + 250])


async def test_history_returns_stream_lines_in_order(store: Store, layout: StateLayout) -> None:
    """Short logs come straight from the stream, in the order the agent printed them."""
    run = await make_run(store)
    await store_lines(store, run, "db", 1, ["one", "two", "three"])
    got = await history(store, layout, run, "db", adapter=CMD)
    assert [(x.attempt, x.text) for x in got.lines] == [(1, "one"), (1, "two"), (1, "three")]
    assert got.last_id == (await store.read_log(run, "db"))[-1].id


async def test_lines_trimmed_from_the_stream_come_back_from_the_files(
    capped: Store, layout: StateLayout
) -> None:
    """Past the stream cap nothing is lost: the oldest lines are read from the log files."""
    run = await make_run(capped)
    first = [f"a1 line {i}" for i in range(300)]
    second = [f"a2 line {i}" for i in range(900)]
    write_log(layout, run, "db", 1, first)
    write_log(layout, run, "db", 2, second)
    await store_lines(capped, run, "db", 1, first)
    await store_lines(capped, run, "db", 2, second)
    assert len(await capped.read_log(run, "db", count=5000)) < 300  # the cap did trim
    got = await history(capped, layout, run, "db", adapter=CMD)
    assert [x.text for x in got.lines] == first + second
    assert [x.attempt for x in got.lines] == [1] * 300 + [2] * 900
    assert got.lines == sorted(got.lines)
    only2 = await history(capped, layout, run, "db", adapter=CMD, attempt=2)
    assert [x.text for x in only2.lines] == second


async def test_interleaving_orders_teams_by_time(store: Store, layout: StateLayout) -> None:
    """With several teams, lines are merged in the order they were stored."""
    run = await make_run(store)
    for i in range(3):
        await store.append_log(run, "db", 1, [f"db {i}"])
        await anyio.sleep(0.002)  # stream ids have millisecond resolution
        await store.append_log(run, "auth", 1, [f"auth {i}"])
        await anyio.sleep(0.002)
    merged: list[LogLine] = []
    for team in ("db", "auth"):
        merged += (await history(store, layout, run, team, adapter=CMD)).lines
    merged.sort()
    assert [x.text for x in merged] == ["db 0", "auth 0", "db 1", "auth 1", "db 2", "auth 2"]


async def test_since_keeps_recent_lines_only(store: Store, layout: StateLayout) -> None:
    """--since drops lines stored before the cutoff."""
    run = await make_run(store)
    await store.append_log(run, "db", 1, ["old"])
    old = await store.read_log(run, "db")
    cutoff = int(old[0].id.split("-")[0]) / 1000 + 0.002
    await anyio.sleep(0.01)
    await store.append_log(run, "db", 1, ["new"])
    got = await history(store, layout, run, "db", adapter=CMD, since=cutoff)
    assert [x.text for x in got.lines] == ["new"]


async def test_raw_mode_reads_the_files_as_printed(layout: StateLayout) -> None:
    """--raw shows every line the agent printed, blank ones too, attempt by attempt."""
    write_log(layout, "r1", "db", 1, ["x", "", "y"])
    write_log(layout, "r1", "db", 2, ['{"type": "raw json"}'])
    write_log(layout, "r1", "dbx", 1, ["other team"])
    assert [a for a, _ in attempt_files(layout, "r1", "db")] == [1, 2]
    lines, tails = raw_history(layout, "r1", "db")
    assert [x.text for x in lines] == ["x", "", "y", '{"type": "raw json"}']
    assert set(tails) == {1, 2}


def test_file_tail_waits_for_complete_lines(tmp_path: Path) -> None:
    """A partial last line is held back until its newline comes (or the end)."""
    path = tmp_path / "a.log"
    path.write_bytes(b"one\ntw")
    tail = FileTail(path)
    assert tail.read() == ["one"]
    with path.open("ab") as fh:
        fh.write(b"o\r\nthr")
    assert tail.read() == ["two"]
    assert tail.read(final=True) == ["thr"]


def test_formatter_prefixes_colours_and_redacts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines carry their team, padded; colour only when asked; secrets masked on output."""
    fmt = LineFormatter(["db", "frontend"], color=False, redactor=Redactor(["hunter2-pw"]))
    assert fmt(LogLine((1, 0, 0), "db", 1, "pw hunter2-pw")) == "db       | pw ***"
    coloured = LineFormatter(["db"], color=True)(LogLine((1, 0, 0), "db", 1, "x"))
    assert coloured.startswith("\x1b[") and coloured.endswith("| x")
    assert LineFormatter(["db"], color=False, prefix=False)(LogLine((1, 0, 0), "db", 1, "x")) == "x"


HOSTILE = "ok \x1b]52;c;cm0gLXJmIH4=\x07 \x1b]0;pwned\x07 \x1b[31mred\x1b[0m \x9b2J\rback\tend"


def test_escape_sequences_in_agent_output_are_shown_not_obeyed() -> None:
    """An agent printing an OSC 52 clipboard write, a title change, a CSI or a carriage
    return: `orchestrate logs` shows them as visible text (colour codes dropped) so the
    terminal does nothing; tabs stay; --raw prints the bytes as the agent wrote them."""
    fmt = LineFormatter(["db"], color=True)
    shown = fmt(LogLine((1, 0, 0), "db", 1, HOSTILE))
    text = shown.split("| ", 1)[1]
    assert text == "ok \\x1b]52;c;cm0gLXJmIH4=\\x07 \\x1b]0;pwned\\x07 red \\x9b2J\\x0dback\tend"
    assert not any((ord(c) < 32 and c != "\t") or 0x7F <= ord(c) <= 0x9F for c in text)
    raw = LineFormatter(["db"], color=False, raw=True)(LogLine((1, 0, 0), "db", 1, HOSTILE))
    assert raw.endswith(HOSTILE)


def test_direction_overrides_in_agent_output_are_shown_not_obeyed() -> None:
    """A right-to-left override (U+202E) or an isolate in an agent's line would make
    the terminal draw the rest of the line reversed (``exe.txt`` read as ``txt.exe``):
    `orchestrate logs` shows it as ``\\u202e``, like `status --json` does; --raw keeps it."""
    line = "wrote \u202etxt.exe \u2066x\u2069 \u200f"
    text = LineFormatter(["db"], color=False)(LogLine((1, 0, 0), "db", 1, line))
    assert text.split("| ", 1)[1] == "wrote \\u202etxt.exe \\u2066x\\u2069 \\u200f"
    raw = LineFormatter(["db"], color=False, raw=True)(LogLine((1, 0, 0), "db", 1, line))
    assert raw.endswith(line)


async def test_follow_gets_every_line_and_returns_when_the_run_ends(
    store: Store, layout: StateLayout
) -> None:
    """-f prints lines as they are stored, in order per team, and stops at the run's end."""
    run = await make_run(store)
    got: list[LogLine] = []

    async def agent(lease_epoch: int) -> None:
        for i in range(50):
            await store.append_log(run, "db", 1, [f"db {i}"])
            await store.append_log(run, "auth", 1, [f"auth {i}", f"auth {i}b"])
            if i % 10 == 0:
                await anyio.sleep(0.01)
        await store.run_transition(run, "succeeded", epoch=lease_epoch)

    async with store.lease(run) as lease:
        await store.run_transition(run, "running", epoch=lease.epoch)
        await store.append_log(run, "db", 1, ["before"])
        start = await history(store, layout, run, "db", adapter=CMD)
        got += start.lines
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(agent, lease.epoch)
                await follow(
                    store,
                    layout,
                    run,
                    ["db", "auth"],
                    got.append,
                    after={"db": start.last_id},
                )
    db = [x.text for x in got if x.team == "db"]
    auth = [x.text for x in got if x.team == "auth"]
    assert db == ["before"] + [f"db {i}" for i in range(50)]
    assert auth == [t for i in range(50) for t in (f"auth {i}", f"auth {i}b")]


async def test_follow_of_a_finished_run_drains_and_returns(
    store: Store, layout: StateLayout
) -> None:
    """Following a run that already ended prints what is left and returns at once."""
    run = await make_run(store)
    async with store.lease(run) as lease:
        await store.run_transition(run, "running", epoch=lease.epoch)
        await store.append_log(run, "db", 1, ["x", "y"])
        await store.run_transition(run, "failed", epoch=lease.epoch)
    got: list[LogLine] = []
    with anyio.fail_after(5):
        await follow(store, layout, run, ["db"], got.append, after={})
    assert [x.text for x in got] == ["x", "y"]


async def test_a_follower_that_fell_behind_the_cap_gets_the_skipped_lines_from_the_files(
    capped: Store, layout: StateLayout
) -> None:
    """-f never silently skips: lines trimmed before the follower read them (across an attempt
    change too) come back from the log files, in order, and one warning line says so."""
    run = await make_run(capped)
    first = ["before"] + [f"a1 line {i}" for i in range(400)]
    second = [f"a2 line {i}" for i in range(400)]
    write_log(layout, run, "db", 1, first)
    write_log(layout, run, "db", 2, second)
    warnings: list[str] = []
    got: list[LogLine] = []
    async with capped.lease(run) as lease:
        await capped.run_transition(run, "running", epoch=lease.epoch)
        await capped.append_log(run, "db", 1, first[:1])
        start = await history(capped, layout, run, "db", adapter=CMD)
        got += start.lines
        await store_lines(capped, run, "db", 1, first[1:])
        await store_lines(capped, run, "db", 2, second)
        await capped.run_transition(run, "failed", epoch=lease.epoch)
    with anyio.fail_after(10):
        await follow(
            capped,
            layout,
            run,
            ["db"],
            got.append,
            after={"db": start.last_id},
            start={"db": start.last_pos},
            adapter=lambda team: CMD,
            warn=warnings.append,
        )
    assert [x.text for x in got] == first + second
    assert [x.attempt for x in got] == [1] * len(first) + [2] * len(second)
    assert got == sorted(got)
    assert len(warnings) == 1 and "fell behind" in warnings[0]
    # Without the position history gave, the gap is still told (once), not hidden.
    warnings.clear()
    await follow(
        capped,
        layout,
        run,
        ["db"],
        lambda _: None,
        after={"db": start.last_id},
        warn=warnings.append,
    )
    assert len(warnings) == 1 and "before following began" in warnings[0]


async def test_a_follower_that_keeps_up_is_not_warned(store: Store, layout: StateLayout) -> None:
    """Line numbers that follow on from each other (attempt 1 to 2 too) are no gap."""
    run = await make_run(store)
    warnings: list[str] = []
    got: list[LogLine] = []
    async with store.lease(run) as lease:
        await store.run_transition(run, "running", epoch=lease.epoch)
        await store.append_log(run, "db", 1, ["x", "y"])
        await store.append_log(run, "db", 2, ["z"])
        await store.run_transition(run, "failed", epoch=lease.epoch)
    with anyio.fail_after(5):
        await follow(store, layout, run, ["db"], got.append, after={}, warn=warnings.append)
    assert [x.text for x in got] == ["x", "y", "z"]
    assert warnings == []


def test_formatter_marks_where_a_new_attempt_starts() -> None:
    """`logs` of a team that retried shows '── attempt 2 ──' before the retry's first line,
    prefixed like the team's lines when interleaved; not with --attempt, not for _integration."""
    lines = [LogLine((1, 0, 0), "db", 1, "a1"), LogLine((2, 0, 0), "db", 1, "a1 end"),
             LogLine((3, 0, 0), "db", 2, "b1"), LogLine((4, 0, 0), "db", 2, "b2")]  # fmt: skip
    alone = LineFormatter(["db"], color=False, prefix=False)
    assert "\n".join(alone(x) for x in lines).splitlines() == [
        "a1", "a1 end", "── attempt 2 ──", "b1", "b2"
    ]  # fmt: skip
    mixed = LineFormatter(["db", "api"], color=False)
    out = [mixed(LogLine((1, 0, 0), "api", 1, "x")), *(mixed(x) for x in lines)]
    assert "db  | ── attempt 2 ──\ndb  | b1" in out
    quiet = LineFormatter(["db"], color=False, prefix=False, mark_attempts=False)
    assert [quiet(x) for x in lines] == ["a1", "a1 end", "b1", "b2"]
    integ = LineFormatter(["_integration"], color=False, prefix=False)
    steps = [integ(LogLine((n, 0, 0), "_integration", n, f"s{n}")) for n in (1, 2)]
    assert steps == ["s1", "s2"]


def test_the_logs_command_does_not_load_what_it_never_uses() -> None:
    """`orchestrate logs` starts fast: loading the logs command, the store and the log reader
    pulls in no board, no rich, no integration machinery, no agent adapters, no tenacity,
    no psutil (they load where used, if ever)."""
    code = (
        "import sys\n"
        "import orchestrator.cli._watch, orchestrator.views.logs, orchestrator.state.store\n"
        "heavy = ('orchestrator.views.board', 'orchestrator.run.integration.procs',"
        " 'orchestrator.agents',"
        " 'orchestrator.state.server', 'rich', 'jinja2', 'tenacity', 'psutil', 'yaml')\n"
        "print(' '.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == []


def test_run_event_lines_and_summary_show_escape_sequences_as_text() -> None:
    """`orchestrate run`'s event lines and end summary quote agents' words (a failure
    reason the agent reported): an escape sequence in them is shown, never obeyed."""
    from orchestrator.cli._run import _summary, format_notice
    from orchestrator.run.engine import RunResult
    from orchestrator.run.teamrun import Notice, TeamResult

    line = format_notice(Notice(0.0, "db", "failed", f"agent said {HOSTILE}"), 4)
    assert "\x1b" not in line and "\\x1b]52;" in line
    result = RunResult(
        "demo-1", "failed", {"db": TeamResult("db", "failed", 1, None, HOSTILE)}, reason=HOSTILE
    )
    summary = "\n".join(_summary(result))
    assert "\x1b" not in summary and "\x07" not in summary and "\\x1b]0;pwned" in summary
