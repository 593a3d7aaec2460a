"""The hospital reports: ECGs written as DICOM waveforms, our reading as a DICOM SR and an HL7 ORU, and the
MLLP sender against receivers that NACK, hang up or never answer."""

import copy
import socket
import subprocess
import threading
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from benchmarks.dicom_bench import dcmtk
from gem_runtime.constants import LEADS
from gem_runtime.hospital import MEASUREMENT_CODES, MllpError, build_oru, send_mllp, write_ecg_dicom, write_sr
from gem_runtime.hospital.ecg_dicom import PADDING, TWELVE_LEAD_ECG_STORAGE
from gem_runtime.hospital.hl7 import REPORT_CODE, TEXT_CODE, diagnosis_note, grounding_note
from gem_runtime.measure import measure_ecg
from gem_runtime.measure.fields import FIELD
from gem_runtime.preprocess import preprocess_ecg
from gem_runtime.readers import EcgRecord, read_ecg

pytest.importorskip("highdicom")
pytest.importorskip("hl7apy")
DICOM_ECG = get_testdata_file("waveform_ecg.dcm")       # a Mortara el250 cart's ECG, with its own findings
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"


# --- ECGs as DICOM --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ptb_dicom(ptb, tmp_path_factory):
    record = read_ecg(ptb)
    with pytest.warns(UserWarning, match="wrote the first 10 s of 38.4 s"):
        path = write_ecg_dicom(record, tmp_path_factory.mktemp("dicom") / "s0010_re.dcm", patient_id="PTB-0010",
                               patient_name="Ten^Subject")
    return record, path


def test_ptb_as_dicom_reads_back_and_measures_the_same(ptb_dicom):
    record, path = ptb_dicom
    back = read_ecg(path)
    assert back.sex == record.sex == "F"                      # PTB s0010: "# sex: female"; the QTc limits read it
    assert back.fs == record.fs == 1000.0 and back.leads == LEADS and back.signal.shape == (12, 10000)
    assert np.abs(back.signal - record.signal[:, :10000]).max() <= 0.00025     # half of PTB's 0.5 uV step
    ours, theirs = (measure_ecg(preprocess_ecg(r)[0], 500).to_dict() for r in (record, back))
    for key, f in FIELD.items():
        assert (ours[key] is None) == (theirs[key] is None), key
        if ours[key] is not None:
            tolerance = 2.0 if f.unit == "ms" else 1.0          # one sample at 500 Hz; a degree; 1 bpm
            assert abs(ours[key] - theirs[key]) <= tolerance, (key, ours[key], theirs[key])


