"""The environment an agent process gets.

Agents run with the user's rights and need the user's environment (their API
keys must reach them), but never orchestrate's own configuration or secrets:
every inherited ``ORCHESTRATE_*`` variable (the Redis URL and password among
them) is removed, and so is ``REDIS_URL``-style configuration orchestrate was
given under another name (:data:`WITHHELD`).

With ``env_allow`` in the plan, only inherited variables matching one of its
glob patterns (``PATH``, ``LANG``, ``ANTHROPIC_*``, ...) are passed; the plan's
own values are always added. Layers, later wins::

    inherited (filtered) < plan env < agent env < team env
    < ORCHESTRATE_RUN / _TEAM / _AGENT_ID / _ATTEMPT / _PROMPT_FILE
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping, Sequence

WITHHELD_PREFIX = "ORCHESTRATE_"
"""Inherited variables with this prefix configure orchestrate itself; agents never see them."""


def inherited(
    source: Mapping[str, str] | None = None, *, allow: Sequence[str] | None
) -> dict[str, str]:
    """The part of ``source`` (default: ``os.environ``) an agent may inherit."""
    env = dict(os.environ if source is None else source)
    kept = {k: v for k, v in env.items() if not k.upper().startswith(WITHHELD_PREFIX)}
    if allow is not None:
        kept = {k: v for k, v in kept.items() if any(fnmatch.fnmatchcase(k, p) for p in allow)}
    return kept


def agent_env(
    *,
    allow: Sequence[str] | None,
    layers: Sequence[Mapping[str, str]],
    orchestrate: Mapping[str, str],
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of one agent attempt (see the module docstring)."""
    env = inherited(source, allow=allow)
    for layer in layers:
        env.update(layer)
    env.update(orchestrate)
    return env
