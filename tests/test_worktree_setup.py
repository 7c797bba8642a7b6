"""A new worktree made ready: untracked files copied in (never committed), set-up commands run.

Real git worktrees (made as the engine makes them, with gitops.Git) and real
processes; nothing is mocked.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import anyio
import pytest

from orchestrator.gitops import Git
from orchestrator.run.worktree_setup import (
    EXCLUDE_HEADER,
    Prepared,
    file_secrets,
    prepare_worktree,
    run_setup,
)
from tests.support.gitrepo import GitRepo

ENV_FILE = "DATABASE_URL=postgres://app:hunter2-secret@db/app\nexport API_SIGNING=s3cr3t-value\n"


class Log:
    """What the team's log would receive."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, lines: list[str]) -> None:
        self.lines.extend(lines)


async def worktree(repo: GitRepo, name: str) -> Path:
    path = repo.path / ".orchestrate" / "worktrees" / name
    await Git(repo.path).add_worktree(path, f"orchestrate/r1/{name}", "main")
    return path


async def prepare(repo: GitRepo, wt: Path, log: Log, **kw: object) -> Prepared:
    kw.setdefault("env", dict(os.environ))
    return await prepare_worktree(repo.path, wt, on_lines=log, **kw)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_copied_env_file_is_there_and_never_committed(git_repo: GitRepo) -> None:
    """`.env` from the user's checkout lands in the worktree, unseen by git there, and a commit
    of everything (as orchestrate commits a team's work) leaves it out."""
    git_repo.state_layout()
    git_repo.write({".env": ENV_FILE, "config/local.json": '{"k": 1}\n'})
    before = git_repo.user_view()
    wt = await worktree(git_repo, "db")
    log = Log()
    result = await prepare(git_repo, wt, log, copies=[".env", "config/*.json"])
    assert result.ok, result.reason
    assert result.copied == (".env", "config/local.json")
    assert (wt / ".env").read_text() == ENV_FILE
    assert git_repo.git("status", "--porcelain", cwd=wt) == ""
    (wt / "work.txt").write_text("done\n")
    sha = await Git(git_repo.path).commit_all(wt, "team db")
    assert sha is not None
    assert git_repo.git("show", "--name-only", "--format=", sha) == "work.txt"
    # The user's checkout: same HEAD, branch and index; their .env untouched.
    after = git_repo.user_view()
    assert (after.head, after.branch, after.index) == (before.head, before.branch, before.index)
    assert (git_repo.path / ".env").read_text() == ENV_FILE
    assert any(".env" in line for line in log.lines)


@pytest.mark.anyio
async def test_copied_values_are_secrets_redacted_from_setup_output(git_repo: GitRepo) -> None:
    """The values in a copied .env are returned as secrets and masked in the set-up's output."""
    git_repo.write({".env": ENV_FILE})
    wt = await worktree(git_repo, "api")
    log = Log()
    result = await prepare(git_repo, wt, log, copies=[".env"], commands=["cat .env"])
    assert result.ok, result.reason
    assert "postgres://app:hunter2-secret@db/app" in result.secrets
    assert "s3cr3t-value" in result.secrets
    shown = "\n".join(log.lines)
    assert "DATABASE_URL=***" in shown and "API_SIGNING=***" in shown
    assert "hunter2" not in shown and "s3cr3t" not in shown


@pytest.mark.anyio
async def test_two_worktrees_share_one_exclude_block(git_repo: GitRepo) -> None:
    """Each copied path is excluded once, under one header, however many teams copy it."""
    git_repo.write({".env": ENV_FILE})
    for name in ("a", "b"):
        wt = await worktree(git_repo, name)
        assert (await prepare(git_repo, wt, Log(), copies=[".env"])).ok
    exclude = (git_repo.path / ".git" / "info" / "exclude").read_text().splitlines()
    assert exclude.count("/.env") == 1
    assert exclude.count(EXCLUDE_HEADER) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("copy", "words"),
    [
        ("README.md", "git tracks README.md"),
        (".env.missing", "'.env.missing' is not there"),
        ("../outside", "not a path inside the repository"),
        ("config", "a directory, not a file"),
    ],
)
async def test_a_copy_that_cannot_be_done_fails_the_attempt_with_why(
    git_repo: GitRepo, copy: str, words: str
) -> None:
    """A tracked file, a missing one, a path out of the repo, a directory: a one-line reason,
    and the set-up commands do not run."""
    (git_repo.path / "config").mkdir()
    wt = await worktree(git_repo, "t")
    marker = wt / "setup-ran"
    result = await prepare(git_repo, wt, Log(), copies=[copy], commands=[f"touch {marker}"])
    assert not result.ok
    assert result.reason is not None and words in result.reason
    assert "\n" not in result.reason
    assert not marker.exists()
    assert (git_repo.path / "README.md").read_text() == "# test repo\n"


