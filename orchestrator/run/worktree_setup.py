"""A new worktree made ready for its agent: untracked files copied in, set-up commands run.

Two plan fields (``copy:`` and ``setup:``, top level then per team) say what a
fresh checkout lacks: the user's ``.env`` that git does not track, the
``npm ci`` / ``uv sync`` that fills ``node_modules`` or ``.venv``. Before an
agent starts in a new worktree (worktree isolation: each team's; shared
isolation: the run's, once), :func:`prepare_worktree`:

1. copies each ``copy:`` path (a file or a glob, relative to the user's
   checkout) into the same place in the worktree. A copied file is never
   committed: its path is excluded from git (the repository's
   ``info/exclude``, which every worktree reads; the user's checkout sees the
   same line, which only hides files it does not track). A path git tracks is
   refused (the copy would change a tracked file); a literal path missing
   from the checkout is refused; a glob may match nothing.
2. collects the values of the copied files' ``KEY=VALUE`` lines as secrets
   (:func:`file_secrets`), so that the redaction hides them in logs, events
   and reports like the values of ``*_API_KEY`` variables.
3. runs each ``setup:`` command in the worktree, one after another, with the
   environment the agent will get, stdin closed, in its own session (a
   timeout ends the whole group). Their output goes, redacted and line by
   line, to ``on_lines`` (the team's log). The first failure stops the
   set-up; the :class:`Prepared` result says why in one line plus the tail
   of the output, which becomes the attempt's reason.

Nothing here raises for the user's mistakes: a failed preparation is a value.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from secrets import token_hex

import anyio

from orchestrator.redact import SECRET_MIN_LEN, Redactor
from orchestrator.verify import command_text, run_in_group

__all__ = [
    "DEFAULT_SETUP_TIMEOUT",
    "CopyRefused",
    "CopyResult",
    "Prepared",
    "SetupCommandResult",
    "copy_untracked",
    "exclude_from_git",
    "file_secrets",
    "prepare_worktree",
    "run_setup",
]

DEFAULT_SETUP_TIMEOUT = 30 * 60.0
"""Time limit of each set-up command (npm ci on a cold cache can take minutes)."""
TAIL_LINES = 40
"""Lines of a failed command's output kept in the attempt's reason."""
EXCLUDE_HEADER = "# orchestrate: files copied into worktrees (plan copy:)"

OnLines = Callable[[list[str]], Awaitable[None]]
Command = str | Sequence[str]


class CopyRefused(Exception):
    """A copy that must not happen (outside the repository, missing, tracked): its message,
    one line, is why the attempt cannot begin."""


@dataclass(frozen=True)
class CopyResult:
    """What :func:`copy_untracked` did."""

    copied: tuple[str, ...] = ()
    """Paths copied, relative to the worktree, ``/``-separated."""
    secrets: tuple[str, ...] = ()
    """Values found in them that the redaction must hide."""


@dataclass(frozen=True)
class SetupCommandResult:
    """One set-up command's outcome."""

    command: str
    exit_code: int | None
    duration: float
    tail: tuple[str, ...] = ()
    timed_out: bool = False
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None

    def describe(self) -> str:
        """One line: ``set-up `npm ci` failed (exit 1)``."""
        if self.ok:
            return f"set-up `{self.command}` passed"
        if self.timed_out:
            return f"set-up `{self.command}` timed out after {self.duration:.0f}s"
        if self.error:
            return f"set-up `{self.command}` could not run: {self.error}"
        return f"set-up `{self.command}` failed (exit {self.exit_code})"


