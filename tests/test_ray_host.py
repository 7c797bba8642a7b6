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
from dataclasses import dataclass
from pathlib import Path

import anyio
import psutil
import pytest

from orchestrator.gitops import Git
from orchestrator.plan.load import load_plan
from orchestrator.run.executor import (
    AgentEnd,
    AttemptOutcome,
    AttemptRecord,
    AttemptRequest,
    AttemptStart,
)
from orchestrator.settings import Settings
from orchestrator.state.runs import create_run
from orchestrator.state.store import Store, open_store
from tests.support.agents import python_agent
from tests.support.gitrepo import GitRepo
from tests.support.ray import MACHINES, RayTestCluster
from tests.support.redis import PasswordRedis

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[dev]')")
from orchestrator.run.ray_executor import RayCluster, RayExecutor  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.anyio, pytest.mark.timeout(180)]

AGENT = """
import json, os, sys, time
from pathlib import Path
team, marks = sys.argv[1], Path(sys.argv[2])
with open(marks / f"{team}.starts", "a") as fh:
    fh.write(f"{os.getpid()}\\n")
print(f"hello from {os.environ.get('ORCHESTRATE_HOST')}", flush=True)
if os.environ.get("FAIL_FIRST") and os.environ.get("ORCHESTRATE_ATTEMPT") == "1":
    print("failing attempt 1", flush=True)
    sys.exit(3)
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


PLAN = """
version: 1
name: rayp
agents:
  py:
    kind: command
    command: {argv}
defaults: {{agent: py, retries: 0}}
env: {env}
teams:
  - {{id: mac-pro, task: t, deliverables: [out-mac-pro.txt], runs_on: {{machine: mac-pro}}}}
  - {{id: lenovo, task: t, deliverables: [out-lenovo.txt], runs_on: {{machine: lenovo}}}}
  - {{id: backend, task: t, deliverables: [out-backend.txt], runs_on: {{machine: backend}}}}
"""


class Hooks:
    """The scheduler's side, as the engine does it: ``running`` before the agent starts,
    ``verifying`` once it ended; every call recorded."""

    def __init__(self, s: Setup, team: str, attempt: int = 1) -> None:
        self.s, self.team, self.attempt = s, team, attempt
        self.calls: list[str] = []
        self.start: AttemptStart | None = None

    async def starting(self, start: AttemptStart) -> None:
        self.calls.append("starting")
        self.start = start
        await self.s.store.team_transition(
            self.s.run_id, self.team, "running", epoch=self.s.epoch, attempt=self.attempt,
            fields={"agent_id": start.agent_id, "host": start.host},
        )  # fmt: skip

    async def attached(self, record: AttemptRecord, running: bool) -> None:
        self.calls.append("attached")

    async def ended(self, end: AgentEnd) -> None:
        self.calls.append("ended")
        await self.s.store.team_transition(
            self.s.run_id, self.team, "verifying", epoch=self.s.epoch, attempt=self.attempt
        )

    def leave_running(self) -> bool:
        return False


@dataclass
class Setup:
    executor: RayExecutor
    store: Store
    run_id: str
    epoch: int
    base: str
    remote: Path
    marks: Path
    password: str

    def request(self, team: str, attempt: int = 1) -> AttemptRequest:
        return AttemptRequest(
            run_id=self.run_id,
            team_id=team,
            attempt=attempt,
            epoch=self.epoch,
            max_attempts=1,
            base_commit=self.base,
        )


@pytest.fixture
def wait() -> bool:
    return False


@pytest.fixture
def agent_env() -> dict[str, str]:
    return {}


@pytest.fixture
async def setup(
    ray_cluster: RayTestCluster,
    git_repo: GitRepo,
    password_redis: PasswordRedis,
    tmp_path: Path,
    wait: bool,
    agent_env: dict[str, str],
) -> AsyncIterator[Setup]:
    remote = tmp_path / "remote.git"
    _git("init", "-q", "--bare", str(remote))
    marks = tmp_path / "marks"
    marks.mkdir()
    argv = [*python_agent(tmp_path / "agent.py", AGENT), "{team}", str(marks)]
    env = {**({"WAIT": "1"} if wait else {}), **agent_env}
    (git_repo.path / "plan.yaml").write_text(
        PLAN.format(argv=json.dumps(argv), env=json.dumps(env))
    )
    loaded = load_plan(git_repo.path / "plan.yaml")
    settings = Settings(
        redis_url=password_redis.url,  # type: ignore[arg-type]
        key_prefix=f"t{uuid.uuid4().hex[:10]}",
        retry_attempts=2,
        retry_max_delay=0.2,
    )
    async with open_store(settings, git_repo.state_layout()) as store:
        info = await create_run(store, git_repo.state_layout(), loaded, Git(git_repo.path))
        async with store.lease(info.run_id) as lease:
            cluster = RayCluster(ray_cluster.address, ray_cluster.host_options)
            executor = RayExecutor(cluster, store=store, loaded=loaded, remote=str(remote))
            yield Setup(
                executor, store, info.run_id, lease.epoch, info.base_commit, remote, marks,
                password_redis.password,
            )  # fmt: skip


async def _running(s: Setup, team: str, timeout: float = 60) -> int:  # noqa: ASYNC109
    """The pid of the team's agent once it has started."""
    starts = s.marks / f"{team}.starts"
    with anyio.fail_after(timeout):
        while not starts.exists() or not starts.read_text().strip():  # noqa: ASYNC110
            await anyio.sleep(0.05)
    return int(starts.read_text().split()[0])


