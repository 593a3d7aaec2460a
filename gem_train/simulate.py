"""A 12-lead ECG simulator with known truth: the training corpus of the `demo` GEM model.

GEM learned from GPT-4o texts grounded in machine measurements; here the measurements are exact
because we make the signal. Every beat is a cardiac dipole d(t) = (x left, y inferior, z anterior)
in mV, built from smooth lobes (P, QRS, ST injury, T), and every lead is a projection of it:

    I = x,  II = x cos 60 + y sin 60,  III = II - I,  aVR = -(I + II)/2,  aVL = I - II/2,  aVF = II - I/2
    Vk = gain_k * (x cos a_k + z sin a_k)     (a_k: the electrode's angle in the horizontal plane)

so the limb-lead identities hold to float precision and the electrical axis is a real property of
the signal. Noise is added to the 8 independent leads (I, II, V1-V6) before the other four are
derived, so the identities survive the noise too.

Truth is measured on the noise-free beat, the way a careful reader would: durations are where the
spatial magnitude of a wave's dipole first and last exceeds 15 uV, axes are the angle of the net
frontal-plane area of the simulated limb leads, and the rate is read off the placed R peaks.
Conditions are produced with gaps between classes (rate, axis, PR, QRS, voltage) so labels are clean.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from gem_runtime.constants import ECG_FS, ECG_SAMPLES, LEADS

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

# --- Measurement and geometry -----------------------------------------------------------------
DT_MS = 1000.0 / ECG_FS           # 2 ms per sample
WAVE_THRESHOLD_MV = 0.015         # onset/offset: spatial dipole magnitude above this
SQRT3_2 = math.sqrt(3.0) / 2.0
PRECORDIAL_ANGLE_DEG = np.array([115.0, 90.0, 70.0, 50.0, 25.0, 0.0])   # V1..V6, from +x toward +z
PRECORDIAL_GAIN = np.array([1.0, 1.5, 1.6, 1.5, 1.2, 1.0])
V1, V2, V5, V6 = (LEADS.index(n) for n in ("V1", "V2", "V5", "V6"))


@dataclasses.dataclass
class EcgTruth:
    """What a careful measurement of the simulated record gives; cited by the interpretation text."""

    conditions: list[str]         # canonical names, in CONDITIONS order
    rhythm: str                   # one of RHYTHMS
    hr_bpm: float                 # 60000 / mean RR of the placed R peaks
    rr_ms: float                  # mean RR interval
    rr_regular: bool              # RR coefficient of variation below RR_CV_REGULAR
    rr_cv: float                  # RR standard deviation / mean
    pr_ms: float | None           # P onset to QRS onset (None in AF)
    p_ms: float | None            # P duration (None in AF)
    qrs_ms: float                 # global QRS onset to offset of the QRS dipole
    qt_ms: float                  # QRS onset to T end
    qtc_bazett_ms: float
    qtc_fridericia_ms: float
    p_axis_deg: float | None      # frontal net-area axes, from the noise-free limb leads
    qrs_axis_deg: float
    t_axis_deg: float
    sokolow_lyon_mv: float        # S(V1) + max(R(V5), R(V6)) on the mean beat
    st_j60_mv: list[float]        # per lead (LEADS order): level at J + 60 ms minus the PR level
    r_peaks: list[int]            # sample indices of the R peaks inside the record
    qrs_onsets: list[int]         # sample index of each QRS onset (same beats as r_peaks)

    def to_dict(self) -> dict:
        """JSON-ready, floats rounded so the corpus is compact and byte-stable."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, (float, np.floating)):
                out[key] = round(float(value), 1)
        out["rr_cv"] = round(self.rr_cv, 3)
        out["sokolow_lyon_mv"] = round(float(self.sokolow_lyon_mv), 2)
        out["st_j60_mv"] = [round(float(v), 3) for v in self.st_j60_mv]
        return out


# --- Conditions ---------------------------------------------------------------------------------
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


