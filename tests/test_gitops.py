"""Git layer: worktrees, merges and commits in real repositories, never touching the user's."""

from __future__ import annotations

import shutil
from pathlib import Path

import anyio
import pytest

from orchestrator import gitops
from orchestrator.errors import GitError
from orchestrator.gitops import (
    Git,
    MergeResult,
    integration_branch,
    is_git_repo,
    repo_root,
    shared_branch,
    team_branch,
)
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.anyio

RUN = "demo-20260101-000000-abcd"
ORCH = "orchestrate <orchestrate@localhost>"


def wt(repo: GitRepo, team: str) -> Path:
    return repo.state_layout().worktree(RUN, team)


async def test_worktree_starts_from_the_base_commit(git_repo: GitRepo) -> None:
    """A team's worktree holds the base commit's files, on its own orchestrate/<run>/<team>."""
    git = Git(git_repo.path)
    base = await git.rev_parse("main")
    path = wt(git_repo, "db")
    await git.add_worktree(path, team_branch(RUN, "db"), base)

    assert (path / "README.md").read_text() == "# test repo\n"
    assert await git.head(path) == base
    assert git_repo.git("symbolic-ref", "--short", "HEAD", cwd=path) == f"orchestrate/{RUN}/db"
    assert await git.current_branch() == "main"
    assert git_repo.git("status", "--porcelain") == ""  # .orchestrate/ is excluded


async def test_upstream_branches_are_merged_in_dependency_order(git_repo: GitRepo) -> None:
    """A downstream team sees every upstream team's files, merged in the order given."""
    git = Git(git_repo.path)
    db, auth = team_branch(RUN, "db"), team_branch(RUN, "auth")
    git_repo.make_branch(db, {"src/db.js": "db\n"})
    git_repo.make_branch(auth, {"src/auth.js": "auth\n"})
    path = wt(git_repo, "api")
    await git.add_worktree(path, team_branch(RUN, "api"), "main")

    result = await git.merge(path, [db, auth], message="api: merge upstream {branch}")

    assert result == MergeResult(merged=(db, auth))
    assert result.ok
    assert (path / "src/db.js").read_text() == "db\n"
    assert (path / "src/auth.js").read_text() == "auth\n"
    subjects = git_repo.git("log", "--first-parent", "--format=%s", "-2", cwd=path).splitlines()
    assert subjects == [f"api: merge upstream {auth}", f"api: merge upstream {db}"]
    assert git_repo.author(team_branch(RUN, "api")) == ORCH

    head = await git.head(path)
    again = await git.merge(path, [db, auth], message="again {branch}")
    assert again.ok and await git.head(path) == head  # resume: no second merge commit


async def test_conflicting_upstream_merge_names_the_files_and_leaves_the_worktree_clean(
    git_repo: GitRepo,
) -> None:
    """Conflicting upstream branches fail the team naming branch and files; nothing half-merged."""
    git = Git(git_repo.path)
    a, b = team_branch(RUN, "a"), team_branch(RUN, "b")
    git_repo.make_branch(a, {"README.md": "from a\n", "a.txt": "a\n"})
    git_repo.make_branch(b, {"README.md": "from b\n", "b.txt": "b\n"})
    path = wt(git_repo, "c")
    await git.add_worktree(path, team_branch(RUN, "c"), "main")

    result = await git.merge(path, [a, b], message="merge {branch}")

    assert not result.ok
    assert result.merged == (a,)
    assert result.conflict_branch == b
    assert result.conflicts == ("README.md",)
    assert not result.in_progress
    assert "README.md" in str(result) and b in str(result)
    assert await git.changed_paths(path) == []
    assert await git.conflicted_paths(path) == []
    assert (path / "README.md").read_text() == "from a\n"
    assert not (path / "b.txt").exists()


