"""GE MUSE XML (<RestingECG>, MUSE 7-9 exports): 8 stored leads (I, II, V1-V6; the limb leads are derived), the
12SL measurements and statements. Parsed by ecgdatakit (defusedxml inside: entity declarations and external
references refused); the `formats` extra."""

from __future__ import annotations

from pathlib import Path

from .ecgdatakit_read import EcgdatakitFormat, read_with_ecgdatakit
from .record import EcgRecord
from .xmlread import root_pattern, xml_root

_ROOT = root_pattern("RestingECG")


def _qtc(record) -> dict[str, float]:
    """MUSE's QTcorrected: ecgdatakit keeps it as text, because MUSE does not state its formula."""
    try:
        return {"qtc_ms": float(record.annotations.get("QTCorrected") or "")}
    except ValueError:
        return {}


MUSE = EcgdatakitFormat("GE MUSE XML", "ge_muse_xml", "GEMuseXMLParser", vendor="GE", program="12SL",
                        extra_measurements=_qtc, xml=True)


def is_muse(head: bytes) -> bool:
    return xml_root(_ROOT, head)


def read_muse(path: Path, fs_arg: float | None) -> EcgRecord:
    return read_with_ecgdatakit(path, fs_arg, MUSE)