# --- Beat model ---------------------------------------------------------------------------------
def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _direction(frontal_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector at a hexaxial frontal angle (0 = left, 90 = inferior), tilted anterior by elevation."""
    f, e = math.radians(frontal_deg), math.radians(elevation_deg)
    return np.array([math.cos(f) * math.cos(e), math.sin(f) * math.cos(e), math.sin(e)])


def _lobes(t_ms: np.ndarray, onset, dur, skew) -> np.ndarray:
    """Raised-cosine lobes, zero outside [onset, onset + dur]; skew > 1 moves the peak late. (n, L)"""
    s = (t_ms[None, :] - np.asarray(onset)[:, None]) / np.asarray(dur)[:, None]
    s = np.clip(s, 0.0, 1.0) ** np.asarray(skew)[:, None]
    return 0.5 * (1.0 - np.cos(2.0 * np.pi * s))


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _frontal_angle(x_area: float, y_area: float) -> float:
    return math.degrees(math.atan2(y_area, x_area))


@dataclasses.dataclass
class _Beat:
    """One noise-free beat template; time 0 is the nominal QRS onset at sample `zero`."""

    t_ms: np.ndarray              # (L,)
    zero: int
    p: np.ndarray                 # (L, 3) dipole of each wave
    qrs: np.ndarray
    st: np.ndarray
    t: np.ndarray


def _qrs_lobes(rng, conds: set[str], qrs_ms: float):
    """QRS lobes (onset, dur, amp, dirs, is_axis_lobe) for the conduction pattern, main lobes at angle 0."""
    q = qrs_ms
    if LBBB in conds:   # septum from the left: no septal q; two broad posterior-leftward lobes -> notch
        split = rng.uniform(0.38, 0.46)
        onset = [0.0, split * q]
        dur = [0.55 * q, (1.0 - split) * q]
        amp = [rng.uniform(0.8, 1.1), rng.uniform(0.9, 1.2)]
        elev = [rng.uniform(-35, -25), rng.uniform(-60, -45)]
        fixed = []
    else:
        onset = [0.12 * q, 0.24 * q] if RBBB not in conds else [0.1 * 90, 0.2 * 90]
        span = q if RBBB not in conds else 90.0   # RBBB: normal LV activation, then a slow RV lobe
        dur = [0.48 * span, 0.56 * span]
        amp = [rng.uniform(0.45, 0.8), rng.uniform(0.9, 1.5)]
        elev = [rng.uniform(10, 30), rng.uniform(-40, -25)]
        if LVH in conds:
            amp[1] *= 1.6
            elev[1] = rng.uniform(-45, -35)
        # initial forces: septal (rightward-anterior); in fascicular-type axis deviation they point
        # away from the main force, giving the rS / qR pairs of the inferior and lateral leads
        initial = {LAD: [-0.35, 0.75, 0.55], RAD: [0.5, -0.6, 0.6]}.get(_axis_class(conds), [-0.6, 0.2, 0.75])
        septal = (0.0, 0.3 * span, rng.uniform(0.15, 0.3), _unit(initial))
        fixed = [septal]
        if RBBB in conds:   # terminal slow rightward-anterior lobe: R' in V1, broad S in I and V6
            start = rng.uniform(0.42, 0.5) * q
            fixed.append((start, q - start, rng.uniform(0.5, 0.8), _unit([-0.55, -0.1, 0.8])))
        else:               # basal terminal lobe: small s in I and V6
            fixed.append((0.62 * q, 0.38 * q, rng.uniform(0.15, 0.3), _unit([-0.3, -0.6, -0.6])))
    main = [(onset[i], dur[i], amp[i], _direction(0.0, elev[i])) for i in range(2)]
    return main, fixed


def _build_beat(rng, conds: set[str], rr_ms: float, axis_target: float) -> tuple[_Beat, dict]:
    """Draw a beat's waves for the conditions; the main QRS lobes are turned so the net axis hits target."""
    sinus = AF not in conds
    conduction = RBBB if RBBB in conds else LBBB if LBBB in conds else "narrow"
    qrs_nom = rng.uniform(*QRS_NOMINAL[conduction])
    pr_nom = rng.uniform(*PR_NOMINAL[AVB1 if AVB1 in conds else "normal"])
    p_nom = rng.uniform(96.0, 124.0)
    qtc = rng.uniform(390.0, 440.0)
    qt_nom = qtc * math.sqrt(rr_ms / 1000.0) + 0.6 * (qrs_nom - 90.0)
    if AVB1 in conds:   # keep the P wave clear of the previous T wave
        pr_nom = min(pr_nom, rr_ms - qt_nom - 20.0)

    pre_ms = (pr_nom + 30.0) if sinus else 40.0
    zero = int(math.ceil(pre_ms / DT_MS))
    n = zero + int(math.ceil((qt_nom + 60.0) / DT_MS))
    t_ms = (np.arange(n) - zero) * DT_MS

    # QRS: main lobes at frontal angle theta, solved so the net frontal area points at axis_target
    main, fixed = _qrs_lobes(rng, conds, qrs_nom)
    all_lobes = main + fixed
    waves = _lobes(t_ms, [l[0] for l in all_lobes], [l[1] for l in all_lobes], [1.0] * len(all_lobes))
    areas = waves.sum(axis=1) * np.array([l[2] for l in all_lobes])              # (n_lobes,)
    rest = sum(areas[2 + i] * fixed[i][3][:2] for i in range(len(fixed))) if fixed else np.zeros(2)
    m = sum(areas[i] * math.hypot(*main[i][3][:2]) for i in range(2))
    phi = math.radians(axis_target)
    r_perp = -rest[0] * math.sin(phi) + rest[1] * math.cos(phi)
    theta = phi + math.asin(max(-0.95, min(0.95, -r_perp / m)))
    dirs = np.array([_direction(math.degrees(theta), math.degrees(math.asin(l[3][2]))) for l in main]
                    + [l[3] for l in fixed])
    qrs = (waves * np.array([l[2] for l in all_lobes])[:, None]).T @ dirs           # (L, 3)

    # P wave (sinus only): one lobe, leftward-inferior
    if sinus:
        p_dir = _direction(rng.uniform(35.0, 70.0), rng.uniform(0.0, 15.0))
        p = _lobes(t_ms, [-pr_nom], [p_nom], [1.0])[0][:, None] * rng.uniform(0.12, 0.22) * p_dir
    else:
        p = np.zeros_like(qrs)

    # T wave: late-peaking lobe; concordant normally, opposite the late QRS in a bundle branch block
    st_len = max(30.0, 0.3 * (qt_nom - qrs_nom))
    t_on, t_dur = qrs_nom + st_len, qt_nom - qrs_nom - st_len
    if LBBB in conds:
        t_dir = -_unit(qrs.sum(axis=0))
        t_amp = rng.uniform(0.3, 0.5)
    elif RBBB in conds:
        t_dir = _unit([0.7, 0.4, -0.55])
        t_amp = rng.uniform(0.2, 0.35)
    else:
        t_dir = _direction(rng.uniform(20.0, 65.0), rng.uniform(5.0, 20.0))
        t_amp = rng.uniform(0.2, 0.45)
    t_wave = _lobes(t_ms, [t_on], [t_dur], [1.6])[0][:, None] * t_amp * t_dir

    # ST injury current: rises at the J point, holds, fades with the T wave
    st = np.zeros_like(qrs)
    if conds & set(STE):
        if INF_STE in conds:
            st_dir = _direction(rng.uniform(92.0, 108.0), rng.uniform(-5.0, 5.0))
        else:
            st_dir = _unit([rng.uniform(0.15, 0.3), rng.uniform(-0.1, 0.05), 1.0])
        rise = _smoothstep((t_ms - (qrs_nom - 10.0)) / 30.0)
        fall = 1.0 - _smoothstep((t_ms - (t_on + 0.6 * t_dur)) / (0.4 * t_dur))
        st = (rise * fall)[:, None] * rng.uniform(0.16, 0.32) * st_dir
    nominal = {"qrs_ms": qrs_nom, "pr_ms": pr_nom, "qt_ms": qt_nom}
    return _Beat(t_ms, zero, p, qrs, st, t_wave), nominal


def _leads(dipole: np.ndarray, v_dirs: np.ndarray) -> np.ndarray:
    """Project a dipole (L, 3) onto all 12 leads (12, L); limb leads derived from I and II."""
    lead_i = dipole[:, 0]
    lead_ii = 0.5 * dipole[:, 0] + SQRT3_2 * dipole[:, 1]
    return np.vstack([_limb_leads(lead_i, lead_ii), (dipole @ v_dirs.T).T])


def _limb_leads(lead_i: np.ndarray, lead_ii: np.ndarray) -> np.ndarray:
    """Einthoven and Goldberger leads from I and II, in LEADS order. (6, L)"""
    return np.stack([lead_i, lead_ii, lead_ii - lead_i, -0.5 * (lead_i + lead_ii),
                     lead_i - 0.5 * lead_ii, lead_ii - 0.5 * lead_i])


def _span(mag: np.ndarray) -> tuple[int, int] | None:
    above = np.flatnonzero(mag > WAVE_THRESHOLD_MV)
    return (int(above[0]), int(above[-1])) if above.size else None


def _measure(beat: _Beat, v_dirs: np.ndarray) -> dict:
    """Intervals, axes and voltages of the noise-free beat, from its dipole and its 12 leads."""
    clean = _leads(beat.p + beat.qrs + beat.st + beat.t, v_dirs)              # (12, L)
    q_on, q_off = _span(np.linalg.norm(beat.qrs, axis=1))
    t_span = _span(np.linalg.norm(beat.st + beat.t, axis=1))
    p_span = _span(np.linalg.norm(beat.p, axis=1))

    def frontal_area(a: int, b: int) -> tuple[float, float]:   # net (x, y) area over [a, b], mV ms
        return clean[0, a:b + 1].sum() * DT_MS, clean[5, a:b + 1].sum() * DT_MS / SQRT3_2

    def axis(a: int, b: int) -> float:
        return _frontal_angle(*frontal_area(a, b))

    qrs_leads = clean[:, q_on:q_off + 1]
    r_v = max(qrs_leads[V5].max(), qrs_leads[V6].max(), 0.0)
    pr_level = clean[:, q_on - 4] if p_span is None else clean[:, max(p_span[1] + 1, q_on - 8)]
    j60 = min(q_off + int(round(60.0 / DT_MS)), clean.shape[1] - 1)
    out = {
        "q_on": q_on, "q_off": q_off,
        "r_peak": q_on + int(np.argmax(np.linalg.norm(beat.qrs[q_on:q_off + 1], axis=1))),
        "qrs_ms": (q_off - q_on + 1) * DT_MS,
        "qt_ms": (t_span[1] - q_on + 1) * DT_MS,
        "qrs_axis_deg": axis(q_on, q_off),
        "qrs_net_area": math.hypot(*frontal_area(q_on, q_off)),
        "t_axis_deg": axis(q_off + 1, t_span[1]),
        "sokolow_lyon_mv": max(-qrs_leads[V1].min(), 0.0) + r_v,
        "qrs_pp_ii": float(np.ptp(qrs_leads[1])),
        "st_j60_mv": (clean[:, j60] - pr_level).tolist(),
        "p_ms": None, "pr_ms": None, "p_axis_deg": None,
    }
    if p_span is not None:
        out.update(p_ms=(p_span[1] - p_span[0] + 1) * DT_MS, pr_ms=(q_on - p_span[0]) * DT_MS,
                   p_axis_deg=axis(*p_span))
    return out


def _voltage_scale(rng, conds: set[str], m: dict) -> float:
    """QRS gain putting Sokolow-Lyon inside its class and, where room is left, lead II QRS >= 0.5 mV."""
    sokolow = m["sokolow_lyon_mv"]
    if LVH in conds:
        return rng.uniform(*SOKOLOW_LVH) / sokolow
    return min(max(1.0, MIN_II_QRS_MV / m["qrs_pp_ii"]), SOKOLOW_MAX_OTHER / sokolow)


def _axis_class(conds: set[str]) -> str:
    return LAD if LAD in conds else RAD if RAD in conds else "normal"


def _draw_rr(rng, rhythm: str, n_beats: int, qt_ms: float, rr_mean: float) -> np.ndarray:
    """RR intervals in ms: sinus has slow respiratory modulation, AF is irregularly irregular."""
    if rhythm == AF:
        rr = rr_mean * np.exp(rng.uniform(0.16, 0.3) * rng.standard_normal(n_beats))
        return np.clip(rr, max(0.55 * rr_mean, qt_ms + 50.0), 1.8 * rr_mean)
    k = np.arange(n_beats)
    resp = rng.uniform(0.008, 0.03) * np.sin(2 * np.pi * k * rr_mean / rng.uniform(3500, 5500)
                                             + rng.uniform(0, 2 * np.pi))
    return rr_mean * (1.0 + resp + rng.uniform(0.003, 0.01) * rng.standard_normal(n_beats))


def _place_beats(rng, rr_ms: np.ndarray, r_peak: int) -> np.ndarray | None:
    """Template start samples of beats covering the record; no R peak within EDGE_MS of either end,
    so every beat in the truth is whole enough for a detector to find (None if no shift works)."""
    starts = np.round((np.cumsum(rr_ms) - rr_ms[0]) / DT_MS).astype(np.int64)
    edge = int(EDGE_MS / DT_MS)
    for _ in range(20):
        r_peaks = starts + r_peak + int(round(-rng.uniform(1.0, 2.0) * rr_ms[0] / DT_MS))
        near_start = (r_peaks > -edge) & (r_peaks < edge)
        near_end = (r_peaks > ECG_SAMPLES - edge) & (r_peaks < ECG_SAMPLES + edge)
        if not (near_start.any() or near_end.any()):
            starts_out = r_peaks - r_peak
            return starts_out[starts_out < ECG_SAMPLES]
    return None


def _check(conds: set[str], rhythm: str, m: dict, hr: float, cv: float) -> bool:
    """Does the measured beat land inside its class (with gaps) for every condition?"""
    lo, hi = HR_ACCEPT[rhythm]
    if not lo <= hr <= hi or (cv < AF_MIN_CV if rhythm == AF else cv > RR_CV_REGULAR / 2):
        return False
    lo, hi = AXIS_ACCEPT[_axis_class(conds)]
    if not lo <= m["qrs_axis_deg"] <= hi or m["qrs_net_area"] < MIN_QRS_NET_AREA:
        return False
    if m["qrs_pp_ii"] < 0.9 * MIN_II_QRS_MV:   # the rhythm strip must show every QRS
        return False
    conduction = RBBB if RBBB in conds else LBBB if LBBB in conds else "narrow"
    lo, hi = QRS_ACCEPT[conduction]
    if not lo <= m["qrs_ms"] <= hi:
        return False
    if rhythm != AF:
        lo, hi = PR_ACCEPT[AVB1 if AVB1 in conds else "normal"]
        if not lo <= m["pr_ms"] <= hi:
            return False
    return True


def simulate_ecg(rng: np.random.Generator, conditions: list[str] | None = None
                 ) -> tuple[np.ndarray, EcgTruth]:
    """One 10 s, 500 Hz, 12-lead record in mV, (12, 5000) float32, and its measured truth.

    `conditions` default to `sample_conditions(rng)`. Deterministic for the rng state.
    """
    conds_list = validate_conditions(sample_conditions(rng) if conditions is None else list(conditions))
    conds = set(conds_list)
    rhythm = next(c for c in conds_list if c in RHYTHMS)
    v_angles = np.radians(PRECORDIAL_ANGLE_DEG + rng.uniform(-6.0, 6.0, 6))
    v_dirs = PRECORDIAL_GAIN[:, None] * np.stack(
        [np.cos(v_angles), rng.uniform(-0.1, 0.1, 6), np.sin(v_angles)], axis=1)   # (6, 3)

    for _ in range(50):
        hr_lo, hr_hi = HR_TARGET[rhythm]
        if AVB1 in conds and rhythm == NSR:
            hr_hi = 88.0
        rr_mean = 60000.0 / rng.uniform(hr_lo, hr_hi)
        axis_key = "lbbb normal" if _axis_class(conds) == "normal" and LBBB in conds else _axis_class(conds)
        beat, nominal = _build_beat(rng, conds, rr_mean, rng.uniform(*AXIS_TARGET[axis_key]))
        m = _measure(beat, v_dirs)
        scale = _voltage_scale(rng, conds, m)
        if scale != 1.0:
            beat = dataclasses.replace(beat, qrs=beat.qrs * scale)
            m = _measure(beat, v_dirs)

        rr = _draw_rr(rng, rhythm, int(ECG_SAMPLES * DT_MS / (0.5 * rr_mean)) + 8, nominal["qt_ms"], rr_mean)
        tpl_starts = _place_beats(rng, rr, m["r_peak"])
        if tpl_starts is None:
            continue
        r_peaks = tpl_starts + m["r_peak"]
        inside = (r_peaks >= 0) & (r_peaks < ECG_SAMPLES)
        rr_meas = np.diff(r_peaks[inside]) * DT_MS
        if rr_meas.size < 2:
            continue
        hr = 60000.0 / rr_meas.mean()
        cv = float(rr_meas.std() / rr_meas.mean())
        if _check(conds, rhythm, m, hr, cv):
            break
    else:
        raise RuntimeError(f"simulator could not meet the class ranges for {conds_list}")

    signal = _render(rng, beat, tpl_starts, rhythm, v_dirs)
    rr_mean_meas = float(rr_meas.mean())
    rr_s = rr_mean_meas / 1000.0
    truth = EcgTruth(
        conditions=conds_list, rhythm=rhythm, hr_bpm=hr, rr_ms=rr_mean_meas,
        rr_regular=cv < RR_CV_REGULAR, rr_cv=cv,
        pr_ms=m["pr_ms"], p_ms=m["p_ms"], qrs_ms=m["qrs_ms"], qt_ms=m["qt_ms"],
        qtc_bazett_ms=m["qt_ms"] / math.sqrt(rr_s), qtc_fridericia_ms=m["qt_ms"] / rr_s ** (1 / 3),
        p_axis_deg=m["p_axis_deg"], qrs_axis_deg=m["qrs_axis_deg"], t_axis_deg=m["t_axis_deg"],
        sokolow_lyon_mv=m["sokolow_lyon_mv"], st_j60_mv=m["st_j60_mv"],
        r_peaks=r_peaks[inside].tolist(), qrs_onsets=(tpl_starts[inside] + m["q_on"]).tolist(),
    )
    return signal, truth


def _render(rng, beat: _Beat, tpl_starts: np.ndarray, rhythm: str, v_dirs: np.ndarray) -> np.ndarray:
    """Place the beats (with small amplitude variation), add f-waves and noise; (12, 5000) float32."""
    template = _leads(beat.p + beat.qrs + beat.st + beat.t, v_dirs)        # (12, L)
    independent = np.r_[0, 1, 6:12]                                       # I, II, V1..V6
    template = template[independent]                                     # (8, L)
    n_tpl = template.shape[1]
    pad = n_tpl
    acc = np.zeros((8, ECG_SAMPLES + 2 * pad))
    starts = tpl_starts + pad
    resp_phase = rng.uniform(0, 2 * np.pi)
    scales = 1.0 + 0.04 * np.sin(np.arange(len(starts)) * 0.9 + resp_phase) \
        + 0.015 * rng.standard_normal(len(starts))
    for start, scale in zip(starts, scales):
        if start + n_tpl <= 0 or start >= acc.shape[1]:
            continue
        lo = max(start, 0)
        acc[:, lo:start + n_tpl] += scale * template[:, lo - start:]
    sig = acc[:, pad:pad + ECG_SAMPLES]                                   # (8, 5000)

    t = np.arange(ECG_SAMPLES) / ECG_FS
    if rhythm == AF:
        sig = sig + _f_waves(rng, t, v_dirs)
    sig = sig + _noise(rng, t)
    full = np.vstack([_limb_leads(sig[0], sig[1]), sig[2:]])
    return full.astype(np.float32)


def _f_waves(rng, t: np.ndarray, v_dirs: np.ndarray) -> np.ndarray:
    """Fibrillatory atrial dipole (4-9 Hz, drifting rate and direction), projected on I, II, V1..V6."""
    inst_hz = rng.uniform(5.0, 7.5) + 0.8 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t
                                                   + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(inst_hz) / ECG_FS
    envelope = 1.0 + 0.35 * np.sin(2 * np.pi * rng.uniform(0.15, 0.5) * t + rng.uniform(0, 2 * np.pi))
    weights = np.array([0.3, 0.6, 0.9]) * rng.uniform(0.06, 0.14)
    dipole = np.stack([w * envelope * (np.sin(phase + rng.uniform(0, 2 * np.pi))
                                       + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi)))
                       for w in weights], axis=1)                        # (N, 3)
    lead_i = dipole[:, 0]
    lead_ii = 0.5 * dipole[:, 0] + SQRT3_2 * dipole[:, 1]
    return np.vstack([lead_i, lead_ii, (dipole @ v_dirs.T).T])


def _noise(rng, t: np.ndarray) -> np.ndarray:
    """Baseline wander (respiration + slow drift), muscle noise and sometimes mains hum. (8, N)"""
    n_leads = 8
    resp = np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t + rng.uniform(0, 2 * np.pi))
    drift = np.sin(2 * np.pi * rng.uniform(0.05, 0.12) * t + rng.uniform(0, 2 * np.pi))
    wander = (rng.uniform(0.0, 0.08, (n_leads, 1)) * resp
              + rng.uniform(0.0, 0.2, (n_leads, 1)) * drift
              + rng.uniform(-0.05, 0.05, (n_leads, 1)))
    muscle = rng.uniform(0.01, 0.04) * rng.standard_normal((n_leads, t.size), dtype=np.float32)
    noise = wander + muscle
    if rng.random() < 0.3:
        hz = 50.0 if rng.random() < 0.5 else 60.0
        hum = np.sin(2 * np.pi * hz * t[None, :] + rng.uniform(0, 2 * np.pi, (n_leads, 1)))
        noise = noise + rng.uniform(0.005, 0.03, (n_leads, 1)) * hum
    return noise
