"""``orchestrate run --executor ray`` as a user runs it: a real subprocess joining a real
Ray cluster (head + 3 labelled nodes), a bare repository as the shared remote, a real
Redis on loopback TCP with a password. Teams pinned to three machines run there, a
downstream team sees its upstream teams' work fetched from the remote, the integration
merges their branches here; killed -9 mid-run, ``resume`` re-attaches to the agents on
the hosts; bad set-ups are refused in one line with exit 2 before anything starts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis

from tests.support.agents import python_agent
from tests.support.gitrepo import GitRepo
from tests.support.ray import RayTestCluster
from tests.support.redis import PasswordRedis

pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[dev]')")
pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(240)]

ORCHESTRATE = [sys.executable, "-m", "orchestrator"]

AGENT = """
import json, os, sys, time
from pathlib import Path
team, marks = sys.argv[1], Path(sys.argv[2])
with open(marks / f"{team}.starts", "a") as fh:
    fh.write(f"{os.getpid()} {os.environ.get('ORCHESTRATE_HOST')}\\n")
print(f"{team} on {os.environ.get('ORCHESTRATE_HOST')}", flush=True)
while os.environ.get("WAIT") and not (marks / f"{team}.go").exists():
    time.sleep(0.05)
Path(f"out-{team}.txt").write_text(json.dumps({
    "host": os.environ.get("ORCHESTRATE_HOST"), "cwd": os.getcwd(),
    "saw": sorted(p.name for p in Path(".").glob("out-*.txt")),
}))
"""

PLAN = """version: 1
name: rayrun
executor: ray
agents:
  py: {{kind: command, command: {argv}}}
defaults: {{agent: py, retries: 1}}
env: {env}
teams:
  - {{id: mac, task: t, deliverables: [out-mac.txt], runs_on: {{machine: mac-pro}}}}
  - {{id: len, task: t, deliverables: [out-len.txt], runs_on: {{machine: lenovo}}}}
  - id: api
    task: t
    deliverables: [out-api.txt]
    depends_on: [mac, len]
    runs_on: {{machine: {api_on}}}
integration:
  test: "test -f out-api.txt && test -f out-mac.txt && test -f out-len.txt"
