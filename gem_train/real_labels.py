"""Labelled real 12-lead records: their cardiologists' diagnoses as `gem_runtime.diagnosis` findings, and the
scoring of stated findings against them (torch-free; `gem-train eval --real DIR` runs the model, this scores).

Two label sources are read from the WFDB headers:
- PhysioNet/CinC Challenge 2020/2021 records: `# Dx: <SNOMED-CT codes>` and `# Sex:` (the codes as in the
  Challenge's dx_mapping_scored.csv / dx_mapping_unscored.csv);
- LUDB: `#<sex>:` and the diagnosis lines after `#<diagnoses>:` ("Rhythm: Sinus bradycardia.", "Complete right
  bundle branch block.", ...).

Every record has a rhythm truth (or None where the labels name none, or two that conflict), the findings labelled
present, and the findings its source excludes by not labelling them: only where the source labels that class
for every record (CPSC 2018's nine classes; LUDB's conduction column), never from silence alone.
LUDB's axis and hypertrophy labels are left out: the shared LUDB copy's per-lead gains scale every lead to 1.0 mV
peak-to-peak (III != II - I; every lead's median QRS about 0.75 mV), so its amplitudes, voltage criteria and frontal
axes are not physical; its rhythm, intervals and QRS shapes are.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

AF, AFL, SR, NSR, STACH, SB = ("atrial_fibrillation", "atrial_flutter", "sinus_rhythm", "normal_sinus_rhythm",
                               "sinus_tachycardia", "sinus_bradycardia")
SINUS = (SR, NSR, STACH, SB)
AVB1, LBBB, RBBB, IRBBB, ILBBB, IVCD = ("first_degree_av_block", "left_bundle_branch_block",
                                        "right_bundle_branch_block", "incomplete_right_bundle_branch_block",
                                        "incomplete_left_bundle_branch_block", "nonspecific_ivcd")
LAD, RAD, LQT, LOWV, LVH = ("left_axis_deviation", "right_axis_deviation", "long_qt", "low_voltage",
                            "left_ventricular_hypertrophy")

SNOMED_RHYTHM = {"164889003": AF, "164890007": AFL, "426783006": NSR, "427084000": STACH, "426177001": SB,
                 "427393009": SR}      # sinus arrhythmia: sinus, rate class not labelled
# Other rhythms: with any of them the rhythm truth is None (not one of ours, or in conflict with the one labelled).
SNOMED_OTHER_RHYTHM = {"713422000", "195080001", "17366009", "195101003", "29320008", "10370003", "426761007",
                       "233892002", "106068003", "164895002", "27885002", "426648003", "251268003", "251266004"}
SNOMED_FINDINGS = {"270492004": AVB1, "164909002": LBBB, "733534002": LBBB, "59118001": RBBB, "713427006": RBBB,
                   "713426002": IRBBB, "251120003": ILBBB, "698252002": IVCD, "39732003": LAD, "47665007": RAD,
                   "111975006": LQT, "251146004": LOWV, "164873001": LVH, "55827005": LVH}
# CPSC 2018 (records A*): nine classes labelled on every record (normal, AF, I-AVB, LBBB, RBBB, PAC, PVC, STD, STE).
CPSC_CLASSES = (AVB1, LBBB, RBBB)
LUDB_RHYTHM = {"sinus rhythm": NSR, "sinus bradycardia": SB, "sinus tachycardia": STACH, "atrial fibrillation": AF,
               "atrial flutter": AFL, "sinus arrhythmia": SR}
LUDB_FINDINGS = {"i degree av block": AVB1, "complete left bundle branch block": LBBB,
                 "complete right bundle branch block": RBBB, "incomplete right bundle branch block": IRBBB,
                 "incomplete left bundle branch block": ILBBB, "non-specific intravintricular conduction delay": IVCD,
                 "non-specific intraventricular conduction delay": IVCD}
LUDB_CLASSES = (AVB1, LBBB, RBBB, IRBBB, ILBBB, IVCD)


@dataclasses.dataclass(frozen=True)
class RecordLabels:
    """One labelled record's truth, as findings."""

    record: str                         # the header's stem
    source: str                         # "cinc" or "ludb"
    sex: str | None                     # "M", "F" or None
    rhythm: str | None                  # one of AF, AFL, NSR, STACH, SB, SR (sinus, rate class not labelled), None
    present: frozenset[str]             # non-rhythm findings labelled
    absent: frozenset[str]              # non-rhythm findings the source excludes
    labels: tuple[str, ...]             # the raw labels

    def to_dict(self) -> dict:
        return {"record": self.record, "source": self.source, "sex": self.sex, "rhythm": self.rhythm,
                "present": sorted(self.present), "absent": sorted(self.absent), "labels": list(self.labels)}


