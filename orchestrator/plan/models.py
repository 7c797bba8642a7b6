"""The plan format, ``plan.yaml`` version 1, as pydantic models.

This module is the single definition of what a plan may contain: the loader
(:mod:`orchestrator.plan.load`) turns YAML into these models and reports every
problem with its line; ``orchestrate schema`` prints their JSON Schema.

Models are frozen and refuse unknown keys. Durations are written ``90s``,
``30m``, ``2h``, ``1h30m`` (or a bare number of seconds) and stored as seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    WithJsonSchema,
    field_validator,
)

BUILTIN_AGENT_KINDS: tuple[str, ...] = (
    "claude-code",
    "codex",
    "aider",
    "gemini",
    "opencode",
    "command",
)
"""Agent kinds orchestrate knows how to start; a plan's ``agents:`` entries add named ones."""

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
_DURATION_RE = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*(?:(\d+(?:\.\d+)?)\s*s)?\s*$"
)
_MAX_DURATION = 7 * 24 * 3600.0


def parse_duration(value: Any) -> float:
    """Parse ``90s``, ``30m``, ``2h``, ``1h30m`` or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 30m or 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            m = _DURATION_RE.match(text)
            if not text or m is None or not any(m.groups()):
                raise ValueError(f"{value!r} is not a duration such as 90s, 30m or 2h")
            h, mi, s = (float(g) if g else 0.0 for g in m.groups())
            seconds = h * 3600 + mi * 60 + s
    else:
        raise ValueError("expected a duration such as 90s, 30m or 2h")
    if not math.isfinite(seconds):  # .nan would pass every comparison below and disable a limit
        raise ValueError("a duration must be a finite number")
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    if seconds > _MAX_DURATION:
        raise ValueError("a duration may be at most 7 days (168h)")
    return seconds


def format_duration(seconds: float) -> str:
    """The inverse of :func:`parse_duration`, for display: ``5400`` -> ``1h30m``."""
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s" if s else ""]
    return "".join(parts) or "0s"


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*[hms]?\s*)+$"},
                {"type": "number", "exclusiveMinimum": 0},
            ],
            "description": "A duration: 90s, 30m, 2h, 1h30m, or seconds as a number.",
        }
    ),
]
Identifier = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]


def _argv(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value or not value[0]:
        raise ValueError("an argv list needs a program as its first item")
    return value


def _env_name(value: str) -> str:
    if not value or "=" in value:
        raise ValueError(
            f"{value!r} is not an environment variable name (it must be non-empty, without '=')"
        )
    return value


Command = Annotated[
    str | Annotated[tuple[str, ...], AfterValidator(_argv)],
    Field(description="A shell command as a string, or an argv list run without a shell."),
]
EnvName = Annotated[str, AfterValidator(_env_name)]
"""A key of ``env:``; ``=`` in it would end the name early in the agent's environment."""


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False
    )


EXECUTORS: tuple[str, ...] = ("local", "ray")
"""Where teams run: ``local`` (this machine, the default) or ``ray`` (a Ray cluster's nodes)."""

_LABEL_PART = r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_LABEL_KEY_RE = re.compile(rf"^({_LABEL_PART}(\.{_LABEL_PART})*/)?{_LABEL_PART}$")
_LABEL_VALUE_RE = re.compile(rf"^{_LABEL_PART}$")


def _check_runs_on(value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    for key, values in value.items():
        if len(key) > 253 or not _LABEL_KEY_RE.match(key):
            raise ValueError(f"{key!r} is not a node label name (letters, digits, '-', '_', '.')")
        if not values:
            raise ValueError(f"label {key!r}: give at least one value")
        for v in values:
            if not _LABEL_VALUE_RE.match(v):
                raise ValueError(
                    f"label {key}: {v!r} is not a label value (at most 63 letters, digits, "
                    "'-', '_', '.')"
                )
    return value


def _one_or_many(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (v,) if isinstance(v, str) else v for k, v in value.items()}
    return value


RunsOn = Annotated[
    dict[str, tuple[str, ...]],
    BeforeValidator(_one_or_many),
    AfterValidator(_check_runs_on),
    WithJsonSchema(
        {
            "type": "object",
            "additionalProperties": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "minItems": 1},
                ]
            },
        }
    ),
    Field(
        description=(
            "Node labels a team runs on with the ray executor: {label: value} or "
            "{label: [value, ...]} (any of them); every label must match."
        )
    ),
]