@pytest.mark.anyio
async def test_a_glob_matching_nothing_is_fine(git_repo: GitRepo) -> None:
    """`.env.*` with no such files copies nothing and is not an error."""
    wt = await worktree(git_repo, "g")
    result = await prepare(git_repo, wt, Log(), copies=[".env.*"])
    assert result.ok and result.copied == ()


@pytest.mark.anyio
async def test_setup_runs_in_order_with_the_agents_env_output_to_the_log(
    git_repo: GitRepo,
) -> None:
    """Each command runs in the worktree with the given environment; its lines reach the log."""
    wt = await worktree(git_repo, "s")
    log = Log()
    env = dict(os.environ) | {"TEAM_FLAVOUR": "vanilla"}
    commands = [
        "echo one; pwd",
        [sys.executable, "-c", "import os; print('flavour', os.environ['TEAM_FLAVOUR'])"],
        "printf 'no newline at end'",
    ]
    result = await prepare(git_repo, wt, log, commands=commands, env=env)
    assert result.ok, result.reason
    assert [r.exit_code for r in result.commands] == [0, 0, 0]
    assert log.lines[:2] == ["$ echo one; pwd", "one"]
    assert log.lines[2].endswith("/.orchestrate/worktrees/s")  # pwd: the worktree
    assert "flavour vanilla" in log.lines
    assert log.lines[-1] == "no newline at end"


@pytest.mark.anyio
async def test_a_failing_setup_stops_and_its_output_is_the_reason(git_repo: GitRepo) -> None:
    """`npm ci` failing: later commands do not run; the reason names it and ends with its output."""
    wt = await worktree(git_repo, "f")
    later = wt / "later"
    commands = ["echo resolving; echo 'ERR! missing lockfile' >&2; exit 3", f"touch {later}"]
    result = await prepare(git_repo, wt, Log(), commands=commands)
    assert not result.ok
    assert result.reason is not None
    first, *tail = result.reason.splitlines()
    assert (
        first == "set-up `echo resolving; echo 'ERR! missing lockfile' >&2; exit 3` failed (exit 3)"
    )
    assert tail == ["resolving", "ERR! missing lockfile"]
    assert not later.exists()
    assert len(result.commands) == 1


@pytest.mark.anyio
async def test_a_missing_program_is_a_reason_not_a_crash(git_repo: GitRepo) -> None:
    """An argv whose program does not exist fails the set-up with a readable reason."""
    wt = await worktree(git_repo, "m")
    result = await prepare(git_repo, wt, Log(), commands=[["no-such-program-xyz", "install"]])
    assert not result.ok
    assert result.reason is not None and "could not run" in result.reason


@pytest.mark.anyio
async def test_a_setup_over_its_time_limit_is_killed_with_its_children(
    git_repo: GitRepo, tmp_path: Path
) -> None:
    """A hanging set-up ends at its limit, and so does what it started in the background."""
    wt = await worktree(git_repo, "h")
    pidfile = tmp_path / "child.pid"
    command = f"sleep 60 & echo $! > {pidfile}; echo started; wait"
    started = time.monotonic()
    result = await prepare(git_repo, wt, Log(), commands=[command], time_limit=1.0)
    assert time.monotonic() - started < 10
    assert not result.ok and result.commands[0].timed_out
    assert result.reason is not None and "timed out" in result.reason
    assert "started" in result.reason
    child = int(pidfile.read_text())
    with anyio.fail_after(5):
        while True:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            await anyio.sleep(0.05)


def test_file_secrets_reads_dotenv_values() -> None:
    """KEY=VALUE values (quoted, exported, with comments) are secrets; short ones and keys not."""
    text = (
        "# comment\n"
        "export TOKEN_A=abcdef123\n"
        'QUOTED="with spaces inside"\n'
        "SHORT=1\n"
        "PLAIN=value-here # trailing comment\n"
        "not a pair\n"
    )
    found = file_secrets(text)
    assert "abcdef123" in found
    assert "with spaces inside" in found
    assert "value-here" in found
    assert "1" not in found and "TOKEN_A" not in found


def test_a_cancelled_setup_leaves_no_process_behind(tmp_path: Path) -> None:
    """A run stopped (Ctrl-C) while a set-up command runs (`npm ci` spawning workers): the
    command's whole process group goes, its child included, and the lines it printed so far
    still reach the team's log."""
    pidfile = tmp_path / "pid"
    script = (
        "import subprocess, sys, time;"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(pidfile)!r}, 'w').write(str(c.pid));"
        "print('installing', flush=True);"
        "time.sleep(60)"
    )
    logged: list[str] = []

    async def on_lines(lines: list[str]) -> None:
        logged.extend(lines)

    async def stopped_midway() -> None:
        with anyio.move_on_after(1.5):
            await run_setup(
                tmp_path, [[sys.executable, "-c", script]], env=dict(os.environ), on_lines=on_lines
            )

    anyio.run(stopped_midway)
    assert "installing" in logged
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the cancelled set-up command's child process survived")
