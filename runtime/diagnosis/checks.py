"""One check per finding: (verdict, reason, evidence keys) from an `Evidence`.

A check answers "contradicted" only from a measured value beyond its threshold by more than the margin, or from a
measured pattern that excludes the finding; a value within the margin or a missing measurement gives "not
checkable" with the reason."""

from __future__ import annotations

from typing import Callable

from . import criteria as C
from .criteria import CONTRADICTED, NOT_CHECKABLE, SUPPORTED
from .evidence import LIMB_LEADS, PRECORDIAL_LEADS, Evidence
from .parts import Outcome, Part, above, below, combine


def _rr_state(ev: Evidence) -> str | None:
    """"irregular" (irregularly irregular), "regular" (successive RR mostly equal; ectopic beats allowed), "some"
    (neither), or None when too few beats."""
    if ev.rr_irregularity is None:
        return None
    if ev.rr_irregularity >= C.RR_IRREGULAR:
        return "irregular"
    if ev.rr_irregularity < C.RR_REGULAR and (ev.rr_jump_share or 0.0) <= C.RR_JUMP_SHARE_REGULAR:
        return "regular"
    return "some"


RR_WORDS = {"regular": "RR regular", "irregular": "RR irregularly irregular",
            "some": "RR irregular, not irregularly irregular"}


def _rr_text(ev: Evidence) -> str:
    return f"{RR_WORDS[_rr_state(ev)]} (median successive difference {ev.rr_irregularity:.1%} of the mean RR, " \
           f"CV {ev.rr_cv:.2f})"


def rr_rhythm_text(ev: Evidence) -> str | None:
    """The RR rhythm as the checks class it, with its numbers; None with too few beats."""
    return None if _rr_state(ev) is None else _rr_text(ev)


def _p_text(ev: Evidence) -> str:
    locked = "" if ev.p_consistency is None else \
        f" (beat-to-beat correlation {ev.p_consistency:.2f}, shift {ev.p_lag_ms:.0f} ms)"
    if ev.p_wave:
        pr = "" if ev.pr_ms is None else f" at PR {ev.pr_ms:.0f} ms"
        return f"a consistent P wave before every QRS{pr}{locked}"
    if ev.p_wave is False:
        return f"no consistent P wave{locked}"
    return f"P wave uncertain{locked}" if ev.source == "ours" else "P wave not reported"


def flutter_waves_found(ev: Evidence) -> bool:
    """Regular atrial waves between the beats at a flutter rate (measure.atrial), by the criteria's limits."""
    return ev.f_wave_periodicity is not None and ev.f_wave_periodicity >= C.FLUTTER_WAVE_PERIODICITY \
        and ev.f_wave_half_cycle is not None and ev.f_wave_half_cycle <= C.FLUTTER_WAVE_HALF_CYCLE


def _f_text(ev: Evidence) -> str:
    return (f"atrial waves at {ev.f_wave_rate_per_min:.0f}/min between the beats in {ev.f_wave_lead}, no isoelectric "
            f"baseline (each interval correlates {ev.f_wave_periodicity:.2f} with itself one cycle later)")


_F_KEYS = ("f_wave_rate_per_min", "f_wave_periodicity", "f_wave_half_cycle", "f_wave_lead")


def check_af(ev: Evidence) -> Outcome:
    keys = ("rr_irregularity", "rr_cv", "rr_jump_share", "p_wave", "p_consistency", "p_lag_ms", "pr_ms", "hr_bpm",
            *_F_KEYS)
    if flutter_waves_found(ev):
        return Outcome(CONTRADICTED, f"{_f_text(ev)}: regular flutter waves, not fibrillation", keys, {})
    state = _rr_state(ev)
    if state is None:
        return Outcome(NOT_CHECKABLE, "too few beats to judge the RR rhythm" if ev.source == "ours" else
                       "the cart reports no RR series or P waves", keys, {})
    if state == "regular":
        return Outcome(CONTRADICTED, f"{_rr_text(ev)}; {_p_text(ev)}", keys, {})
    if ev.p_wave:
        return Outcome(CONTRADICTED, f"{_p_text(ev)}; {_rr_text(ev)}", keys, {})
    if state == "irregular" and ev.p_wave is False:
        return Outcome(SUPPORTED, f"{_rr_text(ev)}; {_p_text(ev)}", keys, {})
    return Outcome(NOT_CHECKABLE, f"{_rr_text(ev)}; {_p_text(ev)}", keys, {})


