"""A scripted LLM endpoint on loopback for the real agent CLIs (tests/e2e/).

One server speaks the four wire formats the CLIs use, routed by path:

    POST /v1/messages           Anthropic Messages API, streamed (Claude Code)
    POST /v1/responses          OpenAI Responses API, streamed (Codex)
    POST /v1/chat/completions   OpenAI Chat Completions, streamed (OpenCode) or not (Aider)
    POST /v1beta/models/M:streamGenerateContent?alt=sse, M:generateContent
                                the Gemini API (Gemini CLI, GOOGLE_GEMINI_BASE_URL)
    GET  /v1/models             a one-model list in the caller's dialect
    GET  /v1/responses          (Codex tries a websocket first) -> 426, it falls back to POST

What it answers comes from *scripts*: a script is chosen by a marker string
found in the conversation's first user message (put a unique token in each
team's task), and holds a queue of :class:`Turn`\\ s. A turn either fails with
an HTTP status (429, 529, 500, 401) for ``times`` requests, or writes files
through the CLI's own file tool (Claude Code ``Write``, OpenCode ``write``,
Gemini CLI ``write_file``, Codex's shell tool from the request's ``tools``)
and then, when the next request carries the tool results, ends with
``text``. A turn with no writes ends at once (the "did nothing" fault).
Requests without tools (titles, summaries, quota probes) get a short text
(or, when they ask for JSON with a schema, the smallest object that fits it)
and do not consume a turn.

Aider has no tool calls: a script made with ``fenced=True`` answers every
request (tools or not) from its turns, in plain text, each write as a
whole-file fenced block (Aider's ``whole`` edit format: the path on a line,
then the content in a ``` fence), and Aider writes the files itself.

Every request is recorded (:attr:`LLMServer.requests`), so a test can check
that a retry resumed the session: its first request carries the earlier
conversation.

Use as a context manager (``with LLMServer() as llm: ...``); it serves from a
daemon thread. Pure stdlib, so the server works in any test process.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "scripted-1"

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "bad request"),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "forbidden"),
    429: ("rate_limit_error", "Rate limited: slow down (scripted)"),
    500: ("api_error", "Internal server error (scripted)"),
    503: ("api_error", "Service unavailable (scripted)"),
    529: ("overloaded_error", "Overloaded (scripted)"),
}


@dataclass
class Turn:
    """One user turn of a script: fail with ``status``, or write files then say ``text``."""

    writes: Mapping[str, str] = field(default_factory=dict)
    text: str = "Done: the deliverables are written."
    status: int | None = None
    """An HTTP error status answered instead (429, 529, 500, 401, ...)."""
    times: int = 1
    """How many requests get ``status`` before the turn is used up."""
    resets_at: float | None = None
    """With ``status`` 429: a usage limit that resets at this epoch second, said the
    way each provider says it (``Retry-After``, Anthropic's ``ratelimit-unified``
    headers, OpenAI's ``usage_limit_reached`` body, Google's ``RetryInfo``)."""

    @classmethod
    def fail(cls, status: int, times: int = 1) -> Turn:
        return cls(status=status, times=times)

    @classmethod
    def limit(cls, resets_at: float, times: int = 1) -> Turn:
        """A usage limit (HTTP 429) lifting at ``resets_at`` (epoch seconds)."""
        return cls(status=429, times=times, resets_at=resets_at)

    @classmethod
    def nothing(cls, text: str = "I looked around and did nothing.") -> Turn:
        return cls(text=text)


@dataclass
class Recorded:
    """One request the server received."""

    method: str
    path: str
    api: str  # anthropic | responses | chat | models | other
    headers: dict[str, str]
    body: dict[str, Any]
    script: str | None = None
    status: int = 200


@dataclass
class _Script:
    marker: str
    turns: list[Turn]
    repeat_last: bool
    fenced: bool = False
    active: Turn | None = None


class LLMServer:
    """The scripted endpoint. ``url`` is ``http://127.0.0.1:PORT`` (no ``/v1``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: list[_Script] = []
        self.requests: list[Recorded] = []
        self._ids = itertools.count(1)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LLMServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scripting ---------------------------------------------------------------------------

    def script(
        self, marker: str, *turns: Turn, repeat_last: bool = True, fenced: bool = False
    ) -> None:
        """Conversations whose first user message contains ``marker`` play ``turns`` in order.

        When the queue runs out, the last turn repeats (``repeat_last``) or the
        model just says "Nothing more to do." ``fenced``: the CLI has no tools
        (Aider); every request plays a turn, its writes as fenced file blocks.
        """
        with self._lock:
            self._scripts.append(_Script(marker, list(turns), repeat_last, fenced))

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests.clear()

    def requests_for(self, marker: str, api: str | None = None) -> list[Recorded]:
        """The model requests (with tools, or any for a fenced script) a script answered."""
        with self._lock:
            fenced = {s.marker for s in self._scripts if s.fenced}
            return [
                r
                for r in self.requests
                if r.script == marker
                and (api is None or r.api == api)
                and (_has_tools(r.body) or marker in fenced)
            ]

    # -- the model ---------------------------------------------------------------------------

    def _decide(self, api: str, body: dict[str, Any]) -> tuple[str | None, Turn | None, bool, bool]:
        """-> (script marker, the turn to play or None for plain text, after_tools, fenced)."""
        first = _first_user_text(api, body)
        after_tools = _ends_with_tool_result(api, body)
        with self._lock:
            script = next((s for s in self._scripts if s.marker in first), None)
            if script is None or not (script.fenced or _has_tools(body)):
                return (script.marker if script else None), None, after_tools, False
            marker, turn, after_tools = self._play(script, after_tools)
            return marker, turn, after_tools, script.fenced

    def _play(self, script: _Script, after_tools: bool) -> tuple[str, Turn, bool]:
        """The turn ``script`` plays now (the lock is held)."""
        if after_tools and script.active is not None:
            return script.marker, script.active, True
        # A new user message (first prompt, or a retry's feedback): the next turn.
        turn = script.turns[0] if script.turns else None
        if turn is None:
            return script.marker, Turn(text="Nothing more to do."), False
        if turn.status is not None:
            turn.times -= 1
            if turn.times <= 0:
                self._advance(script)
            return script.marker, Turn(status=turn.status, resets_at=turn.resets_at), False
        self._advance(script)
        script.active = turn
        return script.marker, turn, False

    @staticmethod
    def _advance(script: _Script) -> None:
        if len(script.turns) > 1 or not script.repeat_last:
            script.turns.pop(0)

    def _record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def next_id(self) -> int:
        return next(self._ids)


