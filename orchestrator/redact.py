"""Secrets out of everything orchestrate stores or prints: ``Redactor``.

Which values are secret: those of environment variables whose name ends in
``_API_KEY``, ``_TOKEN`` or ``_SECRET`` or contains ``PASSWORD`` (any case),
plus explicit ones (the Redis password). Values shorter than
:data:`SECRET_MIN_LEN` are ignored: redacting ``1`` or ``true`` would redact
everything. Each occurrence becomes ``***``::

    redactor = Redactor.from_env(extra=redis_secrets(settings_url))
    line = redactor.redact(line)

One compiled alternation (longest value first) does the work, so a million
lines cost one regex scan each; with no secrets ``redact`` returns its input.

Standard library only: the agent supervisor (:mod:`orchestrator.supervisor`)
imports :func:`secret_values` and :func:`redact_bytes` from here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs, unquote, urlsplit

SECRET_MIN_LEN = 6
"""Shorter values are never treated as secrets."""
MASK = "***"
_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET")


def is_secret_name(name: str) -> bool:
    """Does a variable with this name hold a secret (``*_API_KEY``, ``*_TOKEN``, ...)?"""
    upper = name.upper()
    return upper.endswith(_SUFFIXES) or "PASSWORD" in upper


def secret_values(env: Mapping[str, str] | None = None, *, extra: Iterable[str] = ()) -> list[str]:
    """The values to redact from ``env`` (default ``os.environ``) and ``extra``, longest first."""
    source = os.environ if env is None else env
    found = {v for k, v in source.items() if is_secret_name(k)}
    found.update(extra)
    return sorted((v for v in found if len(v) >= SECRET_MIN_LEN), key=lambda v: (-len(v), v))


def redis_secrets(url: str | None) -> list[str]:
    """The password of a Redis URL (as written and percent-decoded; ``?password=`` too)."""
    if not url:
        return []
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    found = [password] if password else []
    found += parse_qs(parts.query).get("password", [])
    return sorted({v for p in found for v in (p, unquote(p))})


def redact_bytes(data: bytes, secrets: Iterable[bytes]) -> bytes:
    """``data`` with every secret replaced by ``***`` (for byte streams; stdlib only)."""
    for secret in secrets:
        if secret in data:
            data = data.replace(secret, MASK.encode())
    return data


class Redactor:
    """Replaces known secret values with ``***``. Build it once; ``redact`` is cheap."""

    __slots__ = ("_pattern", "_secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted(
            {s for s in secrets if len(s) >= SECRET_MIN_LEN}, key=lambda v: (-len(v), v)
        )
        self._secrets = tuple(values)
        self._pattern = re.compile("|".join(map(re.escape, values))) if values else None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, extra: Iterable[str] = ()
    ) -> Redactor:
        """A redactor for ``env`` (default ``os.environ``) plus ``extra`` secret values."""
        return cls(secret_values(env, extra=extra))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __repr__(self) -> str:  # never the values themselves
        return f"Redactor({len(self._secrets)} secrets)"

    @property
    def secrets_bytes(self) -> list[bytes]:
        """The values as UTF-8 bytes, longest first (for :func:`redact_bytes`)."""
        return [s.encode("utf-8", "surrogateescape") for s in self._secrets]

    def redact(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def redact_lines(self, lines: Iterable[str]) -> list[str]:
        """:meth:`redact` on each line."""
        if self._pattern is None:
            return list(lines)
        sub = self._pattern.sub
        return [sub(MASK, line) for line in lines]
