"""Webhook notifications: a team failed, a team waits for approval, the run finished.

A plan's ``notify:`` lists webhooks::

    notify:
      - url: https://hooks.slack.com/services/T000/B000/XXXX
        format: slack                     # or generic (default): our JSON body
        events: [team_failed, run_finished, awaiting_approval]   # default: all three

Posting never blocks or fails the run: every post has a short timeout and a
few retries (tenacity; 5xx, 429 and connection errors only), all hooks of one
event are posted at once in a task group, and the whole delivery is bounded by
:attr:`Notifier.deadline` (``move_on_after``). Failures are logged, never
raised. A webhook URL is a secret (Slack's carries its token in the path): it
appears in logs and messages only as :func:`mask_webhook_url` shows it.

The engine holds one :class:`Notifier` per run::

    notifier = Notifier.for_plan(plan)
    tg.start_soon(notifier.team_failed, run_id, team, reason, report_path)   # in its task group
    await notifier.run_finished(run_id, status=..., failed=[...], reason=..., report=path)
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import anyio
import structlog

from orchestrator.plan.models import NotifyEvent as EventName
from orchestrator.plan.models import Webhook, mask_webhook_url
from orchestrator.state.status import TeamStatus

log = structlog.get_logger("orchestrate.notify")

DEFAULT_TIMEOUT = 5.0
"""Seconds for one POST (connect, write, read)."""
DEFAULT_ATTEMPTS = 3


NotifyConfig: TypeAlias = tuple[Webhook, ...]
"""The plan's ``notify:`` field: ``notify: tuple[Webhook, ...] = ()`` on ``Plan``."""


def webhooks_of(plan: object) -> NotifyConfig:
    """The plan's webhooks (``plan.notify``; none when the plan model has no such field)."""
    raw = getattr(plan, "notify", None) or ()
    return tuple(h if isinstance(h, Webhook) else Webhook.model_validate(h) for h in raw)


# -- bodies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """What happened, in terms every format can show."""

    event: EventName
    run_id: str
    status: str
    plan: str | None = None
    team: str | None = None
    failed: tuple[str, ...] = ()
    reason: str | None = None
    report: str | None = None
    at: float = 0.0

    @property
    def text(self) -> str:
        if self.event == "awaiting_approval":
            from orchestrator.state.gates import approve_command, reject_command

            head = (
                f"orchestrate: team {self.team} of run {self.run_id} waits for approval: "
                f"`{approve_command(self.run_id, self.team or '?')}` or "
                f"`{reject_command(self.run_id, self.team or '?')}`"
            )
        elif self.event == "team_failed":
            head = f"orchestrate: team {self.team} failed in run {self.run_id}"
        else:
            head = f"orchestrate: run {self.run_id} {self.status}"
            if self.failed:
                head += f" (failed: {', '.join(self.failed)})"
        if self.reason:
            head += f": {self.reason}"
        if self.report:
            head += f"\nReport: {self.report}"
        return head


def body(message: Message, fmt: str) -> dict[str, Any]:
    """The JSON body of ``message`` in ``fmt`` (generic or slack)."""
    if fmt == "slack":
        return {
            "text": message.text,
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": message.text}}],
        }
    payload: dict[str, Any] = {
        "source": "orchestrate",
        "event": message.event,
        "run": message.run_id,
        "plan": message.plan,
        "status": message.status,
        "team": message.team,
        "failed": list(message.failed),
        "reason": message.reason,
        "report": message.report,
        "text": message.text,
        "at": message.at,
    }
    if message.event == "awaiting_approval" and message.team:
        from orchestrator.state.gates import approve_command, reject_command

        payload["approve"] = approve_command(message.run_id, message.team)
        payload["reject"] = reject_command(message.run_id, message.team)
    return payload


# -- delivery -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """How posting to one webhook went (``url`` redacted)."""

    url: str
    ok: bool
    status_code: int | None = None
    error: str | None = None
    attempts: int = 0


class _Retryable(Exception):
    """A response worth retrying (5xx, 429)."""