def mask_webhook_url(url: str) -> str:
    """``https://hooks.example.com/***``: scheme and host only; path, query and userinfo hidden."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable url>"
    hidden = "/***" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{host}{port}{hidden}"


NotifyEvent = Literal["team_failed", "run_finished", "awaiting_approval"]
NOTIFY_EVENTS: tuple[NotifyEvent, ...] = ("team_failed", "run_finished", "awaiting_approval")


class Webhook(_Model):
    """One webhook of ``notify:``. Its URL is treated as a secret: never echoed in full."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    url: str = Field(description="http(s) URL the JSON body is POSTed to. Treated as a secret.")
    format: Literal["generic", "slack"] = Field(
        default="generic",
        description="generic: orchestrate's JSON; slack: an incoming-webhook body.",
    )
    events: tuple[NotifyEvent, ...] = Field(
        default=NOTIFY_EVENTS,
        description="Which events are posted: team_failed, run_finished, awaiting_approval.",
    )

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        scheme = value.partition("://")[0].lower() if "://" in value else ""
        if scheme not in ("http", "https") or not urlsplit(value).hostname:
            raise ValueError("a webhook url must be an http:// or https:// URL")  # never echo it
        return value

    def __repr__(self) -> str:
        return (
            f"Webhook(url={mask_webhook_url(self.url)!r}, format={self.format!r}, "
            f"events={self.events!r})"
        )

    __str__ = __repr__


class Budget(_Model):
    """Spending limit: once reached, no new attempt starts and the run pauses to ask for more."""

    usd: float | None = Field(default=None, gt=0, description="Dollars, as the agents report them.")
    tokens: int | None = Field(default=None, gt=0, description="Input + output tokens.")
    hard: bool = Field(
        default=False,
        description="Also stop the running agents once reached (default: they finish their "
        "attempt, then the run pauses until `resume --budget-usd/--budget-tokens`).",
    )


CopyPath = Annotated[
    str,
    Field(
        min_length=1,
        description="An untracked file (or glob) of the user's checkout, relative to the repo.",
    ),
]


class AgentConfig(_Model):
    """A named agent configuration (an entry of ``agents:``)."""

    kind: Literal["claude-code", "codex", "aider", "gemini", "opencode", "command"] | None = Field(
        default=None,
        description="Which adapter starts it. Default: the entry's name, if a built-in kind.",
    )
    command: Command | None = Field(
        default=None,
        description=(
            "The executable (default per kind). For kind 'command', the whole command with "
            "placeholders {prompt_file} {workdir} {team} {attempt} {agent_id}."
        ),
    )
    args: tuple[str, ...] = Field(default=(), description="Extra arguments appended to the argv.")
    model: str | None = Field(default=None, description="Model name passed to the agent CLI.")
    env: dict[EnvName, str] = Field(
        default_factory=dict, description="Extra environment variables."
    )
    resume_session: bool = Field(
        default=True, description="On a retry, continue the agent's own session where the CLI can."
    )


class Defaults(_Model):
    """Values every team gets unless it sets its own."""

    agent: str = Field(default="claude-code", description="A built-in kind or an agents: entry.")
    timeout: Duration = Field(default=30 * 60.0, description="Wall-clock limit of one attempt.")
    stall_timeout: Duration | None = Field(
        default=10 * 60.0, description="No output for this long counts as a failed attempt."
    )
    retries: int = Field(default=2, ge=0, le=20, description="Further attempts after the first.")
    check_timeout: Duration = Field(default=10 * 60.0, description="Time limit of each check.")
    runs_on: RunsOn | None = Field(
        default=None, description="Node labels every team runs on (ray executor)."
    )