async def test_each_attempt_runs_on_its_node_and_pushes_its_branch(
    setup: Setup, ray_cluster: RayTestCluster, git_repo: GitRepo
) -> None:
    """Three teams pinned to three machines run at once, each in its own node's workspace
    (its cwd under that node's root, ``ORCHESTRATE_HOST`` its name); the hooks run in order;
    each team branch is on the shared remote and fetched into the local repository; the
    lines reached Redis; the attempt says which host ran it; the Redis password never
    reached an agent's environment."""
    s = setup
    outcomes: dict[str, AttemptOutcome] = {}
    hooks = {m: Hooks(s, m) for m in MACHINES}

    async def one(machine: str) -> None:
        outcomes[machine] = await s.executor.run_attempt(s.request(machine), hooks[machine])

    async with anyio.create_task_group() as tg:
        for machine in MACHINES:
            tg.start_soon(one, machine)
    for machine in MACHINES:
        out = outcomes[machine]
        assert out.ok and out.exit_code == 0 and out.commit, out
        assert out.host == machine and hooks[machine].calls == ["starting", "ended"]
        start = hooks[machine].start
        assert start is not None and start.host == machine
        assert start.worktree.is_relative_to(ray_cluster.roots / machine)
        branch = f"orchestrate/{s.run_id}/{machine}"
        data = json.loads(_git("-C", str(s.remote), "show", f"{branch}:out-{machine}.txt"))
        assert data["host"] == machine
        assert Path(data["cwd"]).is_relative_to(ray_cluster.roots / machine)
        assert not any(s.password in value for value in data["env"])
        assert git_repo.git("rev-parse", branch) == out.commit  # fetched for the integration
        lines = [e.line for e in await s.store.read_log(s.run_id, machine)]
        assert f"hello from {machine}" in lines and "done" in lines
        (attempt,) = await s.store.get_attempts(s.run_id, machine)
        assert attempt.fields["host"] == machine


@pytest.mark.parametrize("wait", [True])
@pytest.mark.parametrize("how", ["ray.kill", "kill -9"])
async def test_a_killed_host_actor_leaves_the_agent_running_and_re_adopts_it(
    setup: Setup, how: str
) -> None:
    """A host actor killed mid-attempt, through Ray (which kills the worker's direct
    children) or with SIGKILL of its worker: the agent, started through the spawner,
    keeps running; the host Ray restarted re-adopts it when the executor asks again; the
    attempt ends well and the agent was started once."""
    import ray

    s = setup
    cluster = s.executor.cluster
    result: dict[str, AttemptOutcome] = {}
    hooks = Hooks(s, "lenovo")

    async def run() -> None:
        result["out"] = await s.executor.run_attempt(s.request("lenovo"), hooks)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        pid = await _running(s, "lenovo")
        (node,) = [n for n in cluster.nodes() if n.name == "lenovo" and n.alive]
        before = await cluster.host_info(node)
        assert before is not None
        if how == "ray.kill":
            ray.kill(cluster.actor(node), no_restart=False)
        else:
            os.kill(before["pid"], signal.SIGKILL)
        with anyio.fail_after(60):
            while True:
                info = await cluster.host_info(node, timeout=2)
                if info is not None and info["pid"] != before["pid"]:
                    break
                await anyio.sleep(0.2)
        assert psutil.pid_exists(pid), "the agent died with its host actor"
        assert f"{s.run_id}/lenovo/1" in info["adopted"]
        (s.marks / "lenovo.go").touch()
    out = result["out"]
    assert out.ok and out.commit, out
    assert (s.marks / "lenovo.starts").read_text().split() == [str(pid)]
    assert hooks.calls == ["starting", "ended"]


