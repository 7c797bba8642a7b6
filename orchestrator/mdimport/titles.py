"""A unit's own line: its kind, key or ticket, title, role, estimate and inline fields.

``"Task 1.1: Fix cold-start crash (android-expert) - 1 hr"`` ->
("task", "1.1", None, "Fix cold-start crash", "android-expert", "1 hr");
``"api-gateway (needs: auth, users)"`` -> the title and [("depends", "auth, users")].
"""

from __future__ import annotations

import re

from orchestrator.mdimport import words

PAREN = re.compile(r"\(([^()]*)\)")
_TRAILING_EST = re.compile(
    rf"\s*[-\u2013\u2014:,]\s*(?P<est>{words.ESTIMATE.pattern})\s*$", re.IGNORECASE
)
_SEPARATOR_RUN = re.compile(r"\s*(?:[,;:\u2013\u2014]|\s-)(?:\s*[,;:\u2013\u2014-])*\s*")
_TAIL = re.compile(r"(?:\s+(?:in|at|to|into|under|as|with|and|for)|[\s,;:(\[\u2013\u2014-])+$")


def cut_order_clause(title: str) -> str:
    """ "Orders service — `x.py`, needs Group 1" -> "Orders service" (the clause is read
    as a sentence)."""
    for cue in (words.WAITS, words.PRECEDES):
        for m in cue.finditer(title):
            if m.start() and re.search(r"[,;(\[\u2013\u2014]\s*$|\s-\s*$", title[: m.start()]):
                title = title[: m.start()]
                break
    title = _SEPARATOR_RUN.sub(lambda m: m.group(0) if m.end() < len(title) else "", title)
    title = re.sub(r"\s+(?:[\u2013\u2014-]\s*)?[,;]", ",", title)
    return _TAIL.sub("", title).strip()


_INLINE_NAMES = {"depends", "blocks", "deliverables", "agent", "owner", "branch"}
_INLINE_PAREN = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
_INLINE_LABEL = re.compile(
    r"(?<![\w-])(?P<label>"
    + "|".join(p.pattern[4:-2] for n, p in words.FIELDS if n in _INLINE_NAMES)
    + r")\s*:\s*",
    re.IGNORECASE,
)


def _label_values(text: str, *, anywhere: bool) -> list[tuple[int, int, str, str]]:
    """(start, end, field, value) of each ``label: value`` in ``text``; a value runs to the
    next label, a ``;`` or ``|``, or the end."""
    labels = [m for m in _INLINE_LABEL.finditer(text) if anywhere or m.start() > 0]
    out = []
    for i, m in enumerate(labels):
        end = labels[i + 1].start() if i + 1 < len(labels) else len(text)
        stop = re.search(r"[;|]", text[m.end() : end])
        if stop is not None:
            end = m.end() + stop.start()
        name = words.field_name(m.group("label"))
        value = text[m.end() : end].strip(" .,;")
        if name in _INLINE_NAMES and value:
            out.append((m.start(), end, name or "", value))
    return out


def inline_fields(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Fields written inside a unit's line: ``api (needs: auth, users)``, ``#3 Reindex after: #2``.

    Returns the text without them and the (field, value) pairs found. A label
    at the very start of the line is the line's own label, not an inline field.
    """
    found: list[tuple[int, str, str]] = []
    spans: list[tuple[int, int]] = []
    for m in _INLINE_PAREN.finditer(text):
        inner = m.group(0)[1:-1]
        pairs = _label_values(inner, anywhere=True)
        if not pairs or inner[: pairs[0][0]].strip():
            continue
        found.extend((m.start() + a, name, value) for a, _, name, value in pairs)
        spans.append((m.start(), m.end()))
    rest = text
    for a, b in spans:
        rest = rest[:a] + " " * (b - a) + rest[b:]
    for a, b, name, value in _label_values(rest, anywhere=False):
        found.append((a, name, value.strip()))
        spans.append((a, b))
    out = text
    for a, b in sorted(spans, reverse=True):
        out = out[:a] + " " + out[b:]
    pairs_out = [(name, value) for _, name, value in sorted(found)]
    return re.sub(r"\s+", " ", out).strip(" -:,;\u2013\u2014"), pairs_out


def split_title(
    text: str,
) -> tuple[str | None, str | None, str | None, str, str | None, str | None]:
    """A unit's line -> (kind, key, ticket, title, role text, estimate text)."""
    role: str | None = None
    estimate: str | None = None
    m = _TRAILING_EST.search(text)
    if m:
        estimate, text = m.group("est"), text[: m.start()]
    kept = []
    for part in PAREN.findall(text):
        if estimate is None and words.ESTIMATE.fullmatch(part.strip()):
            estimate = part.strip()
        elif role is None and words.looks_like_role(part):
            role = part.strip()
        else:
            kept.append(part)
            continue
        text = text.replace(f"({part})", " ")
    text = re.sub(r"\s+", " ", text).strip(" -:\u2013\u2014")
    kind, key, ticket, title = words.unit_head(text)
    if kind is None and ticket is None:
        n = words.NUMBERED.match(text)
        if n:
            key, title = n.group("key"), n.group("title")
    return kind, key, ticket, title.strip(" -:\u2013\u2014"), role, estimate
