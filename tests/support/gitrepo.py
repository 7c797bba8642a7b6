"""Test support: real git repositories in ``tmp_path``.

Registered for every test by the root ``conftest.py``. What you get:

``git_env`` (fixture)
    Isolates git from the machine it runs on: ``HOME`` and ``XDG_CONFIG_HOME``
    point into ``tmp_path``, system config is off (``GIT_CONFIG_NOSYSTEM``), and
    identity/redirect variables (``GIT_AUTHOR_*``, ``GIT_COMMITTER_*``,
    ``GIT_DIR``, ...) are removed. So the "user" has no git identity at all:
    anything orchestrate commits must bring its own.

``git_repo`` (fixture, uses ``git_env``) -> :class:`GitRepo`
    A repository at ``tmp_path / "repo"`` on branch ``main`` with one commit
    holding ``README.md``. An embedded server a test left running in its
    ``.orchestrate/`` (``orchestrate run`` without ``--redis-url``) is stopped
    at teardown. Its helpers run git synchronously (fine in tests)::

        git_repo.path                          # Path of the main worktree
        git_repo.git("log", "--oneline")       # run git, return stdout stripped
        git_repo.write({"a.txt": "x\\n"})      # write files (dirs created) in the main worktree
        git_repo.commit("msg", {"a.txt": "x"}) # write + add + commit on the current branch -> sha
        git_repo.make_branch("feat", {"f.txt": "f"}, start="main")
                                               # a branch with one more commit, made in a
                                               # throwaway worktree: the main worktree is untouched
        git_repo.head()                        # sha of HEAD (or of a worktree with cwd=)
        git_repo.user_view()                   # HEAD, branch, index and status of the main
                                               # worktree: compare before/after to prove
                                               # orchestrate never touched the user's work
        git_repo.author("ref")                 # "name <email>" of a commit's author
        git_repo.state_layout()                # StateLayout for repo/.orchestrate, ensured
                                               # (excluded in .git/info/exclude like a real run)

Commits made by these helpers carry the identity ``Test <test@example.com>``
on their own command line; nothing is written to any git config.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.paths import StateLayout
from tests.support.redis import stop_embedded

TEST_IDENTITY = ("-c", "user.name=Test", "-c", "user.email=test@example.com")
_GIT_VARS = (
    "GIT_AUTHOR_NAME",
    "GIT_AUTHOR_EMAIL",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_NAME",
    "GIT_COMMITTER_EMAIL",
    "GIT_COMMITTER_DATE",
    "EMAIL",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_CONFIG",
    "GIT_CONFIG_GLOBAL",
    "GIT_CONFIG_COUNT",
)


@dataclass(frozen=True)
class UserView:
    """What the user sees of their repository: must be identical before and after a run."""

    head: str
    branch: str
    index: str
    status: str


@dataclass(frozen=True)
class GitRepo:
    """A real repository in tmp_path with synchronous helpers (see the module docstring)."""

    path: Path

    def git(self, *args: str, cwd: Path | None = None) -> str:
        proc = subprocess.run(
            ["git", *TEST_IDENTITY, "-c", "commit.gpgsign=false", *args],
            cwd=cwd or self.path,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def write(self, files: Mapping[str, str], *, cwd: Path | None = None) -> None:
        root = cwd or self.path
        for rel, text in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)

    def commit(
        self, message: str, files: Mapping[str, str] | None = None, *, cwd: Path | None = None
    ) -> str:
        if files:
            self.write(files, cwd=cwd)
        self.git("add", "-A", cwd=cwd)
        self.git("commit", "--quiet", "--no-verify", "-m", message, cwd=cwd)
        return self.head(cwd=cwd)

    def make_branch(self, name: str, files: Mapping[str, str], *, start: str = "main") -> str:
        where = self.path.parent / f"_scratch-{name.replace('/', '_')}"
        self.git("worktree", "add", "--quiet", "-b", name, str(where), start)
        try:
            return self.commit(f"{name}: add {', '.join(files)}", files, cwd=where)
        finally:
            self.git("worktree", "remove", "--force", str(where))

    def head(self, ref: str = "HEAD", *, cwd: Path | None = None) -> str:
        return self.git("rev-parse", ref, cwd=cwd)

    def author(self, ref: str = "HEAD") -> str:
        return self.git("log", "-1", "--format=%an <%ae>", ref)

    def committer(self, ref: str = "HEAD") -> str:
        return self.git("log", "-1", "--format=%cn <%ce>", ref)

    def user_view(self) -> UserView:
        return UserView(
            head=self.head(),
            branch=self.git("symbolic-ref", "--short", "HEAD"),
            index=self.git("ls-files", "--stage"),
            status=self.git("status", "--porcelain", "--untracked-files=all"),
        )

    def state_layout(self) -> StateLayout:
        return StateLayout(self.path / ".orchestrate").ensure()


@pytest.fixture
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A HOME without any git configuration (no identity); yields that HOME."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in _GIT_VARS:
        monkeypatch.delenv(var, raising=False)
    yield home


@pytest.fixture
def git_repo(tmp_path: Path, git_env: Path) -> Iterator[GitRepo]:
    """A repository on ``main`` with one commit (``README.md``), in tmp_path/repo.

    An embedded server the test started in it (``orchestrate run`` without
    ``--redis-url``) is stopped afterwards, even when the test failed."""
    path = tmp_path / "repo"
    path.mkdir()
    repo = GitRepo(path)
    repo.git("init", "--quiet", "-b", "main")
    repo.commit("initial", {"README.md": "# test repo\n"})
    yield repo
    stop_embedded(path / ".orchestrate")