async def test_commit_all_is_authored_by_orchestrate_without_any_user_identity(
    git_repo: GitRepo, git_env: Path
) -> None:
    """A user with no git identity still gets team commits, authored by orchestrate."""
    assert not (git_env / ".gitconfig").exists()
    git = Git(git_repo.path)
    path = wt(git_repo, "db")
    await git.add_worktree(path, team_branch(RUN, "db"), "main")
    git_repo.write({"src/new.js": "x\n", "README.md": "changed\n"}, cwd=path)
    (path / "gone.txt").write_text("")

    sha = await git.commit_all(path, "db: attempt 1 by agent a1")

    assert sha is not None and sha == git_repo.head(team_branch(RUN, "db"))
    assert git_repo.author(sha) == ORCH
    assert git_repo.committer(sha) == ORCH
    assert git_repo.git("log", "-1", "--format=%s", sha) == "db: attempt 1 by agent a1"
    assert set(await git.files_in(sha)) == {"README.md", "src/new.js", "gone.txt"}
    assert await git.changed_paths(path) == []
    assert await git.commit_all(path, "db: again") is None  # redo after a crash: no 2nd commit
    assert await git.head(path) == sha


async def test_nothing_to_commit_returns_none(git_repo: GitRepo) -> None:
    """A team that changed nothing produces no empty commit."""
    git = Git(git_repo.path)
    path = wt(git_repo, "db")
    await git.add_worktree(path, team_branch(RUN, "db"), "main")
    assert await git.commit_all(path, "nothing") is None
    assert await git.head(path) == await git.rev_parse("main")


async def test_the_users_branch_index_and_working_tree_are_never_touched(
    git_repo: GitRepo,
) -> None:
    """Worktrees, merges, commits, resets and removals leave the user's checkout as it was."""
    git_repo.git("checkout", "--quiet", "-b", "feature")
    git_repo.commit("feature work", {"feature.txt": "f\n"})
    git_repo.write({"README.md": "staged edit\n"})
    git_repo.git("add", "README.md")
    git_repo.write({"README.md": "unstaged edit\n", "scratch/notes.txt": "mine\n"})
    before = git_repo.user_view()
    assert before.status  # the user really has work in progress

    git = Git(git_repo.path)
    db = team_branch(RUN, "db")
    path_db = wt(git_repo, "db")
    await git.add_worktree(path_db, db, "main")
    git_repo.write({"db.txt": "db\n"}, cwd=path_db)
    await git.commit_all(path_db, "db done")
    path_int = wt(git_repo, "_integration")
    await git.add_worktree(path_int, integration_branch(RUN), "main")
    assert (await git.merge(path_int, [db], message="integrate {branch}")).ok
    await git.reset_hard(path_int, "main")
    await git.remove_worktree(path_db)
    await git.remove_worktree(path_int)

    assert git_repo.user_view() == before
    assert (git_repo.path / "scratch/notes.txt").read_text() == "mine\n"


async def test_changes_in_the_main_worktree_are_refused(git_repo: GitRepo) -> None:
    """Even a caller's mistake cannot commit, merge or reset in the user's own checkout."""
    git = Git(git_repo.path)
    git_repo.write({"mine.txt": "user file\n"})
    before = git_repo.user_view()
    with pytest.raises(GitError, match="refusing"):
        await git.commit_all(git_repo.path, "oops")
    with pytest.raises(GitError, match="refusing"):
        await git.reset_hard(git_repo.path, "HEAD")
    with pytest.raises(GitError, match="refusing"):
        await git.merge(git_repo.path, ["main"], message="oops")
    with pytest.raises(GitError, match="refusing"):
        await git.delete_branch("main")
    assert git_repo.user_view() == before


