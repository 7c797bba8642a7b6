"""Runs: their ids and what is recorded when one starts.

A run id is ``<plan name>-<YYYYMMDD-HHMMSS>-<4 hex>`` (UTC), readable and
sortable. Creating a run records, in Redis and on disk, everything a later
``resume`` needs so it never depends on a plan file that was edited since:

* the plan's text (Redis meta ``plan_text`` and ``.orchestrate/runs/<run>/plan.yaml``)
  and its sha256;
* the base ref and the base commit every team starts from;
* the repository root and the plan file's path.

A finished run's git leftovers (its worktrees and team branches) stay until
:func:`clean_run` (``orchestrate clean``) removes them; the run's record, logs
and reports stay.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import OrchestrateError, UsageError
from orchestrator.gitops import BRANCH_PREFIX, Git, integration_branch, shared_branch
from orchestrator.paths import StateLayout
from orchestrator.plan.load import LoadedPlan, load_plan_text
from orchestrator.plan.models import Plan
from orchestrator.state.models import RunState
from orchestrator.state.status import RunStatus


def new_run_id(plan_name: str, *, now: datetime | None = None) -> str:
    """``<plan name>-<YYYYMMDD-HHMMSS>-<4 hex>``."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return f"{plan_name}-{stamp}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class RunInfo:
    """What a run was started from."""

    run_id: str
    loaded: LoadedPlan
    base_ref: str
    base_commit: str

    def meta(self) -> dict[str, str]:
        return {
            "plan_name": self.loaded.plan.name,
            "plan_path": str(self.loaded.path),
            "plan_sha256": self.loaded.sha256,
            "plan_text": self.loaded.text,
            "repo_root": str(self.loaded.repo_root),
            "base_ref": self.base_ref,
            "base_commit": self.base_commit,
            "isolation": self.loaded.plan.isolation,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "pid": str(os.getpid()),
        }


async def base_of(git: Git, loaded: LoadedPlan) -> tuple[str, str]:
    """The base ref (the plan's ``base``, else the current branch, else HEAD) and its commit."""
    ref = loaded.plan.base or await git.current_branch() or "HEAD"
    return ref, await git.rev_parse(ref)


def write_plan_copy(layout: StateLayout, run_id: str, text: str) -> Path:
    """Write the plan's text to ``runs/<run>/plan.yaml`` (readable by the user alone)."""
    path = layout.plan_copy(run_id)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


async def create_run(store: Any, layout: StateLayout, loaded: LoadedPlan, git: Git) -> RunInfo:
    """Make a new run: id, base commit, plan copy on disk and in Redis, teams pending."""
    ref, commit = await base_of(git, loaded)
    info = RunInfo(new_run_id(loaded.plan.name), loaded, ref, commit)
    write_plan_copy(layout, info.run_id, loaded.text)
    await store.create_run(
        info.run_id, meta=info.meta(), team_ids=[t.id for t in loaded.plan.teams]
    )
    return info


def plan_of_run(meta: Mapping[str, str], *, run_id: str) -> LoadedPlan:
    """The plan a run was started with, from its recorded copy (for ``resume``).

    UsageError when the run recorded none; PlanError when the copy no longer loads.
    The views (board, logs, report) use :func:`recorded_plan`, which says None instead.
    """
    text = meta.get("plan_text")
    path = meta.get("plan_path")
    if text is None or path is None:
        raise UsageError(f"run {run_id} has no recorded plan; it cannot be resumed")
    loaded = load_plan_text(text, path=Path(path), check_repo=False)
    root = meta.get("repo_root")
    return dataclasses.replace(loaded, repo_root=Path(root)) if root else loaded


def recorded_plan(run: RunState) -> Plan | None:
    """The plan ``run`` was started with, or None when it cannot be read: what the
    views (board, logs, report) show the run against; they show less without it."""
    try:
        return plan_of_run(run.meta, run_id=run.run_id).plan
    except (OrchestrateError, ValueError, OSError):
        return None


async def record_crash(store: Any, run_id: str, error: BaseException) -> None:
    """A run stopped by an unexpected error (a damaged state folder, an error no team could
    catch) must not stay ``running`` forever: mark it ``failed`` with the error as its
    reason; ``orchestrate resume`` can go on once the cause is fixed.

    Nothing for an interruption or a cancellation (they record their own end), nor when
    another orchestrator took the run over; errors while recording are swallowed (the
    original error is what the user must see).
    """
    import time

    import anyio

    from orchestrator.errors import LeaseHeldError, OrchestrateError, StaleEpochError

    if not isinstance(error, Exception) or isinstance(error, LeaseHeldError | StaleEpochError):
        return
    with anyio.CancelScope(shield=True):
        try:
            run = await store.get_run(run_id)
            if run.status not in RunStatus.LIVE:
                return
            await store.run_transition(
                run_id,
                RunStatus.FAILED,
                epoch=run.epoch,
                reason=f"stopped by an error: {error}",
                fields={"finished": repr(time.time())},
            )
        except OrchestrateError:
            pass


@dataclass(frozen=True)
class Cleaned:
    """What :func:`clean_run` removed and kept."""

    run_id: str
    worktrees: tuple[Path, ...]
    branches: tuple[str, ...]
    kept: tuple[str, ...]


async def clean_run(
    store: Any, layout: StateLayout, run_id: str, *, result_too: bool = False
) -> Cleaned:
    """Remove a finished run's worktrees (``worktrees/<run>/``) and team branches.

    The result branch (``orchestrate/<run>/integration``, or ``.../run`` of a
    shared run) is kept unless ``result_too``. UsageError for a run that is not
    finished (``RunStatus.FINAL``: nothing runs, and nothing is left to resume by
    accident) or that a live orchestrator holds. Safe to call twice.
    """
    import shutil

    from orchestrator.state.lease import live_holder

    run = await store.get_run(run_id)
    if run.status not in RunStatus.FINAL:
        raise UsageError(
            f"run {run_id} is {run.status}, not finished: `orchestrate resume {run_id}` "
            f"finishes it, `orchestrate cancel {run_id}` stops it"
        )
    holder = await live_holder(store, run_id)
    if holder is not None:
        raise UsageError(
            f"run {run_id} is being driven by a live orchestrator (pid {holder.pid} on "
            f"{holder.host}); clean it once that ends"
        )
    repo = run.meta.get("repo_root")
    if not repo:
        raise UsageError(f"run {run_id} has no recorded repository; nothing to clean")
    git = Git(Path(repo))
    folder = layout.root / "worktrees" / run_id
    removed = []
    for path in await git.worktrees_under(folder):
        await git.remove_worktree(path)
        removed.append(path)
    try:
        shutil.rmtree(folder)  # what git did not know (a half-made worktree)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise UsageError(f"cannot remove {folder}: {exc.strerror or exc}") from exc
    result = {integration_branch(run_id), shared_branch(run_id)}
    deleted, kept = [], []
    for branch in await git.list_branches(f"{BRANCH_PREFIX}/{run_id}/"):
        if branch in result and not result_too:
            kept.append(branch)
            continue
        await git.delete_branch(branch)
        deleted.append(branch)
    return Cleaned(run_id, tuple(removed), tuple(deleted), tuple(kept))