"""


@pytest.fixture(autouse=True)
def _agents_released(tmp_path: Path) -> Iterator[None]:
    """Whatever a test asserted, its waiting agents are told to finish (none outlives it)."""
    yield
    marks = tmp_path / "marks"
    if marks.is_dir():
        for team in ("mac", "len", "api", "x"):
            (marks / f"{team}.go").touch()
        time.sleep(1.0)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout


def _setup(
    git_repo: GitRepo, tmp_path: Path, *, wait: bool = False, api_on: str = "backend"
) -> tuple[Path, Path, Path]:
    """A bare remote as the repository's origin, the plan, the agents' marks folder."""
    remote = tmp_path / "remote.git"
    _git("init", "-q", "--bare", str(remote))
    git_repo.git("remote", "add", "origin", str(remote))
    git_repo.git("push", "-q", "origin", "main")
    marks = tmp_path / "marks"
    marks.mkdir()
    argv = [*python_agent(tmp_path / "agent.py", AGENT), "{team}", str(marks)]
    env = {"WAIT": "1"} if wait else {}
    plan = git_repo.path / "plan.yaml"
    plan.write_text(PLAN.format(argv=json.dumps(argv), env=json.dumps(env), api_on=api_on))
    return plan, remote, marks


def _env(password_redis: PasswordRedis) -> dict[str, str]:
    env = dict(os.environ)
    env["ORCHESTRATE_REDIS_URL"] = password_redis.url
    env["ORCHESTRATE_KEY_PREFIX"] = f"t{uuid.uuid4().hex[:8]}"
    return env


def _cmd(*args: str, env: dict[str, str], timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ORCHESTRATE, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _runs(password_redis: PasswordRedis, env: dict[str, str]) -> list[bytes]:
    client = redis.Redis.from_url(password_redis.url)
    try:
        return list(client.zrange(f"{env['ORCHESTRATE_KEY_PREFIX']}:runs", 0, -1))
    finally:
        client.close()


def test_teams_pinned_to_three_machines_run_there_and_integrate_here(
    ray_cluster: RayTestCluster, git_repo: GitRepo, password_redis: PasswordRedis, tmp_path: Path
) -> None:
    """Each agent ran on the node its ``runs_on`` names (its host and its cwd under that
    node's workspace); ``api`` saw both upstream teams' files (fetched from the remote);
    the integration merged the three branches here and its suite passed; the report
    names each attempt's host, so do ``status --json`` and the board; ``logs`` shows each
    agent's lines; the Redis password is in no output."""
    plan, _, _ = _setup(git_repo, tmp_path)
    env = _env(password_redis)
    proc = _cmd(
        "run", str(plan), "--ray-address", ray_cluster.address, "--backoff", "0.05", env=env
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert password_redis.password not in out
    run_id = next(
        line.split()[1].rstrip(":") for line in proc.stdout.splitlines() if line.startswith("run ")
    )
    where = {"mac": "mac-pro", "len": "lenovo", "api": "backend"}
    for team, machine in where.items():
        data = json.loads(git_repo.git("show", f"orchestrate/{run_id}/{team}:out-{team}.txt"))
        assert data["host"] == machine
        assert Path(data["cwd"]).is_relative_to(ray_cluster.roots / machine)
    api = json.loads(git_repo.git("show", f"orchestrate/{run_id}/api:out-api.txt"))
    assert {"out-mac.txt", "out-len.txt"} <= set(api["saw"])
    merged = git_repo.git("ls-tree", "--name-only", f"orchestrate/{run_id}/integration")
    assert {"out-mac.txt", "out-len.txt", "out-api.txt"} <= set(merged.split())
    report = (git_repo.path / ".orchestrate" / "runs" / run_id / "report.json").read_text()
    hosts = {t["id"]: t.get("host") for t in json.loads(report)["teams"]}
    assert hosts == where
    # `logs` and `status` work as with the local executor (the lines came through Redis).
    state = ["--state-dir", str(git_repo.path / ".orchestrate")]
    logs = _cmd("logs", run_id, "mac", *state, env=env)
    assert logs.returncode == 0 and "mac on mac-pro" in logs.stdout, logs.stdout + logs.stderr
    status = json.loads(_cmd("status", run_id, "--json", *state, env=env).stdout)
    assert {t["id"]: t["host"] for t in status["teams"]} == where


def test_orchestrator_killed_9_mid_run_resume_reattaches_on_the_hosts(
    ray_cluster: RayTestCluster, git_repo: GitRepo, password_redis: PasswordRedis, tmp_path: Path
) -> None:
    """``kill -9`` of the orchestrator while two agents run on their hosts (``orchestrate
    hosts`` shows them and the slots they take): they go on; ``orchestrate resume``
    (remembering the executor and the cluster) re-attaches to them and finishes the run;
    no agent was started twice."""
    plan, _, marks = _setup(git_repo, tmp_path, wait=True)
    env = _env(password_redis)
    proc = subprocess.Popen(
        [*ORCHESTRATE, "run", str(plan), "--ray-address", ray_cluster.address, "--backoff", "0.05"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while not all((marks / f"{t}.starts").exists() for t in ("mac", "len")):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        # `orchestrate hosts` meanwhile: each node's labels, slots taken, attempts running
        # (once the hosts have recorded the agents' pids, a moment after they start).
        for _ in range(10):
            shown = _cmd("hosts", "--ray-address", ray_cluster.address, "--json", env=env)
            assert shown.returncode == 0, shown.stderr
            rows = {r["name"]: r for r in json.loads(shown.stdout) if r["alive"]}
            if rows["mac-pro"]["running"] and rows["lenovo"]["running"]:
                break
            time.sleep(0.5)
        assert rows["head"]["agent_slots"] == 0 and rows["head"]["labels"] == {"machine": "head"}
        for team, machine in (("mac", "mac-pro"), ("len", "lenovo")):
            assert any(k.endswith(f"/{team}/1") for k in rows[machine]["running"]), rows
            assert rows[machine]["free_slots"] == 1 and rows[machine]["agent_slots"] == 2
        assert rows["backend"]["running"] == [] and rows["backend"]["free_slots"] == 2
        table = _cmd("hosts", "--ray-address", ray_cluster.address, env=env).stdout
        assert any(line.split()[:3] == ["lenovo", "alive", "1/2"] for line in table.splitlines()), (
            table
        )
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    pids = {t: (marks / f"{t}.starts").read_text() for t in ("mac", "len")}
    resume = subprocess.Popen(
        [
            *ORCHESTRATE,
            "resume",
            "--backoff",
            "0.05",
            "--state-dir",
            str(git_repo.path / ".orchestrate"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=git_repo.path,
    )
    try:
        time.sleep(3)  # let it attach, then let the agents finish
        for team in ("mac", "len", "api"):
            (marks / f"{team}.go").touch()
        out, err = resume.communicate(timeout=150)
    finally:
        if resume.poll() is None:
            resume.kill()
            resume.communicate()
    assert resume.returncode == 0, out + err
    assert "attached" in out, out
    for team, started in pids.items():  # one line: one agent start
        assert (marks / f"{team}.starts").read_text() == started and started.count("\n") == 1


def test_a_runs_on_no_node_matches_is_refused_before_anything_starts(
    ray_cluster: RayTestCluster, git_repo: GitRepo, password_redis: PasswordRedis, tmp_path: Path
) -> None:
    """A team pinned to a machine the cluster lacks: exit 2, one line naming the labels
    there are, and no run recorded; the same for an agent CLI missing on the nodes and for
    a remote this machine cannot reach."""
    plan, _, marks = _setup(git_repo, tmp_path, api_on="gpu-box")
    env = _env(password_redis)
    proc = _cmd("run", str(plan), "--ray-address", ray_cluster.address, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "teams[2].runs_on: team api: no node of the cluster has machine=gpu-box" in proc.stderr
    assert "(labels there: machine=backend, machine=lenovo, machine=mac-pro)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _runs(password_redis, env) == []
    assert not list(marks.iterdir())
    # An agent CLI no node it may run on has: refused too, naming the nodes looked at
    # (this machine's PATH does not count: agents run on the nodes).
    text = re.sub(
        r"  py: \{kind: command, command: .*\}\n",
        "  py: {kind: command, command: [no-such-cli-x]}\n",
        plan.read_text().replace("gpu-box", "backend"),
    )
    plan.write_text(text)
    proc = _cmd("run", str(plan), "--ray-address", ray_cluster.address, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "teams[0].agent: team mac: agent 'py' is not installed on mac-pro" in proc.stderr
    assert _runs(password_redis, env) == []
    # A remote this machine cannot reach (it pushes the run's base there first).
    text = plan.read_text().replace("[no-such-cli-x]", '["true"]')
    plan.write_text(text + "remote: ../gone.git\n")
    proc = _cmd("run", str(plan), "--ray-address", ray_cluster.address, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "the git remote" in proc.stderr and "gone.git cannot be reached from here" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and _runs(password_redis, env) == []


def test_no_cluster_no_ray_or_a_local_store_are_one_line_exit_2(
    git_repo: GitRepo, password_redis: PasswordRedis, tmp_path: Path
) -> None:
    """No cluster at the address, Ray not installed, a store the nodes cannot reach (the
    embedded server): each is one line on stderr, exit 2, nothing recorded."""
    plan, _, _ = _setup(git_repo, tmp_path)
    env = _env(password_redis)
    proc = _cmd("run", str(plan), "--ray-address", "127.0.0.1:9", env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("orchestrate: error: no Ray cluster at 127.0.0.1:9")
    assert len(proc.stderr.strip().splitlines()) == 1
    fake = tmp_path / "noray"
    (fake / "ray").mkdir(parents=True)
    (fake / "ray" / "__init__.py").write_text("raise ImportError('no ray here')\n")
    proc = _cmd("run", str(plan), env={**env, "PYTHONPATH": str(fake)}, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "orchestrate: error: the ray executor needs Ray: pip install 'orchestrate[ray]' "
        "(on every node too)"
    )
    assert _runs(password_redis, env) == []
    local = {k: v for k, v in env.items() if k != "ORCHESTRATE_REDIS_URL"}
    proc = _cmd("run", str(plan), "--ray-address", "127.0.0.1:9", env=local, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(
        "orchestrate: error: the ray executor needs a Redis every node reaches"
    )
    assert not (git_repo.path / ".orchestrate" / "redis").exists()


LOST_PLAN = """version: 1
name: raylost
executor: ray
agents:
  py: {{kind: command, command: {argv}}}
defaults: {{agent: py, retries: 1}}
env: {{WAIT: "1"}}
teams:
  - {{id: x, task: t, deliverables: [out-x.txt], runs_on: {{machine: [backend, mac-pro]}}}}
"""


def test_a_node_lost_mid_attempt_is_retried_on_another_eligible_node(
    ray_cluster: RayTestCluster, git_repo: GitRepo, password_redis: PasswordRedis, tmp_path: Path
) -> None:
    """The node running a team's attempt is lost: that attempt fails with ``host NAME
    lost`` and the retry runs on the other node its ``runs_on`` allows; the run succeeds
    and the report shows both attempts with their hosts."""
    _, _, marks = _setup(git_repo, tmp_path)
    argv = [*python_agent(tmp_path / "agent.py", AGENT), "{team}", str(marks)]
    plan = git_repo.path / "lost.yaml"
    plan.write_text(LOST_PLAN.format(argv=json.dumps(argv)))
    env = _env(password_redis)
    proc = subprocess.Popen(
        [*ORCHESTRATE, "run", str(plan), "--ray-address", ray_cluster.address, "--backoff", "0.05"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    lost = None
    try:
        starts = marks / "x.starts"
        deadline = time.monotonic() + 90
        while not starts.exists() or not starts.read_text().strip():
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        pid, lost = starts.read_text().split()
        ray_cluster.remove(lost)  # its raylet and workers die at once, as with a machine
        gone = time.monotonic() + 20
        while psutil.pid_exists(int(pid)) and time.monotonic() < gone:
            time.sleep(0.1)  # its agent goes with it (or is killed below, as a machine would)
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
        (marks / "x.go").touch()  # the retry elsewhere may finish
        out, err = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if lost is not None:
            with contextlib.suppress(ProcessLookupError):  # a lost machine's agents are gone
                os.kill(int(pid), signal.SIGKILL)
            ray_cluster.restore(lost)
    assert proc.returncode == 0, out + err[-3000:]
    other = {"backend": "mac-pro", "mac-pro": "backend"}[lost]
    run_id = next(
        line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith("run ")
    )
    report = json.loads(
        (git_repo.path / ".orchestrate" / "runs" / run_id / "report.json").read_text()
    )
    (team,) = report["teams"]
    first, second = team["attempts"]
    assert first["host"] == lost and first["reason"] == f"host {lost} lost", first
    assert second["host"] == other and second["outcome"] == "succeeded", second
    assert f"host {lost} lost" in out


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_a_run_through_the_embedded_server_listening_with_tls(
    ray_cluster: RayTestCluster, git_repo: GitRepo, tmp_path: Path
) -> None:
    """`orchestrate server start --listen ... --tls-cert ... --tls-key ...` in one state
    folder, its `rediss://` URL given to `run --executor ray`: the orchestrator and every
    host use it, the run succeeds, the password shows in no output but the start's."""
    plan, _, _ = _setup(git_repo, tmp_path)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server_state = tmp_path / "server-state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
    state_args = ["--state-dir", str(server_state)]
    started = _cmd(
        "server", "start", "--listen", f"127.0.0.1:{port}", "--tls-cert", str(cert),
        "--tls-key", str(key), *state_args, env=env,
    )  # fmt: skip
    try:
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip().splitlines()[-1] + f"?ssl_ca_certs={cert}"
        assert url.startswith("rediss://")
        password = (server_state / "redis" / "password").read_text().strip()
        proc = _cmd(
            "run", str(plan), "--ray-address", ray_cluster.address, "--redis-url", url,
            "--backoff", "0.05", env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert password not in proc.stdout + proc.stderr
    finally:
        _cmd("server", "stop", *state_args, env=env)


def test_cancel_stops_the_agents_on_their_hosts_when_no_orchestrator_runs(
    ray_cluster: RayTestCluster, git_repo: GitRepo, password_redis: PasswordRedis, tmp_path: Path
) -> None:
    """The orchestrator of a ray run is killed -9 with two agents running on their hosts;
    `orchestrate cancel` (finding the run's cluster in its record) stops them there and
    marks the run cancelled."""
    plan, _, marks = _setup(git_repo, tmp_path, wait=True)
    env = _env(password_redis)
    proc = subprocess.Popen(
        [*ORCHESTRATE, "run", str(plan), "--ray-address", ray_cluster.address],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while not all((marks / f"{t}.starts").exists() for t in ("mac", "len")):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        time.sleep(1.0)  # the hosts have recorded the agents' pids
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    pids = [int((marks / f"{t}.starts").read_text().split()[0]) for t in ("mac", "len")]
    assert all(psutil.pid_exists(p) for p in pids)
    state = ["--state-dir", str(git_repo.path / ".orchestrate")]
    done = _cmd("cancel", "--grace", "2", *state, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 agent(s) stopped on their hosts" in done.stdout and "cancelled" in done.stdout
    gone = time.monotonic() + 15
    while any(psutil.pid_exists(p) for p in pids) and time.monotonic() < gone:
        time.sleep(0.1)
    assert not any(psutil.pid_exists(p) for p in pids), "an agent still runs on its host"
