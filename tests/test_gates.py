"""Approval gates in Redis, decided with `orchestrate approve` / `reject` from other processes.

Real Redis (the session's redis-server), the real CLI in subprocesses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.settings import Settings
from orchestrator.state.gates import (
    Decision,
    GateError,
    GateStatus,
    decide,
    get_gate,
    get_gates,
    request_gate,
)
from orchestrator.state.store import Store
from tests.support.redis import make_run

pytestmark = pytest.mark.anyio


def cli(settings: Settings, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`orchestrate ARGS` in another process, on the test's Redis and key prefix."""
    state = tmp_path / ".orchestrate"
    state.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
    assert settings.redis_url is not None
    env |= {
        "ORCHESTRATE_REDIS_URL": settings.redis_url.get_secret_value(),
        "ORCHESTRATE_KEY_PREFIX": settings.key_prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args, "--state-dir", str(state)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_approve_from_another_process_is_recorded_with_who_and_when(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    """`orchestrate approve RUN TEAM --note` decides the waiting gate; the event says who."""
    run = await make_run(store)
    gate = await request_gate(store, run, "db", attempt=1)
    assert gate.status is GateStatus.AWAITING and not gate.decided
    done = cli(settings, tmp_path, "approve", run, "db", "--note", "schema  looks\ngood")
    assert done.returncode == 0, done.stderr
    gate_now = await get_gate(store, run, "db")
    assert gate_now is not None
    assert gate_now.status is GateStatus.APPROVED
    assert gate_now.note == "schema looks good"  # one line
    assert gate_now.by is not None and "@" in gate_now.by
    assert gate_now.at is not None and gate_now.at >= gate.requested
    assert f"approved db (attempt 1) of run {run}" in done.stdout
    assert f"`orchestrate resume {run}`" in done.stdout  # nobody runs it: say how to go on
    events = [e for e in await store.read_events(run) if e.type == "gate"]
    assert [(e.team, e.to, e.attempt) for e in events] == [
        ("db", "awaiting", 1),
        ("db", "approved", 1),
    ]
    assert events[1].reason == f"approved by {gate_now.by}: schema looks good"


async def test_reject_needs_a_reason_and_keeps_it_as_feedback(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    """A rejection without --reason is refused (exit 2, one line); with it, the reason is kept."""
    run = await make_run(store)
    await request_gate(store, run, "auth", attempt=2)
    refused = cli(settings, tmp_path, "reject", run, "auth")
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "needs a reason" in refused.stderr
    assert (await get_gate(store, run, "auth")).status is GateStatus.AWAITING  # type: ignore[union-attr]
    done = cli(settings, tmp_path, "reject", run, "auth", "--reason", "CORS not validated")
    assert done.returncode == 0, done.stderr
    gate = await get_gate(store, run, "auth")
    assert gate is not None and gate.status is GateStatus.REJECTED
    assert gate.reason == "CORS not validated" and gate.attempt == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("approve", "RUN", "auth"), "is not waiting for approval"),
        (("approve", "RUN", "nosuch"), "no team 'nosuch' in run"),
        (("approve", "nosuchrun", "db"), "nosuchrun"),
        (("approve", "RUN", "bad:id"), "not a valid id"),
    ],
)
async def test_bad_decisions_are_one_line_and_exit_2(
    store: Store, settings: Settings, tmp_path: Path, args: tuple[str, ...], words: str
) -> None:
    """A team without a waiting gate, an unknown team or run, a bad id: exit 2, one line."""
    run = await make_run(store)
    await request_gate(store, run, "db", attempt=1)
    done = cli(settings, tmp_path, *(run if a == "RUN" else a for a in args))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert words in done.stderr
    assert done.stderr.startswith("orchestrate: error:") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


async def test_a_gate_is_decided_once(store: Store, settings: Settings, tmp_path: Path) -> None:
    """A second decision is refused and names the first: who and what."""
    run = await make_run(store)
    await request_gate(store, run, "db", attempt=1)
    first = cli(settings, tmp_path, "approve", run, "db")
    assert first.returncode == 0
    second = cli(settings, tmp_path, "reject", run, "db", "--reason", "too late")
    assert second.returncode == 2
    assert "already approved by" in second.stderr
    gate = await get_gate(store, run, "db")
    assert gate is not None and gate.status is GateStatus.APPROVED and gate.reason is None


async def test_two_deciders_at_once_one_wins(store: Store) -> None:
    """Concurrent approve and reject: exactly one is recorded, the other refused."""
    import anyio

    run = await make_run(store)
    await request_gate(store, run, "db", attempt=1)
    outcomes: list[str] = []

    async def one(decision: Decision) -> None:
        try:
            await decide(store, run, "db", decision, by=f"{decision}@h", text="x")
            outcomes.append(f"ok {decision}")
        except GateError:
            outcomes.append("refused")

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(one, Decision.APPROVE)
            tg.start_soon(one, Decision.REJECT)
    assert outcomes.count("refused") == 9
    gate = await get_gate(store, run, "db")
    assert gate is not None and f"ok {gate.status.value}" in outcomes
    decided = [e for e in await store.read_events(run) if e.type == "gate" and e.to != "awaiting"]
    assert len(decided) == 1


async def test_a_decision_survives_a_repeated_request_and_a_new_attempt_reopens(
    store: Store,
) -> None:
    """A resume re-asking for the same attempt keeps the decision; the next attempt asks again."""
    run = await make_run(store)
    await request_gate(store, run, "db", attempt=1)
    await decide(store, run, "db", Decision.REJECT, by="a@h", text="no tests")
    again = await request_gate(store, run, "db", attempt=1)
    assert again.status is GateStatus.REJECTED and again.reason == "no tests"
    reopened = await request_gate(store, run, "db", attempt=2)
    assert reopened.status is GateStatus.AWAITING and reopened.attempt == 2
    assert reopened.reason is None and reopened.by is None
    with pytest.raises(GateError, match="attempt 2, not that one"):
        await decide(store, run, "db", Decision.APPROVE, by="a@h", attempt=1)
    gates = await get_gates(store, run, ["db", "auth"])
    assert list(gates) == ["db"]


@pytest.mark.parametrize(
    ("status", "gate_attempt", "attempt", "max_attempts", "action"),
    [
        (None, 1, 1, 3, "wait"),
        ("awaiting", 1, 1, 3, "wait"),
        ("approved", 1, 1, 3, "release"),
        ("rejected", 1, 1, 3, "retry"),
        ("rejected", 3, 3, 3, "fail"),
        ("approved", 1, 2, 3, "wait"),  # a decision on an earlier attempt says nothing of this one
    ],
)
def test_gate_action(
    status: str | None, gate_attempt: int, attempt: int, max_attempts: int, action: str
) -> None:
    """Approve releases the dependents; reject retries while attempts are left, then fails."""
    from orchestrator.state.gates import GateState, gate_action

    gate = (
        None
        if status is None
        else GateState(
            team="db", status=GateStatus(status), attempt=gate_attempt, requested=1.0, reason="x"
        )
    )
    assert gate_action(gate, attempt=attempt, max_attempts=max_attempts).value == action


def test_rejection_feedback_names_the_reviewer_and_reason() -> None:
    """The next attempt's prompt is told who rejected which attempt, and why."""
    from orchestrator.state.gates import GateState, rejection_feedback

    gate = GateState(
        team="db", status=GateStatus.REJECTED, attempt=2, requested=1.0, by="ana@h", reason="no"
    )
    assert rejection_feedback(gate) == "attempt 2 was rejected at review by ana@h: no"