def check_flutter(ev: Evidence) -> Outcome:
    keys = ("p_wave", "p_consistency", "p_lag_ms", "pr_ms", "tp_ptp_mv", "tp_ms", "tp_n", "rr_irregularity", "hr_bpm",
            *_F_KEYS)
    if flutter_waves_found(ev):
        return Outcome(SUPPORTED, _f_text(ev), keys, {})
    if ev.tp_ptp_mv is not None and ev.tp_ptp_mv < C.FLUTTER_TP_FLAT_MV:
        return Outcome(CONTRADICTED, f"{_p_text(ev)}; {_tp_text(ev)}: no flutter waves", keys, {})
    if ev.p_wave is False and ev.p_consistency is not None:
        return Outcome(CONTRADICTED, f"{_p_text(ev)}: the atrial activity before the QRS is unlike from beat to "
                       "beat, not regular flutter waves conducted at a fixed FR interval", keys, {})
    why = ev.f_wave_reason or ("atrial waves between the beats do not repeat at one cycle"
                               if ev.f_wave_periodicity is not None else "the intervals between the beats not measured")
    tp = "" if ev.tp_ptp_mv is None else f"; {_tp_text(ev)}"
    return Outcome(NOT_CHECKABLE, f"{_p_text(ev)}; flutter waves not measured: {why}{tp}", keys, {})


def _tp_text(ev: Evidence) -> str:
    flat = "flat" if ev.tp_ptp_mv < C.FLUTTER_TP_FLAT_MV else "not flat"
    return (f"the baseline between T and the next P or QRS {flat} beat by beat ({ev.tp_ptp_mv:.2f} mV peak-to-peak "
            f"in II, III, aVF, V1, median of {ev.tp_n} intervals of {ev.tp_ms:.0f} ms)")


def _sinus(ev: Evidence) -> Part:
    if flutter_waves_found(ev):
        return Part(CONTRADICTED, f"{_f_text(ev)}: flutter waves, not a sinus P wave")
    if ev.p_wave and ev.tp_ptp_mv is not None and ev.tp_ptp_mv >= C.FLUTTER_TP_BUSY_MV:
        # a flutter wave conducted at a fixed ratio sits before every QRS at a fixed interval as a P wave does; the
        # baseline before it tells them apart, and here it is not flat
        return Part(NOT_CHECKABLE, f"{_p_text(ev)}, but {_tp_text(ev)}: flutter waves not excluded")
    if ev.p_wave:
        if ev.p_axis_deg is None:
            return Part(SUPPORTED, _p_text(ev))
        lo, hi = C.P_AXIS_SINUS_DEG
        if lo <= ev.p_axis_deg <= hi:
            return Part(SUPPORTED, f"{_p_text(ev)}, P axis {ev.p_axis_deg:.0f} degrees")
        if ev.p_axis_deg < lo - C.P_AXIS_MARGIN_DEG or ev.p_axis_deg > hi + C.P_AXIS_MARGIN_DEG:
            return Part(CONTRADICTED, f"P axis {ev.p_axis_deg:.0f} degrees: not a sinus P wave (upright in I and II)")
        return Part(NOT_CHECKABLE, f"P axis {ev.p_axis_deg:.0f} degrees, at the edge of the sinus range")
    if ev.source == "device":
        return Part(NOT_CHECKABLE, "the cart reports no P-wave series")
    state = _rr_state(ev)
    if ev.p_wave is False and state == "irregular":
        return Part(CONTRADICTED, f"{_p_text(ev)} and {_rr_text(ev)}: atrial fibrillation's pattern")
    if ev.p_wave is False and state is not None:
        # a sinus rhythm has a P wave before every QRS; atrial activity unlike from beat to beat or not locked to
        # the QRS is none, whatever the RR (a paced or junctional rhythm is regular, flutter's RR may vary)
        return Part(CONTRADICTED, f"{_p_text(ev)} and {_rr_text(ev)}: no P wave before every QRS")
    return Part(NOT_CHECKABLE, _p_text(ev) + ("" if state is None else f"; {_rr_text(ev)}"))


