"""The state folder (``.orchestrate/``) and where everything lives inside it.

::

    .orchestrate/
      redis/                      embedded server: socket, pid file, append-only file
      runs/<run>/plan.yaml        the plan as it was when the run started
      runs/<run>/logs/<team>.<attempt>.log      agent output (full, never capped)
      runs/<run>/logs/<team>.<attempt>.status   agent exit status (JSON, written atomically)
      runs/<run>/prompts/<team>.<attempt>.md    the prompt each attempt got
      runs/<run>/report.{md,json,html}
      worktrees/<run>/<team>      a team's git worktree (``shared``: worktrees/<run>/_shared)

The folder sits at the root of the plan's repository, is readable by the user
alone (0700) and is listed in ``.git/info/exclude`` so ``git status`` never
shows it. Only a folder orchestrate creates gets that mode: ``--state-dir`` on
an existing folder leaves its mode as it is (``--state-dir /tmp`` must not lock
other users out of ``/tmp``).

A damaged state folder (``.orchestrate`` or one of its folders replaced by a
file) is refused in one line (:class:`~orchestrator.errors.UsageError`) before
anything is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import UsageError

STATE_DIR_NAME = ".orchestrate"
SHARED_WORKTREE = "_shared"
INTEGRATION = "_integration"
"""The integration phase's pseudo-team: its worktree, log files and store name.
(A leading underscore: no plan team id can take it.)"""


def find_state_dir(start: Path | None = None) -> Path | None:
    """The nearest existing ``.orchestrate`` from ``start`` (default: cwd) upward; it may
    be damaged (a file): :meth:`StateLayout.check` says so."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / STATE_DIR_NAME
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return None


def default_state_dir(start: Path | None = None) -> Path:
    """An existing state folder upward from ``start``; else one at the git root, or at ``start``."""
    found = find_state_dir(start)
    if found is not None:
        return found
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder / STATE_DIR_NAME
    return here / STATE_DIR_NAME


def make_private_dir(path: Path) -> bool:
    """Create ``path`` (and its parents) readable by the user alone (0700); True if created.

    A folder that already exists keeps its mode: only what orchestrate creates is
    made private. Raises OSError (``FileExistsError`` when a file is in the way).
    """
    missing = [p for p in (path, *path.parents) if not p.exists() and not p.is_symlink()]
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path not in missing:
        if not path.is_dir():
            raise FileExistsError(f"{path} exists and is not a folder")
        return False
    path.chmod(0o700)  # mkdir's mode is masked by the umask
    return True


def _exclude_in_git(repo_root: Path) -> None:
    git_dir = repo_root / ".git"
    if not git_dir.is_dir():  # a worktree or submodule: .git is a file; nothing to do
        return
    exclude = git_dir / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    line = f"/{STATE_DIR_NAME}/"
    existing = exclude.read_text() if exclude.exists() else ""
    if line not in existing.splitlines():
        with exclude.open("a") as fh:
            if existing and not existing.endswith("\n"):
                fh.write("\n")
            fh.write(f"{line}\n")


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


@dataclass(frozen=True)
class StateLayout:
    """Paths inside one state folder. Pure: nothing is created until :meth:`ensure`."""

    root: Path

    def ensure(self) -> StateLayout:
        """Create the folder (0700 when new) and exclude it from git in the enclosing
        repository. UsageError when the folder, or a folder inside it, is not a folder."""
        self.check()
        try:
            make_private_dir(self.root)
            for folder in (self.root / "runs", self.root / "worktrees"):
                make_private_dir(folder)  # private even in a folder that is not (--state-dir)
            _exclude_in_git(self.root.parent)
        except OSError as exc:
            raise UsageError(f"cannot use the state folder {self.root}: {_why(exc)}") from exc
        return self

    def check(self) -> None:
        """UsageError when the state folder or one of its own folders exists but is not a
        folder (a damaged state folder); nothing is created."""
        for path in (self.root, self.redis_dir, self.root / "runs", self.root / "worktrees"):
            if (path.exists() or path.is_symlink()) and not path.is_dir():
                raise UsageError(
                    f"the state folder is damaged: {path} is not a folder "
                    "(move it away; orchestrate makes a new one)"
                )

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def plan_copy(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "plan.yaml"

    def logs_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "logs"

    def log_file(self, run_id: str, team: str, attempt: int) -> Path:
        return self.logs_dir(run_id) / f"{team}.{attempt}.log"

    def status_file(self, run_id: str, team: str, attempt: int) -> Path:
        return self.logs_dir(run_id) / f"{team}.{attempt}.status"

    def prompt_file(self, run_id: str, team: str, attempt: int) -> Path:
        return self.run_dir(run_id) / "prompts" / f"{team}.{attempt}.md"

    def report_file(self, run_id: str, fmt: str) -> Path:
        return self.run_dir(run_id) / f"report.{fmt}"

    def worktree(self, run_id: str, team: str) -> Path:
        return self.root / "worktrees" / run_id / team
