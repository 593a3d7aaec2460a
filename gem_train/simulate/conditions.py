"""The simulator's conditions: canonical names, class ranges (generate / accept), consistent sampling."""

from __future__ import annotations

import numpy as np

# --- Condition ids (canonical names; the text and the scorer use exactly these strings) ---------
NSR = "normal sinus rhythm"
SB = "sinus bradycardia"
STACH = "sinus tachycardia"
AF = "atrial fibrillation"
AVB1 = "first-degree AV block"
RBBB = "right bundle branch block"
LBBB = "left bundle branch block"
LAD = "left axis deviation"
RAD = "right axis deviation"
LVH = "left ventricular hypertrophy"
INF_STE = "inferior ST elevation"
ANT_STE = "anterior ST elevation"
CONDITIONS = (NSR, SB, STACH, AF, AVB1, RBBB, LBBB, LAD, RAD, LVH, INF_STE, ANT_STE)  # the fixed order
RHYTHMS = (NSR, SB, STACH, AF)
EXTRAS = CONDITIONS[4:]
CONDUCTION = (AVB1, RBBB, LBBB)   # at most one per record
STE = (INF_STE, ANT_STE)

# --- Class ranges used to generate (targets) and to accept (checks); the gaps keep labels clean ---
HR_TARGET = {NSR: (62.0, 97.0), SB: (40.0, 56.0), STACH: (104.0, 145.0), AF: (66.0, 140.0)}
HR_ACCEPT = {NSR: (60.5, 99.5), SB: (38.0, 58.5), STACH: (101.0, 150.0), AF: (60.0, 150.0)}
AXIS_TARGET = {"normal": (-15.0, 80.0), LAD: (-75.0, -45.0), RAD: (100.0, 150.0),
               "lbbb normal": (-10.0, 35.0)}   # LBBB keeps a broad R in I and aVL
AXIS_ACCEPT = {"normal": (-25.0, 85.0), LAD: (-85.0, -35.0), RAD: (95.0, 160.0)}
QRS_NOMINAL = {"narrow": (82.0, 106.0), RBBB: (126.0, 158.0), LBBB: (136.0, 170.0)}  # support, ms
QRS_ACCEPT = {"narrow": (70.0, 110.0), RBBB: (120.0, 162.0), LBBB: (130.0, 172.0)}
PR_NOMINAL = {"normal": (132.0, 190.0), AVB1: (222.0, 318.0)}
PR_ACCEPT = {"normal": (110.0, 196.0), AVB1: (212.0, 322.0)}
SOKOLOW_LVH = (3.9, 5.2)          # mV: LVH records are scaled into this; the criterion is > 3.5
SOKOLOW_MAX_OTHER = 2.8           # mV: every other record is scaled below this
RR_CV_REGULAR = 0.06              # sinus CV stays well below, AF well above (checked)
AF_MIN_CV = 0.10
MIN_QRS_NET_AREA = 25.0           # mV ms in the frontal plane: below it the axis is ill-defined
MIN_II_QRS_MV = 0.5               # lead II QRS peak-to-peak is raised to this where voltage allows
EDGE_MS = 100.0                   # no R peak this close to the record's ends


def validate_conditions(conditions: list[str]) -> list[str]:
    """Canonical order, exactly one rhythm (normal sinus rhythm when none is named); raise on conflicts."""
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; valid: {list(CONDITIONS)}")
    chosen = set(conditions)
    if not chosen & set(RHYTHMS):
        chosen.add(NSR)
    problems = []
    if len(chosen & set(RHYTHMS)) > 1:
        problems.append("more than one rhythm")
    if len(chosen & set(CONDUCTION)) > 1:
        problems.append("more than one of 1AVB/RBBB/LBBB")
    if AVB1 in chosen and not chosen & {NSR, SB}:
        problems.append("first-degree AV block needs sinus rhythm at <= 100 bpm")
    if {LAD, RAD} <= chosen:
        problems.append("left and right axis deviation together")
    if {LBBB, RAD} <= chosen:
        problems.append("left bundle branch block with right axis deviation")
    if LVH in chosen and chosen & {RBBB, LBBB}:
        problems.append("voltage criteria are not used with a bundle branch block")
    if len(chosen & set(STE)) > 1:
        problems.append("more than one ST elevation territory")
    if chosen & set(STE) and chosen & {RBBB, LBBB, LVH}:
        problems.append("ST elevation with a bundle branch block or LVH (secondary ST changes)")
    if problems:
        raise ValueError(f"inconsistent conditions {sorted(chosen)}: {'; '.join(problems)}")
    return [c for c in CONDITIONS if c in chosen]


def _compatible(conditions: list[str]) -> bool:
    try:
        validate_conditions(conditions)
    except ValueError:
        return False
    return True


# relative draw weights of the findings, evening out their frequencies (1AVB is sinus-only, the
# bundle branch blocks and axis deviations are restricted by compatibility rules)
EXTRA_WEIGHT = {AVB1: 1.6, RBBB: 1.25, LBBB: 1.2, LAD: 0.8, RAD: 0.9}


def sample_conditions(rng: np.random.Generator) -> list[str]:
    """A clinically consistent combination: ~25% plain normal sinus rhythm, else a rhythm + 0-2 findings."""
    if rng.random() < 0.25:
        return [NSR]
    rhythm = RHYTHMS[rng.choice(4, p=[0.31, 0.23, 0.23, 0.23])]
    n_extra = int(rng.choice(3, p=[0.15, 0.5, 0.35]))
    if rhythm == NSR:
        n_extra = max(n_extra, 1)
    chosen = [rhythm]
    for _ in range(n_extra):
        allowed = [c for c in EXTRAS if c not in chosen and _compatible(chosen + [c])]
        if not allowed:
            break
        weights = np.array([EXTRA_WEIGHT.get(c, 1.0) for c in allowed])
        chosen.append(allowed[rng.choice(len(allowed), p=weights / weights.sum())])
    return validate_conditions(chosen)


def axis_class(conds: set[str]) -> str:
    return LAD if LAD in conds else RAD if RAD in conds else "normal"
