"""AgentProcess: a supervised agent whose log we follow, with time limits and re-attaching."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest

from orchestrator import forkserver
from orchestrator.agents.process import MAX_BATCH, AgentProcess, Launch, Outcome
from tests.support.agents import FakeAgent, python_agent

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Lines:
    """An ``on_lines`` that keeps every line and the size of every batch."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.batches: list[int] = []

    async def __call__(self, batch: list[str]) -> None:
        self.lines.extend(batch)
        self.batches.append(len(batch))


def launch(tmp_path: Path, argv: Sequence[str], **env: str) -> Launch:
    return Launch(
        argv=argv,
        cwd=tmp_path,
        env={**os.environ, **env},
        log=tmp_path / "logs" / "team.1.log",
        status=tmp_path / "logs" / "team.1.status",
    )


async def run_agent(
    tmp_path: Path,
    agent: FakeAgent,
    *,
    limit: float = 30,
    stall_timeout: float | None = None,
    grace: float = 5.0,
) -> tuple[Outcome, Lines, AgentProcess]:
    got = Lines()
    async with await AgentProcess.start(launch(tmp_path, agent.write(tmp_path / "agent.py"))) as p:
        outcome = await p.run(timeout=limit, stall_timeout=stall_timeout, on_lines=got, grace=grace)
    return outcome, got, p


