"""Helpers for the crash-safety tests (no tests here): `orchestrate` as subprocesses.

A plan of fake agents (real processes) that log every start to a shared file
(``<team> <attempt> <agent id>`` per line), run for a while printing ticks,
fail their first attempt when told, and write their deliverable
``src/<team>.txt``. Orchestrators are started with :class:`Cli` and killed
for real; the store is read with a plain redis client.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
import yaml

from orchestrator.state.keys import Keys
from tests.support.gitrepo import GitRepo

ORCHESTRATE = [sys.executable, "-m", "orchestrator"]

AGENT = r"""
import json, os, sys, time
spec = json.load(open(sys.argv[1]))
team, attempt = os.environ["ORCHESTRATE_TEAM"], int(os.environ["ORCHESTRATE_ATTEMPT"])
agent = os.environ["ORCHESTRATE_AGENT_ID"]
with open(spec["starts"], "a") as fh:
    fh.write(f"{team} {attempt} {agent}\n")
me = spec["teams"].get(team, {})
print(f"{team} attempt {attempt} agent {agent} starting", flush=True)
end = time.time() + me.get("sleep", 0.0)
while time.time() < end:
    print("tick", flush=True)
    time.sleep(0.05)
if me.get("fail_once") and not os.path.exists(me["fail_once"]):
    open(me["fail_once"], "w").write("failed")
    print(f"{team} broke", flush=True)
    sys.exit(1)
os.makedirs("src", exist_ok=True)
open(f"src/{team}.txt", "w").write(f"{team}\n")
print(f"done: {team}", flush=True)
"""


def chaos_plan(count: int, seed: int) -> list[tuple[str, list[str]]]:
    """``count`` teams, each depending on up to two earlier ones (a random DAG)."""
    rng = random.Random(seed)
    teams: list[tuple[str, list[str]]] = []
    for i in range(count):
        earlier = [t for t, _ in teams]
        deps = sorted(rng.sample(earlier, k=min(len(earlier), rng.choice([0, 1, 1, 2]))))
        teams.append((f"t{i:02d}", deps))
    return teams


@dataclass
class Fixture:
    """A repository, a plan, the fake agent and the environment every command gets."""

    repo: GitRepo
    plan_file: Path
    starts: Path
    env: dict[str, str]
    teams: list[tuple[str, list[str]]]
    out: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def keys(self) -> Keys:
        return Keys(self.env["ORCHESTRATE_KEY_PREFIX"])

    def redis(self) -> redis.Redis:
        url = self.env.get("ORCHESTRATE_REDIS_URL")
        if url:
            return redis.Redis.from_url(url, decode_responses=True)
        from orchestrator.settings import Settings
        from orchestrator.state.server import EmbeddedServer

        server = EmbeddedServer(self.repo.path / ".orchestrate" / "redis", Settings())
        return redis.Redis(unix_socket_path=str(server.socket_path), decode_responses=True)

    def start(
        self, *args: str, extra_env: Mapping[str, str] | None = None, out: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """``orchestrate ARGS`` in the background; output appended to ``out`` (``self.out``)."""
        env = {**self.env, **(extra_env or {})}
        with (out or self.out).open("ab") as fh:
            fh.write(f"\n$ orchestrate {' '.join(args)}\n".encode())
            proc = subprocess.Popen(
                [*ORCHESTRATE, *args],
                env=env,
                cwd=self.repo.path,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.procs.append(proc)
        return proc

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*ORCHESTRATE, *args],
            env=self.env,
            cwd=self.repo.path,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def run_cmd_env(self, args: Sequence[str], extra: Mapping[str, str]) -> int:
        """``orchestrate ARGS`` in the foreground with extra variables; its return code."""
        proc = self.start(*args, extra_env=extra)
        return proc.wait(timeout=120)

    def run_id(self, timeout: float = 30) -> str:
        """The newest run (waits for it to exist)."""
        r = self.redis()
        try:
            wait_for(lambda: bool(r.zrevrange(self.keys.runs, 0, 0)), timeout, "a run")
            return str(r.zrevrange(self.keys.runs, 0, 0)[0])
        finally:
            r.close()

    def statuses(self, run_id: str) -> dict[str, str]:
        r = self.redis()
        try:
            return {t: r.hget(self.keys.team(run_id, t), "status") or "" for t, _ in self.teams}
        finally:
            r.close()

    def run_status(self, run_id: str) -> str:
        r = self.redis()
        try:
            return str(r.hget(self.keys.meta(run_id), "status") or "")
        finally:
            r.close()

    def events(self, run_id: str) -> list[dict[str, str]]:
        r = self.redis()
        try:
            return [f for _, f in r.xrange(self.keys.events(run_id))]
        finally:
            r.close()

    def starts_of(self) -> list[tuple[str, int, str]]:
        if not self.starts.exists():
            return []
        out = []
        for line in self.starts.read_text().splitlines():
            team, attempt, agent = line.split()
            out.append((team, int(attempt), agent))
        return out

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def make_fixture(
    repo: GitRepo,
    folder: Path,
    teams: Sequence[tuple[str, Sequence[str]]],
    *,
    specs: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str],
    max_parallel: int = 4,
    integration: Mapping[str, Any] | None = None,
) -> Fixture:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "agent.py"
    script.write_text(AGENT)
    starts = folder / "starts.txt"
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"starts": str(starts), "teams": specs}))
    doc: dict[str, Any] = {
        "version": 1,
        "name": "chaos",
        "repo": repo.path.name,
        "max_parallel": max_parallel,
        "defaults": {"agent": "fake", "timeout": "120s", "retries": 2},
        "agents": {
            "fake": {"kind": "command", "command": [sys.executable, "-u", str(script), str(spec)]}
        },
        "teams": [
            {
                "id": t,
                "task": f"Build {t}.",
                "deliverables": [f"src/{t}.txt"],
                "depends_on": list(d),
            }
            for t, d in teams
        ],
    }
    if integration:
        doc["integration"] = dict(integration)
    plan_file = repo.path.parent / "plan.yaml"
    plan_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    base = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
    base.update({"ORCHESTRATE_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}", **env})
    return Fixture(
        repo, plan_file, starts, base, [(t, list(d)) for t, d in teams], folder / "out.txt"
    )


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_leftovers(run_id: str, logs: Path) -> list[str]:
    """Live processes of the run: ORCHESTRATE_RUN in their environment or its logs in argv."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        try:
            env = proc.environ()
        except psutil.Error:
            env = {}
        cmd = " ".join(proc.info["cmdline"] or [])
        if env.get("ORCHESTRATE_RUN") == run_id or str(logs) in cmd:
            found.append(f"{proc.pid} {cmd}")
    return found


def kill9(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def succeeded_counts(events: Sequence[Mapping[str, str]]) -> Counter[str]:
    return Counter(
        e["team"] for e in events if e.get("type") == "team" and e.get("to") == "succeeded"
    )


def branch_files(repo: GitRepo, ref: str) -> set[str]:
    return set(repo.git("ls-tree", "-r", "--name-only", ref).splitlines())
