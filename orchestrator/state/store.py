"""``Store``: runs, teams, attempts, transitions, the lease, events and logs in Redis.

Open one with :func:`open_store`; with no Redis URL configured it starts (or
finds) the embedded server of the state folder first::

    async with open_store(settings, layout) as store:
        async with store.lease(run_id) as lease:
            await store.team_transition(
                run_id, "db", TeamStatus.RUNNING, epoch=lease.epoch, attempt=1
            )

Every state change is one Lua script (:mod:`orchestrator.state.scripts`) that
checks the writer's epoch and the state machine and appends its event in the
same step. Connection errors are retried (tenacity, bounded backoff; the
embedded server is restarted between tries if it died); what still fails
becomes a :class:`~orchestrator.errors.StoreError` whose message names the
server with its password redacted.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from orchestrator.errors import (
    NO_RUNS,
    IllegalTransitionError,
    StaleEpochError,
    StoreError,
    UsageError,
)
from orchestrator.paths import StateLayout
from orchestrator.settings import Settings
from orchestrator.state import scripts as lua
from orchestrator.state.keys import Keys, check_name
from orchestrator.state.lease import Lease
from orchestrator.state.models import (
    AttemptState,
    Event,
    LeaseHolder,
    LogEntry,
    RunState,
    TeamState,
    Usage,
    event_from,
    lease_holder_from,
    log_entry_from,
    parse_float,
    parse_int,
    parse_time,
)
from orchestrator.state.status import RUN_TRANSITIONS, TEAM_TRANSITIONS, RunStatus, TeamStatus

if TYPE_CHECKING:  # imported where used: `orchestrate logs` starts faster without them
    from tenacity import RetryCallState

    from orchestrator.state.server import EmbeddedServer

__all__ = [
    "MAX_BLOCK_MS",
    "RUN_TRANSITIONS",
    "TEAM_TRANSITIONS",
    "AttemptState",
    "Event",
    "Lease",
    "LeaseHolder",
    "LogEntry",
    "RunState",
    "Store",
    "TeamState",
    "Usage",
    "new_agent_id",
    "open_store",
    "run_with_store",
]

T = TypeVar("T")

MAX_BLOCK_MS = 5_000
"""Blocking reads wait at most this long per call (callers loop)."""

_RETRYABLE = (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError, OSError)


def new_agent_id() -> str:
    """A fresh agent id: 7 hex characters, like ``ab792f5``."""
    return secrets.token_hex(4)[:7]


def _describe(settings: Settings, server: EmbeddedServer | None) -> str:
    if server is not None:
        return f"the embedded Redis ({server.socket_path})"
    return f"Redis at {settings.redis_url_redacted}"


class Store:
    """Async access to orchestrate's state. Build it with :func:`open_store`."""

    def __init__(
        self,
        client: aioredis.Redis,
        settings: Settings,
        *,
        server: EmbeddedServer | None = None,
    ) -> None:
        self._r = client
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self._server = server
        self._where = _describe(settings, server)
        self._closed = False
        self._team_transition = client.register_script(lua.TEAM_TRANSITION)
        self._run_transition = client.register_script(lua.RUN_TRANSITION)
        self._create_run = client.register_script(lua.CREATE_RUN)
        self._guarded = client.register_script(lua.GUARDED_WRITE)
        self._lease_acquire = client.register_script(lua.LEASE_ACQUIRE)
        self._lease_renew = client.register_script(lua.LEASE_RENEW)
        self._lease_release = client.register_script(lua.LEASE_RELEASE)
        self._append_log = client.register_script(lua.APPEND_LOG)

    @property
    def _redis(self) -> Any:
        """The client, untyped: with decode_responses it returns str where stubs say bytes | str."""
        return self._r

    @property
    def where(self) -> str:
        """Which server this store talks to, password redacted (for messages)."""
        return self._where

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values never to be stored or printed: the Redis password, as written and decoded."""
        from orchestrator.redact import redis_secrets

        url = self.settings.redis_url
        found = tuple(redis_secrets(url.get_secret_value() if url is not None else None))
        password = self._server.password() if self._server is not None else None
        return (*found, password) if password else found

    async def aclose(self) -> None:
        """Close the connections; safe to call twice. The embedded server keeps running."""
        if self._closed:
            return
        self._closed = True
        await self._r.aclose()

    # -- plumbing ------------------------------------------------------------------

    async def _restart_server(self, state: RetryCallState) -> None:
        if self._server is not None:
            try:
                await anyio.to_thread.run_sync(self._server.ensure)
            except StoreError:
                pass  # the next try fails and says why

    async def _call(self, fn: Callable[[], Awaitable[T]], *, retry: bool = True) -> T:
        """Run ``fn`` with retries on connection errors (one try: ``retry=False``);
        convert redis errors to ours."""
        from tenacity import (
            AsyncRetrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_exponential,
        )

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_RETRYABLE),
                stop=stop_after_attempt(self.settings.retry_attempts if retry else 1),
                wait=wait_exponential(multiplier=0.05, max=self.settings.retry_max_delay),
                before_sleep=self._restart_server,
                reraise=True,
            ):
                with attempt:
                    return await fn()
        except rexc.ResponseError as exc:
            raise self._refusal(exc) from exc
        except rexc.AuthenticationError as exc:
            raise StoreError(f"{self._where} refused the password") from exc
        except (rexc.RedisError, OSError) as exc:
            raise StoreError(f"{self._where} is unreachable: {_clean(exc, self.settings)}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _refusal(self, exc: rexc.ResponseError) -> StoreError:
        text = str(exc)
        word, _, rest = text.partition(" ")
        if word == "STALE_EPOCH":
            mine, _, current = rest.partition(" ")
            return StaleEpochError(
                f"this orchestrator's lease (epoch {mine}) is stale: another one took over "
                f"(epoch {current})"
            )
        if word == "ILLEGAL":
            return IllegalTransitionError(f"illegal transition: {rest}")
        if word == "NO_TEAM":
            return IllegalTransitionError(f"no team {rest!r} in this run")
        if word == "NO_RUN":
            return IllegalTransitionError("no such run")
        return StoreError(f"{self._where} refused: {_clean(exc, self.settings)}")

    # -- runs ------------------------------------------------------------------------

    async def create_run(
        self, run_id: str, *, meta: Mapping[str, str], team_ids: Sequence[str]
    ) -> None:
        """Create a run (status pending, every team pending at attempt 0). A no-op if it exists."""
        now = time.time()
        k = self.keys
        keys = [k.meta(run_id), k.teams(run_id), k.events(run_id)]
        keys += [k.team(run_id, t) for t in team_ids]
        args = [repr(now), json.dumps({str(a): str(b) for a, b in meta.items()})]
        args += [str(self.settings.event_stream_cap), *team_ids]

        async def go() -> None:
            await self._create_run(keys=keys, args=args)
            await self._r.zadd(k.runs, {run_id: now}, nx=True)

        await self._call(go)

    async def list_runs(self) -> list[str]:
        """Run ids, newest first."""
        runs: list[str] = await self._call(lambda: self._redis.zrevrange(self.keys.runs, 0, -1))
        return runs

    async def resolve_run(self, run_id: str | None) -> str:
        """A command's RUN argument: ``run_id`` if it names a run here, else the newest run.

        The one answer to "which run" for every command: UsageError ``no run 'x'`` for
        an id that names no run (or could not name one), :data:`~orchestrator.errors.NO_RUNS`
        when there is no run at all.
        """
        if run_id is not None:
            try:
                check_name("run", run_id)
            except ValueError as exc:
                raise UsageError(f"no run {run_id!r}") from exc
            await self.get_run(run_id)  # UsageError: no run 'x'
            return run_id
        runs: list[str] = await self._call(
            lambda: self._redis.zrevrange(self.keys.runs, 0, 0)
        )
        if not runs:
            raise UsageError(NO_RUNS)
        return runs[0]

    async def get_run(self, run_id: str) -> RunState:
        """The run's state; UsageError for an unknown run."""
        k = self.keys

        async def go() -> tuple[dict[str, str], str | None, list[str], float | None]:
            async with self._r.pipeline(transaction=False) as p:
                p.hgetall(k.meta(run_id))
                p.get(k.epoch(run_id))
                p.lrange(k.teams(run_id), 0, -1)
                p.zscore(k.runs, run_id)
                meta, epoch, teams, score = await p.execute()
            return meta, epoch, teams, score

        meta, epoch, teams, score = await self._call(go)
        if not meta:
            raise UsageError(f"no run {run_id!r}")
        return RunState(
            run_id=run_id,
            status=meta.get("status", RunStatus.PENDING),
            epoch=int(epoch or 0),
            created=parse_float(meta.get("_created")) or parse_time(meta.get("created")) or score,
            updated=parse_float(meta.get("updated")),
            team_ids=teams,
            usage=Usage.from_hash(meta),
            meta=meta,
        )

    async def run_transition(
        self,
        run_id: str,
        to: RunStatus,
        *,
        epoch: int,
        fields: Mapping[str, str] | None = None,
        reason: str | None = None,
    ) -> bool:
        """Move the run to ``to``; False if it already was there (a repeat)."""
        if to not in RUN_TRANSITIONS:
            raise IllegalTransitionError(f"unknown run state {to!r}")
        k = self.keys
        keys = [k.epoch(run_id), k.meta(run_id), k.events(run_id)]
        args = [
            str(epoch),
            to,
            repr(time.time()),
            reason or "",
            json.dumps({str(a): str(b) for a, b in (fields or {}).items()}),
            str(self.settings.event_stream_cap),
            lua.RUN_TRANSITIONS_JSON,
        ]
        done = await self._call(lambda: self._run_transition(keys=keys, args=args))
        return bool(done)

    # -- lease -----------------------------------------------------------------------

    def lease(self, run_id: str, *, cancel_on_loss: bool = True) -> Lease:
        """The run's lease as an async context manager (see :class:`Lease`)."""
        return Lease(self, run_id, cancel_on_loss=cancel_on_loss)

    async def lease_holder(self, run_id: str) -> LeaseHolder | None:
        """Who holds the run's lease now, if anyone."""
        raw: str | None = await self._call(lambda: self._redis.get(self.keys.lock(run_id)))
        return lease_holder_from(raw) if raw else None

    # The lease's steps, for :class:`~orchestrator.state.lease.Lease` (``holder``: its JSON).

    async def acquire_lease(
        self, run_id: str, holder: str, *, ttl_ms: int, who: str
    ) -> tuple[int, str, int]:
        """Take the run's lease for ``holder`` and bump the run's epoch (or renew it, if
        ``holder`` has it): ``(epoch, "", 0)``. Held by another: ``(0, its JSON, ms left)``."""
        k = self.keys
        keys = [k.lock(run_id), k.epoch(run_id), k.events(run_id)]
        args = [holder, str(ttl_ms), repr(time.time()), str(self.settings.event_stream_cap), who]
        got = await self._call(lambda: self._lease_acquire(keys=keys, args=args))
        if int(got[0]) == 1:
            return int(got[1]), "", 0
        return 0, str(got[1]), int(got[2])

    async def renew_lease(self, run_id: str, holder: str, *, ttl_ms: int) -> bool:
        """Extend ``holder``'s lease; False once it is not its lease any more. One try
        (StoreError when Redis does not answer): the caller decides when to give up."""
        keys, args = [self.keys.lock(run_id)], [holder, str(ttl_ms)]
        done = await self._call(lambda: self._lease_renew(keys=keys, args=args), retry=False)
        return int(done) == 1

    async def release_lease(self, run_id: str, holder: str, *, epoch: int) -> None:
        """Give the lease back if ``holder`` still has it (its event in the same step)."""
        keys = [self.keys.lock(run_id), self.keys.events(run_id)]
        args = [holder, repr(time.time()), str(self.settings.event_stream_cap), str(epoch)]
        await self._call(lambda: self._lease_release(keys=keys, args=args))

    async def lease_value(self, run_id: str) -> str:
        """The lease key's value as stored ("" when free); one try (StoreError)."""
        raw = await self._call(lambda: self._redis.get(self.keys.lock(run_id)), retry=False)
        return str(raw or "")

    async def break_lease(self, run_id: str, holder: LeaseHolder) -> bool:
        """Delete the run's lease if ``holder`` still holds it (compare-and-delete, atomic).

        For a holder known to be dead; True if the lease was freed.
        """
        key = self.keys.lock(run_id)
        freed = await self._call(lambda: self._redis.eval(_BREAK_LEASE, 1, key, holder.token))
        return bool(freed)

    # -- teams -----------------------------------------------------------------------

    async def get_team(self, run_id: str, team: str) -> TeamState:
        teams = await self._get_teams(run_id, [team])
        if team not in teams:
            raise UsageError(f"no team {team!r} in run {run_id!r}")
        return teams[team]

    async def get_teams(self, run_id: str) -> dict[str, TeamState]:
        """Every team of the run, in plan order."""
        ids: list[str] = await self._call(
            lambda: self._redis.lrange(self.keys.teams(run_id), 0, -1)
        )
        return await self._get_teams(run_id, ids)

    async def _get_teams(self, run_id: str, ids: Sequence[str]) -> dict[str, TeamState]:
        k = self.keys

        async def go() -> list[Any]:
            async with self._r.pipeline(transaction=False) as p:
                for t in ids:
                    p.hgetall(k.team(run_id, t))
                    p.hgetall(k.deliverables(run_id, t))
                got: list[Any] = await p.execute()
                return got

        raw = await self._call(go)
        out: dict[str, TeamState] = {}
        for i, t in enumerate(ids):
            h, d = raw[2 * i], raw[2 * i + 1]
            if not h:
                continue
            out[t] = TeamState(
                run_id=run_id,
                team=t,
                status=h.get("status", TeamStatus.PENDING),
                attempt=parse_int(h.get("attempt")) or 0,
                agent_id=h.get("agent_id"),
                pid=parse_int(h.get("pid")),
                branch=h.get("branch"),
                worktree=h.get("worktree"),
                started=parse_float(h.get("started")),
                finished=parse_float(h.get("finished")),
                exit_code=parse_int(h.get("exit_code")),
                error=h.get("error"),
                reason=h.get("reason"),
                session_id=h.get("session_id"),
                usage=Usage.from_hash(h),
                deliverables={p: (v or None) for p, v in d.items()},
                fields=h,
            )
        return out

    async def team_transition(
        self,
        run_id: str,
        team: str,
        to: TeamStatus,
        *,
        epoch: int,
        attempt: int,
        fields: Mapping[str, str] | None = None,
        reason: str | None = None,
        deliverables: Mapping[str, str | None] | None = None,
    ) -> bool:
        """Move a team to ``to`` at ``attempt``; False if it already was there (a repeat).

        ``attempt`` is the team's attempt number after the transition (a retry
        carries the next number). ``fields`` are written to the team's hash (and
        the attempt's) in the same step; ``deliverables``, when given, replace
        the team's deliverables in that step too (as :meth:`set_deliverables`),
        so a success is one round trip. Raises IllegalTransitionError, StaleEpochError.
        """
        if to not in TEAM_TRANSITIONS:
            raise IllegalTransitionError(f"unknown team state {to!r}")
        k = self.keys
        keys = [
            k.epoch(run_id),
            k.team(run_id, team),
            k.events(run_id),
            k.attempt(run_id, team, attempt),
            k.deliverables(run_id, team),
        ]
        found = (
            ""
            if deliverables is None
            else json.dumps({str(p): d or "" for p, d in deliverables.items()})
        )
        args = [
            str(epoch),
            team,
            to,
            str(attempt),
            repr(time.time()),
            reason or "",
            json.dumps({str(a): str(b) for a, b in (fields or {}).items()}),
            str(self.settings.event_stream_cap),
            lua.TEAM_TRANSITIONS_JSON,
            found,
        ]
        done = await self._call(lambda: self._team_transition(keys=keys, args=args))
        return bool(done)

    async def _guarded_write(
        self, run_id: str, epoch: int, keys: Sequence[str], ops: Sequence[Sequence[Any]]
    ) -> None:
        all_keys = [self.keys.epoch(run_id), *keys]
        args = [str(epoch), json.dumps(ops)]
        await self._call(lambda: self._guarded(keys=all_keys, args=args))

    async def update_attempt(
        self, run_id: str, team: str, attempt: int, fields: Mapping[str, str], *, epoch: int
    ) -> None:
        """Write fields (agent_id, pid, exit_code, reason, session_id, ...) of one attempt.

        The team's hash gets the same fields (it shows its latest attempt).
        """
        flat: list[str] = []
        for a, b in fields.items():
            flat += [str(a), str(b)]
        k = self.keys
        keys = [k.attempt(run_id, team, attempt), k.team(run_id, team)]
        await self._guarded_write(run_id, epoch, keys, [["hset", 2, *flat], ["hset", 3, *flat]])

    async def get_attempts(self, run_id: str, team: str) -> list[AttemptState]:
        """Every attempt of a team so far, first to last."""
        current = (await self.get_team(run_id, team)).attempt
        return (await self.attempts_of(run_id, {team: current}))[team]

    async def attempts_of(
        self, run_id: str, counts: Mapping[str, int]
    ) -> dict[str, list[AttemptState]]:
        """Every attempt of several teams, in one round trip.

        ``counts``: team -> its current attempt number (``TeamState.attempt``).
        """
        k = self.keys
        wanted = [(team, n) for team, count in counts.items() for n in range(1, count + 1)]

        async def go() -> list[dict[str, str]]:
            async with self._r.pipeline(transaction=False) as p:
                for team, n in wanted:
                    p.hgetall(k.attempt(run_id, team, n))
                got: list[Any] = await p.execute()
                return got

        raw = await self._call(go) if wanted else []
        found: dict[str, list[AttemptState]] = {team: [] for team in counts}
        for (team, n), h in zip(wanted, raw, strict=True):
            if h:
                found[team].append(AttemptState.from_hash(team, n, h))
        return found

    async def set_deliverables(
        self, run_id: str, team: str, found: Mapping[str, str | None], *, epoch: int
    ) -> None:
        """Replace the team's deliverables: path -> content hash, ``None`` when missing."""
        flat: list[str] = []
        for path, digest in found.items():
            flat += [path, digest or ""]
        ops: list[list[Any]] = [["del", 2]]
        if flat:
            ops.append(["hset", 2, *flat])
        await self._guarded_write(run_id, epoch, [self.keys.deliverables(run_id, team)], ops)

    async def add_usage(
        self, run_id: str, team: str, usage: Usage, *, epoch: int, attempt: int | None = None
    ) -> None:
        """Add tokens and cost to the team (and its attempt, if given) and the run's totals.

        Not idempotent: a repeat after an ambiguous connection error may count twice.
        """
        k = self.keys
        keys = [k.team(run_id, team), k.meta(run_id)]
        if attempt is not None:
            keys.append(k.attempt(run_id, team, attempt))
        ops: list[list[Any]] = []
        for idx in range(2, len(keys) + 2):
            ops += [
                ["hincrby", idx, "input_tokens", usage.input_tokens],
                ["hincrby", idx, "output_tokens", usage.output_tokens],
                ["hincrbyfloat", idx, "cost_usd", repr(usage.cost_usd)],
            ]
        await self._guarded_write(run_id, epoch, keys, ops)

    # -- streams ---------------------------------------------------------------------

    async def append_log(self, run_id: str, team: str, attempt: int, lines: Sequence[str]) -> None:
        """Append agent output lines to the team's capped stream, in one atomic step.

        Each entry gets the next line number ``n`` of the attempt (see :class:`LogEntry`).
        """
        if not lines:
            return
        k = self.keys
        keys = [k.log(run_id, team), k.attempt(run_id, team, attempt)]
        args = [str(attempt), str(self.settings.log_stream_cap), *lines]
        await self._call(lambda: self._append_log(keys=keys, args=args))

    async def read_log(
        self,
        run_id: str,
        team: str,
        *,
        after: str = "0-0",
        count: int = 1000,
        block_ms: int | None = None,
    ) -> list[LogEntry]:
        """Log lines after the entry id ``after`` (``"0-0"``: from the oldest kept)."""
        key = self.keys.log(run_id, team)
        got = await self._xread(key, after, count, block_ms)
        return [log_entry_from(team, i, f) for i, f in got]

    async def log_counts(self, run_id: str, team: str) -> tuple[int, int]:
        """``(lines ever added, lines kept)`` of the team's stream; ``(0, 0)`` when it has none.

        The difference is what the cap trimmed: the log files still hold those lines.
        """
        key = self.keys.log(run_id, team)

        async def go() -> tuple[int, int]:
            try:
                info = await self._redis.xinfo_stream(key)
            except rexc.ResponseError as exc:
                if "no such key" in str(exc).lower():
                    return 0, 0
                raise
            kept = int(info.get("length", 0))
            return int(info.get("entries-added", kept)), kept

        return await self._call(go)

    async def log_lines(self, run_id: str, team: str, attempt: int) -> int:
        """How many lines of one attempt were ever appended (the last ``n`` given out)."""
        key = self.keys.attempt(run_id, team, attempt)
        raw: str | None = await self._call(lambda: self._redis.hget(key, "log_lines"))
        return parse_int(raw) or 0

    async def last_log(self, run_id: str, team: str) -> LogEntry | None:
        """The team's newest stored line, if any."""
        key = self.keys.log(run_id, team)
        got: list[tuple[str, dict[str, str]]] = await self._call(
            lambda: self._redis.xrevrange(key, count=1)
        )
        return log_entry_from(team, *got[0]) if got else None

    async def read_events(
        self, run_id: str, *, after: str = "0-0", block_ms: int | None = None, count: int = 1000
    ) -> list[Event]:
        """Events after the entry id ``after``; with ``block_ms``, wait (≤ 5 s) for new ones."""
        got = await self._xread(self.keys.events(run_id), after, count, block_ms)
        return [event_from(i, f) for i, f in got]

    async def _xread(
        self, key: str, after: str, count: int, block_ms: int | None
    ) -> list[tuple[str, dict[str, str]]]:
        block = None if block_ms is None else max(1, min(block_ms, MAX_BLOCK_MS))

        async def go() -> list[tuple[str, dict[str, str]]]:
            r = self._redis
            if block is None:
                start = f"({after}" if after != "0-0" else "-"
                entries: list[tuple[str, dict[str, str]]] = await r.xrange(key, start, count=count)
                return entries
            res = await r.xread({key: after}, count=count, block=block)
            return res[0][1] if res else []

        return await self._call(go)

    async def read_run_streams(
        self,
        run_id: str,
        *,
        events_after: str,
        logs_after: Mapping[str, str],
        block_ms: int | None = None,
        count: int = 500,
    ) -> tuple[list[Event], list[LogEntry]]:
        """New events and new log lines of several teams in one (blocking) ``XREAD``.

        ``logs_after``: team -> the stream id already seen. With ``block_ms``, wait
        (at most ``MAX_BLOCK_MS``) until one of the streams has an entry.
        """
        k = self.keys
        streams = {k.events(run_id): events_after}
        by_key = {k.log(run_id, team): team for team in logs_after}
        for key, team in by_key.items():
            streams[key] = logs_after[team]
        block = None if block_ms is None else max(1, min(block_ms, MAX_BLOCK_MS))

        async def go() -> list[Any]:
            got: list[Any] = await self._redis.xread(streams, count=count, block=block)
            return got or []

        events: list[Event] = []
        lines: list[LogEntry] = []
        for key, entries in await self._call(go):
            if key in by_key:
                lines += [log_entry_from(by_key[key], i, f) for i, f in entries]
            else:
                events += [event_from(i, f) for i, f in entries]
        return events, lines

    async def stream_tails(self, run_id: str, teams: Sequence[str]) -> tuple[str, dict[str, str]]:
        """The newest entry id of the run's event stream and of each team's log stream
        (``"0-0"`` for an empty one): where a reader that wants only new entries starts."""
        k = self.keys
        keys = [k.events(run_id), *(k.log(run_id, t) for t in teams)]

        async def go() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.xrevrange(key, count=1)
                got: list[Any] = await pipe.execute()
                return got

        tails = [entries[0][0] if entries else "0-0" for entries in await self._call(go)]
        return tails[0], dict(zip(teams, tails[1:], strict=True))

    async def events_tails(self, run_ids: Sequence[str]) -> dict[str, str]:
        """The newest event id of each run (``"0-0"`` when it has none), in one round trip."""
        keys = [self.keys.events(r) for r in run_ids]

        async def go() -> list[Any]:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.xrevrange(key, count=1)
                got: list[Any] = await pipe.execute()
                return got

        got = await self._call(go) if keys else []
        return {r: (e[0][0] if e else "0-0") for r, e in zip(run_ids, got, strict=True)}

    async def wait_events(self, after: Mapping[str, str], *, block_ms: int) -> set[str]:
        """Wait (at most ``block_ms``, capped at ``MAX_BLOCK_MS``) for a new event in any of
        several runs (run -> the event id seen); the runs that got one."""
        if not after:
            await anyio.sleep(min(block_ms, MAX_BLOCK_MS) / 1000)
            return set()
        by_key = {self.keys.events(r): r for r in after}
        streams = {k: after[r] for k, r in by_key.items()}
        block = max(1, min(block_ms, MAX_BLOCK_MS))

        async def go() -> list[Any]:
            got: list[Any] = await self._redis.xread(streams, count=1, block=block)
            return got or []

        return {by_key[key] for key, _ in await self._call(go)}

    # -- requests to the live orchestrator -------------------------------------------

    async def send_request(self, run_id: str, action: str, team: str) -> str:
        """Ask the run's live orchestrator to ``action`` (``cancel-team``, ``retry-team``)
        ``team``; returns the request's id. The engine reads them (:meth:`read_requests`)."""
        key = self.keys.requests(run_id)
        self.keys.team(run_id, team)  # checks the team id
        fields = {"action": action, "team": team, "ts": repr(time.time())}
        entry: str = await self._call(
            lambda: self._redis.xadd(key, fields, maxlen=1000, approximate=True)
        )
        return entry

    async def read_requests(
        self, run_id: str, *, after: str
    ) -> list[tuple[str, dict[str, str]]]:
        """Requests (id, fields) sent after the entry id ``after``."""
        return await self._xread(self.keys.requests(run_id), after, 100, None)