class Team(_Model):
    """One team: an agent with a task, deliverables, checks and upstream teams."""

    id: Identifier = Field(description="Unique id: letters, digits, '-' and '_'.")
    name: str | None = Field(default=None, max_length=200, description="Human-readable name.")
    role: str | None = Field(
        default=None,
        description="A role profile: agents/<role>.md (built in, in the repo, or .claude/agents/).",
    )
    agent: str | None = Field(default=None, description="Overrides defaults.agent.")
    model: str | None = Field(default=None, description="Overrides the agent's model.")
    task: str = Field(min_length=1, description="What the team must do; the heart of its prompt.")
    deliverables: tuple[str, ...] = Field(
        default=(), description="Paths or globs inside the repo that must exist, non-empty."
    )
    checks: tuple[Command, ...] = Field(
        default=(), description="Go/no-go commands run in the team's worktree; all must pass."
    )
    acceptance: tuple[str, ...] = Field(
        default=(),
        description="Criteria in prose (go/no-go, definition of done), given to the agent.",
    )
    depends_on: tuple[Identifier, ...] = Field(default=(), description="Upstream team ids.")
    estimate: Duration | None = Field(default=None, description="Expected duration, for `plan`.")
    timeout: Duration | None = None
    stall_timeout: Duration | None = None
    retries: int | None = Field(default=None, ge=0, le=20)
    budget: Budget | None = None
    env: dict[EnvName, str] = Field(default_factory=dict)
    prompt_template: str | None = Field(
        default=None,
        description="A Jinja2 template file (relative to the plan) for this team's prompt.",
    )
    runs_on: RunsOn | None = Field(
        default=None,
        description="Node labels this team runs on (ray executor); overrides defaults.",
    )
    approval: bool = Field(
        default=False,
        description="When the team has succeeded it waits for `orchestrate approve` (or "
        "`reject`) before its dependents start.",
    )
    setup: tuple[Command, ...] = Field(
        default=(),
        description="Commands run in the team's new worktree before its agent starts, after "
        "the plan's own setup:.",
    )
    copy_files: tuple[CopyPath, ...] = Field(
        default=(),
        alias="copy",
        description="Untracked files copied from the user's checkout into the team's worktree "
        "(after the plan's copy:); never committed, their values redacted.",
    )

    @property
    def title(self) -> str:
        return self.name or self.id


class Integration(_Model):
    """The integration phase: merge the team branches, resolve, test, fix."""

    test: Command | tuple[Command, ...] | None = Field(
        default=None, description="The test suite, run on the merged result."
    )
    timeout: Duration = Field(default=30 * 60.0, description="Time limit of the test suite.")
    resolver: str | None = Field(default=None, description="Agent that resolves merge conflicts.")
    fixer: str | None = Field(default=None, description="Agent that fixes a failing suite.")
    retries: int = Field(default=1, ge=0, le=10, description="Fixer rounds.")
    partial: bool = Field(
        default=False, description="Integrate the teams that succeeded even if others failed."
    )
    bisect: bool = Field(default=True, description="Find the merge that broke the suite.")