# -- request inspection -------------------------------------------------------------------------


def _has_tools(body: Mapping[str, Any]) -> bool:
    return bool(body.get("tools"))


def _gemini_parts(body: Mapping[str, Any], role: str) -> Iterator[dict[str, Any]]:
    for content in body.get("contents") or ():
        if isinstance(content, dict) and content.get("role", "user") == role:
            yield from (p for p in content.get("parts") or () if isinstance(p, dict))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                parts.append(str(block.get("text", "")))
            else:
                parts.append(str(block))
        return "\n".join(parts)
    return ""


def _first_user_text(api: str, body: Mapping[str, Any]) -> str:
    """The text of every user message (the CLIs prepend context messages to the prompt)."""
    if api == "gemini":
        return "\n".join(str(p.get("text", "")) for p in _gemini_parts(body, "user"))
    items = body.get("input") if api == "responses" else body.get("messages")
    if isinstance(items, str):
        return items
    return "\n".join(
        _content_text(item.get("content"))
        for item in items or ()
        if isinstance(item, dict) and item.get("role") == "user"
    )


def _ends_with_tool_result(api: str, body: Mapping[str, Any]) -> bool:
    if api == "gemini":
        contents = body.get("contents") or []
        parts = contents[-1].get("parts") if contents and isinstance(contents[-1], dict) else ()
        return any(isinstance(p, dict) and "functionResponse" in p for p in parts or ())
    if api == "responses":
        items = body.get("input") or []
        return (
            bool(items)
            and isinstance(items[-1], dict)
            and items[-1].get("type")
            in (
                "function_call_output",
                "custom_tool_call_output",
            )
        )
    messages = body.get("messages") or []
    if not messages:
        return False
    last = messages[-1]
    if api == "chat":
        return bool(last.get("role") == "tool")
    content = last.get("content")
    return (
        last.get("role") == "user"
        and isinstance(content, list)
        and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content)
    )


def _tool_names(api: str, body: Mapping[str, Any]) -> list[str]:
    names = []
    for t in body.get("tools") or ():
        if api == "gemini":
            names += [str(f.get("name", "")) for f in t.get("functionDeclarations") or ()]
        elif api == "chat":
            names.append(str((t.get("function") or {}).get("name", "")))
        else:
            names.append(str(t.get("name", "")))
    return names


