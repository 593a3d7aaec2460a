"""Global fiducials on the median beats (spatial VCG, isoelectric level, P/QRS/T edges), intervals, axes."""

from __future__ import annotations

import math

import numpy as np

from ..constants import LEADS
from .edges import brief_lobe, outward, trapezium_end, trapezium_start, wave_end
from .pwave import find_p
from .quality import Quality
from .result import Measurements
from .waves import WaveEdges

WAVE_THRESHOLD_MV = 0.020        # spatial magnitude above the isoelectric level marks a wave
NOISE_FACTOR = 2.0               # the threshold is at least this many times the median beat's noise
QRS_VELOCITY_FRACTION = 0.04     # "not moving": spatial velocity below this share of the QRS peak's
QRS_GAP_MS = 8.0                 # magnitude below threshold this long: the QRS has ended
QRS_SLOW_MS = 10.0               # the QRS ends where the signal has not moved for this long
QRS_RESUME_MS = 30.0             # a fast lobe starting this soon after the QRS dips out still belongs to it
QRS_RESUME_VELOCITY = 0.10       # "fast": spatial velocity at least this share of the QRS peak's
QRS_SLUR_MS = 40.0               # a lobe of motion after the QRS paused, over within this: terminal slurring
ISO_SEARCH_MS = 130.0            # the isoelectric (PR segment) window lies this close before the QRS
ISO_QUIET_RATIO = 2.0            # ... and is the latest window at most this much busier than the quietest
TRAPEZIUM_REACH_MS = 100.0
QTC_MAX_MS = 600.0               # the T wave is searched for up to QT = this x sqrt(RR s)
T_MIN_MV = 0.05                  # a T wave smaller than this (or than T_MIN_THRESHOLDS wave thresholds) is too
T_MIN_THRESHOLDS = 2.0           # ... flat to place its end: QT is not measurable
T_END_RETURN = 0.5               # at its end the T wave is back below this share of its peak
T_NEXT_P_ZONE_MS = 250.0         # the last part of the cycle, where a sinus P wave lies
T_SECOND_LOBE_MS = 60.0          # biphasic T: an opposite lobe rising within this after the first one's end
T_SECOND_LOBE_SHARE = 0.3        # ... at least this share of the first's peak
T_SECOND_LOBE_COSINE = -0.3      # ... pointing against the first (cosine of the angle between their peaks)
QRS_ONSET_RISE_MS, QRS_TRAPEZIUM_REACH_MS = 20.0, 40.0
# Global QRS edges from the root-mean-square of all good leads (as 12SL and the IEC 60601-2-25 convention: the
# earliest onset and latest offset over the leads): the RMS curve, walked out from its QRS peak, leaves this share of
# its peak at the edges. Against LUDB's cardiologists (tune half) these edges had the least scatter of the
# spatial-velocity, VCG-magnitude and RMS thresholds tried (onset SD 5 ms, offset 6 ms).
QRS_RMS_ON_FRACTION = 0.05
QRS_RMS_OFF_FRACTION = 0.15
QRS_RMS_OFF_CLAMP_MS = (-30.0, 10.0)  # the RMS offset stays this close to the motion-based one (R', slur, ST)
# Calibration to the cardiologists' global convention (second earliest onset / second latest offset over the 12
# leads, LUDB tune half: records number mod 4 == 1; the held-out half and the cart files were not used): each
# edge found on the median beat is moved by its mean offset from theirs. A threshold above the noise reaches a
# wave late and leaves it early; the cardiologists mark where the first lead leaves the baseline.
QRS_J_POINT_SHIFT_MS = 6.0       # ... a motion-based end at a J point (slur, ST plateau) is moved this much only
EDGE_SHIFT_MS = {"qrs_on": -10.0, "qrs_off": 18.0, "p_on": 0.0, "p_off": 8.0, "t_end": 10.0}