class Notifier:
    """Posts :class:`Message` s to the plan's webhooks; never raises, bounded in time."""

    def __init__(
        self,
        hooks: Sequence[Webhook],
        *,
        plan_name: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: float = 0.2,
    ) -> None:
        self.hooks = tuple(hooks)
        self.plan_name = plan_name
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff

    @classmethod
    def for_plan(cls, plan: object, **kw: Any) -> Notifier:
        return cls(webhooks_of(plan), plan_name=getattr(plan, "name", None), **kw)

    @property
    def deadline(self) -> float:
        """The most one event's delivery may take, retries and pauses included."""
        return float(self.timeout * self.attempts + self.backoff * 2.0**self.attempts + 1.0)

    async def team_failed(
        self, run_id: str, team: str, reason: str | None = None, report: Path | str | None = None
    ) -> list[Delivery]:
        return await self.send(
            Message("team_failed", run_id, TeamStatus.FAILED, self.plan_name, team, (team,), reason,
                    str(report) if report else None, time.time())
        )  # fmt: skip

    async def awaiting_approval(
        self, run_id: str, team: str, report: Path | str | None = None
    ) -> list[Delivery]:
        """A team has succeeded and waits at its gate (``approval: true``)."""
        return await self.send(
            Message("awaiting_approval", run_id, "awaiting_approval", self.plan_name, team, (),
                    None, str(report) if report else None, time.time())
        )  # fmt: skip

    async def run_finished(
        self,
        run_id: str,
        *,
        status: str,
        failed: Sequence[str] = (),
        reason: str | None = None,
        report: Path | str | None = None,
    ) -> list[Delivery]:
        return await self.send(
            Message("run_finished", run_id, status, self.plan_name, None, tuple(failed), reason,
                    str(report) if report else None, time.time())
        )  # fmt: skip

    async def send(self, message: Message) -> list[Delivery]:
        """Post ``message`` to every webhook subscribed to its event, at once; never raises."""
        hooks = [h for h in self.hooks if message.event in h.events]
        if not hooks:
            return []
        import httpx

        results: dict[int, Delivery] = {}
        with anyio.move_on_after(self.deadline):
            async with (
                httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client,
                anyio.create_task_group() as tg,
            ):
                for index, hook in enumerate(hooks):
                    tg.start_soon(self._post, client, hook, message, results, index)
        out = []
        for index, hook in enumerate(hooks):
            got = results.get(index)
            if got is None:
                got = Delivery(mask_webhook_url(hook.url), False, error="gave up at the deadline")
                log.warning("webhook not delivered", url=got.url, error=got.error)
            out.append(got)
        return out

    async def _post(
        self,
        client: Any,
        hook: Webhook,
        message: Message,
        results: dict[int, Delivery],
        index: int,
    ) -> None:
        import httpx
        from tenacity import (
            AsyncRetrying,
            retry_if_exception_type,
            stop_after_attempt,
            wait_exponential,
        )

        shown = mask_webhook_url(hook.url)
        payload = body(message, hook.format)
        tries = 0
        status: int | None = None
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type((httpx.TransportError, _Retryable)),
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=self.backoff, max=5),
                reraise=True,
            ):
                with attempt:
                    tries += 1
                    response = await client.post(hook.url, json=payload)
                    status = response.status_code
                    if status >= 500 or status == 429:
                        raise _Retryable(f"HTTP {status}")
            ok = status is not None and 200 <= status < 300
            error = None if ok else f"HTTP {status}"
        except (httpx.HTTPError, _Retryable) as exc:
            ok = False
            error = _describe(exc, hook.url, shown)
        results[index] = Delivery(shown, ok, status, error, tries)
        if ok:
            log.debug("webhook delivered", url=shown, on=message.event, status=status)
        else:
            log.warning("webhook failed", url=shown, on=message.event, error=error, tries=tries)


def _describe(exc: BaseException, url: str, shown: str) -> str:
    """One line about a failed post, the URL (and its path alone) replaced by its redacted form."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    text = text.replace(url, shown)
    path = urlsplit(url).path
    if len(path) > 1:
        text = text.replace(path, "/***")
    return text
