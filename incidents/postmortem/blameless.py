"""The blameless-language coach: flags hindsight and blame wording and suggests a learning-oriented rewrite.

It advises and never blocks: nothing here raises on what it finds. It only reads (its word list is seeded by
migration 0008), and its time grows linearly with the text: one regex scan per pattern, and every overlap test
a binary search over the sorted person findings, so a long text costs milliseconds, not seconds."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate, islice

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents import events
from incidents.auth.models import User
from incidents.errors import Conflict, Invalid, NotFound
from incidents.postmortem.models import BlamelessPhrase
from incidents.singleline import reject_nul

MAX_TEXT = 100_000  # characters: the default of the BLAMELESS_MAX_TEXT setting
MAX_FINDINGS = 100  # the default of BLAMELESS_MAX_FINDINGS
CATEGORIES = ("hindsight", "blame")

# Verbs that make a person the subject of a failure: "Alice forgot to ...", "Bob didn't check ...".
_FAILURE = r"(?:failed\s+to|forgot|didn['’]t|did\s+not|neglected|missed|broke|ignored|overlooked|messed\s+up|" \
           r"should\s+have|should['’]ve|caused)"
_ANY_FAILURE = re.compile(r"\b" + _FAILURE + r"\b", re.IGNORECASE)
_FAILURE_WORDS = ("fail", "forgot", "did", "neglected", "missed", "broke", "ignored", "overlooked", "messed", "should",
                  "caused")  # every _FAILURE alternative starts with one of these
# Unknown people: one capitalised word right before the failure (known users' full names are matched apart).
_CAPITALISED = re.compile(r"\b([A-Z][a-z]+)\s+" + _FAILURE + r"\b")
# Capitalised words that start sentences but are not people.
_NOT_PEOPLE = frozenset({
    "we", "i", "it", "they", "he", "she", "you", "the", "this", "that", "these", "those", "our", "their",
    "nobody", "someone", "somebody", "everyone", "everybody", "who", "which", "what", "there", "here", "and",
    "but", "then", "so", "also", "nothing", "one", "no", "all", "each", "my", "your", "his", "her", "its",
})
NAME_SUGGESTION = ("Make the system, not the person, the subject: describe what the tooling or process allowed "
                   "(\"The rollout continued although the canary was failing\") instead of \"{name} ...\".")


@dataclass(frozen=True)
class Finding:
    start: int
    end: int
    phrase: str
    suggestion: str
    category: str


def _phrase_pattern(phrase: str, folded: bool = False) -> str:
    """Whole words, any spacing, either apostrophe. `folded`: for lower-cased text, case-sensitive, and starting
    with the first word's letters (the word boundary checked just after them), which lets the regex engine jump
    between occurrences of that literal instead of trying every position."""
    parts = [re.split(r"['’]", w) for w in (phrase.lower() if folded else phrase).split()]
    words = ["['’]".join(re.escape(part) for part in w) for w in parts]
    body = r"\s+".join(words)
    end = r"\b" if phrase[-1:].isalnum() else ""
    if not phrase[:1].isalnum():
        return body + end
    if not folded:
        return r"\b" + body + end
    lead = re.escape(parts[0][0])
    return lead + rf"(?<!\w{lead})" + body[len(lead):] + end


@lru_cache(maxsize=32)
def _compile(phrases: tuple[tuple[str, str, str], ...], folded: bool) -> list[tuple[re.Pattern, str, str]]:
    flags = 0 if folded else re.IGNORECASE
    return [(re.compile(_phrase_pattern(p, folded), flags), s, c) for p, s, c in phrases]


def _folded(text: str) -> str | None:
    """`text` lower-cased when that is exact for case-insensitive matching: same length (so offsets hold) and no
    character whose case has more than one lower form (ſ, ı, µ, ß ...); else None."""
    lowered = text.lower()
    return lowered if len(lowered) == len(text) and text.upper().lower() == lowered else None


@lru_cache(maxsize=32)
def _names_pattern(names: tuple[str, ...]) -> re.Pattern | None:
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(r"\b(" + alternatives + r")\s+" + _FAILURE + r"\b", re.IGNORECASE)


def _people(session: Session) -> tuple[str, ...]:
    names: set[str] = set()
    for full in session.scalars(sa.select(User.name)):
        full = full.strip()
        if full:
            names.add(full)
            first = full.split()[0]
            if len(first) > 2 and first.lower() not in _NOT_PEOPLE:
                names.add(first)
    return tuple(sorted(names))


class _Spans:
    """Sorted spans answering "does one of them cover this?" by binary search (a linear scan per question made
    the coach quadratic: 100 kB of text took seconds)."""

    def __init__(self, spans: list[Finding]):
        ordered = sorted(spans, key=lambda f: f.start)
        self.starts = [f.start for f in ordered]
        self.max_end = list(accumulate((f.end for f in ordered), max))  # spans may overlap: the furthest end so far

    def covers(self, start: int, end: int) -> bool:
        """True when some span has span.start <= start and end <= span.end."""
        i = bisect_right(self.starts, start)
        return i > 0 and self.max_end[i - 1] >= end


def check_text(session: Session, text: str, *, max_length: int = MAX_TEXT,
               max_findings: int | None = None) -> list[Finding]:
    """Every flagged span of `text` (the first `max_findings` of them), in order; a person-as-subject finding
    swallows phrases inside it."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise Invalid("Text must be a string.", {"text": ["Not a string."]})
    if len(text) > max_length:
        raise Invalid(f"Text is longer than {max_length} characters.", {"text": ["Too long."]})
    rows = session.execute(
        sa.select(BlamelessPhrase.phrase, BlamelessPhrase.suggestion, BlamelessPhrase.category)
        .where(BlamelessPhrase.active.is_(True)).order_by(BlamelessPhrase.id)
    ).all()
    # Each source yields in text order, so the first `max_findings` of the answer are among the first
    # `max_findings` of each source: a long text full of findings stops early instead of listing them all.
    # (A span a source would have yielded later starts after that many findings, so it swallows none of them.)
    def first(found: Iterator[Finding]) -> list[Finding]:
        return list(islice(found, max_findings))

    # Names are only looked up when a failure verb is there at all: most keystrokes skip the user query.
    known = _names_pattern(_people(session)) if _may_name_a_failure(text) else None
    # finditer's matches do not overlap, so none can start inside another of the same pattern.
    people = first(_person(text, m) for m in (known.finditer(text) if known else ())
                   if m.group(1).split()[0].lower() not in _NOT_PEOPLE)
    taken = _Spans(people)  # so only a known name's span can already hold a capitalised one
    people += first(_person(text, m) for m in _CAPITALISED.finditer(text)
                    if m.group(1).lower() not in _NOT_PEOPLE and not taken.covers(m.start(), m.start() + 1))
    swallowed = _Spans(people)
    folded = _folded(text)
    phrases = [
        finding
        for pattern, suggestion, category in _compile(tuple(tuple(r) for r in rows), folded is not None)
        for finding in first(
            Finding(m.start(), m.end(), text[m.start():m.end()], suggestion, category)
            for m in pattern.finditer(text if folded is None else folded)
            if not swallowed.covers(m.start(), m.end()))
    ]
    findings = sorted(people + phrases, key=lambda f: (f.start, -f.end))
    return findings[:max_findings]


