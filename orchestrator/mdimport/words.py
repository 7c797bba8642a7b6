"""The vocabulary the importer recognises: labels, unit words, estimates, roles.

Everything here is data plus small pure functions over one string; the walk
over the document lives in :mod:`orchestrator.mdimport.interpret`.
"""

from __future__ import annotations

import re
import unicodedata

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
    r"story|agent|job|unit|milestone|epic|module|component|step|package|assignment|"
    r"work\s*package|wp|feature|"
    # other languages: de, es/pt, fr, it, nl
    r"gruppe|aufgabe|arbeitspaket|paket|teilaufgabe|equipo|equipa|tarea|tarefa|paquete|"
    r"\u00e9quipe|equipe|t\u00e2che|tache|lot|squadra|compito|attivit\u00e0|taak|groep|"
    # pl, ru
    r"zesp\u00f3\u0142|zadanie|"
    r"\u043a\u043e\u043c\u0430\u043d\u0434[\u0430\u044b\u0443\u0435\u043e\u0439]?|"
    r"\u0437\u0430\u0434\u0430\u0447[\u0430\u0438\u0443\u0435\u0439]?"
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
    rf"^(?:(?:the\s+)?(?:{UNIT_WORDS})(?:s|n|en|es|e)?|teams|work\s*items|tasks|streams|sessions|"
    r"workstreams|tickets|stories|backlog|execution plan|plan|work breakdown|assignments|agents|"
    r"queue|work queue|todo|to ?do|to-dos?|ready|up next|next up|roadmap|work packages|"
    r"arbeitspakete|aufgaben|teams und aufgaben|equipos|tareas|\u00e9quipes|t\u00e2ches|"
    r"lots|squadre|compiti|taken)(?:\s*\(.*\))?$",
    re.IGNORECASE,
)
PHASE_WORDS = (
    r"phase|stage|wave|round|sprint|milestone|fase|etappe|stufe|welle|\u00e9tape|etape|etapa|"
    r"vague|ola|onda|meilenstein|hito|jalon"
)
GO_NO_GO = re.compile(r"^\W*go\s*/\s*no[- ]?go\b", re.IGNORECASE)
"""A label naming go/no-go criteria: a person decides, so the team gets ``approval: true``."""
REVIEW = re.compile(
    r"\b(?:code\s+)?review(?:s|ed)?\b|\breviewers?\b|\bsign[- ]?off\b|\bapprov(?:al|e|ed)\b",
    re.IGNORECASE,
)
"""A review step before the merge ("Code review (2 reviewers)"): people approve the work."""
PHASE = re.compile(rf"\b(?:{PHASE_WORDS})\s*(?P<key>\d+|[IVX]+\b|[A-Z]\b)", re.IGNORECASE)
SEQUENTIAL = re.compile(
    r"\bsequential(?:ly)?\b|\bserial(?:ly)?\b|\bin order\b|\bone (?:after|at a time)\b|"
    r"\bsequen[cz]i|\bnacheinander\b|\bder reihe nach\b|\bsecuencial|\bs\u00e9quentiel|"
    r"\bsequencial|\bin sequenza\b|\bna volgorde\b|\bopeenvolgend",
    re.I,
)
PARALLEL = re.compile(
    r"\bparallel\b|\bconcurrent(?:ly)?\b|\bsimultaneous(?:ly)?\b|\bparall[e\u00e8]l|"
    r"\bgleichzeitig\b|\ben paralelo\b|\bsimult\u00e1ne|\bsimultan\u00e9|\bin parallelo\b|"
    r"\btegelijk",
    re.IGNORECASE,
)
INTEGRATION = re.compile(
    r"\bintegrat(?:ion|e)\b|\bfinal merge\b|\bmerge (?:and|&) test\b", re.IGNORECASE
)

FIELDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rf"^(?:{pattern})$", re.IGNORECASE))
    for name, pattern in (
        (
            "task",
            r"tasks?|description|scope|goal|objective|summary|what|work|focus|mission|details|"
            r"responsibilit(?:y|ies)|duties|scope of work|what to build|to do|todo|"
            r"aufgabe|beschreibung|ziel|umfang|inhalt|tarea|descripci\u00f3n|descripcion|"
            r"objetivo|alcance|t\u00e2che|tache|objectif|p\u00e9rim\u00e8tre|compito|"
            r"descrizione|obiettivo|tarefa|descri\u00e7\u00e3o|taak|beschrijving|doel|opis|"
            r"zadanie|\u0437\u0430\u0434\u0430\u0447\u0430|\u043e\u043f\u0438\u0441\u0430\u043d\u0438\u0435",
        ),
        (
            "deliverables",
            r"deliverables?|files?|outputs?|artifacts?|artefacts?|creates|produces|key files|"
            r"files to (?:create|change|modify|touch)|new files|changed files|"
            r"dateien|datei|ergebnisse|lieferungen|liefergegenst\u00e4nde|artefakte|"
            r"archivos|ficheros|entregables|fichiers|livrables|consegne|arquivos|"
            r"entreg\u00e1veis|bestanden|opleveringen|pliki|\u0444\u0430\u0439\u043b\u044b|"
            r"\u0440\u0435\u0437\u0443\u043b\u044c\u0442\u0430\u0442\u044b",
        ),
        (
            "depends",
            r"dependencies|dependency|depends(?: on)?|deps|prereqs|requires|prerequisites?|after|"
            r"blocked by|waits on|runs after|inputs?|input from|needs input from|consumes|"
            r"blocked on|needs|"
            r"uses|upstream|waits? (?:on|for)|waiting (?:on|for)|starts? after|"
            r"abh\u00e4ngigkeiten|abh\u00e4ngigkeit|abh\u00e4ngig von|h\u00e4ngt ab von|"
            r"voraussetzungen?|ben\u00f6tigt|braucht|nach|blockiert (?:durch|von)|wartet auf|"
            r"dependencias|dependencia|depende de|requiere|requisitos|bloqueado por|"
            r"despu\u00e9s de|tras|d\u00e9pendances?|d\u00e9pend de|pr\u00e9requis|"
            r"bloqu\u00e9 par|apr\u00e8s|requiert|dipendenze|dipende da|richiede|"
            r"depend\u00eancias|requer|afhankelijkheden|afhankelijk van|zale\u017cno\u015bci|"
            r"zale\u017cy od|"
            r"\u0437\u0430\u0432\u0438\u0441\u0438\u043c\u043e\u0441\u0442\u0438|"
            r"\u0437\u0430\u0432\u0438\u0441\u0438\u0442 \u043e\u0442|\u4f9d\u8d56|\u524d\u7f6e",
        ),
        (
            "blocks",
            r"blocks|blocking|enables|unblocks|downstream|feeds|required by|blockiert|"
            r"erm\u00f6glicht|bloquea|habilita|bloque|d\u00e9bloque|permet|blocca|sblocca",
        ),
        ("role", r"roles?|agent role|agent type|specialist|persona|rolle|rol|ruolo"),
        (
            "owner",
            r"owners?|assignee|assigned(?: to)?|lead|verantwortlich|zust\u00e4ndig|"
            r"responsable|responsabile|propietario|eigent\u00fcmer|bearbeiter",
        ),
        (
            "agent",
            r"agent|agent kind|agent cli|assigned agent|ai agent|coding agent|tool|runner|ki|ia|"
            r"agente",
        ),
        ("branch", r"branch|git branch|zweig|rama|branche|ramo"),
        (
            "estimate",
            r"estimates?|est\.?(?: completion| time| duration| effort)?|"
            r"estimated(?: time| duration| effort)?|"
            r"effort|duration|time|eta|time ?box|expected duration|aufwand|dauer|"
            r"sch\u00e4tzung|zeit|estimaci\u00f3n|duraci\u00f3n|esfuerzo|estimation|"
            r"dur\u00e9e|stima|durata|tiempo",
        ),
        ("test", r"test(?: command| suite| cmd)?|tests|test with|run tests"),
        (
            "checks",
            r"checks?|check commands?|go/no-go commands?|pr\u00fcfungen|pr\u00fcfung|"
            r"comprobaciones|v\u00e9rifications",
        ),
        (
            "acceptance",
            r"go ?/ ?no[- ]go(?: criteria)?|success criteria|acceptance(?: criteria)?|"
            r"completion signals?|definition of done|done when|exit criteria|criteria|done|"
            r"completion criteria|verification|abnahmekriterien|akzeptanzkriterien|"
            r"erfolgskriterien|fertig wenn|abnahme|criterios de aceptaci\u00f3n|"
            r"criterios de \u00e9xito|hecho cuando|criterios|crit\u00e8res d'acceptation|"
            r"crit\u00e8res de succ\u00e8s|crit\u00e8res|criteri di accettazione|"
            r"crit\u00e9rios de aceita\u00e7\u00e3o",
        ),
        (
            "ignore",
            r"status|agent id|id|progress|priority|created|updated|kick-?off|started|eta date|"
            r"stand|estado|statut|stato|priorit\u00e4t|prioridad|priorit\u00e9|priorit\u00e0",
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
    return bool(_KEBAB.match(text) or _ROLE_WORDS.search(text) or resolve_role(text)[0])


def resolve_role(text: str) -> tuple[str | None, bool]:
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


_TRANSLIT = str.maketrans(
    {
        "\u00df": "ss", "\u00e6": "ae", "\u0153": "oe", "\u00f8": "o", "\u0142": "l",
        "\u0111": "d", "\u00f0": "d", "\u00fe": "th", "\u0131": "i",
        # Cyrillic
        "\u0430": "a", "\u0431": "b", "\u0432": "v", "\u0433": "g", "\u0434": "d",
        "\u0435": "e", "\u0451": "e", "\u0436": "zh", "\u0437": "z", "\u0438": "i",
        "\u0439": "i", "\u043a": "k", "\u043b": "l", "\u043c": "m", "\u043d": "n",
        "\u043e": "o", "\u043f": "p", "\u0440": "r", "\u0441": "s", "\u0442": "t",
        "\u0443": "u", "\u0444": "f", "\u0445": "kh", "\u0446": "ts", "\u0447": "ch",
        "\u0448": "sh", "\u0449": "shch", "\u044a": "", "\u044b": "y", "\u044c": "",
        "\u044d": "e", "\u044e": "yu", "\u044f": "ya", "\u0456": "i", "\u0457": "i",
        "\u0454": "ie", "\u0491": "g",
        # Greek
        "\u03b1": "a", "\u03b2": "v", "\u03b3": "g", "\u03b4": "d", "\u03b5": "e",
        "\u03b6": "z", "\u03b7": "i", "\u03b8": "th", "\u03b9": "i", "\u03ba": "k",
        "\u03bb": "l", "\u03bc": "m", "\u03bd": "n", "\u03be": "x", "\u03bf": "o",
        "\u03c0": "p", "\u03c1": "r", "\u03c3": "s", "\u03c2": "s", "\u03c4": "t",
        "\u03c5": "y", "\u03c6": "f", "\u03c7": "ch", "\u03c8": "ps", "\u03c9": "o",
    }
)  # fmt: skip


def ascii_fold(text: str) -> str:
    """``text`` with accents dropped and a few letters spelled out (``für`` -> ``fur``,
    ``Straße`` -> ``strasse``, Cyrillic and Greek letter by letter), lowercased."""
    low = unicodedata.normalize("NFKD", text.lower().translate(_TRANSLIT))
    low = "".join(ch for ch in low if not unicodedata.combining(ch))
    return low.translate(_TRANSLIT)


def slug(text: str, *, limit: int = 40) -> str:
    """A lowercase id ([a-z0-9-]) from ``text``, cut at a word boundary, '' if nothing is left.

    Letters outside ASCII are transliterated first (``für`` -> ``fur``), not dropped."""
    words = re.findall(r"[a-z0-9]+", ascii_fold(text).replace("&", " "))
    out = ""
    for word in words:
        candidate = f"{out}-{word}" if out else word
        if len(candidate) > limit:
            break
        out = candidate
    return out or (words[0][:limit] if words else "")


# --------------------------------------------------------------- sections that are no team

NOT_TEAMS = re.compile(
    r"^(?:\d+(?:\.\d+)*[.)]?\s+)?(?:"
    r"risks?(?: register| and mitigations?)?|mitigations?|timeline|milestones overview|"
    r"status(?: log| updates?| reports?| board)?|current (?:state|status)|"
    r"progress(?: tracking| log)?|"
    r"tracking|communication(?: plan)?|meetings?|stand-?ups?|sync(?: meetings?)?|"
    r"open questions|questions|faq|parked|parking lot|do not pick up|don'?t pick up|not now|"
    r"icebox|later|out of scope|non-goals|metrics|kpis?|success metrics|background|context|"
    r"overview|summary|notes|references|glossary|appendix|changelog|history|decisions|"
    r"assumptions|lessons learned|retro(?:spective)?|contacts|team members|roster|"
    r"tech(?:nology)? stack|stack|architecture|goals|objectives|principles|conventions|"
    r"guidelines|ground rules|rules of engagement|environment|resources|tools|links|"
    r"team structure|roles(?: and responsibilities)?|responsibilities|escalation|definitions|"
    r"testing strategy|rollback(?: plan)?|constraints|team communication|coordination rules|"
    r"how to use|legend|table of contents|contents|toc|done|completed|shipped|archived?|"
    r"dependenc(?:y|ies)(?: graph| matrix| map| diagram| overview)?|execution order|"
    r"order of work|work order|sequencing|critical path|dependency|graph|diagram|"
    r"abh\u00e4ngigkeiten|reihenfolge|dependencias|orden de trabajo|d\u00e9pendances|"
    r"erledigt|abgeschlossen|hecho|completado|termin\u00e9|"
    r"risiken|zeitplan|statusbericht|aktueller stand|fortschritt|kommunikation|besprechungen|"
    r"offene fragen|geparkt|nicht aufgreifen|kennzahlen|hintergrund|\u00fcberblick|notizen|"
    r"riesgos|cronograma|estado actual|progreso|comunicaci\u00f3n|reuniones|preguntas abiertas|"
    r"aparcado|m\u00e9tricas|contexto|resumen|notas|risques|calendrier|\u00e9tat actuel|"
    r"avancement|r\u00e9unions|questions ouvertes|m\u00e9triques|contexte|r\u00e9sum\u00e9"
    r")\b",
    re.IGNORECASE,
)


_ASIDE_TAIL = re.compile(
    r"(?:\s*(?:[&/,:;(\[\u2013\u2014-]|\band\b|\bund\b|\by\b|\bet\b|\bor\b).*|"
    r"\s+(?:protocol|plan|log|notes|updates?|tracking|overview|schedule|board|reports?|"
    r"list|section|summary|table)\b.*|\s*)$",
    re.IGNORECASE,
)


def not_a_team(title: str, *, whole: bool = False) -> bool:
    """Whether a heading names a section that holds no team (risks, status, metrics, ...).

    ``whole``: the name says only that ("Risks & Mitigation", "Status updates"), not
    more ("Summary API" starts like "Summary" but may be a team)."""
    text = re.sub(r"^[^\w]+", "", title.strip())
    m = NOT_TEAMS.match(text)
    if m is None:
        return False
    return not whole or bool(_ASIDE_TAIL.match(text, m.end()))


# a heading that is a number and a title: "0.1 Terraform state", "#3 Reindex worker", "2) Auth"
NUMBERED = re.compile(r"^#?(?P<key>\d+(?:\.\d+)*)(?:[.):]|\s*[-\u2013\u2014])?\s+(?P<title>\S.*)$")


# --------------------------------------------------------------- agents

_AGENT_KINDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p, re.IGNORECASE), kind)
    for p, kind in (
        (r"\bclaude(?:[- ]code)?\b", "claude-code"),
        (r"\bcodex\b", "codex"),
        (r"\baider\b", "aider"),
        (r"\bgemini\b", "gemini"),
        (r"\bopen-?code\b", "opencode"),
    )
)


