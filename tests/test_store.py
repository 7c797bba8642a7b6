"""Store against a real external redis-server: runs, teams, transitions, epochs, streams."""

from __future__ import annotations

import random
import time
from pathlib import Path

import anyio
import pytest

from orchestrator.errors import IllegalTransitionError, StaleEpochError, UsageError
from orchestrator.paths import StateLayout
from orchestrator.settings import Settings
from orchestrator.state.store import TEAM_TRANSITIONS, Store, Usage, new_agent_id, open_store
from tests.support.redis import make_run

pytestmark = pytest.mark.anyio


async def test_an_invalid_run_id_is_a_usage_error(store: Store) -> None:
    """`orchestrate status "a b"` says the id is not valid (one line, exit 2), no traceback."""
    for call in (
        lambda: store.get_run("a b"),
        lambda: store.get_teams("x{y}"),
        lambda: store.read_log("r1", "no:team"),
    ):
        with pytest.raises(UsageError, match="not a valid id") as info:
            await call()
        assert isinstance(info.value, ValueError)  # callers that caught ValueError still do
        assert info.value.exit_code == 2 and "\n" not in str(info.value)


async def test_created_is_the_store_time_even_when_meta_has_an_iso_created(store: Store) -> None:
    """A run whose recorded meta brings its own ISO `created` still has its start time (the
    board's elapsed time, `runs`), and the meta keeps what the caller wrote."""
    before = time.time()
    await store.create_run(
        "r1", meta={"created": "2025-01-31T12:00:00+00:00", "_created": "1"}, team_ids=["db"]
    )
    run = await store.get_run("r1")
    assert run.created is not None and before - 1 <= run.created <= time.time() + 1
    assert run.meta["created"] == "2025-01-31T12:00:00+00:00"
    async with store.lease("r1") as lease:
        await store.run_transition("r1", "running", epoch=lease.epoch, fields={"_created": "2"})
    assert (await store.get_run("r1")).created == run.created


async def test_created_of_an_older_run_is_read_from_its_iso_field(store: Store) -> None:
    """Runs stored before `_created` existed read their ISO or numeric `created`."""
    await make_run(store)
    await store._redis.hdel(store.keys.meta("r1"), "_created")
    await store._redis.hset(store.keys.meta("r1"), "created", "2025-01-31T12:00:00+00:00")
    assert (await store.get_run("r1")).created == 1738324800.0
    await store._redis.hset(store.keys.meta("r1"), "created", "1700000000.5")
    assert (await store.get_run("r1")).created == 1700000000.5


async def test_a_created_run_reads_back_with_its_teams_pending(store: Store) -> None:
    """`orchestrate status` right after start shows the run pending and every team pending."""
    await store.create_run("r1", meta={"plan_hash": "abc", "base": "main"}, team_ids=["db", "api"])
    run = await store.get_run("r1")
    assert (run.status, run.epoch, run.team_ids) == ("pending", 0, ["db", "api"])
    assert run.meta["plan_hash"] == "abc"
    teams = await store.get_teams("r1")
    assert list(teams) == ["db", "api"]
    assert all(t.status == "pending" and t.attempt == 0 for t in teams.values())
    assert await store.list_runs() == ["r1"]


async def test_runs_are_listed_newest_first(store: Store) -> None:
    """`orchestrate runs` lists the newest run first (RUN defaults to it)."""
    for run_id in ("a", "b", "c"):
        await make_run(store, run_id)
        await anyio.sleep(0.002)
    assert await store.list_runs() == ["c", "b", "a"]


async def test_an_unknown_run_is_a_usage_error(store: Store) -> None:
    """`orchestrate status nosuch` says there is no such run (exit 2), no traceback."""
    with pytest.raises(UsageError, match="nosuch"):
        await store.get_run("nosuch")


