"""Git: worktrees, branches, merges and commits, without ever touching the user's work.

Every command runs as ``git`` with an argument list (``anyio.run_process``, never a
shell), stdin closed and an environment that makes git unable to wait for a
human: no terminal prompt, ``GIT_EDITOR=true``, merges with ``--no-edit``.

What orchestrate promises the user, and how this module keeps it:

- The user's branches, index and working tree are never changed. Nothing here
  checks out, resets, stashes or commits in the main worktree: every change
  happens in a linked worktree under ``.orchestrate/worktrees/`` (``merge``,
  ``commit_all``, ``reset_hard`` and ``abort_merge`` refuse the main worktree),
  and ``delete_branch`` refuses branches outside ``orchestrate/``.
- Commits are authored and committed by ``orchestrate <orchestrate@localhost>``
  whatever the user's git configuration says (or lacks), unsigned, and made
  without the repository's hooks (``--no-verify`` and, because that flag
  leaves ``prepare-commit-msg`` and ``post-*`` hooks running,
  ``core.hooksPath=/dev/null``): these are machine commits in orchestrate's
  own worktrees; the plan's ``checks`` are their quality gate, and a user's
  hook (linters that rewrite files, prompts read from ``/dev/tty``, slow test
  runs) would make them fail or hang for reasons no agent can see. The user's
  hooks run as usual when they merge the result into their own branches.
  ``git worktree add`` keeps the ``post-checkout`` hook (tools such as git-lfs
  rely on it to prepare a checkout).
- ``git gc --auto`` is off for our commands (``gc.auto=0``), so a background
  gc never takes the repository's locks while several teams work at once;
  ``rerere`` and signature checks are off so merges behave the same on every
  machine.

Concurrency: several teams add and remove worktrees in one repository at the
same time. Those commands share the main repository's administrative files, so
they are serialised with one ``anyio.Lock`` per repository (shared by every
``Git`` of that repository in this process), and any command that meets a
``*.lock: File exists`` from another process is retried briefly (tenacity).

Every failing command raises :class:`~orchestrator.errors.GitError` with one
line: the command, where it ran, its exit code and git's own first lines.

How the engine and the integration use it::

    git = Git(repo_root)                       # one per repository
    # isolation: worktree -- a team starts from the base plus its upstream work
    await git.add_worktree(layout.worktree(run, team), team_branch(run, team), base_sha)
    result = await git.merge(wt, [team_branch(run, u) for u in upstream_in_order],
                             message=f"{team}: merge upstream {{branch}}")
    if not result.ok: fail the team with str(result)   # worktree left clean
    sha = await git.commit_all(wt, "db: attempt 2 by agent a1b2")   # None: nothing changed
    # isolation: shared -- one worktree for the run, one commit per successful team
    await git.add_worktree(layout.worktree(run, SHARED_WORKTREE), shared_branch(run), base_sha)
    # integration -- leave conflicts for a resolver, then commit its work as the merge
    result = await git.merge(iwt, branches, message="integrate {branch}",
                             abort_on_conflict=False)
    await git.conflict_markers(iwt, result.conflicts)  # [] once resolved
"""

from __future__ import annotations

import os
import subprocess
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_delay,
    wait_random_exponential,
)

from orchestrator.errors import GitError

BRANCH_PREFIX = "orchestrate"
IDENTITY_NAME = "orchestrate"
IDENTITY_EMAIL = "orchestrate@localhost"
LOCK_RETRY_SECONDS = 10.0

# Config for every command we run: identity and signing for the commits we make,
# no auto-gc (it would take the repo's locks under concurrent teams).
_CONFIG: tuple[str, ...] = (
    "-c", f"user.name={IDENTITY_NAME}",
    "-c", f"user.email={IDENTITY_EMAIL}",
    "-c", "commit.gpgsign=false",
    "-c", "gc.auto=0",
    "-c", "maintenance.auto=false",
    "-c", "rerere.enabled=false",
    "-c", "merge.verifySignatures=false",
)  # fmt: skip
# For the commands that make commits: none of the repository's hooks (see above).
_NO_HOOKS: tuple[str, ...] = ("-c", "core.hooksPath=/dev/null")

