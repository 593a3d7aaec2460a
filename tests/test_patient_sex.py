"""The patient's sex travels from the file to the diagnosis check: each reader fills `EcgRecord.sex` from its
format's own field ("F", "M", or None when the file does not say, or says something else), and the interpreter
checks a statement's sex-specific limit (long QT by QTc) with it, in the first answer and in a follow-up."""
from __future__ import annotations

import binascii
import dataclasses
import shutil
import struct
from types import SimpleNamespace

import edfio
import numpy as np
import pydicom
import pytest

from gem_runtime.diagnosis import CONTRADICTED, NOT_CHECKABLE
from gem_runtime.conversation import ConversationCache
from gem_runtime.interpreter import Interpreter
from gem_runtime.measure import Measurements
from gem_runtime.readers import read_ecg
from gem_runtime.readers.record import patient_sex
from gem_runtime.readers.wfdb import header_sex


# --- real files: the sex each one states (looked up in the files themselves) -------------------------------------
@pytest.mark.parametrize("name, sex", [
    ("real/labelled/JS20000.hea", "F"),                    # "# Sex: Female" (CinC 2020, Chapman-Shaoxing)
    ("real/labelled/A0001.hea", "M"),                      # "# Sex: Male" (CPSC 2018)
    ("real/ludb/1.hea", "F"),                              # "#<sex>: F"
    ("real/ludb/3.hea", "M"),                              # "#<sex>: M"
    ("real/muse/muse-sinus.xml", "M"),                     # PatientDemographics/Gender MALE
    ("real/aecg/hl7_example_aecg.xml", "M"),               # administrativeGenderCode code="M"
    ("real/dicom/ge_mv360.dcm", "F"),                      # PatientSex F
    ("real/cardiosoft/cardiosoft_example.xml", "M"),       # PatientInfo/Gender MALE
    ("real/philips/3191723_ZZDEMOPTONLY_1-04_orig.xml", "M"),   # patient/generalpatientdata/sex Male (UTF-16)
    ("real/philips/129DYNRG.xml", "M"),
    ("vendor/philips_129DYPRG.xml", "M"),
    ("real/scp/ECG_20070321_110542_191010101010.SCP", "M"),     # section 1 tag 8 = 1
])
def test_a_real_file_gives_the_sex_it_states(shared_data, name, sex):
    assert read_ecg(shared_data / name).sex == sex


@pytest.mark.parametrize("name", [
    "real/muse/example1.xml",                      # de-identified: no Gender element
    "real/philips/2020-5-18_15-48-11.xml",         # <sex>Unknown</sex>
])
def test_a_real_file_that_does_not_state_it_gives_none(shared_data, name):
    assert read_ecg(shared_data / name).sex is None


def test_every_labelled_header_agrees_with_the_training_labels(shared_data):
    """The reader and gem-train's label parser read the same 130 real headers to the same sex."""
    from gem_train.real_labels import read_labels

    headers = [h for folder in ("labelled", "ludb") for h in sorted((shared_data / "real" / folder).glob("*.hea"))]
    assert len(headers) >= 100
    for h in headers:
        sex = header_sex(h.read_text())
        assert sex in ("F", "M") and sex == read_labels(h).sex, h.name


# --- hostile or unclear values: None, never a guess ---------------------------------------------------------------
@pytest.mark.parametrize("value, sex", [
    ("M", "M"), ("f", "F"), ("Male", "M"), ("FEMALE", "F"), ("  female\t", "F"),
    ("Unknown", None), ("U", None), ("O", None), ("X", None), ("UN", None), ("", None), ("   ", None),
    ("MALEFIC", None), ("Femal", None), ("M F", None), ("M/F", None), ("F\x00", None), ("1", None), ("2", None),
    (None, None), (1, None), (b"M", None), (["M"], None),
])
def test_only_a_clear_value_counts(value, sex):
    assert patient_sex(value) == sex


@pytest.mark.parametrize("comments, sex", [
    ("# Sex: Female", "F"), ("#<sex>: f", "F"), ("# SEX:male", "M"),
    ("# Sex: Other", None), ("# Sex: Unknown", None), ("#<sex>:", None),
    ("# Sex: Female\n# Sex: Male", None),                  # two comments that disagree
    ("# Sex: Female\n#<sex>: F", "F"),
    ("# 69 M 1085 1629 x1", None),                         # MIT-BIH's free-form line: not read
    ("# Sexagenarian: yes", None), ("# Age: 60", None), ("", None), ("#\nSex: F", None),
    ("# Sex: Male\r", "M"),
])
def test_wfdb_header_comments(comments, sex):
    assert header_sex("r 12 500 5000\n" + comments + "\n") == sex


