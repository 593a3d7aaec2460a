"""Read an ECG file (WFDB, DICOM waveform, Philips Sierra / GE MUSE / HL7 aECG / GE CardioSoft XML, SCP-ECG,
EDF/EDF+/BDF, NumPy .npy) into one checked `EcgRecord` in mV.

This is the door between an ECG cart or hospital workstation and GEM, so it checks everything that
GEM's own loader takes on trust (`wfdb.rdsamp` then NaN -> 0, see gem-spec section 4): the lead set,
units, sampling rate, length, dead leads, and the file itself. Every problem is one
`EcgReadError(path, problem)` with numbers, never a raw wfdb/pydicom/numpy traceback.

    record = read_ecg("s0010_re.hea")     # signal (12, 38400) float32 mV, fs 1000.0, leads == LEADS

A record always comes out as the 12 GEM leads in GEM order (`constants.LEADS`). Files that store only
the 8 independent leads (I, II, V1-V6) get III, aVR, aVL, aVF derived (Einthoven/Goldberger), with a
warning; extra leads (Frank vx/vy/vz, V7, ...) are dropped, with a warning.

The package: `dispatch` (read_ecg: which format is this file?), one module per format (`wfdb` with
`wfdb_fast`, `dicom`, `philips` with `xli`, `cardiosoft`, `muse`, `aecg`, `scp` (the last three through
`ecgdatakit_read`), `edf`, `npy`), `xmlread` (the XML formats' encoding sniffing, bounded parse and lookups),
`leads` (lead names, the lead plan, assembly into 12 leads), `signal_checks` (each lead flat, saturated, off or
absurd: named in `EcgRecord.lead_issues` or refused), `checks` (rate, duration, units, declared sizes, the
device's numbers, shared by the formats) and `record` (EcgRecord, and the DeviceReport of a file that carries
its cart's own measurements and statements). Every module uses the others' public names only.

Cost is bounded: declared counts and sizes are checked against the bytes present before anything is allocated,
at most `KEEP_SECONDS` of a record is decoded, and library warnings go into the record's warnings, never to
stderr.
"""

from ..errors import EcgReadError
from .checks import KEEP_SECONDS, MAX_FS, MIN_FS, mv_per_unit
from .dispatch import DEFAULT_MAX_BYTES, read_ecg
from .leads import INDEPENDENT_LEADS, LIMB_FORMULAS, PLAUSIBLE_MAX_MV, normalize_lead_name
from .record import DeviceReport, EcgRecord
from .signal_checks import MIN_USABLE_LEADS

__all__ = ["read_ecg", "EcgRecord", "DeviceReport", "EcgReadError", "normalize_lead_name", "mv_per_unit",
           "MIN_FS", "MAX_FS", "KEEP_SECONDS", "DEFAULT_MAX_BYTES", "PLAUSIBLE_MAX_MV", "INDEPENDENT_LEADS",
           "LIMB_FORMULAS", "MIN_USABLE_LEADS"]
