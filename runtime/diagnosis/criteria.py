"""The diagnostic criteria, written once: each finding's names in text, its measurable criterion and its source.

Thresholds are module constants so tests, the evaluation and the printed criterion text use the same numbers.
A margin per quantity keeps a value within measurement error of a threshold from being called either way: such a
statement is "not checkable" (borderline), never contradicted.
"""

from __future__ import annotations

from dataclasses import dataclass

# --- Sources ---------------------------------------------------------------------------------------------------
AHA_II = ("AHA/ACCF/HRS recommendations for the standardization and interpretation of the ECG, Part II: diagnostic "
          "statements (Mason et al., Circulation 2007;115:1325)")
AHA_III = ("AHA/ACCF/HRS recommendations for the standardization and interpretation of the ECG, Part III: "
           "intraventricular conduction disturbances (Surawicz et al., J Am Coll Cardiol 2009;53:976)")
AHA_IV = ("AHA/ACCF/HRS recommendations for the standardization and interpretation of the ECG, Part IV: the ST "
          "segment, T and U waves, and the QT interval (Rautaharju et al., J Am Coll Cardiol 2009;53:982)")
AHA_V = ("AHA/ACCF/HRS recommendations for the standardization and interpretation of the ECG, Part V: ECG changes "
         "associated with cardiac chamber hypertrophy (Hancock et al., J Am Coll Cardiol 2009;53:992); "
         "Sokolow & Lyon, Am Heart J 1949;37:161; Casale et al. (Cornell voltage), Circulation 1985;72:565")
AF_GUIDE = (AHA_II + "; the rhythm's ECG definition as in the ACC/AHA/ESC atrial fibrillation guidelines "
            "(Fuster et al., Circulation 2006;114:e257): irregular RR intervals, no distinct P waves")
RATE_SOURCE = (AHA_II + "; rate limits 60 and 100 bpm as the cart programs state them (GE 12SL, Philips DXL "
               "physician's guides)")
LOW_VOLTAGE_SOURCE = (AHA_II + " (statements 'low voltage, extremity leads' and 'low voltage, precordial leads'); "
                      "amplitude limits as in the Minnesota Code 9-1 and the cart programs' guides")

# --- Thresholds ------------------------------------------------------------------------------------------------
BRADY_BPM, TACHY_BPM = 60.0, 100.0     # sinus bradycardia below, tachycardia above
BRADY_LOW_BPM = 50.0                   # some programs call sinus bradycardia only below 50 bpm (Philips DXL:
                                       # "Sinus bradycardia (rate< 50)"): a normal sinus rhythm at 50-60 is borderline
HR_MARGIN_BPM = 1.0                    # the rate is the mean of every RR in the record: precise to well under 1 bpm
P_AXIS_SINUS_DEG = (-30.0, 105.0)      # a sinus P wave is upright in I and II (normal P axis 0 to +75)
P_AXIS_MARGIN_DEG = 30.0               # ... and an axis beyond the range by more than this is not sinus
PR_AVB1_MS, PR_MARGIN_MS = 200.0, 10.0
QRS_BBB_MS = 120.0                     # complete bundle branch block: QRS >= 120 ms
QRS_IVCD_MS = 110.0                    # abnormal QRS duration in adults: > 110 ms
QRS_MARGIN_MS = 10.0
AXIS_LAD_DEG, AXIS_RAD_DEG = -30.0, 90.0   # adult normal axis -30 to +90
AXIS_MARGIN_DEG = 10.0
QTC_LONG_MS = {"M": 450.0, "F": 460.0}     # prolonged QTc: >= 450 ms men, >= 460 ms women
QTC_MARGIN_MS = 10.0
LOW_VOLTAGE_LIMB_MV, LOW_VOLTAGE_PRECORDIAL_MV = 0.5, 1.0   # QRS peak-to-peak in every lead of the group below
SOKOLOW_LYON_MV = 3.5                  # S V1 + max(R V5, R V6) >= 3.5 mV
CORNELL_MV = {"M": 2.8, "F": 2.0}      # R aVL + S V3 > 2.8 mV men, > 2.0 mV women
VOLTAGE_MARGIN = 0.10                  # share of the limit
# Rhythm: RR irregularity as the median successive RR difference over the mean RR (robust to a few ectopic beats,
# which sinus rhythm may have), and the coefficient of variation.
RR_IRREGULAR = 0.07                    # at or above: irregularly irregular (atrial fibrillation's RR)
RR_REGULAR = 0.035                     # below, with few large jumps: regular (successive RR mostly equal)
RR_JUMP = 0.10                         # a successive RR difference above this share of the mean RR is a jump
RR_JUMP_SHARE_REGULAR = 0.35           # at most this share of jumps in a "regular" rhythm (ectopic beats)
# P wave: the measurement's per-beat check of the atrial wave before the QRS (quality.p_consistency: mean correlation
# of each beat's P window with the median's; quality.p_lag_ms: their median shift). Alike and locked: a P wave before
# every QRS even where its edges were not placed; unlike or wandering: none (fibrillatory activity).
P_LOCKED_CONSISTENCY, P_LOCKED_LAG_MS = 0.6, 4.0
P_UNLIKE_CONSISTENCY, P_UNLOCKED_LAG_MS = 0.5, 8.0
MIN_RR = 4                             # fewer RR intervals: rhythm not checkable
# The baseline between the beats, beat by beat (measure.atrial's baseline_mv: intervals of 120 ms or more between a
# T end and the next P or QRS, the median of their largest peak-to-peak in II, III, aVF, V1). Set on the training half
# of the shared records, their cart files and flutter made from their beats, locked to the QRS:
FLUTTER_TP_FLAT_MV = 0.08              # quieter than this holds no flutter waves (48 of 57 sinus records measured and 8
                                       # of 10 cart files are; no made flutter of 132 measured)
