"""Provider pauses: a usage limit stops new agents of one provider until its reset.

When an agent reports a usage limit with a reset time
(:mod:`orchestrator.agents.limits`), the scheduler records a pause of that
provider in the run's state (``orch:{RUN}:pauses``: provider -> JSON) with an
event (``type: pause``), in one Lua script. Until the pause ends no agent of
that provider starts; other providers' teams go on. Being in Redis, a pause
survives the orchestrator: a resume reads it back and keeps waiting::

    await pause_provider(store, run, "anthropic", until=t, team="api", message="5-hour limit")
    pauses = await active_pauses(store, run)            # {"anthropic": Pause(...)}
    pauses["anthropic"].until_text()                    # "14:05"

A second report for the same provider only ever moves the end later (two
teams hitting the same limit do not shorten each other's wait).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from orchestrator.state.store import Store

__all__ = [
    "MIN_PAUSE",
    "Pause",
    "active_pauses",
    "clear_pause",
    "pause_provider",
    "pause_until",
    "seconds_left",
]

MIN_PAUSE = 10.0
"""Seconds a pause lasts at least: a reset already past (a clock a little ahead, a
time printed to the minute) must not start the next agent into the same limit at once."""
MAX_PAUSE = 7 * 24 * 3600.0
"""A reset further away than this is not believed (a misread date): pause this long."""


class Pause(BaseModel):
    """One provider's pause."""

    model_config = ConfigDict(frozen=True)

    provider: str
    until: float
    """Epoch seconds when the limit lifts."""
    team: str
    """The team whose agent reported it."""
    message: str = ""
    since: float = 0.0

    def active(self, now: float | None = None) -> bool:
        return self.until > (time.time() if now is None else now)

    def until_text(self, now: float | None = None) -> str:
        """``14:05`` today (local time), ``Dec 4 14:05`` on another day."""
        now = time.time() if now is None else now
        local = time.localtime(self.until)
        same_day = time.localtime(now)[:3] == local[:3]
        return time.strftime("%H:%M" if same_day else "%b %d %H:%M", local)


# KEYS: pauses, events
# ARGV: provider, json, until, team, now, events cap, reason
_PAUSE = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ok, decoded = pcall(cjson.decode, old)
  if ok and tonumber(decoded['until']) and tonumber(decoded['until']) >= tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
  'type', 'pause', 'team', ARGV[4], 'from', '', 'to', 'paused', 'reason', ARGV[7], 'ts', ARGV[5])
return 1
"""


def pause_until(resets_at: float | None, *, now: float | None = None) -> float | None:
    """When a pause for a limit lifting at ``resets_at`` ends (None: no reset said, no pause)."""
    if resets_at is None:
        return None
    now = time.time() if now is None else now
    return min(max(resets_at, now + MIN_PAUSE), now + MAX_PAUSE)


def seconds_left(
    provider: str, pauses: dict[str, Pause], *, now: float | None = None
) -> float | None:
    """Seconds until ``provider`` may start agents again; None when it is not paused."""
    pause = pauses.get(provider)
    now = time.time() if now is None else now
    if pause is None or not pause.active(now):
        return None
    return pause.until - now


async def pause_provider(
    store: Store, run_id: str, provider: str, *, until: float, team: str, message: str = ""
) -> bool:
    """Pause ``provider`` until ``until`` (epoch s); False when an equal or later pause stands."""
    now = time.time()
    pause = Pause(provider=provider, until=until, team=team, message=message[:300], since=now)
    reason = f"{provider} paused until {pause.until_text(now)}" + (
        f": {message}" if message else ""
    )
    keys = [store.keys.pauses(run_id), store.keys.events(run_id)]
    args = [
        provider,
        pause.model_dump_json(),
        repr(float(until)),
        team,
        repr(now),
        str(store.settings.event_stream_cap),
        reason[:500],
    ]
    redis = store._redis  # one Lua call per change, like the store's own
    done = await store._call(lambda: redis.eval(_PAUSE, len(keys), *keys, *args))
    return bool(done)


async def all_pauses(store: Store, run_id: str) -> dict[str, Pause]:
    """Every recorded pause of the run, ended or not."""
    key = store.keys.pauses(run_id)
    redis = store._redis
    raw: dict[str, str] = await store._call(lambda: redis.hgetall(key))
    found = {}
    for provider, text in raw.items():
        try:
            found[provider] = Pause.model_validate(json.loads(text))
        except (ValueError, ValidationError):
            continue  # unreadable: as if there were none
    return found


async def active_pauses(store: Store, run_id: str, *, now: float | None = None) -> dict[str, Pause]:
    """The pauses still running at ``now`` (default: the present), by provider."""
    now = time.time() if now is None else now
    return {p: pause for p, pause in (await all_pauses(store, run_id)).items() if pause.active(now)}


async def clear_pause(store: Store, run_id: str, provider: str) -> None:
    """Forget ``provider``'s pause (it ended, or the user lifted it)."""
    key = store.keys.pauses(run_id)
    redis = store._redis
    await store._call(lambda: redis.hdel(key, provider))
