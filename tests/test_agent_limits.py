"""Usage limits read from the real CLIs' recorded output: who is limited, and until when.

The recordings (tests/fixtures/agent-output/*/usage_limit*.jsonl) are what
Claude Code, Codex, Gemini CLI and OpenCode printed when our scripted
endpoint answered with a usage limit lifting at a known moment;
usage_limits.json next to them says when each was made, when the endpoint's
limit lifted and the time zone the CLI ran in.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from orchestrator.agents.limits import LimitWatcher, UsageLimit, detect_limit, provider_of
from tests.support.recordings import FIXTURES

FACTS: dict[str, dict[str, object]] = json.loads((FIXTURES / "usage_limits.json").read_text())


def lines_of(name: str) -> list[str]:
    return (FIXTURES / f"{name}.jsonl").read_text().splitlines()


MODELS = {"opencode": "scripted/scripted-1"}
PROVIDERS = {
    "claude-code": "anthropic",
    "codex": "openai",
    "gemini": "google",
    "opencode": "scripted",
}


def detect_recorded(name: str) -> tuple[UsageLimit, datetime]:
    """The limit read from recording ``name`` as it was printed, and the endpoint's reset."""
    facts = FACTS[name]
    kind = name.split("/")[0]
    recorded_at = datetime.fromtimestamp(float(str(facts["recorded_at"])), UTC)
    limit = detect_limit(
        lines_of(name),
        now=recorded_at,
        tz=ZoneInfo(str(facts["tz"])),
        kind=kind,
        model=MODELS.get(kind),
    )
    assert limit is not None, name
    assert limit.provider == PROVIDERS[kind]  # whose quota it is
    return limit, datetime.fromtimestamp(int(str(facts["resets_at"])), UTC)


@pytest.mark.parametrize("name", ["claude-code/usage_limit", "claude-code/usage_limit_days"])
def test_claude_code_limit_resets_exactly_when_the_provider_said(name: str) -> None:
    """Claude Code's rate_limit_event gives the reset to the second; its words go on the board."""
    limit, resets_at = detect_recorded(name)
    assert limit.resets_at == resets_at
    assert limit.structured
    assert "limit" in limit.message and "resets" in limit.message


def test_claude_code_limit_text_alone_gives_the_reset_in_its_zone() -> None:
    """Without the event, "resets Dec 4, 10:05pm (Europe/Berlin)" is read in Berlin time."""
    name = "claude-code/usage_limit_days"
    facts = FACTS[name]
    only_text = [line for line in lines_of(name) if '"type":"result"' in line]
    recorded_at = datetime.fromtimestamp(float(str(facts["recorded_at"])), UTC)
    limit = detect_limit(only_text, now=recorded_at, tz=UTC)  # the zone named wins over tz
    assert limit is not None and limit.resets_at is not None and not limit.structured
    resets_at = datetime.fromtimestamp(int(str(facts["resets_at"])), UTC)
    assert timedelta(0) <= limit.resets_at - resets_at <= timedelta(minutes=1)


@pytest.mark.parametrize("name", ["codex/usage_limit", "codex/usage_limit_days"])
def test_codex_limit_is_a_wall_clock_time_in_the_agents_zone(name: str) -> None:
    """Codex prints "try again at 10:45 AM" (local, to the minute): read in the agent's zone,
    never before the real reset (the end of the printed minute)."""
    limit, resets_at = detect_recorded(name)
    assert limit.resets_at is not None
    assert timedelta(0) <= limit.resets_at - resets_at <= timedelta(minutes=1)
    assert "usage limit" in limit.message


def test_codex_wall_clock_read_in_another_zone_is_off_by_that_zone() -> None:
    """The zone matters: the same recording read as UTC lands hours away from the reset."""
    name = "codex/usage_limit_days"  # recorded in America/New_York
    facts = FACTS[name]
    recorded_at = datetime.fromtimestamp(float(str(facts["recorded_at"])), UTC)
    limit = detect_limit(lines_of(name), now=recorded_at, tz=UTC)
    assert limit is not None and limit.resets_at is not None
    resets_at = datetime.fromtimestamp(int(str(facts["resets_at"])), UTC)
    assert abs(limit.resets_at - resets_at) >= timedelta(hours=4)


def test_gemini_limit_counts_from_the_results_own_timestamp() -> None:
    """Gemini's "Suggested retry after 3595s" is dated by its result line, not by when we read it;
    the same words repeated on stderr do not move it."""
    name = "gemini/usage_limit"
    facts = FACTS[name]
    late = datetime.fromtimestamp(float(str(facts["recorded_at"])), UTC) + timedelta(hours=2)
    limit = detect_limit(lines_of(name), now=late, tz=UTC)
    assert limit is not None and limit.resets_at is not None
    resets_at = datetime.fromtimestamp(int(str(facts["resets_at"])), UTC)
    assert abs(limit.resets_at - resets_at) <= timedelta(seconds=10)
    assert "quota" in limit.message


def test_opencode_limit_is_the_answers_date_plus_retry_after() -> None:
    """OpenCode waits out short Retry-Afters itself, then reports the last 429 with its headers:
    the reset is read from them (at or after the endpoint's own reset)."""
    limit, resets_at = detect_recorded("opencode/usage_limit")
    assert limit.structured and limit.resets_at is not None
    assert limit.resets_at >= resets_at
    assert limit.resets_at - resets_at < timedelta(minutes=5)
    assert limit.message.startswith("Rate limit reached")


