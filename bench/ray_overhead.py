"""Ray executor: overhead per team on a 3-node cluster, against the local executor.

A chain of N teams (default 20) whose agent is ``true``, ``worktree`` isolation,
run with the local executor and with the ray executor, on this machine, against
one valkey-server on loopback TCP with a password. The cluster is Ray's
``cluster_utils``: a head (no agent slots) and three nodes labelled
``machine=n0..n2`` with 2 ``agent_slots`` each, every node's workspace its own
folder, a bare repository as the shared remote. Teams are pinned round-robin
(``runs_on``), so every link of the chain crosses machines: the upstream's
branch is pushed by one node and fetched by the next.

Per team = (wall of the N-team run - wall of a 1-team run) / (N - 1): the fixed
cost of a run (interpreter, joining the cluster, the integration) cancels out.
One 1-team run per executor first warms up (caches, the nodes' clones).
Also reported: the fixed cost itself (the 1-team run) for both executors.

    .venv/bin/python bench/ray_overhead.py            # 20 teams
    .venv/bin/python bench/ray_overhead.py --quick    # 3 teams
    .venv/bin/python bench/ray_overhead.py --teams 40
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import GIT_ENV, Result, cleanup, git_repo, parser, report, run_orchestrate

MACHINES = ("n0", "n1", "n2")


def chain_plan(n: int, *, ray: bool) -> str:
    lines = [
        "version: 1",
        "name: raybench",
        "isolation: worktree",
        "max_parallel: 6",
        "defaults: {agent: bench, retries: 0, timeout: 10m}",
        "agents:",
        '  bench: {kind: command, command: ["true"]}',
        "teams:",
    ]
    for i in range(n):
        deps = [f"t{i - 1}"] if i else []
        pin = f", runs_on: {{machine: {MACHINES[i % 3]}}}" if ray else ""
        lines.append(f"  - {{id: t{i}, task: bench, depends_on: {json.dumps(deps)}{pin}}}")
    return "\n".join(lines) + "\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_valkey(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    from orchestrator.state.server import server_binary

    port, password = free_port(), "bench-" + os.urandom(8).hex()
    proc = subprocess.Popen(
        [str(server_binary()), "--port", str(port), "--bind", "127.0.0.1",
         "--requirepass", password, "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"redis://:{password}@127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("valkey-server did not start")


def one_run(repo: Path, n: int, url: str, *, ray_address: str | None) -> float:
    plan = repo.parent / f"plan-{'ray' if ray_address else 'local'}-{n}.yaml"
    plan.write_text(chain_plan(n, ray=ray_address is not None) + f"repo: {repo.name}\n")
    args = ["run", str(plan), "--redis-url", url]
    if ray_address:
        args += ["--executor", "ray", "--ray-address", ray_address]
    took, _ = run_orchestrate(args, repo.parent, env={"ORCHESTRATE_KEY_PREFIX": f"b{n}"})
    return took


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--teams", type=int, default=20, help="teams in the chain (default 20)")
    args = p.parse_args()
    n = 3 if args.quick else max(2, args.teams)
    try:
        from ray.cluster_utils import Cluster
    except ImportError:
        sys.exit("this bench needs Ray: pip install -e '.[dev]' (or '.[ray]')")
    from orchestrator.run.ray_cluster import (
        HostOptions,
        connect,
        disconnect,
        host_actor,
        list_nodes,
    )

    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    repo = git_repo(tmp / "repo")
    remote = tmp / "remote.git"
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True, env=env)
    subprocess.run(["git", "remote", "add", "origin", str(remote)], cwd=repo, check=True, env=env)
    subprocess.run(["git", "push", "-q", "origin", "main"], cwd=repo, check=True, env=env)
    valkey, url = start_valkey(tmp)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for m in MACHINES:
            cluster.add_node(num_cpus=1, resources={"agent_slots": 2}, labels={"machine": m})
        cluster.wait_for_nodes()
        connect(cluster.address)
        options = HostOptions(root=str(tmp / "hosts" / "{host}"))
        for node in list_nodes():
            if node.slots:
                host_actor(node, options)
        walls: dict[tuple[str, int], float] = {}
        for executor in ("local", "ray"):  # a warm-up run each: caches, clones, host imports
            one_run(repo, 1, url, ray_address=cluster.address if executor == "ray" else None)
        for executor in ("local", "ray"):
            for size in (1, n):
                address = cluster.address if executor == "ray" else None
                walls[(executor, size)] = one_run(repo, size, url, ray_address=address)
        per = {e: (walls[(e, n)] - walls[(e, 1)]) / (n - 1) for e in ("local", "ray")}
        results = [
            Result("ray_overhead", "per team local", per["local"] * 1000, "ms",
                   note=f"chain of {n}, worktree, agent true"),
            Result("ray_overhead", "per team ray", per["ray"] * 1000, "ms",
                   note=f"chain of {n} over 3 nodes, every link crosses machines"),
            Result("ray_overhead", "overhead per team", (per["ray"] - per["local"]) * 1000, "ms",
                   note="ray minus local"),
            Result("ray_overhead", "fixed local", walls[("local", 1)] * 1000, "ms",
                   note="a 1-team run, whole process"),
            Result("ray_overhead", "fixed ray", walls[("ray", 1)] * 1000, "ms",
                   note="a 1-team run, whole process (joins the cluster)"),
        ]  # fmt: skip
        report(results, args)
    finally:
        disconnect()
        cluster.shutdown()
        valkey.terminate()
        valkey.wait(10)
        cleanup(tmp, args)


if __name__ == "__main__":
    main()
