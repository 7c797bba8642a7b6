"""Fake agents: real processes (Python scripts run with ``sys.executable``) for tests.

Describe what the agent does with :class:`FakeAgent`, write it with
:meth:`FakeAgent.write`, and run the argv it returns::

    argv = FakeAgent(lines=["hello"], exit_code=3).write(tmp_path / "agent.py")
    # [sys.executable, "-u", ".../agent.py"]

The script does these steps in this order, each only when asked for:

1. ``ignore_sigterm``: SIGTERM is ignored from the start (only SIGKILL ends it).
2. ``print_cwd`` prints ``cwd=<path>``; ``print_env`` prints ``NAME=value`` (or
   ``NAME=<unset>``) for each name; ``read_stdin`` prints ``stdin=<repr of all of stdin>``.
3. ``copy_prompt``: prints ``prompt=<text>`` of the file named by the argument
   after ``--prompt`` or by ``$ORCHESTRATE_PROMPT_FILE``.
4. ``write_files``: writes each ``path: content`` (relative to the cwd; folders made).
5. ``lines``: prints each line; ``flood``: prints ``line 0`` … ``line N-1`` as
   fast as it can; ``partial``: prints it with no newline at the end.
6. ``grandchild``: starts a grandchild (same process group) that sleeps for an
   hour; its pid is printed as ``grandchild=<pid>`` and also written to
   ``grandchild_pid_file`` when given. Its output goes to /dev/null, or with
   ``grandchild_keeps_output`` it keeps the agent's stdout open.
7. ``sleep`` seconds, printing ``tick`` every ``tick`` seconds if set;
   ``hang``: sleeps for an hour.
8. ``fail_attempts``: exits 1 (printing ``failing attempt N``) while
   ``$ORCHESTRATE_ATTEMPT`` is at most this; ``kill_self``: dies by that signal;
   otherwise exits with ``exit_code``.

:func:`python_agent` writes a script from arbitrary code instead.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["FakeAgent", "python_agent"]


def python_agent(path: Path, code: str) -> list[str]:
    """Write ``code`` as a Python script at ``path``; the argv that runs it (unbuffered)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code)
    return [sys.executable, "-u", str(path)]


@dataclass(frozen=True)
class FakeAgent:
    """What a fake agent does; see the module docstring for the order of the steps."""

    lines: Sequence[str] = ()
    partial: str | None = None
    flood: int = 0
    sleep: float = 0.0
    tick: float | None = None
    hang: bool = False
    exit_code: int = 0
    kill_self: int | None = None
    ignore_sigterm: bool = False
    grandchild: bool = False
    grandchild_pid_file: Path | None = None
    grandchild_keeps_output: bool = False
    read_stdin: bool = False
    print_cwd: bool = False
    print_env: Sequence[str] = ()
    copy_prompt: bool = False
    write_files: Mapping[str, str] = field(default_factory=dict)
    fail_attempts: int = 0

    def script(self) -> str:
        """The Python source of this agent."""
        out = ["import os, signal, subprocess, sys, time", "w = sys.stdout.write"]
        if self.ignore_sigterm:
            out.append("signal.signal(signal.SIGTERM, signal.SIG_IGN)")
        if self.print_cwd:
            out.append("print('cwd=' + os.getcwd(), flush=True)")
        for name in self.print_env:
            out.append(f"print({name!r} + '=' + os.environ.get({name!r}, '<unset>'), flush=True)")
        if self.read_stdin:
            out.append("print('stdin=' + repr(sys.stdin.read()), flush=True)")
        if self.copy_prompt:
            out += [
                "a = sys.argv[1:]",
                "pf = a[a.index('--prompt') + 1] if '--prompt' in a"
                " else os.environ['ORCHESTRATE_PROMPT_FILE']",
                "print('prompt=' + open(pf).read(), flush=True)",
            ]
        for rel, content in self.write_files.items():
            out += [
                f"os.makedirs(os.path.dirname({rel!r}) or '.', exist_ok=True)",
                f"open({rel!r}, 'w').write({content!r})",
            ]
        for line in self.lines:
            out.append(f"print({line!r}, flush=True)")
        if self.flood:
            out += [
                f"for i in range({self.flood}):",
                "    w('line %d\\n' % i)",
                "sys.stdout.flush()",
            ]
        if self.partial is not None:
            out.append(f"w({self.partial!r}); sys.stdout.flush()")
        if self.grandchild:
            out += [
                "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'],"
                f" stdout={'None' if self.grandchild_keeps_output else 'subprocess.DEVNULL'})",
                "print('grandchild=%d' % g.pid, flush=True)",
            ]
            if self.grandchild_pid_file is not None:
                out.append(f"open({str(self.grandchild_pid_file)!r}, 'w').write(str(g.pid))")
        if self.tick:
            out += [
                f"end = time.monotonic() + {self.sleep!r}",
                "while time.monotonic() < end:",
                "    print('tick', flush=True)",
                f"    time.sleep({self.tick!r})",
            ]
        elif self.sleep:
            out.append(f"time.sleep({self.sleep!r})")
        if self.hang:
            out.append("time.sleep(3600)")
        if self.fail_attempts:
            out += [
                "n = int(os.environ.get('ORCHESTRATE_ATTEMPT', '1'))",
                f"if n <= {self.fail_attempts}:",
                "    print('failing attempt %d' % n, flush=True)",
                "    sys.exit(1)",
            ]
        if self.kill_self is not None:
            out.append(f"os.kill(os.getpid(), {self.kill_self})")
        out.append(f"sys.exit({self.exit_code})")
        return "\n".join(out) + "\n"

    def write(self, path: Path) -> list[str]:
        """Write the script at ``path``; the argv that runs it."""
        return python_agent(path, self.script())