class Plan(_Model):
    """A whole plan (``plan.yaml`` version 1)."""

    version: Literal[1] = Field(description="The plan format version; 1.")
    name: Identifier = Field(description="The plan's name; run ids start with it.")
    description: str | None = None
    repo: str = Field(default=".", description="The git repository, relative to the plan file.")
    base: str | None = Field(
        default=None, description="Branch the teams start from (default: current)."
    )
    max_parallel: int = Field(default=4, ge=1, le=256, description="Agents running at once.")
    isolation: Literal["worktree", "shared"] = Field(
        default="worktree",
        description="worktree: a worktree and branch per team; shared: one worktree for the run.",
    )
    budget: Budget | None = None
    defaults: Defaults = Field(default_factory=Defaults)
    agents: dict[Identifier, AgentConfig] = Field(default_factory=dict)
    env: dict[EnvName, str] = Field(
        default_factory=dict, description="Environment added for every agent."
    )
    env_allow: tuple[str, ...] | None = Field(
        default=None,
        description="If set, agents get only these variables of orchestrate's environment (globs).",
    )
    prompt_template: str | None = Field(
        default=None,
        description="A Jinja2 template file (relative to the plan) for every team's prompt.",
    )
    setup: tuple[Command, ...] = Field(
        default=(),
        description="Commands run in every new worktree before its agent starts "
        "(npm ci, uv sync, cp .env.example .env).",
    )
    copy_files: tuple[CopyPath, ...] = Field(
        default=(),
        alias="copy",
        description="Untracked files copied from the user's checkout into every worktree "
        "(.env, .env.local); never committed, their values redacted.",
    )
    teams: tuple[Team, ...] = Field(min_length=1, description="The teams, in plan order.")
    integration: Integration = Field(default_factory=Integration)
    notify: tuple[Webhook, ...] = Field(
        default=(), description="Webhooks posted on a team failure and at the end of the run."
    )
    executor: Literal["local", "ray"] | None = Field(
        default=None,
        description="Where teams run: local (default) or ray; --executor overrides it.",
    )
    remote: str | None = Field(
        default=None,
        description=(
            "The git remote every node fetches from and pushes to (ray executor): a URL or "
            "a remote's name in the repository. Default: the repository's origin."
        ),
    )

    # Built once per teams tuple (a model_copy that replaces the teams gets fresh ones):
    # graph functions and the CLI ask for them once per team on a large plan.
    _by_id: tuple[tuple[Team, ...], dict[str, Team]] | None = PrivateAttr(default=None)
    _deps: tuple[tuple[Team, ...], dict[str, tuple[str, ...]]] | None = PrivateAttr(default=None)

    def dependencies(self) -> Mapping[str, tuple[str, ...]]:
        """Each team id, in plan order, with its ``depends_on``."""
        if self._deps is None or self._deps[0] is not self.teams:
            self._deps = (self.teams, {t.id: t.depends_on for t in self.teams})
        return self._deps[1]

    def team(self, team_id: str) -> Team:
        if self._by_id is None or self._by_id[0] is not self.teams:
            by_id: dict[str, Team] = {}
            for t in self.teams:
                by_id.setdefault(t.id, t)
            self._by_id = (self.teams, by_id)
        return self._by_id[1][team_id]

    def agent_name(self, team: Team) -> str:
        return team.agent or self.defaults.agent

    def agent_config(self, name: str) -> AgentConfig:
        """The configuration of agent ``name``: its ``agents:`` entry or a bare built-in kind."""
        if name in self.agents:
            cfg = self.agents[name]
            return cfg if cfg.kind else cfg.model_copy(update={"kind": name})
        return AgentConfig.model_validate({"kind": name})  # planload refused unknown names

    def timeout(self, team: Team) -> float:
        return team.timeout or self.defaults.timeout

    def stall_timeout(self, team: Team) -> float | None:
        return team.stall_timeout or self.defaults.stall_timeout

    def retries(self, team: Team) -> int:
        return self.defaults.retries if team.retries is None else team.retries

    def runs_on(self, team: Team) -> dict[str, tuple[str, ...]]:
        """The node labels ``team`` must run on (its own, else ``defaults.runs_on``); {}: any."""
        if team.runs_on is not None:
            return team.runs_on
        return self.defaults.runs_on or {}

    def setup_commands(self, team: Team) -> tuple[Command, ...]:
        """The set-up of ``team``'s worktree: the plan's commands, then the team's."""
        return self.setup + team.setup

    def copies(self, team: Team) -> tuple[str, ...]:
        """The files copied into ``team``'s worktree: the plan's, then the team's (once each)."""
        return tuple(dict.fromkeys(self.copy_files + team.copy_files))
