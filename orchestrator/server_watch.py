"""The embedded server's watchdog: ``python -m orchestrator.server_watch``.

::

    python -m orchestrator.server_watch --pid PID --dir DIR --socket SOCKET [--interval S]

Started in the background beside each embedded valkey-server (see
:mod:`orchestrator.state.server`, which starts it through ``sh -c '... &'`` so
that nothing waits for it).
A server is daemonized and outlives every command, so one whose state folder
was deleted (``rm -rf`` of a demo repository) would otherwise run forever.
The watchdog:

- leaves the caller's session (``setsid``) and working folder;
- makes sure PID is the server of SOCKET (its command line names the socket)
  and holds a pidfd of it: whatever it signals later is that process, never
  another one that reused the pid;
- holds the server's data folder open (its working folder, DIR, opened through
  ``/proc/PID/cwd``: held even if it was deleted before the watchdog started)
  and every S seconds looks at its link count: 0 means the folder was removed.
  A folder that was renamed or moved is still there (a run that uses it goes
  on), and a folder that is there is never acted on;
- once the folder is gone: SIGTERM to the server (it flushes and exits), SIGKILL
  if it is still there 10 s later;
- exits as soon as the server exits, for whatever reason (its starter writes
  its pid to ``DIR/watch.pid``: ``server stop`` waits for it).

It imports the standard library only: it starts with every server.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
from pathlib import Path

KILL_AFTER = 10.0
"""Seconds between SIGTERM and SIGKILL."""


def title_names_socket(args: list[str], socket: str) -> bool:
    """Do a process's arguments name ``socket`` the way valkey titles itself
    (``valkey-server unixsocket:PATH``, one string)? PATH is matched whole, spaces
    and all: a folder such as ``My Projects/demo`` is no list of words."""
    title = " " + " ".join(a for a in args if a).strip() + " "
    return f" unixsocket:{socket} " in title


def names_socket(pid: int, socket: str) -> bool:
    """Does process ``pid``'s command line name ``socket`` (valkey shows ``unixsocket:PATH``)?"""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return title_names_socket(raw.decode(errors="replace").split("\0"), socket)


def _folder_gone(dir_fd: int) -> bool:
    try:
        return os.fstat(dir_fd).st_nlink == 0
    except OSError:
        return True


def _wait_exit(pidfd: int, timeout: float) -> bool:
    """True once the process of ``pidfd`` has exited (within ``timeout`` seconds)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def watch(pid: int, socket: str, interval: float) -> int:
    """The watchdog's loop. Returns the exit code."""
    if not names_socket(pid, socket):
        return 1
    try:
        pidfd = os.pidfd_open(pid)
        # The server's working folder is its data folder (valkey chdirs to its `dir`):
        # opened through /proc, it is held even if it was deleted before we got here.
        dir_fd = os.open(f"/proc/{pid}/cwd", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return 1
    if not names_socket(pid, socket):  # the pid was reused between the check and the pidfd
        return 1
    while not _wait_exit(pidfd, interval):
        if not _folder_gone(dir_fd):
            continue
        try:
            signal.pidfd_send_signal(pidfd, signal.SIGTERM)
            if not _wait_exit(pidfd, KILL_AFTER):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return 0
    return 0


def _detach() -> None:
    """A session of its own (no terminal's signals), out of the caller's folder."""
    try:
        os.setsid()
    except OSError:
        pass  # already a session or group leader: fine as it is
    os.chdir("/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.server_watch")
    parser.add_argument("--pid", type=int, required=True)
    parser.add_argument("--dir", required=True)  # names the folder in `ps` (server stop)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args(argv)
    if not hasattr(os, "pidfd_open"):  # not Linux >= 5.3: no watchdog, as before
        return 0
    _detach()
    try:
        return watch(args.pid, args.socket, max(0.05, args.interval))
    except Exception:  # in the background: nowhere to report it
        return 1


if __name__ == "__main__":
    sys.exit(main())
