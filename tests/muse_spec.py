"""GE MUSE XML written from its layout (no real MUSE export is at hand): <RestingECG> with the 12SL measurements,
statements and one rhythm waveform of 8 leads as base64 little-endian int16 counts."""
import base64

import numpy as np

from gem_runtime.constants import LEADS

STORED = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
MEASUREMENTS = {"VentricularRate": 82, "AtrialRate": 82, "PRInterval": 172, "QRSDuration": 132, "QTInterval": 412, "QTCorrected": 481,
                "PAxis": 58, "RAxis": -95, "TAxis": -68}


def lead_data(name: str, counts: np.ndarray, uv_per_bit: float = 4.88, units: str = "MICROVOLTS",
              data: str | None = None) -> str:
    data = base64.b64encode(counts.astype("<i2").tobytes()).decode() if data is None else data
    return (f"<LeadData><LeadByteCountTotal>{counts.size * 2}</LeadByteCountTotal>"
            f"<LeadSampleCountTotal>{counts.size}</LeadSampleCountTotal>"
            f"<LeadAmplitudeUnitsPerBit>{uv_per_bit}</LeadAmplitudeUnitsPerBit>"
            f"<LeadAmplitudeUnits>{units}</LeadAmplitudeUnits><LeadID>{name}</LeadID>"
            f"<WaveFormData>{data}</WaveFormData></LeadData>")


def muse_xml(signal_mv: np.ndarray, fs: float, uv_per_bit: float = 4.88, leads=STORED, sample_base=None,
             lead_xml: list[str] | None = None) -> str:
    """signal_mv: (12, N) in GEM lead order; the stored leads are quantized to uv_per_bit."""
    if lead_xml is None:
        lead_xml = [lead_data(name, np.round(signal_mv[LEADS.index(name)] * 1000 / uv_per_bit), uv_per_bit)
                    for name in leads]
    base = int(fs) if sample_base is None else sample_base
    values = "".join(f"<{k}>{v}</{k}>" for k, v in MEASUREMENTS.items())
    return ('<?xml version="1.0" encoding="ISO-8859-1"?>\n<!DOCTYPE RestingECG SYSTEM "restecg.dtd">\n'
            "<RestingECG><MuseInfo><MuseVersion>9.0.9.18167</MuseVersion></MuseInfo>"
            "<TestDemographics><AcquisitionDevice>MAC55</AcquisitionDevice>"
            "<AcquisitionSoftwareVersion>010B</AcquisitionSoftwareVersion></TestDemographics>"
            f"<RestingECGMeasurements>{values}</RestingECGMeasurements>"
            "<Diagnosis><Modality>RESTING</Modality>"
            "<DiagnosisStatement><StmtFlag>ENDSLINE</StmtFlag><StmtText>Normal sinus rhythm</StmtText></DiagnosisStatement>"
            "<DiagnosisStatement><StmtFlag>ENDSLINE</StmtFlag><StmtText>Inferior infarct, age undetermined</StmtText>"
            "</DiagnosisStatement></Diagnosis>"
            f"<Waveform><WaveformType>Rhythm</WaveformType><SampleBase>{base}</SampleBase>"
            f"<SampleExponent>0</SampleExponent>{''.join(lead_xml)}</Waveform></RestingECG>")
