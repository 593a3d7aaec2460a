"""Our reading of an ECG as an HL7 v2.5 ORU^R01 to the EMR, and its sender over MLLP.

    message = build_oru(result.to_dict(), pydicom.dcmread("ecg.dcm"))
    ack = send_mllp("emr.local", 2575, message)          # retries, raises MllpError after the last try

hl7apy, not python-hl7: hl7apy knows the v2.5 structures (ORU_R01's groups, each field's datatype), so
segments are placed by name and free text goes in through its datatype (ST, TX, FT), which escapes the
delimiters | ^ & ~ \\ (HL7 2.5 section 2.7); python-hl7 parses well but builds messages from strings we
would escape ourselves. hl7apy parses the ACK too. It is the `hospital` extra, imported when used.

| segment | what |
|---|---|
| MSH | GEM-EDGE, ORU^R01^ORU_R01, a new control id, processing id P, version 2.5, UTF-8 |
| PID | from the DICOM Patient module: PID-3 Patient ID (Issuer of Patient ID), PID-5 name, PID-7 birth date, PID-8 sex |
| OBR | OBR-3 the Study Instance UID, OBR-4 11524-6^EKG study^LN, OBR-7 the acquisition time, OBR-18 the Accession Number, OBR-24 EC, OBR-25 P |
| NTE | signal quality flags, if any |
| OBX NM | one per measurement: LOINC where one is verified, the MDC code (ISO/IEEE 11073-10101) as the alternate or the only code; UCUM units; OBX-11 P, or X with an NTE saying why it was not measurable |
| OBX TX | the model's text (18844-1^EKG impression^LN), one repetition per line |
| NTE | one per grounding check: quantity, stated, measured, verdict, tolerance, device value and verdict; then one per stated diagnosis: finding, verdict, the evidence |

LOINC (`sr.MEASUREMENT_CODES`): 8867-4 heart rate, 8625-6 PR, 8633-0 QRS, 8634-8 QT, 8636-3 QTc (the
device's, formula unstated), 76635-2 / 76634-5 QTc Bazett / Fridericia, 8626-4 P axis, 8632-2 QRS axis.
T axis, RR and P duration go by MDC alone: "8638-1", sometimes given for the T axis, fails LOINC's check
digit, and no LOINC code for the other two was verified. Results are P (preliminary): a machine reading
awaiting a physician's over-read.
"""

from __future__ import annotations

import datetime as dt
import re
import socket
import time
import uuid
from collections.abc import Callable
from decimal import Decimal

from ..errors import GemEdgeError
from ..measure.fields import FIELD
from .sr import MEASUREMENT_CODES

HL7_VERSION = "2.5"
SENDING_APPLICATION = "GEM-EDGE"
REPORT_CODE = "11524-6^EKG study^LN"                  # OBR-4
TEXT_CODE = "18844-1^EKG impression^LN"               # the report text's OBX-3
RESULT_STATUS = "P"                                   # preliminary: machine reading, not yet over-read
MLLP_START, MLLP_END = b"\x0b", b"\x1c\x0d"           # MLLP framing (HL7 v2.5 Appendix C)
ACCEPTED = ("AA", "CA")                               # MSA-1: application / commit accept
MAX_BACKOFF_S = 60.0
MAX_ACK_BYTES = 2**20        # an ACK is a few hundred bytes: a receiver sending more is not read on
_UNIT_LABELS = (("_bpm", "bpm"), ("_ms", "ms"), ("_deg", "deg"))     # key suffix -> unit, in notes


class MllpError(GemEdgeError):
    """The EMR did not accept a message: refused, unreachable or silent after every try."""


