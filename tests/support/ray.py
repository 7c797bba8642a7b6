"""Test support: one real Ray cluster for the whole session (``ray.cluster_utils``).

Register with ``pytest_plugins = ["tests.support.ray"]`` (root ``conftest.py``).
What you get:

``ray_cluster`` (session) -> :class:`RayTestCluster`
    A head (no agent slots, label ``machine=head``) and three nodes labelled
    ``machine=mac-pro``, ``machine=lenovo``, ``machine=backend`` with 2
    ``agent_slots`` each, as separate processes on this machine; this process
    is connected to it as a driver. Each node's host actor gets its own
    workspace root, ``.roots / <machine>`` (as if on its own disk): the host
    actors are made at start with ``.host_options`` (and found by name after). Failure detection is
    fast (a removed node is dead within ~2 s). Tests that need it are skipped
    when Ray is not installed (``pip install -e '.[dev]'`` installs it).
    ``.remove(machine)`` kills a node (its raylet and workers) as a lost
    machine; ``.restore(machine)`` adds a node with that label again.
    At teardown the host actors are killed, the driver leaves and the cluster
    stops: no process stays.

Keep this tier lean: CI has 2 cores. Tests using it are marked ``slow`` and ``ray``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = ["MACHINES", "RayTestCluster", "ray_cluster"]

MACHINES = ("mac-pro", "lenovo", "backend")
_FAST_FAILURE_DETECTION = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 300,
    "health_check_timeout_ms": 300,
    "health_check_failure_threshold": 3,
}


@dataclass
class RayTestCluster:
    cluster: Any
    address: str
    roots: Path
    nodes: dict[str, Any] = field(default_factory=dict)

    @property
    def host_options(self) -> Any:
        from orchestrator.run.ray_cluster import HostOptions

        return HostOptions(root=str(self.roots / "{host}"))

    def add(self, machine: str) -> None:
        self.nodes[machine] = self.cluster.add_node(
            num_cpus=1, resources={"agent_slots": 2}, labels={"machine": machine}
        )
        self.cluster.wait_for_nodes()

    def ensure_hosts(self) -> None:
        """Every live node's host actor, made now with its own root (an ``orchestrate``
        process started by a test finds them by name)."""
        from orchestrator.run.ray_cluster import host_actor, list_nodes

        for node in list_nodes():
            if node.alive and node.slots:
                host_actor(node, self.host_options)

    def remove(self, machine: str) -> None:
        self.cluster.remove_node(self.nodes.pop(machine), allow_graceful=False)

    def restore(self, machine: str) -> None:
        if machine not in self.nodes:
            self.add(machine)
            self.ensure_hosts()

    def kill_hosts(self) -> None:
        import ray

        from orchestrator.run.ray_cluster import list_nodes

        for node in list_nodes():
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(node.actor_name, namespace="orchestrate"), no_restart=True)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RayTestCluster]:
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[dev]')")
    from ray.cluster_utils import Cluster

    from orchestrator.run.ray_cluster import connect, disconnect

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "labels": {"machine": "head"},
            "_system_config": _FAST_FAILURE_DETECTION,
        },
    )
    test_cluster = RayTestCluster(cluster, cluster.address, tmp_path_factory.mktemp("ray-hosts"))
    try:
        for machine in MACHINES:
            test_cluster.add(machine)
        connect(cluster.address)
        test_cluster.ensure_hosts()
        yield test_cluster
    finally:
        with contextlib.suppress(Exception):
            test_cluster.kill_hosts()
        disconnect()
        cluster.shutdown()
