"""gem-run: interpret an ECG file offline from a bundle.

    gem-run ECG_FILE [--image PNG] [--bundle DIR] [--quant TYPE] [--backend auto|tensorrt|cuda|cpu]
            [--json] [--save-image OUT.png] [--max-new-tokens N]
    gem-run measure ECG_FILE [--json] [--fs HZ] [--save-image PNG]
    gem-run serve [--bundle DIR] [--host 127.0.0.1] [--port 8717] [--queue N] [--token T] [--timeout S]
    gem-run chat ECG_FILE [--bundle DIR]
    gem-run batch IN_DIR --out OUT_DIR [--bundle DIR] [--max-new-tokens N] [--save-images]
    gem-run dicom-listen --port P --out DIR [--ae-title GEMEDGE] [--forward HOST:PORT:AE] [--hl7 HOST:PORT]
    gem-run tune [--bundle DIR] [--threads N]   measure encoder precisions and LLM types here, keep the fastest

Every user mistake is one line on stderr and exit code 2 (cli_errors); nothing is half-written.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .cli_errors import run_cli
from .errors import GemEdgeError
from .manifest import QUANTS


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("ecg_file", type=click.Path(path_type=Path))
@click.option("--image", type=click.Path(path_type=Path), default=None,
              help="a 12-lead paper image; default: render one from the signal")
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path), default=None,
              help="bundle folder; default: the committed demo bundle")
@click.option("--quant", type=click.Choice(QUANTS), default=None, help="LLM file; default: the bundle's default")
@click.option("--backend", type=click.Choice(["auto", "tensorrt", "cuda", "cpu"]), default="auto", show_default=True)
@click.option("--encoder-precision", type=click.Choice(["auto", "fp32", "int8"]), default="auto", show_default=True,
              help="CPU encoders; auto: what `gem-run tune` measured fastest here, else fp32")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="default: all cores, at most 8")
@click.option("--draft-len", type=click.IntRange(0, 16), default=None,
              help="speculative decoding: tokens drafted per step, the same text (0: plain; default: what "
                   "`gem-run tune` measured fastest here, else 0)")
@click.option("--fs", type=click.FloatRange(min=0, min_open=True), default=None,
              help="sampling rate in Hz (needed for .npy)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of streamed text")
@click.option("--save-image", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the image the model saw (PNG), and its median beats with fiducials beside it")
@click.option("--max-new-tokens", type=click.IntRange(1, 2048), default=256, show_default=True)
@click.option("--max-bytes", type=click.IntRange(1), default=200 * 2**20, show_default=True,
              help="refuse ECG files (with their signal files) larger than this")
def run(ecg_file, image, bundle_dir, quant, backend, encoder_precision, threads, draft_len, fs, as_json, save_image,
        max_new_tokens, max_bytes):
    """Interpret ECG_FILE (WFDB .hea, DICOM waveform, or .npy [12, N] with --fs) with GEM."""
    from .bundle import default_bundle
    from .interpreter import Interpreter
    from .readers import read_ecg
    from .timings import Timings

    if save_image is not None and not save_image.parent.is_dir():
        raise GemEdgeError(f"{save_image}: folder {save_image.parent} does not exist")
    timings = Timings()
    with timings.request(), timings.stage("read"):
        record = read_ecg(ecg_file, fs=fs, max_bytes=max_bytes)  # input errors before any model is loaded
    if bundle_dir is None:
        click.echo(f"gem-run: using the demo bundle {default_bundle()} (pass --bundle for another)", err=True)
    with Interpreter.load(bundle_dir, quant=quant, backend=backend, threads=threads,
                          encoder_precision=encoder_precision, draft_len=draft_len) as gem:
        stream = None if as_json else (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
        result = gem.interpret(record, image=image, max_new_tokens=max_new_tokens, stream=stream,
                               save_image=save_image, timings=timings)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "load_ms": round(gem.load_ms, 1)}))
        return
    click.echo("\n")
    for w in result.warnings:
        click.echo(f"warning: {w}")
    click.echo("\n".join(measurement_lines(result)))
    click.echo("\n".join(timing_lines(result)))
    click.echo(f"  {'load':15s} {gem.load_ms:9.1f} ms  (once per process)")


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
    from .measure import FIELD

    m = result.measurements.to_dict()                  # rounded as in the JSON

    def fmt(key: str, unit: bool = True) -> str:     # the axes of P and QRS keep a space, as always printed
        return _value(m[key], FIELD[key].unit) if unit else "-" if m[key] is None else f"{m[key]:g} "

    regular = {True: "regular", False: "irregular"}.get(m["rhythm_regular"], "-")
    lines = [f"measured: HR {fmt('hr_bpm')} | PR {fmt('pr_ms')} | QRS {fmt('qrs_ms')} | QT {fmt('qt_ms')} | "
             f"QTc {fmt('qtc_bazett_ms')} (Bazett) | axis P/QRS/T {fmt('p_axis_deg', False)}/"
             f"{fmt('qrs_axis_deg', False)}/{fmt('t_axis_deg')} | rhythm {regular}"]
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
    return lines


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


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--bundle", "bundle_dir", type=click.Path(path_type=Path), default=None,
              help="bundle folder; default: the committed demo bundle")
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="default: all cores, at most 8")
@click.option("--runs", type=click.IntRange(1, 50), default=3, show_default=True)
def tune(bundle_dir, threads, runs):
    """Time each encoder precision and LLM type on this machine; gem-run then uses the fastest that passed its
    parity gate (written to <bundle>.tune.json)."""
    from .bundle import Bundle, default_bundle
    from .tune import default_threads, measure, write_tuning

    bundle = Bundle.open(bundle_dir or default_bundle())
    threads = threads or default_threads()
    tuning = measure(bundle, threads, runs, log=lambda m: click.echo(m, err=True))
    click.echo(f"machine: {tuning.machine}, {threads} threads")
    for name, variants in tuning.encoders_ms.items():
        cells = [f"{v} {ms} ms" if isinstance(ms, float) else f"{v}: {ms}" for v, ms in variants.items()]
        click.echo(f"  {name}: {'; '.join(cells)} -> {tuning.encoder_precision[name]}")
    for q, t in tuning.llm.items():
        other = f" (repack {'off' if t.repack else 'on'}: {t.request_ms_other_repack} ms)" \
            if t.request_ms_other_repack is not None else ""
        click.echo(f"  llm {q}, repack {'on' if t.repack else 'off'}: prefill {t.prefill_ms} ms, "
                   f"{t.decode_ms_per_token} ms/token, request {t.request_ms} ms{other}; parity {t.parity}")
    click.echo(f"  llm -> {tuning.quant}")
    cells = [f"{k or 'plain'} {ms} ms" for k, ms in tuning.request_ms_by_draft_len.items()]
    click.echo(f"  {tuning.quant} request by draft length: {'; '.join(cells)} -> "
               f"{f'drafts of {tuning.draft_len}' if tuning.draft_len else 'plain decoding'}")
    try:
        click.echo(f"wrote {write_tuning(bundle, tuning)}")
    except OSError as exc:
        raise GemEdgeError(f"{bundle.root}: cannot write the tuning beside it ({exc.strerror or exc})") from None


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "measure":
        from .measure_cli import measure

        run_cli(measure, "gem-run measure", argv[1:], tool="gem-run")
    elif argv and argv[0] in ("serve", "chat"):
        from . import serve_cli

        run_cli(getattr(serve_cli, argv[0]), f"gem-run {argv[0]}", argv[1:], tool="gem-run")
    elif argv and argv[0] == "dicom-listen":
        from .hospital_cli import dicom_listen

        run_cli(dicom_listen, "gem-run dicom-listen", argv[1:], tool="gem-run")
    elif argv and argv[0] == "tune":
        run_cli(tune, "gem-run tune", argv[1:], tool="gem-run")
    elif argv and argv[0] == "batch":
        from .batch_cli import batch

        run_cli(batch, "gem-run batch", argv[1:], tool="gem-run")
    else:
        run_cli(run, "gem-run", argv)


if __name__ == "__main__":
    main()
