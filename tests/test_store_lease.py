"""The run lease: one live orchestrator per run, renewed while it works, lost loudly."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import anyio
import pytest

from orchestrator.errors import LeaseHeldError, StaleEpochError
from orchestrator.paths import StateLayout
from orchestrator.settings import Settings
from orchestrator.state.store import Store, open_store
from tests.support.redis import make_run

pytestmark = pytest.mark.anyio


@pytest.fixture
def short(settings: Settings) -> Settings:
    return settings.model_copy(update={"lease_ttl": 0.6})


async def test_a_second_orchestrator_for_the_same_run_is_refused_by_name(store: Store) -> None:
    """`orchestrate resume RUN` while RUN is running says who runs it (host, pid, since)."""
    await make_run(store)
    async with store.lease("r1"):
        with pytest.raises(LeaseHeldError) as caught:
            async with store.lease("r1"):
                pytest.fail("two holders")
        assert await store.lease_holder("r1") is not None
    message = str(caught.value)
    assert socket.gethostname() in message and f"pid {os.getpid()}" in message
    assert "since" in message and "\n" not in message
    assert await store.lease_holder("r1") is None


async def test_the_lease_outlives_its_ttl_while_renewed(short: Settings, tmp_path: Path) -> None:
    """A long run keeps its lease: the background renewal keeps other orchestrators out."""
    async with open_store(short, StateLayout(tmp_path)) as store:
        await make_run(store)
        async with store.lease("r1") as lease:
            await anyio.sleep(short.lease_ttl * 2)
            assert not lease.lost.is_set()
            with pytest.raises(LeaseHeldError):
                async with store.lease("r1"):
                    pass
        async with store.lease("r1") as again:  # released on exit: the next one gets it at once
            assert again.epoch == lease.epoch + 1


async def test_a_holder_whose_lease_was_taken_over_stops(short: Settings, tmp_path: Path) -> None:
    """A frozen orchestrator that wakes up after another took over stops instead of writing on."""
    async with open_store(short, StateLayout(tmp_path)) as store:
        await make_run(store)
        reached_end = False
        with pytest.raises(LeaseHeldError, match="lost the lease") as caught:
            async with store.lease("r1") as old:
                # Fault: the lease expires as if this process had been frozen for a TTL.
                await store._redis.pexpire(store.keys.lock("r1"), 1)
                await anyio.sleep(0.01)
                async with store.lease("r1", cancel_on_loss=False) as new:
                    assert new.epoch == old.epoch + 1
                    await anyio.sleep(short.lease_ttl)  # the old holder's renewal notices
                    assert old.lost.is_set()
                reached_end = True
        assert not reached_end
        assert socket.gethostname() in str(caught.value)
        with pytest.raises(StaleEpochError):
            await store.run_transition("r1", "running", epoch=old.epoch)


async def test_an_error_in_the_lease_block_comes_out_unchanged(store: Store) -> None:
    """A failure inside the run is reported as itself (not wrapped) and the lease is released."""
    await make_run(store)
    with pytest.raises(KeyError, match="boom"):
        async with store.lease("r1"):
            raise KeyError("boom")
    assert await store.lease_holder("r1") is None


async def test_leaving_the_lease_twice_is_safe(store: Store) -> None:
    """Closing a resource twice (cleanup paths) never fails."""
    await make_run(store)
    lease = store.lease("r1")
    await lease.__aenter__()
    await lease.__aexit__(None, None, None)
    await lease.__aexit__(None, None, None)
    await store.aclose()
    await store.aclose()


async def test_break_lease_frees_only_the_holder_it_names(store: Store) -> None:
    """Taking over a dead orchestrator's lease deletes that lease, never a newer holder's."""
    await make_run(store)
    async with store.lease("r1", cancel_on_loss=False):
        first = await store.lease_holder("r1")
        assert first is not None
        stale = first.model_copy(update={"token": "someone-else"})
        assert await store.break_lease("r1", stale) is False
        assert await store.lease_holder("r1") == first
        assert await store.break_lease("r1", first) is True
        assert await store.lease_holder("r1") is None
        assert await store.break_lease("r1", first) is False  # already gone: nothing to do


def test_a_lease_holder_is_alive_while_its_process_is() -> None:
    """`status`, `clean`, `cancel` and `resume` agree on whether a run's orchestrator lives:
    this host's holder while its process runs (not a later process with its pid), another
    host's until its lease expires."""
    import subprocess
    import sys
    import time

    from orchestrator.state.lease import holder_alive
    from orchestrator.state.models import LeaseHolder

    here = socket.gethostname()
    me = LeaseHolder(host=here, pid=os.getpid(), since=time.time(), token="t")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    dead = LeaseHolder(host=here, pid=int(gone.stdout), since=time.time(), token="t")
    reused = LeaseHolder(host=here, pid=os.getpid(), since=time.time() - 3600 * 24 * 365, token="t")
    elsewhere = LeaseHolder(host=here + "-elsewhere", pid=1, since=0.0, token="t")
    assert [holder_alive(h) for h in (me, dead, reused, elsewhere)] == [True, False, False, True]


async def test_every_command_resolves_run_the_same_way(store: Store) -> None:
    """RUN defaults to the newest run; an id that names no run (or cannot) and an empty
    state say one line each, the same for `resume`, `cancel`, `report`, `logs`, `status`."""
    from orchestrator.errors import NO_RUNS, UsageError

    with pytest.raises(UsageError) as nothing:
        await store.resolve_run(None)
    assert str(nothing.value) == NO_RUNS
    await make_run(store, run_id="old-1")
    await anyio.sleep(0.01)
    await make_run(store, run_id="new-2")
    assert await store.resolve_run(None) == "new-2"
    assert await store.resolve_run("old-1") == "old-1"
    for bad in ("nope-1", "a b"):
        with pytest.raises(UsageError) as info:
            await store.resolve_run(bad)
        assert str(info.value) == f"no run {bad!r}"
