"""gem-run [run] ECG_FILE: interpret one ECG file offline from a bundle, streaming the text, then the
measurements, the grounding and the timings (or one JSON object with --json).

    gem-run ECG_FILE [--image PNG] [--bundle DIR] [--quant TYPE] [--backend auto|tensorrt|cuda|cpu]
            [--json] [--save-image OUT.png] [--max-new-tokens N] [--audit FILE] [--revise-rhythm]

With --revise-rhythm, where our measurements contradict a rhythm statement, the model rewrites its report from
that sentence until its rhythm is one they allow (gem_runtime.revise): the report is then no longer the model's own
text, which is kept in the JSON (model_text) with each revision and its reason.

With --audit FILE (or $GEM_AUDIT_LOG) each interpretation, or its refusal, is one hash-chained line there
(gem_runtime.audit): the input's sha256, the bundle and its signer, the LLM type, the settings, the report's sha256.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..audit import AUDIT_LOG_ENV
from ..errors import GemEdgeError
from ..manifest import QUANTS
from .format import measurement_lines, revision_lines, timing_lines


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
@click.option("--audit", "audit_file", type=click.Path(dir_okay=False, path_type=Path), envvar=AUDIT_LOG_ENV,
              default=None, help=f"append one hash-chained line per interpretation to this file (or ${AUDIT_LOG_ENV})")
@click.option("--revise-rhythm", is_flag=True,
              help="where the measurements contradict a rhythm statement, the model rewrites from there until they "
                   "allow it (the model's own text is kept beside it)")
def run(ecg_file, image, bundle_dir, quant, backend, encoder_precision, threads, draft_len, fs, as_json, save_image,
        max_new_tokens, max_bytes, audit_file, revise_rhythm):
    """Interpret one ECG file with GEM (the default command: `gem-run ECG_FILE`)."""
    from ..audit import AuditLog

    if save_image is not None and not save_image.parent.is_dir():
        raise GemEdgeError(f"{save_image}: folder {save_image.parent} does not exist")
    audit = AuditLog(audit_file) if audit_file is not None else None    # a bad log is one line, before any work
    settings = {"max_new_tokens": max_new_tokens, "backend": backend, "image_given": image is not None,
                "fs": fs, "draft_len": draft_len, "revise_rhythm": revise_rhythm}
    loaded = []
    try:
        result, gem = _interpret(ecg_file, image, bundle_dir, quant, backend, encoder_precision, threads, draft_len,
                                 fs, as_json, save_image, max_new_tokens, max_bytes, loaded, revise_rhythm)
    except GemEdgeError as e:
        if audit is not None:
            audit.append(_audit_entry(ecg_file, max_bytes, settings, loaded[0] if loaded else None, None, e))
        raise
    if audit is not None:
        audit.append(_audit_entry(ecg_file, max_bytes, settings, gem, result, None))
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "load_ms": round(gem.load_ms, 1)}, allow_nan=False))
        return
    click.echo("\n")
    if result.revisions:
        click.echo("\n".join(revision_lines(result)))
    for w in result.warnings:
        click.echo(f"warning: {w}")
    click.echo("\n".join(measurement_lines(result)))
    click.echo("\n".join(timing_lines(result)))
    click.echo(f"  {'load':15s} {gem.load_ms:9.1f} ms  (once per process)")


def _interpret(ecg_file, image, bundle_dir, quant, backend, encoder_precision, threads, draft_len, fs, as_json,
               save_image, max_new_tokens, max_bytes, loaded: list, revise_rhythm: bool = False):
    """(result, interpreter): the interpreter is appended to `loaded` once it is loaded, for the audit line."""
    from ..bundle import default_bundle
    from ..interpreter import Interpreter
    from ..readers import read_ecg
    from ..timings import Timings

    timings = Timings()
    with timings.request(), timings.stage("read"):
        record = read_ecg(ecg_file, fs=fs, max_bytes=max_bytes)  # input errors before any model is loaded
    if bundle_dir is None:
        click.echo(f"gem-run: using the demo bundle {default_bundle()} (pass --bundle for another)", err=True)
    with Interpreter.load(bundle_dir, quant=quant, backend=backend, threads=threads,
                          encoder_precision=encoder_precision, draft_len=draft_len) as gem:
        loaded.append(gem)
        stream = None if as_json else (lambda s: (sys.stdout.write(s), sys.stdout.flush()))
        result = gem.interpret(record, image=image, max_new_tokens=max_new_tokens, stream=stream,
                               save_image=save_image, timings=timings, revise=revise_rhythm)
    return result, gem


def _audit_entry(ecg_file: Path, max_bytes: int, settings: dict, gem, result, error):
    from ..audit import cli_caller, dicom_study_uid, file_sha256, interpretation_entry

    return interpretation_entry("gem-run", cli_caller(), file_sha256(ecg_file, max_bytes), gem, result, error,
                                settings, dicom_study_uid(ecg_file))
