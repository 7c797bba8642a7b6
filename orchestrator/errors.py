"""Every error orchestrate raises on purpose.

The tree::

    OrchestrateError              exit 1 unless a subclass says otherwise
    ├── UsageError                exit 2: bad command line (unknown run, bad option value)
    ├── PlanError                 exit 2: the plan cannot be run; carries every problem found
    ├── RoleError                 exit 2: a role profile is missing or malformed
    ├── StoreError                exit 1: Redis unreachable, refused, or the embedded server failed
    │   ├── LeaseHeldError        another live orchestrator holds the run's lease
    │   ├── StaleEpochError       this orchestrator's lease epoch is older than the run's
    │   └── IllegalTransitionError  a state change the state machine does not allow
    ├── AgentError                an agent could not be started (missing binary, bad config)
    ├── GitError                  a git command failed (message carries git's own words)
    └── IntegrationError          merging, resolving or testing the integrated result failed

Lower-level exceptions (redis, OSError, CalledProcessError) are converted at the
edge with ``raise ... from exc``; the CLI prints ``str(error)`` as one line and
exits with ``error.exit_code``. Messages never contain secrets: whoever builds
one from a URL or an environment value redacts it first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class OrchestrateError(Exception):
    """Base of every error orchestrate reports to the user as one line."""

    exit_code: int = 1


class UsageError(OrchestrateError):
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = 2


NO_RUNS = "no runs here yet; start one with `orchestrate run plan.yaml`"
"""What every command that takes a RUN says when there is none (a UsageError)."""


@dataclass(frozen=True)
class Problem:
    """One problem in a plan, located as precisely as we can.

    ``where`` is the dotted path of the field (``teams[2].depends_on``);
    ``line``/``column`` are 1-based positions in the plan file, or ``None``
    when the problem is about the file as a whole.
    """

    file: str
    where: str
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        pos = self.file
        if self.line is not None:
            pos += f":{self.line}"
            if self.column is not None:
                pos += f":{self.column}"
        return f"{pos}: {self.where}: {self.message}" if self.where else f"{pos}: {self.message}"


class PlanError(OrchestrateError):
    """The plan cannot be run. ``problems`` holds every problem found in one pass."""

    exit_code = 2

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class RoleError(OrchestrateError):
    """A role profile is missing or malformed (exit 2: the plan cannot be run)."""

    exit_code = 2


class StoreError(OrchestrateError):
    """The state store (Redis) failed or refused; the run stays resumable."""


class LeaseHeldError(StoreError):
    """Another live orchestrator holds this run's lease."""


class StaleEpochError(StoreError):
    """A write carried a lease epoch older than the run's current one."""


class IllegalTransitionError(StoreError):
    """The state machine does not allow this transition."""


class AgentError(OrchestrateError):
    """An agent could not be started or configured."""


class GitError(OrchestrateError):
    """A git command failed."""


class IntegrationError(OrchestrateError):
    """Merging, resolving or testing the integrated result failed."""
