"""Options and helpers shared by several commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from orchestrator.errors import UsageError
    from orchestrator.paths import StateLayout
    from orchestrator.settings import Settings

StateDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="The state folder (default: .orchestrate/ at the repository root, found upward).",
        envvar="ORCHESTRATE_STATE_DIR",
        show_envvar=True,
    ),
]
RedisUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--redis-url",
        help=(
            "redis://, rediss:// or unix:// URL of an external Redis "
            "(default: the embedded server)."
        ),
        envvar="ORCHESTRATE_REDIS_URL",
        show_envvar=False,  # never echo a URL that may hold a password
    ),
]


def settings_error(exc: Exception) -> UsageError:
    """One line for pydantic's ValidationError of :class:`Settings`: each bad setting by
    its variable's name (``ORCHESTRATE_LEASE_TTL: ...``); values are never echoed."""
    from orchestrator.errors import UsageError

    errors = getattr(exc, "errors", None)
    problems = []
    for err in errors() if callable(errors) else []:
        field = ".".join(str(part) for part in err.get("loc", ())) or "?"
        name = "ORCHESTRATE_REDIS_URL (--redis-url)" if field == "redis_url" else None
        if field == "state_dir":
            name = "ORCHESTRATE_STATE_DIR (--state-dir)"
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{name or 'ORCHESTRATE_' + field.upper()}: {message}")
    return UsageError(f"bad setting: {'; '.join(problems) or exc}")


def load_settings(
    *, state_dir: Path | None = None, redis_url: str | None = None, **overrides: Any
) -> Settings:
    """:class:`Settings` from the ``ORCHESTRATE_*`` variables and the command line;
    a bad value is a UsageError (exit 2) in one line, never a traceback."""
    from pydantic import ValidationError

    from orchestrator.settings import Settings

    if redis_url:
        overrides["redis_url"] = redis_url
    if state_dir is not None:
        overrides["state_dir"] = state_dir
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise settings_error(exc) from exc


def warn_damage(settings: Settings, layout: StateLayout) -> None:
    """A warning on stderr when the embedded server's data was damaged (a cut-short
    append-only file was loaded): every look at the runs says it, not just the first."""
    if settings.redis_url is not None:
        return
    from orchestrator.state.server import EmbeddedServer

    damage = EmbeddedServer(layout.redis_dir, settings).damage()
    if damage is not None:
        sys.stderr.write(f"orchestrate: warning: {damage}\n")
        sys.stderr.flush()