def _rate_normal(ev: Evidence) -> Part:
    """60-100 bpm; 50-60 borderline (some programs call sinus bradycardia only below 50)."""
    hr = ev.hr_bpm
    if hr is None:
        return Part(NOT_CHECKABLE, "rate not measured")
    if C.BRADY_BPM <= hr <= C.TACHY_BPM:
        return Part(SUPPORTED, f"rate {hr:.0f} bpm, {C.BRADY_BPM:.0f}-{C.TACHY_BPM:.0f}")
    if hr > C.TACHY_BPM + C.HR_MARGIN_BPM:
        return Part(CONTRADICTED, f"rate {hr:.0f} bpm, above {C.TACHY_BPM:.0f}")
    if hr < C.BRADY_LOW_BPM - C.HR_MARGIN_BPM:
        return Part(CONTRADICTED, f"rate {hr:.0f} bpm, below {C.BRADY_LOW_BPM:.0f}")
    return Part(NOT_CHECKABLE, f"rate {hr:.0f} bpm, borderline (limits {C.BRADY_BPM:.0f} or {C.BRADY_LOW_BPM:.0f} "
                f"and {C.TACHY_BPM:.0f} bpm, within {C.HR_MARGIN_BPM:.0f} bpm)")


_SINUS_KEYS = ("p_wave", "p_consistency", "p_lag_ms", "pr_ms", "p_axis_deg", "rr_irregularity", "rr_cv", "hr_bpm",
               "tp_ptp_mv", "tp_ms", "tp_n", *_F_KEYS)


def check_sinus(ev: Evidence) -> Outcome:
    return Outcome(*combine([_sinus(ev)]), _SINUS_KEYS, {})


def check_nsr(ev: Evidence) -> Outcome:
    return Outcome(*combine([_sinus(ev), _rate_normal(ev)]), _SINUS_KEYS, {})


def check_tachy(ev: Evidence) -> Outcome:
    return Outcome(*combine([_sinus(ev), above(ev.hr_bpm, C.TACHY_BPM, C.HR_MARGIN_BPM, "rate", "bpm")]),
                   _SINUS_KEYS, {})


def check_brady(ev: Evidence) -> Outcome:
    return Outcome(*combine([_sinus(ev), below(ev.hr_bpm, C.BRADY_BPM, C.HR_MARGIN_BPM, "rate", "bpm")]),
                   _SINUS_KEYS, {})


def check_avb1(ev: Evidence) -> Outcome:
    keys = ("pr_ms", "p_wave", "rr_irregularity")
    if ev.pr_ms is None and ev.p_wave is False and _rr_state(ev) == "irregular":
        return Outcome(CONTRADICTED, f"{_p_text(ev)} and {_rr_text(ev)}: no PR interval", keys, {})
    part = above(ev.pr_ms, C.PR_AVB1_MS, C.PR_MARGIN_MS, "PR", "ms")
    return Outcome(part.verdict, part.reason, keys, {})


