"""Find the findings a text states: every mention of a criterion's name, the longest name where names overlap
("normal sinus rhythm" is not also "sinus rhythm"), negated and questioned mentions left out ("no atrial
fibrillation", "without first-degree AV block", "QT is not prolonged", "Is the QT interval prolonged?")."""

from __future__ import annotations

import re
from typing import NamedTuple

from .criteria import CRITERIA

_COMPILED = [(c.finding, re.compile(p, re.I)) for c in CRITERIA for p in c.patterns]

# A negation cue before the mention, inside its clause, denies it ("no AF, flutter or AV block" denies all three).
_NEGATION = re.compile(
    r"\b(?:no|not|without|absent|absence\s+of|negative\s+for|free\s+of|rather\s+than|instead\s+of|"
    r"exclude[sd]?|rules?\s+out|ruled\s+out|neither|nor|resolved)\b", re.I)
# ... unless hedged: "cannot rule out atrial fibrillation" states it as possible, which is checked as stated.
_HEDGE = re.compile(r"\b(?:cannot|can't|can\s+not|could\s+not|not|unable\s+to)\s+(?:be\s+)?"
                    r"(?:rule[sd]?\s+out|exclude[sd]?)\b", re.I)
# The clause a cue reaches ends at punctuation or at words that start a new assertion.
_CLAUSE_BREAK = re.compile(
    r"[.;:!?()\n]|\b(?:but|however|although|though|yet|whereas|while|consistent\s+with|compatible\s+with|"
    r"in\s+keeping\s+with|indicat\w*|suggest\w*|support\w*|diagnos\w*|shows?|showing|represent\w*|"
    r"likely|probable|probably|possible|possibly|there\s+is|there\s+are)\b", re.I)
# A denial after the mention: "atrial fibrillation is not present", "... was excluded", "... absent".
_NEGATED_AFTER = re.compile(
    r"^[\s,]*(?:(?:is|was|are|were|has\s+been|have\s+been)\s+)?(?:not\s+(?:present|seen|evident|identified|noted|"
    r"found|observed|shown|demonstrated|supported)|absent|excluded|ruled\s+out)\b", re.I)
_REACH = 80                      # characters a negation cue reaches back


class Mention(NamedTuple):
    finding: str
    span: tuple[int, int]
    text: str


def find_statements(text: str) -> list[Mention]:
    """The findings `text` states, in text order; a finding named twice gives two mentions."""
    hits = []
    for finding, pattern in _COMPILED:
        for m in pattern.finditer(text):
            hits.append((m.start(), -(m.end() - m.start()), finding, m.end()))
    hits.sort()
    out, taken_to = [], -1
    for start, _, finding, end in hits:
        if start < taken_to:                       # inside a longer (or earlier) name
            continue
        taken_to = end
        if _negated(text, start, end) or _questioned(text, end):
            continue
        out.append(Mention(finding, (start, end), text[start:end]))
    return out


def _negated(text: str, start: int, end: int) -> bool:
    before = text[max(0, start - _REACH):start]
    breaks = list(_CLAUSE_BREAK.finditer(before))
    scope = before[breaks[-1].end():] if breaks else before
    for where in (scope, text[start:end]):              # "QT is not prolonged": the cue inside the name
        for cue in _NEGATION.finditer(where):
            if not _HEDGE.search(where[max(0, cue.start() - 20):cue.end() + 12]):
                return True
    return bool(_NEGATED_AFTER.match(text[end:end + 60]))


def _questioned(text: str, end: int) -> bool:
    """The mention sits in a question ("Is the QT interval prolonged?"): asked, not stated."""
    rest = re.search(r"[.!?\n]", text[end:])
    return bool(rest) and rest.group(0) == "?"
