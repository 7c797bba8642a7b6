"""The fork server: supervisors forked from one warm helper, which may die at any moment."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from orchestrator import forkserver
from orchestrator.agents.process import AgentProcess, Launch, find_supervisor
from orchestrator.errors import AgentError
from orchestrator.supervisor import identity_file
from tests.support.agents import python_agent
from tests.support.crashkit import (
    chaos_plan,
    kill9,
    make_fixture,
    run_leftovers,
    succeeded_counts,
    wait_for,
)
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.anyio

COUNTING_AGENT = """
import sys, time
with open(sys.argv[1], "a") as fh:
    fh.write("started\\n")
print("up", flush=True)
time.sleep(float(sys.argv[2]))
print("done", flush=True)
sys.exit(3)
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server() -> Iterator[forkserver.ForkServer]:
    """A fork server of this test's own (not the process-wide one), closed at the end."""
    fs = forkserver.ForkServer()
    yield fs
    fs.close()


def counting_launch(tmp_path: Path, name: str, seconds: float) -> tuple[Launch, Path]:
    starts = tmp_path / f"{name}.starts"
    argv = [*python_agent(tmp_path / "agent.py", COUNTING_AGENT), str(starts), str(seconds)]
    launch = Launch(
        argv=argv,
        cwd=tmp_path,
        env=dict(os.environ),
        log=tmp_path / "logs" / f"{name}.log",
        status=tmp_path / "logs" / f"{name}.status",
    )
    return launch, starts


def use(monkeypatch: pytest.MonkeyPatch, fs: forkserver.ForkServer) -> None:
    monkeypatch.setattr(forkserver, "_server", fs)
    monkeypatch.delenv(forkserver.DISABLE_ENV, raising=False)


async def run_to_end(proc: AgentProcess) -> tuple[int | None, list[str]]:
    lines: list[str] = []

    async def on_lines(batch: list[str]) -> None:
        lines.extend(batch)

    async with proc:
        outcome = await proc.run(timeout=30, stall_timeout=None, on_lines=on_lines)
    return outcome.exit_code, lines


