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

A team's checks and the integration's test suite run in the same environment
as the agent, without the ``ORCHESTRATE_*`` layer (:func:`work_env`): what a
check prints can reach the next prompt, so it must never see what the agent
may not.
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


def work_env(
    *,
    allow: Sequence[str] | None,
    layers: Sequence[Mapping[str, str]],
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a team's checks and the test suite: the inherited part
    (``env_allow``, no ``ORCHESTRATE_*``) under the plan's layers."""
    env = inherited(source, allow=allow)
    for layer in layers:
        env.update(layer)
    return env


def agent_env(
    *,
    allow: Sequence[str] | None,
    layers: Sequence[Mapping[str, str]],
    orchestrate: Mapping[str, str],
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of one agent attempt (see the module docstring)."""
    env = work_env(allow=allow, layers=layers, source=source)
    env.update(orchestrate)
    return env
