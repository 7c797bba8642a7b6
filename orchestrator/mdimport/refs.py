"""References to units in a text: "Team 1", "Teams 1-4", "#3", "Task 1.2", tickets, "none".

:func:`ref_spans` splits a dependency text into (kind, key) references, ticket
ids and what is left (a team's title, perhaps); :func:`expand_keys` turns
"1-4", "1, 3", "A-C", "1.1-1.3" into single keys, refusing a range longer than
:data:`MAX_RANGE` before walking it.
"""

from __future__ import annotations

import re

from orchestrator.mdimport import words

_NONE = re.compile(
    r"^(?:none|n/?a|nothing|no dependencies|independent|keine|keiner|nichts|ninguna|ninguno|"
    r"nada|aucune|aucun|rien|nessuna|nessuno|geen|nenhuma|nenhum|"
    r"\u043d\u0435\u0442|\u65e0|\u306a\u3057|-+|\u2014|\u2013)(?!\w)|^-*$",
    re.IGNORECASE,
)
_KEY = r"(?:\d+(?:\.\d+)*[A-Za-z]?|[A-Za-z])\b"
_KEY_SEP = r"-|\u2013|\u2014|to|through|bis|hasta|al|\u00e0|tot|,|and|und|y|et|e|en|&|\+|/"
REF = re.compile(
    rf"(?<![\w-])(?P<kind>{words.UNIT_WORDS})(?:s|n|en|es|e)?(?:\s+#?\s*|\s*#\s*)"
    rf"(?P<keys>{_KEY}(?:\s*(?:{_KEY_SEP})\s*{_KEY})*)",
    re.IGNORECASE,
)
MAX_RANGE = 100
"""The longest range of team numbers a reference may span ("Teams 1-4")."""
MAX_WALKED = 1_000
"""The most keys the ranges of one text may expand to, all together: a line of
100,000 "1-99" ranges is no list of 10 million teams (later ranges stay as written)."""


def is_none(text: str) -> bool:
    return bool(_NONE.match(text.strip()))


def expand_keys(keys: str, budget: list[int] | None = None) -> list[str]:
    """ "1-4" -> 1,2,3,4; "1, 3" -> 1,3; "A-C" -> a,b,c.

    ``budget`` (one number, shared by the calls of one text, default
    :data:`MAX_WALKED`): how many keys ranges may still expand to; it goes down as
    they do, and a range beyond it stays as written."""
    if budget is None:
        budget = [MAX_WALKED]
    out: list[str] = []

    def walk(span: int) -> bool:
        if span > budget[0]:
            return False
        budget[0] -= span
        return True

    parts = re.split(r"\s*(?:,|\band\b|\bund\b|\by\b|\bet\b|\be\b|\ben\b|&|\+|/)\s*", keys.strip())
    for part in parts:
        m = re.fullmatch(
            r"([\w.]+)\s*(?:-|\u2013|\u2014|to|through|bis|hasta|al|\u00e0|tot)\s*([\w.]+)",
            part.strip(),
        )
        dotted = re.fullmatch(
            r"(\d+)\.(\d+)\s*(?:-|\u2013|\u2014|to)\s*(?:(\d+)\.)?(\d+)", part.strip()
        )
        if dotted and dotted.group(3) in (None, dotted.group(1)):  # "1.1-1.3", "1.1-3"
            lo, hi = int(dotted.group(2)), int(dotted.group(4))
            if 0 <= hi - lo < MAX_RANGE and walk(hi - lo + 1):
                out.extend(f"{dotted.group(1)}.{n}" for n in range(lo, hi + 1))
                continue
        if m and m.group(1).isdigit() and m.group(2).isdigit():
            lo, hi = int(m.group(1)), int(m.group(2))
            # checked before the walk: "1-99999999999" is no range
            if 0 <= hi - lo < MAX_RANGE and walk(hi - lo + 1):
                out.extend(str(n) for n in range(lo, hi + 1))
            else:
                out.append(part.strip().lower())
        elif m and len(m.group(1)) == 1 and len(m.group(2)) == 1 and m.group(1).isalpha():
            lo_c, hi_c = ord(m.group(1).lower()), ord(m.group(2).lower())
            if walk(max(0, hi_c - lo_c + 1)):
                out.extend(chr(c) for c in range(lo_c, hi_c + 1))
            else:
                out.append(part.strip().lower())
        elif part.strip():
            out.append(part.strip().lower())
    return out


def ref_spans(text: str) -> tuple[list[tuple[str | None, str]], list[str], str]:
    """Parse a dependency text into ([(kind, key)], [tickets], leftover text)."""
    found = _ref_spans(re.sub(r"\([^()]*\)", " ", text))  # "Team 1 (Database)": a remark
    if found[0] or found[1]:
        return found
    return _ref_spans(re.sub(r"[()]", " ", text))  # "Auth API (Team 2)": the reference


def _ref_spans(rest: str) -> tuple[list[tuple[str | None, str]], list[str], str]:
    keys: dict[tuple[str | None, str], None] = {}  # in order, each once
    budget = [MAX_WALKED]
    for m in list(REF.finditer(rest)):
        kind = re.sub(r"[\s-]+", "", m.group("kind").lower())
        keys.update(dict.fromkeys((kind, k) for k in expand_keys(m.group("keys"), budget)))
    rest = REF.sub(" ", rest)
    phases = [("phase", m.group("key").lower()) for m in words.PHASE.finditer(rest)]
    keys.update(dict.fromkeys(phases))
    rest = words.PHASE.sub(" ", rest)
    keys.update(
        dict.fromkeys(
            (None, m.group(1).lower()) for m in re.finditer(r"(?<![\w&])#(\d+(?:\.\d+)*)", rest)
        )
    )
    rest = re.sub(r"(?<![\w&])#\d+(?:\.\d+)*", " ", rest)
    tickets = re.findall(rf"(?<![\w-]){words.TICKET}", rest)
    for t in tickets:
        rest = rest.replace(t, " ")
    return list(keys), tickets, rest
