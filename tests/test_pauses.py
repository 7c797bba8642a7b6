"""Provider pauses in Redis: recorded with their event, only ever lengthened, read back later."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from orchestrator.paths import StateLayout
from orchestrator.settings import Settings
from orchestrator.state.pauses import Pause, active_pauses, all_pauses, clear_pause, pause_provider
from orchestrator.state.store import Store, open_store
from tests.support.redis import make_run

pytestmark = pytest.mark.anyio


async def test_a_pause_is_recorded_with_its_event(store: Store) -> None:
    """Pausing a provider stores until when, who reported it, and a `pause` event saying so."""
    run = await make_run(store)
    until = time.time() + 3600
    assert await pause_provider(store, run, "anthropic", until=until, team="db", message="5h")
    pauses = await active_pauses(store, run)
    assert list(pauses) == ["anthropic"]
    pause = pauses["anthropic"]
    assert pause.until == until and pause.team == "db" and pause.message == "5h"
    events = [e for e in await store.read_events(run) if e.type == "pause"]
    assert len(events) == 1
    assert events[0].team == "db" and events[0].to == "paused"
    assert events[0].reason == f"anthropic paused until {pause.until_text()}: 5h"


async def test_a_pause_only_gets_longer(store: Store) -> None:
    """A second, earlier reset for the same provider does not shorten the wait; a later one does."""
    run = await make_run(store)
    now = time.time()
    assert await pause_provider(store, run, "openai", until=now + 600, team="db")
    assert not await pause_provider(store, run, "openai", until=now + 60, team="auth")
    assert (await active_pauses(store, run))["openai"].until == now + 600
    assert await pause_provider(store, run, "openai", until=now + 900, team="auth")
    pause = (await active_pauses(store, run))["openai"]
    assert pause.until == now + 900 and pause.team == "auth"
    assert len([e for e in await store.read_events(run) if e.type == "pause"]) == 2


async def test_ended_pauses_are_not_active_and_can_be_cleared(store: Store) -> None:
    """Past its reset a pause no longer holds anyone back; clearing forgets it."""
    run = await make_run(store)
    now = time.time()
    await pause_provider(store, run, "google", until=now + 1, team="db")
    await pause_provider(store, run, "anthropic", until=now + 3600, team="auth")
    assert set(await active_pauses(store, run, now=now + 2)) == {"anthropic"}
    assert set(await all_pauses(store, run)) == {"google", "anthropic"}
    await clear_pause(store, run, "anthropic")
    assert set(await all_pauses(store, run)) == {"google"}


async def test_a_pause_is_still_there_for_the_next_process(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    """Another connection (a resume) reads the same pause back."""
    run = await make_run(store)
    until = time.time() + 120
    await pause_provider(store, run, "anthropic", until=until, team="db")
    async with open_store(settings, StateLayout(tmp_path / "other")) as other:
        pauses = await active_pauses(other, run)
    assert pauses["anthropic"].until == until


def test_until_text_is_the_wall_clock_and_a_date_on_another_day() -> None:
    """The board says "paused until 14:05", with the day when it is not today."""
    now = time.mktime((2026, 12, 1, 10, 0, 0, 0, 0, -1))
    same = Pause(provider="p", until=now + 4 * 3600 + 300, team="t")
    assert same.until_text(now) == "14:05"
    later = Pause(provider="p", until=now + 3 * 86400, team="t")
    assert later.until_text(now) == "Dec 04 10:00"


def test_a_pause_never_ends_at_once_nor_after_a_week() -> None:
    """A reset already past still pauses a little; an absurd one is capped; none: no pause."""
    from orchestrator.state.pauses import MAX_PAUSE, MIN_PAUSE, pause_until

    now = 1_800_000_000.0
    assert pause_until(now - 30, now=now) == now + MIN_PAUSE
    assert pause_until(now + 3600, now=now) == now + 3600
    assert pause_until(now + 90 * 86400, now=now) == now + MAX_PAUSE
    assert pause_until(None, now=now) is None


def test_seconds_left_for_a_provider() -> None:
    """Only the paused provider waits, and only until its reset."""
    from orchestrator.state.pauses import seconds_left

    now = 1_800_000_000.0
    pauses = {"anthropic": Pause(provider="anthropic", until=now + 60, team="db")}
    assert seconds_left("anthropic", pauses, now=now) == 60
    assert seconds_left("openai", pauses, now=now) is None
    assert seconds_left("anthropic", pauses, now=now + 61) is None
