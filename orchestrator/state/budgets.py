"""Budgets that ask: the run's budget as raised by a person, and how much is left.

The plan's ``budget: {usd, tokens, hard}`` is where a run starts. When it is
spent the run pauses (``paused (budget)``) and a person may raise it:
``orchestrate resume RUN --budget-usd 40`` (or ``--budget-tokens``). The new
limit is kept in the run's meta (``budget_usd``, ``budget_tokens``), written
with a ``budget`` event in one Lua script, so every later resume keeps it::

    budget = await raise_budget(store, run, usd=40)          # Budget(usd=40, ...)
    budget = effective_budget(plan.budget, run.meta)         # the plan's, raised
    why = spent_reason(budget, run.usage)                    # "the run's budget is spent: ..."

A raise must be above what the run has spent already (else it would pause
again at once): :class:`BudgetError` (exit 2) says how much that is.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from orchestrator.errors import UsageError
from orchestrator.plan.models import Budget
from orchestrator.state.models import Usage

if TYPE_CHECKING:
    from orchestrator.state.store import Store

__all__ = ["BudgetError", "effective_budget", "raise_budget", "spent_reason"]

USD_FIELD = "budget_usd"
TOKENS_FIELD = "budget_tokens"


class BudgetError(UsageError):
    """A budget raise that cannot be: not a raise, or not above what is spent (exit 2)."""


def effective_budget(plan_budget: Budget | None, meta: Mapping[str, str]) -> Budget | None:
    """The run's budget: the plan's, with the limits a person raised since (run meta)."""
    usd = meta.get(USD_FIELD)
    tokens = meta.get(TOKENS_FIELD)
    if not usd and not tokens:
        return plan_budget
    base = plan_budget or Budget()
    update: dict[str, object] = {}
    if usd:
        update["usd"] = float(usd)
    if tokens:
        update["tokens"] = int(tokens)
    return base.model_copy(update=update)


def spent_reason(budget: Budget | None, spent: Usage, *, whose: str = "the run's") -> str | None:
    """Why no new attempt may start (``spent`` reached ``budget``), or None."""
    if budget is None:
        return None
    if budget.tokens is not None and spent.tokens >= budget.tokens:
        return f"{whose} budget is spent: {spent.tokens} of {budget.tokens} tokens"
    if budget.usd is not None and spent.cost_usd >= budget.usd:
        return f"{whose} budget is spent: ${spent.cost_usd:.2f} of ${budget.usd:.2f}"
    return None


# KEYS: meta, events
# ARGV: now, events cap, reason, field1, value1[, field2, value2]
_RAISE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NO_RUN') end
local set = {}
for i = 4, #ARGV, 2 do table.insert(set, ARGV[i]); table.insert(set, ARGV[i + 1]) end
redis.call('HSET', KEYS[1], unpack(set))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
  'type', 'budget', 'from', '', 'to', 'raised', 'reason', ARGV[3], 'ts', ARGV[1])
return 1
"""


async def raise_budget(
    store: Store,
    run_id: str,
    plan_budget: Budget | None,
    *,
    usd: float | None = None,
    tokens: int | None = None,
) -> Budget:
    """Raise the run's budget to ``usd`` / ``tokens``; the budget now in force.

    Raises :class:`BudgetError` unless each new limit is above what the run has
    spent (and, when there was one, above the current limit).
    """
    if usd is None and tokens is None:
        raise BudgetError("say the new budget: --budget-usd and/or --budget-tokens")
    run = await store.get_run(run_id)
    current = effective_budget(plan_budget, run.meta)
    spent = run.usage
    fields: list[str] = []
    said: list[str] = []
    if usd is not None:
        if usd <= spent.cost_usd:
            raise BudgetError(
                f"run {run_id} has spent ${spent.cost_usd:.2f}: --budget-usd must be more"
            )
        fields += [USD_FIELD, repr(float(usd))]
        old = f"${current.usd:.2f}" if current and current.usd is not None else "none"
        said.append(f"${usd:.2f} (was {old}, spent ${spent.cost_usd:.2f})")
    if tokens is not None:
        if tokens <= spent.tokens:
            raise BudgetError(
                f"run {run_id} has spent {spent.tokens} tokens: --budget-tokens must be more"
            )
        fields += [TOKENS_FIELD, str(int(tokens))]
        old = str(current.tokens) if current and current.tokens is not None else "none"
        said.append(f"{tokens} tokens (was {old}, spent {spent.tokens})")
    reason = "budget raised to " + " and ".join(said)
    keys = [store.keys.meta(run_id), store.keys.events(run_id)]
    args = [repr(time.time()), str(store.settings.event_stream_cap), reason, *fields]
    redis = store._redis  # one Lua call per change, like the store's own
    await store._call(lambda: redis.eval(_RAISE, len(keys), *keys, *args))
    raised = effective_budget(plan_budget, (await store.get_run(run_id)).meta)
    assert raised is not None
    return raised
