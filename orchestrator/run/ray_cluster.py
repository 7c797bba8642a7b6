"""The Ray cluster as the ray executor sees it: connecting, its nodes, placement.

::

    ray = load_ray()                      # UsageError naming the extra when Ray is missing
    connect("auto")                       # UsageError when no cluster answers there
    nodes = list_nodes()                  # Node: name, labels, agent slots, alive
    problems = placement_problems(plan, nodes, plan_file)   # runs_on no node matches
    host = host_actor(node)               # the node's detached host actor (created once)

Ray is imported here and in :mod:`orchestrator.ray_host` only, and only when
the ray executor or ``orchestrate hosts`` is asked for: ``--help`` and local
runs never pay for it.

A node's *name* is its ``machine`` label when it has one (``ray start --labels
'{"machine": "mac-pro"}'``), else its address and the start of its node id.
Agents run on nodes that offer the ``agent_slots`` resource (``ray start
--resources '{"agent_slots": 4}'``); one attempt holds one slot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import structlog

from orchestrator.errors import PlanError, Problem, UsageError
from orchestrator.plan.models import Plan

NAMESPACE = "orchestrate"
"""The Ray namespace of orchestrate's named actors."""
SLOTS_RESOURCE = "agent_slots"
"""The node resource that says how many agents a node runs at once."""
NAME_LABEL = "machine"
"""The node label that names a node (else its address)."""
HOST_ACTOR_PREFIX = "orchestrate-host-"
PROBE_TIMEOUT = 5.0
"""Seconds to wait for the cluster's address to accept a connection before giving up."""
_SYSTEM_LABEL_PREFIX = "ray.io/"

log = structlog.get_logger("orchestrate.ray")


def load_ray() -> ModuleType:
    """``import ray``, or a one-line :class:`UsageError` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError(
            "the ray executor needs Ray: pip install 'orchestrate[ray]' (on every node too)"
        ) from exc
    return ray


@dataclass(frozen=True)
class Node:
    """One node of the cluster, as the ray executor places teams on it."""

    node_id: str
    name: str
    address: str
    labels: Mapping[str, str]
    """The node's own labels (``ray.io/*`` system labels left out)."""
    alive: bool
    slots: int
    """``agent_slots`` the node offers (0: no agent runs there)."""

    @property
    def actor_name(self) -> str:
        return HOST_ACTOR_PREFIX + self.node_id

    def matches(self, runs_on: Mapping[str, Sequence[str]]) -> bool:
        """Every label of ``runs_on`` is on this node with one of the accepted values."""
        return all(self.labels.get(key) in values for key, values in runs_on.items())


def node_name(node_id: str, address: str, labels: Mapping[str, str]) -> str:
    return labels.get(NAME_LABEL) or f"{address}-{node_id[:6]}"


def _probe(address: str) -> None:
    """Refuse fast an address where nothing listens (``ray.init`` would wait minutes)."""
    if address in ("auto", "") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address!r}: expected HOST:PORT or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT):
            pass
    except OSError as exc:
        raise UsageError(
            f"no Ray cluster at {address}: {exc.strerror or exc} "
            "(start one with `ray start --head`, or pass --ray-address)"
        ) from exc


def connect(address: str = "auto") -> str:
    """Join the cluster at ``address`` as a driver (once per process); its GCS address.

    ``auto`` finds a cluster started on this machine (``ray start``) or named by
    ``RAY_ADDRESS``. Raises :class:`UsageError` when Ray is missing or no
    cluster answers.
    """
    ray = load_ray()
    if ray.is_initialized():
        return str(ray.get_runtime_context().gcs_address)
    address = address or "auto"
    if address == "auto" and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]
    _probe(address)
    try:
        ray.init(
            address=address,
            namespace=NAMESPACE,
            logging_level=logging.ERROR,
            log_to_driver=False,
            configure_logging=False,
        )
    except ConnectionError as exc:
        raise UsageError(
            f"no Ray cluster at {address}: start one with `ray start --head`, "
            "or pass --ray-address HOST:PORT"
        ) from exc
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"cannot join the Ray cluster at {address}: {first}") from exc
    _quiet_cluster_messages()
    return str(ray.get_runtime_context().gcs_address)


def _quiet_cluster_messages() -> None:
    """Ray prints the cluster's error messages (a raylet that died, with its last log
    lines) on the driver's stdout, over the board and the summary. They go to the debug
    log instead; what they mean for a run reaches the user as the attempt's reason
    (``host NAME lost``)."""
    import ray._private.worker as ray_worker

    def to_log(data: Mapping[str, Any], ignore_prefix: bool = False) -> None:
        log.debug("ray cluster message", lines=list(data.get("lines", ()))[:3])

    ray_worker.print_to_stdstream = to_log


