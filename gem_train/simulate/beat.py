"""The dipole beat model: one noise-free beat as P, QRS, ST and T lobes, its 12 leads, its measurement."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from gem_runtime.constants import ECG_FS, LEADS

from .conditions import (
    AF, AVB1, INF_STE, LAD, LBBB, LVH, MIN_II_QRS_MV, PR_NOMINAL, QRS_NOMINAL, RAD, RBBB, SOKOLOW_LVH,
    SOKOLOW_MAX_OTHER, STE, axis_class,
)

# --- Measurement and geometry -----------------------------------------------------------------
DT_MS = 1000.0 / ECG_FS           # 2 ms per sample
# Onset/offset: where the noise-free dipole's magnitude leaves zero (2 uV: numerical dust), the moment the first of
# all possible leads leaves the baseline, as the global convention measures intervals (earliest onset, latest
# offset over the leads; IEC 60601-2-25, LUDB's cardiologists; issue 24). It was 15 uV, which read the P wave 13 ms,
# the QRS 3 ms and the QT 7 ms shorter.
WAVE_THRESHOLD_MV = 0.002
SQRT3_2 = math.sqrt(3.0) / 2.0
PRECORDIAL_ANGLE_DEG = np.array([115.0, 90.0, 70.0, 50.0, 25.0, 0.0])   # V1..V6, from +x toward +z
PRECORDIAL_GAIN = np.array([1.0, 1.5, 1.6, 1.5, 1.2, 1.0])
V1, V2, V5, V6 = (LEADS.index(n) for n in ("V1", "V2", "V5", "V6"))


def unit_vector(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _direction(frontal_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector at a hexaxial frontal angle (0 = left, 90 = inferior), tilted anterior by elevation."""
    f, e = math.radians(frontal_deg), math.radians(elevation_deg)
    return np.array([math.cos(f) * math.cos(e), math.sin(f) * math.cos(e), math.sin(e)])


def lobes(t_ms: np.ndarray, onset, dur, skew) -> np.ndarray:
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
class Beat:
    """One noise-free beat template; time 0 is the nominal QRS onset at sample `zero`."""

    t_ms: np.ndarray              # (L,)
    zero: int
    p: np.ndarray                 # (L, 3) dipole of each wave
    qrs: np.ndarray
    st: np.ndarray
    t: np.ndarray
    u: np.ndarray | None = None   # a U wave (only under a Stress): drawn, not part of the T wave's truth


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
        initial = {LAD: [-0.35, 0.75, 0.55], RAD: [0.5, -0.6, 0.6]}.get(axis_class(conds), [-0.6, 0.2, 0.75])
        septal = (0.0, 0.3 * span, rng.uniform(0.15, 0.3), unit_vector(initial))
        fixed = [septal]
        if RBBB in conds:   # terminal slow rightward-anterior lobe: R' in V1, broad S in I and V6
            start = rng.uniform(0.42, 0.5) * q
            fixed.append((start, q - start, rng.uniform(0.5, 0.8), unit_vector([-0.55, -0.1, 0.8])))
        else:               # basal terminal lobe: small s in I and V6
            fixed.append((0.62 * q, 0.38 * q, rng.uniform(0.15, 0.3), unit_vector([-0.3, -0.6, -0.6])))
    main = [(onset[i], dur[i], amp[i], _direction(0.0, elev[i])) for i in range(2)]
    return main, fixed


def build_beat(rng, conds: set[str], rr_ms: float, axis_target: float) -> tuple[Beat, dict]:
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
    waves = lobes(t_ms, [l[0] for l in all_lobes], [l[1] for l in all_lobes], [1.0] * len(all_lobes))
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
        p = lobes(t_ms, [-pr_nom], [p_nom], [1.0])[0][:, None] * rng.uniform(0.12, 0.22) * p_dir
    else:
        p = np.zeros_like(qrs)

    # T wave: late-peaking lobe; concordant normally, opposite the late QRS in a bundle branch block
    st_len = max(30.0, 0.3 * (qt_nom - qrs_nom))
    t_on, t_dur = qrs_nom + st_len, qt_nom - qrs_nom - st_len
    if LBBB in conds:
        t_dir = -unit_vector(qrs.sum(axis=0))
        t_amp = rng.uniform(0.3, 0.5)
    elif RBBB in conds:
        t_dir = unit_vector([0.7, 0.4, -0.55])
        t_amp = rng.uniform(0.2, 0.35)
    else:
        t_dir = _direction(rng.uniform(20.0, 65.0), rng.uniform(5.0, 20.0))
        t_amp = rng.uniform(0.2, 0.45)
    t_wave = lobes(t_ms, [t_on], [t_dur], [1.6])[0][:, None] * t_amp * t_dir

    # ST injury current: rises at the J point, holds, fades with the T wave
    st = np.zeros_like(qrs)
    if conds & set(STE):
        if INF_STE in conds:
            st_dir = _direction(rng.uniform(92.0, 108.0), rng.uniform(-5.0, 5.0))
        else:
            st_dir = unit_vector([rng.uniform(0.15, 0.3), rng.uniform(-0.1, 0.05), 1.0])
        rise = _smoothstep((t_ms - (qrs_nom - 10.0)) / 30.0)
        fall = 1.0 - _smoothstep((t_ms - (t_on + 0.6 * t_dur)) / (0.4 * t_dur))
        st = (rise * fall)[:, None] * rng.uniform(0.16, 0.32) * st_dir
    nominal = {"qrs_ms": qrs_nom, "pr_ms": pr_nom, "qt_ms": qt_nom}
    return Beat(t_ms, zero, p, qrs, st, t_wave), nominal


def project_leads(dipole: np.ndarray, v_dirs: np.ndarray) -> np.ndarray:
    """Project a dipole (L, 3) onto all 12 leads (12, L); limb leads derived from I and II."""
    lead_i = dipole[:, 0]
    lead_ii = 0.5 * dipole[:, 0] + SQRT3_2 * dipole[:, 1]
    return np.vstack([limb_leads(lead_i, lead_ii), (dipole @ v_dirs.T).T])


def limb_leads(lead_i: np.ndarray, lead_ii: np.ndarray) -> np.ndarray:
    """Einthoven and Goldberger leads from I and II, in LEADS order. (6, L)"""
    return np.stack([lead_i, lead_ii, lead_ii - lead_i, -0.5 * (lead_i + lead_ii),
                     lead_i - 0.5 * lead_ii, lead_ii - 0.5 * lead_i])


def _span(mag: np.ndarray) -> tuple[int, int] | None:
    above = np.flatnonzero(mag > WAVE_THRESHOLD_MV)
    return (int(above[0]), int(above[-1])) if above.size else None


def measure_beat(beat: Beat, v_dirs: np.ndarray) -> dict:
    """Intervals, axes and voltages of the noise-free beat, from its dipole and its 12 leads."""
    clean = project_leads(beat.p + beat.qrs + beat.st + beat.t, v_dirs)              # (12, L)
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


def voltage_scale(rng, conds: set[str], m: dict) -> float:
    """QRS gain putting Sokolow-Lyon inside its class and, where room is left, lead II QRS >= 0.5 mV."""
    sokolow = m["sokolow_lyon_mv"]
    if LVH in conds:
        return rng.uniform(*SOKOLOW_LVH) / sokolow
    return min(max(1.0, MIN_II_QRS_MV / m["qrs_pp_ii"]), SOKOLOW_MAX_OTHER / sokolow)