def test_a_wfdb_record_whose_header_says_otherwise_gives_none(shared_data, tmp_path):
    for ext in ("hea", "dat"):
        shutil.copy(shared_data / "real" / "ludb" / f"1.{ext}", tmp_path / f"1.{ext}")
    header = tmp_path / "1.hea"
    header.write_text(header.read_text().replace("#<sex>: F", "#<sex>: X"))
    assert read_ecg(header).sex is None


def _xml_copy(source, tmp_path, old: bytes, new: bytes):
    data = source.read_bytes()
    assert old in data
    out = tmp_path / source.name
    out.write_bytes(data.replace(old, new))
    return out


@pytest.mark.parametrize("name, old, new, sex", [
    ("vendor/philips_129DYPRG.xml", b"<sex>Male</sex>", b"<sex>Female</sex>", "F"),
    ("vendor/philips_129DYPRG.xml", b"<sex>Male</sex>", b"<sex>Malex</sex>", None),
    ("vendor/philips_129DYPRG.xml", b"<sex>Male</sex>", b"<sex><b>Male</b></sex>", None),
    ("real/cardiosoft/cardiosoft_example.xml", b"<Gender>MALE</Gender>", b"<Gender>female</Gender>", "F"),
    ("real/cardiosoft/cardiosoft_example.xml", b"<Gender>MALE</Gender>", b"<Gender>UNKNOWN</Gender>", None),
    ("real/cardiosoft/cardiosoft_example.xml", b"<Gender>MALE</Gender>", b"<Gender>M/F</Gender>", None),
    ("real/muse/muse-sinus.xml", b"<Gender>MALE</Gender>", b"<Gender>FEMALE</Gender>", "F"),
    ("real/muse/muse-sinus.xml", b"<Gender>MALE</Gender>", b"<Gender>UNKNOWN</Gender>", None),
    ("real/aecg/hl7_example_aecg.xml", b'administrativeGenderCode code="M"', b'administrativeGenderCode code="F"', "F"),
    ("real/aecg/hl7_example_aecg.xml", b'administrativeGenderCode code="M"', b'administrativeGenderCode code="UN"',
     None),
    ("real/aecg/hl7_example_aecg.xml", b'administrativeGenderCode code="M"', b'administrativeGenderCode code="MX"',
     None),
])
def test_xml_sex_fields_mapped_or_refused(shared_data, tmp_path, name, old, new, sex):
    assert read_ecg(_xml_copy(shared_data / name, tmp_path, old, new)).sex == sex


@pytest.mark.parametrize("value, sex", [("M", "M"), ("O", None), ("M\\F", None), ("", None)])
def test_dicom_patient_sex(shared_data, tmp_path, value, sex):
    ds = pydicom.dcmread(shared_data / "real" / "dicom" / "ge_mv360.dcm")
    ds.PatientSex = value
    ds.save_as(tmp_path / "ecg.dcm")
    assert read_ecg(tmp_path / "ecg.dcm").sex == sex


def _crc(data) -> int:
    return binascii.crc_hqx(bytes(data), 0xFFFF)


def _scp_sex(data: bytes, code: int) -> bytes:
    """The record with section 1's tag 8 (sex) set to `code`, its section's and the record's CRCs made good."""
    out = bytearray(data)
    table = out[22:6 + struct.unpack_from("<I", out, 10)[0]]         # section 0's pointers
    pointers = {sid: (size, index) for sid, size, index in
                (struct.unpack_from("<HII", table, pos) for pos in range(0, len(table) - 9, 10))}
    size, index = pointers[1]
    start = pos = index - 1
    pos += 16
    while out[pos] != 8:
        assert out[pos] != 255, "no sex tag"
        pos += 3 + struct.unpack_from("<H", out, pos + 1)[0]
    out[pos + 3] = code
    struct.pack_into("<H", out, start, _crc(out[start + 2:start + size]))
    struct.pack_into("<H", out, 0, _crc(out[2:]))
    return bytes(out)


@pytest.mark.parametrize("code, sex", [(1, "M"), (2, "F"), (0, None), (9, None), (0xFF, None)])
def test_scp_section1_tag8(shared_data, tmp_path, code, sex):
    """EN 1064: 0 not known, 1 male, 2 female, 9 unspecified."""
    source = shared_data / "real" / "scp" / "ECG_20070321_110542_191010101010.SCP"
    out = tmp_path / "ecg.scp"
    out.write_bytes(_scp_sex(source.read_bytes(), code))
    assert read_ecg(out).sex == sex