FLUTTER_TP_BUSY_MV = 0.15              # busier than this leaves flutter waves possible: a P-like wave before every QRS
                                       # (a flutter wave conducted at a fixed ratio is one) is then no proof of sinus
                                       # rhythm (made flutter with such a wave: 93 of 132 measured; sinus records with a
                                       # P wave: 1 of 52, a sinus tachycardia at 0.29; cart files reach 0.11)
# Flutter waves (measure.atrial): between the T end and the next P onset, an atrial wave that repeats at one cycle
# of 170-260 ms (230-350/min) with no isoelectric baseline: correlated with itself one cycle later at least this
# well, and anti-correlated half a cycle later. Set on the training half of the shared records and flutter made
# from their beats (gem_train.real_flutter): no real record there reaches 0.79, made flutter mostly 0.98 and above.
FLUTTER_WAVE_PERIODICITY = 0.85
FLUTTER_WAVE_HALF_CYCLE = -0.2

SUPPORTED, CONTRADICTED, NOT_CHECKABLE = "supported", "contradicted", "not checkable"
VERDICTS = (SUPPORTED, CONTRADICTED, NOT_CHECKABLE)


@dataclass(frozen=True)
class Criterion:
    """One finding: how a text names it, what must be measured for it, and where the criterion is written."""

    finding: str                   # key: "atrial_fibrillation"
    name: str                      # as a report names it: "atrial fibrillation"
    patterns: tuple[str, ...]      # regular expressions (case-insensitive) that state it
    criterion: str                 # the measurable criterion, in words
    source: str
    rhythm: bool = False           # a rhythm statement (the evaluation's rhythm counts)
    evidence: bool = False         # a statement of evidence ("irregularly irregular RR"), not a diagnosis


