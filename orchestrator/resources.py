"""Where the bundled role profiles, prompt templates and example configs live.

In a wheel they are package data under ``orchestrator/_data/``; in a source
checkout (an editable install) they are the top-level ``agents/``,
``prompts/`` and ``configs/`` folders beside the package.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def data_dir(name: str) -> Path:
    """The folder of bundled data ``name`` (``agents``, ``prompts`` or ``configs``)."""
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"bundled data folder {name!r} is missing from this installation")


def roles_dir() -> Path:
    return data_dir("agents")


def prompts_dir() -> Path:
    return data_dir("prompts")


def configs_dir() -> Path:
    return data_dir("configs")