def test_edf_plus_states_it_plain_edf_does_not(shared_data, tmp_path):
    """EDF+'s patient field is "code sex birthdate name"; a plain EDF's is free text, so its second word is not
    read as the sex."""
    record = read_ecg(shared_data / "real" / "ludb" / "1.hea")

    def write(path, **annotations):
        signals = [edfio.EdfSignal(record.signal[i].astype(np.float64), record.fs, label=f"ECG {lead}",
                                   physical_dimension="mV") for i, lead in enumerate(record.leads)]
        edfio.Edf(signals, patient=edfio.Patient(sex="F"), **annotations).write(path)
        return path

    plus = write(tmp_path / "plus.edf", annotations=())         # an annotation signal: reserved "EDF+C"
    plain = write(tmp_path / "plain.edf")                       # none: reserved blank, a plain EDF
    assert plus.read_bytes()[192:197] == b"EDF+C" and plain.read_bytes()[192:236].strip() == b""
    assert read_ecg(plus).sex == "F" and read_ecg(plain).sex is None


def test_a_record_without_sex_and_a_numpy_array(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((12, 5000), np.float32) + np.sin(np.arange(5000) / 20)[None])
    assert read_ecg(tmp_path / "x.npy", fs=500.0).sex is None


# --- end to end: the interpreter checks the statement with the record's sex --------------------------------------
ANSWER = "Sinus rhythm with a prolonged QT interval."
QTC_MS = 445.0        # a woman: below 460 by more than the margin (contradicted); unknown sex: between the limits


class _ScriptedLLM:
    """The LLM as interpret and ask use it, answering every turn with ANSWER (a token a byte)."""

    n_ctx = 4096

    def __init__(self):
        self.answer = ANSWER.encode()

    def tokenize(self, text):
        return [1] + [0] * len(text)

    def eval_tokens(self, ids, pos, logits):
        return pos + len(ids)

    def piece(self, token):
        return self.answer[token:token + 1]

    def save_state(self) -> bytes:              # parking a conversation when the next ECG comes
        return b"state"

    def restore_state(self, state, prefix_ids):
        pass

    def generate(self, pos, max_new_tokens, timings, ignore_eos=False, on_token=None):
        out = list(range(len(self.answer)))
        for token in out:
            on_token(token)
        return out


def _interpreter() -> Interpreter:
    """An Interpreter with the model's stages stubbed (no bundle): reading the record, the result, the
    conversation and the follow-up are its own code; the measurements are fixed (QTc QTC_MS)."""
    gem = object.__new__(Interpreter)
    gem.llm, gem.draft_len, gem.drafter = _ScriptedLLM(), 0, None
    gem.conversations, gem._live = ConversationCache(64 << 20), None
    gem.encoders = {name: SimpleNamespace(backend="stub") for name in ("ecg_encoder", "image_encoder")}
    gem.llm_backend, gem.bundle, gem.quant, gem.threads = "stub", SimpleNamespace(bundle_id="stub"), "f16", 1
    gem._prepare = lambda record, img, save_image, t: SimpleNamespace(signal=None, warnings=[], image=None)
    gem._measure = lambda record, x, save_image, t: Measurements(hr_bpm=70.0, qtc_bazett_ms=QTC_MS,
                                                                  qtc_fridericia_ms=QTC_MS)
    gem._encode = lambda prep, t: None
    gem._prefill = lambda question, rows, lt, t: (100, [1], [2])
    return gem


def _long_qt(verdicts):
    [v] = [v for v in verdicts if v.finding == "long_qt"]
    return v


def test_a_long_qt_statement_is_checked_with_the_female_limit_when_the_record_says_f(shared_data):
    record = read_ecg(shared_data / "real" / "labelled" / "JS20000.hea")          # "# Sex: Female"
    assert record.sex == "F"
    gem = _interpreter()
    result = gem.interpret(record)
    assert result.text == ANSWER and result.sex == "F" and result.to_dict()["sex"] == "F"
    v = _long_qt(result.diagnoses)
    assert v.verdict == CONTRADICTED and "460" in v.reason and "a woman" in v.reason
    answer = gem.ask(result, "Is the QT interval prolonged?")        # the follow-up keeps the record's sex
    assert answer.text == ANSWER and _long_qt(answer.diagnoses).verdict == CONTRADICTED

    unknown = gem.interpret(dataclasses.replace(record, sex=None))  # the same record, sex not stated
    assert unknown.to_dict()["sex"] is None
    assert _long_qt(unknown.diagnoses).verdict == NOT_CHECKABLE
    assert _long_qt(gem.ask(unknown, "And the QT?").diagnoses).verdict == NOT_CHECKABLE
    parked = gem.ask(result, "And now?")                             # the first conversation, parked meanwhile
    assert _long_qt(parked.diagnoses).verdict == CONTRADICTED