def group_left(pgid: int) -> list[int]:
    """Live (non-zombie) processes still in process group ``pgid``."""
    left = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(proc.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return left


def spawn_sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def test_lines_arrive_in_order_and_complete(tmp_path: Path) -> None:
    """Every line reaches on_lines in order, the last one even without a newline; the exit
    code is reported and the offset covers the whole log."""
    outcome, got, proc = await run_agent(
        tmp_path, FakeAgent(lines=["first", "ünïcode", "", "last"], partial="tail", exit_code=4)
    )
    assert got.lines == ["first", "ünïcode", "", "last", "tail"]
    assert outcome.exit_code == 4
    assert outcome.signal is None
    assert not (outcome.timed_out or outcome.stalled or outcome.lost)
    assert proc.offset == (tmp_path / "logs" / "team.1.log").stat().st_size
    assert group_left(proc.pid) == []


async def test_signal_is_reported(tmp_path: Path) -> None:
    """An agent that dies by a signal is reported with that signal."""
    outcome, _, _ = await run_agent(tmp_path, FakeAgent(kill_self=signal.SIGSEGV))
    assert (outcome.exit_code, outcome.signal) == (None, signal.SIGSEGV)


async def test_missing_executable(tmp_path: Path) -> None:
    """A missing agent program ends with exit code 127 and a line saying what is missing."""
    got = Lines()
    missing = str(tmp_path / "no-such-cli")
    async with await AgentProcess.start(launch(tmp_path, [missing])) as proc:
        outcome = await proc.run(timeout=30, stall_timeout=None, on_lines=got)
    assert outcome.exit_code == 127
    assert any("no-such-cli" in line for line in got.lines)


async def test_env_cwd_and_closed_stdin(tmp_path: Path) -> None:
    """The agent runs in the launch's cwd with its environment, and reading stdin gives EOF."""
    agent = FakeAgent(print_cwd=True, print_env=["ORCHESTRATE_TEAM"], read_stdin=True)
    got = Lines()
    argv = agent.write(tmp_path / "agent.py")
    workdir = tmp_path / "work tree"
    workdir.mkdir()
    spec = launch(tmp_path, argv, ORCHESTRATE_TEAM="db")
    spec = Launch(argv=spec.argv, cwd=workdir, env=spec.env, log=spec.log, status=spec.status)
    async with await AgentProcess.start(spec) as proc:
        outcome = await proc.run(timeout=10, stall_timeout=None, on_lines=got)
    assert outcome.exit_code == 0
    assert got.lines == [f"cwd={workdir}", "ORCHESTRATE_TEAM=db", "stdin=''"]


@pytest.mark.parametrize("path", ["forked", "spawned"])
async def test_launch_secrets_are_masked_in_the_log(
    tmp_path: Path, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret the agent's environment does not hold (the Redis password), given only in
    Launch.secrets, is ``***`` in the log file and in the lines delivered; it is in neither
    the supervisor's argv nor its environment, whether the fork server forked it or it was
    started as a fresh interpreter (then through ``--secrets-fd``)."""
    if path == "spawned":
        monkeypatch.setenv(forkserver.DISABLE_ENV, "0")
    secret = "redis-only-pw-4711"
    argv = python_agent(tmp_path / "agent.py", f"print('connect with {secret} now')\n")
    base = launch(tmp_path, argv)
    spec = Launch(
        argv=argv, cwd=tmp_path, env=base.env, log=base.log, status=base.status, secrets=(secret,)
    )
    got = Lines()
    async with await AgentProcess.start(spec) as proc:
        supervisor = psutil.Process(proc.pid)
        cmdline = settled_cmdline(proc.pid)
        environ = supervisor.environ()
        outcome = await proc.run(timeout=30, stall_timeout=None, on_lines=got)
    assert outcome.exit_code == 0
    assert secret not in " ".join(cmdline)
    assert secret not in " ".join(environ.values())
    assert ("--secrets-fd" in cmdline) == (path == "spawned")
    assert secret not in base.env.values()
    assert got.lines == ["connect with *** now"]
    assert spec.log.read_text() == "connect with *** now\n"


async def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    """At its timeout an agent that ignores SIGTERM and has a grandchild is killed, group and
    all (SIGKILL after the grace period); no process is left."""
    pid_file = tmp_path / "grandchild"
    agent = FakeAgent(
        lines=["working"],
        ignore_sigterm=True,
        grandchild=True,
        grandchild_pid_file=pid_file,
        hang=True,
    )
    started = time.monotonic()
    outcome, got, proc = await run_agent(tmp_path, agent, limit=1.0, grace=0.3)
    assert outcome.timed_out and not outcome.stalled
    assert outcome.limit == 1.0
    assert outcome.exit_code is None
    assert time.monotonic() - started < 5
    assert got.lines[0] == "working"
    assert group_left(proc.pid) == []
    assert gone(int(pid_file.read_text()))


async def test_stall_is_detected(tmp_path: Path) -> None:
    """An agent silent for longer than the stall timeout is stopped and reported stalled."""
    outcome, got, proc = await run_agent(
        tmp_path, FakeAgent(lines=["hello"], hang=True), stall_timeout=0.5, grace=1.0
    )
    assert outcome.stalled and not outcome.timed_out
    assert outcome.limit == 0.5
    assert outcome.signal == signal.SIGTERM
    assert got.lines == ["hello"]
    assert group_left(proc.pid) == []


async def test_steady_output_is_not_a_stall(tmp_path: Path) -> None:
    """An agent printing often is never taken for stalled, however long it runs."""
    outcome, got, _ = await run_agent(tmp_path, FakeAgent(sleep=1.6, tick=0.1), stall_timeout=1.0)
    assert outcome.exit_code == 0 and not outcome.stalled
    assert len(got.lines) >= 5


async def test_flood_arrives_complete_in_bounded_batches(tmp_path: Path) -> None:
    """200,000 lines printed as fast as possible all arrive, in order, in bounded batches."""
    outcome, got, _ = await run_agent(tmp_path, FakeAgent(flood=200_000))
    assert outcome.exit_code == 0
    assert len(got.lines) == 200_000
    assert got.lines[0] == "line 0" and got.lines[-1] == "line 199999"
    assert got.lines == [f"line {i}" for i in range(200_000)]
    assert max(got.batches) <= MAX_BATCH


async def test_offset_inside_on_lines_covers_the_batch(tmp_path: Path) -> None:
    """Inside on_lines, ``offset`` is where the batch ends in the log: storing it there and
    resuming from it neither loses nor repeats a line."""
    argv = FakeAgent(lines=["a", "bb", "ccc"]).write(tmp_path / "agent.py")
    seen: list[tuple[list[str], int]] = []
    async with await AgentProcess.start(launch(tmp_path, argv)) as proc:

        async def on_lines(batch: list[str]) -> None:
            seen.append((batch, proc.offset))

        await proc.run(timeout=10, stall_timeout=None, on_lines=on_lines)
    log = (tmp_path / "logs" / "team.1.log").read_bytes()
    for batch, offset in seen:
        assert log[:offset].decode().splitlines()[-1] == batch[-1]


async def test_close_kills_a_running_agent_and_is_safe_twice(tmp_path: Path) -> None:
    """Leaving the ``async with`` early (an error, Ctrl-C) kills the agent; closing twice is
    harmless."""
    argv = FakeAgent(hang=True).write(tmp_path / "agent.py")
    proc = await AgentProcess.start(launch(tmp_path, argv))
    async with proc:
        assert proc.running
    await proc.aclose()
    assert not proc.running
    assert group_left(proc.pid) == []


async def test_attach_after_finish_reads_the_rest(tmp_path: Path) -> None:
    """Attaching to an agent that already ended delivers the log from the stored offset and
    its exit status."""
    outcome, _, first = await run_agent(tmp_path, FakeAgent(lines=["one", "two"], exit_code=2))
    log = tmp_path / "logs" / "team.1.log"
    offset = len(b"one\n")
    got = Lines()
    async with await AgentProcess.attach(first.pid, log, first.status, offset) as proc:
        again = await proc.run(timeout=10, stall_timeout=None, on_lines=got)
    assert got.lines == ["two"]
    assert again.exit_code == outcome.exit_code == 2


async def test_attach_to_a_vanished_supervisor_is_lost(tmp_path: Path) -> None:
    """A supervisor that died without writing a status is reported lost, not hung on."""
    argv = FakeAgent(lines=["x"], hang=True).write(tmp_path / "agent.py")
    spec = launch(tmp_path, argv)
    async with await AgentProcess.start(spec) as first:
        os.killpg(first.pid, signal.SIGKILL)
        got = Lines()
        second = await AgentProcess.attach(first.pid, spec.log, spec.status, 0)
        outcome = await second.run(timeout=10, stall_timeout=None, on_lines=got)
    assert outcome.lost
    assert outcome.exit_code is None


async def test_attach_never_signals_a_reused_pid(tmp_path: Path) -> None:
    """If the recorded pid now belongs to another process, attach treats the agent as lost
    and closing does not kill that stranger."""
    stranger = spawn_sleeper()
    try:
        log, status = tmp_path / "x.log", tmp_path / "x.status"
        proc = await AgentProcess.attach(stranger.pid, log, status, 0, create_time=1.0)
        async with proc:
            outcome = await proc.run(timeout=10, stall_timeout=None, on_lines=Lines())
        assert outcome.lost
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


STARTER = """
import anyio, json, os, sys
from pathlib import Path
from orchestrator.agents.process import AgentProcess, Launch

async def main():
    spec = Launch(argv=sys.argv[2:], cwd=Path.cwd(), env=os.environ,
                  log=Path(sys.argv[1] + ".log"), status=Path(sys.argv[1] + ".status"))
    proc = await AgentProcess.start(spec)
    offset = {}
    async def on_lines(batch):
        offset["n"] = proc.offset
        if "first" in batch:
            print(json.dumps({"pid": proc.pid, "create_time": proc.create_time,
                              "offset": proc.offset}), flush=True)
    await proc.run(timeout=60, stall_timeout=None, on_lines=on_lines)

anyio.run(main)
"""


def start_then_kill_orchestrator(tmp_path: Path, argv: list[str]) -> dict[str, Any]:
    """Start the agent from another Python process, await its first line, kill -9 it."""
    starter = python_agent(tmp_path / "starter.py", STARTER)
    orchestrator = subprocess.Popen(
        [*starter, str(tmp_path / "team"), *argv], stdout=subprocess.PIPE, cwd=tmp_path
    )
    try:
        assert orchestrator.stdout is not None
        info: dict[str, Any] = json.loads(orchestrator.stdout.readline())
    finally:
        orchestrator.kill()  # kill -9
        orchestrator.wait()
        if orchestrator.stdout is not None:
            orchestrator.stdout.close()
    return info


async def test_agent_outlives_a_killed_orchestrator(tmp_path: Path) -> None:
    """kill -9 of the orchestrator side leaves the agent running; a new one attaches, gets the
    rest of the output and the exit status, and no process remains."""
    agent = FakeAgent(lines=["first"], sleep=1.5, tick=0.3, exit_code=7)
    argv = agent.write(tmp_path / "agent.py")
    info = start_then_kill_orchestrator(tmp_path, argv)
    assert psutil.pid_exists(info["pid"])
    log, status = tmp_path / "team.log", tmp_path / "team.status"
    got = Lines()
    async with await AgentProcess.attach(
        info["pid"], log, status, info["offset"], create_time=info["create_time"]
    ) as proc:
        assert proc.running
        outcome = await proc.run(timeout=30, stall_timeout=None, on_lines=got)
    assert outcome.exit_code == 7
    assert "tick" in got.lines
    before = log.read_bytes()[: info["offset"]].decode().splitlines()
    assert before[0] == "first"
    assert "first" not in got.lines
    assert log.read_text().splitlines() == [*before, *got.lines]
    assert group_left(info["pid"]) == []
    assert gone(info["pid"])


async def test_detached_agent_keeps_running_until_terminated(tmp_path: Path) -> None:
    """A detached agent survives closing its handle (a graceful hand-over); a later attach can
    stop it, group and all."""
    argv = FakeAgent(lines=["up"], hang=True).write(tmp_path / "agent.py")
    spec = launch(tmp_path, argv)
    async with await AgentProcess.start(spec) as first:
        first.detach()
    try:
        assert first.running
        second = await AgentProcess.attach(first.pid, spec.log, spec.status, 0)
        async with second:
            assert second.running
            await second.terminate(grace=1.0)
        assert group_left(first.pid) == []
    finally:
        kill_group(first.pid)  # a failed assertion must not leave the detached pair running


def kill_group(pgid: int) -> None:
    """SIGKILL what is left of process group ``pgid`` (a detached supervisor and its agent)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


async def test_error_in_on_lines_stops_the_agent(tmp_path: Path) -> None:
    """If handling output fails, the error surfaces and the agent does not run on unseen."""
    argv = FakeAgent(lines=["boom"], hang=True).write(tmp_path / "agent.py")

    async def on_lines(batch: list[str]) -> None:
        raise RuntimeError("store down")

    with pytest.raises(RuntimeError, match="store down"):
        async with await AgentProcess.start(launch(tmp_path, argv)) as proc:
            await proc.run(timeout=30, stall_timeout=None, on_lines=on_lines)
    assert group_left(proc.pid) == []


def settled_cmdline(pid: int) -> list[str]:
    """``pid``'s command line; a process that has just exec'd shows none for a moment."""
    deadline = time.monotonic() + 5
    while not (cmdline := psutil.Process(pid).cmdline()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return cmdline


@pytest.mark.parametrize("path", ["forked", "spawned"])
async def test_the_agent_reads_its_stdin_file(
    tmp_path: Path, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Launch.stdin: the agent reads that file as its stdin (its prompt, kept off its command
    line), whichever way its supervisor was started."""
    if path == "spawned":
        monkeypatch.setenv(forkserver.DISABLE_ENV, "0")
    prompt = tmp_path / "prompt.md"
    prompt.write_text("build the thing\nthen test it\n")
    reader = "import sys\nfor line in sys.stdin:\n    print('got', line.strip())\n"
    argv = python_agent(tmp_path / "agent.py", reader)
    base = launch(tmp_path, argv)
    spec = Launch(
        argv=argv, cwd=tmp_path, env=base.env, log=base.log, status=base.status, stdin=prompt
    )
    got = Lines()
    async with await AgentProcess.start(spec) as proc:
        outcome = await proc.run(timeout=30, stall_timeout=None, on_lines=got)
    assert outcome.exit_code == 0
    assert got.lines == ["got build the thing", "got then test it"]


def test_a_supervisor_of_an_older_version_is_found_by_its_command_line(tmp_path: Path) -> None:
    """A resume after an upgrade still finds a supervisor started before identity records
    existed (its command line names it and its status file, relative to its folder), and
    never takes a process whose command line names another status file."""
    from orchestrator.agents.process import find_supervisor

    (tmp_path / "run").mkdir()
    sleep = "import time; time.sleep(30)"
    mine = subprocess.Popen(
        [sys.executable, "-c", sleep, "orchestrator.supervisor", "--status", "t/1.status"],
        cwd=tmp_path / "run",
    )
    other = subprocess.Popen(
        [sys.executable, "-c", sleep, "orchestrator.supervisor", "--status", str(tmp_path / "x")]
    )
    try:
        deadline = time.monotonic() + 10
        found = None
        while found is None and time.monotonic() < deadline:  # until its command line shows
            found = find_supervisor(tmp_path / "run" / "t" / "1.status")
            time.sleep(0.05)
        assert found is not None and found[0] == mine.pid
        assert find_supervisor(tmp_path / "nobody.status") is None
    finally:
        for proc in (mine, other):
            proc.kill()
            proc.wait()