@pytest.mark.parametrize("kind", ["claude-code", "codex", "gemini", "aider"])
def test_an_api_keys_429_is_a_limit_without_a_reset(kind: str) -> None:
    """A plain 429 after the CLI's own retries is recognised, but says no reset time."""
    limit = detect_limit(lines_of(f"{kind}/rate_limit"), now=datetime.now(UTC), tz=UTC)
    assert limit is not None
    assert limit.resets_at is None
    assert limit.seconds_left() is None


def test_opencode_429_with_retry_after_zero_resets_when_answered() -> None:
    """OpenCode's recorded 429 carries Retry-After 0: the limit lifts at the answer's Date."""
    limit = detect_limit(lines_of("opencode/rate_limit"), now=datetime.now(UTC), tz=UTC)
    assert limit is not None and limit.resets_at is not None
    assert limit.seconds_left() == 0.0


NOT_LIMITS = sorted(
    f"{p.parent.name}/{p.stem}"
    for p in FIXTURES.glob("*/*.jsonl")
    if not p.stem.startswith(("usage_limit", "rate_limit", "retry_then_success"))
)


@pytest.mark.parametrize("name", NOT_LIMITS)
def test_other_recordings_are_not_limits(name: str) -> None:
    """Success, nothing done, auth errors, overloads, resumed sessions: no limit is seen."""
    assert detect_limit(lines_of(name), now=datetime.now(UTC), tz=UTC) is None


def test_a_warning_event_is_not_a_limit() -> None:
    """Claude Code also sends rate_limit_event while still allowed: that must not pause a team."""
    line = json.dumps(
        {
            "type": "rate_limit_event",
            "rate_limit_info": {"status": "allowed_warning", "resetsAt": 1796121921},
        }
    )
    assert detect_limit([line]) is None


def test_an_agents_own_words_about_limits_are_not_a_limit() -> None:
    """An assistant message that talks about a usage limit (say, in code it writes) is work."""
    line = json.dumps(
        {
            "type": "assistant",
            "message": {
                "content": [{"type": "text", "text": "Added: usage limit resets 10:45am (UTC)"}]
            },
        }
    )
    assert detect_limit([line]) is None


def test_older_claude_code_pipe_message() -> None:
    """Claude Code before 2.x: "Claude AI usage limit reached|EPOCH"."""
    limit = detect_limit(["Claude AI usage limit reached|1796121921"])
    assert limit is not None
    assert limit.resets_at == datetime.fromtimestamp(1796121921, UTC)


def test_a_bare_wall_clock_time_already_past_today_is_tomorrow() -> None:
    """ "try again at 9:00 AM" seen at 15:00 means tomorrow morning, in the agent's zone."""
    zone = ZoneInfo("Europe/Berlin")
    now = datetime(2026, 6, 1, 15, 0, tzinfo=zone)
    limit = detect_limit(["You've hit your usage limit. try again at 9:00 AM."], now=now, tz=zone)
    assert limit is not None
    assert limit.resets_at == datetime(2026, 6, 2, 9, 1, tzinfo=zone)


def test_plain_http_429_with_retry_after_from_any_agent() -> None:
    """A command agent printing an HTTP 429 and its Retry-After pauses until then."""
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    limit = detect_limit(["HTTP/1.1 429 Too Many Requests", "Retry-After: 120"], now=now)
    assert limit is not None
    # The status line alone says "limited"; the header line, which has no limit words, does not.
    assert limit.resets_at is None
    limit = detect_limit(["429 Too Many Requests (Retry-After: 120)"], now=now)
    assert limit is not None and limit.resets_at == now + timedelta(seconds=120)
    limit = detect_limit(["Rate limit reached. Please try again in 1m30s."], now=now)
    assert limit is not None and limit.resets_at == now + timedelta(seconds=90)


def test_watcher_keeps_the_best_report_as_lines_arrive() -> None:
    """Fed live, the watcher keeps the field-given reset over later prose and stderr."""
    name = "claude-code/usage_limit"
    watcher = LimitWatcher(tz=UTC)
    first_hit = None
    for line in lines_of(name):
        if watcher.feed(line) is not None and first_hit is None:
            first_hit = watcher.limit
    assert first_hit is not None and first_hit.structured
    assert watcher.limit is not None
    assert watcher.limit.resets_at == first_hit.resets_at


def test_provider_of_each_kind() -> None:
    """One quota per provider: the CLIs with one provider, and the model's prefix for the rest."""
    assert provider_of("claude-code") == "anthropic"
    assert provider_of("codex", "gpt-5") == "openai"
    assert provider_of("gemini") == "google"
    assert provider_of("opencode", "anthropic/claude-sonnet-4") == "anthropic"
    assert provider_of("aider", "openai/gpt-4o") == "openai"
    assert provider_of("aider", "sonnet") == "aider"
    assert provider_of("command") == "command"


def test_recordings_are_listed_with_their_facts() -> None:
    """Every usage-limit recording has its facts (re-recording keeps them together)."""
    on_disk = {f"{p.parent.name}/{p.stem}" for p in Path(FIXTURES).glob("*/usage_limit*.jsonl")}
    assert on_disk == set(FACTS)