def build_oru(result: dict, source, *, sending_facility: str = "", receiving_application: str = "",
              receiving_facility: str = "", control_id: str | None = None) -> str:
    """An HL7 v2.5 ORU^R01 (segments separated by CR) for `result` (`Result.to_dict()`) of the ECG in
    `source` (its pydicom Dataset)."""
    from hl7apy.base_datatypes import TX
    from hl7apy.core import Message

    msg = Message("ORU_R01", version=HL7_VERSION)
    _msh(msg.msh, control_id or uuid.uuid4().hex[:20], sending_facility, receiving_application,
         receiving_facility)
    patient_result = msg.add_group("ORU_R01_PATIENT_RESULT")
    _pid(patient_result.add_group("ORU_R01_PATIENT").add_segment("PID"), source)
    order = patient_result.add_group("ORU_R01_ORDER_OBSERVATION")
    when = _observation_time(source)
    _obr(order.add_segment("OBR"), source, when)
    meas = result.get("measurements") or {}
    quality = meas.get("quality") or {}
    for k, flag in enumerate(quality.get("flags") or [], 1):
        _nte(order.add_segment("NTE"), k, f"signal quality: {flag}")
    set_id = 0
    for key in FIELD:
        if key not in meas:
            continue
        set_id += 1
        observation = order.add_group("ORU_R01_OBSERVATION")
        _obx_number(observation.add_segment("OBX"), set_id, key, meas[key], when)
        if meas[key] is None:
            why = (quality.get("reasons") or {}).get(key, "not measurable")
            _nte(observation.add_segment("NTE"), 1, f"{key} not measurable: {why}")
    observation = order.add_group("ORU_R01_OBSERVATION")
    lines = [TX(line) for line in (result.get("text") or "").splitlines() or [""]]   # CR would end the segment
    _obx(observation.add_segment("OBX"), set_id + 1, "TX", TEXT_CODE, lines, "", RESULT_STATUS, when)
    notes = [grounding_note(g) for g in result.get("grounding") or []]
    notes += [diagnosis_note(v) for v in result.get("diagnoses") or []]
    notes += [revision_note(r) for r in result.get("revisions") or []]
    if result.get("revisions"):
        notes.append("the model's own text: " + " ".join((result.get("model_text") or "").split()))
    for k, note in enumerate(notes, 1):
        _nte(observation.add_segment("NTE"), k, note)
    return msg.to_er7()


def diagnosis_note(v: dict) -> str:
    """One stated finding in one line: 'diagnosis atrial fibrillation: contradicted - RR regular ...'."""
    device = f"; device: {v['device_verdict']}" if v.get("device_verdict") else ""
    return f"diagnosis {v['name']} (\"{v['statement']}\"): {v['verdict']} - {v['reason']}{device}"


def revision_note(r: dict) -> str:
    """One revised statement in one line: 'revised "atrial fibrillation" to "Normal sinus rhythm": RR regular ...'."""
    return f"revised \"{r['original']}\" to \"{r['revised'] or 'no rhythm named'}\": the measurements contradict it " \
           f"- {r['reason']}"


def grounding_note(g: dict) -> str:
    """One grounding check in one line: 'qrs_ms: stated 84 ms, measured 72 ms: agree (tolerance 20 ms)'."""
    unit = next((label for suffix, label in _UNIT_LABELS if g["quantity"].endswith(suffix)), "")
    u = f" {unit}" if unit else ""
    measured = "not measured" if g.get("measured") is None else f"measured {g['measured']:g}{u}"
    note = f"{g['quantity']}: stated {g['stated']:g}{u}, {measured}: {g['verdict']}"
    if g.get("tolerance") is not None:
        note += f" (tolerance {g['tolerance']:g}{u})"
    if g.get("device") is not None:
        note += f"; device {g['device']:g}{u}: {g.get('device_verdict') or '?'}"
    if g.get("reason"):
        note += f"; {g['reason']}"
    return note


def _msh(msh, control_id: str, facility: str, receiving_application: str, receiving_facility: str):
    from hl7apy.base_datatypes import ST

    msh.msh_3 = SENDING_APPLICATION
    for field, value in (("msh_4", facility), ("msh_5", receiving_application), ("msh_6", receiving_facility)):
        if value:
            getattr(msh, field).hd_1 = ST(value)
    msh.msh_7 = dt.datetime.now().strftime("%Y%m%d%H%M%S")
    msh.msh_9 = "ORU^R01^ORU_R01"
    msh.msh_10 = ST(control_id)
    msh.msh_11 = "P"
    msh.msh_12 = HL7_VERSION
    msh.msh_18 = "UNICODE UTF-8"


