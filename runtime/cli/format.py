"""The text gem-run prints for a result, a measurement and a tuning: every human-readable table in one place
(the JSON forms are the typed objects' `to_dict`)."""
from __future__ import annotations

# The cart's interval keys in print order; RR is shown only when the file gives it (most give HR instead).
DEVICE_SHORT = (("hr_bpm", "HR", "bpm"), ("rr_ms", "RR", "ms"), ("pr_ms", "PR", "ms"), ("qrs_ms", "QRS", "ms"),
                ("qt_ms", "QT", "ms"), ("qtc_ms", "QTc", "ms"))
DEVICE_OPTIONAL = {"rr_ms"}


def _value(value: float | None, unit: str = "") -> str:
    """A printed number with its unit, or "-" where there is none."""
    return "-" if value is None else f"{value:g} {unit}" if unit else f"{value:g}"


def device_lines(device) -> list[str]:
    """The cart's own measurements on one line (as gem-run's own), then one line per statement."""
    if device is None:
        return []
    m = device.measurements
    parts = [f"{label} {_value(m.get(k), unit)}" for k, label, unit in DEVICE_SHORT
             if k in m or k not in DEVICE_OPTIONAL]
    axes = f"axis P/QRS/T {_value(m.get('p_axis_deg'))}/{_value(m.get('qrs_axis_deg'))}/{_value(m.get('t_axis_deg'), 'deg')}"
    who = " ".join(filter(None, (device.vendor, device.model))) + (f" ({device.program})" if device.program else "")
    head = f"device: {who}: " if who.strip() else "device: "
    return [f"{head}{' | '.join(parts)} | {axes}"] + [f"device says: {s}" for s in device.statements]


def comparison_lines(comparisons) -> list[str]:
    """Where our measurement and the device's disagree beyond tolerance, one line each: neither is trusted."""
    return [f"device disagrees: {c.quantity} device {c.device:g}, measured {c.measured:g} (tolerance {c.tolerance:g})"
            for c in comparisons if c.verdict == "disagree"]


def measurement_lines(result) -> list[str]:
    """The device's measurements (when the file has them) and ours, quality flags, one line per grounding item."""
    from ..diagnosis import rr_rhythm
    from ..measure import FIELD

    m = result.measurements.to_dict()                  # rounded as in the JSON

    def fmt(key: str, unit: bool = True) -> str:     # the axes of P and QRS keep a space, as always printed
        return _value(m[key], FIELD[key].unit) if unit else "-" if m[key] is None else f"{m[key]:g} "

    lines = [f"measured: HR {fmt('hr_bpm')} | PR {fmt('pr_ms')} | QRS {fmt('qrs_ms')} | QT {fmt('qt_ms')} | "
             f"QTc {fmt('qtc_bazett_ms')} (Bazett) | axis P/QRS/T {fmt('p_axis_deg', False)}/"
             f"{fmt('qrs_axis_deg', False)}/{fmt('t_axis_deg')} | {rr_rhythm(result.measurements) or 'RR -'}"]
    lines = device_lines(result.device) + lines + comparison_lines(result.device_comparison)
    flags = result.measurements.quality.flags
    if flags:
        lines.append(f"quality: {', '.join(flags)}")
    for g in result.grounding:
        tol = f" (tolerance {g.tolerance:g})" if g.tolerance is not None else ""
        measured = "-" if g.measured is None else f"{g.measured:g}"
        device = f"; device {g.device:g}: {g.device_verdict}" if g.device is not None else ""
        lines.append(f"grounding: {g.quantity} stated {g.stated:g}, measured {measured}: "
                     f"{g.verdict}{tol}{' - ' + g.reason if g.reason else ''}{device}")
    if not result.grounding:
        lines.append("grounding: the text states no heart rate, interval or axis")
    return lines + diagnosis_lines(result.diagnoses)


def diagnosis_lines(verdicts) -> list[str]:
    """One line per finding the text states, with its verdict against the criterion and the evidence; a
    contradicted one is marked so that it cannot be missed."""
    lines = []
    for v in verdicts:
        mark = "CONTRADICTED" if v.verdict == "contradicted" else v.verdict
        device = f"; device: {v.device_verdict}" if v.device_verdict else ""
        lines.append(f"diagnosis: \"{v.statement}\" ({v.name}): {mark} - {v.reason}{device}")
    return lines


def revision_lines(result) -> list[str]:
    """What --revise-rhythm changed: the model's words, why the measurements contradict them, what replaced them,
    then the revised report (the streamed text above is the model's own)."""
    how = {"sentence": "the model's report rewritten from that sentence after its next most likely first words",
           "name": "the model's most likely rhythm name they allow, in its place"}
    lines = [f"revised: \"{r.original}\" -> \"{r.revised or '(no rhythm named)'}\" (the measurements contradict "
             f"\"{r.original}\": {r.reason}; {how[r.method]})" for r in result.revisions]
    return lines + [f"revised report: {result.text}", ""]


