"""Who may see the dashboard and act on it.

- Loopback binds (the default) need no token, but only answer requests whose
  ``Host`` is a loopback name (a web page elsewhere cannot reach them through
  DNS rebinding).
- Any other bind needs the access token: printed at start (or read from
  ``--token-file``); a browser opens ``/?token=...`` once and keeps it in an
  HttpOnly, SameSite=Strict cookie; scripts send ``Authorization: Bearer``.
- Every action is a POST carrying the page's CSRF token in an ``X-CSRF-Token``
  header (an HMAC of the server's secret: a page elsewhere can neither read
  it nor send that header across origins), and its ``Origin``, when sent,
  must be this server.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import UsageError

COOKIE = "orchestrate_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """Is ``host`` (a bind address or a Host header's name) this machine only?"""
    name = host.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def read_token_file(path: Path) -> str:
    """The token in ``path`` (first line, stripped); UsageError when unreadable or short."""
    try:
        token = path.read_text().strip().splitlines()[0].strip() if path.stat().st_size else ""
    except (OSError, IndexError) as exc:
        raise UsageError(f"cannot read the token file {path}: {exc}") from exc
    if len(token) < 16:
        raise UsageError(f"the token in {path} is too short (16 characters at least)")
    return token


@dataclass(frozen=True)
class Access:
    """The server's access rules."""

    token: str | None
    """Required from every request when set (a bind beyond loopback)."""
    loopback: bool
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @classmethod
    def for_bind(cls, host: str, token_file: Path | None) -> Access:
        """Loopback: no token unless a file gives one; anything else: the file's or a new one."""
        loop = is_loopback(host)
        if token_file is not None:
            return cls(read_token_file(token_file), loop)
        return cls(None if loop else secrets.token_urlsafe(24), loop)

    def host_ok(self, host_header: str) -> bool:
        """A loopback server answers loopback names only (DNS rebinding)."""
        if not self.loopback:
            return True
        name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
        if host_header.startswith("[") and "]:" in host_header:
            name = host_header.split("]:", 1)[0] + "]"
        return is_loopback(name)

    def token_ok(self, presented: str | None) -> bool:
        if self.token is None:
            return True
        return presented is not None and hmac.compare_digest(presented, self.token)

    def csrf(self) -> str:
        """The CSRF token pages carry (the same for every page of this server's life)."""
        return hmac.new(self.secret, b"csrf", hashlib.sha256).hexdigest()

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf())