@dataclass(frozen=True)
class Prepared:
    """The worktree's preparation: ok, or why not."""

    reason: str | None = None
    """Why the attempt fails: the first line says what, the rest is the command's output tail."""
    copied: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    commands: tuple[SetupCommandResult, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.reason is None


# -- secrets ------------------------------------------------------------------------------


def file_secrets(text: str) -> list[str]:
    """The values of ``KEY=VALUE`` lines (a dotenv file), at least SECRET_MIN_LEN long.

    ``export KEY=...``, quotes and a trailing `` # comment`` of an unquoted value
    are understood; a quoted value is also kept as written, quotes included.
    """
    found: set[str] = set()
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        if not key.strip() or " " in key.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            found.add(value)
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        found.add(value)
    return sorted(v for v in found if len(v) >= SECRET_MIN_LEN)


# -- git ---------------------------------------------------------------------------------


async def _git(cwd: Path, *args: str) -> tuple[int, str]:
    proc = await anyio.run_process(
        ["git", "-C", str(cwd), *args],
        stdin=subprocess.DEVNULL,
        check=False,
        env={**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"},
    )
    out = proc.stdout.decode(errors="replace") if proc.returncode == 0 else ""
    err = proc.stderr.decode(errors="replace").strip()
    return proc.returncode, out if proc.returncode == 0 else err


async def _tracked(worktree: Path, paths: Sequence[str]) -> list[str]:
    """Which of ``paths`` git tracks in ``worktree``."""
    if not paths:
        return []
    code, out = await _git(worktree, "ls-files", "-z", "--", *paths)
    if code != 0:
        raise CopyRefused(f"copy: git ls-files failed in {worktree}: {out.splitlines()[:1]}")
    return [p for p in out.split("\0") if p]


async def exclude_from_git(worktree: Path, paths: Sequence[str]) -> None:
    """Exclude ``paths`` (relative to the worktree) from git: lines in ``info/exclude``.

    Every worktree of a repository reads the same ``info/exclude``; the lines
    are anchored (``/.env``) and added once, under one header.
    """
    if not paths:
        return
    code, out = await _git(worktree, "rev-parse", "--git-path", "info/exclude")
    if code != 0:
        raise CopyRefused(f"copy: {worktree} is not a git worktree ({out.strip()})")
    exclude = Path(out.strip())
    if not exclude.is_absolute():
        exclude = worktree / exclude
    wanted = ["/" + p.lstrip("/") for p in paths]
    await anyio.to_thread.run_sync(_append_excludes, exclude, wanted)


def _append_excludes(exclude: Path, lines: Sequence[str]) -> None:
    exclude.parent.mkdir(parents=True, exist_ok=True)
    existing = exclude.read_text() if exclude.exists() else ""
    have = set(existing.splitlines())
    new = [line for line in dict.fromkeys(lines) if line not in have]
    if not new:
        return
    text = "" if not existing or existing.endswith("\n") else "\n"
    if EXCLUDE_HEADER not in have:
        text += EXCLUDE_HEADER + "\n"
    text += "".join(f"{line}\n" for line in new)
    with exclude.open("a") as fh:  # O_APPEND: concurrent teams' lines do not overwrite
        fh.write(text)


# -- copying -----------------------------------------------------------------------------


def _has_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _matches(source_root: Path, pattern: str) -> list[str]:
    """Files of ``source_root`` that ``pattern`` names (relative, ``/``-separated)."""
    rel = PurePosixPath(pattern.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or (rel.parts and rel.parts[0] == ".git"):
        raise CopyRefused(f"copy: {pattern!r} is not a path inside the repository")
    if not _has_glob(pattern):
        path = source_root / rel
        if not path.is_file():
            what = "a directory, not a file" if path.is_dir() else "not there"
            raise CopyRefused(f"copy: {pattern!r} is {what} in {source_root}")
        return [rel.as_posix()]
    files = sorted(
        f.relative_to(source_root).as_posix()
        for f in source_root.glob(str(rel))  # dotfiles match too (.env*)
        if f.is_file()
    )
    files = [f for f in files if not f.startswith((".git/", ".orchestrate/"))]
    return files


def _copy_one(source: Path, target: Path, worktree: Path) -> str:
    """Copy ``source`` to ``target`` (inside ``worktree``); returns the text read (for secrets)."""
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    if not parent.resolve().is_relative_to(worktree.resolve()):
        raise CopyRefused(f"copy: {target} leads outside the worktree (a symlink)")
    if target.is_symlink():
        target.unlink()
    data = source.read_bytes()  # through a symlink too: the user's own file
    tmp = parent / f".{target.name}.{token_hex(4)}.orchestrate-copy"  # one per writer
    tmp.write_bytes(data)
    shutil.copymode(source, tmp)
    tmp.replace(target)
    return data.decode("utf-8", errors="replace")


async def copy_untracked(source_root: Path, worktree: Path, patterns: Sequence[str]) -> CopyResult:
    """Copy ``patterns`` from the user's checkout into ``worktree``, excluded from git.

    Raises :class:`CopyRefused` for a path
    outside the repository, a literal path that is missing, or one git tracks.
    """
    if not patterns:
        return CopyResult()
    names: list[str] = []
    for pattern in patterns:
        names += await anyio.to_thread.run_sync(_matches, source_root, pattern)
    names = list(dict.fromkeys(names))
    tracked = await _tracked(worktree, names)
    if tracked:
        shown = ", ".join(tracked[:5])
        raise CopyRefused(f"copy: git tracks {shown}: copy: is for untracked files only")
    await exclude_from_git(worktree, names)
    secrets: set[str] = set()
    for name in names:
        text = await anyio.to_thread.run_sync(
            _copy_one, source_root / name, worktree / name, worktree
        )
        secrets.update(file_secrets(text))
    return CopyResult(copied=tuple(names), secrets=tuple(sorted(secrets)))


# -- set-up commands -----------------------------------------------------------------------


async def _run_one(
    worktree: Path,
    command: Command,
    *,
    env: Mapping[str, str],
    on_lines: OnLines,
    time_limit: float,
    redactor: Redactor,
    grace: float = 2.0,
) -> SetupCommandResult:
    text = command_text(command)
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    started = time.monotonic()
    await on_lines([redactor.redact(f"$ {text}")])
    tail: list[str] = []
    buffer = bytearray()

    async def emit(final: bool) -> None:
        *complete, rest = bytes(buffer).split(b"\n")
        if final and rest:
            complete, rest = [*complete, rest], b""
        buffer[:] = rest
        if complete:
            lines = redactor.redact_lines(
                line.decode("utf-8", errors="replace").rstrip("\r") for line in complete
            )
            tail.extend(lines)
            del tail[:-TAIL_LINES]
            await on_lines(lines)

    async def take(chunk: bytes) -> None:
        buffer.extend(chunk)
        await emit(False)

    try:
        code, timed_out = await run_in_group(
            argv, cwd=worktree, env=env, time_limit=time_limit, on_output=take, grace=grace
        )
    except OSError as exc:
        error = exc.strerror or str(exc)
        await on_lines([redactor.redact(f"set-up: {text}: {error}")])
        return SetupCommandResult(text, None, time.monotonic() - started, error=error)
    finally:
        with anyio.CancelScope(shield=True):
            await emit(True)
    return SetupCommandResult(
        text, code, time.monotonic() - started, tail=tuple(tail), timed_out=timed_out
    )


async def run_setup(
    worktree: Path,
    commands: Sequence[Command],
    *,
    env: Mapping[str, str],
    on_lines: OnLines,
    time_limit: float = DEFAULT_SETUP_TIMEOUT,
    redactor: Redactor | None = None,
) -> list[SetupCommandResult]:
    """Run ``commands`` in ``worktree`` one after another; stop at the first failure."""
    results: list[SetupCommandResult] = []
    for command in commands:
        result = await _run_one(
            worktree,
            command,
            env=env,
            on_lines=on_lines,
            time_limit=time_limit,
            redactor=redactor or Redactor(),
        )
        results.append(result)
        if not result.ok:
            break
    return results


async def prepare_worktree(
    source_root: Path,
    worktree: Path,
    *,
    copies: Sequence[str] = (),
    commands: Sequence[Command] = (),
    env: Mapping[str, str],
    on_lines: OnLines,
    time_limit: float = DEFAULT_SETUP_TIMEOUT,
    secrets: Sequence[str] = (),
) -> Prepared:
    """Copy, then set up, ``worktree``; the result says what was done or why it failed.

    ``secrets``: the values redacted so far (``Redactor.from_env`` and the
    store's); the copied files' values are added for the set-up's output and
    returned in :attr:`Prepared.secrets` for everything that follows (the
    agent's supervisor, log, events, the report).
    """
    base = Redactor(secrets)
    try:
        copied = await copy_untracked(source_root, worktree, copies)
    except CopyRefused as exc:
        await on_lines([base.redact(str(exc))])
        return Prepared(reason=base.redact(str(exc)))
    except OSError as exc:
        problem = f"copy: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        await on_lines([base.redact(problem)])
        return Prepared(reason=base.redact(problem))
    if copied.copied:
        await on_lines([f"copied into the worktree: {', '.join(copied.copied)}"])
    full = Redactor([*secrets, *copied.secrets]) if copied.secrets else base
    results = await run_setup(
        worktree, commands, env=env, on_lines=on_lines, time_limit=time_limit, redactor=full
    )
    failed = next((r for r in results if not r.ok), None)
    reason = "\n".join([failed.describe(), *failed.tail]) if failed is not None else None
    return Prepared(
        reason=reason, copied=copied.copied, secrets=copied.secrets, commands=tuple(results)
    )