def check_sections(session: Session, sections, *, max_length: int = MAX_TEXT,
                   max_findings: int = MAX_FINDINGS) -> list[tuple[object, list[Finding]]]:
    """(section, findings) for each section whose text the coach flags, in the post-mortem's order; a text
    longer than `max_length` is checked up to there (advice for reviewers, never a refusal)."""
    out = []
    for section in sections:
        findings = check_text(session, section.body[:max_length], max_length=max_length, max_findings=max_findings)
        if findings:
            out.append((section, findings))
    return out


def _may_name_a_failure(text: str) -> bool:
    """_ANY_FAILURE.search, skipped when the lower-cased text lacks each verb's first letters (a substring test is
    far cheaper than the case-insensitive scan of a long text that has none)."""
    folded = _folded(text)
    if folded is not None and not any(word in folded for word in _FAILURE_WORDS):
        return False
    return _ANY_FAILURE.search(text) is not None


def _person(text: str, m: re.Match) -> Finding:
    start, name = m.start(), m.group(1)
    return Finding(start, m.end(), text[start:m.end()], NAME_SUGGESTION.format(name=name), "blame")


# --- the word list, as data admins extend ------------------------------------------------------------

def list_phrases(session: Session) -> list[BlamelessPhrase]:
    return list(session.scalars(sa.select(BlamelessPhrase).order_by(BlamelessPhrase.phrase)))


def _validate(phrase: str, suggestion: str, category: str) -> tuple[str, str, str]:
    reject_nul(phrase=phrase, suggestion=suggestion)
    phrase = " ".join((phrase or "").split()).lower()
    errors = {}
    if not phrase or len(phrase) > 100:
        errors["phrase"] = ["Between 1 and 100 characters."]
    if not (suggestion or "").strip() or len(suggestion) > 500:
        errors["suggestion"] = ["A suggestion of up to 500 characters is required."]
    if category not in CATEGORIES:
        errors["category"] = [f"One of: {', '.join(CATEGORIES)}."]
    if errors:
        raise Invalid("The phrase has invalid fields.", errors)
    return phrase, suggestion.strip(), category


def create_phrase(session: Session, *, phrase: str, suggestion: str, category: str = "blame") -> BlamelessPhrase:
    phrase, suggestion, category = _validate(phrase, suggestion, category)
    if session.scalar(sa.select(BlamelessPhrase.id).where(BlamelessPhrase.phrase == phrase)):
        raise Conflict(f"The phrase {phrase!r} is already on the list.", {"phrase": ["Already on the list."]})
    row = BlamelessPhrase(phrase=phrase, suggestion=suggestion, category=category)
    session.add(row)
    session.flush()
    events.emit(session, "postmortem.phrase_changed", phrase_id=row.id, changes=events.diff({}, _phrase(row)))
    return row


def _phrase(row: BlamelessPhrase) -> dict:
    return {"phrase": row.phrase, "suggestion": row.suggestion, "category": row.category, "active": row.active}


def update_phrase(session: Session, phrase_id: int, *, suggestion: str, category: str, active: bool) -> BlamelessPhrase:
    row = session.get(BlamelessPhrase, phrase_id)
    if row is None:
        raise NotFound("No such phrase.")
    before = _phrase(row)
    _, row.suggestion, row.category = _validate(row.phrase, suggestion, category)
    row.active = active
    session.flush()
    if changes := events.diff(before, _phrase(row)):
        events.emit(session, "postmortem.phrase_changed", phrase_id=row.id, changes=changes)
    return row