# --- QRS morphology ----------------------------------------------------------------------------------------------
def _morphology(ev: Evidence) -> dict | None:
    """RBBB and LBBB patterns from V1/V2, I, V5/V6, or None without median beats."""
    v1, v2, i, v5, v6 = (ev.lead(n) for n in ("V1", "V2", "I", "V5", "V6"))
    if v1 is None or i is None or v6 is None:
        return None
    right_v = [x for x in (v1, v2) if x is not None]
    terminal_r = any(x.terminal_mv > 0 and (x.r_prime or x.net_mv > 0) for x in right_v)
    broad_s = [x.s_after_r_ms > 40.0 or x.s_after_r_ms > x.r_ms for x in (i, v6)]
    left_v = [x for x in (v5, v6) if x is not None]
    lbbb = (v1.terminal_mv < 0 and v1.net_mv < 0 and v1.s_mv > v1.r_mv
            and all(x.net_mv > 0 and x.terminal_mv >= -0.05 and x.s_mv < 0.5 * x.r_mv for x in (i, v6))
            and any(x.r_peak_time_ms > 60.0 for x in left_v))
    rbbb = terminal_r and all(broad_s)
    return {"rbbb_pattern": bool(rbbb), "lbbb_pattern": bool(lbbb), "v1_terminal_mv": round(v1.terminal_mv, 2),
            "v1_r_prime": v1.r_prime, "s_i_ms": round(i.s_after_r_ms), "s_v6_ms": round(v6.s_after_r_ms),
            "r_peak_time_v6_ms": round(v6.r_peak_time_ms)}


_QRS_KEYS = ("qrs_ms",)


def _morph_part(ev: Evidence, want: str) -> tuple[Part, dict]:
    morph = _morphology(ev)
    if morph is None:
        return Part(NOT_CHECKABLE, "QRS morphology not measured (no median beats)"), {}
    other = "lbbb" if want == "rbbb" else "rbbb"
    name = {"rbbb": "right", "lbbb": "left"}
    if morph[f"{want}_pattern"]:
        return Part(SUPPORTED, f"{name[want]} bundle branch block morphology in V1, I and V6"), morph
    if morph[f"{other}_pattern"]:
        return Part(CONTRADICTED, f"{name[other]} bundle branch block morphology instead in V1, I and V6"), morph
    return Part(NOT_CHECKABLE, f"V1, I and V6 do not show the {name[want]} bundle branch block morphology"), morph


def _check_bbb(ev: Evidence, want: str, complete: bool) -> Outcome:
    if complete:
        width = above(ev.qrs_ms, C.QRS_BBB_MS, C.QRS_MARGIN_MS, "QRS", "ms", strict=False)
    else:
        width = Part(*combine([above(ev.qrs_ms, C.QRS_IVCD_MS, C.QRS_MARGIN_MS, "QRS", "ms", strict=False),
                            below(ev.qrs_ms, C.QRS_BBB_MS, C.QRS_MARGIN_MS, "QRS", "ms")]))
    if ev.source == "device":
        if width.verdict == SUPPORTED:
            return Outcome(NOT_CHECKABLE, width.reason + "; the cart reports no QRS morphology", _QRS_KEYS, {})
        return Outcome(width.verdict, width.reason, _QRS_KEYS, {})
    if width.verdict == CONTRADICTED:
        return Outcome(CONTRADICTED, width.reason, _QRS_KEYS, {})
    morph, extra = _morph_part(ev, want)
    return Outcome(*combine([width, morph]), _QRS_KEYS, extra)


def check_rbbb(ev): return _check_bbb(ev, "rbbb", True)
def check_lbbb(ev): return _check_bbb(ev, "lbbb", True)
def check_irbbb(ev): return _check_bbb(ev, "rbbb", False)
def check_ilbbb(ev): return _check_bbb(ev, "lbbb", False)


