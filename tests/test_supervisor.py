"""The supervisor process: runs one agent, appends its output to a log, writes its status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from orchestrator.agents.process import _SUPERVISOR
from orchestrator.supervisor import MAX_LINE, QUIET_FLUSH, LogWriter, unsafe_tail
from tests.support.agents import FakeAgent, python_agent


def supervisor_argv(
    log: Path, status: Path, *argv: str, secrets_fd: int | None = None
) -> list[str]:
    """The supervisor's command line exactly as AgentProcess starts it."""
    secrets = ["--secrets-fd", str(secrets_fd)] if secrets_fd is not None else []
    return [*_SUPERVISOR, "--log", str(log), "--status", str(status), *secrets, "--", *argv]


def supervise(
    tmp_path: Path, argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 30
) -> tuple[str, dict[str, Any]]:
    """Run the supervisor to its end; the log text and the status."""
    log, status = tmp_path / "agent.log", tmp_path / "agent.status"
    subprocess.run(
        supervisor_argv(log, status, *argv),
        check=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    return log.read_text(), json.loads(status.read_text())


def start(tmp_path: Path, argv: list[str]) -> tuple[subprocess.Popen[bytes], Path, Path]:
    log, status = tmp_path / "agent.log", tmp_path / "agent.status"
    proc = subprocess.Popen(
        supervisor_argv(log, status, *argv),
        start_new_session=True,
    )
    return proc, log, status


def wait_for_text(path: Path, text: str, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.02)
    raise AssertionError(f"{text!r} never appeared in {path}")


def test_output_lines_in_order_and_exit_code(tmp_path: Path) -> None:
    """Everything the agent prints, stdout and stderr, lands in the log in order; its exit code
    and start/end times are in the status file."""
    argv = python_agent(
        tmp_path / "a.py",
        "import sys\nprint('one', flush=True)\nsys.stderr.write('two\\n'); sys.stderr.flush()\n"
        "print('three', flush=True)\nsys.exit(3)\n",
    )
    text, status = supervise(tmp_path, argv)
    assert text == "one\ntwo\nthree\n"
    assert status["exit_code"] == 3
    assert status["signal"] is None
    assert isinstance(status["pid"], int)
    assert status["started"] <= status["ended"]


def test_partial_last_line_is_kept(tmp_path: Path) -> None:
    """A last line without a newline is not lost."""
    text, status = supervise(
        tmp_path, FakeAgent(lines=["a"], partial="no newline").write(tmp_path / "a.py")
    )
    assert text == "a\nno newline"
    assert status["exit_code"] == 0


def test_killed_by_signal_is_reported(tmp_path: Path) -> None:
    """An agent killed by a signal has that signal in its status and no exit code."""
    _, status = supervise(tmp_path, FakeAgent(kill_self=signal.SIGKILL).write(tmp_path / "a.py"))
    assert status == status | {"exit_code": None, "signal": signal.SIGKILL}


def test_missing_executable_is_127_with_a_line(tmp_path: Path) -> None:
    """A command that does not exist gives exit code 127 and says why in the log."""
    text, status = supervise(tmp_path, [str(tmp_path / "no-such-agent"), "--flag"])
    assert status["exit_code"] == 127
    assert status["pid"] is None
    assert "cannot start the agent" in text
    assert "no-such-agent" in text


def test_log_is_appended_not_truncated(tmp_path: Path) -> None:
    """A log that already holds text keeps it: the supervisor appends."""
    (tmp_path / "agent.log").write_text("earlier\n")
    text, _ = supervise(tmp_path, FakeAgent(lines=["later"]).write(tmp_path / "a.py"))
    assert text == "earlier\nlater\n"


def test_stdin_is_closed(tmp_path: Path) -> None:
    """An agent reading stdin gets end-of-file at once instead of hanging."""
    text, _ = supervise(tmp_path, FakeAgent(read_stdin=True).write(tmp_path / "a.py"), timeout=10)
    assert text == "stdin=''\n"


def test_overlong_line_is_split(tmp_path: Path) -> None:
    """A line of 200 KiB is written in 64 KiB pieces, all of it."""
    argv = python_agent(tmp_path / "a.py", "print('x' * 200_000)\n")
    text, _ = supervise(tmp_path, argv)
    pieces = text.splitlines()
    assert [len(p) for p in pieces] == [65536, 65536, 65536, 200_000 - 3 * 65536]


def test_secret_values_are_redacted(tmp_path: Path) -> None:
    """The value of an API key in the environment never reaches the log file."""
    env = dict(os.environ, MY_API_KEY="sk-very-secret-value", HARMLESS="visible-value")
    argv = FakeAgent(print_env=["MY_API_KEY", "HARMLESS"]).write(tmp_path / "a.py")
    text, _ = supervise(tmp_path, argv, env=env)
    assert "sk-very-secret-value" not in text
    assert "MY_API_KEY=***" in text
    assert "HARMLESS=visible-value" in text


def test_secret_split_across_two_writes_never_reaches_the_log(tmp_path: Path) -> None:
    """A token printed in two pieces, with a pause longer than the quiet flush between them,
    is masked whole: the piece that may start a secret waits for the rest of its line."""
    token = "tok-split-0123456789abcdef"
    env = dict(os.environ, DEMO_TOKEN=token)
    code = (
        "import os, sys, time\n"
        "tok = os.environ['DEMO_TOKEN']\n"
        "sys.stdout.write('token ' + tok[:8]); sys.stdout.flush()\n"
        f"time.sleep({QUIET_FLUSH * 3})\n"
        "print(tok[8:] + ' end', flush=True)\n"
        "sys.stdout.write('last ' + tok[:5]); sys.stdout.flush()\n"
    )
    text, _ = supervise(tmp_path, python_agent(tmp_path / "a.py", code), env=env)
    assert token not in text
    assert text == f"token *** end\nlast {token[:5]}"  # at the end, a held tail is written as is


def test_partial_line_flush_holds_back_only_a_possible_secret(tmp_path: Path) -> None:
    """A quiet partial line is written at once except for a tail that may begin a secret."""
    log = tmp_path / "x.log"
    writer = LogWriter(log, [b"secret-value", b"other"])
    writer.feed(b"hello sec")
    writer.flush_partial()
    assert log.read_bytes() == b"hello "
    writer.feed(b"ret-value and ot")
    writer.flush_partial()
    assert log.read_bytes() == b"hello *** and "
    writer.feed(b"her\n")
    assert log.read_bytes() == b"hello *** and ***\n"
    writer.feed(b"plain")
    writer.flush_partial()
    writer.close()
    assert log.read_bytes() == b"hello *** and ***\nplain"
    assert unsafe_tail(b"xxsecret-valu", [b"secret-value"]) == 11
    assert unsafe_tail(b"secret-value", [b"secret-value"]) == 0  # whole: redacted now


def test_overlong_line_is_never_cut_inside_a_secret(tmp_path: Path) -> None:
    """A secret that straddles the 64 KiB piece boundary of an overlong line is masked."""
    log = tmp_path / "x.log"
    writer = LogWriter(log, [b"secret-value"])
    writer.feed(b"x" * (MAX_LINE - 4) + b"secret-value" + b"y" * 10)
    writer.close()
    assert b"secret" not in log.read_bytes()
    assert log.read_bytes().count(b"***") == 1


def test_extra_secrets_come_from_an_inherited_fd(tmp_path: Path) -> None:
    """Secrets passed on --secrets-fd (a JSON list on a pipe) are masked like environment ones."""
    argv = python_agent(tmp_path / "a.py", "print('pw is redis-pass-xyz')\n")
    log, status = tmp_path / "agent.log", tmp_path / "agent.status"
    r, w = os.pipe()
    os.write(w, json.dumps(["redis-pass-xyz"]).encode())
    os.close(w)
    try:
        subprocess.run(
            supervisor_argv(log, status, *argv, secrets_fd=r),
            check=True,
            timeout=30,
            pass_fds=(r,),
            stdin=subprocess.DEVNULL,
        )
    finally:
        os.close(r)
    assert log.read_text() == "pw is ***\n"


def test_sigterm_is_forwarded_to_the_agent(tmp_path: Path) -> None:
    """SIGTERM sent to the supervisor alone reaches the agent; the status says so."""
    proc, log, status = start(tmp_path, FakeAgent(lines=["up"], hang=True).write(tmp_path / "a.py"))
    try:
        wait_for_text(log, "up")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()
    data = json.loads(status.read_text())
    assert data["signal"] == signal.SIGTERM
    assert not psutil.pid_exists(data["pid"]) or psutil.Process(data["pid"]).status() == "zombie"


def test_leftover_grandchild_is_killed(tmp_path: Path) -> None:
    """A background process the agent leaves behind dies when the agent ends, even one holding
    the agent's output open; the status is still written."""
    for keeps in (False, True):
        pid_file = tmp_path / f"grandchild-{keeps}"
        agent = FakeAgent(
            grandchild=True, grandchild_pid_file=pid_file, grandchild_keeps_output=keeps
        )
        _, status = supervise(tmp_path, agent.write(tmp_path / "a.py"))
        assert status["exit_code"] == 0
        grandchild = int(pid_file.read_text())
        deadline = time.monotonic() + 5
        while psutil.pid_exists(grandchild) and time.monotonic() < deadline:
            if psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.02)
        alive = psutil.pid_exists(grandchild)
        assert not alive or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE


def test_status_written_atomically(tmp_path: Path) -> None:
    """Only the final status file remains: no temporary file next to it."""
    supervise(tmp_path, FakeAgent().write(tmp_path / "a.py"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.py", "agent.log", "agent.status"]


def test_without_a_command_it_refuses(tmp_path: Path) -> None:
    """Started without a command after ``--``, the supervisor says so and exits 2."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.supervisor",
            "--log",
            str(tmp_path / "l"),
            "--status",
            str(tmp_path / "s"),
            "--",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "no agent command" in result.stderr
