"""gem-run measure: the deterministic measurements of one ECG file, without any model.

    gem-run measure ECG_FILE [--json] [--fs HZ] [--save-image PNG]

Reads and preprocesses the file exactly as `gem-run` does (10 s at 500 Hz), measures it, and prints a
table or one JSON object. Input errors propagate as GemEdgeError (one line, exit 2, from gem-run).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import GemEdgeError
from .format import measure_lines


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("ecg_file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of a table")
@click.option("--fs", type=click.FloatRange(min=0, min_open=True), default=None,
              help="sampling rate in Hz (needed for .npy)")
@click.option("--save-image", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write the median beats with their fiducial marks (PNG)")
def measure(ecg_file, as_json, fs, save_image):
    """Measure ECG_FILE: rate, PR, QRS, QT/QTc, axes and signal quality, with no model."""
    from ..measure_report import measurement_report
    from ..readers import read_ecg
    from ..render_median import draw_median_beats

    if save_image is not None and not save_image.parent.is_dir():
        raise GemEdgeError(f"{save_image}: folder {save_image.parent} does not exist")
    record = read_ecg(ecg_file, fs=fs)
    meas, comparisons, report = measurement_report(record, str(ecg_file))
    meas.require_signal(str(ecg_file))                     # no numbers from no signal: one line, exit 2
    if save_image is not None:
        if meas.median_beats is None:
            reasons = meas.quality.reasons_text() or "no beats"
            raise GemEdgeError(f"{ecg_file}: no median beats to draw ({reasons})")
        draw_median_beats(meas, save_image)
    if as_json:
        click.echo(json.dumps(report, allow_nan=False))   # NaN is a bug: refused, never printed
        return
    for line in measure_lines(meas, record.device, comparisons, report["warnings"]):
        click.echo(line)
    if save_image is not None:
        click.echo(f"median beats written to {save_image}")