def check_ivcd(ev: Evidence) -> Outcome:
    width = above(ev.qrs_ms, C.QRS_IVCD_MS, C.QRS_MARGIN_MS, "QRS", "ms")
    if width.verdict != SUPPORTED or ev.source == "device":
        return Outcome(width.verdict if width.verdict != SUPPORTED else NOT_CHECKABLE,
                       width.reason + ("; the cart reports no QRS morphology" if width.verdict == SUPPORTED else ""),
                       _QRS_KEYS, {})
    morph = _morphology(ev)
    if morph is None:
        return Outcome(NOT_CHECKABLE, width.reason + "; QRS morphology not measured", _QRS_KEYS, {})
    if ev.qrs_ms >= C.QRS_BBB_MS + C.QRS_MARGIN_MS and (morph["rbbb_pattern"] or morph["lbbb_pattern"]):
        which = "right" if morph["rbbb_pattern"] else "left"
        return Outcome(CONTRADICTED, f"{width.reason} with {which} bundle branch block morphology: a bundle branch "
                       "block, not a nonspecific delay", _QRS_KEYS, morph)
    if morph["rbbb_pattern"] or morph["lbbb_pattern"]:
        return Outcome(NOT_CHECKABLE, f"{width.reason}; bundle branch block morphology", _QRS_KEYS, morph)
    return Outcome(SUPPORTED, f"{width.reason} without bundle branch block morphology", _QRS_KEYS, morph)


# --- axis, QT, voltage -------------------------------------------------------------------------------------------
def check_lad(ev: Evidence) -> Outcome:
    a = ev.qrs_axis_deg
    if a is None:
        return Outcome(NOT_CHECKABLE, "QRS axis not measured", ("qrs_axis_deg",), {})
    if -90.0 <= a < C.AXIS_LAD_DEG:
        part = Part(SUPPORTED, f"QRS axis {a:.0f} degrees, -30 to -90")
    elif a < -90.0 - C.AXIS_MARGIN_DEG:
        part = Part(CONTRADICTED, f"QRS axis {a:.0f} degrees: beyond -90 (extreme axis), not left axis deviation")
    elif a < -90.0:
        part = Part(NOT_CHECKABLE, f"QRS axis {a:.0f} degrees is within {C.AXIS_MARGIN_DEG:.0f} of -90")
    else:
        part = below(a, C.AXIS_LAD_DEG, C.AXIS_MARGIN_DEG, "QRS axis", "degrees")
    return Outcome(part.verdict, part.reason, ("qrs_axis_deg",), {})


def check_rad(ev: Evidence) -> Outcome:
    a = ev.qrs_axis_deg
    if a is None:
        return Outcome(NOT_CHECKABLE, "QRS axis not measured", ("qrs_axis_deg",), {})
    if C.AXIS_RAD_DEG < a <= 180.0:
        part = Part(SUPPORTED, f"QRS axis {a:.0f} degrees, +90 to +180")
    elif a <= -90.0 - C.AXIS_MARGIN_DEG or -90.0 < a <= C.AXIS_RAD_DEG - C.AXIS_MARGIN_DEG:
        part = Part(CONTRADICTED, f"QRS axis {a:.0f} degrees, not +90 to +180")
    else:
        part = Part(NOT_CHECKABLE, f"QRS axis {a:.0f} degrees is within {C.AXIS_MARGIN_DEG:.0f} of the range")
    return Outcome(part.verdict, part.reason, ("qrs_axis_deg",), {})


