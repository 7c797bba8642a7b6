"""Is a team done? Its deliverables exist, non-empty, and its checks pass.

Two questions the engine asks after every attempt, both answered inside the
team's worktree:

* :func:`find_deliverables` — each deliverable is a relative path or a glob.
  A path must name a non-empty file; a glob must match at least one non-empty
  file. The answer maps every file found to its sha256 (and every unmet
  deliverable to ``None``) and lists each problem in words the agent can act on.
* :func:`run_checks` — each check is a shell string or an argv, run in the
  worktree with a time limit, its merged output kept as a bounded tail. All
  checks run, one after another, even after a failure: the retry prompt lists
  every failing check at once.
"""

from __future__ import annotations

import glob
import hashlib
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

DEFAULT_TAIL_BYTES = 4000
"""How much of a check's output (its end) is kept for the retry prompt."""

_SKIP_DIRS = {".git", ".orchestrate"}


@dataclass(frozen=True)
class DeliverableReport:
    """What :func:`find_deliverables` found.

    ``found`` maps each file found (relative, ``/``-separated) to the sha256 of
    its content, and each unmet deliverable (as written in the plan) to ``None``.
    ``problems`` says, one line each, what is missing or empty.
    """

    found: dict[str, str | None] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def missing(self) -> list[str]:
        """The deliverables (as written in the plan) that are not met."""
        return [path for path, digest in self.found.items() if digest is None]


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome."""

    command: str
    passed: bool
    exit_code: int | None
    output_tail: str
    duration: float
    timed_out: bool = False
    error: str | None = None

    def describe(self) -> str:
        """One line: ``check `pytest -q` failed (exit 1)``."""
        if self.passed:
            return f"check `{self.command}` passed"
        if self.timed_out:
            return f"check `{self.command}` timed out after {self.duration:.0f}s"
        if self.error:
            return f"check `{self.command}` could not run: {self.error}"
        return f"check `{self.command}` failed (exit {self.exit_code})"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _inside(root: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except (ValueError, OSError):
        return False
    return True


def _non_empty_file(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def find_deliverables(worktree: Path, deliverables: Sequence[str]) -> DeliverableReport:
    """Check each deliverable inside ``worktree`` (see the module docstring)."""
    root = worktree.resolve()
    found: dict[str, str | None] = {}
    problems: list[str] = []
    for raw in deliverables:
        pattern = raw.strip().lstrip("/")
        if not pattern:
            continue
        if glob.has_magic(pattern) and not (root / pattern).exists():  # a literal path first
            matches = sorted(
                p
                for p in root.glob(pattern)
                if _inside(root, p) and not (_SKIP_DIRS & set(p.relative_to(root).parts))
            )
            files = [p for p in matches if p.is_file()]
            good = [p for p in files if _non_empty_file(p)]
            for p in good:
                found[p.relative_to(root).as_posix()] = _sha256(p)
            if not good:
                found[raw] = None
                if files:
                    problems.append(f"{raw}: every matching file is empty")
                else:
                    problems.append(f"{raw}: no file matches")
            continue
        path = root / pattern
        if not _inside(root, path):
            found[raw] = None
            problems.append(f"{raw}: outside the worktree")
        elif not path.exists():
            found[raw] = None
            problems.append(f"{raw}: missing")
        elif not path.is_file():
            found[raw] = None
            problems.append(f"{raw}: not a file")
        elif not _non_empty_file(path):
            found[raw] = None
            problems.append(f"{raw}: empty")
        else:
            found[pattern] = _sha256(path)
    return DeliverableReport(found=found, problems=tuple(problems))


def command_text(command: str | Sequence[str]) -> str:
    """A check as one readable line."""
    if isinstance(command, str):
        return command
    import shlex

    return shlex.join(command)


def _argv(command: str | Sequence[str]) -> list[str]:
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    return list(command)


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


async def run_in_group(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str] | None,
    time_limit: float,
    on_output: Callable[[bytes], Awaitable[None]],
    grace: float = 2.0,
) -> tuple[int | None, bool]:
    """Run ``argv`` in a session of its own, handing its merged output to ``on_output``.

    Returns ``(exit code, timed out)``. Past ``time_limit`` its whole process group
    gets SIGTERM, then SIGKILL after ``grace`` seconds; when it is done, anything it
    left running in its group is killed; when we are cancelled, the group is killed
    before the cancellation goes on. Raises OSError when it cannot start. Checks and
    worktree set-up commands both run this way.
    """
    process = await anyio.open_process(
        list(argv),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    timed_out = False
    async with process:
        try:
            with anyio.move_on_after(time_limit) as scope:
                assert process.stdout is not None
                async for chunk in process.stdout:
                    await on_output(chunk)
                await process.wait()
            if scope.cancelled_caught:
                timed_out = True
                _kill_group(process.pid, signal.SIGTERM)
                with anyio.move_on_after(grace):
                    await process.wait()
                _kill_group(process.pid, signal.SIGKILL)
                with anyio.CancelScope(shield=True):
                    await process.wait()
            else:
                # The command is done; anything it left behind in its group goes too.
                _kill_group(process.pid, signal.SIGKILL)
        except BaseException:  # cancelled (the run stops): nothing of it stays behind
            _kill_group(process.pid, signal.SIGKILL)
            raise
    return (None if timed_out else process.returncode), timed_out


async def run_check(
    worktree: Path,
    command: str | Sequence[str],
    *,
    time_limit: float,
    env: Mapping[str, str] | None = None,
    tail_bytes: int = DEFAULT_TAIL_BYTES,
    grace: float = 2.0,
) -> CheckResult:
    """Run one check in ``worktree`` with a time limit; never raises for the check's own failure.

    The check runs in its own session, so a timeout ends its whole process group
    (SIGTERM, then SIGKILL after ``grace`` seconds).
    """
    text = command_text(command)
    started = time.monotonic()
    tail = bytearray()

    async def keep_tail(chunk: bytes) -> None:
        tail.extend(chunk)
        if len(tail) > tail_bytes * 2:
            del tail[: len(tail) - tail_bytes]

    try:
        code, timed_out = await run_in_group(
            _argv(command), cwd=worktree, env=env, time_limit=time_limit,
            on_output=keep_tail, grace=grace,
        )  # fmt: skip
    except OSError as exc:
        return CheckResult(
            command=text,
            passed=False,
            exit_code=None,
            output_tail="",
            duration=time.monotonic() - started,
            error=exc.strerror or str(exc),
        )
    output = bytes(tail[-tail_bytes:]).decode("utf-8", errors="replace")
    return CheckResult(
        command=text,
        passed=not timed_out and code == 0,
        exit_code=code,
        output_tail=output,
        duration=time.monotonic() - started,
        timed_out=timed_out,
    )


async def run_checks(
    worktree: Path,
    checks: Sequence[str | Sequence[str]],
    *,
    time_limit: float,
    env: Mapping[str, str] | None = None,
    tail_bytes: int = DEFAULT_TAIL_BYTES,
) -> list[CheckResult]:
    """Run every check, one after another (all of them, even after a failure)."""
    results = []
    for command in checks:
        result = await run_check(
            worktree, command, time_limit=time_limit, env=env, tail_bytes=tail_bytes
        )
        results.append(result)
    return results
