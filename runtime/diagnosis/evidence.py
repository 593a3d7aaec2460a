"""What the criteria need, computed from the public fields of `Measurements` (or a cart's `DeviceReport`):
RR regularity from the R peaks, P-wave presence, intervals and axes, and per-lead QRS morphology and voltages
from the median beats. Nothing here measures the signal again: what `Measurements` could not give stays None."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..constants import LEADS
from .criteria import (
    MIN_RR, P_LOCKED_CONSISTENCY, P_LOCKED_LAG_MS, P_UNLIKE_CONSISTENCY, P_UNLOCKED_LAG_MS, RR_JUMP,
)

LIMB_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF")
PRECORDIAL_LEADS = ("V1", "V2", "V3", "V4", "V5", "V6")
TERMINAL_MS = 40.0               # the QRS's terminal part (R' in V1, S in I and V6)
DEFLECTION_MV = 0.05             # a deflection smaller than this is no R or S wave


@dataclass(frozen=True)
class LeadQrs:
    """One lead's QRS in the median beat (isoelectric level at 0)."""

    r_mv: float                  # largest positive deflection
    s_mv: float                  # largest negative deflection, as a positive number
    ptp_mv: float
    net_mv: float                # mean over the QRS: its sign is the predominant deflection
    terminal_mv: float           # mean over the last TERMINAL_MS of the QRS
    r_peak_time_ms: float        # QRS onset to the peak of the last R wave (LBBB: > 60 ms in V5, V6)
    r_ms: float                  # time above +DEFLECTION_MV
    s_after_r_ms: float          # time below -DEFLECTION_MV after the R peak (the S wave)
    r_prime: bool                # a second positive wave after a negative one or a notch (rSR', M shape)


@dataclass
class Evidence:
    """The measured evidence one check reads; None where not measured."""

    source: str = "ours"                  # "ours" or "device"
    hr_bpm: float | None = None
    n_rr: int | None = None
    rr_cv: float | None = None
    rr_irregularity: float | None = None   # median |successive RR difference| / mean RR
    rr_jump_share: float | None = None     # share of successive RR differences above RR_JUMP of the mean RR
    p_wave: bool | None = None             # a consistent P wave before the QRS (None: not known)
    p_reason: str | None = None
    p_consistency: float | None = None     # quality.p_consistency: single-beat P windows against the median's
    p_lag_ms: float | None = None          # quality.p_lag_ms: their median shift
    pr_ms: float | None = None
    p_axis_deg: float | None = None
    qrs_ms: float | None = None
    qrs_axis_deg: float | None = None
    qtc_bazett_ms: float | None = None
    qtc_fridericia_ms: float | None = None
    tp_ptp_mv: float | None = None         # the TP baseline's size beat by beat in II, III, aVF, V1 (flutter waves;
    tp_ms: float | None = None             # measure.atrial's baseline_mv) and its intervals' median length
    tp_n: int | None = None                # ... over this many intervals
    f_wave_rate_per_min: float | None = None   # measure.atrial: an atrial wave repeating between the beats ...
    f_wave_periodicity: float | None = None    # ... its correlation one cycle later
    f_wave_half_cycle: float | None = None     # ... and half a cycle later
    f_wave_lead: str | None = None
    f_wave_reason: str | None = None           # why none was measured
    leads: dict[str, LeadQrs] = field(default_factory=dict)
    leads_off: tuple[str, ...] = ()

    def lead(self, name: str) -> LeadQrs | None:
        return None if name in self.leads_off else self.leads.get(name)


def _round(x, nd=1):
    return None if x is None else round(float(x), nd)


def from_measurements(meas) -> Evidence:
    """Evidence from our `Measurements` (public fields only; missing ones are taken as not measured)."""
    q = getattr(meas, "quality", None)
    flags = list(getattr(q, "flags", []) or [])
    reasons = dict(getattr(q, "reasons", {}) or {})
    ev = Evidence(hr_bpm=meas.hr_bpm, pr_ms=meas.pr_ms, p_axis_deg=meas.p_axis_deg, qrs_ms=meas.qrs_ms,
                  qrs_axis_deg=meas.qrs_axis_deg, qtc_bazett_ms=meas.qtc_bazett_ms,
                  qtc_fridericia_ms=meas.qtc_fridericia_ms,
                  leads_off=tuple(getattr(q, "leads_off", None) or ()))
    _rr(ev, meas)
    fid = getattr(meas, "fiducials", None) or {}
    _p_wave(ev, meas, fid, flags, reasons, q)
    _f_waves(ev, getattr(meas, "atrial_waves", None))
    median = getattr(meas, "median_beats", None)
    fs = float(getattr(meas, "fs", 0.0) or 0.0)
    if median is not None and fs > 0 and fid.get("qrs_on") is not None and fid.get("qrs_off") is not None:
        median = np.asarray(median, dtype=np.float64)
        on, off = int(fid["qrs_on"]), int(fid["qrs_off"])
        if median.ndim == 2 and median.shape[0] == len(LEADS) and 0 <= on < off < median.shape[1]:
            ev.leads = {name: _lead_qrs(median[i, on:off + 1], fs) for i, name in enumerate(LEADS)}
    return ev


