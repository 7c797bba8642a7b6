"""The live orchestrator's claim on a run: :class:`Lease` (``store.lease(run_id)``).

One orchestrator at a time runs a run. Entering the lease takes
``orch:{RUN}:lock`` (SET NX PX) and bumps the run's epoch in one script
(:mod:`orchestrator.state.scripts`); every write of that orchestrator carries
the epoch, so a zombie with an older one is refused. A background task renews
the lease; losing it cancels the body. Re-exported by :mod:`orchestrator.state.store`.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from types import TracebackType
from typing import TYPE_CHECKING

import anyio

from orchestrator.errors import LeaseHeldError, StoreError
from orchestrator.state.models import LeaseHolder, lease_holder_from

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from orchestrator.state.store import Store

__all__ = ["Lease", "holder_alive", "live_holder"]


class Lease:
    """The live orchestrator's claim on a run: ``async with store.lease(run_id) as lease``.

    Entering acquires it (SET NX PX) and bumps the run's epoch; ``lease.epoch``
    is what every write of this orchestrator carries. A background task renews
    it every third of the TTL. If another holder took it over (or renewal
    failed for a whole TTL), ``lease.lost`` is set and, with
    ``cancel_on_loss`` (the default), the body is cancelled and the block
    raises LeaseHeldError. Leaving releases it. A second holder of the same run
    gets LeaseHeldError naming the holder.
    """

    def __init__(self, store: Store, run_id: str, *, cancel_on_loss: bool = True) -> None:
        self._store = store
        self.run_id = run_id
        self.cancel_on_loss = cancel_on_loss
        self.epoch = 0
        self.lost = anyio.Event()
        self.holder = LeaseHolder(
            host=socket.gethostname(),
            pid=os.getpid(),
            since=time.time(),
            token=secrets.token_hex(8),
        )
        self._value = self.holder.model_dump_json()
        self._tg: TaskGroup | None = None
        self._body: anyio.CancelScope | None = None
        self._taken_by: str = ""

    @property
    def _ttl_ms(self) -> int:
        return int(self._store.settings.lease_ttl * 1000)

    async def __aenter__(self) -> Lease:
        who = f"{self.holder.host} pid {self.holder.pid}"
        epoch, held, left_ms = await self._store.acquire_lease(
            self.run_id, self._value, ttl_ms=self._ttl_ms, who=who
        )
        if not epoch:
            raise LeaseHeldError(_held_message(self.run_id, held, left_ms))
        self.epoch = epoch
        # The renewal runs in a task group; the body runs in its own cancel scope *outside*
        # that group, so an error in the body comes out as itself, not in an ExceptionGroup.
        tg = anyio.create_task_group()
        await tg.__aenter__()
        tg.start_soon(self._renew_loop)
        self._tg = tg
        self._body = anyio.CancelScope()
        self._body.__enter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg, body, self._tg, self._body = self._tg, self._body, None, None
        if tg is None or body is None:
            return None
        swallowed = body.__exit__(exc_type, exc, tb)  # swallows only our own cancellation
        tg.cancel_scope.cancel()
        await tg.__aexit__(None, None, None)
        if not self.lost.is_set():
            await self._release()
        if self.lost.is_set() and self.cancel_on_loss:
            raise LeaseHeldError(self._lost_message())
        return swallowed

    async def _release(self) -> None:
        with anyio.move_on_after(5, shield=True):
            try:
                await self._store.release_lease(self.run_id, self._value, epoch=self.epoch)
            except StoreError:
                pass  # the lease expires on its own

    async def _renew_loop(self) -> None:
        s = self._store
        interval = s.settings.lease_ttl / 3
        last_ok = time.monotonic()
        while True:
            await anyio.sleep(interval)
            try:
                with anyio.fail_after(interval):
                    ok = await s.renew_lease(self.run_id, self._value, ttl_ms=self._ttl_ms)
            except (TimeoutError, StoreError):
                if time.monotonic() - last_ok < s.settings.lease_ttl:
                    continue
                ok = False
            if ok:
                last_ok = time.monotonic()
                continue
            try:
                self._taken_by = await s.lease_value(self.run_id)
            except StoreError:
                self._taken_by = ""
            self.lost.set()
            if self.cancel_on_loss and self._body is not None:
                self._body.cancel()
            return

    def _lost_message(self) -> str:
        holder = lease_holder_from(self._taken_by) if self._taken_by else None
        if holder is None:
            return f"lost the lease of run {self.run_id} (it expired); stopping"
        return (
            f"lost the lease of run {self.run_id} to {holder.host} pid {holder.pid} "
            f"(since {_when(holder.since)}); stopping"
        )


def holder_alive(holder: LeaseHolder) -> bool:
    """Is the lease's holder a live orchestrator? The one answer every command uses.

    A holder on this host is alive while its process is (not a zombie, and not a
    process that reused its pid since it took the lease). A holder on another host
    cannot be checked from here: it counts as alive until its lease expires.
    """
    if holder.host != socket.gethostname():
        return True
    import psutil  # only when asked: the store loads without it

    try:
        proc = psutil.Process(holder.pid)
        return proc.status() != psutil.STATUS_ZOMBIE and proc.create_time() <= holder.since + 1.0
    except psutil.Error:
        return False


async def live_holder(store: Store, run_id: str) -> LeaseHolder | None:
    """The live orchestrator holding the run's lease; None when there is none, or when
    it is a dead process of this host (see :func:`holder_alive`)."""
    holder = await store.lease_holder(run_id)
    return holder if holder is not None and holder_alive(holder) else None


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _held_message(run_id: str, raw: str, pttl: int) -> str:
    holder = lease_holder_from(raw)
    left = f", lease expires in {pttl / 1000:.0f}s unless renewed" if pttl > 0 else ""
    if holder is None:
        return f"run {run_id} is held by another orchestrator{left}"
    return (
        f"run {run_id} is already being run by {holder.host} pid {holder.pid} "
        f"since {_when(holder.since)}{left}"
    )