_BBB = r"bundle[\s-]+branch\s+block"
CRITERIA: tuple[Criterion, ...] = (
    Criterion("atrial_fibrillation", "atrial fibrillation",
              (r"\batrial\s+fibrillation\b", r"\ba\.?\s?-?fib\b", r"(?-i:\bAF\b(?!\s*[:=]))"),
              f"RR intervals irregularly irregular (median successive RR difference >= {RR_IRREGULAR:.0%} of the "
              "mean RR) and no distinct P wave before the QRS complexes (regular flutter waves between the beats "
              "contradict it)", AF_GUIDE, rhythm=True),
    Criterion("atrial_flutter", "atrial flutter", (r"\batrial\s+flutter\b", r"(?-i:\bAFL\b)"),
              "regular atrial flutter (F) waves at 240-340/min, sawtooth in II, III, aVF; no isoelectric baseline "
              "between the atrial waves (measured: the TP interval repeating at one cycle of 170-260 ms, correlation "
              f"{FLUTTER_WAVE_PERIODICITY} or more); each QRS conducted from an F wave at a fixed FR interval (a "
              f"flat baseline between the beats, under {FLUTTER_TP_FLAT_MV} mV beat by beat, or atrial activity "
              "before the QRS unlike from beat to beat contradicts it; a P-like wave alone does not: a conducted F "
              "wave is one)",
              AHA_II, rhythm=True),
    Criterion("sinus_rhythm", "sinus rhythm",
              (r"\bsinus\s+rhythm\b", r"\brhythm\s+is\s+sinus\b", r"\bsinus\s+arrhythmia\b"),
              f"a P wave before every QRS complex at a fixed PR interval, P axis sinus ({P_AXIS_SINUS_DEG[0]:+.0f} "
              f"to {P_AXIS_SINUS_DEG[1]:+.0f} degrees: upright in I and II); flutter waves between the beats "
              f"contradict it, and a baseline between the beats busier than {FLUTTER_TP_BUSY_MV} mV leaves it not "
              "checkable", AHA_II, rhythm=True),
    Criterion("normal_sinus_rhythm", "normal sinus rhythm", (r"\bnormal\s+sinus\s+rhythm\b", r"(?-i:\bNSR\b)"),
              f"sinus rhythm at {BRADY_BPM:.0f}-{TACHY_BPM:.0f} bpm ({BRADY_LOW_BPM:.0f}-{BRADY_BPM:.0f} bpm: "
              "borderline, programs differ)", RATE_SOURCE, rhythm=True),
    Criterion("sinus_tachycardia", "sinus tachycardia", (r"\bsinus\s+tachycardia\b",),
              f"sinus rhythm above {TACHY_BPM:.0f} bpm", RATE_SOURCE, rhythm=True),
    Criterion("sinus_bradycardia", "sinus bradycardia", (r"\bsinus\s+bradycardia\b",),
              f"sinus rhythm below {BRADY_BPM:.0f} bpm", RATE_SOURCE, rhythm=True),
    Criterion("first_degree_av_block", "first-degree AV block",
              (r"\b(?:first|1st|1|I)(?:\s*|-)(?:degree|°)\s+(?:AV|A-V|atrioventricular)\s+block\b",
               r"\b(?:AV|A-V|atrioventricular)\s+block,?\s+(?:first|1st)(?:\s*|-)degree\b",
               r"\b(?:1st|first)(?:\s*|-)degree\s+AVB\b", r"\b1°\s*AVB?\b"),
              f"PR interval > {PR_AVB1_MS:.0f} ms (a P wave conducted to every QRS)", AHA_II),
    Criterion("left_bundle_branch_block", "left bundle branch block",
              (r"\b(?:complete\s+)?left\s+" + _BBB + r"\b", r"(?-i:\b(?:C)?LBBB\b)"),
              f"QRS >= {QRS_BBB_MS:.0f} ms; broad notched or slurred R in I, aVL, V5, V6 with no S; QS or rS in V1; "
              "R peak time > 60 ms in V5 and V6", AHA_III),
    Criterion("right_bundle_branch_block", "right bundle branch block",
              (r"\b(?:complete\s+)?right\s+" + _BBB + r"\b", r"(?-i:\b(?:C)?RBBB\b)"),
              f"QRS >= {QRS_BBB_MS:.0f} ms; rsr', rsR' or rSR' (a terminal R') in V1 or V2; S wave longer than the R "
              "wave or > 40 ms in I and V6", AHA_III),
    Criterion("incomplete_right_bundle_branch_block", "incomplete right bundle branch block",
              (r"\bincomplete\s+right\s+" + _BBB + r"\b", r"(?-i:\bIRBBB\b)"),
              f"QRS {QRS_IVCD_MS:.0f}-{QRS_BBB_MS - 1:.0f} ms with the morphology of right bundle branch block "
              "(terminal R' in V1 or V2, terminal S in I and V6)", AHA_III),
    Criterion("incomplete_left_bundle_branch_block", "incomplete left bundle branch block",
              (r"\bincomplete\s+left\s+" + _BBB + r"\b", r"(?-i:\bILBBB\b)"),
              f"QRS {QRS_IVCD_MS:.0f}-{QRS_BBB_MS - 1:.0f} ms; R peak time > 60 ms in V5/V6, no S in I and V6, "
              "QS or rS in V1", AHA_III),
    Criterion("nonspecific_ivcd", "nonspecific intraventricular conduction delay",
              (r"\b(?:non-?\s?specific\s+)?intra-?ventricular\s+conduction\s+(?:delay|disturbance|defect|disorder)\b",
               r"(?-i:\bIVCD\b)", r"(?-i:\bNSIVCB?\b)"),
              f"QRS > {QRS_IVCD_MS:.0f} ms without the morphology of left or right bundle branch block", AHA_III),
    Criterion("left_axis_deviation", "left axis deviation", (r"\bleft\s+axis\s+deviation\b", r"\bleftward\s+axis\b"),
              f"frontal QRS axis {AXIS_LAD_DEG:+.0f} to -90 degrees (adult normal -30 to +90)", AHA_III),
    Criterion("right_axis_deviation", "right axis deviation",
              (r"\bright\s+axis\s+deviation\b", r"\brightward\s+axis\b"),
              f"frontal QRS axis {AXIS_RAD_DEG:+.0f} to +180 degrees (adult normal -30 to +90)", AHA_III),
    Criterion("long_qt", "prolonged QT",
              (r"\b(?:long|prolonged)\s+QTc?\b(?:\s+interval)?",
               r"\bQTc?(?:\s+interval)?(?:\s+(?:is|was|appears|seems))?(?:\s+not)?\s+(?:prolonged|long)\b",
               r"\bQTc?\s+prolongation\b"),
              f"QTc >= {QTC_LONG_MS['M']:.0f} ms in men, >= {QTC_LONG_MS['F']:.0f} ms in women (Bazett and "
              "Fridericia both; either sex's limit where the sex is not known)", AHA_IV),
    Criterion("low_voltage", "low QRS voltage",
              (r"\blow\s+(?:QRS\s+)?voltage(?:s)?\b", r"\blow\s+amplitude\s+QRS\b"),
              f"QRS peak-to-peak < {LOW_VOLTAGE_LIMB_MV} mV in every limb lead, or < {LOW_VOLTAGE_PRECORDIAL_MV} mV "
              "in every precordial lead", LOW_VOLTAGE_SOURCE),
    Criterion("left_ventricular_hypertrophy", "left ventricular hypertrophy",
              (r"\bleft\s+ventricular\s+hypertrophy\b", r"(?-i:\bLVH\b)", r"\bleft\s+ventricular\s+high\s+voltage\b"),
              f"a voltage criterion: Sokolow-Lyon S V1 + max(R V5, R V6) >= {SOKOLOW_LYON_MV} mV, or Cornell "
              f"R aVL + S V3 > {CORNELL_MV['M']} mV (men) / > {CORNELL_MV['F']} mV (women); not applicable with a "
              "bundle branch block", AHA_V),
)
# Statements of the evidence behind a rhythm: checked as the diagnoses are, not counted as diagnoses.
CRITERIA += (
    Criterion("irregularly_irregular_rr", "irregularly irregular RR intervals",
              (r"\birregularly\s+irregular\b",),
              f"median successive RR difference >= {RR_IRREGULAR:.0%} of the mean RR (no dominant cycle)", AF_GUIDE,
              evidence=True),
    Criterion("regular_rr", "regular RR intervals",
              (r"\bregular\s+(?:RR|R-R)(?:\s+intervals?)?\b", r"\bregular\s+rhythm\b",
               r"\b(?:RR|R-R)\s+intervals?\s+(?:are|is)\s+regular\b"),
              f"median successive RR difference < {RR_REGULAR:.1%} of the mean RR, at most "
              f"{RR_JUMP_SHARE_REGULAR:.0%} of successive differences above {RR_JUMP:.0%} (ectopic beats)", AHA_II,
              evidence=True),
    Criterion("p_wave_before_every_qrs", "a P wave before every QRS complex",
              (r"\bP\s+waves?\s+(?:before|preceding)\s+(?:every|each)\s+QRS\b",
               r"\b(?:every|each)\s+QRS(?:\s+complex)?\s+(?:is\s+)?preceded\s+by\s+a\s+P\s+wave\b"),
              "a P wave alike in every beat at a fixed place before the QRS", AHA_II, evidence=True),
)
CRITERION = {c.finding: c for c in CRITERIA}
RHYTHM_FINDINGS = tuple(c.finding for c in CRITERIA if c.rhythm)
EVIDENCE_FINDINGS = tuple(c.finding for c in CRITERIA if c.evidence)
