"""Secrets never shown: which values are secret, and how they are masked."""

from __future__ import annotations

from orchestrator.redact import (
    Redactor,
    is_secret_name,
    redact_bytes,
    redis_secrets,
    secret_values,
)


def test_secret_looking_names_are_recognised() -> None:
    """Keys, tokens, secrets and passwords are secret whatever their case; PATH is not."""
    for name in ("OPENAI_API_KEY", "GITHUB_TOKEN", "aws_secret", "DB_PASSWORD", "PASSWORD_FILE"):
        assert is_secret_name(name), name
    for name in ("PATH", "HOME", "TOKENIZER", "API_KEYS_URL"):
        assert not is_secret_name(name), name


def test_short_values_are_not_redacted() -> None:
    """A token set to "1" or "true" must not turn every 1 in the logs into ***."""
    env = {"DEBUG_TOKEN": "1", "X_SECRET": "true", "REAL_API_KEY": "sk-abcdef123"}
    assert secret_values(env) == ["sk-abcdef123"]
    assert Redactor.from_env(env).redact("1 true sk-abcdef123") == "1 true ***"


def test_every_occurrence_and_overlapping_values_are_masked() -> None:
    """Each occurrence is masked, and a longer secret wins over a shorter one inside it."""
    r = Redactor(["abcdef", "abcdefghij", "zzzzzz"])
    assert r.redact("abcdefghij abcdef x zzzzzzzzzzzz") == "*** *** x ******"
    assert r.redact_lines(["no secret", "abcdef"]) == ["no secret", "***"]


def test_regex_characters_in_secrets_are_literal() -> None:
    """A password full of regex metacharacters is matched literally, not as a pattern."""
    r = Redactor(["p.a+s$s(w)o[r]d*"])
    assert r.redact("pw=p.a+s$s(w)o[r]d* end") == "pw=*** end"
    assert r.redact("pXaasssword") == "pXaasssword"


def test_no_secrets_returns_the_text_unchanged() -> None:
    """With nothing to hide the redactor is falsy and a no-op."""
    r = Redactor.from_env({"PATH": "/usr/bin"})
    assert not r
    assert r.redact("anything") == "anything"


def test_redis_url_password_is_a_secret() -> None:
    """The Redis password counts as written and percent-decoded, also as ?password=."""
    assert redis_secrets("redis://:s3cr%40t!x@host:6379/0") == ["s3cr%40t!x", "s3cr@t!x"]
    assert redis_secrets("unix:///tmp/r.sock?password=hunter22") == ["hunter22"]
    assert redis_secrets(None) == []
    assert redis_secrets("unix:///tmp/r.sock") == []


def test_bytes_redaction_for_the_supervisor() -> None:
    """The byte form (for the stdlib-only supervisor) masks the same values."""
    r = Redactor(["hunter2-secret"])
    assert redact_bytes(b"pw hunter2-secret\n", r.secrets_bytes) == b"pw ***\n"


def test_repr_never_shows_values() -> None:
    """Printing a redactor (in a debug log) never prints what it hides."""
    assert "topsecret" not in repr(Redactor(["topsecret"]))
