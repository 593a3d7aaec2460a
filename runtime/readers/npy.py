"""NumPy .npy arrays: (12, N) or (N, 12) real values in mV, leads in GEM order; fs given by the caller."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..constants import LEADS
from ..errors import EcgReadError
from .checks import check_duration, check_fs, kept_note, kept_samples
from .leads import finish, plan_leads
from .record import EcgRecord

NPY_MAGIC = b"\x93NUMPY"


def is_npy(head: bytes) -> bool:
    """Does the file's head start with the .npy magic?"""
    return head.startswith(NPY_MAGIC)


def read_npy(path: Path, fs: float | None) -> EcgRecord:
    """A (12, N) (or unambiguous (N, 12)) real array in mV, leads in GEM order; the header is checked first."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise EcgReadError(path, f".npy format version {version[0]}.{version[1]} is not supported")
        data_start = f.tell()
    if dtype.hasobject:
        raise EcgReadError(path, f"array has object dtype ({dtype}); expected real numbers")
    if dtype.kind == "c":
        raise EcgReadError(path, f"array is complex ({dtype}); expected real mV values")
    if dtype.kind not in "fiu":
        raise EcgReadError(path, f"array dtype {dtype} is not a real number type")
    if len(shape) != 2:
        raise EcgReadError(path, f"array has {len(shape)} dimensions {shape}; expected (12, N)")
    data_bytes = math.prod(shape) * dtype.itemsize
    held = path.stat().st_size - data_start
    if held < data_bytes:
        raise EcgReadError(path, f"truncated: header says {shape} {dtype} ({data_bytes} bytes) "
                                 f"but the file holds {held} bytes of data")
    if shape[0] == len(LEADS):
        transpose, warnings = False, []
    elif shape[1] == len(LEADS):
        transpose, warnings = True, [f"array was {shape} (samples, leads): transposed to (12, {shape[0]})"]
    else:
        raise EcgReadError(path, f"array shape {shape}: expected (12, N) with leads in order {', '.join(LEADS)}")
    if fs is None:
        raise EcgReadError(path, "a .npy array has no sampling rate: pass fs (Hz)")
    fs = float(fs)
    check_fs(path, fs)
    n_samples = shape[0] if transpose else shape[1]
    check_duration(path, n_samples, fs)

    array = np.load(path, allow_pickle=False, mmap_mode="r")          # only the samples kept are read
    kept = kept_samples(n_samples, fs)
    signal = np.array((array.T if transpose else array)[:, :kept], np.float64)   # (12, N) mV
    plan = plan_leads(path, list(LEADS))
    return finish(path, signal, fs, plan, warnings + kept_note(n_samples, fs))
