"""The board (`status`, `watch`, the live view of `run`): rows, phases, width, JSON, live modes."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import anyio
import pytest
from rich.console import Console

from orchestrator.state.status import RunStatus
from orchestrator.state.store import Store, Usage
from orchestrator.views.board import (
    STATUS_SCHEMA,
    BoardSnapshot,
    build_snapshot,
    live_board,
    plain_events,
    render_board,
    snapshot_json,
)

pytestmark = pytest.mark.anyio

PLAN = """\
version: 1
name: shop
agents:
  fake: {kind: command, command: [echo, hi]}
defaults: {agent: fake, retries: 2}
teams:
  - id: db
    name: Database
    task: the database
    deliverables: [db.txt, migrations/*.sql]
  - id: auth
    task: logins
    depends_on: [db]
    deliverables: [auth.js]
  - id: web
    task: the site
    depends_on: [auth]
    retries: 0
"""
DOCS = Path(__file__).parent.parent / "docs" / "board.md"


async def new_run(store: Store, run: str = "shop-1") -> str:
    meta = {"plan_text": PLAN, "plan_path": "/nowhere/plan.yaml", "plan_name": "shop"}
    await store.create_run(run, meta=meta, team_ids=["db", "auth", "web"])
    return run


def draw(snap: BoardSnapshot, width: int = 80) -> list[str]:
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(render_board(snap))
    return console.export_text().splitlines()


def row(lines: list[str], team: str) -> str:
    return next(line for line in lines if re.match(rf"^. {team}\s", line))


async def test_teams_phase_shows_progress_and_what_waiting_teams_wait_for(
    store: Store, tmp_path: Path
) -> None:
    """While teams run: live deliverables from the worktree, attempt/max, waits for upstream."""
    run = await new_run(store)
    worktree = tmp_path / "wt"
    (worktree / "migrations").mkdir(parents=True)
    (worktree / "db.txt").write_text("schema")
    (worktree / "migrations" / "001.sql").write_text("")  # empty: not there yet
    async with store.lease(run) as lease:
        e = lease.epoch
        await store.run_transition(run, "running", epoch=e)
        fields = {"agent_id": "3f9c2e1", "worktree": str(worktree)}
        await store.team_transition(run, "db", "running", epoch=e, attempt=1, fields=fields)
        await store.append_log(run, "db", 1, ["tool: Bash ls", "writing the schema now"])
        await store.add_usage(
            run, "db", Usage(input_tokens=1200, output_tokens=300, cost_usd=0.25), epoch=e
        )
        snap = await build_snapshot(store, run)
    assert (snap.phase, snap.status) == ("teams", "running")
    db, auth, web = snap.teams
    assert (db.status, db.agent_id, db.attempt, db.max_attempts) == ("running", "3f9c2e1", 1, 3)
    assert (db.deliverables_found, db.deliverables_total) == (1, 2)
    assert db.last_line == "writing the schema now"
    assert db.input_tokens == 1200 and db.cost_usd == pytest.approx(0.25)
    assert auth.waiting_for == ["db"] and web.waiting_for == ["auth"]
    assert web.max_attempts == 1 and web.deliverables_total == 0
    lines = draw(snap)
    assert all(len(line) <= 80 for line in lines)
    assert "phase teams" in lines[0]
    assert "3f9c2e1" in row(lines, "db") and "1/3" in row(lines, "db")
    assert "1/2" in row(lines, "db") and "1.5kt" in row(lines, "db")
    assert any("writing the schema now" in line for line in lines)
    assert any("waits for db" in line for line in lines)
    (worktree / "migrations" / "001.sql").write_text("create table t;")
    assert (await build_snapshot(store, run)).teams[0].deliverables_found == 2  # refreshed live


async def test_integration_phase(store: Store) -> None:
    """When every team is done and the branches are being merged, the phase says integration."""
    run = await new_run(store)
    async with store.lease(run) as lease:
        e = lease.epoch
        await store.run_transition(run, "running", epoch=e)
        for t in ("db", "auth", "web"):
            await store.team_transition(run, t, "running", epoch=e, attempt=1)
            await store.team_transition(run, t, "verifying", epoch=e, attempt=1)
            await store.team_transition(run, t, "succeeded", epoch=e, attempt=1)
        await store.run_transition(run, "integrating", epoch=e)
        snap = await build_snapshot(store, run)
    assert snap.phase == "integration" and snap.teams_succeeded == 3
    assert (snap.deliverables_found, snap.deliverables_total) == (3, 3)
    lines = draw(snap)
    assert "phase integration" in lines[0] and "3/3 done" in lines[1]
    assert all("succeeded" in row(lines, t) for t in ("db", "auth", "web"))


async def test_done_phase_with_a_failure_and_a_blocked_team(store: Store) -> None:
    """A failed run shows why each team ended, in 80 columns even with long reasons."""
    run = await new_run(store)
    async with store.lease(run) as lease:
        e = lease.epoch
        await store.run_transition(run, "running", epoch=e)
        await store.team_transition(run, "db", "running", epoch=e, attempt=1)
        await store.team_transition(run, "db", "verifying", epoch=e, attempt=1)
        await store.team_transition(run, "db", "succeeded", epoch=e, attempt=1)
        await store.team_transition(run, "auth", "running", epoch=e, attempt=1)
        why = "exit code 1: " + "the agent could not find the session secret " * 4
        await store.team_transition(run, "auth", "failed", epoch=e, attempt=1, reason=why)
        await store.team_transition(
            run, "web", "blocked", epoch=e, attempt=0, reason="upstream team auth failed"
        )
        await store.run_transition(run, "failed", epoch=e, reason="failed: auth; blocked: web")
        snap = await build_snapshot(store, run)
    assert snap.phase == "done" and snap.done
    assert (snap.teams_succeeded, snap.teams_failed) == (1, 2)
    assert snap.reason == "failed: auth; blocked: web"
    assert snap.teams[2].waiting_for == []  # blocked, not waiting
    lines = draw(snap)
    assert all(len(line) <= 80 for line in lines)
    assert "failed" in row(lines, "auth") and "blocked" in row(lines, "web")
    assert any(
        line.strip().startswith("└ exit code 1") and line.rstrip().endswith("…") for line in lines
    )
    assert any("upstream team auth failed" in line for line in lines)
    wide = draw(snap, width=120)
    assert any(len(line) > 80 for line in wide)  # it uses the room it has


async def test_json_validates_against_the_documented_schema(store: Store) -> None:
    """`status --json` is the documented shape: it validates, and docs/board.md has the schema."""
    run = await new_run(store)
    doc = snapshot_json(await build_snapshot(store, run))
    again = BoardSnapshot.model_validate(json.loads(json.dumps(doc)))
    assert snapshot_json(again) == doc
    assert doc["schema_version"] == 1 and [t["id"] for t in doc["teams"]] == ["db", "auth", "web"]
    documented = re.search(r"<!-- schema -->\s*```json\n(.*?)```", DOCS.read_text(), re.S)
    assert documented is not None, "docs/board.md lacks the schema block"
    assert json.loads(documented.group(1)) == STATUS_SCHEMA
    with pytest.raises(ValueError):
        BoardSnapshot.model_validate({**doc, "teams": [{"id": "x"}]})


async def test_live_board_redraws_until_the_run_ends(store: Store) -> None:
    """`watch` follows the run's events and returns with the final board when it ends."""
    run = await new_run(store)
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    seen: list[str] = []

    async def drive() -> None:
        async with store.lease(run) as lease:
            e = lease.epoch
            await store.run_transition(run, "running", epoch=e)
            for t in ("db", "auth", "web"):
                await store.team_transition(run, t, "running", epoch=e, attempt=1)
                await anyio.sleep(0.4)  # long enough to be drawn (4 redraws a second at most)
                await store.team_transition(run, t, "failed", epoch=e, attempt=1, reason="no")
            await store.run_transition(run, "failed", epoch=e)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(drive)
            final = await live_board(
                store, run, console, on_snapshot=lambda s: seen.append(s.status)
            )
    assert final.status == "failed" and final.teams_failed == 3
    assert "running" in seen and seen[-1] == "failed"
    assert "phase done" in out.getvalue()


async def test_plain_mode_prints_timestamped_event_lines(store: Store) -> None:
    """Without a terminal: one line per event, with the time, the team and its new status."""
    run = await new_run(store)
    async with store.lease(run) as lease:
        e = lease.epoch
        await store.run_transition(run, "running", epoch=e)
        await store.team_transition(run, "db", "running", epoch=e, attempt=1)
        await store.team_transition(run, "db", "failed", epoch=e, attempt=1, reason="exit code 2")
        await store.run_transition(run, "failed", epoch=e)
    out = io.StringIO()
    with anyio.fail_after(10):
        await plain_events(store, run, out)
    lines = out.getvalue().splitlines()
    assert any(re.match(r"^\d\d:\d\d:\d\d db\s+running\s+attempt 1$", x) for x in lines)
    assert any(re.match(r"^\d\d:\d\d:\d\d db\s+failed\s+attempt 1  exit code 2$", x) for x in lines)
    assert re.match(
        r"^\d\d:\d\d:\d\d run\s+failed", lines[-2] if "lease" in lines[-1] else lines[-1]
    )


LONG_PLAN = """\
version: 1
name: ledgerline-payments-parallel-build-board
agents:
  fake: {kind: command, command: [echo, hi]}
defaults: {agent: fake, retries: 2}
teams:
  - {id: schema-storage, task: s, deliverables: [a.txt]}
  - {id: webhooks-notifications, task: w, deliverables: [b.txt]}
"""


async def test_long_ids_fit_80_columns_and_keep_status_and_cost(store: Store) -> None:
    """An imported plan's long run and team ids: every line fits 80 columns with no trailing
    spaces, the run's status and each team's cost stay whole, the run id keeps its tail."""
    run = "ledgerline-payments-parallel-build-board-20261122-145358-d9be"
    meta = {"plan_text": LONG_PLAN, "plan_path": "/nowhere/plan.yaml", "plan_name": "x"}
    await store.create_run(run, meta=meta, team_ids=["schema-storage", "webhooks-notifications"])
    async with store.lease(run) as lease:
        await store.run_transition(run, "running", epoch=lease.epoch)
        await store.team_transition(run, "schema-storage", "running", epoch=lease.epoch, attempt=1)
        await store.append_log(run, "schema-storage", 1, ["Write db/seed.py"])
        snap = await build_snapshot(store, run)
        for width in (80, 100):
            lines = draw(snap, width)
            assert all(len(x) <= width and x == x.rstrip() for x in lines), lines
            assert lines[0].startswith("run ledgerline") and "running" in lines[0]
            assert lines[0].split("  ")[0].endswith("145358-d9be")
            assert row(lines, "schema-storage").endswith("$0.00")
        narrow = draw(snap, 60)
        assert all(len(x) <= 60 for x in narrow) and "running" in row(narrow, "schema-storage")


async def test_an_interrupted_run_counts_cancelled_teams_apart_from_failed(store: Store) -> None:
    """After Ctrl-C the totals say '2 cancelled', not '2 failed'."""
    run = await new_run(store)
    async with store.lease(run) as lease:
        e = lease.epoch
        await store.run_transition(run, "running", epoch=e)
        for t in ("db", "auth"):
            await store.team_transition(run, t, "running", epoch=e, attempt=1)
            await store.team_transition(run, t, "cancelled", epoch=e, attempt=1, reason="stop")
        await store.run_transition(run, "interrupted", epoch=e, reason="interrupted")
        snap = await build_snapshot(store, run)
    lines = draw(snap)
    assert "0/3 done, 2 cancelled" in lines[1] and "failed" not in lines[1]


async def test_a_running_run_whose_orchestrator_is_gone_says_resume(store: Store) -> None:
    """`status` of a run whose `orchestrate run` was killed says so and names `orchestrate
    resume`; while its orchestrator lives, it says nothing of the kind."""
    run = await new_run(store)
    async with store.lease(run) as lease:
        await store.run_transition(run, "running", epoch=lease.epoch)
        alive = await build_snapshot(store, run)
    gone = await build_snapshot(store, run)  # the lease is free: nobody runs it
    assert alive.reason is None
    assert gone.status == "running" and gone.reason is not None
    assert f"orchestrate resume {run}" in gone.reason
    assert any("no orchestrator is running it" in x for x in draw(gone))


async def test_attempts_allowed_count_an_uncounted_attempt_like_the_prompt(store: Store) -> None:
    """After an attempt that is not counted (cancelled, crashed) the team's row says 2/4 — what
    its agent's prompt says ("attempt 2 of at most 4") — not 2/3 from the plan's retries."""
    run = await new_run(store)
    async with store.lease(run) as lease:
        e = lease.epoch
        await store.run_transition(run, "running", epoch=e)
        fields = {"agent_id": "3f9c2e1", "max_attempts": "4"}
        await store.team_transition(run, "db", "running", epoch=e, attempt=2, fields=fields)
        snap = await build_snapshot(store, run)
    db = snap.teams[0]
    assert (db.attempt, db.max_attempts) == (2, 4)
    assert "2/4" in row(draw(snap), "db")


async def test_elapsed_counts_every_attempt_of_a_team(store: Store) -> None:
    """A team on its second attempt shows the time since its first attempt started (the
    failed attempt and the pause included), not only its current attempt's."""
    import time

    run = await new_run(store)
    first = time.time() - 100
    async with store.lease(run) as lease:
        e = lease.epoch
        await store.run_transition(run, "running", epoch=e)
        one = {"first_started": repr(first), "max_attempts": "3"}
        await store.team_transition(run, "db", "running", epoch=e, attempt=1, fields=one)
        await store.team_transition(run, "db", "retrying", epoch=e, attempt=2, reason="broke")
        await store.team_transition(run, "db", "running", epoch=e, attempt=2)
        snap = await build_snapshot(store, run)
    db = snap.teams[0]
    assert db.started is not None and db.started > first + 90  # the current attempt's start
    assert db.elapsed_s is not None and 100 <= db.elapsed_s < 130


async def test_escape_sequences_never_reach_the_terminal_through_the_board(
    store: Store,
) -> None:
    """An agent's last line or failure reason holding an OSC 52 clipboard write or a title
    change: `status`, `watch` and `status --json` show it as visible text, never as the
    escape sequence itself."""
    run = await new_run(store, "shop-esc")
    evil = "done \x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;pwned\x07"
    async with store.lease(run) as lease:
        e = lease.epoch
        await store.run_transition(run, "running", epoch=e)
        await store.team_transition(run, "db", "running", epoch=e, attempt=1)
        await store.append_log(run, "db", 1, [evil])
        await store.team_transition(run, "auth", "running", epoch=e, attempt=1)
        await store.team_transition(
            run, "auth", "failed", epoch=e, attempt=1, reason=f"check said {evil}"
        )
        snap = await build_snapshot(store, run)
        out = io.StringIO()
        await plain_events_once(store, run, out)
    db, auth, _ = snap.teams
    assert db.last_line is not None and "\\x1b]52;" in db.last_line
    assert auth.reason is not None and "\\x1b]0;pwned" in auth.reason
    doc = snapshot_json(snap)
    assert "\x1b" not in doc["teams"][0]["last_line"] + doc["teams"][1]["reason"]
    screen = io.StringIO()
    Console(file=screen, width=120, force_terminal=True, color_system=None).print(
        render_board(snap)
    )
    assert "\x1b]" not in screen.getvalue() and "\x07" not in screen.getvalue()
    assert "\\x1b]52;" in screen.getvalue()
    assert "\x1b" not in out.getvalue() and "\\x1b]0;pwned" in out.getvalue()


async def plain_events_once(store: Store, run: str, out: io.StringIO) -> None:
    """`watch` without a terminal: the event lines so far (the run is still going)."""
    with anyio.move_on_after(1.5):
        await plain_events(store, run, out, until_done=False)


async def test_a_stored_time_without_an_offset_is_utc_whatever_the_local_zone(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's `finished` written without an offset means the same instant on every
    machine: the board reads it as UTC, as the store reads `created` (one time parser)."""
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        run = await new_run(store)
        async with store.lease(run) as lease:
            await store.run_transition(
                run, RunStatus.FAILED, epoch=lease.epoch, fields={"finished": "2025-01-31T12:00:00"}
            )
        snap = await build_snapshot(store, run)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert snap.finished == 1738324800.0  # 2025-01-31 12:00:00 UTC
