"""Check the diagnoses a generated interpretation states against their measurable criteria.

`grounding.check_grounding` checks the numbers a text states; this checks the findings: "atrial fibrillation"
over a regular rhythm with a P wave before every QRS is contradicted, whatever numbers the text cites.

    from gem_runtime.diagnosis import check_diagnoses
    verdicts = check_diagnoses(text, meas, device=record.device, sex=record.sex)   # "F", "M" or None
    for v in verdicts:
        print(v.finding, v.verdict, v.reason)      # "atrial_fibrillation contradicted RR regular (...); ..."
    [v.to_dict() for v in verdicts]                # JSON-ready

API (all of it):
- `check_diagnoses(text, meas, device=None, sex=None) -> list[DiagnosisVerdict]`: one verdict per statement of a
  finding in `text`, in text order (a finding named twice gets two). Negated or questioned mentions ("no atrial
  fibrillation", "without first-degree AV block", "Is the QT prolonged?") are not statements and get none.
  `meas` is a `gem_runtime.measure.Measurements` (only its public fields are read); `device` the file's
  `DeviceReport` (its measurements give a second, numeric-only verdict; its statements that name the same finding
  are listed); `sex` "M"/"F" (also "male"/"female"; None: unknown) picks the QTc and Cornell limits.
- `DiagnosisVerdict`: finding (a `CRITERIA` key), name, statement (the words matched), span (characters in
  `text`), verdict (`SUPPORTED`, `CONTRADICTED`, `NOT_CHECKABLE`), reason (one line: the measured evidence
  against the criterion), evidence (the values read), criterion, source, device_verdict, device_reason,
  device_statements; `to_dict()`.
- `find_statements(text) -> list[Mention]`: the recognition step alone.
- `CRITERIA` / `CRITERION`: the table (finding, name, patterns, criterion, source, rhythm, evidence), in
  `criteria.py` with every threshold as a constant. `RHYTHM_FINDINGS`: the rhythm diagnoses; `EVIDENCE_FINDINGS`:
  statements of the evidence behind a rhythm ("irregularly irregular RR intervals", "regular rhythm", "a P wave
  before every QRS"), checked the same way but not diagnoses.
- `flagged(verdicts) -> list[DiagnosisVerdict]`: the contradicted ones (what a report marks).

Verdicts: "contradicted" only where a measured value lies beyond the criterion's threshold by more than a margin
(rate 3 bpm, PR/QRS 10 ms, QTc 10 ms, axis 10 degrees, voltages 10%), or where a measured pattern excludes the
finding (a consistent P wave at a fixed PR excludes atrial fibrillation); a value within the margin, or a
criterion whose evidence was not measured, is "not checkable" with the reason; never guessed.
Criteria covered and their sources: `criteria.py` (AHA/ACCF/HRS 2007-2009 recommendations, parts II-V).
"""

from __future__ import annotations

import dataclasses

from .checks import CHECKS
from .criteria import (
    CONTRADICTED, CRITERIA, CRITERION, EVIDENCE_FINDINGS, NOT_CHECKABLE, RHYTHM_FINDINGS, SUPPORTED, VERDICTS,
    Criterion,
)
from .evidence import as_dict, from_device, from_measurements, rr_evidence
from .statements import Mention, find_statements

__all__ = ["check_diagnoses", "flagged", "rr_rhythm", "find_statements", "DiagnosisVerdict", "Mention", "Criterion",
           "CRITERIA", "CRITERION", "RHYTHM_FINDINGS", "EVIDENCE_FINDINGS", "SUPPORTED", "CONTRADICTED",
           "NOT_CHECKABLE", "VERDICTS"]


@dataclasses.dataclass(frozen=True)
class DiagnosisVerdict:
    """One finding the text states, and what the measurements say about it."""

    finding: str                       # CRITERIA key: "atrial_fibrillation"
    name: str                          # "atrial fibrillation"
    statement: str                     # the words in the text that state it
    span: tuple[int, int]              # their characters in the text
    verdict: str                       # SUPPORTED, CONTRADICTED or NOT_CHECKABLE
    reason: str                        # the measured evidence against the criterion, one line
    evidence: dict                     # the values read (None: not measured)
    criterion: str
    source: str
    device_verdict: str | None = None  # the same criterion on the cart's own measurements (numbers only)
    device_reason: str | None = None
    device_statements: tuple[str, ...] = ()   # the cart's statements that name the same finding

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["span"], out["device_statements"] = list(self.span), list(self.device_statements)
        return out


def _sex(sex: str | None) -> str | None:
    if sex is None:
        return None
    s = str(sex).strip().upper()[:1]
    return s if s in ("M", "F") else None


def check_diagnoses(text: str, meas, device=None, sex: str | None = None) -> list[DiagnosisVerdict]:
    """Every finding stated in `text`, checked against `meas` (and the cart's `device` report where given)."""
    mentions = find_statements(text)
    if not mentions:
        return []
    sex = _sex(sex)
    ours = from_measurements(meas)
    theirs = from_device(device) if device is not None and device.measurements else None
    cart = {}
    if device is not None:
        for statement in device.statements:
            for m in find_statements(statement):
                cart.setdefault(m.finding, []).append(statement)
    out = []
    for m in mentions:
        c = CRITERION[m.finding]
        res = CHECKS[m.finding](ours, sex)
        evidence = as_dict(ours, res.keys)
        evidence.update(res.extra)
        dv = dr = None
        if theirs is not None:
            dres = CHECKS[m.finding](theirs, sex)
            dv, dr = dres.verdict, dres.reason
        out.append(DiagnosisVerdict(m.finding, c.name, m.text, m.span, res.verdict, res.reason, evidence,
                                    c.criterion, c.source, dv, dr, tuple(dict.fromkeys(cart.get(m.finding, ())))))
    return out


def rr_rhythm(meas) -> str | None:
    """The RR rhythm in the words and by the rule the rhythm checks use ("RR regular (median successive difference
    1.7% of the mean RR, CV 0.01)", "RR irregularly irregular (...)"), None with too few beats. The text outputs print
    this, not the measurement's `rhythm_regular` (RR CV < 0.08, what delineation uses): on an athlete's marked sinus
    arrhythmia (CV 0.079, successive differences 7.3%) the two put "rhythm regular" beside a check that said
    "RR irregularly irregular"."""
    from .checks import rr_rhythm_text

    return rr_rhythm_text(rr_evidence(meas))


def flagged(verdicts: list[DiagnosisVerdict]) -> list[DiagnosisVerdict]:
    """The statements the measurements contradict: what a report marks as not to be trusted."""
    return [v for v in verdicts if v.verdict == CONTRADICTED]