def agent_kind(text: str) -> str | None:
    """The built-in agent kind a free text names ("Codex", "Claude Code"), or None."""
    hits = {kind for pattern, kind in _AGENT_KINDS if pattern.search(text)}
    return hits.pop() if len(hits) == 1 else None


# --------------------------------------------------------------- dependency talk

# "X waits for Y": the side before the cue waits for the side after it
WAITS = re.compile(
    r"\b(?:depends? (?:on|upon)|dependent on|depending on|relies on|needs?|requires?|"
    r"waits? (?:for|on|until)|waiting (?:for|on)|blocked (?:by|on|until)|"
    r"(?:can|may|must|should|will|cannot|can't|won't)(?: only)? (?:not )?(?:start|begin|run)|"
    r"(?:starts?|begins?|runs?|goes)(?: only)? (?:after|once|when)|only after|only once|"
    r"after|once|as soon as|following|until|builds? on|on top of|uses|consumes|based on|"
    r"h\u00e4ngt von|h\u00e4ngen von|abh\u00e4ngig von|wartet auf|warten auf|ben\u00f6tigt|braucht|"
    r"erst (?:wenn|nach|sobald)|kann erst|darf erst|beginnt erst|startet erst|nachdem|sobald|"
    r"nach|depende de|dependen de|requiere|necesita|espera(?:r)? a|despu\u00e9s de|cuando|"
    r"una vez que|tras|solo puede|s\u00f3lo puede|d\u00e9pend de|d\u00e9pendent de|n\u00e9cessite|"
    r"attend|apr\u00e8s|une fois que|lorsque|quand|ne peut commencer|dipende da|richiede|"
    r"aspetta|dopo|depende de|precisa|ap\u00f3s|depois de|afhankelijk van|wacht op|na)\b",
    re.IGNORECASE,
)
# "X comes before Y": the side after the cue waits for the side before it
PRECEDES = re.compile(
    r"\b(?:before|blocks|unblocks|enables|is required by|prior to|ahead of|feeds(?: into)?|"
    r"prerequisite (?:for|of)|must (?:be )?(?:finish|finished|done|merged|complete|completed) "
    r"before|vor|blockiert|erm\u00f6glicht|antes de|bloquea|habilita|avant|bloque|permet|"
    r"prima di|blocca|voor)\b",
    re.IGNORECASE,
)
# words that say a text is about order between pieces of work (without naming them)
DEPENDENCY_TALK = re.compile(
    r"\b(?:depend\w*|blocked|blocks|blocking|prerequisites?|waits? (?:for|on)|"
    r"(?:only )?(?:after|once|before) (?:team|task|stream|phase|step|ticket|work|item|#)|"
    r"upstream|downstream|in order|sequential\w*|must (?:finish|be done|be merged) "
    r"(?:first|before)|"
    r"abh\u00e4ngig\w*|voraussetzung\w*|blockiert|wartet|dependencia\w*|depende|requisito\w*|"
    r"bloquead\w*|d\u00e9pend\w*|pr\u00e9requis|bloqu\u00e9\w*|dipend\w*|afhankelijk\w*)\b"
    r"|-->|==>",
    re.IGNORECASE,
)

