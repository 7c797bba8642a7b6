"""Test support: the session fails when a test leaves a process behind.

Register with ``pytest_plugins = ["tests.support.leaks"]`` (root ``conftest.py``).

Tests start real processes: embedded valkey-servers (``embedded_state_dir``,
``orchestrate ...`` run in a tmp repo without ``--redis-url``), detached
supervisors and their agents, git. Each must be gone when its test (or its
fixture) is done. At the end of the session the autouse fixture
``_no_leaked_processes`` looks for live processes of ours that point into the
session's temp folder (``--basetemp``) by their command line, working folder or
environment, kills them (so nothing lingers), and fails the session listing
each one's command line and the test that was running when it started.

It is the first session fixture set up, so it is the last torn down: the
session fixtures' own servers (``redis_url``, ``password_redis``; they live
outside the temp folder anyway) are stopped before it looks. Zombies do not
count: PID 1 here does not reap orphans, and a zombie runs nothing.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

__all__ = ["Leak", "find_leaks", "kill_leaks"]

_started: list[tuple[float, str]] = []  # (seconds since boot a test started, its node id)


def _since_boot() -> float:
    """Now in the clock of a process's start time (seconds since boot; wall clocks drift)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


@dataclass(frozen=True)
class Leak:
    """A live process that points into the session's temp folder."""

    pid: int
    cmdline: str
    created: float

    def describe(self, test: str | None) -> str:
        started = f" (started during {test})" if test else ""
        return f"pid {self.pid}: {self.cmdline}{started}"


def _points_into(proc: psutil.Process, root: str) -> bool:
    with contextlib.suppress(psutil.Error, OSError):
        if root in " ".join(proc.cmdline()):
            return True
    with contextlib.suppress(psutil.Error, OSError):
        if proc.cwd().startswith(root):
            return True
    with contextlib.suppress(psutil.Error, OSError):
        return any(root in value for value in proc.environ().values())
    return False


def find_leaks(root: Path) -> list[Leak]:
    """Live (non-zombie) processes of this user, other than this one and its parents, whose
    command line, working folder or environment mentions ``root``."""
    text = str(root)
    me = psutil.Process()
    skip = {me.pid, *(p.pid for p in me.parents())}
    uid = os.getuid()
    found: list[Leak] = []
    for proc in psutil.process_iter(["pid", "status", "uids", "create_time"]):
        info = proc.info
        if info["pid"] in skip or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if info["uids"] is None or info["uids"].real != uid:
            continue
        if _points_into(proc, text):
            with contextlib.suppress(psutil.Error):
                found.append(Leak(proc.pid, " ".join(proc.cmdline()), info["create_time"]))
    return found


def kill_leaks(leaks: list[Leak]) -> None:
    """SIGKILL each leaked process (children first would not matter: all go) and wait a bit."""
    procs = []
    for leak in leaks:
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(leak.pid)
            if proc.create_time() == leak.created:  # not a recycled pid
                proc.kill()
                procs.append(proc)
    psutil.wait_procs(procs, timeout=5)


def _test_at(created: float) -> str | None:
    """The test that was running when a process was created (``created``: psutil's time)."""
    since_boot = created - psutil.boot_time()
    i = bisect.bisect_right(_started, (since_boot, "\uffff")) - 1
    return _started[i][1] if i >= 0 else None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _started.append((_since_boot(), item.nodeid))


@pytest.fixture(scope="session", autouse=True)
def _no_leaked_processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    root = tmp_path_factory.getbasetemp()
    yield
    deadline = time.monotonic() + 3.0  # a server told to stop a moment ago may still be exiting
    leaks = find_leaks(root)
    while leaks and time.monotonic() < deadline:
        time.sleep(0.1)
        leaks = find_leaks(root)
    if not leaks:
        return
    kill_leaks(leaks)
    lines = "\n".join("  " + leak.describe(_test_at(leak.created)) for leak in leaks)
    pytest.fail(
        f"{len(leaks)} process(es) outlived the tests that started them (now killed):\n{lines}",
        pytrace=False,
    )