async def test_adding_a_worktree_again_is_idempotent_and_reattaches_a_deleted_one(
    git_repo: GitRepo,
) -> None:
    """Resume reuses a team's worktree, or re-attaches its branch if the folder was deleted."""
    git = Git(git_repo.path)
    branch = team_branch(RUN, "db")
    path = wt(git_repo, "db")
    await git.add_worktree(path, branch, "main")
    git_repo.write({"wip.txt": "in progress\n"}, cwd=path)
    await git.add_worktree(path, branch, "main")
    assert (path / "wip.txt").read_text() == "in progress\n"  # reused, not recreated

    sha = await git.commit_all(path, "db work")
    shutil.rmtree(path)
    await git.add_worktree(path, branch, "main")
    assert await git.head(path) == sha  # the existing branch, not a fresh one from main
    assert (path / "wip.txt").exists()

    with pytest.raises(GitError, match="already a worktree"):
        await git.add_worktree(path, team_branch(RUN, "other"), "main")
    junk = wt(git_repo, "junk")
    junk.mkdir(parents=True)
    (junk / "file").write_text("x")
    with pytest.raises(GitError, match="exists and is not one"):
        await git.add_worktree(junk, team_branch(RUN, "junk"), "main")


async def test_shared_isolation_worktree_commits_each_team_in_turn(git_repo: GitRepo) -> None:
    """In shared isolation every team's success becomes one commit on the run branch."""
    git = Git(git_repo.path)
    path = git_repo.state_layout().worktree(RUN, "_shared")
    await git.add_worktree(path, shared_branch(RUN), "main")
    git_repo.write({"db.txt": "db\n"}, cwd=path)
    first = await git.commit_all(path, "db")
    git_repo.write({"auth.txt": "auth\n"}, cwd=path)
    second = await git.commit_all(path, "auth")
    assert first and second and await git.is_ancestor(first, second)
    assert git_repo.head(shared_branch(RUN)) == second
    assert await git.files_in(shared_branch(RUN)) == ["README.md", "auth.txt", "db.txt"]


async def test_removing_a_worktree_twice_is_safe_and_keeps_the_branch(git_repo: GitRepo) -> None:
    """Cleanup removes the worktree (twice is fine) and keeps the branch with the result."""
    git = Git(git_repo.path)
    branch = team_branch(RUN, "db")
    path = wt(git_repo, "db")
    await git.add_worktree(path, branch, "main")
    git_repo.write({"dirty.txt": "uncommitted\n"}, cwd=path)

    await git.remove_worktree(path)
    await git.remove_worktree(path)

    assert not path.exists()
    assert str(path) not in git_repo.git("worktree", "list", "--porcelain")
    assert await git.branch_exists(branch)


async def test_eight_worktrees_added_at_once(git_repo: GitRepo) -> None:
    """Many teams starting together all get their worktree (git's own locks never collide)."""
    git = Git(git_repo.path)
    teams = [f"t{i}" for i in range(8)]

    async with anyio.create_task_group() as tg:
        for team in teams:
            tg.start_soon(git.add_worktree, wt(git_repo, team), team_branch(RUN, team), "main")

    assert await git.list_branches(f"orchestrate/{RUN}/") == sorted(
        team_branch(RUN, t) for t in teams
    )
    for team in teams:
        assert (wt(git_repo, team) / "README.md").exists()
    async with anyio.create_task_group() as tg:
        for team in teams:
            tg.start_soon(git.remove_worktree, wt(git_repo, team))
    assert git_repo.git("worktree", "list").count("\n") == 0  # only the main worktree left