def _p_wave(ev: Evidence, meas, fid: dict, flags: list, reasons: dict, q) -> None:
    """A P wave before every QRS: one measured (its edges placed), or an atrial wave alike in every beat and locked
    to the QRS even where its edges could not be placed (merged with the T wave, too flat at its start); absent
    where the atrial activity before the QRS is unlike from beat to beat or not at a fixed place."""
    ev.p_consistency = getattr(q, "p_consistency", None)
    ev.p_lag_ms = getattr(q, "p_lag_ms", None)
    why = reasons.get("pr_ms") or reasons.get("p_ms") or "no P wave found"
    if fid.get("p_on") is not None or meas.pr_ms is not None or getattr(meas, "p_ms", None) is not None:
        ev.p_wave = True
    elif ev.p_consistency is not None and ev.p_lag_ms is not None:
        if ev.p_consistency >= P_LOCKED_CONSISTENCY and ev.p_lag_ms <= P_LOCKED_LAG_MS:
            ev.p_wave, ev.p_reason = True, f"edges not placed: {why}"
        elif ev.p_consistency < P_UNLIKE_CONSISTENCY or ev.p_lag_ms >= P_UNLOCKED_LAG_MS:
            ev.p_wave, ev.p_reason = False, why
        else:
            ev.p_reason = why
    elif "p_absent" in flags and "no room" not in why:     # no room to look (a short cycle) is not "absent"
        ev.p_wave, ev.p_reason = False, why
    else:
        ev.p_reason = why if "p_absent" in flags else None


def _f_waves(ev: Evidence, atrial) -> None:
    if atrial is None:
        return
    ev.tp_ptp_mv, ev.tp_ms, ev.tp_n = atrial.baseline_mv, atrial.baseline_ms, atrial.n_baseline
    if atrial.cycle_ms is None:
        ev.f_wave_reason = atrial.reason
        return
    ev.f_wave_rate_per_min, ev.f_wave_lead = atrial.rate_per_min, atrial.lead
    ev.f_wave_periodicity, ev.f_wave_half_cycle = atrial.periodicity, atrial.half_cycle


def from_device(device) -> Evidence:
    """Evidence from the cart's own measurements: rate, intervals, QTc and axes; no rhythm or morphology."""
    m = device.measurements
    qtc = m.get("qtc_ms")
    return Evidence(source="device", hr_bpm=m.get("hr_bpm"), pr_ms=m.get("pr_ms"), p_axis_deg=m.get("p_axis_deg"),
                    qrs_ms=m.get("qrs_ms"), qrs_axis_deg=m.get("qrs_axis_deg"), qtc_bazett_ms=qtc,
                    qtc_fridericia_ms=qtc)


def rr_evidence(meas) -> Evidence:
    """Evidence with only the RR rhythm (from our `Measurements`): what the text outputs' rhythm words need."""
    ev = Evidence()
    _rr(ev, meas)
    return ev


def _rr(ev: Evidence, meas) -> None:
    r_peaks, fs = getattr(meas, "r_peaks", None), getattr(meas, "fs", 0.0)
    rr_cv = getattr(getattr(meas, "quality", None), "rr_cv", None)
    if r_peaks is None or not fs:
        ev.rr_cv = rr_cv
        return
    rr = np.diff(np.asarray(r_peaks, dtype=np.float64)) * 1000.0 / fs       # (n_beats - 1,) ms
    ev.n_rr = int(rr.size)
    if rr.size < MIN_RR:
        return
    mean = float(rr.mean())
    d = np.abs(np.diff(rr))
    ev.rr_cv = float(rr.std() / mean)
    ev.rr_irregularity = float(np.median(d) / mean)
    ev.rr_jump_share = float(np.mean(d > RR_JUMP * mean))


def _lead_qrs(seg: np.ndarray, fs: float) -> LeadQrs:
    """R and S amplitudes, durations and the terminal deflection of one lead's median QRS (mV, onset to offset)."""
    ms = 1000.0 / fs
    n_term = max(int(round(TERMINAL_MS / ms)), 1)
    peak = int(np.argmax(seg))
    pos, neg = seg > DEFLECTION_MV, seg < -DEFLECTION_MV
    # the last R wave's peak: the latest local maximum above the deflection level
    maxima = [i for i in range(1, len(seg) - 1) if seg[i] >= seg[i - 1] and seg[i] > seg[i + 1] and pos[i]]
    last_r = maxima[-1] if maxima else peak
    return LeadQrs(
        r_mv=float(max(seg.max(), 0.0)), s_mv=float(max(-seg.min(), 0.0)), ptp_mv=float(np.ptp(seg)),
        net_mv=float(seg.mean()), terminal_mv=float(seg[-n_term:].mean()),
        r_peak_time_ms=last_r * ms, r_ms=float(pos.sum()) * ms, s_after_r_ms=float(neg[peak:].sum()) * ms,
        r_prime=bool(_r_prime(seg, fs)))


def _r_prime(seg: np.ndarray, fs: float) -> bool:
    """A second positive wave: after the first R (or none), the QRS goes negative or notches by a third of the R,
    then rises again to at least DEFLECTION_MV * 2 in its second half."""
    half = len(seg) // 2
    late = seg[half:]
    if late.size == 0 or late.max() < 2 * DEFLECTION_MV:
        return False
    late_peak = half + int(np.argmax(late))
    before = seg[:late_peak]
    if before.size == 0:
        return False
    dip = float(before[int(np.argmin(before)):].min()) if before.size else 0.0
    first_r = float(before.max())
    return dip < -DEFLECTION_MV or (first_r > 2 * DEFLECTION_MV and seg[late_peak] - dip > first_r / 3
                                    and dip < first_r * 2 / 3 and int(np.argmax(before)) < int(np.argmin(before)))


def as_dict(ev: Evidence, keys: tuple[str, ...]) -> dict:
    out = {}
    for k in keys:
        v = getattr(ev, k)
        nd = 3 if k.startswith("rr_") else 2 if k.endswith("_mv") else 1
        out[k] = _round(v, nd) if isinstance(v, float) and math.isfinite(v) else v
    return out