def read_labels(header: Path) -> RecordLabels | None:
    """The labels of a WFDB header, or None when it carries none we read. The sex is read as gem-run's WFDB reader
    reads it (`header_sex`), so the diagnosis check is given the same limits in evaluation as in use."""
    from gem_runtime.readers.wfdb import header_sex

    text = Path(header).read_text(errors="replace")
    stem = Path(header).stem
    dx = re.search(r"^#\s*Dx:\s*(.+)$", text, re.M)
    if dx:
        codes = tuple(c.strip() for c in dx.group(1).split(",") if c.strip())
        rhythms = {SNOMED_RHYTHM[c] for c in codes if c in SNOMED_RHYTHM}
        rhythm = rhythms.pop() if len(rhythms) == 1 and not SNOMED_OTHER_RHYTHM & set(codes) else None
        if len(rhythms) > 1:
            rhythm = None
        present = frozenset(SNOMED_FINDINGS[c] for c in codes if c in SNOMED_FINDINGS)
        absent: frozenset[str] = frozenset()
        if stem.startswith("A") and stem[1:].isdigit():           # CPSC 2018
            absent = frozenset(CPSC_CLASSES) - present
            if rhythm is None and "164889003" not in codes:       # not AF: CPSC has no other non-sinus rhythm class
                rhythm = SR
        return RecordLabels(stem, "cinc", header_sex(text), rhythm, present, absent, codes)
    if "#<diagnoses>:" in text:
        lines = [ln.lstrip("#").strip().rstrip(".").strip() for ln in text.split("#<diagnoses>:", 1)[1].splitlines()]
        lines = [ln for ln in lines if ln]
        rhythm = None
        for ln in lines:
            if ln.lower().startswith("rhythm:"):
                names = [n.strip().lower().split(",")[0] for n in ln.split(":", 1)[1].split(";")]
                found = {LUDB_RHYTHM[n] for n in names if n in LUDB_RHYTHM}
                rhythm = found.pop() if len(found) == 1 and len(names) == 1 else None
        present = frozenset(LUDB_FINDINGS[ln.lower()] for ln in lines if ln.lower() in LUDB_FINDINGS)
        absent = frozenset(LUDB_CLASSES) - present
        return RecordLabels(stem, "ludb", header_sex(text), rhythm, present, absent,
                            tuple(lines))
    return None


def labelled_headers(folder: Path) -> list[Path]:
    """The WFDB headers in `folder` that carry labels, in a stable order (numeric stems by number)."""
    heads = [h for h in Path(folder).glob("*.hea") if read_labels(h) is not None]
    return sorted(heads, key=lambda h: (not h.stem.isdigit(), int(h.stem) if h.stem.isdigit() else 0, h.stem))


def rhythm_statement_right(finding: str, labels: RecordLabels) -> bool | None:
    """Is stating this rhythm right for the record (None: the labels do not say)? Sinus statements are sinus
    rhythm's; a rate class (normal, tachycardia, bradycardia) is judged only where the labels name one."""
    truth = labels.rhythm
    if truth is None:
        return None
    if truth in (AF, AFL):
        return finding == truth
    if finding in (AF, AFL):
        return False
    if finding == SR:
        return True
    return None if truth == SR else finding == truth


def condition_statement_right(finding: str, labels: RecordLabels) -> bool | None:
    if finding in labels.present:
        return True
    if finding in labels.absent:
        return False
    return None


def statement_right(finding: str, labels: RecordLabels) -> bool | None:
    from gem_runtime.diagnosis import RHYTHM_FINDINGS

    return (rhythm_statement_right if finding in RHYTHM_FINDINGS else condition_statement_right)(finding, labels)


def empty_counts() -> dict:
    from gem_runtime.diagnosis import VERDICTS

    return {"right": {v: 0 for v in VERDICTS}, "wrong": {v: 0 for v in VERDICTS}}


def flag_summary(counts: dict) -> dict:
    """Shares of wrong statements flagged (contradicted) and of right ones flagged."""
    from gem_runtime.diagnosis import CONTRADICTED

    out = {}
    for side in ("right", "wrong"):
        n = sum(counts[side].values())
        out[f"{side}_statements"] = n
        out[f"{side}_flagged"] = counts[side][CONTRADICTED]
        out[f"{side}_flagged_share"] = None if n == 0 else round(counts[side][CONTRADICTED] / n, 3)
    return out


def ground_labels(records: list[tuple[RecordLabels, object]]) -> dict:
    """The grounding check against the labels alone, no model: for each record, each rhythm finding stated in turn
    (right where the labels make it right, wrong where they make it wrong) and each labelled or excluded condition;
    counts of verdicts, and which right statements were flagged and which wrong ones were not.
    `records`: (labels, Measurements) pairs."""
    from gem_runtime.diagnosis import CONTRADICTED, CRITERIA, RHYTHM_FINDINGS, check_diagnoses

    rhythm = empty_counts()
    by_finding: dict[str, dict] = {}
    conditions: dict[str, dict] = {}
    right_flagged, wrong_missed = [], []
    for labels, meas in records:
        for c in CRITERIA:
            right = statement_right(c.finding, labels)
            if right is None:
                continue
            verdicts = [v for v in check_diagnoses(c.name, meas, sex=labels.sex) if v.finding == c.finding]
            if not verdicts:                          # the name must state its own finding
                raise AssertionError(f"{c.name!r} is not recognised as {c.finding}")
            v = verdicts[0]
            side = "right" if right else "wrong"
            counts = rhythm if c.finding in RHYTHM_FINDINGS else conditions.setdefault(c.finding, empty_counts())
            counts[side][v.verdict] += 1
            if c.finding in RHYTHM_FINDINGS:
                by_finding.setdefault(c.finding, empty_counts())[side][v.verdict] += 1
            if c.finding in RHYTHM_FINDINGS and right and v.verdict == CONTRADICTED:
                right_flagged.append({"record": labels.record, "finding": c.finding, "reason": v.reason})
            if c.finding in RHYTHM_FINDINGS and not right and v.verdict != CONTRADICTED:
                wrong_missed.append({"record": labels.record, "finding": c.finding, "verdict": v.verdict,
                                     "reason": v.reason})
    return {"rhythm": {"counts": rhythm, **flag_summary(rhythm),
                       "by_finding": {f: {"counts": c, **flag_summary(c)} for f, c in by_finding.items()},
                       "right_flagged_statements": right_flagged,
                       "wrong_not_flagged_statements": wrong_missed},
            "conditions": {f: {"counts": c, **flag_summary(c)} for f, c in sorted(conditions.items())}}
