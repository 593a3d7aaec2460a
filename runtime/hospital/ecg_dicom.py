"""Write an `EcgRecord` as a DICOM 12-lead ECG Waveform Storage object (PS3.3 A.34.3), with pydicom.

    path = write_ecg_dicom(read_ecg("s0010_re.hea"), "s0010_re.dcm", patient_id="P1")

For tests and for the issue's "PhysioNet records converted to DICOM by our own code". The object has the
Patient, General Study, General Series, General Equipment, Waveform Identification, Waveform, Acquisition
Context and SOP Common modules, little-endian explicit VR, and a file meta group. One multiplex group:

| element | value |
|---|---|
| Number of Waveform Channels | 12, in GEM lead order (I, II, III, aVR, aVL, aVF, V1-V6) |
| Channel Source Sequence | SCP-ECG lead codes, coding scheme SCPECG 1.3, as pydicom's waveform_ecg.dcm has them |
| Waveform Sample Interpretation / Bits Allocated | SS / 16 |
| Channel Sensitivity | uV per count (UCUM `uV`), per channel: the finest of 0.5, 1, 2.5, 5, 10 uV that holds it |
| Waveform Padding Value | -32768, where the record has NaN (missing) samples |

The IOD's limits (PS3.3 A.34.3.4.x): 200-1000 Hz, at most 16384 samples per channel. GEM reads the first
10 s, so that is what is written: a longer record is cut to its first 10 s, a rate above 1000 Hz is
resampled to 1000 Hz and one below 200 Hz to 500 Hz (anti-aliased polyphase, as `preprocess`). Each change
is a `UserWarning` naming the record, and a resampled object says `Waveform Originality` DERIVED.
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..constants import ECG_SECONDS, LEADS
from ..files import atomic_write
from ..readers import EcgRecord

TWELVE_LEAD_ECG_STORAGE = "1.2.840.10008.5.1.4.1.1.9.1.1"   # 12-lead ECG Waveform Storage
MIN_FS, MAX_FS = 200.0, 1000.0          # Hz, the IOD's sampling frequency range
MAX_SAMPLES = 16384                     # per channel, the IOD's limit
LOW_FS_TARGET = 500.0                   # Hz: what a record below MIN_FS is resampled to (GEM's rate)
PADDING = -32768                        # Waveform Padding Value: a missing (NaN) sample
SENSITIVITIES_UV = (0.5, 1.0, 2.5, 5.0, 10.0)   # uV per count, finest first
MANUFACTURER = "gem-edge"

# GEM lead -> (SCP-ECG code, meaning): ChannelSourceSequence as pydicom's waveform_ecg.dcm (Mortara el250)
# codes them. DICOM's current CID 3001 gives MDC equivalents; readers, ours too, take either by meaning.
LEAD_CODES = {"I": ("5.6.3-9-1", "Lead I (Einthoven)"), "II": ("5.6.3-9-2", "Lead II"),
              "III": ("5.6.3-9-61", "Lead III"), "aVR": ("5.6.3-9-62", "Lead aVR"),
              "aVL": ("5.6.3-9-63", "Lead aVL"), "aVF": ("5.6.3-9-64", "Lead aVF"),
              **{f"V{k}": (f"5.6.3-9-{k + 2}", f"Lead V{k}") for k in range(1, 7)}}
SCPECG, SCPECG_VERSION = "SCPECG", "1.3"


def write_ecg_dicom(record: EcgRecord, path: str | Path, *, patient_id: str = "", patient_name: str = "",
                    study_uid: str | None = None) -> Path:
    """Write `record` (the 12 GEM leads, mV) to `path` as 12-lead ECG Waveform Storage; returns the path.
    study_uid: put the object in that study (a new study otherwise); every other UID is new."""
    from pydicom.uid import generate_uid

    missing = [lead for lead in LEADS if lead not in record.leads]
    if missing:
        raise ValueError(f"{record.source}: record lacks leads {', '.join(missing)}; a 12-lead ECG needs all 12")
    signal, fs = _fit_iod(record)                              # (12, N) mV, fs within the IOD's range
    counts, sensitivities = _quantize(signal)                   # (12, N) int16, uV per count
    now = dt.datetime.now()
    ds = _dataset(patient_id, patient_name, study_uid or generate_uid(), now)
    ds.PatientSex = record.sex or ""            # "F", "M" (DICOM's codes too) or unknown: the QTc limits depend on it
    originality = "ORIGINAL" if fs == record.fs else "DERIVED"
    ds.WaveformSequence = [_multiplex_group(counts, fs, sensitivities, bool(np.isnan(signal).any()), originality)]
    return save_dataset(ds, Path(path))


def _fit_iod(record: EcgRecord) -> tuple[np.ndarray, float]:
    """The first 10 s, at a rate the IOD allows: (12, N) float64 mV, fs. Warns for each change."""
    x = np.asarray(record.signal[[record.leads.index(lead) for lead in LEADS]], dtype=np.float64)
    fs = float(record.fs)
    keep = min(x.shape[1], math.ceil(ECG_SECONDS * fs))
    if keep < x.shape[1]:
        warnings.warn(f"{record.source}: wrote the first {ECG_SECONDS} s of {x.shape[1] / fs:.1f} s "
                      f"(GEM reads 10 s; the IOD allows {MAX_SAMPLES} samples)", UserWarning, stacklevel=3)
        x = x[:, :keep]
    if not MIN_FS <= fs <= MAX_FS:
        from scipy.signal import resample_poly

        target = MAX_FS if fs > MAX_FS else LOW_FS_TARGET
        ratio = Fraction(target / fs).limit_denominator(1000)
        nan = np.isnan(x)
        x = resample_poly(np.where(nan, 0.0, x), ratio.numerator, ratio.denominator, axis=1, padtype="line")
        if nan.any():                                            # a missing sample stays missing, not zero
            gone = resample_poly(nan.astype(float), ratio.numerator, ratio.denominator, axis=1) > 0.01
            x = np.where(gone, np.nan, x)
        warnings.warn(f"{record.source}: resampled from {fs:g} Hz to {target:g} Hz "
                      f"(the 12-lead ECG IOD allows {MIN_FS:g}-{MAX_FS:g} Hz)", UserWarning, stacklevel=3)
        fs = fs * ratio.numerator / ratio.denominator
    return x, fs


def _quantize(signal: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """mV -> int16 counts, per channel the finest sensitivity (uV/count) whose range holds the channel."""
    counts = np.empty(signal.shape, dtype=np.int16)             # (12, N)
    sensitivities = []
    for row, lead in enumerate(LEADS):
        uv = signal[row] * 1000.0
        peak = float(np.nanmax(np.abs(uv))) if np.isfinite(uv).any() else 0.0
        fits = [s for s in SENSITIVITIES_UV if peak / s <= 32767]
        if not fits:
            raise ValueError(f"lead {lead} reaches {peak / 1000:.1f} mV, beyond 16-bit samples at "
                             f"{SENSITIVITIES_UV[-1]:g} uV per count: check the record's units")
        sensitivities.append(fits[0])
        counts[row] = np.where(np.isnan(uv), PADDING, np.rint(np.nan_to_num(uv) / fits[0]))
    return counts, sensitivities


def _code(value: str, scheme: str, meaning: str, version: str | None = None):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator = value, scheme
    if version:
        item.CodingSchemeVersion = version
    item.CodeMeaning = meaning
    return item


def _multiplex_group(counts: np.ndarray, fs: float, sensitivities: list[float], padded: bool, originality: str):
    from pydicom.dataset import Dataset

    group = Dataset()
    group.MultiplexGroupTimeOffset = "0"
    group.WaveformOriginality = originality
    group.NumberOfWaveformChannels = counts.shape[0]
    group.NumberOfWaveformSamples = counts.shape[1]
    group.SamplingFrequency = f"{fs:.6g}"
    group.MultiplexGroupLabel = "RHYTHM"
    channels = []
    for lead, sensitivity in zip(LEADS, sensitivities):
        ch = Dataset()
        code, meaning = LEAD_CODES[lead]
        ch.ChannelSourceSequence = [_code(code, SCPECG, meaning, SCPECG_VERSION)]
        ch.ChannelSensitivity = f"{sensitivity:g}"
        ch.ChannelSensitivityUnitsSequence = [_code("uV", "UCUM", "microvolt", "1.4")]
        ch.ChannelSensitivityCorrectionFactor = "1"
        ch.ChannelBaseline = "0"
        ch.ChannelSampleSkew = "0"
        ch.WaveformBitsStored = 16
        channels.append(ch)
    group.ChannelDefinitionSequence = channels
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    if padded:
        group.WaveformPaddingValue = int(PADDING).to_bytes(2, "little", signed=True)
    group.WaveformData = np.ascontiguousarray(counts.T).astype("<i2").tobytes()   # (N, 12) interleaved
    return group


def _dataset(patient_id: str, patient_name: str, study_uid: str, now: dt.datetime):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = TWELVE_LEAD_ECG_STORAGE
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"                        # UTF-8: names may be any script
    ds.SOPClassUID = TWELVE_LEAD_ECG_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    # Patient (type 2 elements present even when empty)
    ds.PatientName, ds.PatientID = patient_name, patient_id
    ds.PatientBirthDate, ds.PatientSex = "", ""
    # General Study
    ds.StudyInstanceUID = study_uid
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "", ""
    # General Series
    ds.Modality = "ECG"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    # General Equipment
    ds.Manufacturer = MANUFACTURER
    # Waveform Identification
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionDateTime = date + time
    # Acquisition Context (type 2: empty, nothing is known of it)
    ds.AcquisitionContextSequence = []
    return ds


def save_dataset(ds, path: Path, mode: int | None = None) -> Path:
    """Write a DICOM file so that a reader sees no file or the whole of it (gem_runtime.files.atomic_write);
    `mode`: its permission bits (PRIVATE_FILE_MODE for patient data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: ds.save_as(tmp, enforce_file_format=True), mode=mode)