def timing_lines(result) -> list[str]:
    t, b = result.timings, result.backends
    rows = [("read", t["read"], ""), ("preprocess", t["preprocess"], ""),
            ("render", t["render"], "" if t["render"] else "(image given)"),
            ("ecg encoder", t["ecg_encoder"], b.ecg_encoder),
            ("image encoder", t["image_encoder"], b.image_encoder),
            ("prefill / TTFT", t["prefill"], f"{result.prompt_positions} positions"
                                             f"{', prefix KV reused' if result.prefix_cached else ''}"),
            ("decode", t["decode"], f"{result.new_tokens} tokens, {result.decode_tok_s:.1f} tok/s" + (
                f", drafts of {result.speculation.draft_len}: {result.speculation.acceptance:.0%} kept"
                if result.speculation else "")),
            ("measure", t["measure"], "for the grounding check"),
            ("total", t.total_ms, "")]
    lines = [f"bundle {result.bundle_id} | LLM {result.quant} on {b.llm} | threads {result.threads}"]
    lines += [f"  {name:15s} {ms:9.1f} ms  {note}" for name, ms, note in rows]
    return lines


def tuning_lines(tuning) -> list[str]:
    """What `gem-run tune` measured, one line per variant, and its choice."""
    lines: list[str] = []
    lines.append(f"machine: {tuning.machine}, {tuning.threads} threads")
    for name, variants in tuning.encoders_ms.items():
        cells = [f"{v} {ms} ms" if isinstance(ms, float) else f"{v}: {ms}" for v, ms in variants.items()]
        lines.append(f"  {name}: {'; '.join(cells)} -> {tuning.encoder_precision[name]}")
    for q, t in tuning.llm.items():
        other = f" (repack {'off' if t.repack else 'on'}: {t.request_ms_other_repack} ms)" \
            if t.request_ms_other_repack is not None else ""
        if t.request_ms_decode_repacked is not None and not t.decode_repacked:
            other += f" (decoding alone repacked: {t.request_ms_decode_repacked} ms)"
        how = "on" if t.repack else "off, decoding repacked" if t.decode_repacked else "off"
        lines.append(f"  llm {q}, repack {how}: prefill {t.prefill_ms} ms, "
                     f"{t.decode_ms_per_token} ms/token, request {t.request_ms} ms{other}; parity {t.parity}")
    lines.append(f"  llm -> {tuning.quant}")
    cells = [f"{k or 'plain'} {ms} ms" for k, ms in tuning.request_ms_by_draft_len.items()]
    lines.append(f"  {tuning.quant} request by draft length: {'; '.join(cells)} -> "
                 f"{f'drafts of {tuning.draft_len}' if tuning.draft_len else 'plain decoding'}")
    if tuning.knob_findings:
        from ..manifest import FINDINGS_MIN_SHARE

        lines.append(f"  findings gate with {tuning.quant} (each knob against plain decoding, taken at "
                     f">= {FINDINGS_MIN_SHARE:.0%}): "
                     + ", ".join(f"{k} {v}" for k, v in tuning.knob_findings.items()))
    for knob, why in tuning.gates.items():
        lines.append(f"  not taken (findings gate): {why}")
    return lines


def measure_lines(meas, device, comparisons, warnings) -> list[str]:
    """`gem-run measure`'s table: each measurement or why it is missing, rhythm, quality, the cart's own."""
    from ..diagnosis import rr_rhythm
    from ..measure import FIELDS

    result = meas.to_dict()
    lines = [f"warning: {w}" for w in warnings]
    for f in FIELDS:
        value = result[f.key]
        shown = f"{value:g} {f.unit}" if value is not None else f"-  ({meas.quality.reasons.get(f.key, '')})"
        lines.append(f"  {f.label:15s} {shown}")
    q = meas.quality
    lines.append(f"  {'rhythm':15s} {rr_rhythm(meas) or '-'}, {q.n_beats or 0} beats")
    lines.append(f"  {'quality':15s} {', '.join(q.flags) if q.flags else 'ok'}")
    return lines + device_lines(device) + comparison_lines(comparisons)   # the cart's own, beside ours


def grounding_brackets(items, diagnoses=()) -> list[str]:
    """`gem-run chat`'s short verdicts under an answer: one bracket per stated number and per stated finding."""
    return [f"  [{g.quantity} stated {g.stated:g}: {g.verdict}]" for g in items] + \
        [f"  [{v.name}: {'CONTRADICTED' if v.verdict == 'contradicted' else v.verdict} - {v.reason}]" for v in diagnoses]
