"""Check the numbers a generated interpretation states against the deterministic measurements.

A grounded text cites evidence ("PR interval of 164 ms"); this flags the cited numbers that the signal
does not support, so a reader sees at once which part of the text to distrust.

    items = check_grounding("Sinus rhythm at 72 bpm, QRS duration 96 ms, QT/QTc 380/415 ms.", meas)
    [(i.quantity, i.stated, i.measured, i.verdict) for i in items]
    # [("hr_bpm", 72.0, 71.4, "agree"), ("qrs_ms", 96.0, 132.0, "disagree"), ...]
"""

from __future__ import annotations

import dataclasses
import re

from .measure import Measurements
from .readers.record import DeviceReport

# Tolerances: a stated value agrees when |stated - measured| <= tolerance.
HR_TOLERANCE_FRACTION = 0.10     # heart rate: 10% of the measured rate ...
HR_TOLERANCE_BPM = 5.0           # ... or 5 bpm, whichever is larger
PR_QRS_TOLERANCE_MS = 20.0
QT_TOLERANCE_MS = 30.0           # QT and QTc
AXIS_TOLERANCE_DEG = 20.0

AGREE, DISAGREE, NOT_MEASURABLE = "agree", "disagree", "not measurable"

_NUM = r"([-+−–]?\d+(?:\.\d+)?)"
_GAP = r"[^.;\d]{0,40}?"         # words between a name and its number, inside one clause
_PATTERNS = [  # (quantity, regex); the number is group 1
    ("hr_bpm", re.compile(_NUM + r"\s*(?:bpm|beats?\s*(?:per|/)\s*min(?:ute)?)", re.I)),
    ("hr_bpm", re.compile(r"(?:heart\s+rate|ventricular\s+rate|\brate)\b" + _GAP + r"(?<![/\d])" + _NUM
                          + r"(?!\s*(?:ms|msec|milliseconds|°|deg|%|\d|/))", re.I)),
    ("pr_ms", re.compile(r"\bPR\b(?:\s+interval)?" + _GAP + _NUM + r"\s*(?:ms|msec|milliseconds)", re.I)),
    ("qrs_ms", re.compile(r"\bQRS\b(?:\s+(?:duration|width|interval|complex(?:es)?))?" + _GAP + _NUM
                          + r"\s*(?:ms|msec|milliseconds)", re.I)),
    ("qt_ms", re.compile(r"\bQT\b(?!\s*c|/)(?:\s+interval)?" + _GAP + _NUM + r"\s*(?:ms|msec|milliseconds)",
                         re.I)),
    ("qtc_ms", re.compile(r"\bQTc\b(?!\s*/)(?:\s+interval)?" + _GAP + _NUM + r"\s*(?:ms|msec|milliseconds)",
                          re.I)),
    ("qrs_axis_deg", re.compile(r"\baxis\b" + _GAP + _NUM + r"\s*(?:°|degrees?|deg)", re.I)),
    ("qrs_axis_deg", re.compile(_NUM + r"\s*(?:°|degrees?)\s*(?:QRS\s+)?axis", re.I)),
]
_QT_QTC = re.compile(r"\bQT\s*/\s*QTc\b" + _GAP + _NUM + r"\s*/\s*" + _NUM + r"\s*(?:ms|msec)", re.I)
_WAVE_AXIS = re.compile(r"\b(P|T|QRS)[\s-]*(?:wave\s+)?axis\b", re.I)


@dataclasses.dataclass(frozen=True)
class GroundingItem:
    """One number the text states, and what the measurement says about it."""

    quantity: str                 # a Measurements key ("hr_bpm", "pr_ms", ...); "qtc_ms" checks Bazett
    stated: float
    measured: float | None
    verdict: str                  # AGREE, DISAGREE or NOT_MEASURABLE
    tolerance: float | None       # in the quantity's unit, as used for this comparison
    span: tuple[int, int]         # character span of the number in the text
    reason: str = ""              # why not measurable
    device: float | None = None   # the cart's own value, where the file has one
    device_verdict: str | None = None   # the stated number against it, with the same tolerance

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DeviceComparison:
    """Our measurement beside the cart's: where they disagree, neither is taken on trust."""

    quantity: str
    measured: float | None
    device: float
    verdict: str                  # AGREE, DISAGREE, or NOT_MEASURABLE (we could not measure it)
    tolerance: float | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


DEVICE_DISAGREES = "device_disagrees"      # the quality flag set when any comparison disagrees


