"""Hospital protocols (IHE Resting ECG Workflow): the waveform in DICOM, our measurements and interpretation
in a DICOM Structured Report, the result to the EMR over HL7 v2.5.

    path = write_ecg_dicom(read_ecg("s0010_re.hea"), "s0010_re.dcm")      # 12-lead ECG Waveform Storage
    write_sr(result.to_dict(), pydicom.dcmread(path), "s0010_re-sr.dcm")   # Comprehensive SR
    send_mllp("emr.local", 2575, build_oru(result.to_dict(), pydicom.dcmread(path)))   # ORU^R01 over MLLP

`ecg_dicom.py` writes ECGs as DICOM (pydicom), `sr.py` the SR (highdicom) and the measurement codes
(MDC, LOINC, UCUM) both reports use, `hl7.py` the ORU and its MLLP sender (hl7apy). highdicom and hl7apy
are the `hospital` extra (pip install 'gem-edge[hospital]', with pynetdicom for the DICOM listener); they
are imported when a report is built, so importing this package needs neither.
"""
from .ecg_dicom import write_ecg_dicom
from .hl7 import MllpError, build_oru, send_mllp
from .sr import MEASUREMENT_CODES, MeasurementCode, write_sr

__all__ = ["write_ecg_dicom", "write_sr", "build_oru", "send_mllp", "MllpError", "MEASUREMENT_CODES",
           "MeasurementCode"]
