"""One table of the measurement keys: label, short label, unit and rounding, used by every printer
(`Measurements.to_dict`, `gem-run measure`, `gem-run`'s summary line, the median-beat picture)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MeasurementField:
    key: str          # the Measurements attribute and JSON key
    label: str        # as a table row: "QTc Bazett"
    short: str        # in a one-line summary: "QTcB"
    unit: str         # "bpm", "ms", "deg"
    decimals: int     # rounding in the JSON and every printout


FIELDS = (
    MeasurementField("hr_bpm", "heart rate", "HR", "bpm", 1),
    MeasurementField("rr_ms", "RR (mean)", "RR", "ms", 0),
    MeasurementField("pr_ms", "PR", "PR", "ms", 0),
    MeasurementField("p_ms", "P duration", "P", "ms", 0),
    MeasurementField("qrs_ms", "QRS duration", "QRS", "ms", 0),
    MeasurementField("qt_ms", "QT", "QT", "ms", 0),
    MeasurementField("qtc_bazett_ms", "QTc Bazett", "QTcB", "ms", 0),
    MeasurementField("qtc_fridericia_ms", "QTc Fridericia", "QTcF", "ms", 0),
    MeasurementField("p_axis_deg", "P axis", "P axis", "deg", 0),
    MeasurementField("qrs_axis_deg", "QRS axis", "QRS axis", "deg", 0),
    MeasurementField("t_axis_deg", "T axis", "T axis", "deg", 0),
)
FIELD = {f.key: f for f in FIELDS}
MEASUREMENT_KEYS = tuple(f.key for f in FIELDS)