async def test_conflict_left_in_place_for_a_resolver(git_repo: GitRepo) -> None:
    """A conflict can be left for a resolver; its markers are seen; its fix becomes the merge."""
    git = Git(git_repo.path)
    a, b = team_branch(RUN, "a"), team_branch(RUN, "b")
    git_repo.make_branch(a, {"README.md": "from a\n", "shared.py": "A = 1\n"})
    git_repo.make_branch(b, {"README.md": "from b\n", "shared.py": "B = 2\n"})
    path = wt(git_repo, "_integration")
    await git.add_worktree(path, integration_branch(RUN), "main")

    result = await git.merge(path, [a, b], message="integrate {branch}", abort_on_conflict=False)

    assert result.conflict_branch == b and result.in_progress
    assert result.conflicts == ("README.md", "shared.py")
    assert await git.conflicted_paths(path) == ["README.md", "shared.py"]
    assert await git.conflict_markers(path, result.conflicts) == ["README.md", "shared.py"]

    (path / "README.md").write_text("from a and b\n")  # the resolver fixes one file...
    assert await git.conflict_markers(path, result.conflicts) == ["shared.py"]
    (path / "shared.py").write_text("A = 1\nB = 2\n")  # ...then the other
    assert await git.conflict_markers(path, [*result.conflicts, "missing.txt"]) == []

    sha = await git.commit_all(path, f"integrate {b} (conflicts resolved)")
    assert sha is not None
    assert len(git_repo.git("log", "-1", "--format=%P", sha).split()) == 2  # a merge commit
    assert await git.is_ancestor(b, sha) and await git.is_ancestor(a, sha)
    assert await git.conflicted_paths(path) == []
    assert git_repo.author(sha) == ORCH


async def test_abort_merge_restores_a_clean_worktree(git_repo: GitRepo) -> None:
    """Without a resolver the integration gives up the merge and the worktree is clean again."""
    git = Git(git_repo.path)
    a, b = team_branch(RUN, "a"), team_branch(RUN, "b")
    git_repo.make_branch(a, {"README.md": "a\n"})
    git_repo.make_branch(b, {"README.md": "b\n"})
    path = wt(git_repo, "_integration")
    await git.add_worktree(path, integration_branch(RUN), "main")
    await git.merge(path, [a, b], message="m", abort_on_conflict=False)
    await git.abort_merge(path)
    await git.abort_merge(path)
    assert await git.changed_paths(path) == []
    assert (path / "README.md").read_text() == "a\n"


async def test_reset_hard_for_bisection(git_repo: GitRepo) -> None:
    """Bisection moves the integration worktree back to an earlier merge, dropping later files."""
    git = Git(git_repo.path)
    a, b = team_branch(RUN, "a"), team_branch(RUN, "b")
    git_repo.make_branch(a, {"a.txt": "a\n"})
    git_repo.make_branch(b, {"b.txt": "b\n"})
    path = wt(git_repo, "_integration")
    await git.add_worktree(path, integration_branch(RUN), "main")
    await git.merge(path, [a], message="m {branch}")
    after_a = await git.head(path)
    await git.merge(path, [b], message="m {branch}")
    (path / "test-output.log").write_text("junk\n")

    await git.reset_hard(path, after_a)

    assert await git.head(path) == after_a
    assert (path / "a.txt").exists() and not (path / "b.txt").exists()
    assert not (path / "test-output.log").exists()
    assert await git.is_ancestor(a, after_a) and not await git.is_ancestor(b, after_a)


async def test_changed_paths_sees_partial_edits(git_repo: GitRepo) -> None:
    """Modified, new (even in new folders), deleted and renamed files all count as changes."""
    git = Git(git_repo.path)
    git_repo.commit("more", {"old.txt": "old\n", "keep.txt": "k\n", "del.txt": "d\n"})
    path = wt(git_repo, "db")
    await git.add_worktree(path, team_branch(RUN, "db"), "main")
    assert await git.changed_paths(path) == []
    (path / "keep.txt").write_text("changed\n")
    git_repo.write({"deep/new dir/file.txt": "n\n"}, cwd=path)
    (path / "del.txt").unlink()
    git_repo.git("mv", "old.txt", "renamed.txt", cwd=path)

    assert await git.changed_paths(path) == [
        "deep/new dir/file.txt",
        "del.txt",
        "keep.txt",
        "old.txt",
        "renamed.txt",
    ]