def disconnect() -> None:
    """Leave the cluster (the detached host actors stay). Safe when not connected."""
    with contextlib.suppress(ImportError):
        import ray

        if ray.is_initialized():
            ray.shutdown()


def nodes_from(raw: Iterable[Mapping[str, Any]]) -> list[Node]:
    """:class:`Node` records from ``ray.nodes()`` entries (the newest record per node id)."""
    out: dict[str, Node] = {}
    for entry in raw:
        node_id = str(entry.get("NodeID", ""))
        labels = {
            str(k): str(v)
            for k, v in (entry.get("Labels") or {}).items()
            if not str(k).startswith(_SYSTEM_LABEL_PREFIX)
        }
        address = str(entry.get("NodeManagerAddress", ""))
        resources = entry.get("Resources") or {}
        alive = bool(entry.get("Alive"))
        if node_id in out and out[node_id].alive and not alive:
            continue
        out[node_id] = Node(
            node_id=node_id,
            name=node_name(node_id, address, labels),
            address=address,
            labels=labels,
            alive=alive,
            slots=int(resources.get(SLOTS_RESOURCE, 0)),
        )
    return sorted(out.values(), key=lambda n: (not n.alive, n.name))


def list_nodes() -> list[Node]:
    """Every node the cluster knows, alive first, by name (call :func:`connect` first)."""
    ray = load_ray()
    return nodes_from(ray.nodes())


def describe_labels(nodes: Iterable[Node]) -> str:
    """``machine=lenovo, machine=mac-pro, gpu=yes``: the labels that exist on live agent nodes."""
    seen = sorted({f"{k}={v}" for n in nodes if n.alive and n.slots for k, v in n.labels.items()})
    return ", ".join(seen) or "none"


def format_runs_on(runs_on: Mapping[str, Sequence[str]]) -> str:
    return ", ".join(f"{k}={'|'.join(v)}" for k, v in runs_on.items())


def eligible(nodes: Iterable[Node], runs_on: Mapping[str, Sequence[str]]) -> list[Node]:
    """Live nodes that offer agent slots and carry every label of ``runs_on``."""
    return [n for n in nodes if n.alive and n.slots > 0 and n.matches(runs_on)]


def placement_problems(plan: Plan, nodes: Sequence[Node], plan_file: str) -> list[Problem]:
    """One problem per team that no live agent node can take, naming the labels there are."""
    problems: list[Problem] = []
    agent_nodes = [n for n in nodes if n.alive and n.slots > 0]
    if not agent_nodes:
        return [
            Problem(
                plan_file,
                "",
                f"no node of the Ray cluster offers {SLOTS_RESOURCE} (start nodes with "
                f"--resources '{{\"{SLOTS_RESOURCE}\": 4}}')",
            )
        ]
    for i, team in enumerate(plan.teams):
        runs_on = plan.runs_on(team)
        if runs_on and not eligible(nodes, runs_on):
            where = f"teams[{i}].runs_on" if team.runs_on is not None else "defaults.runs_on"
            problems.append(
                Problem(
                    plan_file,
                    where,
                    f"team {team.id}: no node of the cluster has {format_runs_on(runs_on)} "
                    f"(labels there: {describe_labels(nodes)})",
                )
            )
    return problems


def check_placement(plan: Plan, nodes: Sequence[Node], plan_file: str) -> None:
    """Raise :class:`PlanError` (exit 2) before anything starts if a team cannot be placed."""
    problems = placement_problems(plan, nodes, plan_file)
    if problems:
        raise PlanError(problems)


@dataclass(frozen=True)
class HostOptions:
    """How host actors are created (only when a node has none yet)."""

    root: str | None = None
    """The workspace root on every node; ``{host}`` is replaced by the node's name.
    Default: ``$ORCHESTRATE_HOST_ROOT`` on the node, else ``~/.orchestrate/host``."""


def host_actor(node: Node, options: HostOptions | None = None) -> Any:
    """The node's host actor: found by name, or created detached on that node.

    Pinned to the node (``NodeAffinitySchedulingStrategy``, not soft), restarted
    by Ray when its worker dies (``max_restarts=-1``), never retried by Ray
    (the executor re-attaches, which is idempotent).
    """
    ray = load_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from orchestrator.ray_host import HostActor

    opts = options or HostOptions()
    root = opts.root.replace("{host}", node.name) if opts.root else None
    remote_cls = ray.remote(HostActor)
    return remote_cls.options(
        name=node.actor_name,
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=0,
        num_cpus=0,
        max_concurrency=1000,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
    ).remote(node.node_id, node.name, root)
