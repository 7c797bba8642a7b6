"""Settings: ORCHESTRATE_* variables, frozen, and a Redis password that never shows."""

from __future__ import annotations

import os
import subprocess
import sys

import pydantic
import pytest

from orchestrator.settings import Settings, redact_url
from tests.support.gitrepo import GitRepo

SECRET = "s3cr3t-pw-7f1e"


def test_settings_come_from_orchestrate_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """ORCHESTRATE_REDIS_URL and friends configure orchestrate without flags."""
    monkeypatch.setenv("ORCHESTRATE_REDIS_URL", f"redis://:{SECRET}@localhost:6379/0")
    monkeypatch.setenv("ORCHESTRATE_APPENDFSYNC", "always")
    monkeypatch.setenv("ORCHESTRATE_LEASE_TTL", "12")
    s = Settings()
    assert s.redis_url is not None and SECRET in s.redis_url.get_secret_value()
    assert (s.appendfsync, s.lease_ttl) == ("always", 12.0)


def test_defaults_use_the_embedded_server() -> None:
    """With nothing configured, orchestrate uses its own embedded server, fsync every second."""
    s = Settings()
    assert s.redis_url is None and s.appendfsync == "everysec" and s.redis_url_redacted is None


def test_the_password_is_not_in_repr_or_str() -> None:
    """Printing or logging the settings never reveals the Redis password."""
    s = Settings(redis_url=f"rediss://user:{SECRET}@host:6380/1")  # type: ignore[arg-type]
    for text in (repr(s), str(s), s.model_dump_json(), str(s.model_dump())):
        assert SECRET not in text
    assert s.redis_url_redacted == "rediss://user:***@host:6380/1"


def test_a_bad_url_is_refused_without_echoing_it() -> None:
    """A typo in the URL is reported, but the (secret-bearing) value is not repeated."""
    with pytest.raises(pydantic.ValidationError) as caught:
        Settings(redis_url=f"http://:{SECRET}@host")  # type: ignore[arg-type]
    assert SECRET not in str(caught.value)
    assert "redis://" in str(caught.value)


def test_settings_are_frozen_and_strict() -> None:
    """Settings are built once and passed down; nobody changes them on the way."""
    s = Settings()
    with pytest.raises(pydantic.ValidationError):
        s.lease_ttl = 3  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        Settings(no_such_setting=1)  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        Settings(appendfsync="no")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@h:1/0", "redis://:***@h:1/0"),
        (f"redis://{SECRET}@h", "redis://***@h"),
        ("redis://h:6379", "redis://h:6379"),
        (f"unix:///tmp/r.sock?db=1&password={SECRET}", "unix:///tmp/r.sock?db=1&password=***"),
        (f"unix://u:{SECRET}@/tmp/r.sock", "unix://u:***@/tmp/r.sock"),
    ],
)
def test_urls_are_redacted_for_messages(url: str, shown: str) -> None:
    """Error lines name the server so the user can fix it, with the password masked."""
    assert redact_url(url) == shown


BAD_SETTINGS = [
    ({"ORCHESTRATE_LEASE_TTL": "abc"}, (), "ORCHESTRATE_LEASE_TTL"),
    ({"ORCHESTRATE_APPENDFSYNC": "never"}, (), "ORCHESTRATE_APPENDFSYNC"),
    ({}, ("--redis-url", "http://user:pw-never-shown@host/0"), "ORCHESTRATE_REDIS_URL"),
]


@pytest.mark.parametrize(("env", "flags", "named"), BAD_SETTINGS)
@pytest.mark.parametrize("command", ["run", "resume", "cancel", "report", "status"])
def test_a_bad_setting_is_one_line_and_exit_2_in_every_command(
    command: str,
    env: dict[str, str],
    flags: tuple[str, ...],
    named: str,
    git_repo: GitRepo,
) -> None:
    """A bad ORCHESTRATE_* value or `--redis-url http://...` is one line naming the
    setting, exit 2, in run, resume, cancel, report and status: never a traceback, never
    the value (it may hold a password)."""
    tmp_path = git_repo.path
    (tmp_path / ".orchestrate" / "redis").mkdir(parents=True)
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "version: 1\nname: demo\nrepo: .\n"
        f"agents: {{a: {{kind: command, command: [{sys.executable}]}}}}\n"
        "defaults: {agent: a}\nteams: [{id: db, task: the database}]\n"
    )
    args = [command, str(plan)] if command == "run" else [command]
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATE_")}
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", *args, *flags],
        cwd=tmp_path,
        env={**clean_env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and named in proc.stderr, proc.stderr
    assert "pw-never-shown" not in proc.stderr
