"""The ray executor: attempts run by the host actors of a Ray cluster's nodes.

::

    cluster = RayCluster.connect("auto", host_options)   # UsageError: no Ray, no cluster
    cluster.check(plan, plan_file)                       # PlanError: a runs_on no node matches
    node = await cluster.place(runs_on, avoid={"lenovo"})
    outcome = await cluster.run_on(node, spec)           # HostOutcome; never raises for a lost node

Placement: a team runs on a live node that offers ``agent_slots`` and carries
every label of its ``runs_on``; among those, the one with the most free
slots (a node's host refuses a new attempt when its slots are taken, and
placement moves on or waits).

Losing a host: the call to a host actor fails when its worker dies (Ray
restarts it: ``max_restarts=-1``) or when its node goes away. The executor
then waits for whichever comes first: the node is marked dead (the attempt
ends with ``host NAME lost``, for the scheduler to retry elsewhere), or the
restarted actor answers (the same attempt is asked for again: the host
re-adopts the agent, which kept running, and nothing starts twice).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import structlog

from orchestrator.plan import Plan
from orchestrator.ray_cluster import (
    HostOptions,
    Node,
    check_placement,
    connect,
    eligible,
    format_runs_on,
    host_actor,
    list_nodes,
    load_ray,
)
from orchestrator.ray_host import AttemptSpec, HostOutcome

log = structlog.get_logger("orchestrate.ray")

REATTACH_LIMIT = 120.0
"""Seconds to wait for a host actor to come back (or its node to be declared dead)."""
PLACE_POLL = 0.5
"""Seconds between looks for a free slot when every eligible node is busy."""


class NoEligibleNode(Exception):
    """No live node can take the team any more (its message says which labels it needs)."""


@dataclass
class RayCluster:
    """The driver's view of the cluster: its nodes and their host actors."""

    address: str
    host_options: HostOptions = field(default_factory=HostOptions)
    _actors: dict[str, Any] = field(default_factory=dict)
    _placed: dict[str, int] = field(default_factory=dict)
    """Attempts this orchestrator has running per node (a first guess at free slots)."""

    @classmethod
    def connect(cls, address: str = "auto", host_options: HostOptions | None = None) -> RayCluster:
        return cls(connect(address), host_options or HostOptions())

    def nodes(self) -> list[Node]:
        return list_nodes()

    async def nodes_async(self) -> list[Node]:
        return await anyio.to_thread.run_sync(list_nodes)

    def check(self, plan: Plan, plan_file: str) -> None:
        """Refuse (``PlanError``, exit 2) a plan with a team no live node can take."""
        check_placement(plan, self.nodes(), plan_file)

    def actor(self, node: Node) -> Any:
        actor = self._actors.get(node.node_id)
        if actor is None:
            actor = self._actors[node.node_id] = host_actor(node, self.host_options)
        return actor

    async def place(
        self, runs_on: Mapping[str, Sequence[str]], *, avoid: Sequence[str] = ()
    ) -> Node:
        """The eligible live node with the most free slots (nodes named in ``avoid`` only
        when nothing else is left). Raises :class:`NoEligibleNode`."""
        nodes = eligible(await self.nodes_async(), runs_on)
        if not nodes:
            need = format_runs_on(runs_on) if runs_on else "agent_slots"
            raise NoEligibleNode(f"no live node left with {need}")
        preferred = [n for n in nodes if n.name not in avoid] or nodes
        return max(preferred, key=lambda n: (n.slots - self._placed.get(n.node_id, 0), n.name))

    async def run_on(self, node: Node, spec: AttemptSpec) -> HostOutcome:
        """Run ``spec`` on ``node``'s host; re-attach through host restarts; a node that
        goes away ends the attempt with ``host NAME lost``."""
        ray = load_ray()
        from ray.exceptions import ActorUnschedulableError, RayActorError, RayTaskError

        actor = self.actor(node)
        lost = HostOutcome(
            host=node.name, key=spec.key, host_lost=True, error=f"host {node.name} lost"
        )
        self._placed[node.node_id] = self._placed.get(node.node_id, 0) + 1
        try:
            while True:
                try:
                    return await actor.run_attempt.remote(spec, node.slots)  # type: ignore[no-any-return]
                except ActorUnschedulableError:  # its node is gone
                    return lost
                except RayActorError as exc:
                    log.info("host call failed", host=node.name, error=type(exc).__name__)
                    if not await self._back(node, actor):
                        return lost
                except RayTaskError as exc:  # a bug on the host: one line, the attempt fails
                    first = str(exc.cause if exc.cause else exc).strip().splitlines()
                    return HostOutcome(
                        host=node.name,
                        key=spec.key,
                        error=f"host {node.name}: {first[-1] if first else type(exc).__name__}",
                    )
        finally:
            self._placed[node.node_id] -= 1
            del ray

    async def _back(self, node: Node, actor: Any) -> bool:
        """Wait until the node is dead (False) or its restarted host answers (True)."""
        ray = load_ray()
        deadline = time.monotonic() + REATTACH_LIMIT
        while time.monotonic() < deadline:
            alive = {n.node_id for n in await self.nodes_async() if n.alive}
            if node.node_id not in alive:
                return False
            try:
                with anyio.fail_after(5):
                    await actor.ping.remote()
                return True
            except ray.exceptions.ActorUnschedulableError:
                return False
            except (TimeoutError, ray.exceptions.RayActorError):
                await anyio.sleep(0.3)
        return False

    async def cancel(self, node: Node, run_id: str, team: str, attempt: int) -> None:
        """Stop that attempt's agent on its node (best effort: a lost node has none)."""
        ray = load_ray()
        try:
            with anyio.fail_after(15):
                await self.actor(node).cancel.remote(run_id, team, attempt)
        except (TimeoutError, ray.exceptions.RayError) as exc:
            log.info("could not cancel on host", host=node.name, error=type(exc).__name__)

    async def host_info(self, node: Node, timeout: float = 10.0) -> dict[str, Any] | None:  # noqa: ASYNC109
        """What the node's host says about itself (None: it does not answer)."""
        ray = load_ray()
        try:
            with anyio.fail_after(timeout):
                return await self.actor(node).info.remote()  # type: ignore[no-any-return]
        except (TimeoutError, ray.exceptions.RayError):
            return None