_BREAK_LEASE = """
local raw = redis.call('GET', KEYS[1])
if raw and cjson.decode(raw)['token'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _clean(exc: BaseException, settings: Settings) -> str:
    """``str(exc)`` with the Redis password removed, whatever the library put in it."""
    text = str(exc) or type(exc).__name__
    if settings.redis_url is not None:
        from urllib.parse import unquote, urlsplit

        url = settings.redis_url.get_secret_value()
        text = text.replace(url, settings.redis_url_redacted or "")
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None
        for secret in {password, unquote(password or "")}:
            if secret:
                text = text.replace(secret, "***")
    return text


@asynccontextmanager
async def open_store(settings: Settings, layout: StateLayout) -> AsyncIterator[Store]:
    """A connected :class:`Store`; starts or finds the embedded server when no URL is set."""
    server: EmbeddedServer | None = None
    if settings.redis_url is None:
        from orchestrator.state.server import EmbeddedServer

        server = EmbeddedServer(layout.redis_dir, settings)
        sock = await anyio.to_thread.run_sync(server.ensure)
        client = aioredis.Redis(
            unix_socket_path=str(sock),
            password=server.password(),  # set once it listens on TCP (`server start --listen`)
            decode_responses=True,
            socket_timeout=MAX_BLOCK_MS / 1000 + 5,
            socket_connect_timeout=5,
            retry=Retry(NoBackoff(), 0),
        )
    else:
        try:
            client = aioredis.Redis.from_url(
                settings.redis_url.get_secret_value(),
                decode_responses=True,
                socket_timeout=MAX_BLOCK_MS / 1000 + 5,
                socket_connect_timeout=5,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise StoreError(
                f"bad Redis URL {settings.redis_url_redacted}: {_clean(exc, settings)}"
            ) from exc
    store = Store(client, settings, server=server)
    try:
        await store._call(client.ping)
        yield store
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()


def run_with_store(
    settings: Settings, layout: StateLayout, fn: Callable[[Store], Awaitable[T]]
) -> T:
    """For sync CLI commands: open a store, run ``await fn(store)``, close it."""

    async def main() -> T:
        async with open_store(settings, layout) as store:
            return await fn(store)

    return anyio.run(main)