def check_long_qt(ev: Evidence, sex: str | None) -> Outcome:
    keys = ("qtc_bazett_ms", "qtc_fridericia_ms", "qrs_ms")
    values = [v for v in (ev.qtc_bazett_ms, ev.qtc_fridericia_ms) if v is not None]
    if not values:
        return Outcome(NOT_CHECKABLE, "QTc not measured", keys, {})
    hi = C.QTC_LONG_MS.get(sex, max(C.QTC_LONG_MS.values()))        # to say it is long, whoever it is
    lo = C.QTC_LONG_MS.get(sex, min(C.QTC_LONG_MS.values()))        # to say it is not
    shown = "/".join(f"{v:.0f}" for v in values)
    who = {"M": "a man", "F": "a woman"}.get(sex, "sex not known")
    if all(v >= hi for v in values):
        verdict, reason = SUPPORTED, f"QTc {shown} ms >= {hi:.0f} ({who})"
    elif all(v < lo - C.QTC_MARGIN_MS for v in values):
        verdict, reason = CONTRADICTED, f"QTc {shown} ms < {lo:.0f} ({who})"
    else:
        limit = f"{lo:.0f}" if lo == hi else f"{lo:.0f}-{hi:.0f}"
        verdict, reason = NOT_CHECKABLE, f"QTc {shown} ms (Bazett/Fridericia) near the {limit} ms limit"
    if ev.qrs_ms is not None and ev.qrs_ms >= C.QRS_BBB_MS and verdict == SUPPORTED:
        reason += f"; QRS {ev.qrs_ms:.0f} ms lengthens the QT (Part IV: judge the JT interval)"
    return Outcome(verdict, reason, keys, {})


def _voltages(ev: Evidence) -> dict | None:
    need = ("V1", "V3", "V5", "V6", "aVL")
    if any(ev.lead(n) is None for n in need):
        return None
    limb = [ev.lead(n).ptp_mv for n in LIMB_LEADS if ev.lead(n) is not None]
    prec = [ev.lead(n).ptp_mv for n in PRECORDIAL_LEADS if ev.lead(n) is not None]
    return {"sokolow_lyon_mv": round(ev.lead("V1").s_mv + max(ev.lead("V5").r_mv, ev.lead("V6").r_mv), 2),
            "cornell_mv": round(ev.lead("aVL").r_mv + ev.lead("V3").s_mv, 2),
            "max_limb_qrs_mv": round(max(limb), 2) if len(limb) >= 4 else None,
            "max_precordial_qrs_mv": round(max(prec), 2) if len(prec) >= 4 else None}


def check_low_voltage(ev: Evidence) -> Outcome:
    v = _voltages(ev)
    if v is None or v["max_limb_qrs_mv"] is None or v["max_precordial_qrs_mv"] is None:
        return Outcome(NOT_CHECKABLE, "QRS amplitudes not measured (no median beats)", (), v or {})
    limb, prec = v["max_limb_qrs_mv"], v["max_precordial_qrs_mv"]
    text = f"largest QRS {limb:.2f} mV in the limb leads, {prec:.2f} mV in the precordial leads"
    if limb < C.LOW_VOLTAGE_LIMB_MV or prec < C.LOW_VOLTAGE_PRECORDIAL_MV:
        return Outcome(SUPPORTED, text, (), v)
    m = 1.0 + C.VOLTAGE_MARGIN
    if limb >= C.LOW_VOLTAGE_LIMB_MV * m and prec >= C.LOW_VOLTAGE_PRECORDIAL_MV * m:
        return Outcome(CONTRADICTED, text + f", not below {C.LOW_VOLTAGE_LIMB_MV} / {C.LOW_VOLTAGE_PRECORDIAL_MV}",
                       (), v)
    return Outcome(NOT_CHECKABLE, text + ", near the limits", (), v)


