"""The awaiting_approval webhook: a team waits at its gate, the post says what to run."""

from __future__ import annotations

import pytest

from orchestrator.plan.models import Plan
from orchestrator.run.notify import Notifier, Webhook
from tests.test_notify import Hooked, server  # noqa: F401 - the fixture

pytestmark = pytest.mark.anyio


async def test_awaiting_approval_is_posted_with_the_commands(server: Hooked) -> None:  # noqa: F811
    """Generic JSON names the team and both commands; Slack's text carries them too."""
    hooks = [
        Webhook(url=f"{server.url}/generic"),
        Webhook(url=f"{server.url}/slack", format="slack"),
        Webhook(url=f"{server.url}/failures-only", events=("team_failed",)),
    ]
    notifier = Notifier(hooks, plan_name="demo", timeout=2, attempts=2, backoff=0.01)
    sent = await notifier.awaiting_approval("r1", "api", "/tmp/report.html")
    assert [d.ok for d in sent] == [True, True]
    got = dict(server.received)
    generic = got["/generic"]
    assert generic["event"] == "awaiting_approval"
    assert generic["team"] == "api" and generic["run"] == "r1"
    assert generic["approve"] == "orchestrate approve r1 api"
    assert generic["reject"] == 'orchestrate reject r1 api --reason "..."'
    assert "orchestrate approve r1 api" in got["/slack"]["text"]
    assert "/failures-only" not in got


def test_plans_get_the_new_event_by_default_and_may_leave_it_out() -> None:
    """A webhook without events: gets awaiting_approval too; events: can still choose."""
    plan = Plan.model_validate(
        {
            "version": 1,
            "name": "p",
            "teams": [{"id": "a", "task": "t"}],
            "notify": [
                {"url": "https://hooks.example.com/x"},
                {"url": "https://hooks.example.com/y", "events": ["run_finished"]},
            ],
        }
    )
    assert "awaiting_approval" in plan.notify[0].events
    assert plan.notify[1].events == ("run_finished",)
