"""The web dashboard says what a waiting team needs: the approve/reject commands, the reset."""

from __future__ import annotations

import time

import pytest

from orchestrator.state.gates import request_gate
from tests.support.redis import make_run
from tests.test_web import Web, web  # noqa: F401 - the dashboard fixture

pytestmark = pytest.mark.anyio


async def test_run_page_shows_the_gate_commands_and_the_pause(web: Web) -> None:  # noqa: F811
    """A team awaiting approval shows both commands; a team paused by a usage limit, until
    when (its local wall-clock time)."""
    store = web.store
    await make_run(store, "r1", ["db", "api"])
    for team in ("db", "api"):
        await store.team_transition("r1", team, "running", epoch=0, attempt=1)
        await store.team_transition("r1", team, "verifying", epoch=0, attempt=1)
    await store.team_transition("r1", "db", "awaiting_approval", epoch=0, attempt=1)
    await request_gate(store, "r1", "db", attempt=1)
    until = time.time() + 3600
    await store.team_transition(
        "r1", "api", "paused", epoch=0, attempt=1, fields={"paused_until": repr(until)}
    )
    page = await web.client.get("/runs/r1")
    assert page.status_code == 200
    assert "orchestrate approve r1 db" in page.text
    assert "orchestrate reject r1 db --reason" in page.text
    assert "paused until " + time.strftime("%H:%M", time.localtime(until)) in page.text or (
        "paused until " + time.strftime("%b %d %H:%M", time.localtime(until)) in page.text
    )
