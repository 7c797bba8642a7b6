"""Raising a paused run's budget: kept in the run (with its event), refused below what is spent."""

from __future__ import annotations

import pytest

from orchestrator.plan.models import Budget
from orchestrator.state.budgets import BudgetError, effective_budget, raise_budget, spent_reason
from orchestrator.state.models import Usage
from orchestrator.state.store import Store
from tests.support.redis import make_run

pytestmark = pytest.mark.anyio


async def spend(store: Store, run: str, usd: float, tokens: int) -> None:
    epoch = (await store.get_run(run)).epoch
    usage = Usage(input_tokens=tokens, output_tokens=0, cost_usd=usd)
    await store.add_usage(run, "db", usage, epoch=epoch)


async def test_a_raise_is_kept_in_the_run_with_its_event(store: Store) -> None:
    """--budget-usd 40 over the plan's $25 with $25.10 spent: the run now allows $40,
    the tokens limit stays the plan's, and an event says who had what."""
    run = await make_run(store)
    await spend(store, run, 25.10, 1000)
    plan_budget = Budget(usd=25, tokens=500_000)
    raised = await raise_budget(store, run, plan_budget, usd=40)
    assert raised.usd == 40 and raised.tokens == 500_000
    again = effective_budget(plan_budget, (await store.get_run(run)).meta)
    assert again == raised
    events = [e for e in await store.read_events(run) if e.type == "budget"]
    assert [e.reason for e in events] == ["budget raised to $40.00 (was $25.00, spent $25.10)"]


async def test_a_raise_must_be_above_what_is_spent(store: Store) -> None:
    """Raising to less than what the run spent would pause it again at once: refused."""
    run = await make_run(store)
    await spend(store, run, 3.0, 9000)
    with pytest.raises(BudgetError, match=r"spent \$3.00: --budget-usd must be more"):
        await raise_budget(store, run, Budget(usd=2), usd=2.5)
    with pytest.raises(BudgetError, match="spent 9000 tokens"):
        await raise_budget(store, run, Budget(tokens=8000), tokens=9000)
    with pytest.raises(BudgetError, match="say the new budget"):
        await raise_budget(store, run, Budget(usd=2))
    assert effective_budget(Budget(usd=2), (await store.get_run(run)).meta) == Budget(usd=2)


async def test_a_run_without_a_budget_can_be_given_one(store: Store) -> None:
    """A plan without budget: a token limit set at resume is the run's budget."""
    run = await make_run(store)
    raised = await raise_budget(store, run, None, tokens=10_000)
    assert raised == Budget(tokens=10_000)


def test_spent_reason() -> None:
    """Tokens or dollars reaching the limit stop new attempts, saying which."""
    assert spent_reason(None, Usage(cost_usd=99)) is None
    assert spent_reason(Budget(usd=1.0), Usage(cost_usd=0.5)) is None
    assert (
        spent_reason(Budget(usd=1.0), Usage(cost_usd=1.2))
        == "the run's budget is spent: $1.20 of $1.00"
    )
    assert (
        spent_reason(Budget(tokens=100), Usage(input_tokens=60, output_tokens=40), whose="db's")
        == "db's budget is spent: 100 of 100 tokens"
    )