# Inherited variables that would redirect git away from the repository we name.
_SCRUB = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_PREFIX",
    "GIT_NAMESPACE",
)

_CONFLICT_MARKERS = (b"<<<<<<<", b">>>>>>>")

_repo_locks: weakref.WeakValueDictionary[Path, anyio.Lock] = weakref.WeakValueDictionary()


def team_branch(run_id: str, team: str) -> str:
    """The branch of one team: ``orchestrate/<run>/<team>``."""
    return f"{BRANCH_PREFIX}/{run_id}/{team}"


def shared_branch(run_id: str) -> str:
    """The one branch of a run in ``shared`` isolation: ``orchestrate/<run>/run``."""
    return f"{BRANCH_PREFIX}/{run_id}/run"


def integration_branch(run_id: str) -> str:
    """The branch the integration phase merges into: ``orchestrate/<run>/integration``."""
    return f"{BRANCH_PREFIX}/{run_id}/integration"


@dataclass(frozen=True)
class MergeResult:
    """What :meth:`Git.merge` did.

    ``merged`` lists the branches merged, in order, before it stopped. On a
    conflict ``conflict_branch`` names the branch that conflicted and
    ``conflicts`` the conflicted paths; ``in_progress`` is true when the merge
    was left in place for a resolver (``abort_on_conflict=False``), false when
    it was aborted and the worktree is clean again.
    """

    merged: tuple[str, ...]
    conflict_branch: str | None = None
    conflicts: tuple[str, ...] = ()
    in_progress: bool = False

    @property
    def ok(self) -> bool:
        return self.conflict_branch is None

    def __str__(self) -> str:
        if self.ok:
            return f"merged {', '.join(self.merged) or 'nothing'}"
        return f"merging {self.conflict_branch} conflicts in {', '.join(self.conflicts)}"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_EDITOR="true",
        GIT_SEQUENCE_EDITOR="true",
        GIT_MERGE_AUTOEDIT="no",
        GIT_ASKPASS="true",
        GIT_AUTHOR_NAME=IDENTITY_NAME,
        GIT_AUTHOR_EMAIL=IDENTITY_EMAIL,
        GIT_COMMITTER_NAME=IDENTITY_NAME,
        GIT_COMMITTER_EMAIL=IDENTITY_EMAIL,
        LC_ALL="C",  # git's messages in English: we read them (lock errors)
        LANGUAGE="C",
    )
    return env


def _first_lines(data: bytes, count: int = 3) -> str:
    lines = [ln.strip() for ln in data.decode(errors="replace").splitlines() if ln.strip()]
    return " / ".join(lines[:count])


def _show(args: Sequence[str]) -> str:
    """The command for an error message: one line, long arguments (commit messages) cut."""
    shown = []
    for arg in args:
        first = arg.splitlines()[0] if arg else arg
        shown.append(first[:60] + "…" if first != arg or len(first) > 60 else arg)
    return "git " + " ".join(shown)


def _is_lock_contention(exc: BaseException) -> bool:
    # git: "Unable to create '<path>.lock': File exists." (LC_ALL=C keeps it English)
    return isinstance(exc, GitError) and ".lock': File exists" in str(exc)


async def _resolve(path: Path) -> Path:
    return Path(await anyio.Path(path).resolve())


def _check_ref(ref: str) -> str:
    if not ref or ref.startswith("-"):
        raise GitError(f"not a usable git ref: {ref!r}")
    return ref