@pytest.mark.parametrize("wait", [True])
async def test_a_node_lost_mid_attempt_ends_it_saying_host_lost(
    setup: Setup, ray_cluster: RayTestCluster
) -> None:
    """The node running an attempt goes away: the attempt ends within seconds as lost,
    ``host backend lost``; the team's next attempt finds no node left with its label and
    cannot begin, saying so."""
    s = setup
    result: dict[str, AttemptOutcome] = {}

    async def run() -> None:
        result["out"] = await s.executor.run_attempt(s.request("backend"), Hooks(s, "backend"))

    pid = None
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            pid = await _running(s, "backend")
            began = time.monotonic()
            ray_cluster.remove("backend")  # Ray wants its main thread for this
        out = result["out"]
        assert out.lost and not out.ok and out.reason == "host backend lost", out
        assert time.monotonic() - began < 30
        again = await s.executor.run_attempt(s.request("backend", 2), Hooks(s, "backend", 2))
        assert again.setup_error == (
            "no live node left with machine=backend (host backend lost)"
        ), again
    finally:
        if pid is not None and psutil.pid_exists(pid):  # a lost machine takes its agents along
            os.kill(pid, signal.SIGKILL)
        ray_cluster.restore("backend")


async def test_a_remote_or_redis_the_node_cannot_reach_fails_the_attempt_in_its_words(
    setup: Setup, tmp_path: Path
) -> None:
    """A remote the node cannot fetch: the attempt cannot begin, with git's own message
    and the host's name; a Redis the node cannot reach: it cannot begin either, saying so
    with the password hidden. Neither starts an agent nor calls a hook."""
    from orchestrator.run.ray_records import HostRequest

    s = setup
    ex = s.executor
    # This machine pushed the run's base; the remote the nodes are told of is not there.
    ex._based.add(s.run_id)
    ex.remote = str(tmp_path / "nowhere.git")
    hooks = Hooks(s, "mac-pro")
    out = await ex.run_attempt(s.request("mac-pro"), hooks)
    assert out.setup_error is not None and out.setup_error.startswith("host mac-pro: git"), out
    assert "nowhere.git" in out.setup_error and "\n" not in out.setup_error
    assert hooks.calls == []
    (node,) = [n for n in ex.cluster.nodes() if n.name == "mac-pro" and n.alive]
    bad = Settings(
        redis_url=f"redis://:{s.password}@127.0.0.1:1/0",  # type: ignore[arg-type]
        key_prefix="x",
        retry_attempts=1,
        retry_max_delay=0.1,
    )
    other = s.request("mac-pro").model_copy(update={"run_id": "other-run"})
    req = HostRequest(
        request=other, agent_id="a1", settings=bad, remote=str(s.remote),
        base_branch="b", branch="c", upstream_branches=(), slots=2,
    )  # fmt: skip
    out = await ex.cluster.call(node, "begin", req)
    assert out.setup_error.startswith("Redis not reachable from host mac-pro"), out
    assert s.password not in out.setup_error
    assert not (s.marks / "mac-pro.starts").exists()