def _shell_command(writes: Mapping[str, str]) -> str:
    """A POSIX shell command writing ``writes`` (paths relative to the working directory)."""
    import shlex

    parts = []
    for path, content in writes.items():
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent:
            parts.append(f"mkdir -p {shlex.quote(parent)}")
        parts.append(f"printf '%s' {shlex.quote(content)} > {shlex.quote(path)}")
    return " && ".join(parts)


def _tool_calls(
    api: str, body: Mapping[str, Any], writes: Mapping[str, str]
) -> list[tuple[str, dict[str, Any]]]:
    """The (tool name, arguments) calls that make the CLI write ``writes``."""
    names = _tool_names(api, body)
    if api == "anthropic":
        cwd = _cwd(api, body)
        return [
            ("Write", {"file_path": f"{cwd}/{p}" if cwd else p, "content": c})
            for p, c in writes.items()
        ]
    if api == "gemini":
        cwd = _cwd(api, body)
        return [
            ("write_file", {"file_path": f"{cwd}/{p}" if cwd else p, "content": c})
            for p, c in writes.items()
        ]
    if api == "chat":
        tool = "write" if "write" in names else names[0]
        cwd = _cwd(api, body)
        return [
            (tool, {"filePath": f"{cwd}/{p}" if cwd else p, "content": c})
            for p, c in writes.items()
        ]
    # Codex: whichever shell tool the request offers.
    cmd = _shell_command(writes)
    if "exec_command" in names:
        return [("exec_command", {"cmd": cmd})]
    if "shell_command" in names:
        return [("shell_command", {"command": cmd})]
    if "shell" in names:
        return [("shell", {"command": ["bash", "-lc", cmd]})]
    raise LookupError(f"no shell tool offered: {names}")


def _cwd(api: str, body: Mapping[str, Any]) -> str | None:
    """The working directory the CLI's system prompt names (file tools like absolute paths)."""
    import re

    if api == "anthropic":
        text = _content_text(body.get("system"))
    elif api == "gemini":
        # <session_context> ... **Workspace Directories:**\n  - /path
        text = _first_user_text(api, body)
        m = re.search(r"Workspace Directories:\**\s*-\s*(/\S+)", text)
        return m.group(1) if m else None
    else:
        text = "\n".join(
            _content_text(m.get("content"))
            for m in body.get("messages") or ()
            if isinstance(m, dict) and m.get("role") == "system"
        )
    m = re.search(r"(?:Primary working directory|Working directory):\s*(/\S+)", text)
    return m.group(1) if m else None


def _fenced_text(text: str, writes: Mapping[str, str]) -> str:
    """``text``, then each write as Aider's whole-file block: the path, then a fence."""
    blocks = [
        f"{path}\n```\n{content}{'' if content.endswith(chr(10)) else chr(10)}```"
        for path, content in writes.items()
    ]
    return "\n\n".join([text, *blocks]) if blocks else text


def _schema_value(schema: Any) -> Any:
    """The smallest value fitting a JSON schema (Gemini CLI asks for JSON on side requests)."""
    if not isinstance(schema, dict):
        return {}
    kind = str(schema.get("type", "object")).lower()
    if schema.get("enum"):
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties") or {}
        required = schema.get("required") or ()
        return {k: _schema_value(v) for k, v in props.items() if k in required}
    return {"string": "scripted", "integer": 1, "number": 1, "boolean": False, "array": []}.get(
        kind
    )


# -- the HTTP side --------------------------------------------------------------------------