async def _run(
    args: Sequence[str], *, cwd: Path, ok_codes: Sequence[int] = (0,), hooks: bool = True
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git -C cwd ARGS``; raise GitError unless the exit code is in ``ok_codes``.

    Retries (briefly) when another git process holds one of the repository's locks:
    git takes the lock before changing anything, so the failed attempt did nothing.
    """
    argv = ["git", *_CONFIG, *(() if hooks else _NO_HOOKS), "-C", str(cwd), *args]
    shown = _show(args)

    async def once() -> subprocess.CompletedProcess[bytes]:
        try:
            proc = await anyio.run_process(argv, stdin=subprocess.DEVNULL, check=False, env=_env())
        except OSError as exc:
            raise GitError(f"{shown} could not run in {cwd}: {exc}") from exc
        if proc.returncode not in ok_codes:
            said = _first_lines(proc.stderr) or _first_lines(proc.stdout)
            raise GitError(f"{shown} failed in {cwd} (exit {proc.returncode}): {said}")
        return proc

    retrying = AsyncRetrying(
        retry=retry_if_exception(_is_lock_contention),
        stop=stop_after_delay(LOCK_RETRY_SECONDS),
        wait=wait_random_exponential(multiplier=0.05, max=0.5),
        reraise=True,
    )
    return await retrying(once)


async def _out(args: Sequence[str], *, cwd: Path) -> str:
    return (await _run(args, cwd=cwd)).stdout.decode(errors="replace").strip()


async def repo_root(path: Path) -> Path:
    """The top of the work tree holding ``path`` (raises GitError outside a repository)."""
    return await _resolve(Path(await _out(["rev-parse", "--show-toplevel"], cwd=path)))


async def is_git_repo(path: Path) -> bool:
    """Whether ``path`` is inside a git work tree."""
    if not await anyio.Path(path).is_dir():
        return False
    try:
        return await _out(["rev-parse", "--is-inside-work-tree"], cwd=path) == "true"
    except GitError:
        return False


class Git:
    """One repository: its branches, its linked worktrees, merges and commits in them."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo.resolve()
        lock = _repo_locks.get(self.repo)
        if lock is None:
            lock = anyio.Lock()
            _repo_locks[self.repo] = lock
        self._lock = lock  # strong reference: the lock lives as long as any Git of this repo
        self._linked: set[Path] = set()

    def __repr__(self) -> str:
        return f"Git({str(self.repo)!r})"

    # -- refs ---------------------------------------------------------------

    async def current_branch(self) -> str | None:
        """The branch checked out in the main worktree, None when HEAD is detached."""
        proc = await _run(
            ["symbolic-ref", "--quiet", "--short", "HEAD"], cwd=self.repo, ok_codes=(0, 1)
        )
        return proc.stdout.decode().strip() or None

    async def rev_parse(self, ref: str) -> str:
        """The full commit sha ``ref`` names."""
        return await _out(["rev-parse", "--verify", f"{_check_ref(ref)}^{{commit}}"], cwd=self.repo)

    async def head(self, worktree: Path) -> str:
        """The commit checked out in ``worktree``."""
        return await _out(["rev-parse", "--verify", "HEAD"], cwd=worktree)

    async def branch_exists(self, name: str) -> bool:
        proc = await _run(
            ["show-ref", "--verify", "--quiet", f"refs/heads/{_check_ref(name)}"],
            cwd=self.repo,
            ok_codes=(0, 1),
        )
        return proc.returncode == 0

    async def list_branches(self, prefix: str = "") -> list[str]:
        """Local branch names starting with ``prefix`` (a plain string prefix), sorted."""
        out = await _out(
            ["for-each-ref", "--format=%(refname:short)", "refs/heads/"], cwd=self.repo
        )
        return sorted(b for b in out.splitlines() if b.startswith(prefix))

    async def create_branch(self, name: str, start: str) -> None:
        """Create ``name`` at ``start``; a no-op when it already points there."""
        if await self.branch_exists(name):
            if await self.rev_parse(name) == await self.rev_parse(start):
                return
            raise GitError(f"branch {name} already exists at another commit than {start}")
        await _run(["branch", "--no-track", _check_ref(name), _check_ref(start)], cwd=self.repo)

    async def delete_branch(self, name: str) -> None:
        """Delete one of orchestrate's branches; a no-op when it does not exist."""
        if not name.startswith(f"{BRANCH_PREFIX}/"):
            raise GitError(f"refusing to delete {name}: not a branch orchestrate made")
        if await self.branch_exists(name):
            await _run(["branch", "-D", name], cwd=self.repo)

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether ``ancestor`` is reachable from ``descendant`` (a commit is its own ancestor)."""
        proc = await _run(
            ["merge-base", "--is-ancestor", _check_ref(ancestor), _check_ref(descendant)],
            cwd=self.repo, ok_codes=(0, 1),
        )  # fmt: skip
        return proc.returncode == 0

    async def not_merged(self, worktree: Path, branches: Sequence[str]) -> list[str]:
        """Those of ``branches`` (in the given order) whose tip is not an ancestor of
        ``worktree``'s HEAD, found with one ``git for-each-ref --merged`` for all of
        them (a branch that does not exist counts as not merged)."""
        if not branches:
            return []
        refs = [f"refs/heads/{_check_ref(b)}" for b in branches]
        out = await _out(
            ["for-each-ref", "--merged=HEAD", "--format=%(refname)", *refs], cwd=worktree
        )
        merged = set(out.splitlines())
        return [b for b, ref in zip(branches, refs, strict=True) if ref not in merged]

    async def files_in(self, ref: str) -> list[str]:
        """Every file path in the tree of ``ref``."""
        proc = await _run(["ls-tree", "-r", "--name-only", "-z", _check_ref(ref)], cwd=self.repo)
        return [p for p in proc.stdout.decode(errors="replace").split("\0") if p]

    async def changed_between(self, a: str, b: str) -> list[str]:
        """The paths ``b`` changed since it forked from ``a`` (``git diff a...b``), sorted."""
        proc = await _run(
            ["diff", "--name-only", "-z", f"{_check_ref(a)}...{_check_ref(b)}"], cwd=self.repo
        )
        return sorted(p for p in proc.stdout.decode(errors="replace").split("\0") if p)

    # -- worktrees ----------------------------------------------------------

    async def _worktrees(self) -> dict[Path, dict[str, str]]:
        """Registered worktrees: resolved path -> porcelain attributes."""
        out = await _out(["worktree", "list", "--porcelain"], cwd=self.repo)
        found: dict[Path, dict[str, str]] = {}
        for block in out.split("\n\n"):
            attrs = dict([*ln.split(" ", 1), ""][:2] for ln in block.splitlines() if ln)
            if "worktree" in attrs:
                found[await _resolve(Path(attrs["worktree"]))] = attrs
        return found

    async def add_worktree(self, path: Path, branch: str, start: str) -> bool:
        """A worktree at ``path`` on ``branch`` (created at ``start`` if new). Idempotent.

        Returns True when this call created ``branch`` at ``start`` (a fresh
        worktree), False when it reused what was there. Resume-safe: a worktree
        already there on ``branch`` is reused; a branch whose worktree was
        deleted is re-attached as it is (``start`` ignored). A path holding
        something else, or a file where a folder on the way should be (a damaged
        state folder), raises GitError.
        """
        try:
            return await self._add_worktree(path, branch, start)
        except OSError as exc:
            raise GitError(f"cannot make a worktree at {path}: {exc.strerror or exc}") from exc

    async def _add_worktree(self, path: Path, branch: str, start: str) -> bool:
        path = await _resolve(path)
        folder = anyio.Path(path)
        _check_ref(branch)
        async with self._lock:
            if not await folder.exists():
                # The common case (a fresh team): one git process. Anything unusual
                # (the branch exists, the path is registered) takes the careful way.
                fresh = await _run(
                    ["worktree", "add", "--no-track", "-b", branch, str(path), _check_ref(start)],
                    cwd=self.repo, ok_codes=range(256),
                )  # fmt: skip
                if fresh.returncode == 0:
                    self._linked.add(path)
                    return True
            known = (await self._worktrees()).get(path)
            if known is not None and "prunable" not in known and await folder.is_dir():
                on = known.get("branch", "").removeprefix("refs/heads/")
                if on == branch:
                    self._linked.add(path)
                    return False
                raise GitError(
                    f"{path} is already a worktree on {on or 'a detached HEAD'}, not {branch}"
                )
            if known is not None:  # registered but its folder is gone
                await _run(["worktree", "prune"], cwd=self.repo)
            if await folder.exists():
                if await folder.is_dir() and not [p async for p in folder.iterdir()]:
                    await folder.rmdir()
                else:
                    raise GitError(f"cannot make a worktree at {path}: it exists and is not one")
            await folder.parent.mkdir(parents=True, exist_ok=True)
            created = not await self.branch_exists(branch)
            if created:
                await _run(
                    ["worktree", "add", "--no-track", "-b", branch, str(path), _check_ref(start)],
                    cwd=self.repo,
                )
            else:
                await _run(["worktree", "add", str(path), branch], cwd=self.repo)
            self._linked.add(path)
            return created

    async def worktrees_under(self, folder: Path) -> list[Path]:
        """The registered worktrees inside ``folder`` (resolved paths), sorted."""
        root = await _resolve(folder)
        return sorted(p for p in await self._worktrees() if p != root and p.is_relative_to(root))

    async def remove_worktree(self, path: Path) -> None:
        """Remove the worktree at ``path`` (its branch stays). Safe to call twice."""
        try:
            await self._remove_worktree(path)
        except OSError as exc:
            raise GitError(f"cannot remove the worktree {path}: {exc.strerror or exc}") from exc

    async def _remove_worktree(self, path: Path) -> None:
        path = await _resolve(path)
        async with self._lock:
            if path in await self._worktrees() and await anyio.Path(path).is_dir():
                await _run(["worktree", "remove", "--force", "--force", str(path)], cwd=self.repo)
            await _run(["worktree", "prune"], cwd=self.repo)
            self._linked.discard(path)

    async def _require_linked(self, worktree: Path) -> Path:
        """Refuse to change the main worktree (the user's): only linked worktrees."""
        if worktree in self._linked:  # the path add_worktree made (already resolved)
            return worktree
        worktree = await _resolve(worktree)
        if worktree in self._linked:
            return worktree
        out = await _out(["rev-parse", "--absolute-git-dir", "--git-common-dir"], cwd=worktree)
        git_dir, common = out.splitlines()
        if await _resolve(Path(git_dir)) == await _resolve(worktree / common):
            raise GitError(f"refusing to change {worktree}: it is not a worktree orchestrate made")
        self._linked.add(worktree)
        return worktree

    # -- changes in a worktree ---------------------------------------------

    async def merge(
        self,
        worktree: Path,
        branches: Sequence[str],
        *,
        message: str,
        abort_on_conflict: bool = True,
    ) -> MergeResult:
        """Merge ``branches`` into ``worktree`` one at a time (``--no-ff``), in order.

        ``message`` is each merge commit's message; ``{branch}`` in it is replaced
        by the branch being merged. A branch already contained is skipped by git
        (no empty merge commit), so repeating a merge after a crash is harmless.
        On a conflict the merge stops: with ``abort_on_conflict`` it is aborted
        (worktree clean again), otherwise it is left in place for a resolver,
        whose work :meth:`commit_all` then commits as the merge commit.
        """
        worktree = await self._require_linked(worktree)
        merged: list[str] = []
        for branch in branches:
            text = message.replace("{branch}", branch)
            proc = await _run(
                ["merge", "--no-ff", "--no-edit", "--no-verify", "-m", text, _check_ref(branch)],
                cwd=worktree, ok_codes=(0, 1), hooks=False,
            )  # fmt: skip
            if proc.returncode == 0:
                merged.append(branch)
                continue
            conflicts = await self._unmerged(worktree)
            if not conflicts:  # failed for another reason (e.g. local changes in the way)
                said = _first_lines(proc.stderr) or _first_lines(proc.stdout)
                if await self._merging(worktree):
                    await _run(["merge", "--abort"], cwd=worktree)
                raise GitError(f"git merge {branch} failed in {worktree}: {said}")
            if abort_on_conflict:
                await _run(["merge", "--abort"], cwd=worktree)
            return MergeResult(tuple(merged), branch, tuple(conflicts), not abort_on_conflict)
        return MergeResult(tuple(merged))

    async def abort_merge(self, worktree: Path) -> None:
        """Abort a merge in progress in ``worktree``; a no-op when none is."""
        worktree = await self._require_linked(worktree)
        if await self._merging(worktree):
            await _run(["merge", "--abort"], cwd=worktree)

    async def _merging(self, worktree: Path) -> bool:
        """Whether a merge is in progress: MERGE_HEAD in the worktree's git dir.

        A linked worktree's ``.git`` is a file naming its git dir, so this is
        read from the file system; git is asked only when that fails.
        """
        # Two tiny local reads: inline, cheaper than two hops to a worker thread.
        try:
            text = (worktree / ".git").read_text()
        except OSError:
            text = ""
        if text.startswith("gitdir: "):
            git_dir = Path(text[len("gitdir: ") :].strip())
            return (worktree / git_dir / "MERGE_HEAD").exists()
        proc = await _run(
            ["rev-parse", "-q", "--verify", "MERGE_HEAD"], cwd=worktree, ok_codes=(0, 1)
        )
        return proc.returncode == 0

    async def _unmerged(self, worktree: Path) -> list[str]:
        proc = await _run(["diff", "--name-only", "-z", "--diff-filter=U"], cwd=worktree)
        return sorted({p for p in proc.stdout.decode(errors="replace").split("\0") if p})

    async def conflicted_paths(self, worktree: Path) -> list[str]:
        """Paths git still records as unmerged in ``worktree``."""
        return await self._unmerged(worktree)

    async def conflict_markers(self, worktree: Path, paths: Sequence[str]) -> list[str]:
        """Those of ``paths`` whose file still holds a ``<<<<<<<``/``>>>>>>>`` marker line."""
        holding: list[str] = []
        for rel in paths:
            file = worktree / rel
            try:
                data = await anyio.Path(file).read_bytes()
            except (FileNotFoundError, IsADirectoryError):
                continue
            except OSError as exc:
                raise GitError(f"cannot read {file}: {exc}") from exc
            if any(ln.startswith(_CONFLICT_MARKERS) for ln in data.splitlines()):
                holding.append(rel)
        return holding

    async def changed_paths(self, worktree: Path) -> list[str]:
        """Every path changed, added, deleted or untracked in ``worktree``, sorted."""
        proc = await _run(["status", "--porcelain=v1", "-z", "--untracked-files=all"], cwd=worktree)
        entries = proc.stdout.decode(errors="replace").split("\0")
        paths: set[str] = set()
        i = 0
        while i < len(entries):
            entry = entries[i]
            i += 1
            if len(entry) < 4:
                continue
            paths.add(entry[3:])
            if entry[0] in "RC":  # a rename/copy: the next entry is its source
                paths.add(entries[i])
                i += 1
        return sorted(paths)

    async def commit_all(self, worktree: Path, message: str) -> str | None:
        """Commit everything in ``worktree`` (``git add -A``) as orchestrate.

        Returns the new commit's sha, or None when there was nothing to commit:
        a clean tree is never committed again, so redoing a commit after a crash
        creates no second commit. A merge left in progress (resolved by an
        agent) is concluded as the merge commit: check :meth:`conflict_markers`
        first, since ``git add -A`` takes the files as they are.
        """
        worktree = await self._require_linked(worktree)
        status = await _run(["status", "--porcelain", "-z"], cwd=worktree)
        merging = await self._merging(worktree)
        if not status.stdout and not merging:
            return None  # the common case of an agent that changed nothing: one git process
        await _run(["add", "-A"], cwd=worktree)
        done = await _run(
            ["commit", "--quiet", "--no-verify", "-m", message],
            cwd=worktree, hooks=False, ok_codes=(0, 1),
        )  # fmt: skip
        if done.returncode != 0:
            if not merging and b"nothing" in done.stdout + done.stderr:
                return None  # only changes git does not commit (an empty directory, ...)
            said = _first_lines(done.stderr) or _first_lines(done.stdout)
            raise GitError(f"git commit failed in {worktree} (exit {done.returncode}): {said}")
        return await self.head(worktree)

    async def reset_hard(self, worktree: Path, ref: str, *, clean: bool = True) -> None:
        """Move ``worktree``'s branch to ``ref`` and its files with it (bisection).

        Drops a merge in progress; with ``clean`` also removes untracked files
        (ignored ones stay).
        """
        worktree = await self._require_linked(worktree)
        await _run(["reset", "--quiet", "--hard", _check_ref(ref)], cwd=worktree)
        if clean:
            await _run(["clean", "-fdq"], cwd=worktree)