async def test_branch_helpers(git_repo: GitRepo) -> None:
    """Branches are created idempotently, listed by prefix and deleted only when they are ours."""
    git = Git(git_repo.path)
    name = integration_branch(RUN)
    await git.create_branch(name, "main")
    await git.create_branch(name, "main")
    git_repo.commit("advance main", {"x.txt": "x\n"})
    with pytest.raises(GitError, match="already exists"):
        await git.create_branch(name, "main")
    assert await git.list_branches("orchestrate/") == [name]
    assert await git.list_branches() == ["main", name]
    await git.delete_branch(name)
    await git.delete_branch(name)
    assert not await git.branch_exists(name)


async def test_git_failures_are_one_line_git_errors(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing git command reaches the user as one line naming the command and git's reason."""
    git = Git(git_repo.path)
    with pytest.raises(GitError) as info:
        await git.rev_parse("no-such-branch")
    message = str(info.value)
    assert "\n" not in message
    assert "git rev-parse" in message and "exit 128" in message
    with pytest.raises(GitError, match="not a usable git ref"):
        await git.rev_parse("--output=/tmp/x")
    with pytest.raises(GitError):
        await git.add_worktree(wt(git_repo, "x"), team_branch(RUN, "x"), "no-such-base")
    path = wt(git_repo, "y")
    await git.add_worktree(path, team_branch(RUN, "y"), "main")
    with pytest.raises(GitError) as info:
        await git.merge(path, ["no-such-branch"], message="a long\n\nmulti-line message")
    assert "\n" not in str(info.value) and "no-such-branch" in str(info.value)
    (path / "README.md").write_text("edited\n")
    monkeypatch.setattr(gitops, "LOCK_RETRY_SECONDS", 0.3)  # fault: a lock that stays held
    lock = git_repo.path / ".git" / "refs" / "heads" / "orchestrate" / RUN / "y.lock"
    lock.write_text("")
    with pytest.raises(GitError) as info:
        await git.commit_all(path, "first line of a long message\n\nbody")
    message = str(info.value)
    assert "\n" not in message and "body" not in message
    assert "git commit" in message and "first line of a long message…" in message
    assert "File exists" in message


async def test_branch_lock_held_by_another_process_is_waited_out(git_repo: GitRepo) -> None:
    """A ref lock briefly held by another git process is waited out instead of failing."""
    git = Git(git_repo.path)
    name = team_branch(RUN, "locked")
    lock = git_repo.path / ".git" / "refs" / "heads" / "orchestrate" / RUN / "locked.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("")

    async def release() -> None:
        await anyio.sleep(0.3)
        lock.unlink()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release)
        await git.create_branch(name, "main")
    assert await git.branch_exists(name)


async def test_repo_helpers(git_repo: GitRepo, tmp_path: Path) -> None:
    """The tool finds the repository root from any folder inside it and knows a non-repository."""
    sub = git_repo.path / "a" / "b"
    sub.mkdir(parents=True)
    assert await repo_root(sub) == git_repo.path.resolve()
    assert await is_git_repo(sub)
    outside = tmp_path / "plain"
    outside.mkdir()
    assert not await is_git_repo(outside)
    assert not await is_git_repo(tmp_path / "missing")
    with pytest.raises(GitError):
        await repo_root(outside)


async def test_commits_ignore_the_users_hooks_and_merge_settings(
    git_repo: GitRepo, git_env: Path
) -> None:
    """A user's failing hooks, signing and ff-only settings cannot break or hang team commits."""
    (git_env / ".gitconfig").write_text(
        "[commit]\n\tgpgsign = true\n[gpg]\n\tprogram = false\n"
        "[merge]\n\tff = only\n[rerere]\n\tenabled = true\n"
    )
    a = team_branch(RUN, "a")
    git_repo.make_branch(a, {"a.txt": "a\n"})
    hooks = git_repo.path / ".git" / "hooks"
    marker = git_repo.path.parent / "hook-ran"
    for hook in ("pre-commit", "prepare-commit-msg", "commit-msg", "pre-merge-commit"):
        (hooks / hook).write_text(f"#!/bin/sh\necho {hook} >> '{marker}'\nexit 1\n")
        (hooks / hook).chmod(0o755)
    git = Git(git_repo.path)
    path = wt(git_repo, "b")
    await git.add_worktree(path, team_branch(RUN, "b"), "main")

    assert (await git.merge(path, [a], message="merge {branch}")).ok
    git_repo.write({"b.txt": "b\n"}, cwd=path)
    assert await git.commit_all(path, "b done") is not None
    assert not marker.exists()
    assert len(git_repo.git("log", "-2", "--format=%P", cwd=path).splitlines()[1].split()) == 2


