"""The deterministic measurements of one record as `gem-run measure --json` prints them (and the service's
POST /v1/measure answers): ours, the cart's, and where they disagree."""
from __future__ import annotations

from .grounding import DeviceComparison, compare_with_device
from .measure import Measurements, measure_ecg
from .preprocess import preprocess_ecg
from .readers import EcgRecord


def measurement_report(record: EcgRecord, source: str) -> tuple[Measurements, list[DeviceComparison], dict]:
    """(measurements, comparisons with the device, the JSON object), from the record as gem-run reads it."""
    signal, warnings = preprocess_ecg(record)                    # (12, 5000) mV at 500 Hz
    meas = measure_ecg(signal, 500.0)
    comparisons = compare_with_device(meas, record.device)     # sets the device_disagrees flag where due
    device = None if record.device is None else record.device.to_dict()
    report = {"file": source, **meas.to_dict(), "warnings": list(record.warnings) + warnings, "device": device, "lead_issues": dict(record.lead_issues),
              "device_comparison": [c.to_dict() for c in comparisons]}
    return meas, comparisons, report