def check_grounding(text: str, meas: Measurements, device: DeviceReport | None = None) -> list[GroundingItem]:
    """Every heart rate, PR/QRS/QT/QTc interval and axis stated in `text`, checked against `meas` and,
    where the file carries them, the device's own measurements."""
    found: dict[tuple[int, int], tuple[str, float]] = {}
    for match in _QT_QTC.finditer(text):
        found[match.span(1)] = ("qt_ms", _number(match.group(1)))
        found[match.span(2)] = ("qtc_ms", _number(match.group(2)))
    for quantity, pattern in _PATTERNS:
        for match in pattern.finditer(text):
            span = match.span(1)
            if span in found:
                continue
            kind = _axis_kind(text, match.start(), match.end()) if quantity == "qrs_axis_deg" else quantity
            found[span] = (kind, _number(match.group(1)))
    items = [_compare(q, value, span, meas) for span, (q, value) in sorted(found.items())]
    if device is None:
        return items
    return [_against_device(item, device) for item in items]


def compare_with_device(meas: Measurements, device: DeviceReport | None) -> list[DeviceComparison]:
    """Each quantity both have, ours against the device's (same tolerances as the grounding check). Any
    disagreement also sets the DEVICE_DISAGREES flag in meas.quality, so no report picks one silently."""
    if device is None:
        return []
    out = []
    for quantity, value in device.measurements.items():
        if quantity not in _DEVICE_QUANTITIES:
            continue
        item = _compare(quantity, value, (0, 0), meas)
        out.append(DeviceComparison(quantity, item.measured, value, item.verdict, item.tolerance))
    if any(c.verdict == DISAGREE for c in out) and DEVICE_DISAGREES not in meas.quality.flags:
        meas.quality.flags.append(DEVICE_DISAGREES)
    return out


_DEVICE_QUANTITIES = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "p_axis_deg", "qrs_axis_deg", "t_axis_deg")


def _against_device(item: GroundingItem, device: DeviceReport) -> GroundingItem:
    value = device.measurements.get(item.quantity)
    if value is None:
        return item
    tolerance = _tolerance(item.quantity, value)
    verdict = AGREE if _diff(item.quantity, item.stated, value) <= tolerance else DISAGREE
    return dataclasses.replace(item, device=value, device_verdict=verdict)


def agrees(quantity: str, stated: float, reference: float) -> bool:
    """Is `stated` within the check's tolerance of `reference` (a measurement, a device's or another report's
    value)? The rule check_grounding applies; quantity "qtc_ms" as there."""
    return _diff(quantity, stated, reference) <= _tolerance(quantity, reference)


def _diff(quantity: str, a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0) if quantity.endswith("_deg") else abs(a - b)


def _number(raw: str) -> float:
    return float(raw.replace("−", "-").replace("–", "-"))


def _axis_kind(text: str, start: int, end: int) -> str:
    """'P axis', 'T-wave axis' or (default) the QRS axis, from the words around the match."""
    window = text[max(0, start - 20):end]
    window = window[window.rfind(". ") + 1:]                   # this sentence only
    kinds = _WAVE_AXIS.findall(window)
    wave = kinds[-1].upper() if kinds else "QRS"
    return {"P": "p_axis_deg", "T": "t_axis_deg"}.get(wave, "qrs_axis_deg")


def _compare(quantity: str, stated: float, span, meas: Measurements) -> GroundingItem:
    key = "qtc_bazett_ms" if quantity == "qtc_ms" else quantity
    measured = getattr(meas, key)
    if measured is None:
        reason = meas.quality.reasons.get(key, "not measured")
        return GroundingItem(quantity, stated, None, NOT_MEASURABLE, None, span, reason)
    if quantity == "qtc_ms":   # a text's QTc may be Bazett's or Fridericia's: agree with either
        candidates = [m for m in (meas.qtc_bazett_ms, meas.qtc_fridericia_ms) if m is not None]
        measured = min(candidates, key=lambda m: abs(m - stated))
    tolerance = _tolerance(quantity, measured)
    verdict = AGREE if _diff(quantity, stated, measured) <= tolerance else DISAGREE
    return GroundingItem(quantity, stated, round(float(measured), 1), verdict, round(tolerance, 1), span)


def _tolerance(quantity: str, measured: float) -> float:
    if quantity == "hr_bpm":
        return max(HR_TOLERANCE_FRACTION * measured, HR_TOLERANCE_BPM)
    if quantity in ("pr_ms", "qrs_ms"):
        return PR_QRS_TOLERANCE_MS
    if quantity in ("qt_ms", "qtc_ms"):
        return QT_TOLERANCE_MS
    return AXIS_TOLERANCE_DEG
