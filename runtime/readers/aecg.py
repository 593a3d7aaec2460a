"""HL7 aECG (<AnnotatedECG>, the FDA's annotated ECG): leads as decimal digits with scale and origin, the rate
from the time increment, the device's measurements and statements as annotations. Parsed by ecgdatakit
(defusedxml inside); the `formats` extra."""

from __future__ import annotations

from pathlib import Path

from .ecgdatakit_read import EcgdatakitFormat, read_with_ecgdatakit
from .record import EcgRecord
from .xmlread import root_pattern, xml_root

_ROOT = root_pattern("AnnotatedECG")
AECG = EcgdatakitFormat("HL7 aECG", "hl7_aecg", "HL7aECGParser", xml=True,
                        no_scale="HL7 aECG lead {lead} has no <scale> with a finite value: its digits cannot be "
                                 "turned into voltages")


def is_aecg(head: bytes) -> bool:
    return xml_root(_ROOT, head)


def read_aecg(path: Path, fs_arg: float | None) -> EcgRecord:
    return read_with_ecgdatakit(path, fs_arg, AECG)