def _handler_for(server: LLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        llm = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    llm: LLMServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # plumbing ---------------------------------------------------------------------------------

    def _read_body(self) -> dict[str, Any]:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if self.headers.get("Content-Encoding") == "zstd":
            return {"_raw": "zstd"}
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"_raw": raw.decode("utf-8", "replace")}
        return data if isinstance(data, dict) else {"_raw": data}

    def _json(self, status: int, payload: Any, headers: Mapping[str, str] = {}) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, events: Iterator[tuple[str | None, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for name, data in events:
            payload = data if isinstance(data, str) else json.dumps(data)
            chunk = (f"event: {name}\n" if name else "") + f"data: {payload}\n\n"
            self.wfile.write(chunk.encode())
            self.wfile.flush()

    def _api_of(self, path: str) -> str:
        if path.endswith((":generateContent", ":streamGenerateContent", ":countTokens")):
            return "gemini"
        if path.endswith("/messages"):
            return "anthropic"
        if path.endswith("/responses"):
            return "responses"
        if path.endswith("/chat/completions"):
            return "chat"
        if path.endswith("/models"):
            return "models"
        return "other"

    # verbs --------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        api = self._api_of(path)
        rec = Recorded("GET", self.path, api, dict(self.headers), {})
        if api == "models":
            if "anthropic-version" in self.headers or "x-api-key" in self.headers:
                payload: Any = {
                    "data": [
                        {
                            "type": "model",
                            "id": MODEL,
                            "display_name": "Scripted",
                            "created_at": "2025-01-01T00:00:00Z",
                        }
                    ],
                    "has_more": False,
                    "first_id": MODEL,
                    "last_id": MODEL,
                }
            else:
                payload = {
                    "object": "list",
                    "data": [{"id": MODEL, "object": "model", "owned_by": "tests"}],
                    "models": [],
                }
            self.llm._record(rec)
            self._json(200, payload)
            return
        # Codex's websocket attempt (GET /v1/responses with Upgrade) and anything else.
        rec.status = 426 if api == "responses" else 404
        self.llm._record(rec)
        self._json(rec.status, {"error": {"message": "not here", "type": "not_found"}})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        api = self._api_of(path)
        body = self._read_body()
        rec = Recorded("POST", self.path, api, dict(self.headers), body)
        if path.endswith("/count_tokens"):
            self.llm._record(rec)
            self._json(200, {"input_tokens": len(json.dumps(body)) // 4})
            return
        if path.endswith(":countTokens"):
            self.llm._record(rec)
            self._json(200, {"totalTokens": len(json.dumps(body)) // 4})
            return
        if api not in ("anthropic", "responses", "chat", "gemini"):
            rec.status = 404
            self.llm._record(rec)
            self._json(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        marker, turn, after_tools, fenced = self.llm._decide(api, body)
        rec.script = marker
        if turn is not None and turn.status is not None:
            rec.status = turn.status
            self.llm._record(rec)
            self._error(api, turn.status, turn.resets_at)
            return
        self.llm._record(rec)
        if turn is None:
            calls: list[tuple[str, dict[str, Any]]] = []
            text = "OK."
            schema = (body.get("generationConfig") or {}).get("responseJsonSchema")
            if api == "gemini" and schema:
                text = json.dumps(_schema_value(schema))
        elif fenced:
            calls, text = [], _fenced_text(turn.text, turn.writes)
        elif after_tools or not turn.writes:
            calls, text = [], turn.text
        else:
            calls, text = _tool_calls(api, body, turn.writes), ""
        usage_in = max(1, len(json.dumps(body)) // 4)
        stream = bool(body.get("stream", api == "responses"))
        rid = self.llm.next_id()
        if api == "gemini":
            reply = _gemini_response(calls, text, usage_in)
            if path.endswith(":streamGenerateContent"):
                self._sse(iter([(None, reply)]))
            else:
                self._json(200, reply)
        elif api == "anthropic":
            if stream:
                self._sse(_anthropic_events(rid, calls, text, usage_in))
            else:
                self._json(200, _anthropic_message(rid, calls, text, usage_in))
        elif api == "responses":
            self._sse(_responses_events(rid, calls, text, usage_in))
        elif stream:
            self._sse(_chat_events(rid, calls, text, usage_in))
        else:
            self._json(200, _chat_message(rid, calls, text, usage_in))

    def _error(self, api: str, status: int, resets_at: float | None = None) -> None:
        if resets_at is not None:
            self._limit(api, resets_at)
            return
        kind, message = _ERRORS.get(status, ("api_error", f"HTTP {status} (scripted)"))
        headers = {"retry-after": "0"} if status in (429, 529, 503) else {}
        if api == "anthropic":
            payload: Any = {"type": "error", "error": {"type": kind, "message": message}}
        elif api == "gemini":
            code = {
                400: "INVALID_ARGUMENT",
                401: "UNAUTHENTICATED",
                403: "PERMISSION_DENIED",
                429: "RESOURCE_EXHAUSTED",
                503: "UNAVAILABLE",
            }.get(status, "INTERNAL")
            payload = {"error": {"code": status, "message": message, "status": code}}
        else:
            code = {429: "rate_limit_exceeded", 401: "invalid_api_key"}.get(status, "server_error")
            payload = {"error": {"message": message, "type": kind, "code": code, "param": None}}
        self._json(status, payload, headers)

    def _limit(self, api: str, resets_at: float) -> None:
        """A usage limit lifting at ``resets_at``, in the words and headers of its provider."""
        wait = max(1, round(resets_at - time.time()))
        headers = {"retry-after": str(wait)}
        if api == "anthropic":
            # A subscription's limit: the unified rate-limit headers Claude Code reads.
            headers |= {
                "anthropic-ratelimit-unified-status": "rejected",
                "anthropic-ratelimit-unified-reset": str(int(resets_at)),
                "anthropic-ratelimit-unified-representative-claim": "five_hour",
                "anthropic-ratelimit-unified-5h-status": "rejected",
                "anthropic-ratelimit-unified-5h-reset": str(int(resets_at)),
                "anthropic-ratelimit-unified-5h-utilization": "1.0",
            }
            payload: Any = {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": "usage limit reached (scripted)"},
            }
        elif api == "gemini":
            payload = {
                "error": {
                    "code": 429,
                    "message": "You exceeded your current quota, please check your plan and "
                    f"billing details. Please retry in {wait}s. (scripted)",
                    "status": "RESOURCE_EXHAUSTED",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                            "violations": [
                                {
                                    "quotaMetric": "generativelanguage.googleapis.com/"
                                    "generate_content_paid_tier_input_token_count",
                                    "quotaId": "GenerateContentPaidTierInputTokens"
                                    "PerModelPerMinute",
                                }
                            ],
                        },
                        {
                            "@type": "type.googleapis.com/google.rpc.RetryInfo",
                            "retryDelay": f"{wait}s",
                        },
                    ],
                }
            }
        elif api == "responses":
            # A ChatGPT plan's limit, as the Codex backend answers it.
            payload = {
                "error": {
                    "type": "usage_limit_reached",
                    "message": "The usage limit has been reached",
                    "plan_type": "plus",
                    "resets_at": int(resets_at),
                    "resets_in_seconds": wait,
                }
            }
        else:
            headers |= {
                "x-ratelimit-reset-requests": f"{wait}s",
                "x-ratelimit-remaining-requests": "0",
            }
            payload = {
                "error": {
                    "message": "Rate limit reached for requests. "
                    f"Please try again in {wait}s. (scripted)",
                    "type": "requests",
                    "code": "rate_limit_exceeded",
                    "param": None,
                }
            }
        self._json(429, payload, headers)


# -- wire formats ----------------------------------------------------------------------------

OUTPUT_TOKENS = 25


def _anthropic_message(
    rid: int, calls: Sequence[tuple[str, dict[str, Any]]], text: str, usage_in: int
) -> dict[str, Any]:
    content: list[dict[str, Any]] = [
        {"type": "tool_use", "id": f"toolu_{rid}_{i}", "name": name, "input": args}
        for i, (name, args) in enumerate(calls)
    ]
    if text or not content:
        content.append({"type": "text", "text": text or "OK."})
    return {
        "id": f"msg_{rid}",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": "tool_use" if calls else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage_in,
            "output_tokens": OUTPUT_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


def _anthropic_events(
    rid: int, calls: Sequence[tuple[str, dict[str, Any]]], text: str, usage_in: int
) -> Iterator[tuple[str | None, Any]]:
    msg = _anthropic_message(rid, calls, text, usage_in)
    start = dict(msg, content=[], stop_reason=None, usage=dict(msg["usage"], output_tokens=1))
    yield "message_start", {"type": "message_start", "message": start}
    for i, block in enumerate(msg["content"]):
        if block["type"] == "tool_use":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": i,
                    "content_block": dict(block, input={}),
                },
            )
            yield (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": i,
                    "delta": {
                        "type": "input_json_delta",
                        "partial_json": json.dumps(block["input"]),
                    },
                },
            )
        else:
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": i,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            yield (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": i,
                    "delta": {"type": "text_delta", "text": block["text"]},
                },
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": i}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": msg["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": OUTPUT_TOKENS},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def _responses_events(
    rid: int, calls: Sequence[tuple[str, dict[str, Any]]], text: str, usage_in: int
) -> Iterator[tuple[str | None, Any]]:
    now = int(time.time())
    base = {"id": f"resp_{rid}", "object": "response", "created_at": now, "model": MODEL}
    yield (
        "response.created",
        {"type": "response.created", "response": dict(base, status="in_progress", output=[])},
    )
    items: list[dict[str, Any]] = []
    for i, (name, args) in enumerate(calls):
        item: dict[str, Any] = {
            "type": "function_call",
            "id": f"fc_{rid}_{i}",
            "call_id": f"call_{rid}_{i}",
            "name": name,
            "arguments": json.dumps(args),
            "status": "completed",
        }
        yield (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "output_index": i,
                "item": dict(item, arguments="", status="in_progress"),
            },
        )
        yield (
            "response.function_call_arguments.delta",
            {
                "type": "response.function_call_arguments.delta",
                "output_index": i,
                "item_id": item["id"],
                "delta": item["arguments"],
            },
        )
        yield (
            "response.output_item.done",
            {"type": "response.output_item.done", "output_index": i, "item": item},
        )
        items.append(item)
    if not calls:
        item = {
            "type": "message",
            "id": f"msg_{rid}",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": text or "OK.", "annotations": []}],
        }
        yield (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "output_index": 0,
                "item": dict(item, content=[], status="in_progress"),
            },
        )
        yield (
            "response.output_text.delta",
            {
                "type": "response.output_text.delta",
                "output_index": 0,
                "content_index": 0,
                "item_id": item["id"],
                "delta": text or "OK.",
            },
        )
        yield (
            "response.output_item.done",
            {"type": "response.output_item.done", "output_index": 0, "item": item},
        )
        items.append(item)
    usage = {
        "input_tokens": usage_in,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": OUTPUT_TOKENS,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage_in + OUTPUT_TOKENS,
    }
    yield (
        "response.completed",
        {
            "type": "response.completed",
            "response": dict(base, status="completed", output=items, usage=usage),
        },
    )


def _gemini_response(
    calls: Sequence[tuple[str, dict[str, Any]]], text: str, usage_in: int
) -> dict[str, Any]:
    """One GenerateContentResponse (the whole answer in one SSE chunk when streamed)."""
    parts: list[dict[str, Any]] = [{"functionCall": {"name": n, "args": a}} for n, a in calls]
    if not calls:
        parts.append({"text": text or "OK."})
    candidate: dict[str, Any] = {
        "content": {"role": "model", "parts": parts},
        "finishReason": "STOP",
        "index": 0,
    }
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": usage_in,
            "candidatesTokenCount": OUTPUT_TOKENS,
            "totalTokenCount": usage_in + OUTPUT_TOKENS,
        },
        "modelVersion": MODEL,
        "responseId": f"scripted-{usage_in}",
    }


