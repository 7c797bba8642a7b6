"""Webhook notifications against a real HTTP server of the test on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from orchestrator.run.notify import Notifier, Webhook, mask_webhook_url, webhooks_of
from tests.support.engine import SEVEN, files_for, plan_yaml, write_agent
from tests.support.gitrepo import GitRepo
from tests.test_cli_run import _env as cli_env
from tests.test_cli_run import _plan as plan_file
from tests.test_cli_run import _run as cli_run

pytestmark = pytest.mark.anyio

SECRET = "T000/B111/sEcReTtOkEn"


@dataclass
class Hooked:
    url: str
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    fail_first: int = 0


@pytest.fixture
def server() -> Iterator[Hooked]:
    """A loopback HTTP server recording every POST (path, JSON body)."""
    state = Hooked(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length))
            if state.fail_first > 0:
                state.fail_first -= 1
                self.send_response(503)
                self.end_headers()
                return
            state.received.append((self.path, payload))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


async def test_team_failure_and_run_end_posted_in_generic_and_slack_shape(server: Hooked) -> None:
    """A team failure and the run's end reach the webhooks: orchestrate's JSON (naming the
    failed team and the report) and Slack's incoming-webhook shape (a text)."""
    hooks = [
        Webhook(url=f"{server.url}/generic"),
        Webhook(url=f"{server.url}/slack/{SECRET}", format="slack", events=("run_finished",)),
    ]
    notifier = Notifier(hooks, plan_name="demo", timeout=2, attempts=2, backoff=0.01)
    sent = await notifier.team_failed("demo-1", "auth", "exit code 2", "/r/report.html")
    assert [d.ok for d in sent] == [True]
    done = await notifier.run_finished(
        "demo-1", status="failed", failed=["auth"], reason="failed: auth", report="/r/report.html"
    )
    assert [d.ok for d in done] == [True, True]
    by_path: dict[str, list[dict[str, Any]]] = {}
    for path, payload in server.received:
        by_path.setdefault(path, []).append(payload)
    first, last = by_path["/generic"]
    assert first["event"] == "team_failed" and first["team"] == "auth"
    assert first["reason"] == "exit code 2" and first["report"] == "/r/report.html"
    assert last["event"] == "run_finished" and last["failed"] == ["auth"]
    (slack,) = by_path[f"/slack/{SECRET}"]
    assert set(slack) == {"text", "blocks"}
    assert "run demo-1 failed" in slack["text"] and "/r/report.html" in slack["text"]


async def test_5xx_is_retried(server: Hooked) -> None:
    """A webhook answering 503 is tried again and the message arrives."""
    server.fail_first = 1
    notifier = Notifier([Webhook(url=f"{server.url}/x")], timeout=2, attempts=3, backoff=0.01)
    (delivery,) = await notifier.run_finished("r", status="succeeded")
    assert delivery.ok and delivery.attempts == 2
    assert len(server.received) == 1


async def test_dead_webhook_neither_fails_nor_outlasts_its_deadline() -> None:
    """A webhook that accepts connections and never answers costs at most the notifier's
    deadline; nothing is raised and the failure is logged without the URL's secret path."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)  # never accepted, never answered
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/services/{SECRET}"
        notifier = Notifier([Webhook(url=url)], timeout=0.3, attempts=2, backoff=0.01)
        started = time.monotonic()
        with capture_logs() as logs:
            (delivery,) = await notifier.team_failed("r", "db", "boom")
        took = time.monotonic() - started
    assert not delivery.ok and delivery.error
    assert took < notifier.deadline + 1.0
    assert SECRET not in repr(logs) and SECRET not in repr(delivery)
    assert delivery.url.endswith("/***")


async def test_refused_connection_is_reported_not_raised() -> None:
    """Nothing listening at the URL: a failed delivery, no exception."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    notifier = Notifier([Webhook(url=f"http://127.0.0.1:{port}/h")], timeout=0.5, attempts=1)
    (delivery,) = await notifier.run_finished("r", status="failed")
    assert not delivery.ok and "ConnectError" in (delivery.error or "")


def test_webhook_config_is_strict_and_keeps_its_url_secret() -> None:
    """Unknown keys and non-http URLs are refused without echoing the URL; repr hides it."""
    with pytest.raises(ValidationError) as err:
        Webhook.model_validate({"url": f"ftp://x/{SECRET}"})
    assert SECRET not in str(err.value)
    with pytest.raises(ValidationError):
        Webhook.model_validate({"url": "https://x/y", "colour": "red"})
    hook = Webhook(url=f"https://hooks.slack.com/services/{SECRET}")
    assert SECRET not in repr(hook) and SECRET not in str(hook)
    assert mask_webhook_url(hook.url) == "https://hooks.slack.com/***"
    assert mask_webhook_url("https://user:pw@h.example:8443/") == "https://h.example:8443"


def test_webhooks_read_from_a_plan_without_the_field() -> None:
    """A plan model without ``notify`` has no webhooks; dicts are validated into Webhooks."""

    class Bare:
        name = "demo"

    class WithHooks:
        name = "demo"
        notify = ({"url": "https://h.example/x", "format": "slack"},)

    assert webhooks_of(Bare()) == ()
    (hook,) = webhooks_of(WithHooks())
    assert hook.format == "slack"
    assert hook.events == ("team_failed", "run_finished", "awaiting_approval")


# -- through `orchestrate run` --------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_posts_a_team_failure_and_its_end(
    server: Hooked, git_repo: GitRepo, redis_url: str, tmp_path: Path
) -> None:
    """`orchestrate run` with `notify:` posts when a team fails (naming it, its reason and
    the HTML report) and when the run ends (naming the failed team); a dead webhook beside
    it neither fails the run nor changes its exit code (1, for the failed team)."""
    teams = SEVEN[:2]
    command, _ = write_agent(tmp_path / "agent", files_for(teams, db={"fail_attempts": 9}))
    hooks = [{"url": f"{server.url}/hook"}, {"url": f"http://127.0.0.1:{_free_port()}/dead"}]
    text = plan_yaml(command, teams, defaults={"retries": 0}, notify=hooks)
    proc = cli_run(plan_file(git_repo, text), cli_env(redis_url, f"t{uuid.uuid4().hex[:8]}"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    events = [payload for path, payload in server.received if path == "/hook"]
    assert [e["event"] for e in events] == ["team_failed", "run_finished"]
    failed, finished = events
    assert failed["team"] == "db" and "exit code" in (failed["reason"] or "")
    assert failed["report"].endswith("report.html")
    assert finished["status"] == "failed" and finished["failed"] == ["db"]
    assert Path(finished["report"]).is_file() and finished["run"] == failed["run"]
