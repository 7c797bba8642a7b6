"""Helpers shared by the adapters of JSON-printing agent CLIs.

- :func:`load` reads one output line as a JSON object (None for anything
  else: the supervisor merges stderr into the same log, so warnings and
  banners arrive between the JSON lines);
- :func:`classify_error` decides from an HTTP status and the error text
  whether an API failure is worth retrying later (rate limit, overload, 5xx)
  or fatal (authentication, permissions);
- :func:`error_event` builds the common error event from those;
- :func:`tool_line` renders one tool call as a short readable line
  (``Write src/app.js``, ``Bash npm test``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from orchestrator.agents.base import AgentEvent

_RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
_FATAL_STATUS = frozenset({401, 402, 403})

_RETRYABLE_RE = re.compile(
    r"\b(429|529|50[0234])\b|rate.?limit|too many requests|overloaded|high demand|"
    r"temporarily unavailable|service unavailable|capacity|try again later|quota exceeded",
    re.IGNORECASE,
)
_FATAL_RE = re.compile(
    r"\b(401|403)\b|unauthori[sz]ed|authentication|invalid (x-)?api.?key|api key|not logged in|"
    r"/login|credit balance|permission denied for model|forbidden",
    re.IGNORECASE,
)


def load(line: str) -> dict[str, Any] | None:
    """The JSON object on ``line``, or None when the line is not one."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def obj(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


def as_int(value: Any) -> int:
    """A token count from JSON: ints and floats as int, anything else 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return int(value)
    return 0


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def classify_error(status: int | None, text: str) -> tuple[bool, bool]:
    """``(retryable, fatal)`` for an API error with HTTP ``status`` (if known) and ``text``."""
    if status is not None:
        if status in _FATAL_STATUS:
            return False, True
        if status in _RETRYABLE_STATUS or status >= 500:
            return True, False
        if 400 <= status < 500:
            return False, False
    if _FATAL_RE.search(text):
        return False, True
    if _RETRYABLE_RE.search(text):
        return True, False
    return False, False


def error_event(
    text: str,
    *,
    status: int | None = None,
    session_id: str | None = None,
    retry_after: float | None = None,
) -> AgentEvent:
    """An ``error`` event, classified as retryable (rate limit, overload) or fatal (auth)."""
    retryable, fatal = classify_error(status, text)
    return AgentEvent(
        type="error",
        text=text,
        session_id=session_id,
        is_error=True,
        retryable=retryable,
        fatal=fatal,
        retry_after=retry_after,
    )


_TOOL_KEYS = (
    "file_path",
    "filePath",
    "path",
    "notebook_path",
    "command",
    "cmd",
    "pattern",
    "url",
    "query",
    "description",
    "prompt",
)


def tool_line(name: str, args: Any) -> str:
    """``Write src/app.js``: the tool's name and its most telling argument."""
    detail = ""
    if isinstance(args, Mapping):
        for key in _TOOL_KEYS:
            value = args.get(key)
            if isinstance(value, list):
                value = " ".join(str(v) for v in value)
            if isinstance(value, str) and value.strip():
                detail = value
                break
        else:
            if args:
                detail = json.dumps(args, ensure_ascii=False, sort_keys=True)
    elif isinstance(args, str):
        detail = args
    detail = " ".join(detail.split())
    if len(detail) > 200:
        detail = detail[:199] + "…"
    return f"{name} {detail}".strip()
