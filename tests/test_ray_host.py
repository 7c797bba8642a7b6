"""Host actors on a real Ray cluster (head + 3 labelled nodes, ``tests/support/ray.py``):
an attempt runs on the node it is placed on, in that node's workspace, and its branch
reaches the shared remote; a host actor killed mid-attempt leaves the agent running
and re-adopts it; a node lost mid-attempt ends the attempt with ``host NAME lost``;
a remote or a Redis the node cannot reach fails the attempt with the node's words."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import anyio
import psutil
import pytest

from orchestrator.paths import StateLayout
from orchestrator.plan import Plan
from orchestrator.settings import Settings
from orchestrator.store import Store, open_store
from tests.support.agents import python_agent
from tests.support.gitrepo import GitRepo
from tests.support.ray import MACHINES, RayTestCluster
from tests.support.redis import PasswordRedis

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.anyio, pytest.mark.timeout(180)]

AGENT = """
import json, os, sys, time
from pathlib import Path
team, marks = sys.argv[1], Path(sys.argv[2])
with open(marks / f"{team}.starts", "a") as fh:
    fh.write(f"{os.getpid()}\\n")
print(f"hello from {os.environ.get('ORCHESTRATE_HOST')}", flush=True)
go = marks / f"{team}.go"
while os.environ.get("WAIT") and not go.exists():
    time.sleep(0.05)
Path(f"out-{team}.txt").write_text(json.dumps({
    "cwd": os.getcwd(), "host": os.environ.get("ORCHESTRATE_HOST"),
    "env": sorted(os.environ.values()),
}))
print("done", flush=True)
"""


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


@dataclass
class Setup:
    cluster: object
    store: Store
    settings: Settings
    run_id: str
    epoch: int
    remote: Path
    base: str
    marks: Path
    password: str


@pytest.fixture
async def setup(
    ray_cluster: RayTestCluster,
    git_repo: GitRepo,
    password_redis: PasswordRedis,
    tmp_path: Path,
) -> AsyncIterator[Setup]:
    from orchestrator.ray_executor import RayCluster

    remote = tmp_path / "remote.git"
    _git("init", "-q", "--bare", str(remote))
    run_id = f"r{uuid.uuid4().hex[:8]}"
    git_repo.git("push", "-q", str(remote), f"main:refs/heads/orchestrate/{run_id}/base")
    settings = Settings(
        redis_url=password_redis.url,  # type: ignore[arg-type]
        key_prefix=f"t{uuid.uuid4().hex[:10]}",
        retry_attempts=2,
        retry_max_delay=0.2,
    )
    marks = tmp_path / "marks"
    marks.mkdir()
    async with open_store(settings, StateLayout(tmp_path / ".orchestrate")) as store:
        await store.create_run(run_id, meta={"plan": "plan.yaml"}, team_ids=list(MACHINES))
        async with store.lease(run_id) as lease:
            yield Setup(
                RayCluster(ray_cluster.address, ray_cluster.host_options),
                store,
                settings,
                run_id,
                lease.epoch,
                remote,
                git_repo.head(),
                marks,
                password_redis.password,
            )


def _spec(s: Setup, team: str, tmp_path: Path, *, wait: bool = False) -> object:
    from orchestrator.ray_host import AttemptSpec

    argv = python_agent(tmp_path / "agent.py", AGENT)
    plan = Plan.model_validate(
        {
            "version": 1,
            "name": "p",
            "agents": {"py": {"kind": "command", "command": [*argv, "{team}", str(s.marks)]}},
            "defaults": {"agent": "py"},
            "env": {"WAIT": "1"} if wait else {},
            "teams": [
                {"id": m, "task": "t", "deliverables": [f"out-{m}.txt"], "runs_on": {"machine": m}}
                for m in MACHINES
            ],
        }
    )
    return AttemptSpec(
        run_id=s.run_id,
        team=team,
        attempt=1,
        epoch=s.epoch,
        agent_id=f"a{uuid.uuid4().hex[:6]}",
        settings=s.settings,
        remote=str(s.remote),
        base_branch=f"orchestrate/{s.run_id}/base",
        base_commit=s.base,
        branch=f"orchestrate/{s.run_id}/{team}",
        upstream=(),
        plan=plan,
        prompt="do it",
        timeout=120,
        stall_timeout=None,
        commit_message=f"orchestrate: team {team}",
        secrets=(s.password,),
    )


async def _running(s: Setup, team: str, timeout: float = 60) -> int:  # noqa: ASYNC109
    """The pid of the team's agent once it has started."""
    starts = s.marks / f"{team}.starts"
    with anyio.fail_after(timeout):
        while not starts.exists() or not starts.read_text().strip():  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return int(starts.read_text().split()[0])