def _pid(pid, source):
    """PID from the DICOM Patient module: each value set through its datatype, so delimiters are escaped."""
    from hl7apy.base_datatypes import ST

    pid.pid_1 = "1"
    pid.pid_3.cx_1 = ST(_str(source, "PatientID"))
    issuer = _str(source, "IssuerOfPatientID")
    if issuer:
        pid.pid_3.cx_4.hd_1 = ST(issuer)
    name = source.get("PatientName")
    if name:
        # DICOM PN family^given^middle^prefix^suffix -> XPN family^given^middle^suffix^prefix
        for component, value in (("xpn_2", name.given_name), ("xpn_3", name.middle_name),
                                 ("xpn_4", name.name_suffix), ("xpn_5", name.name_prefix)):
            if text := _line(value):
                setattr(pid.pid_5, component, ST(text))
        if family := _line(name.family_name):
            pid.pid_5.xpn_1.fn_1 = ST(family)
    birth = _str(source, "PatientBirthDate")
    if re.fullmatch(r"\d{8}", birth):
        pid.pid_7 = birth
    sex = _str(source, "PatientSex").upper()
    if sex in ("M", "F", "O"):
        pid.pid_8 = sex


def _obr(obr, source, when: str):
    from hl7apy.base_datatypes import ST

    obr.obr_1 = "1"
    obr.obr_3.ei_1 = ST(_str(source, "StudyInstanceUID"))
    obr.obr_3.ei_2 = SENDING_APPLICATION
    obr.obr_4 = REPORT_CODE
    if when:
        obr.obr_7 = when
    accession = _str(source, "AccessionNumber")
    if accession:
        obr.obr_18 = ST(accession)
    obr.obr_22 = dt.datetime.now().strftime("%Y%m%d%H%M%S")
    obr.obr_24 = "EC"                                 # HL7 table 0074: electrocardiac
    obr.obr_25 = RESULT_STATUS


def _code(key: str) -> str:
    """OBX-3 (CE): LOINC with the MDC code as alternate, or the MDC code alone."""
    m = MEASUREMENT_CODES[key]
    return "^".join(f"{c[0]}^{c[1]}^{system}" for c, system in ((m.loinc, "LN"), (m.mdc, "MDC")) if c)


def _obx(obx, set_id: int, value_type: str, code: str, values: list, unit: str, status: str, when: str):
    """One OBX; `values` are hl7apy datatypes (NM, TX), one OBX-5 repetition each, escaped by them."""
    from hl7apy.core import Field

    obx.obx_1, obx.obx_2, obx.obx_3 = str(set_id), value_type, code
    for value in values:
        field = Field("OBX_5", datatype=value_type, version=HL7_VERSION)
        field.value = value
        obx.add(field)
    if unit:
        obx.obx_6 = unit
    obx.obx_11 = status
    if when:
        obx.obx_14 = when


def _obx_number(obx, set_id: int, key: str, value, when: str):
    from hl7apy.base_datatypes import NM

    unit = MEASUREMENT_CODES[key].unit
    number = [] if value is None else [NM(Decimal(f"{float(value):.{FIELD[key].decimals}f}"))]
    _obx(obx, set_id, "NM", _code(key), number, f"{unit[0]}^{unit[1]}^UCUM",
         RESULT_STATUS if number else "X", when)                   # X: the result cannot be obtained


def _nte(nte, set_id: int, comment: str):
    from hl7apy.base_datatypes import FT

    nte.nte_1 = str(set_id)
    nte.nte_2 = "L"                                   # HL7 table 0105: the filler (us) is the source
    nte.nte_3 = FT(" ".join(comment.split()))


def _str(source, name: str) -> str:
    """A DICOM element's value as one line of field text, '' when absent or empty."""
    return _line(source.get(name, "") or "")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _line(value) -> str:
    """A value from the dataset as HL7 field text: its control characters as spaces. hl7apy escapes the
    delimiters but not these: a CR in a patient's name ended the PID segment there, and 0x0B / 0x1C (MLLP's frame
    bytes) passed into the frame, which a receiver would end early."""
    return _CONTROL.sub(" ", str(value)).strip()


def _observation_time(source) -> str:
    """When the ECG was taken: Acquisition DateTime, else Content or Study date and time; '' if none."""
    for value in (_str(source, "AcquisitionDateTime"), _str(source, "ContentDate") + _str(source, "ContentTime"),
                  _str(source, "StudyDate") + _str(source, "StudyTime")):
        if digits := re.match(r"\d{8,14}", value):
            return digits.group(0)
    return ""


# --- sending ------------------------------------------------------------------------------------------

