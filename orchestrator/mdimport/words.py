"""The vocabulary the importer recognises: labels, unit words, estimates, roles.

Everything here is data plus small pure functions over one string; the walk
over the document lives in :mod:`orchestrator.mdimport.interpret`.
"""

from __future__ import annotations

import re

BUILTIN_ROLES: tuple[str, ...] = (
    "backend-architect",
    "frontend-developer",
    "security-engineer",
    "devops-engineer",
    "test-engineer",
    "database-expert",
    "refactoring-expert",
    "technical-writer",
)

# words that name one unit of work: "Team 1", "Stream A", "Work item 3", ...
UNIT_WORDS = (
    r"team|squad|group|session|task|stream|work\s*stream|work[ -]?item|item|track|lane|ticket|"
    r"story|agent|job|unit|milestone|epic|module|component|step|package|assignment"
)
_UNIT_HEAD = re.compile(
    rf"^(?P<kind>{UNIT_WORDS})(?:\s+#?\s*|\s*#\s*)(?P<key>[A-Za-z]|\d+(?:\.\d+)*[A-Za-z]?)\b\s*(?:[:.)\-\u2013\u2014]+\s*(?P<title>.*))?$",
    re.IGNORECASE,
)
TICKET = r"[A-Za-z][A-Za-z0-9]*-(?=[A-Za-z0-9]*\d)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*"
_TICKET_HEAD = re.compile(rf"^(?P<ticket>{TICKET})\s*(?:[:.\-\u2013\u2014]+\s*(?P<title>.*))?$")
_KIND_TICKET_HEAD = re.compile(
    rf"^(?P<kind>{UNIT_WORDS})\s+(?P<ticket>{TICKET})\s*(?:[:.\-\u2013\u2014]+\s*(?P<title>.*))?$",
    re.IGNORECASE,
)
# headings/labels that introduce a list of units
UNIT_LIST = re.compile(
    rf"^(?:(?:the\s+)?(?:{UNIT_WORDS})s?|teams|work\s*items|tasks|streams|sessions|workstreams|tickets|stories|"
    r"backlog|execution plan|plan|work breakdown|assignments|agents)(?:\s*\(.*\))?$",
    re.IGNORECASE,
)
PHASE = re.compile(
    r"\b(?:phase|stage|wave|round|sprint)\s*(?P<key>\d+|[IVX]+\b|[A-Z]\b)", re.IGNORECASE
)
SEQUENTIAL = re.compile(
    r"\bsequential(?:ly)?\b|\bserial(?:ly)?\b|\bin order\b|\bone (?:after|at a time)\b", re.I
)
PARALLEL = re.compile(r"\bparallel\b|\bconcurrent(?:ly)?\b|\bsimultaneous(?:ly)?\b", re.IGNORECASE)
INTEGRATION = re.compile(
    r"\bintegrat(?:ion|e)\b|\bfinal merge\b|\bmerge (?:and|&) test\b", re.IGNORECASE
)

FIELDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rf"^(?:{pattern})$", re.IGNORECASE))
    for name, pattern in (
        (
            "task",
            r"tasks?|description|scope|goal|objective|summary|what|work|focus|mission|details",
        ),
        (
            "deliverables",
            r"deliverables?|files?|outputs?|artifacts?|artefacts?|creates|produces|key files|"
            r"files to (?:create|change|modify|touch)|new files|changed files",
        ),
        (
            "depends",
            r"dependencies|dependency|depends(?: on)?|requires|prerequisites?|after|blocked by|"
            r"needs|"
            r"uses|upstream|waits? (?:on|for)",
        ),
        ("blocks", r"blocks|blocking|enables|unblocks|downstream|feeds|required by"),
        (
            "role",
            r"owners?|roles?|assignee|assigned(?: to)?|agent(?: role| type)?|specialist|lead|"
            r"persona",
        ),
        (
            "estimate",
            r"estimates?|est\.?(?: completion| time| duration| effort)?|"
            r"estimated(?: time| duration| effort)?|"
            r"effort|duration|time|eta|time ?box|expected duration",
        ),
        ("test", r"test(?: command| suite| cmd)?|tests|test with|run tests"),
        ("checks", r"checks?|check commands?|go/no-go commands?"),
        (
            "acceptance",
            r"go ?/ ?no[- ]go(?: criteria)?|success criteria|acceptance(?: criteria)?|"
            r"completion signals?|definition of done|done when|exit criteria|criteria|done|"
            r"completion criteria|verification",
        ),
        (
            "ignore",
            r"status|agent id|id|progress|priority|created|updated|kick-?off|started|eta date",
        ),
    )
)


def field_name(label: str) -> str | None:
    """The canonical field a label names (task, deliverables, depends, ...) or None."""
    label = re.sub(r"\s+", " ", label.strip().rstrip(":").strip())
    for name, pattern in FIELDS:
        if pattern.match(label):
            return name
    return None


