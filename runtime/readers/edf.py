"""EDF, EDF+ and BDF (research and Holter recorders), read with `edfio`.

Channels are matched to the 12 GEM leads by label ("ECG V1", "EKG II", "I" ...); annotation channels
are left out; every used lead must share one sampling rate (a per-lead rate is refused, not resampled
quietly) and have a voltage unit. edfio is pure Python on numpy (276 kB installed): a base dependency.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from ..errors import EcgReadError
from .checks import _one_line, _one_rate_and_length, _unit_scale
from .leads import _finish, _plan_leads
from .record import EcgRecord

_EDF_MAGIC = b"0       "             # version field of an EDF / EDF+ header
_BDF_MAGIC = b"\xffBIOSEMI"
_ECG_PREFIX = re.compile(r"^\s*(?:ecg|ekg)[\s_:-]*", re.I)


def is_edf(head: bytes) -> bool:
    """The 8-byte version field, then a header of printable ASCII (EDF) or BioSemi's marker (BDF)."""
    if head.startswith(_BDF_MAGIC):
        return True
    return head.startswith(_EDF_MAGIC) and len(head) >= 256 and all(32 <= b < 127 for b in head[8:256])


def read_edf(path: Path, fs_arg: float | None) -> EcgRecord:
    import edfio

    with open(path, "rb") as f:
        reader = edfio.read_bdf if f.read(8) == _BDF_MAGIC else edfio.read_edf
    try:
        with warnings.catch_warnings():
            # edfio reads a truncated file with a warning and fewer samples: here that is a damaged file
            warnings.simplefilter("error", UserWarning)
            edf = reader(path)
            signals = [s for s in edf.signals]      # edfio leaves "EDF Annotations" out of .signals
            for s in signals:
                s.data                              # read now, inside the warning filter
    except Exception as exc:                        # edfio's own header / size checks
        raise EcgReadError(path, f"not a readable EDF/BDF file: {_one_line(exc)}") from None
    if not signals:
        raise EcgReadError(path, "EDF file holds no signals")
    names = [_ECG_PREFIX.sub("", s.label) or s.label for s in signals]
    plan = _plan_leads(path, names)
    used = [signals[c] for c in plan.channels]
    fs, _ = _one_rate_and_length(path, [s.sampling_frequency for s in used], [len(s.data) for s in used], fs_arg)
    scales = [_unit_scale(path, names[c], signals[c].physical_dimension) for c in plan.channels]
    signal = np.stack([np.asarray(s.data, np.float64) for s in used]) * np.asarray(scales)[:, None]   # (n, N) mV
    return _finish(path, signal, fs, plan, list(plan.warnings))