def test_ptb_as_dicom_is_a_12_lead_ecg_object_that_dcmtk_parses(ptb_dicom):
    _, path = ptb_dicom
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == TWELVE_LEAD_ECG_STORAGE
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID and ds.Modality == "ECG"
    assert (ds.PatientID, str(ds.PatientName)) == ("PTB-0010", "Ten^Subject")
    group = ds.WaveformSequence[0]
    assert (group.WaveformSampleInterpretation, group.WaveformBitsAllocated, group.NumberOfWaveformChannels,
            group.NumberOfWaveformSamples, float(group.SamplingFrequency)) == ("SS", 16, 12, 10000, 1000.0)
    # the channel source codes are the ones a cart writes (pydicom's el250 file), channel for channel
    cart = pydicom.dcmread(DICOM_ECG).WaveformSequence[0].ChannelDefinitionSequence
    for ours, theirs in zip(group.ChannelDefinitionSequence, cart):
        a, b = ours.ChannelSourceSequence[0], theirs.ChannelSourceSequence[0]
        assert (a.CodeValue, a.CodingSchemeDesignator, a.CodingSchemeVersion, a.CodeMeaning) == \
               (b.CodeValue, b.CodingSchemeDesignator, b.CodingSchemeVersion, b.CodeMeaning)
        assert ours.ChannelSensitivityUnitsSequence[0].CodeValue == "uV"
    done = subprocess.run([dcmtk("dcmdump"), str(path)], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "E:" not in done.stderr + done.stdout, done.stderr
    assert "TwelveLeadECGWaveformStorage" in done.stdout


def test_low_rate_record_is_resampled_and_missing_samples_stay_missing(tmp_path):
    fs, n = 150.0, 1800                                          # 12 s at 150 Hz: below the IOD's 200 Hz
    t = np.arange(n) / fs
    signal = np.stack([np.sin(2 * np.pi * (1 + k / 10) * t) * (0.5 + k / 20) for k in range(12)]).astype(np.float32)
    signal[3, 300:310] = np.nan
    record = EcgRecord(signal, fs, LEADS, "synthetic-150Hz")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = write_ecg_dicom(record, tmp_path / "low.dcm")
    messages = [str(w.message) for w in caught]
    assert any("resampled from 150 Hz to 500 Hz" in m for m in messages)
    assert any("first 10 s of 12.0 s" in m for m in messages)
    group = pydicom.dcmread(path).WaveformSequence[0]
    assert group.WaveformOriginality == "DERIVED" and float(group.SamplingFrequency) == 500.0
    assert int.from_bytes(group.WaveformPaddingValue, "little", signed=True) == PADDING
    back = read_ecg(path)
    assert back.signal.shape == (12, 5000)
    assert np.isnan(back.signal[3, 1000:1033]).any() and not np.isnan(back.signal[[0, 1, 6]]).any()


def test_a_record_beyond_16_bit_range_is_refused(tmp_path):
    signal = np.zeros((12, 5000), np.float32)
    signal[:, ::100] = 400.0                                     # 400 mV: uV stored as mV
    with pytest.raises(ValueError, match="lead I reaches 400.0 mV"):
        write_ecg_dicom(EcgRecord(signal, 500.0, LEADS, "x"), tmp_path / "x.dcm")
    assert not list(tmp_path.iterdir())


# --- our reading, interpreted once by the demo bundle -------------------------------------------------

@pytest.fixture(scope="module")
def readings(ptb_dicom):
    """(result dict, source dataset): the cart's ECG (it carries the cart's findings), and PTB as we wrote it."""
    from gem_runtime.interpreter import Interpreter

    with Interpreter.load(threads=2) as gem:
        return [(gem.interpret(path, max_new_tokens=128).to_dict(), pydicom.dcmread(path))
                for path in (DICOM_ECG, ptb_dicom[1])]


def _items(seq):
    """Every SR content item, depth first."""
    for item in seq:
        yield item
        yield from _items(item.get("ContentSequence", []))


def _nums(container) -> dict:
    return {(c.ConceptNameCodeSequence[0].CodingSchemeDesignator, c.ConceptNameCodeSequence[0].CodeValue):
            (float(c.MeasuredValueSequence[0].NumericValue),
             c.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue)
            for c in container.ContentSequence if c.ValueType == "NUM"}


def _code_of(key: str) -> tuple[str, str]:
    m = MEASUREMENT_CODES[key]
    return ("MDC", m.mdc[0]) if m.mdc else ("LN", m.loinc[0])


@pytest.mark.parametrize("which", [0, 1], ids=["cart-ecg", "ptb-as-dicom"])
def test_sr_references_the_waveform_and_holds_every_value(readings, which, tmp_path):
    from highdicom.sr import ComprehensiveSR

    result, source = readings[which]
    sr = pydicom.dcmread(write_sr(result, source, tmp_path / "sr.dcm"))
    assert not list(tmp_path.glob("*.tmp"))
    assert sr.SOPClassUID == COMPREHENSIVE_SR and sr.Modality == "SR"
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.SeriesInstanceUID != source.SeriesInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    series = evidence.ReferencedSeriesSequence[0]
    assert (evidence.StudyInstanceUID, series.SeriesInstanceUID, series.ReferencedSOPSequence[0].ReferencedSOPInstanceUID,
            series.ReferencedSOPSequence[0].ReferencedSOPClassUID) == \
           (source.StudyInstanceUID, source.SeriesInstanceUID, source.SOPInstanceUID, source.SOPClassUID)
    for name in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber"):
        assert str(sr.get(name, "")) == str(source.get(name, "")), name
    assert (sr.PreliminaryFlag, sr.VerificationFlag) == ("PRELIMINARY", "UNVERIFIED")

    items = list(_items(sr.ContentSequence))
    boxes = [item for item in items if item.ConceptNameCodeSequence[0].CodeValue == "122158"]
    ours = _nums(boxes[0])
    expected = {k: v for k, v in result["measurements"].items() if k in FIELD and v is not None}
    assert len(ours) == len(expected)
    for key, value in expected.items():
        assert ours[_code_of(key)] == (pytest.approx(value), MEASUREMENT_CODES[key].unit[0]), key
    if result["device"]:
        device = _nums(boxes[1])
        for key, value in result["device"]["measurements"].items():
            assert device[_code_of(key)][0] == pytest.approx(value), key
        findings = [i.TextValue for i in boxes[1].ContentSequence if i.ValueType == "TEXT"
                    and i.ConceptNameCodeSequence[0].CodeMeaning == "Finding"]
        assert findings == result["device"]["statements"]
    else:
        assert len(boxes) == 1
    texts = [i.TextValue for i in items if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeValue == "121073"]
    assert texts == [result["text"]]
    checks = [i for i in items if i.ConceptNameCodeSequence[0].CodeValue == "grounding-item"]
    assert len(checks) == len(result["grounding"])
    for check, g in zip(checks, result["grounding"]):
        values = {c.ConceptNameCodeSequence[0].CodeValue: c.TextValue if c.ValueType == "TEXT"
                  else float(c.MeasuredValueSequence[0].NumericValue) for c in check.ContentSequence}
        assert (values["quantity"], values["stated"], values.get("measured"), values["verdict"]) == \
               (g["quantity"], pytest.approx(g["stated"]), g["measured"] and pytest.approx(g["measured"]),
                g["verdict"])
    ComprehensiveSR.from_dataset(sr)                              # highdicom reads its own document back

    done = subprocess.run([dcmtk("dsrdump"), "+Pl", "+Pc", str(tmp_path / "sr.dcm")], check=False,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    hr = next(i for i in items if i.ConceptNameCodeSequence[0].CodeValue == "8867-4")
    assert f'(8867-4,LN,"Heart rate")="{hr.MeasuredValueSequence[0].NumericValue}"' in done.stdout
    assert result["text"] in done.stdout


def test_sr_leaves_the_source_as_it_was_and_needs_its_uids(readings, tmp_path):
    result, source = readings[1]
    source = copy.deepcopy(source)
    del source.PatientBirthDate, source.PatientSex
    sr = pydicom.dcmread(write_sr(result, source, tmp_path / "sr.dcm"))
    assert "PatientBirthDate" not in source and "PatientSex" not in source
    assert sr.PatientBirthDate == "" and sr.PatientSex == "" and sr.PatientID == source.PatientID
    del source.SOPInstanceUID
    with pytest.raises(ValueError, match="source dataset lacks SOPInstanceUID"):
        write_sr(result, source, tmp_path / "none.dcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sr.dcm"]


def test_measurement_codes_are_dicoms_and_loincs_own():
    """MDC codes and meanings as pydicom's copy of DICOM PS3.16 has them; LOINC codes pass LOINC's check digit."""
    from pydicom.sr._concepts_dict import concepts

    mdc = {}                                                     # a code can have a meaning per context group
    for entry in concepts["MDC"].values():
        for code, (meaning, _) in entry.items():
            mdc.setdefault(code, set()).add(meaning)
    for m in MEASUREMENT_CODES.values():
        if m.mdc:
            assert m.mdc[1] in mdc[m.mdc[0]], m.key
    loincs = [m.loinc[0] for m in MEASUREMENT_CODES.values() if m.loinc] + [REPORT_CODE.split("^")[0],
                                                                          TEXT_CODE.split("^")[0]]
    for code in loincs:
        number, check = code.split("-")
        digits = [int(d) for d in reversed(number)]
        total = sum(sum(divmod(2 * d, 10)) if i % 2 == 0 else d for i, d in enumerate(digits))
        assert (10 - total % 10) % 10 == int(check), code


# --- HL7 ----------------------------------------------------------------------------------------------

def test_oru_parses_back_with_every_observation(readings):
    from hl7apy.parser import parse_message

    result, source = readings[0]
    message = build_oru(result, source, control_id="CTRL-1")
    msg = parse_message(message, find_groups=True)
    assert msg.msh.msh_9.to_er7() == "ORU^R01^ORU_R01" and msg.msh.msh_12.to_er7() == "2.5"
    patient = msg.oru_r01_patient_result.oru_r01_patient
    assert patient.pid.pid_3.cx_1.to_er7() == source.PatientID
    assert patient.pid.pid_5.to_er7() == str(source.PatientName)                # one component here
    assert patient.pid.pid_7.to_er7() == source.PatientBirthDate and patient.pid.pid_8.to_er7() == source.PatientSex
    order = msg.oru_r01_patient_result.oru_r01_order_observation
    assert order.obr.obr_3.ei_1.to_er7() == source.StudyInstanceUID
    assert order.obr.obr_18.to_er7() == source.AccessionNumber
    observations = list(order.oru_r01_observation)
    numbers = {o.obx.obx_3.ce_1.to_er7(): o.obx for o in observations if o.obx.obx_2.to_er7() == "NM"}
    expected = {k: v for k, v in result["measurements"].items() if k in FIELD}
    assert len(numbers) == len(expected)
    for key, value in expected.items():
        m = MEASUREMENT_CODES[key]
        obx = numbers[(m.loinc or m.mdc)[0]]
        assert obx.obx_3.ce_3.to_er7() == ("LN" if m.loinc else "MDC")
        assert obx.obx_6.ce_1.to_er7() == m.unit[0] and obx.obx_6.ce_3.to_er7() == "UCUM"
        if value is None:
            assert obx.obx_11.to_er7() == "X"
        else:
            assert float(obx.obx_5.to_er7()) == pytest.approx(value) and obx.obx_11.to_er7() == "P"
    text = observations[-1]
    assert text.obx.obx_2.to_er7() == "TX" and text.obx.obx_3.to_er7() == TEXT_CODE
    assert "\n".join(rep.to_er7() for rep in text.obx.obx_5) == result["text"]  # demo text has no delimiters
    assert [n.nte_3.to_er7() for n in text.nte] == ([grounding_note(g) for g in result["grounding"]]
                                                    + [diagnosis_note(v) for v in result["diagnoses"]])


def test_oru_escapes_hl7_delimiters_in_free_text(readings):
    from hl7apy.parser import parse_message

    result, source = readings[0]
    result = {**result, "text": "QT|QTc 380/415 ms ^ T&U ~ \\ wave\nsecond line", "grounding": []}
    source = copy.deepcopy(source)
    source.PatientName = "O|Brien^Mary&Ann"
    message = build_oru(result, source)
    segments = [line[:3] for line in message.strip("\r").split("\r")]
    assert set(segments) == {"MSH", "PID", "OBR", "OBX", "NTE"} or set(segments) == {"MSH", "PID", "OBR", "OBX"}
    assert segments.count("OBX") == len(FIELD) + 1 and segments[:3] == ["MSH", "PID", "OBR"]
    msg = parse_message(message, find_groups=True)
    pid = msg.oru_r01_patient_result.oru_r01_patient.pid
    assert pid.pid_5.to_er7() == "O\\F\\Brien^Mary\\T\\Ann"
    text = list(msg.oru_r01_patient_result.oru_r01_order_observation.oru_r01_observation)[-1].obx.obx_5
    assert [rep.to_er7() for rep in text] == ["QT\\F\\QTc 380/415 ms \\S\\ T\\T\\U \\R\\ \\E\\ wave", "second line"]


def test_oru_keeps_control_characters_of_the_dataset_out_of_its_segments_and_frame(readings):
    """A CR in a patient's name ended the PID segment there (what followed became segments of their own), and
    0x0B / 0x1C, MLLP's frame bytes, went into the frame."""
    from hl7apy.parser import parse_message

    result, source = readings[0]
    source = copy.deepcopy(source)
    source.PatientName = "Evil^Name\rOBX|99|ST|FAKE^fake||INJECTED\x1c\r\x0bX"
    source.PatientID = "ID\rPID|1"
    source.AccessionNumber = "A1\nOBR|2"
    message = build_oru(result, source)
    assert not set(message) & {"\x0b", "\x1c", "\n"}
    segments = [line[:3] for line in message.strip("\r").split("\r")]
    assert segments[:3] == ["MSH", "PID", "OBR"] and segments.count("PID") == 1 and segments.count("OBR") == 1
    assert segments.count("OBX") == len(FIELD) + 1, segments
    pid = parse_message(message, find_groups=True).oru_r01_patient_result.oru_r01_patient.pid
    assert pid.pid_3.cx_1.to_er7() == "ID PID\\F\\1"
    assert pid.pid_5.to_er7() == "Evil^Name OBX\\F\\99\\F\\ST\\F\\FAKE^fake\\F\\\\F\\INJECTED   X"


@pytest.mark.parametrize("name, value", [("PatientName", "A^B\\C^D"), ("PatientSex", "M\\F"),
                                         ("PatientBirthDate", "19700101\\19800101")])
def test_an_element_of_one_value_holding_two_is_a_source_problem(readings, name, value):
    """The SR (highdicom: TypeError, ValueError) and the ORU (AttributeError) failed on these after the listener
    had acknowledged the ECG, on every start."""
    from gem_runtime.hospital.sr import source_problems

    source = copy.deepcopy(readings[0][1])
    setattr(source, name, value)
    assert source_problems(source) == [f"{name} holds 2 values (DICOM allows one)"]
    assert source_problems(readings[0][1]) == []


# --- MLLP ---------------------------------------------------------------------------------------------

class Receiver:
    """An MLLP receiver on localhost that answers the n-th connection as `plan[n]` says (the last repeats):
    "ack" (AA), "nack" (AE), "close" (hangs up before answering), "silent" (never answers), "flood" (a frame
    begun and never ended, as fast as the sender reads)."""

    def __init__(self, plan: list[str]):
        self.plan, self.messages = plan, []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while b"\x1c\x0d" not in buf and (chunk := conn.recv(65536)):
                    buf += chunk
                message = buf.strip(b"\x0b\x1c\x0d").decode()
                self.messages.append(message)
                action = self.plan[min(len(self.messages), len(self.plan)) - 1]
                control_id = message.split("\r")[0].split("|")[9]
                if action in ("ack", "nack"):
                    code = "AA" if action == "ack" else "AE"
                    conn.sendall(b"\x0b" + f"MSH|^~\\&|EMR||GEM-EDGE||20260101000000||ACK^R01^ACK|A{len(self.messages)}"
                                 f"|P|2.5\rMSA|{code}|{control_id}|{action} for the test\r".encode() + b"\x1c\x0d")
                elif action == "silent":
                    conn.recv(1)                                  # until the sender gives up and closes
                elif action == "flood":
                    try:
                        conn.sendall(b"\x0bMSH|")
                        while True:
                            conn.sendall(b"x" * 65536)
                    except OSError:
                        pass                                      # the sender stopped reading and closed

    def close(self):
        self.sock.close()


@pytest.fixture
def oru(readings):
    return build_oru(*readings[0])


@pytest.mark.parametrize("first, said", [("nack", "NACK AE: nack for the test"), ("close", "closed by the receiver")])
def test_send_mllp_retries_after_a_nack_or_a_hang_up(oru, first, said):
    receiver, logs = Receiver([first, "ack"]), []
    try:
        ack = send_mllp("127.0.0.1", receiver.port, oru, retries=3, backoff_s=0.01, timeout_s=5, log=logs.append)
    finally:
        receiver.close()
    assert "MSA|AA|" in ack
    assert receiver.messages == [oru, oru]
    assert len(logs) == 1 and "try 1/3" in logs[0] and said in logs[0] and "retrying in 0.01 s" in logs[0]


def test_send_mllp_gives_up_after_the_retries(oru):
    receiver, logs = Receiver(["silent"]), []
    try:
        with pytest.raises(MllpError, match=r"not accepted after 3 tries; last: TimeoutError: no ACK within 0.2 s"):
            send_mllp("127.0.0.1", receiver.port, oru, retries=3, backoff_s=0.01, timeout_s=0.2, log=logs.append)
    finally:
        receiver.close()
    assert len(receiver.messages) == 3 and len(logs) == 3 and logs[-1].endswith("giving up")


def test_send_mllp_stops_reading_a_reply_that_never_ends(oru):
    receiver, logs = Receiver(["flood"]), []
    try:
        with pytest.raises(MllpError, match=r"last: ValueError: reply is over 1024 KiB without the end of an MLLP"):
            send_mllp("127.0.0.1", receiver.port, oru, retries=1, timeout_s=30, log=logs.append)
    finally:
        receiver.close()


def test_send_mllp_to_nobody_gives_up_with_the_reason(oru):
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]                                  # closed again: nothing listens there
    logs = []
    with pytest.raises(MllpError, match="ConnectionRefusedError"):
        send_mllp("127.0.0.1", port, oru, retries=2, backoff_s=0.01, timeout_s=1, log=logs.append)
    assert len(logs) == 2