async def test_changed_between_lists_what_a_branch_changed_since_it_forked(
    git_repo: GitRepo,
) -> None:
    """`changed_between(base, branch)` names the files the branch changed since it forked
    (not what the base did since): what the integration's conflict message names per team."""
    git = Git(git_repo.path)
    base = await git.rev_parse("main")
    db = team_branch(RUN, "db")
    git_repo.make_branch(db, {"src/db.js": "db\n", "a b.txt": "spaces\n"})
    git_repo.commit("main moves on", {"later.txt": "x\n"})
    assert await git.changed_between(base, db) == ["a b.txt", "src/db.js"]
    assert await git.changed_between("main", db) == ["a b.txt", "src/db.js"]
    assert await git.changed_between(db, db) == []
    with pytest.raises(GitError):
        await git.changed_between("--output=x", db)


async def test_a_fresh_worktree_says_so_and_a_reused_one_does_not(git_repo: GitRepo) -> None:
    """A team's worktree can start on its upstream team's branch tip; adding it again
    (a resume) reuses it and reports that it was not freshly created."""
    git = Git(git_repo.path)
    db = team_branch(RUN, "db")
    git_repo.make_branch(db, {"src/db.js": "db\n"})
    path = wt(git_repo, "api")
    assert await git.add_worktree(path, team_branch(RUN, "api"), db) is True
    assert (path / "src" / "db.js").read_text() == "db\n"
    assert await git.add_worktree(path, team_branch(RUN, "api"), "main") is False
    assert await git.head(path) == await git.rev_parse(db)


async def test_not_merged_names_the_branches_head_does_not_contain(git_repo: GitRepo) -> None:
    """Which upstream branches a resumed team still has to merge, in the order asked;
    a branch that does not exist is never taken for merged."""
    git = Git(git_repo.path)
    db, auth = team_branch(RUN, "db"), team_branch(RUN, "auth")
    git_repo.make_branch(db, {"src/db.js": "db\n"})
    git_repo.make_branch(auth, {"src/auth.js": "auth\n"})
    path = wt(git_repo, "api")
    await git.add_worktree(path, team_branch(RUN, "api"), db)
    gone = team_branch(RUN, "gone")
    assert await git.not_merged(path, [auth, db, gone]) == [auth, gone]
    assert await git.not_merged(path, []) == []
    await git.merge(path, [auth], message="merge {branch}")
    assert await git.not_merged(path, [db, auth]) == []


async def test_a_resolved_merge_with_no_change_is_still_committed(git_repo: GitRepo) -> None:
    """An agent that resolves a merge by keeping the worktree's side (no file differs
    from HEAD) still gets the merge concluded as a merge commit, not 'nothing to commit'."""
    git = Git(git_repo.path)
    a = team_branch(RUN, "a")
    git_repo.make_branch(a, {"README.md": "from a\n"})
    path = wt(git_repo, "_integration")
    await git.add_worktree(path, integration_branch(RUN), "main")
    (path / "README.md").write_text("ours\n")
    await git.commit_all(path, "ours")
    result = await git.merge(path, [a], message="integrate {branch}", abort_on_conflict=False)
    assert result.in_progress
    git_repo.git("checkout", "--ours", "README.md", cwd=path)
    git_repo.git("add", "README.md", cwd=path)
    sha = await git.commit_all(path, "integrate a (kept ours)")
    assert sha is not None
    assert len(git_repo.git("log", "-1", "--format=%P", sha).split()) == 2