def _chat_message(
    rid: int, calls: Sequence[tuple[str, dict[str, Any]]], text: str, usage_in: int
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None if calls else (text or "OK.")}
    if calls:
        message["tool_calls"] = [
            {
                "id": f"call_{rid}_{i}",
                "type": "function",
                "function": {"name": n, "arguments": json.dumps(a)},
            }
            for i, (n, a) in enumerate(calls)
        ]
    return {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
        ],
        "usage": {
            "prompt_tokens": usage_in,
            "completion_tokens": OUTPUT_TOKENS,
            "total_tokens": usage_in + OUTPUT_TOKENS,
        },
    }


def _chat_events(
    rid: int, calls: Sequence[tuple[str, dict[str, Any]]], text: str, usage_in: int
) -> Iterator[tuple[str | None, Any]]:
    base = {
        "id": f"chatcmpl-{rid}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": MODEL,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": finish}])

    yield None, chunk({"role": "assistant", "content": ""})
    if calls:
        for i, (name, args) in enumerate(calls):
            yield (
                None,
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": i,
                                "id": f"call_{rid}_{i}",
                                "type": "function",
                                "function": {"name": name, "arguments": json.dumps(args)},
                            }
                        ]
                    }
                ),
            )
        yield None, chunk({}, "tool_calls")
    else:
        yield None, chunk({"content": text or "OK."})
        yield None, chunk({}, "stop")
    yield (
        None,
        dict(
            base,
            choices=[],
            usage={
                "prompt_tokens": usage_in,
                "completion_tokens": OUTPUT_TOKENS,
                "total_tokens": usage_in + OUTPUT_TOKENS,
            },
        ),
    )
    yield None, "[DONE]"
