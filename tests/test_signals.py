"""Stopping a run with signals: a further Ctrl-C or SIGTERM while stopping escalates.

The review's repro: agents that ignore SIGTERM and SIGINT (``trap '' TERM INT;
sleep 40``), SIGINT, then SIGINT again a second later. Before, the second one
raised KeyboardInterrupt: exit 130 with no summary, both agents alive, and the
board saying ``cancelled``. Now it SIGKILLs the agents' process groups, the
process exits once they are gone, with its summary, and the store says what
happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from tests.support.gitrepo import GitRepo
from tests.test_engine_support import plan_yaml

ORCHESTRATE = [sys.executable, "-m", "orchestrator"]


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(") ", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


def _pgid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[2])


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_kills_agents_that_ignore_the_first(
    git_repo: GitRepo, redis_url: str, tmp_path: Path, sig: signal.Signals
) -> None:
    """Two agents ignore SIGTERM/SIGINT; a signal, then the same again a second later: the
    agents' groups are SIGKILLed at once (not after the 5 s grace), `orchestrate run` exits
    130 only once no agent process is left, prints its summary, and the store shows the
    run interrupted and its teams cancelled."""
    pids = tmp_path / "pids"
    pids.mkdir()
    agent = ["bash", "-c", f"trap '' TERM INT; echo $$ > {pids}/$ORCHESTRATE_TEAM; sleep 40"]
    teams = [("db", []), ("api", [])]
    plan_file = git_repo.path.parent / "plan.yaml"
    plan_file.write_text(plan_yaml(agent, teams) + f"repo: {git_repo.path.name}\n")
    prefix = f"t{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "ORCHESTRATE_REDIS_URL": redis_url, "ORCHESTRATE_KEY_PREFIX": prefix}
    proc = subprocess.Popen(
        [*ORCHESTRATE, "run", str(plan_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    groups: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(groups) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the agents never started"
            groups = [_pgid(int(p.read_text())) for p in pids.iterdir() if p.read_text().strip()]
            time.sleep(0.05)
        time.sleep(0.3)  # the agents are in their trap + sleep
        proc.send_signal(sig)
        time.sleep(1.0)
        assert proc.poll() is None  # still stopping: the agents ignore SIGTERM
        assert all(_group_members(g) for g in groups)
        second = time.monotonic()
        proc.send_signal(sig)
        dead_after: float | None = None  # when the last agent process was gone
        while proc.poll() is None and time.monotonic() - second < 30:
            if dead_after is None and not any(_group_members(g) for g in groups):
                dead_after = time.monotonic() - second
            time.sleep(0.02)
        out, err = proc.communicate(timeout=30)
        left = {g: _group_members(g) for g in groups}  # the moment it exited
        if dead_after is None and not any(left.values()):  # it exited at once
            dead_after = time.monotonic() - second
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for g in groups:
            for pid in _group_members(g):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 130, out + err
    assert not any(left.values()), f"agents outlived orchestrate: {left}"
    # Without the escalation they would live out the 5 s grace: 4 s after the second signal.
    assert dead_after is not None and dead_after < 3.0, f"no escalation ({dead_after}s)"
    assert "Traceback" not in err
    assert "again: killing" in out
    assert "interrupted" in out and "  db " in out and "  api " in out  # the summary
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        (run_id,) = client.zrange(f"{prefix}:runs", 0, -1)
        assert client.hget(f"{prefix}:{{{run_id}}}:meta", "status") == "interrupted"
        for team, _ in teams:
            key = f"{prefix}:{{{run_id}}}:team:{team}"
            assert client.hget(key, "status") == "cancelled"
    finally:
        client.close()