LIMB = {name: LEADS.index(name) for name in ("I", "II", "aVF")}
INDEPENDENT = [LEADS.index(n) for n in ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")]
# Kors' regression from (I, II, V1..V6) to the Frank X, Y, Z leads (Kors et al., Eur Heart J 1990).
KORS = np.array([
    [0.38, -0.07, -0.13, 0.05, -0.01, 0.14, 0.06, 0.54],
    [-0.07, 0.93, 0.06, -0.02, -0.05, 0.06, -0.17, 0.13],
    [0.11, -0.23, -0.43, -0.06, -0.14, -0.20, -0.11, 0.31],
])
SQRT3_2 = math.sqrt(3.0) / 2.0   # aVF = (sqrt 3 / 2) * the inferior component (Einthoven triangle)


class _Samples:
    """Milliseconds to samples at one rate: n(40) is 40 ms in samples."""

    def __init__(self, fs: float):
        self.ms = 1000.0 / fs

    def __call__(self, millis: float) -> int:
        return int(round(millis / self.ms))


def _spatial(median: np.ndarray, good: list[int]) -> np.ndarray:
    """A 3-lead vectorcardiogram (3, T) from the 8 independent leads; plain leads if any is off."""
    if all(i in good for i in INDEPENDENT):
        return KORS @ median[INDEPENDENT]
    use = [i for i in INDEPENDENT if i in good] or good
    return median[use] / math.sqrt(len(use) / 3.0)


def _baseline(median: np.ndarray, iso: int, win: int, rr: int | None) -> np.ndarray:
    """Per-lead isoelectric line (12, T): the level at [iso, iso + win), sloped to the next beat's."""
    start = median[:, iso:iso + win].mean(axis=1, keepdims=True)              # (12, 1)
    if rr is None or iso + rr + win > median.shape[1]:
        return start
    end = median[:, iso + rr:iso + rr + win].mean(axis=1, keepdims=True)
    frac = (np.arange(median.shape[1]) - iso)[None, :] / rr                  # (1, T)
    return start + (end - start) * frac


def _isoelectric_window(velocity: np.ndarray, qrs_peak: int, win: int, search: int) -> int:
    """Start of the PR-segment window: the LAST quiet `win` samples before the QRS starts to move.

    The quietest window alone can be the flat top of a long P wave, which would shift every level
    by the P amplitude; the PR segment lies after it, so of the windows nearly as quiet as the
    quietest, the one nearest the QRS wins."""
    # smoothed over `win // 2` samples: velocity also vanishes for a moment at the top of a lobe
    smooth = np.convolve(velocity, np.ones(max(win // 2, 1)) / max(win // 2, 1), mode="same")
    moving = smooth >= QRS_VELOCITY_FRACTION * velocity[qrs_peak]
    onset = qrs_peak
    while onset > 0 and moving[onset - 1]:
        onset -= 1                                            # first sample of the moving QRS
    lo = max(onset - search, 0)
    if onset - lo <= win:
        return lo
    quiet = np.convolve(velocity[lo:onset], np.ones(win) / win, mode="valid")   # window ends <= onset
    near_min = np.flatnonzero(quiet <= ISO_QUIET_RATIO * quiet.min())
    return lo + int(near_min[-1])


def _t_end(vcg: np.ndarray, mag: np.ndarray, t_peak: int, threshold: float, t_hi: int, n) -> int:
    """The T wave's end (trapezium-area point of its descent); a biphasic T wave, whose magnitude dips to the
    baseline and at once rises into a lobe of comparable size pointing the opposite way, ends after its second
    lobe (a P wave that follows soon at high rates points the T's way, not against it)."""
    first_end = wave_end(mag, t_peak, threshold, t_hi)
    ahead = mag[first_end + 1:min(first_end + 1 + n(T_SECOND_LOBE_MS), t_hi)]
    if ahead.size and ahead.max() >= T_SECOND_LOBE_SHARE * mag[t_peak] and mag[first_end] < 0.5 * ahead.max():
        second_peak = first_end + 1 + int(np.argmax(ahead))
        cosine = vcg[:, t_peak] @ vcg[:, second_peak] / (mag[t_peak] * mag[second_peak] + 1e-12)
        if second_peak > first_end + 1 and cosine < T_SECOND_LOBE_COSINE:
            return trapezium_end(mag, second_peak, wave_end(mag, second_peak, threshold, t_hi), n(8),
                                  n(TRAPEZIUM_REACH_MS))
    return trapezium_end(mag, t_peak, first_end, n(8), n(TRAPEZIUM_REACH_MS))


def measure_median(meas: Measurements, median: np.ndarray, beats: np.ndarray, resid: np.ndarray, r: int,
                   good: list[int], fs: float, rr_short: int, waves: WaveEdges | None = None) -> None:
    """Fiducials on the median beats, then intervals and axes (fills meas in place). rr_short: a short
    RR (10th percentile, samples) ending at a kept beat; waves: the learned delineator's global edges, which
    replace the threshold-based ones where it found the QRS."""
    q = meas.quality
    n = _Samples(fs)
    ms = n.ms
    rr = int(round(meas.rr_ms / ms))

    # Isoelectric level: the last quiet 20 ms before the QRS (PR segment), per lead; with a regular
    # rhythm, a straight line from it to the same point of the next beat (the TP level can differ).
    vcg = _spatial(median, good)                                             # (3, T)
    velocity = np.linalg.norm(np.gradient(vcg, axis=1), axis=0)              # (T,) mV/sample
    qrs_peak_v = r - n(60) + int(np.argmax(velocity[r - n(60): r + n(60)]))
    win = n(20)
    iso = _isoelectric_window(velocity, qrs_peak_v, win, n(ISO_SEARCH_MS))
    median = median - _baseline(median, iso, win, rr if meas.rhythm_regular else None)
    meas.median_beats = median.astype(np.float32)
    vcg = _spatial(median, good)
    mag = np.linalg.norm(vcg, axis=0)                                        # (T,) mV

    # Noise floor of the median beat's magnitude, from the beat-to-beat residual.
    resid_vcg = np.stack([_spatial(b, good) for b in resid])                 # (n_beats, 3, T')
    floor = float(np.sqrt((resid_vcg ** 2).mean(axis=(0, 2)).sum() / len(beats)) * 1.25)
    threshold = max(WAVE_THRESHOLD_MV, NOISE_FACTOR * floor)
    q.wave_threshold_mv = round(threshold, 3)

    # QRS: outward from the velocity peak until the magnitude stays below threshold for QRS_GAP_MS
    # (a terminal lobe turning round, as in RBBB, dips briefly); the offset also stops where the signal
    # has not moved for QRS_SLOW_MS (an elevated ST segment is large but slow).
    qrs_lo, qrs_hi = max(r - n(150), 0), min(r + n(200), len(mag) - 1)
    gap = max(n(QRS_GAP_MS), 1)
    low = (mag < threshold).astype(float)
    low_run = np.convolve(low, np.ones(gap), mode="full")[gap - 1:] >= gap   # low for gap samples from i
    low_run_back = np.convolve(low, np.ones(gap), mode="full")[:len(low)] >= gap  # ... up to i
    run = n(QRS_SLOW_MS)
    # "Not moving" is relative to the QRS and, where f-waves or noise keep the median beat moving
    # even in its isoelectric window, to that motion.
    noise_v = float(velocity[iso:iso + win].mean())
    slow = (velocity < max(QRS_VELOCITY_FRACTION * velocity[qrs_peak_v], NOISE_FACTOR * noise_v)
            ).astype(float)
    slow_run = np.convolve(slow, np.ones(run), mode="full")[run - 1:] >= run
    slow_run_back = np.convolve(slow, np.ones(run), mode="full")[:len(slow)] >= run
    # The QRS starts after the last stretch before it that is near baseline or not moving (f-wave
    # residue in a few-beat median can stay above the threshold, but moves slowly).
    before = np.flatnonzero((low_run_back | slow_run_back)[qrs_lo:qrs_peak_v])
    qrs_on = qrs_lo + int(before[-1]) + 1 if before.size else qrs_lo
    qrs_on = trapezium_start(mag, qrs_on, min(qrs_on + n(QRS_ONSET_RISE_MS), qrs_peak_v), qrs_lo,
                             n(QRS_TRAPEZIUM_REACH_MS), n(4))
    start, before_slur = qrs_peak_v, None
    while True:
        stop = np.flatnonzero((low_run | slow_run)[start:qrs_hi])
        qrs_off = max(start + int(stop[0]) - 1, qrs_peak_v) if stop.size else qrs_hi   # motion noise can be "slow"
        qrs_off_found = bool(stop.size)
        if not stop.size:
            break
        if not low_run[qrs_off + 1]:
            # Stopped moving, away from baseline: a brief lobe of motion after the pause is terminal
            # slurring (IVCD, bundle branch blocks) and belongs to the QRS; the ST-T wave moves on for longer.
            lobe = brief_lobe(slow, slow_run, qrs_off + 1, min(qrs_off + 1 + n(QRS_RESUME_MS), qrs_hi),
                               n(QRS_SLUR_MS))
            if lobe is None:
                break
            if before_slur is not None:              # one slurred lobe: more is the ST-T wave moving on
                break
            before_slur, start = qrs_off, lobe
            continue
        # Back to baseline, but a fast, large lobe follows within QRS_RESUME_MS: a late activation
        # front (RBBB's R') belongs to the QRS; the T wave starts later and rises slowly.
        ahead = slice(qrs_off + 1, min(qrs_off + 1 + n(QRS_RESUME_MS), qrs_hi))
        fast = np.flatnonzero((velocity[ahead] >= QRS_RESUME_VELOCITY * velocity[qrs_peak_v])
                              & (mag[ahead] >= 2.0 * threshold))
        if not fast.size:
            break
        start = ahead.start + int(fast[0])
    # where the QRS ends on a slurred lobe or an ST plateau, the motion-based end is the J point itself
    at_j_point = before_slur is not None or bool(stop.size and not low_run[qrs_off + 1])
    if stop.size and not low_run[qrs_off + 1]:
        # Stopped on a slow, large plateau (ST elevation): the J point is the dip before it, if any.
        dip = qrs_peak_v + int(np.argmin(mag[qrs_peak_v:qrs_off + 1]))
        if mag[dip] < 0.5 * mag[qrs_off + 1]:
            qrs_off = dip

    # The global edges: the learned delineator's (measure.waves), formed over the leads as cardiologists form them;
    # where it found no QRS, the threshold-based T and P searches on the median beat, the QRS from the RMS of all
    # good leads, every edge calibrated to the cardiologists' convention (EDGE_SHIFT_MS).
    last = len(mag) - 1
    if waves is not None and waves.qrs is not None:
        qrs_on, qrs_off = int(np.clip(r + waves.qrs[0], 0, r)), int(np.clip(r + waves.qrs[1], r, last))
        qrs_on_found = qrs_off_found = True                          # the delineator found both
        t_end, t_reason = (None, waves.reasons["t"]) if waves.t is None else \
            (int(np.clip(r + waves.t[1], qrs_off + 1, last)), "")
        p_on, p_off, p_reason = (None, None, waves.reasons["p"]) if waves.p is None else \
            (int(max(r + waves.p[0], 0)), int(min(r + waves.p[1], qrs_on - 1)), "")
        # the beat-to-beat check of the atrial wave before the QRS (quality.p_consistency, p_lag_ms: the diagnosis
        # evidence's "alike and locked to the QRS"), from the threshold search; its edges are not used
        p_lo = max(qrs_on - n(350), 0, (t_end - rr_short + n(10)) if t_end is not None else 0)
        find_p(vcg, mag, beats, median, good, p_lo, qrs_on, threshold, n, q)
    else:
        qrs_on_found = bool(before.size)
        t_end, t_reason, p_on, p_off, p_reason = _threshold_t_and_p(meas, vcg, mag, velocity, beats, median, good,
                                                                     threshold, qrs_on, qrs_off, rr, rr_short, n)
        rms_on, rms_off = _rms_qrs(median, good, qrs_peak_v, qrs_lo, qrs_hi)
        lo_c, hi_c = (qrs_off + n(ms_) for ms_ in QRS_RMS_OFF_CLAMP_MS)
        shift = {k: n(v) for k, v in EDGE_SHIFT_MS.items()}
        qrs_on = int(np.clip(rms_on + shift["qrs_on"], 0, qrs_peak_v))
        if at_j_point:
            qrs_off = int(np.clip(qrs_off + n(QRS_J_POINT_SHIFT_MS), qrs_peak_v, last))
        else:
            qrs_off = int(np.clip(min(max(rms_off, lo_c), hi_c) + shift["qrs_off"], qrs_peak_v, last))
        if t_end is not None:
            t_end = int(np.clip(t_end + shift["t_end"], qrs_off + 1, last))
        if p_on is not None:
            p_on = int(max(p_on + shift["p_on"], 0))
            p_off = int(min(p_off + shift["p_off"], qrs_on - 1))
    meas.fiducials = {"r": r, "qrs_on": qrs_on, "qrs_off": qrs_off, "t_end": t_end,
                      "p_on": p_on, "p_off": p_off, "isoelectric": iso}
    meas.qrs_ms = (qrs_off - qrs_on + 1) * ms
    # the axis of the QRS without its slurred end: over it, an ST shift (injury current) outweighs the slur
    meas.qrs_axis_deg = _axis(median, qrs_on, before_slur or qrs_off, good, q, "qrs_axis_deg")
    if t_end is None:
        meas.mark_unmeasurable(("qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms", "t_axis_deg"), t_reason)
    else:
        meas.qt_ms = (t_end - qrs_on + 1) * ms
        rr_s = meas.rr_ms / 1000.0
        meas.qtc_bazett_ms = meas.qt_ms / math.sqrt(rr_s)
        meas.qtc_fridericia_ms = meas.qt_ms / rr_s ** (1.0 / 3.0)
        t_from = qrs_off + 1                       # the T wave's onset where the delineator found it
        if waves is not None and waves.t is not None:
            t_from = int(np.clip(r + waves.t[0], qrs_off + 1, t_end))
        meas.t_axis_deg = _axis(median, t_from, t_end, good, q, "t_axis_deg")
    if p_on is None:
        q.flags.append("p_absent")
        reason = p_reason
        if not meas.rhythm_regular:
            reason += " with irregular RR (atrial fibrillation pattern)"
        meas.mark_unmeasurable(("pr_ms", "p_ms", "p_axis_deg"), reason)
    else:
        meas.pr_ms = (qrs_on - p_on) * ms
        meas.p_ms = (p_off - p_on + 1) * ms
        meas.p_axis_deg = _axis(median, p_on, p_off, good, q, "p_axis_deg")
    # The QRS edges' own confidence: an onset with no quiet or still stretch before it, or an offset that never
    # stopped, is the search window's edge, not the QRS's; what is measured from it is not given.
    if not qrs_on_found:
        meas.mark_unmeasurable(("qrs_ms", "pr_ms", "qt_ms", "qtc_bazett_ms", "qtc_fridericia_ms"),
                             "QRS onset not found (no baseline before the QRS in the median beat)")
    elif not qrs_off_found:
        meas.mark_unmeasurable(("qrs_ms",), "QRS offset not found (the median beat never settles after the QRS)")


def _threshold_t_and_p(meas: Measurements, vcg: np.ndarray, mag: np.ndarray, velocity: np.ndarray,
                       beats: np.ndarray, median: np.ndarray, good: list[int], threshold: float, qrs_on: int,
                       qrs_off: int, rr: int, rr_short: int, n) -> tuple:
    """The threshold-based T end and P wave on the median beat (used where the wave delineator found no QRS):
    (t_end, t_reason, p_on, p_off, p_reason)."""
    q = meas.quality
    # T wave: the largest magnitude after the QRS; its end is where magnitude falls below threshold,
    # or the trough before the next P wave where they merge (high rates).
    # The search stops at the longest plausible QT for the rate: past it lies the next P wave, which a flat
    # T wave would let pass for the T.
    qt_max = n(QTC_MAX_MS * math.sqrt(max(meas.rr_ms, 1.0) / 1000.0))
    t_lo, t_hi = qrs_off + n(40), min(qrs_on + max(rr - n(80), n(200)), qrs_on + qt_max, len(mag) - 1)
    if meas.rhythm_regular:      # ... and before the next beat's P wave, one RR after this beat's
        next_p, _, _ = find_p(vcg, mag, beats, median, good, max(qrs_on - n(350), 0), qrs_on, threshold, n,
                               Quality())
        if next_p is not None and next_p + rr > qrs_off + n(150):
            t_hi = min(t_hi, next_p + rr - n(10))
    t_end, t_reason = None, "no room for a T wave after the QRS"
    if t_hi - t_lo > n(40):
        t_peak = t_lo + int(np.argmax(mag[t_lo:t_hi]))
        t_reason = f"T wave too flat to place its end ({mag[t_peak]:.2f} mV)"
        if mag[t_peak] >= max(T_MIN_MV, T_MIN_THRESHOLDS * threshold):
            # measured from the TP level where there is a TP segment: atrial repolarisation often
            # leaves the PR segment lower than the TP segment
            tp_lo, tp_hi, win_tp = t_peak + n(100), qrs_on + rr - n(200), n(40)
            vcg_t, mag_t = vcg, mag
            if tp_hi - tp_lo > win_tp:
                quiet_tp = np.convolve(velocity[tp_lo:tp_hi], np.ones(win_tp), mode="valid")
                at = tp_lo + int(np.argmin(quiet_tp))
                vcg_t = vcg - vcg[:, at:at + win_tp].mean(axis=1, keepdims=True)   # from the TP level
                mag_t = np.linalg.norm(vcg_t, axis=0)                               # (T,)
            t_end = _t_end(vcg_t, mag_t, t_peak, threshold, t_hi, n)
            if mag_t[t_end] > T_END_RETURN * mag_t[t_peak]:     # a level shift or wander, not a wave
                t_end, t_reason = None, "T wave end not found (it does not return to the baseline)"

    # P wave: the largest magnitude between the previous T end and the QRS onset. The search starts after
    # the previous T even in the shortest cycles: in AF the previous beat's T wave lands at a different
    # place in every beat and must not pass for a P wave.
    p_lo = max(qrs_on - n(350), 0, (t_end - rr_short + n(10)) if t_end is not None else 0)
    p_on, p_off, p_reason = find_p(vcg, mag, beats, median, good, p_lo, qrs_on, threshold, n, q)

    if (t_end is not None and p_on is None and meas.rhythm_regular
            and t_end > qrs_on + rr - n(T_NEXT_P_ZONE_MS)):
        # A regular rhythm whose P wave was not found, and a "T wave" ending where the next beat's P wave
        # would be: it may be that P wave (a flat T, or T and P fused at a high rate).
        t_end, t_reason = None, "T wave end uncertain (it runs into where the next P wave would be)"
    return t_end, t_reason, p_on, p_off, p_reason

def _rms_qrs(median: np.ndarray, good: list[int], peak: int, lo: int, hi: int) -> tuple[int, int]:
    """QRS onset and offset on the RMS over the good leads (T,): walked out from the RMS peak near `peak` (the
    spatial velocity's) until it falls below QRS_RMS_ON_FRACTION / QRS_RMS_OFF_FRACTION of that peak."""
    rms = np.sqrt((median[good] ** 2).mean(axis=0))                             # (T,) mV
    a, b = max(peak - (hi - lo) // 8, lo), min(peak + (hi - lo) // 8, hi)
    top = a + int(np.argmax(rms[a:b + 1]))
    on = outward(rms, top, QRS_RMS_ON_FRACTION * rms[top], -1, lo - 1)
    off = outward(rms, top, QRS_RMS_OFF_FRACTION * rms[top], +1, hi + 1)
    return on, off


def _axis(median: np.ndarray, a: int, b: int, good: list[int], quality: Quality, key: str
          ) -> float | None:
    """Frontal axis in degrees from the net areas of I and aVF over samples [a, b]."""
    if LIMB["I"] not in good or LIMB["aVF"] not in good:
        quality.reasons[key] = "lead I or aVF is off"
        return None
    area_i = median[LIMB["I"], a:b + 1].sum()
    area_avf = median[LIMB["aVF"], a:b + 1].sum()
    return math.degrees(math.atan2(area_avf / SQRT3_2, area_i))