def check_lvh(ev: Evidence, sex: str | None) -> Outcome:
    v = _voltages(ev)
    if v is None:
        return Outcome(NOT_CHECKABLE, "QRS amplitudes not measured (no median beats)", ("qrs_ms",), {})
    sl, co = v["sokolow_lyon_mv"], v["cornell_mv"]
    c_hi = C.CORNELL_MV.get(sex, max(C.CORNELL_MV.values()))
    c_lo = C.CORNELL_MV.get(sex, min(C.CORNELL_MV.values()))
    text = f"Sokolow-Lyon {sl:.2f} mV (>= {C.SOKOLOW_LYON_MV}), Cornell {co:.2f} mV (> {c_lo}" + \
        (f"/{c_hi}" if c_hi != c_lo else "") + ")"
    if ev.qrs_ms is not None and ev.qrs_ms >= C.QRS_BBB_MS:
        return Outcome(NOT_CHECKABLE, f"QRS {ev.qrs_ms:.0f} ms: voltage criteria do not apply; {text}", ("qrs_ms",), v)
    if sl >= C.SOKOLOW_LYON_MV or co > c_hi:
        return Outcome(SUPPORTED, text, ("qrs_ms",), v)
    m = 1.0 - C.VOLTAGE_MARGIN
    if sl < C.SOKOLOW_LYON_MV * m and co <= c_lo * m:
        return Outcome(CONTRADICTED, text + ": no voltage criterion met", ("qrs_ms",), v)
    return Outcome(NOT_CHECKABLE, text + ": near a limit", ("qrs_ms",), v)


def _rr_statement(ev: Evidence, stated: str) -> Outcome:
    """A statement that the RR rhythm is `stated` ("irregular" or "regular"), against the measured RR state."""
    keys = ("rr_irregularity", "rr_cv", "rr_jump_share")
    state = _rr_state(ev)
    if state is None:
        return Outcome(NOT_CHECKABLE, "too few beats to judge the RR rhythm", keys, {})
    verdict = NOT_CHECKABLE if state == "some" else SUPPORTED if state == stated else CONTRADICTED
    return Outcome(verdict, _rr_text(ev), keys, {})


def check_irregular(ev: Evidence) -> Outcome:
    return _rr_statement(ev, "irregular")


def check_regular(ev: Evidence) -> Outcome:
    return _rr_statement(ev, "regular")


def check_p_before_qrs(ev: Evidence) -> Outcome:
    keys = ("p_wave", "p_consistency", "p_lag_ms", "pr_ms")
    verdict = {True: SUPPORTED, False: CONTRADICTED, None: NOT_CHECKABLE}[ev.p_wave]
    if ev.source == "device":
        return Outcome(NOT_CHECKABLE, "the cart reports no P-wave series", keys, {})
    return Outcome(verdict, _p_text(ev), keys, {})


CHECKS: dict[str, Callable[[Evidence, str | None], Outcome]] = {
    "irregularly_irregular_rr": lambda ev, sex: check_irregular(ev),
    "regular_rr": lambda ev, sex: check_regular(ev),
    "p_wave_before_every_qrs": lambda ev, sex: check_p_before_qrs(ev),
    "atrial_fibrillation": lambda ev, sex: check_af(ev),
    "atrial_flutter": lambda ev, sex: check_flutter(ev),
    "sinus_rhythm": lambda ev, sex: check_sinus(ev),
    "normal_sinus_rhythm": lambda ev, sex: check_nsr(ev),
    "sinus_tachycardia": lambda ev, sex: check_tachy(ev),
    "sinus_bradycardia": lambda ev, sex: check_brady(ev),
    "first_degree_av_block": lambda ev, sex: check_avb1(ev),
    "left_bundle_branch_block": lambda ev, sex: check_lbbb(ev),
    "right_bundle_branch_block": lambda ev, sex: check_rbbb(ev),
    "incomplete_right_bundle_branch_block": lambda ev, sex: check_irbbb(ev),
    "incomplete_left_bundle_branch_block": lambda ev, sex: check_ilbbb(ev),
    "nonspecific_ivcd": lambda ev, sex: check_ivcd(ev),
    "left_axis_deviation": lambda ev, sex: check_lad(ev),
    "right_axis_deviation": lambda ev, sex: check_rad(ev),
    "long_qt": check_long_qt,
    "low_voltage": lambda ev, sex: check_low_voltage(ev),
    "left_ventricular_hypertrophy": check_lvh,
}
assert set(CHECKS) == set(C.CRITERION), "every criterion needs a check"