def unit_head(text: str) -> tuple[str | None, str | None, str | None, str]:
    """Split a unit's title line into (kind, key, ticket, title).

    ``"Team 1: Schema"`` -> ("team", "1", None, "Schema");
    ``"SRCH-101: Config"`` -> (None, None, "SRCH-101", "Config");
    anything else -> (None, None, None, text).
    """
    m = _KIND_TICKET_HEAD.match(text)
    if m:
        kind = re.sub(r"[\s-]+", "", m.group("kind").lower())
        return kind, None, m.group("ticket"), (m.group("title") or "").strip()
    m = _UNIT_HEAD.match(text)
    if m:
        kind = re.sub(r"[\s-]+", "", m.group("kind").lower())
        return kind, m.group("key").lower(), None, (m.group("title") or "").strip()
    m = _TICKET_HEAD.match(text)
    if m:
        return None, None, m.group("ticket"), (m.group("title") or "").strip()
    return None, None, None, text


# --------------------------------------------------------------- estimates

_NUM = r"\d+(?:\.\d+)?"
_UNITS = {
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 604800.0, "wk": 604800.0, "wks": 604800.0, "week": 604800.0, "weeks": 604800.0,
}  # fmt: skip
ESTIMATE = re.compile(
    rf"(?P<low>{_NUM})(?:\s*(?:-|\u2013|\u2014|to)\s*(?P<high>{_NUM}))?\s*"
    r"(?P<unit>minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w)\b",
    re.IGNORECASE,
)
MAX_ESTIMATE = 7 * 24 * 3600.0


def estimate_seconds(text: str) -> float | None:
    """The upper bound of the first duration in ``text`` ("2-3 days" -> 3 days), in seconds."""
    m = ESTIMATE.search(text)
    if m is None:
        return None
    value = float(m.group("high") or m.group("low")) * _UNITS[m.group("unit").lower()]
    return value if value > 0 else None


# --------------------------------------------------------------- roles

_ROLE_WORDS = re.compile(
    r"\b(?:expert|engineer|developer|dev|architect|writer|designer|specialist|lead|reviewer|tester|"
    r"admin|analyst|manager|sre|qa|dba|devops|programmer|scientist|owner|maintainer)s?\b",
    re.IGNORECASE,
)
_KEBAB = re.compile(r"^[a-z]+(?:-[a-z]+)+(?:\s*[+&,/]\s*[a-z]+(?:-[a-z]+)+)*$")
_SYNONYMS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), role)
    for p, role in (
        (r"\bback-?end\b|\bserver[- ]side\b|\bapi (?:developer|engineer)\b", "backend-architect"),
        (
            r"\bfront-?end\b|\bui (?:developer|engineer)\b|\bweb developer\b|\breact developer\b",
            "frontend-developer",
        ),
        (r"\bsecurity\b|\bappsec\b", "security-engineer"),
        (
            r"\bdevops\b|\brelease[- ]engineer|\bsre\b|\bplatform engineer|"
            r"\binfrastructure engineer|"
            r"\bbuild engineer|\bci ?/ ?cd\b",
            "devops-engineer",
        ),
        (
            r"\bqa\b|\btest(?:ing)?[- ](?:engineer|expert|developer)|\btester\b|\bquality",
            "test-engineer",
        ),
        (r"\bdatabase\b|\bdba\b|\bdata engineer", "database-expert"),
        (r"\brefactor", "refactoring-expert"),
        (r"\btechnical[- ]writer|\bdocs? writer|\bdocumentation", "technical-writer"),
    )
)


def looks_like_role(text: str) -> bool:
    """Whether a parenthesised phrase names a role ("android-expert", "DBA"), not a remark."""
    text = text.strip()
    return bool(_KEBAB.match(text) or _ROLE_WORDS.search(text) or guess_role(text)[0])


def guess_role(text: str) -> tuple[str | None, bool]:
    """(built-in role, exact) for a free-text role, or (None, False) when none is obvious."""
    low = text.strip().lower()
    if low.replace(" ", "-") in BUILTIN_ROLES:
        return low.replace(" ", "-"), True
    for role in BUILTIN_ROLES:
        if re.search(rf"\b{role.replace('-', '[- ]')}\b", low):
            return role, False
    for pattern, role in _SYNONYMS:
        if pattern.search(low):
            return role, False
    return None, False


# --------------------------------------------------------------- ids


def slug(text: str, *, limit: int = 40) -> str:
    """A lowercase id ([a-z0-9-]) from ``text``, cut at a word boundary, '' if nothing is left."""
    words = re.findall(r"[a-z0-9]+", text.lower().replace("&", " "))
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > limit:
            break
        out = candidate
    return out or (words[0][:limit] if words else "")