async def test_each_attempt_runs_on_its_node_and_pushes_its_branch(
    setup: Setup, ray_cluster: RayTestCluster, tmp_path: Path
) -> None:
    """Three teams pinned to three machines run at once, each in its own node's workspace
    (its cwd under that node's root, ``ORCHESTRATE_HOST`` its name); each team branch is on
    the shared remote holding the agent's file; the lines reached Redis; the attempt says
    which host ran it; the Redis password never reached an agent's environment."""
    s = setup
    cluster = s.cluster
    outcomes = {}

    async def one(machine: str) -> None:
        await s.store.team_transition(s.run_id, machine, "running", epoch=s.epoch, attempt=1)
        node = await cluster.place({"machine": (machine,)})  # type: ignore[attr-defined]
        outcomes[machine] = await cluster.run_on(node, _spec(s, machine, tmp_path))  # type: ignore[attr-defined]

    async with anyio.create_task_group() as tg:
        for machine in MACHINES:
            tg.start_soon(one, machine)
    for machine in MACHINES:
        out = outcomes[machine]
        assert out.error is None and out.exit_code == 0 and out.commit, out
        assert out.host == machine
        data = json.loads(
            _git("-C", str(s.remote), "show", f"orchestrate/{s.run_id}/{machine}:out-{machine}.txt")
        )
        assert data["host"] == machine
        assert Path(data["cwd"]).is_relative_to(ray_cluster.roots / machine)
        assert not any(s.password in value for value in data["env"])
        lines = [e.line for e in await s.store.read_log(s.run_id, machine)]
        assert f"hello from {machine}" in lines and "done" in lines
        (attempt,) = await s.store.get_attempts(s.run_id, machine)
        assert attempt.fields["host"] == machine


async def test_a_killed_host_actor_leaves_the_agent_running_and_re_adopts_it(
    setup: Setup, tmp_path: Path
) -> None:
    """``ray.kill`` of a host actor mid-attempt (Ray kills the worker's direct children):
    the agent, started through the spawner, keeps running; the restarted host re-adopts
    it when asked again; the attempt ends well and the agent was started once."""
    import ray

    s = setup
    cluster = s.cluster
    node = await cluster.place({"machine": ("lenovo",)})  # type: ignore[attr-defined]
    spec = _spec(s, "lenovo", tmp_path, wait=True)
    result = {}

    async def run() -> None:
        result["out"] = await cluster.run_on(node, spec)  # type: ignore[attr-defined]

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        pid = await _running(s, "lenovo")
        before = await cluster.host_info(node)  # type: ignore[attr-defined]
        ray.kill(cluster.actor(node), no_restart=False)  # type: ignore[attr-defined]
        with anyio.fail_after(60):
            while True:
                info = await cluster.host_info(node, timeout=2)  # type: ignore[attr-defined]
                if info is not None and info["pid"] != before["pid"]:
                    break
                await anyio.sleep(0.2)
        assert psutil.pid_exists(pid), "the agent died with its host actor"
        assert "/".join((s.run_id, "lenovo", "1")) in info["running"]
        (s.marks / "lenovo.go").touch()
    out = result["out"]
    assert out.error is None and out.commit and out.adopted, out
    assert (s.marks / "lenovo.starts").read_text().split() == [str(pid)]


async def test_a_node_lost_mid_attempt_ends_it_saying_host_lost(
    setup: Setup, ray_cluster: RayTestCluster, tmp_path: Path
) -> None:
    """The node running an attempt goes away: the attempt ends within seconds with
    ``host backend lost`` (for the scheduler to retry elsewhere), not a hang or a traceback."""
    s = setup
    cluster = s.cluster
    node = await cluster.place({"machine": ("backend",)})  # type: ignore[attr-defined]
    spec = _spec(s, "backend", tmp_path, wait=True)
    result = {}

    async def run() -> None:
        result["out"] = await cluster.run_on(node, spec)  # type: ignore[attr-defined]

    pid = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            pid = await _running(s, "backend")
            began = time.monotonic()
            ray_cluster.remove("backend")  # Ray wants its main thread for this
        out = result["out"]
        assert out.host_lost and out.error == "host backend lost", out
        assert time.monotonic() - began < 30
        from orchestrator.ray_executor import NoEligibleNode

        with pytest.raises(NoEligibleNode, match="machine=backend"):
            await cluster.place({"machine": ("backend",)})  # type: ignore[attr-defined]
    finally:
        if pid is not None and psutil.pid_exists(pid):  # a lost machine takes its agents along
            os.kill(pid, signal.SIGKILL)
        ray_cluster.restore("backend")


async def test_a_remote_or_redis_the_node_cannot_reach_fails_the_attempt_in_its_words(
    setup: Setup, tmp_path: Path
) -> None:
    """A remote the node cannot fetch: the attempt fails with git's own message and the
    host's name; a Redis the node cannot reach: it fails saying so, password hidden.
    Neither starts an agent."""
    s = setup
    cluster = s.cluster
    node = await cluster.place({"machine": ("mac-pro",)})  # type: ignore[attr-defined]
    spec = _spec(s, "mac-pro", tmp_path)
    out = await cluster.run_on(node, replace(spec, remote=str(tmp_path / "nowhere.git")))  # type: ignore[type-var]
    assert out.error is not None and "host mac-pro" in out.error, out
    assert "nowhere.git" in out.error and "\n" not in out.error
    bad = Settings(
        redis_url=f"redis://:{s.password}@127.0.0.1:1/0",  # type: ignore[arg-type]
        key_prefix="x",
        retry_attempts=1,
        retry_max_delay=0.1,
    )
    spec2 = replace(spec, settings=bad, attempt=2)  # type: ignore[type-var]
    out = await cluster.run_on(node, spec2)  # type: ignore[attr-defined]
    assert out.error is not None and out.error.startswith("Redis not reachable from host mac-pro")
    assert s.password not in out.error
    assert not (s.marks / "mac-pro.starts").exists()
