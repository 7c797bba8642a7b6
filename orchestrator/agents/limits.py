"""Usage and rate limits in an agent's output: which provider, and when the limit lifts.

A limit is not a failure of the team's work: the scheduler pauses the team
until the reset and starts no other agent of that provider meanwhile. This
module only reads; it turns output lines (JSON or plain text, stdout and
stderr merged, as the supervisor logs them) into a :class:`UsageLimit`.

What the CLIs print, recorded from the real binaries against our scripted
endpoint (``tests/fixtures/agent-output/*/usage_limit*.jsonl``):

- Claude Code (a subscription login): ``{"type":"rate_limit_event",
  "rate_limit_info":{"status":"rejected","resetsAt":EPOCH,...}}``, then an
  error message "You've hit your 5-hour limit · resets 10:45am (UTC)" (or
  "resets Dec 4, 10:05pm (Europe/Berlin)"); older versions print
  "Claude AI usage limit reached|EPOCH".
- Codex (a ChatGPT plan): "You've hit your usage limit. ... try again at
  10:45 AM." or "... try again at Dec 4th, 2026 4:05 PM.", a wall-clock
  time in the zone the CLI runs in, with no zone named.
- Gemini CLI: "Please retry in 3595s." / "Suggested retry after 3595s." in
  a ``result`` whose ``timestamp`` dates it; stderr repeats it and adds
  ``retryDelayMs``.
- OpenCode: an ``APIError`` with ``statusCode: 429`` and the response's
  headers (``retry-after``, ``date``). OpenCode itself waits out a
  Retry-After up to five times before it reports one, so a long limit shows
  first as a quiet agent.
- Any CLI or plain command: an HTTP 429 with ``Retry-After: N`` or
  "try again in 20s" in its text.

A rate limit without any reset time (an API key's 429 after the CLI's own
retries) is still reported, with ``resets_at`` None: the caller decides.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, tzinfo
from email.utils import parsedate_to_datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["LimitWatcher", "UsageLimit", "detect_limit", "provider_of"]

_PROVIDER_OF_KIND = {
    "claude-code": "anthropic",
    "codex": "openai",
    "gemini": "google",
}

_MESSAGE_MAX = 300


def provider_of(kind: str, model: str | None = None) -> str:
    """The provider whose quota an agent of ``kind`` running ``model`` spends.

    Claude Code, Codex and Gemini CLI each speak to one provider; OpenCode and
    Aider name it in the model (``anthropic/claude-sonnet-4``,
    ``openai/gpt-5``); anything else is its own provider (its kind).
    """
    if kind in _PROVIDER_OF_KIND:
        return _PROVIDER_OF_KIND[kind]
    if model and "/" in model:
        return model.split("/", 1)[0].lower()
    return kind


@dataclass(frozen=True)
class UsageLimit:
    """A usage or rate limit an agent ran into."""

    message: str
    """What the agent said, one line (for the board and the attempt's reason)."""
    resets_at: datetime | None = None
    """When the limit lifts (aware, UTC); None when the agent did not say."""
    structured: bool = False
    """The reset was read from a field made for it (an epoch, a header), not from prose."""
    provider: str | None = None
    """Whose quota: :func:`provider_of` the agent's kind and model, when the reader knew them."""

    def seconds_left(self, now: datetime | None = None) -> float | None:
        """Seconds until the reset from ``now`` (never negative); None when unknown."""
        if self.resets_at is None:
            return None
        now = now or datetime.now(UTC)
        return max(0.0, (self.resets_at - now).total_seconds())


# -- the patterns ----------------------------------------------------------------------------

_LIMIT_WORDS = re.compile(
    r"usage limit|rate.?limit|limit reached|hit your (?:\S+ )?limit|quota|too many requests"
    r"|resource.?exhausted|\b429\b",
    re.IGNORECASE,
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
# Claude Code: "resets 10:45am (UTC)", "resets Dec 4, 10:05pm (Europe/Berlin)", "resets 2pm".
_CLAUDE_RESETS = re.compile(
    r"\bresets (?:at )?(?:(?P<mon>[A-Z][a-z]{2})[a-z]* (?P<day>\d{1,2}),? )?"
    r"(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>am|pm)\b(?:\s*\((?P<tz>[A-Za-z0-9_+\-/]+)\))?",
    re.IGNORECASE,
)
# Claude Code before 2.x: "Claude AI usage limit reached|1751234567".
_CLAUDE_PIPE = re.compile(r"usage limit reached\|(?P<epoch>\d{10})\b", re.IGNORECASE)
# Codex: "try again at 10:45 AM.", "try again at Dec 4th, 2026 4:05 PM."
_CODEX_AT = re.compile(
    r"\btry again at (?:(?P<mon>[A-Z][a-z]{2})[a-z]* (?P<day>\d{1,2})(?:st|nd|rd|th)?,? "
    r"(?:(?P<year>\d{4}),? )?)?(?P<h>\d{1,2}):(?P<m>\d{2})\s*(?P<ampm>AM|PM)?",
    re.IGNORECASE,
)
# Relative: "retry in 3595s", "retry after 43.5s", "try again in 20s", "try again in 1m30s",
# "Retry-After: 120", "retryDelayMs: 3595000".
_RELATIVE = re.compile(
    r"(?:\b(?:retry|try again) (?:in|after)\s+(?P<span>(?:\d+(?:\.\d+)?\s*(?:ms|[hms])\s*)+)"
    r"|\bretry-after[\"']?\s*[:=]\s*[\"']?(?P<secs>\d+(?:\.\d+)?)\b"
    r"|\bretryDelayMs[\"']?\s*[:=]\s*(?P<ms>\d+)\b)",
    re.IGNORECASE,
)
_MAYBE = re.compile(r"limit|429|quota|retry|exhausted|too many|resets|try again", re.IGNORECASE)
"""A cheap first look: a line without any of these cannot report a limit."""
_SPAN_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)", re.IGNORECASE)
_SPAN_UNIT = {"ms": 0.001, "h": 3600.0, "m": 60.0, "s": 1.0}


def _local_zone() -> tzinfo:
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return datetime.now().astimezone().tzinfo or UTC


def _zone(name: str | None, default: tzinfo) -> tzinfo:
    if not name:
        return default
    if name.upper() in ("UTC", "GMT", "Z"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return default


def _wall_clock(m: re.Match[str], *, now: datetime, zone: tzinfo) -> datetime | None:
    """The next moment (from ``now``) a wall-clock reset ``m`` names, in UTC."""
    hour, minute = int(m["h"]), int(m["m"] or 0)
    ampm = (m["ampm"] or "").lower()
    if ampm:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if ampm == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    local_now = now.astimezone(zone)
    groups = m.groupdict()
    try:
        if m["mon"]:
            month = _MONTHS.get(m["mon"][:3].lower())
            if month is None:
                return None
            year = int(groups.get("year") or local_now.year)
            when = datetime(year, month, int(m["day"]), hour, minute, tzinfo=zone)
            if not groups.get("year") and when < local_now - timedelta(days=180):
                when = when.replace(year=year + 1)  # "Jan 2" seen on Dec 30
        else:
            when = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
            # A time printed to the minute may be a little behind us; else it is tomorrow's.
            if when < local_now - timedelta(minutes=5):
                when = (when + timedelta(days=1)).replace(hour=hour, minute=minute)
    except ValueError:
        return None
    # Printed to the minute, truncated: the limit may last until that minute's end.
    return when.astimezone(UTC) + timedelta(minutes=1)


def _span_seconds(text: str) -> float:
    return sum(float(n) * _SPAN_UNIT[u.lower()] for n, u in _SPAN_PART.findall(text))


def _relative(m: re.Match[str]) -> float | None:
    if m["span"]:
        return _span_seconds(m["span"])
    if m["secs"]:
        return float(m["secs"])
    if m["ms"]:
        return int(m["ms"]) / 1000
    return None


def _in_text(text: str, *, at: datetime, zone: tzinfo, require_words: bool) -> UsageLimit | None:
    """A limit said in free text (``at``: when it was said)."""
    if require_words and not _LIMIT_WORDS.search(text):
        return None
    message = _one_line(text)
    if m := _CLAUDE_PIPE.search(text):
        return UsageLimit(message, datetime.fromtimestamp(int(m["epoch"]), UTC))
    if m := _CLAUDE_RESETS.search(text):
        when = _wall_clock(m, now=at, zone=_zone(m["tz"], zone))
        if when is not None:
            return UsageLimit(message, when)
    if m := _CODEX_AT.search(text):
        when = _wall_clock(m, now=at, zone=zone)
        if when is not None:
            return UsageLimit(message, when)
    if m := _RELATIVE.search(text):
        seconds = _relative(m)
        if seconds is not None:
            return UsageLimit(message, at + timedelta(seconds=seconds))
    if not require_words:
        return None
    return UsageLimit(message)


# -- JSON lines ------------------------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _line_time(obj: Mapping[str, Any], default: datetime) -> datetime:
    """When a JSON line was written, from its own ``timestamp`` (ISO or epoch ms)."""
    stamp = obj.get("timestamp")
    try:
        if isinstance(stamp, int | float) and not isinstance(stamp, bool):
            return datetime.fromtimestamp(stamp / 1000 if stamp > 1e11 else stamp, UTC)
        if isinstance(stamp, str) and stamp:
            parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    return default


def _epoch(value: Any) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 1e9:
        try:
            return datetime.fromtimestamp(value / 1000 if value > 1e11 else value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _find_key(value: Any, key: str) -> Iterator[Any]:
    if isinstance(value, Mapping):
        for k, item in value.items():
            if k == key:
                yield item
            yield from _find_key(item, key)
    elif isinstance(value, list):
        for item in value:
            yield from _find_key(item, key)


def _headers_reset(headers: Mapping[str, Any], at: datetime) -> datetime | None:
    """The reset an HTTP answer's headers give (``at``: when it was answered)."""
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    for key in ("anthropic-ratelimit-unified-reset",):
        if key in h and h[key].isdigit():
            return _epoch(int(h[key]))
    if date := h.get("date"):
        try:
            at = parsedate_to_datetime(date).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    if "retry-after-ms" in h:
        try:
            return at + timedelta(milliseconds=float(h["retry-after-ms"]))
        except ValueError:
            pass
    if retry := h.get("retry-after"):
        try:
            return at + timedelta(seconds=float(retry))
        except ValueError:
            try:
                return parsedate_to_datetime(retry).astimezone(UTC)
            except (TypeError, ValueError):
                pass
    for key in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"):
        if key in h and (seconds := _span_seconds(h[key])):
            return at + timedelta(seconds=seconds)
    return None


def _is_error_object(obj: Mapping[str, Any]) -> bool:
    return bool(
        obj.get("type") in ("error", "turn.failed")
        or obj.get("is_error") is True
        or obj.get("is_api_error_message") is True
        or obj.get("status") == "error"
        or "error" in obj
    )


def _in_json(obj: Mapping[str, Any], *, now: datetime, zone: tzinfo) -> UsageLimit | None:
    at = _line_time(obj, now)
    # Claude Code's rate_limit_event: only a rejection is a limit (it also warns early).
    if obj.get("type") == "rate_limit_event":
        info = obj.get("rate_limit_info")
        if isinstance(info, Mapping) and info.get("status") == "rejected":
            kind = info.get("rateLimitType") or "usage"
            return UsageLimit(f"{kind} limit reached", _epoch(info.get("resetsAt")), True)
        return None
    if not _is_error_object(obj):
        return None
    texts = [s for s in _strings(obj) if s]
    status_429 = any(
        v == 429
        for key in ("statusCode", "api_error_status", "code", "status")
        for v in _find_key(obj, key)
    )
    text = "\n".join(texts)
    if not (status_429 or _LIMIT_WORDS.search(text)):
        return None
    said = [t for t in texts if _LIMIT_WORDS.search(t)] or texts or ["HTTP 429"]
    messages = [t for t in _find_key(obj, "message") if isinstance(t, str) and t in said]
    message = messages[0] if messages else max(said, key=len)
    # Fields made for it: Claude Code's rate_limit_info, an answer's headers.
    for info in _find_key(obj, "rate_limit_info"):
        if isinstance(info, Mapping) and (when := _epoch(info.get("resetsAt"))):
            return UsageLimit(_one_line(message), when, True)
    for headers in _find_key(obj, "responseHeaders"):
        if isinstance(headers, Mapping) and (when := _headers_reset(headers, at)):
            return UsageLimit(_one_line(message), when, True)
    for t in texts:
        found = _in_text(t, at=at, zone=zone, require_words=False)
        if found is not None and found.resets_at is not None:
            return found
    return UsageLimit(_one_line(message))


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MESSAGE_MAX else line[: _MESSAGE_MAX - 1] + "…"


# -- the public side -------------------------------------------------------------------------


def _parse_line(line: str, *, now: datetime, zone: tzinfo) -> tuple[UsageLimit | None, int]:
    """What one line reports, and how much to trust it (see :class:`LimitWatcher`)."""
    stripped = line.strip()
    if not stripped or not _MAYBE.search(stripped):
        return None, 0
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            found = _in_json(obj, now=now, zone=zone)
            if found is None:
                return None, 0
            return found, 4 if found.structured else 3 if found.resets_at else 1
    found = _in_text(stripped, at=now, zone=zone, require_words=True)
    if found is None:
        return None, 0
    return found, 2 if found.resets_at else 0


class LimitWatcher:
    """Reads an attempt's output as it comes and keeps the limit it reports.

    Feed every line (:meth:`feed`); :attr:`limit` is the best report so far.
    A reset read from a field made for it beats one read from the CLI's JSON
    messages, which beats one read from plain text (stderr, whose relative
    times count from when the line was read); any reset beats none; a later
    report beats an earlier one that is trusted as much.
    """

    def __init__(
        self, *, tz: tzinfo | None = None, kind: str | None = None, model: str | None = None
    ) -> None:
        self._zone = tz or _local_zone()
        self._rank = -1
        self._provider = provider_of(kind, model) if kind else None
        self.limit: UsageLimit | None = None

    def feed(self, line: str, *, now: datetime | None = None) -> UsageLimit | None:
        """Read one line (said at ``now``, default the present); returns what it reported."""
        found, rank = _parse_line(line, now=now or datetime.now(UTC), zone=self._zone)
        if found is not None and self._provider is not None:
            found = replace(found, provider=self._provider)
        if found is not None and rank >= self._rank:
            self.limit, self._rank = found, rank
        return found


def detect_limit(
    lines: Iterable[str],
    *,
    now: datetime | None = None,
    tz: tzinfo | None = None,
    kind: str | None = None,
    model: str | None = None,
) -> UsageLimit | None:
    """The usage or rate limit ``lines`` report, or None.

    ``now``: when the lines were printed (relative resets and times without a
    date count from it); ``tz``: the zone the agent ran in, for the CLIs that
    print a bare wall-clock time (default: ``$TZ``, else this machine's zone);
    ``kind`` and ``model``: the agent's, to name the provider in the result.
    """
    watcher = LimitWatcher(tz=tz, kind=kind, model=model)
    for line in lines:
        watcher.feed(line, now=now)
    return watcher.limit
