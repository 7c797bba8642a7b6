"""The state machines (orchestrator.state.status): stored values, Redis refusals, no literal."""

from __future__ import annotations

import ast
import sys
from collections import deque
from pathlib import Path

import pytest

from orchestrator.errors import IllegalTransitionError
from orchestrator.state.status import (
    RUN_TRANSITIONS,
    TEAM_TRANSITIONS,
    IntegrationStatus,
    RunStatus,
    TeamStatus,
)
from orchestrator.state.store import Store
from tests.support.redis import make_run

pytestmark = pytest.mark.anyio

PACKAGE = Path(__file__).resolve().parents[1] / "orchestrator"
STATUS_MODULE = Path(str(sys.modules[TeamStatus.__module__].__file__)).resolve()


def test_stored_values_are_the_documented_strings() -> None:
    """Redis, events, `status --json` and the reports keep the strings they always held."""
    assert [s.value for s in TeamStatus] == [
        "pending", "running", "verifying", "retrying", "succeeded", "failed", "blocked",
        "cancelled", "awaiting_approval", "paused",
    ]  # fmt: skip
    assert [s.value for s in RunStatus] == [
        "pending", "running", "integrating", "succeeded", "failed", "interrupted", "cancelled",
        "paused",
    ]  # fmt: skip
    assert f"{TeamStatus.SUCCEEDED}" == str(TeamStatus.SUCCEEDED) == "succeeded"
    assert TeamStatus("failed") is TeamStatus.FAILED


def test_run_status_exit_codes() -> None:
    """`orchestrate run`/`resume` exit 0 on success, 130 when stopped, 1 on failure (README)."""
    codes = {s: s.exit_code for s in RunStatus.FINAL | {RunStatus.INTERRUPTED}}
    assert codes == {
        RunStatus.SUCCEEDED: 0,
        RunStatus.FAILED: 1,
        RunStatus.INTERRUPTED: 130,
        RunStatus.CANCELLED: 130,
    }


def _path_to(table: dict[str, tuple[str, ...]], start: str, goal: str) -> list[str]:
    """The shortest chain of allowed moves from ``start`` to ``goal`` (states after start)."""
    seen = {start: [start]}
    todo = deque([start])
    while todo:
        here = todo.popleft()
        for nxt in table[here]:
            if nxt not in seen:
                seen[nxt] = [*seen[here], nxt]
                todo.append(nxt)
    return seen[goal][1:]


async def test_redis_refuses_exactly_the_team_moves_the_table_refuses(store: Store) -> None:
    """The Lua script is generated from TEAM_TRANSITIONS: every (from, to) pair is allowed by
    Redis iff the table allows it; `finished` is stamped on a final state, cleared on running."""
    pairs = [(a, b) for a in TeamStatus for b in TeamStatus]
    ids = [f"t{i}" for i in range(len(pairs))]
    await make_run(store, teams=ids)
    table = {str(k): tuple(map(str, v)) for k, v in TEAM_TRANSITIONS.items()}
    async with store.lease("r1") as lease:
        for tid, (a, b) in zip(ids, pairs, strict=True):
            for step in _path_to(table, "pending", a):
                await store.team_transition(
                    "r1", tid, TeamStatus(step), epoch=lease.epoch, attempt=1
                )
            allowed = b in TEAM_TRANSITIONS[a]
            try:  # attempt 2: a move to the same state is then a move, not a repeat
                await store.team_transition("r1", tid, b, epoch=lease.epoch, attempt=2)
            except IllegalTransitionError:
                assert not allowed, f"{a} -> {b} refused"
                continue
            assert allowed, f"{a} -> {b} allowed"
            team = await store.get_team("r1", tid)
            assert team.status is b
            if b in TeamStatus.FINAL:
                assert team.finished is not None, (a, b)
            if b is TeamStatus.RUNNING:  # a new attempt: the last one's end is not this one's
                assert team.finished is None, (a, b)


async def test_redis_refuses_exactly_the_run_moves_the_table_refuses(store: Store) -> None:
    """The run's Lua script follows RUN_TRANSITIONS for every pair of distinct states."""
    pairs = [(a, b) for a in RunStatus for b in RunStatus if a is not b]
    table = {str(k): tuple(map(str, v)) for k, v in RUN_TRANSITIONS.items()}
    for i, (a, b) in enumerate(pairs):
        run_id = f"r{i}"
        await make_run(store, run_id=run_id)
        async with store.lease(run_id) as lease:
            for step in _path_to(table, "pending", a):
                await store.run_transition(run_id, RunStatus(step), epoch=lease.epoch)
            try:
                await store.run_transition(run_id, b, epoch=lease.epoch)
            except IllegalTransitionError:
                assert b not in RUN_TRANSITIONS[a], f"{a} -> {b} refused"
                continue
            assert b in RUN_TRANSITIONS[a], f"{a} -> {b} allowed"
            assert (await store.get_run(run_id)).status is b


# Strings that spell a status but are not one: words of a sentence, a check's result.
_NOT_A_STATUS = {
    ("verdict.py", "cancelled"),  # the reason's words when no one says who cancelled
    ("reconcile.py", "cancelled"),  # why an attempt is uncounted: crashed or cancelled
    ("notify.py", "failed"),  # the webhook payload's key: the failed teams
    ("report.py", "failed"),  # a check's result: passed or failed
    ("resume.py", "failed"),  # the feedback's words when a failed attempt gave no reason
    ("resume.py", "cancelled"),  # why an attempt is uncounted: crashed or cancelled
    ("teamrun.py", "running"),  # "(running)" or "(ended)" after an attached agent
    ("timeline.py", "failed"),  # a suite run's tooltip: passed or failed
    ("notify.py", "awaiting_approval"),  # the webhook event of that name
    ("models.py", "awaiting_approval"),  # the webhook event of that name (`notify: events:`)
    ("_hosts.py", "running"),  # `orchestrate hosts`: a node's attempts that run now (a key)
    ("ray_host.py", "running"),  # a host's info: its attempts that run now (a key)
}


def test_no_status_is_spelled_outside_the_status_module() -> None:
    """A status is named by its member, so a new state (or a renamed one) is found by the type
    checker everywhere it matters; the stored strings live in orchestrator/state/status.py only."""
    values = {s.value for enum in (TeamStatus, RunStatus, IntegrationStatus) for s in enum}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if path == STATUS_MODULE:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and node.value in values
                and id(node) not in docstrings
                and (path.name, node.value) not in _NOT_A_STATUS
            ):
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert not found, "name the member of orchestrator.state.status instead:\n" + "\n".join(found)
