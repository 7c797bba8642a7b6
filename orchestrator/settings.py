"""``Settings``: everything orchestrate can be told through ``ORCHESTRATE_*`` variables.

Built once at the edge (the CLI) and passed down; frozen. The Redis URL is a
:class:`~pydantic.SecretStr`, so neither ``repr(settings)`` nor a log line ever
shows its password; use :func:`redact_url` whenever a URL must appear in a
message.

::

    ORCHESTRATE_REDIS_URL          redis://, rediss:// (TLS) or unix:// URL; unset: embedded server
    ORCHESTRATE_STATE_DIR          the state folder (default: .orchestrate/ found upward)
    ORCHESTRATE_APPENDFSYNC        everysec (default) or always: when the embedded server fsyncs
    ORCHESTRATE_LOG_STREAM_CAP     agent output lines kept in Redis per team (full log on disk)
    ORCHESTRATE_EVENT_STREAM_CAP   events kept per run
    ORCHESTRATE_LEASE_TTL          seconds a dead orchestrator's lease outlives it
    ORCHESTRATE_RETRY_ATTEMPTS     tries of one Redis call before giving up (connection errors only)
    ORCHESTRATE_RETRY_MAX_DELAY    seconds, cap of the backoff between tries
    ORCHESTRATE_SERVER_START_TIMEOUT  seconds to wait for the embedded server to accept commands
    ORCHESTRATE_SERVER_WATCH_INTERVAL seconds between two looks of the embedded server's
                                   watchdog at its data folder (gone: the server stops)
    ORCHESTRATE_KEY_PREFIX         first part of every key (default ``orch``)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SCHEMES = ("redis", "rediss", "unix")


def redact_url(url: str) -> str:
    """``url`` with its password (and a ``password=`` query value) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable redis url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _password = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if sep else f"***@{hostport}"
    query = "&".join(
        f"{k}=***" if k.lower() == "password" else f"{k}{eq}{v}"
        for k, eq, v in (item.partition("=") for item in parts.query.split("&") if item)
    )
    text = f"{parts.scheme}://{netloc}{parts.path}"  # urlunsplit would drop an empty netloc
    text += f"?{query}" if query else ""
    return text + (f"#{parts.fragment}" if parts.fragment else "")


class Settings(BaseSettings):
    """orchestrate's settings; frozen, unknown keyword arguments refused."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRATE_",
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
    )

    redis_url: SecretStr | None = None
    state_dir: Path | None = None
    appendfsync: Literal["everysec", "always"] = "everysec"
    log_stream_cap: int = Field(default=10_000, ge=100)
    event_stream_cap: int = Field(default=100_000, ge=1_000)
    lease_ttl: float = Field(default=30.0, gt=0.5, le=3600)
    retry_attempts: int = Field(default=6, ge=1, le=100)
    retry_max_delay: float = Field(default=2.0, gt=0, le=60)
    server_start_timeout: float = Field(default=20.0, gt=0, le=600)
    server_watch_interval: float = Field(default=5.0, ge=0.05, le=3600)
    key_prefix: str = Field(default="orch", pattern=r"^[A-Za-z0-9_.-]+$")

    @field_validator("redis_url", mode="before")
    @classmethod
    def _check_url(cls, value: object) -> object:
        if value in (None, ""):
            return None
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(raw, str):
            raise ValueError("the Redis URL must be a string")
        scheme = raw.partition("://")[0].lower() if "://" in raw else ""
        if scheme not in _SCHEMES:
            # Never echo the value: it may hold a password.
            raise ValueError("the Redis URL must start with redis://, rediss:// or unix://")
        return value

    @property
    def redis_url_redacted(self) -> str | None:
        """The Redis URL with its password masked, for messages; ``None``: embedded server."""
        return None if self.redis_url is None else redact_url(self.redis_url.get_secret_value())
