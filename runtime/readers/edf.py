"""EDF, EDF+ and BDF (research and Holter recorders), read with `edfio`.

Channels are matched to the 12 GEM leads by label ("ECG V1", "EKG II", "I" ...); annotation channels
are left out; every used lead must share one sampling rate (a per-lead rate is refused, not resampled
quietly) and have a voltage unit. edfio is pure Python on numpy (276 kB installed): a base dependency.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import EcgReadError, one_line
from ..thread_warnings import caught_warnings, raise_first
from .checks import kept_note, kept_samples, one_rate_and_length, unit_scale
from .leads import INDEPENDENT_LEADS, finish, normalize_lead_name, plan_leads
from .record import EcgRecord, patient_sex

_EDF_MAGIC = b"0       "             # version field of an EDF / EDF+ header
_BDF_MAGIC = b"\xffBIOSEMI"
_ECG_PREFIX = re.compile(r"^\s*(?:ecg|ekg)[\s_:-]*", re.IGNORECASE)


def is_edf(head: bytes) -> bool:
    """The 8-byte version field, then a header of printable ASCII (EDF) or BioSemi's marker (BDF)."""
    if head.startswith(_BDF_MAGIC):
        return True
    return head.startswith(_EDF_MAGIC) and len(head) >= 256 and all(32 <= b < 127 for b in head[8:256])


def read_edf(path: Path, fs_arg: float | None) -> EcgRecord:
    import edfio

    with open(path, "rb") as f:
        bdf = f.read(8) == _BDF_MAGIC
    try:
        with caught_warnings() as caught:
            edf = edfio.read_bdf(path) if bdf else edfio.read_edf(path, lazy_load_data=True)   # samples read later
            signals = [s for s in edf.signals]      # edfio leaves "EDF Annotations" out of .signals
        # edfio reads a truncated file with a warning and fewer samples: here that is a damaged file
        raise_first(caught, UserWarning)
    except Exception as exc:                        # edfio's own header / size checks
        raise EcgReadError(path, f"not a readable EDF/BDF file: {one_line(exc)}") from None
    if not signals:
        raise EcgReadError(path, "EDF file holds no signals")
    names = [_ECG_PREFIX.sub("", s.label) or s.label for s in signals]
    ecg = [s.label for s in signals if _ECG_PREFIX.match(s.label)]
    if 0 < len(ecg) < len(INDEPENDENT_LEADS) and sum(normalize_lead_name(n) is not None for n in names) < 2:
        raise EcgReadError(path, f"an EDF recording with {len(ecg)} ECG channel{'s' if len(ecg) > 1 else ''} "
                                 f"({', '.join(ecg)}) and {len(signals) - len(ecg)} others: a Holter or patch "
                                 "recording, not a 12-lead ECG (need I, II, V1-V6)")
    plan = plan_leads(path, names)
    used = [signals[c] for c in plan.channels]
    lengths = [s.samples_per_data_record * edf.num_data_records for s in used]
    fs, n = one_rate_and_length(path, [s.sampling_frequency for s in used], lengths, fs_arg)
    scales = [unit_scale(path, names[c], signals[c].physical_dimension) for c in plan.channels]
    kept = kept_samples(n, fs)                      # only the samples kept are read from the file
    try:
        with caught_warnings() as caught:
            data = [np.asarray(s.get_data_slice(0, kept / fs), np.float64)[:kept] for s in used]
        raise_first(caught, UserWarning)
    except Exception as exc:
        raise EcgReadError(path, f"not a readable EDF/BDF file: {one_line(exc)}") from None
    if {len(d) for d in data} != {kept}:
        raise EcgReadError(path, f"EDF data records hold {sorted({len(d) for d in data})} samples, the header "
                                 f"says {kept}")
    signal = np.stack(data) * np.asarray(scales)[:, None]                          # (n, N) mV
    limits = [tuple(sorted((s.physical_min * k, s.physical_max * k))) for s, k in zip(used, scales)]
    return finish(path, signal, fs, plan, list(plan.warnings) + kept_note(n, fs), adc_limits=limits,
                  sex=_edfplus_sex(edf))


def _edfplus_sex(edf) -> str | None:
    """EDF+/BDF+ patient field "code sex birthdate name": its second subfield (M, F; X when anonymized). A plain
    EDF's patient field is free text, whose second word is not certainly the sex: None."""
    try:
        return patient_sex(edf.patient.sex) if str(edf.reserved).startswith(("EDF+", "BDF+")) else None
    except ValueError:                              # an undecodable header field (BDF: not ASCII-checked)
        return None