async def test_redis_away_mid_attempt_loses_no_line_and_no_exit_status(
    ray_cluster: RayTestCluster, git_repo: GitRepo, redis_server_path: str, tmp_path: Path
) -> None:
    """Redis goes away while an agent runs on its host and the agent ends meanwhile: its
    exit status is on the node's disk, the host keeps retrying its writes, and once Redis
    is back the attempt ends well with every line in the log stream."""
    port, password = _free_port(), f"pw-{uuid.uuid4().hex}"
    data = tmp_path / "redis-data"
    data.mkdir()
    argv = [
        redis_server_path, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password,
        "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", str(data),
    ]  # fmt: skip
    server = _start_redis(argv, port, password)
    try:
        remote = tmp_path / "remote.git"
        _git("init", "-q", "--bare", str(remote))
        marks = tmp_path / "marks"
        marks.mkdir()
        agent = [*python_agent(tmp_path / "agent.py", AGENT), "{team}", str(marks)]
        plan = PLAN.format(argv=json.dumps(agent), env=json.dumps({"WAIT": "1"}))
        (git_repo.path / "plan.yaml").write_text(plan)
        loaded = load_plan(git_repo.path / "plan.yaml")
        settings = Settings(
            redis_url=f"redis://:{password}@127.0.0.1:{port}/0",  # type: ignore[arg-type]
            key_prefix=f"t{uuid.uuid4().hex[:10]}",
            retry_attempts=2,
            retry_max_delay=0.2,
        )
        async with open_store(settings, git_repo.state_layout()) as store:
            info = await create_run(store, git_repo.state_layout(), loaded, Git(git_repo.path))
            async with store.lease(info.run_id, cancel_on_loss=False) as lease:
                cluster = RayCluster(ray_cluster.address, ray_cluster.host_options)
                executor = RayExecutor(cluster, store=store, loaded=loaded, remote=str(remote))
                s = Setup(executor, store, info.run_id, lease.epoch, info.base_commit, remote,
                          marks, password)  # fmt: skip
                result: dict[str, AttemptOutcome] = {}

                async def run() -> None:
                    result["out"] = await executor.run_attempt(
                        s.request("mac-pro"), Hooks(s, "mac-pro")
                    )

                async with anyio.create_task_group() as tg:
                    tg.start_soon(run)
                    await _running(s, "mac-pro")
                    server.terminate()  # Redis is away...
                    server.wait(10)
                    (marks / "mac-pro.go").touch()  # ... when the agent ends
                    status = next((ray_cluster.roots / "mac-pro").glob(
                        f"runs/{info.run_id}/attempts/mac-pro.1.status"
                    ), None)  # fmt: skip
                    with anyio.fail_after(30):
                        while status is None or not status.exists():
                            await anyio.sleep(0.1)
                            status = next((ray_cluster.roots / "mac-pro").glob(
                                f"runs/{info.run_id}/attempts/mac-pro.1.status"
                            ), None)  # fmt: skip
                    await anyio.sleep(1.0)
                    assert "out" not in result  # waiting for Redis, not giving up
                    server = _start_redis(argv, port, password)  # back, same data
                out = result["out"]
                assert out.ok and out.exit_code == 0, out
                lines = [e.line for e in await store.read_log(info.run_id, "mac-pro")]
                assert "hello from mac-pro" in lines and "done" in lines
    finally:
        server.terminate()
        server.wait(10)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(argv: list[str], port: int, password: str) -> subprocess.Popen[bytes]:
    import redis

    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=1)
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    return proc
            except (redis.RedisError, OSError):
                time.sleep(0.05)
    finally:
        client.close()
    proc.kill()
    raise RuntimeError("redis-server did not start")


@pytest.mark.parametrize("agent_env", [{"FAIL_FIRST": "1"}])
async def test_a_second_attempt_on_the_same_node_has_its_own_files(
    setup: Setup, ray_cluster: RayTestCluster
) -> None:
    """Attempt 1 fails and attempt 2 runs on the same node: each has its own log and status
    file there, so attempt 2's stream holds its own lines only and its verdict is its own."""
    s = setup
    first = await s.executor.run_attempt(s.request("backend"), Hooks(s, "backend"))
    assert not first.ok and first.exit_code == 3, first
    await s.store.team_transition(s.run_id, "backend", "retrying", epoch=s.epoch, attempt=2)
    second_request = s.request("backend", 2).model_copy(update={"prepare": False})
    second = await s.executor.run_attempt(second_request, Hooks(s, "backend", 2))
    assert second.ok and second.host == "backend", second
    entries = await s.store.read_log(s.run_id, "backend")
    by_attempt = {a: [e.line for e in entries if e.attempt == a] for a in (1, 2)}
    assert "failing attempt 1" in by_attempt[1] and "failing attempt 1" not in by_attempt[2]
    assert by_attempt[2].count("hello from backend") == 1
    attempts = ray_cluster.roots / "backend" / "runs" / s.run_id / "attempts"
    assert {p.name for p in attempts.glob("backend.*.log")} == {"backend.1.log", "backend.2.log"}