def send_mllp(host: str, port: int, message: str, *, retries: int = 5, backoff_s: float = 1.0,
              timeout_s: float = 10, log: Callable[[str], None] = print) -> str:
    """Send `message` over MLLP and return the receiver's ACK once MSA-1 is AA or CA.

    `retries` is the number of tries in all, as the listener's C-STORE forwarding counts them. A NACK (AE,
    AR, CE, CR), an ACK for another message, a refused or closed connection and a timeout are each logged
    in one line and tried again after backoff_s, then twice that, ... (at most 60 s). After the last try,
    MllpError says what happened."""
    if retries < 1 or backoff_s < 0 or timeout_s <= 0:
        raise ValueError(f"retries={retries}, backoff_s={backoff_s}, timeout_s={timeout_s}: "
                         "retries must be >= 1, backoff_s >= 0, timeout_s > 0")
    message = message.replace("\r\n", "\r").replace("\n", "\r")
    control_id = _control_id(message)
    payload = MLLP_START + message.encode("utf-8") + MLLP_END
    reason = ""
    for attempt in range(1, retries + 1):
        try:
            ack = _exchange(host, port, payload, timeout_s)
            code, acked, text = _parse_ack(ack)
            if code in ACCEPTED and acked in ("", control_id):
                return ack
            if code in ACCEPTED:
                reason = f"{code} for message {acked!r}, not {control_id!r}"
            else:
                reason = f"NACK {code or '(no MSA-1)'}" + (f": {text}" if text else "")
        except (OSError, ValueError) as exc:          # refused, reset, closed, timed out; a garbled ACK
            reason = f"{type(exc).__name__}: {' '.join(str(exc).split()) or 'no detail'}"
        delay = min(backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
        then = "giving up" if attempt == retries else f"retrying in {delay:g} s"
        log(f"mllp {host}:{port} message {control_id} try {attempt}/{retries}: {reason}; {then}")
        if attempt < retries:
            time.sleep(delay)
    raise MllpError(f"{host}:{port}: message {control_id} not accepted after {retries} tries; last: {reason}")


def _exchange(host: str, port: int, payload: bytes, timeout_s: float) -> str:
    """One connection: send the frame, read until the end of the reply's frame, return what it holds."""
    deadline = time.monotonic() + timeout_s
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        sock.sendall(payload)
        buf = b""
        while MLLP_END not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no ACK within {timeout_s:g} s")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise TimeoutError(f"no ACK within {timeout_s:g} s") from None
            if not chunk:
                raise ConnectionError("closed by the receiver before an ACK"
                                      + (f" ({len(buf)} bytes of one)" if buf else ""))
            buf += chunk
            if len(buf) > MAX_ACK_BYTES and MLLP_END not in buf:
                raise ValueError(f"reply is over {MAX_ACK_BYTES // 2**10} KiB without the end of an MLLP frame")
    start, end = buf.find(MLLP_START), buf.find(MLLP_END)
    if start < 0 or start > end:
        raise ValueError(f"reply is not an MLLP frame: {buf[:40]!r}")
    return buf[start + 1:end].decode("utf-8", errors="replace")


def _parse_ack(ack: str) -> tuple[str, str, str]:
    """(MSA-1 acknowledgment code, MSA-2 control id acked, MSA-3 / ERR text) of an ACK, by hl7apy."""
    from hl7apy.exceptions import HL7apyException
    from hl7apy.parser import parse_message

    try:
        msg = parse_message(ack.replace("\n", "\r").strip("\r"), find_groups=False)
        msa = msg.msa
    except (HL7apyException, AttributeError, IndexError, KeyError) as exc:
        raise ValueError(f"unreadable ACK ({type(exc).__name__}: {exc}): {ack[:60]!r}") from None
    text = msa.msa_3.to_er7() if msa.msa_3 else ""
    return msa.msa_1.to_er7().upper(), msa.msa_2.to_er7(), text


def _control_id(message: str) -> str:
    """MSH-10 of an ER7 message (the field separator is the character after 'MSH')."""
    if not message.startswith("MSH") or len(message) < 4:
        raise ValueError(f"not an HL7 v2 message (it starts {message[:10]!r}, not 'MSH')")
    fields = message.split("\r", 1)[0].split(message[3])
    return fields[9] if len(fields) > 9 else ""
