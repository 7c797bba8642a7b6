"""What a host actor is asked and what it keeps on its node's disk.

:class:`HostRequest` is what the ray executor sends a host for each call about
one attempt; :class:`NodeRecord` is that attempt's record on the node
(``<root>/runs/<run>/attempts/<team>.<n>.json``, write + rename), written
before the agent starts and after each phase: what a restarted host re-adopts.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from orchestrator.run.executor import AttemptRequest
from orchestrator.settings import Settings


@dataclass(frozen=True)
class HostRequest:
    """An :class:`AttemptRequest` plus what a node needs that the scheduler knows."""

    request: AttemptRequest
    agent_id: str
    """Chosen once by the executor: the same in every call for this attempt."""
    settings: Settings
    """The store: a TCP Redis every node reaches (its password never reaches the agent)."""
    remote: str
    """The git URL the node fetches from and pushes to."""
    base_branch: str
    branch: str
    upstream_branches: tuple[str, ...]
    """The direct upstream teams' branches, merged into a fresh worktree in this order."""
    slots: int
    secrets: tuple[str, ...] = ()
    kill_grace: float = 5.0

    @property
    def key(self) -> str:
        r = self.request
        return attempt_key(r.run_id, r.team_id, r.attempt)


def attempt_key(run_id: str, team: str, attempt: int) -> str:
    return f"{run_id}/{team}/{attempt}"


@dataclass
class NodeRecord:
    """An attempt's record on the node's disk (``<team>.<n>.json``)."""

    key: str
    agent_id: str
    branch: str
    worktree: str
    prompt_file: str
    log: str
    status: str
    session_id: str | None = None
    """The agent session the attempt continues (a retry)."""
    started: float | None = None
    pid: int | None = None
    create_time: float | None = None
    offset: int = 0
    end: dict[str, Any] | None = None
    """The agent's end: the outcome, the events kept, the last lines."""
    outcome: str | None = None
    """The attempt's :class:`AttemptOutcome` as JSON, once finished."""


class HostBusy(Exception):
    """Every agent slot of the node is taken (nothing was started)."""


def beside(base: Path, suffix: str) -> Path:
    """``<team>.<n>`` + ``suffix``: one attempt's file (``with_suffix`` would drop ``.<n>``)."""
    return base.with_name(base.name + suffix)


def agent_runs(rec: NodeRecord) -> bool:
    """The attempt's supervisor is alive (not ended, not a reused pid): it holds a slot.
    An agent stopped while nobody followed it (a cancel, a crash) frees its slot."""
    import psutil

    if rec.end is not None or rec.pid is None or Path(rec.status).exists():
        return False
    try:
        proc = psutil.Process(rec.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return rec.create_time is None or abs(proc.create_time() - rec.create_time) < 1.0
    except psutil.Error:
        return False


def save_record(path: Path, rec: NodeRecord) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(rec)))
    tmp.replace(path)


def load_record(path: Path) -> NodeRecord | None:
    try:
        data = json.loads(path.read_text())
        names = {f.name for f in dataclasses.fields(NodeRecord)}
        return NodeRecord(**{k: v for k, v in data.items() if k in names})
    except (OSError, ValueError, TypeError):
        return None


def read_head(log: Path, offset: int) -> list[str]:
    try:
        with log.open("rb") as fh:
            data = fh.read(offset)
    except OSError:
        return []
    return [line.removesuffix("\r") for line in data.decode("utf-8", "replace").split("\n") if line]