async def test_a_team_goes_through_its_life_and_each_step_is_an_event(store: Store) -> None:
    """Every state change a user sees on the board is also in the run's event stream, in order."""
    await make_run(store)
    async with store.lease("r1") as lease:
        e = lease.epoch
        agent = new_agent_id()
        assert await store.team_transition(
            "r1", "db", "running", epoch=e, attempt=1, fields={"agent_id": agent, "pid": "42"}
        )
        assert await store.team_transition("r1", "db", "verifying", epoch=e, attempt=1)
        assert await store.team_transition("r1", "db", "succeeded", epoch=e, attempt=1)
    team = await store.get_team("r1", "db")
    assert (team.status, team.attempt, team.agent_id, team.pid) == ("succeeded", 1, agent, 42)
    assert team.started is not None and team.finished is not None
    events = [ev for ev in await store.read_events("r1") if ev.type == "team"]
    assert [(ev.from_, ev.to) for ev in events] == [
        ("pending", "running"),
        ("running", "verifying"),
        ("verifying", "succeeded"),
    ]


async def test_agent_ids_look_like_the_ones_in_coordination_plans(store: Store) -> None:
    """Agent ids are 7 hex characters (like ab792f5) and differ between attempts."""
    ids = {new_agent_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 7 and int(i, 16) >= 0 for i in ids)


async def test_an_illegal_transition_is_refused_and_changes_nothing(store: Store) -> None:
    """A bug that tries pending -> succeeded gets IllegalTransitionError; the board is unchanged."""
    await make_run(store)
    async with store.lease("r1") as lease:
        with pytest.raises(IllegalTransitionError, match="pending succeeded"):
            await store.team_transition("r1", "db", "succeeded", epoch=lease.epoch, attempt=1)
        with pytest.raises(IllegalTransitionError):
            await store.team_transition("r1", "db", "nonsense", epoch=lease.epoch, attempt=1)
        with pytest.raises(IllegalTransitionError):
            await store.run_transition("r1", "succeeded", epoch=lease.epoch)
    assert (await store.get_team("r1", "db")).status == "pending"
    assert [ev.type for ev in await store.read_events("r1")] == ["run", "lease", "lease"]


async def test_repeating_a_transition_is_a_harmless_no_op(store: Store) -> None:
    """Retrying a write after a dropped connection does not double the event or fail."""
    await make_run(store)
    async with store.lease("r1") as lease:
        assert await store.team_transition("r1", "db", "running", epoch=lease.epoch, attempt=1)
        assert not await store.team_transition("r1", "db", "running", epoch=lease.epoch, attempt=1)
        assert await store.run_transition("r1", "running", epoch=lease.epoch)
        assert not await store.run_transition("r1", "running", epoch=lease.epoch)
    kinds = [(ev.type, ev.to) for ev in await store.read_events("r1")]
    assert kinds.count(("team", "running")) == 1
    assert kinds.count(("run", "running")) == 1


async def test_a_retry_carries_the_next_attempt_and_keeps_each_attempt(store: Store) -> None:
    """The report lists every attempt of a team with its agent id, exit code and reason."""
    await make_run(store)
    async with store.lease("r1") as lease:
        e = lease.epoch
        await store.team_transition(
            "r1", "db", "running", epoch=e, attempt=1, fields={"agent_id": "aaaaaaa"}
        )
        await store.update_attempt("r1", "db", 1, {"exit_code": "1", "reason": "crashed"}, epoch=e)
        await store.team_transition("r1", "db", "retrying", epoch=e, attempt=2, reason="crashed")
        await store.team_transition(
            "r1", "db", "running", epoch=e, attempt=2, fields={"agent_id": "bbbbbbb"}
        )
        await store.update_attempt("r1", "db", 2, {"exit_code": "0"}, epoch=e)
        await store.team_transition("r1", "db", "verifying", epoch=e, attempt=2)
        await store.team_transition("r1", "db", "succeeded", epoch=e, attempt=2)
        await store.team_transition("r1", "auth", "running", epoch=e, attempt=3)
        with pytest.raises(IllegalTransitionError, match="attempt"):  # attempts never go back
            await store.team_transition("r1", "auth", "retrying", epoch=e, attempt=1)
    attempts = await store.get_attempts("r1", "db")
    assert [(a.attempt, a.agent_id, a.exit_code) for a in attempts] == [
        (1, "aaaaaaa", 1),
        (2, "bbbbbbb", 0),
    ]
    assert attempts[0].reason == "crashed"
    assert attempts[1].status == "succeeded" and attempts[1].finished is not None
    every = await store.attempts_of("r1", {"db": 2, "auth": 3, "api": 0})  # one round trip
    assert [a.agent_id for a in every["db"]] == ["aaaaaaa", "bbbbbbb"]
    assert [a.attempt for a in every["auth"]] == [3] and every["api"] == []


