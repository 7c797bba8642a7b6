"""Options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
