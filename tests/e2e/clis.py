"""The real agent CLIs, pointed at the scripted endpoint, each in a home of its own.

``.ci/agent-clis.sh`` installs them into ``.e2e/node_modules/.bin`` (or
``$AGENT_CLIS_PREFIX``). :func:`prepare` returns what a plan's ``agents:`` entry
needs to run one of them against :class:`~tests.support.llm_server.LLMServer`:
the executable, the environment (HOME, config folders, endpoint, key) and the
model. Nothing is read from or written to the real home.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.llm_server import MODEL

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("claude-code", "codex", "opencode", "gemini")
BINARIES = {"claude-code": "claude", "codex": "codex", "opencode": "opencode", "gemini": "gemini"}
API_KEY = "sk-scripted-test-key"


def bin_dir() -> Path:
    prefix = os.environ.get("AGENT_CLIS_PREFIX") or str(ROOT / ".e2e")
    return Path(prefix) / "node_modules" / ".bin"


def find(kind: str) -> str | None:
    """The installed binary of ``kind`` (our prefix first, then PATH), or None."""
    name = BINARIES[kind]
    local = bin_dir() / name
    if local.exists():
        return str(local)
    return shutil.which(name)


@dataclass(frozen=True)
class CLI:
    kind: str
    command: str
    model: str
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()

    def agent_entry(self) -> dict[str, object]:
        """A plan ``agents:`` entry running this CLI."""
        entry: dict[str, object] = {
            "kind": self.kind,
            "command": self.command,
            "model": self.model,
            "env": dict(self.env),
        }
        if self.args:
            entry["args"] = list(self.args)
        return entry


def prepare(kind: str, llm_url: str, home: Path) -> CLI:
    """Configure ``kind`` to talk to the scripted endpoint at ``llm_url``, living in ``home``."""
    command = find(kind)
    if command is None:
        raise FileNotFoundError(f"{BINARIES[kind]} is not installed (run .ci/agent-clis.sh)")
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local/state"),
    }
    if kind == "claude-code":
        env |= {
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
            "ANTHROPIC_BASE_URL": llm_url,
            "ANTHROPIC_API_KEY": API_KEY,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            # The CLI's own retries would hide an injected fault from orchestrate.
            "CLAUDE_CODE_MAX_RETRIES": "0",
        }
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            env["IS_SANDBOX"] = "1"  # root: bypassPermissions is refused without it
        return CLI(kind, command, MODEL, env)
    if kind == "codex":
        codex_home = home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(
            'model_provider = "scripted"\n'
            "[model_providers.scripted]\n"
            'name = "scripted"\n'
            f'base_url = "{llm_url}/v1"\n'
            'env_key = "SCRIPTED_API_KEY"\n'
            'wire_api = "responses"\n'
            "request_max_retries = 0\n"
            "stream_max_retries = 0\n"
        )
        env |= {"CODEX_HOME": str(codex_home), "SCRIPTED_API_KEY": API_KEY}
        return CLI(kind, command, MODEL, env)
    if kind == "opencode":
        config = home / ".config" / "opencode"
        config.mkdir(parents=True, exist_ok=True)
        (config / "opencode.json").write_text(
            json.dumps(
                {
                    "$schema": "https://opencode.ai/config.json",
                    "provider": {
                        "scripted": {
                            "npm": "@ai-sdk/openai-compatible",
                            "name": "Scripted",
                            "options": {"baseURL": f"{llm_url}/v1", "apiKey": API_KEY},
                            "models": {MODEL: {"name": "Scripted"}},
                        }
                    },
                    "autoupdate": False,
                    "share": "disabled",
                },
                indent=2,
            )
        )
        env |= {
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        }
        return CLI(kind, command, f"scripted/{MODEL}", env)
    if kind == "gemini":
        # GOOGLE_GEMINI_BASE_URL alone selects the "gateway" auth type, which 0.61's
        # headless auth check rejects ("Invalid auth method selected.", exit 41): pick
        # the API-key auth in settings. maxAttempts 1: its own retries (backing off to
        # 30 s) would hide an injected fault from orchestrate and make the tier slow.
        settings = home / ".gemini" / "settings.json"
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(
            json.dumps(
                {
                    "security": {"auth": {"selectedType": "gemini-api-key"}},
                    "general": {"maxAttempts": 1, "disableAutoUpdate": True},
                    "privacy": {"usageStatisticsEnabled": False},
                },
                indent=2,
            )
        )
        env |= {"GEMINI_API_KEY": API_KEY, "GOOGLE_GEMINI_BASE_URL": llm_url}
        return CLI(kind, command, MODEL, env)
    raise ValueError(kind)