async def test_a_stale_epoch_is_refused(store: Store) -> None:
    """A zombie orchestrator whose lease was taken over can never overwrite the new one's state."""
    await make_run(store)
    async with store.lease("r1") as old:
        old_epoch = old.epoch
    async with store.lease("r1") as new:
        assert new.epoch == old_epoch + 1
        await store.team_transition("r1", "db", "running", epoch=new.epoch, attempt=1)
        with pytest.raises(StaleEpochError, match="stale"):
            await store.team_transition("r1", "db", "failed", epoch=old_epoch, attempt=1)
        with pytest.raises(StaleEpochError):
            await store.run_transition("r1", "failed", epoch=old_epoch)
        with pytest.raises(StaleEpochError):
            await store.update_attempt("r1", "db", 1, {"exit_code": "9"}, epoch=old_epoch)
        with pytest.raises(StaleEpochError):
            await store.add_usage("r1", "db", Usage(input_tokens=1), epoch=old_epoch)
    team = await store.get_team("r1", "db")
    assert (team.status, team.exit_code, team.usage.tokens) == ("running", None, 0)


async def test_concurrent_transitions_never_produce_an_illegal_history(store: Store) -> None:
    """Many tasks racing to move the same teams leave a history where every step is allowed."""
    teams = ["t0", "t1", "t2"]
    await make_run(store, teams=teams)
    states = list(TEAM_TRANSITIONS)
    rng = random.Random(7)

    async with store.lease("r1") as lease:

        async def worker(seed: int) -> None:
            r = random.Random(seed)
            for _ in range(15):
                team = r.choice(teams)
                current = await store.get_team("r1", team)
                attempt = current.attempt + (1 if r.random() < 0.3 else 0)
                try:
                    await store.team_transition(
                        "r1", team, r.choice(states), epoch=lease.epoch, attempt=attempt
                    )
                except IllegalTransitionError:
                    pass

        async with anyio.create_task_group() as tg:
            for _ in range(30):
                tg.start_soon(worker, rng.randrange(1 << 30))

    events = [ev for ev in await store.read_events("r1", count=100_000) if ev.type == "team"]
    assert events, "some transitions must have succeeded"
    last = dict.fromkeys(teams, "pending")
    last_attempt = dict.fromkeys(teams, 0)
    for ev in events:
        assert ev.team is not None and ev.from_ == last[ev.team]
        assert ev.to in TEAM_TRANSITIONS[ev.from_]
        assert ev.attempt is not None and ev.attempt >= last_attempt[ev.team]
        last[ev.team], last_attempt[ev.team] = ev.to, ev.attempt
    final = await store.get_teams("r1")
    assert {t: s.status for t, s in final.items()} == last


async def test_usage_rolls_up_from_attempt_to_team_to_run(store: Store) -> None:
    """The board's cost column and the budget check see every token an agent reported."""
    await make_run(store)
    async with store.lease("r1") as lease:
        await store.team_transition("r1", "db", "running", epoch=lease.epoch, attempt=1)
        for _ in range(2):
            await store.add_usage(
                "r1",
                "db",
                Usage(input_tokens=10, output_tokens=5, cost_usd=0.25),
                epoch=lease.epoch,
                attempt=1,
            )
        await store.add_usage("r1", "auth", Usage(output_tokens=1, cost_usd=0.5), epoch=lease.epoch)
    assert (await store.get_team("r1", "db")).usage == Usage(
        input_tokens=20, output_tokens=10, cost_usd=0.5
    )
    assert (await store.get_attempts("r1", "db"))[0].usage.tokens == 30
    run = await store.get_run("r1")
    assert run.usage.tokens == 31 and run.usage.cost_usd == pytest.approx(1.0)