# "Phase N+1 starts when Phase N is done", "a group starts when the group before it is done"
_GROUPISH = rf"(?:{PHASE_WORDS}|group|gruppe|grupo|groupe|part|teil|block)"
PHASE_RULE = re.compile(
    rf"\b{_GROUPISH}s?\s*(?:n\s*\+\s*1|x\s*\+\s*1)|"
    rf"\b{_GROUPISH}\b.*\b(?:before|previous|prior|preceding|vorherige[nrs]?|vorige[nrs]?|"
    r"davor|anterior|pr\u00e9c\u00e9dente?|precedente)\b|"
    rf"\b{_GROUPISH}s\s+(?:run|are run|go|laufen|se ejecutan)\s+(?:in order|sequentially|"
    r"nacheinander|en orden|en s\u00e9quence)",
    re.IGNORECASE,
)


# a section named like this groups the numbered items below it
GROUP_HEAD = re.compile(
    rf"^(?:group|gruppe|groep|grupo|groupe|part|teil|parte|block|epic|area|bereich|"
    rf"{PHASE_WORDS})\b",
    re.IGNORECASE,
)

# "no dependencies", "all teams run in parallel": the text says there is no order
INDEPENDENT = re.compile(
    r"\bno (?:dependencies|dependency|blockers|order)\b|\bindependent(?:ly)?\b|"
    r"\bin parallel\b|\bconcurrently\b|\bsimultaneously\b|"
    r"\b(?:all|every|each)\b.*\b(?:in parallel|at once|at the same time|concurrently)\b|"
    r"\bkeine abh\u00e4ngigkeit|\bunabh\u00e4ngig|\balle\b.*\bparallel\b|"
    r"\bsin dependencias\b|\bindependientes?\b|\btodos?\b.*\ben paralelo\b|"
    r"\bsans d\u00e9pendance|\bind\u00e9pendant|\btou(?:s|tes)\b.*\ben parall\u00e8le\b",
    re.IGNORECASE,
)
