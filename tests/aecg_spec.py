"""HL7 aECG written from the HL7 v3 annotated-ECG layout (no real aECG is at hand): one rhythm series, a
sequence set of relative time and 12 leads as decimal digits with scale and origin, and an annotation set
with the device's global measurements and one interpretation statement."""
import numpy as np

from gem_runtime.constants import LEADS

MDC = {lead: "MDC_ECG_LEAD_" + lead.upper() for lead in LEADS}          # MDC_ECG_LEAD_I, ..._AVR, ..._V1
ANNOTATIONS = (("MDC_ECG_HEART_RATE", 82, "/min"), ("MDC_ECG_TIME_PD_PR", 172, "ms"),
               ("MDC_ECG_TIME_PD_QRS", 132, "ms"), ("MDC_ECG_TIME_PD_QT", 412, "ms"),
               ("MDC_ECG_TIME_PD_QTcB", 481, "ms"), ("MDC_ECG_ANGLE_QRS_FRONT", -95, "deg"))


def aecg_xml(signal_mv: np.ndarray, fs: float, uv_per_unit: float = 5.0, increment: str | None = None) -> str:
    seqs = [f'<component><sequence><code code="TIME_RELATIVE" codeSystem="2.16.840.1.113883.5.4"/>'
            f'<value xsi:type="GLIST_PQ"><head value="0" unit="s"/>'
            f'<increment value="{increment if increment is not None else f"{1 / fs:g}"}" unit="s"/>'
            '</value></sequence></component>']
    for i, lead in enumerate(LEADS):
        digits = " ".join(str(int(v)) for v in np.round(signal_mv[i] * 1000 / uv_per_unit))
        seqs.append(f'<component><sequence><code code="{MDC[lead]}" codeSystem="2.16.840.1.113883.6.24"/>'
                    f'<value xsi:type="SLIST_PQ"><origin value="0" unit="uV"/><scale value="{uv_per_unit:g}" '
                    f'unit="uV"/><digits>{digits}</digits></value></sequence></component>')
    notes = "".join(f'<component><annotation><code code="{c}" codeSystem="2.16.840.1.113883.6.24"/>'
                    f'<value xsi:type="PQ" value="{v}" unit="{u}"/></annotation></component>' for c, v, u in ANNOTATIONS)
    notes += ('<component><annotation><code code="MDC_ECG_INTERPRETATION_STATEMENT" '
              'codeSystem="2.16.840.1.113883.6.24"/><value xsi:type="ST">Sinus rhythm</value></annotation></component>')
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<AnnotatedECG xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            '<id root="61d1a24f-b47e-41aa-ae95-f8ac302f4eeb"/><code code="93000" codeSystem="2.16.840.1.113883.6.12"/>'
            '<component><series><id root="a1"/><code code="RHYTHM" codeSystem="2.16.840.1.113883.5.4"/>'
            f'<component><sequenceSet>{"".join(seqs)}</sequenceSet></component>'
            f'<subjectOf><annotationSet>{notes}</annotationSet></subjectOf>'
            '</series></component></AnnotatedECG>')
