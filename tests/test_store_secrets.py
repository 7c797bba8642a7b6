"""The Redis password never appears in any output, log line, error message or repr."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import StoreError
from orchestrator.paths import StateLayout
from orchestrator.settings import Settings
from orchestrator.state.store import open_store, run_with_store
from tests.support.redis import PasswordRedis, _free_port, make_run

pytestmark = pytest.mark.anyio


def pw_settings(url: str) -> Settings:
    return Settings(redis_url=url, retry_attempts=2, retry_max_delay=0.05)  # type: ignore[arg-type]


async def test_a_password_protected_server_works_and_never_leaks(
    password_redis: PasswordRedis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A user with requirepass runs normally; nothing printed or logged shows the password."""
    caplog.set_level(logging.DEBUG)
    settings = pw_settings(password_redis.url)
    texts: list[str] = [repr(settings), str(settings)]
    async with open_store(settings, StateLayout(tmp_path)) as store:
        texts += [repr(store), store.where]
        await make_run(store)
        async with store.lease("r1") as lease:
            await store.run_transition("r1", "running", epoch=lease.epoch)
        texts += [repr(await store.get_run("r1")), repr(await store.read_events("r1"))]
    bad = password_redis.url.replace(password_redis.password, "wrong-" + password_redis.password)
    for url in (bad, f"redis://:{password_redis.password}@127.0.0.1:{_free_port()}/0"):
        with pytest.raises(StoreError) as caught:
            async with open_store(pw_settings(url), StateLayout(tmp_path)):
                pass
        texts += [str(caught.value), repr(caught.value)]
        assert "\n" not in str(caught.value)
    out = capsys.readouterr()
    texts += [out.out, out.err, caplog.text]
    assert password_redis.password not in "\n".join(texts)
    assert "***" in texts[-5] or "***" in texts[-3]


def test_an_unreachable_server_ends_the_command_with_one_line(
    password_redis: PasswordRedis, tmp_path: Path
) -> None:
    """`orchestrate status` with Redis down prints one clear line (URL redacted), exit 1."""
    port = _free_port()
    url = f"redis://:{password_redis.password}@127.0.0.1:{port}/0"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from orchestrator.errors import StoreError\n"
        "from orchestrator.paths import StateLayout\n"
        "from orchestrator.settings import Settings\n"
        "from orchestrator.state.store import run_with_store\n"
        "async def go(store):\n"
        "    return await store.list_runs()\n"
        "try:\n"
        "    run_with_store(Settings(retry_attempts=2), StateLayout(Path(sys.argv[1])), go)\n"
        "except StoreError as exc:\n"
        "    print(f'orchestrate: error: {exc}', file=sys.stderr); sys.exit(exc.exit_code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env={"ORCHESTRATE_REDIS_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    assert password_redis.password not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"127.0.0.1:{port}" in lines[0] and "***" in lines[0], lines
    assert run_with_store is not None