async def test_supervisors_are_forked_by_one_helper_in_sessions_of_their_own(
    tmp_path: Path, server: forkserver.ForkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three agents: one helper started (no interpreter per agent); each supervisor is the
    helper's child, leads a session of its own, and holds none of the agent's environment."""
    use(monkeypatch, server)
    marker = "AGENT_ONLY_VALUE_93"
    pids = []
    for name in ("a", "b", "c"):
        launch, _ = counting_launch(tmp_path, name, 0.1)
        launch = Launch(
            argv=launch.argv,
            cwd=launch.cwd,
            env={**launch.env, "SOME_SETTING": marker},
            log=launch.log,
            status=launch.status,
        )
        proc = await AgentProcess.start(launch)
        supervisor = psutil.Process(proc.pid)
        assert supervisor.ppid() == server.helper_pid
        assert os.getsid(proc.pid) == proc.pid
        assert marker not in supervisor.environ().values()
        pids.append(proc.pid)
        assert await run_to_end(proc) == (3, ["up", "done"])
    assert server.started == 1
    assert len(set(pids)) == 3


async def test_a_warmed_helper_serves_the_first_agent(
    tmp_path: Path, server: forkserver.ForkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """warm() starts the helper ahead of the first agent (a resume can call it while it reads
    Redis); the first agent is then forked by that same helper."""
    use(monkeypatch, server)
    server.warm()
    helper = server.helper_pid
    assert helper is not None and psutil.pid_exists(helper)
    server.warm()
    assert server.helper_pid == helper
    launch, _ = counting_launch(tmp_path, "first", 0.1)
    proc = await AgentProcess.start(launch)
    assert psutil.Process(proc.pid).ppid() == helper
    assert await run_to_end(proc) == (3, ["up", "done"])
    assert server.started == 1


async def test_helper_killed_mid_run_agents_go_on_and_a_new_helper_starts_the_next(
    tmp_path: Path, server: forkserver.ForkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kill -9 of the helper while its agent runs: that agent finishes with its exit status
    and output; the next start brings up a new helper; each agent ran exactly once."""
    use(monkeypatch, server)
    first_launch, first_starts = counting_launch(tmp_path, "first", 1.0)
    first = await AgentProcess.start(first_launch)
    helper = server.helper_pid
    assert helper is not None
    os.kill(helper, signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(helper) or _zombie(helper), 10, "the helper's end")
    second_launch, second_starts = counting_launch(tmp_path, "second", 0.1)
    second = await AgentProcess.start(second_launch)
    assert server.helper_pid not in (None, helper)
    assert await run_to_end(first) == (3, ["up", "done"])
    assert await run_to_end(second) == (3, ["up", "done"])
    assert first_starts.read_text() == "started\n"
    assert second_starts.read_text() == "started\n"
    assert server.started == 2


async def test_a_request_the_dead_helper_never_handled_is_sent_once_more_and_runs_once(
    tmp_path: Path, server: forkserver.ForkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The helper dies with the request in its queue (stopped, sent to, killed -9): the
    client sees EOF without a reply, starts a new helper and the agent runs exactly once."""
    use(monkeypatch, server)
    warm_launch, _ = counting_launch(tmp_path, "warm", 0.0)
    assert (await run_to_end(await AgentProcess.start(warm_launch)))[0] == 3
    send = forkserver.ForkServer._send
    faults = []

    def send_to_a_dying_helper(
        self: forkserver.ForkServer, data: bytes, log_fd: int
    ) -> tuple[socket.socket, socket.socket] | None:
        pid = self.helper_pid
        if faults or pid is None:
            return send(self, data, log_fd)
        faults.append(pid)  # fault injection, the first request only:
        os.kill(pid, signal.SIGSTOP)  # the helper cannot read it ...
        sent = send(self, data, log_fd)  # ... the request is queued ...
        os.kill(pid, signal.SIGKILL)  # ... and the helper dies with it
        return sent

    monkeypatch.setattr(forkserver.ForkServer, "_send", send_to_a_dying_helper)
    launch, starts = counting_launch(tmp_path, "once", 0.1)
    proc = await AgentProcess.start(launch)
    assert faults and server.helper_pid != faults[0]
    assert await run_to_end(proc) == (3, ["up", "done"])
    assert starts.read_text() == "started\n"
    assert server.started == 2


async def test_a_helper_that_cannot_start_costs_one_slow_start_then_none(
    tmp_path: Path, server: forkserver.ForkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork server that dies at once (a broken install): each agent still runs exactly once
    (as a fresh interpreter), and after a few helpers died without a reply no new one is
    tried (the slow path directly, not two doomed helpers per agent)."""
    use(monkeypatch, server)
    monkeypatch.setattr(forkserver, "_BOOT", "import sys; sys.exit(3)")  # fault injection
    for name in ("one", "two", "three"):
        launch, starts = counting_launch(tmp_path, name, 0.3)
        proc = await AgentProcess.start(launch)
        assert "orchestrator.supervisor" in settled_cmdline(proc.pid)
        assert await run_to_end(proc) == (3, ["up", "done"])
        assert starts.read_text() == "started\n"
    assert server.started == forkserver.MAX_FAILURES


async def test_a_missing_working_folder_is_one_clear_error_and_nothing_runs(
    tmp_path: Path, server: forkserver.ForkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worktree that is gone: AgentError naming the folder, the agent never ran, and the
    helper serves the next agent (the child refused before it replied)."""
    use(monkeypatch, server)
    launch, starts = counting_launch(tmp_path, "nowhere", 0.0)
    gone = tmp_path / "no-such-worktree"
    bad = Launch(argv=launch.argv, cwd=gone, env=launch.env, log=launch.log, status=launch.status)
    with pytest.raises(AgentError, match="no-such-worktree"):
        await AgentProcess.start(bad)
    assert not starts.exists()
    assert not identity_file(launch.status).exists()
    launch, starts = counting_launch(tmp_path, "next", 0.0)
    assert await run_to_end(await AgentProcess.start(launch)) == (3, ["up", "done"])
    assert server.started == 1


async def test_a_forked_supervisor_is_found_by_pid_and_start_time_not_its_command_line(
    tmp_path: Path, server: forkserver.ForkServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resume that never learnt the pid finds the supervisor from the record it wrote next
    to its status file (its command line is the helper's); the record is gone once the
    status names the supervisor (with its start time), and a dead one is never found."""
    use(monkeypatch, server)
    launch, _ = counting_launch(tmp_path, "found", 0.5)
    proc = await AgentProcess.start(launch)
    assert "--status" not in psutil.Process(proc.pid).cmdline()
    found = find_supervisor(launch.status)
    assert found is not None
    assert found[0] == proc.pid
    assert found[1] == pytest.approx(psutil.Process(proc.pid).create_time(), abs=0.05)
    again = await AgentProcess.attach(proc.pid, launch.log, launch.status, 0)
    assert again.running
    again.detach()
    await again.aclose()
    assert (await run_to_end(proc))[0] == 3
    assert not identity_file(launch.status).exists()
    assert find_supervisor(launch.status) is None
    status = json.loads(launch.status.read_text())
    assert status["supervisor_pid"] == proc.pid
    assert status["supervisor_created"] == pytest.approx(proc.create_time, abs=0.05)


async def test_a_stale_identity_record_never_names_a_stranger(tmp_path: Path) -> None:
    """A record naming a pid that now belongs to another process (another start time) is
    not taken for the supervisor: not found, and attach reports the agent lost."""
    stranger = spawn_sleeper()
    try:
        status = tmp_path / "x.status"
        identity_file(status).write_text(
            f'{{"supervisor_pid": {stranger.pid}, "created": 1000.0}}\n'
        )
        assert find_supervisor(status) is None
        proc = await AgentProcess.attach(stranger.pid, tmp_path / "x.log", status, 0)
        code, _ = await run_to_end(proc)
        assert code is None
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


async def test_the_slow_path_still_works_when_the_fork_server_is_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORCHESTRATE_FORK_SERVER=0: the supervisor is a fresh ``orchestrator.supervisor``
    interpreter (the command line older orchestrators' resumes recognise), same outcome."""
    monkeypatch.setenv(forkserver.DISABLE_ENV, "0")
    launch, starts = counting_launch(tmp_path, "slow", 0.1)
    proc = await AgentProcess.start(launch)
    assert "orchestrator.supervisor" in settled_cmdline(proc.pid)
    assert await run_to_end(proc) == (3, ["up", "done"])
    assert starts.read_text() == "started\n"


def spawn_sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _helper_of(orchestrator_pid: int) -> psutil.Process | None:
    try:
        children = psutil.Process(orchestrator_pid).children()
    except psutil.NoSuchProcess:
        return None
    for child in children:
        try:
            if "orchestrator.forkserver" in child.cmdline() and child.status() != "zombie":
                return child
        except psutil.Error:
            continue
    return None


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("then", ["run goes on", "orchestrator killed too, resumed"])
def test_helper_killed_9_mid_run(git_repo: GitRepo, tmp_path: Path, then: str) -> None:
    """kill -9 of the fork server while agents run: they go on; the run goes on with a new
    helper (or, killed too, is resumed); every team succeeds once, no attempt starts twice,
    no process of the run is left."""
    teams = chaos_plan(8, 7)
    specs = {t: {"sleep": 0.8} for t, _ in teams}
    fx = make_fixture(
        git_repo, tmp_path / "kit", teams, specs=specs, env={"ORCHESTRATE_LEASE_TTL": "5"}
    )
    try:
        proc = fx.start("run", str(fx.plan_file), "--backoff", "0.05")
        run_id = fx.run_id()
        wait_for(lambda: "running" in fx.statuses(run_id).values(), 60, "an agent running")
        helper = _helper_of(proc.pid)
        assert helper is not None, "no fork server under the orchestrator"
        helper.kill()
        if then == "run goes on":
            assert proc.wait(timeout=120) == 0, fx.out.read_text()
            # No start failed for want of a helper: every team's first attempt did it.
            assert sorted(a for _, a, _ in fx.starts_of()) == [1] * len(teams)
        else:
            kill9(proc)
            done = fx.run("resume", run_id, "--backoff", "0.05")
            assert done.returncode == 0, done.stdout + done.stderr
        assert fx.run_status(run_id) == "succeeded"
        counts = succeeded_counts(fx.events(run_id))
        assert counts == {t: 1 for t, _ in teams}, counts
        starts = fx.starts_of()
        pairs = [(t, a) for t, a, _ in starts]
        assert len(pairs) == len(set(pairs)), f"an attempt was started twice: {sorted(pairs)}"
        assert {t for t, _ in pairs} == {t for t, _ in teams}
        logs = fx.repo.path / ".orchestrate" / "runs" / run_id / "logs"
        assert run_leftovers(run_id, logs) == []
    finally:
        fx.kill_all()
        fx.run("server", "stop")


def settled_cmdline(pid: int) -> list[str]:
    """``pid``'s command line; a process that has just exec'd shows none for a moment."""
    deadline = time.monotonic() + 5
    while not (cmdline := psutil.Process(pid).cmdline()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return cmdline