async def test_deliverables_record_hashes_and_missing_files(store: Store) -> None:
    """The report shows which promised files exist (with their hash) and which are missing."""
    await make_run(store)
    async with store.lease("r1") as lease:
        await store.set_deliverables("r1", "db", {"a.py": "h1", "b.py": None}, epoch=lease.epoch)
        assert (await store.get_team("r1", "db")).deliverables == {"a.py": "h1", "b.py": None}
        await store.set_deliverables("r1", "db", {"a.py": "h2"}, epoch=lease.epoch)
    assert (await store.get_team("r1", "db")).deliverables == {"a.py": "h2"}


async def test_agent_output_is_capped_in_redis_and_read_in_order(
    settings: Settings, tmp_path: Path
) -> None:
    """`orchestrate logs` shows the latest lines in order; Redis never grows without bound."""
    capped = settings.model_copy(update={"log_stream_cap": 100})
    async with open_store(capped, StateLayout(tmp_path)) as store:
        await check_capped_log(store)


async def check_capped_log(store: Store) -> None:
    await make_run(store)
    lines = [f"line {i}" for i in range(store.settings.log_stream_cap * 5)]
    for start in range(0, len(lines), 100):
        await store.append_log("r1", "db", 1, lines[start : start + 100])
    await store.append_log("r1", "db", 1, [])
    kept = await store.read_log("r1", "db", count=1_000_000)
    assert store.settings.log_stream_cap <= len(kept) < len(lines)
    assert [e.line for e in kept] == lines[-len(kept) :]
    assert all(e.attempt == 1 and e.team == "db" for e in kept)
    after = await store.read_log("r1", "db", after=kept[-3].id)
    assert [e.line for e in after] == lines[-2:]


async def test_a_follower_wakes_up_when_an_event_arrives(store: Store) -> None:
    """`orchestrate logs -f` in another terminal sees a transition as it happens."""
    await make_run(store)
    got: list[str] = []
    async with store.lease("r1") as lease:
        seen = await store.read_events("r1")

        async def follow() -> None:
            new = await store.read_events("r1", after=seen[-1].id, block_ms=3000)
            got.extend(ev.to for ev in new)

        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            await anyio.sleep(0.05)
            await store.run_transition("r1", "running", epoch=lease.epoch)
    assert got == ["running"]


async def test_log_lines_are_numbered_per_attempt(store: Store) -> None:
    """Each stored line carries its number within its attempt, across appends, so a reader
    can tell how much it missed; the counts say how many were added and kept."""
    await make_run(store)
    assert await store.log_counts("r1", "db") == (0, 0)
    assert await store.last_log("r1", "db") is None
    await store.append_log("r1", "db", 1, ["a", "b"])
    await store.append_log("r1", "db", 1, ["c"])
    await store.append_log("r1", "db", 2, ["d"])
    got = await store.read_log("r1", "db")
    assert [(e.attempt, e.n, e.line) for e in got] == [
        (1, 1, "a"),
        (1, 2, "b"),
        (1, 3, "c"),
        (2, 1, "d"),
    ]
    assert await store.log_counts("r1", "db") == (4, 4)
    assert await store.log_lines("r1", "db", 1) == 3
    last = await store.last_log("r1", "db")
    assert last is not None and (last.attempt, last.n, last.line) == (2, 1, "d")


async def test_success_records_its_deliverables_in_the_same_step(store: Store) -> None:
    """A team's move to succeeded carries its deliverable hashes in one atomic step: the
    report never shows a succeeded team with the previous attempt's (or no) deliverables."""
    await make_run(store)
    async with store.lease("r1") as lease:
        e = lease.epoch
        await store.set_deliverables("r1", "db", {"old.py": "h0"}, epoch=e)
        await store.team_transition("r1", "db", "running", epoch=e, attempt=1)
        await store.team_transition(
            "r1", "db", "verifying", epoch=e, attempt=1, fields={"exit_code": "0"}
        )
        assert (await store.get_team("r1", "db")).deliverables == {"old.py": "h0"}
        await store.team_transition(
            "r1", "db", "succeeded", epoch=e, attempt=1,
            deliverables={"a.py": "h1", "b.py": None},
        )  # fmt: skip
    team = await store.get_team("r1", "db")
    assert team.status == "succeeded"
    assert team.deliverables == {"a.py": "h1", "b.py": None}
    assert (await store.get_attempts("r1", "db"))[0].fields["exit_code"] == "0"
