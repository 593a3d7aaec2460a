"""Our Sierra waveform decoder (readers/xli.py) against sierraecg, the reference decoder (the `dev` extra):
the real Philips file lead for lead, an uncompressed document, XLI payloads made here by our own LZW encoder
(limb leads at the int16 limits included), corrupt payloads refused in one line, and the read time."""
import base64
import re
import statistics
import time
import warnings

import numpy as np
import pytest

from clirun import run_without

from gem_runtime.readers import read_ecg
from gem_runtime.readers.xli import MAX_CODE, XliError, decode_waveforms, decode_xli, lzw_decode
from malformed import assert_files_refused

LABELS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.fixture(scope="module")
def sierraecg():
    return pytest.importorskip("sierraecg", reason="sierraecg (the dev extra) is the oracle")


@pytest.fixture(scope="module")
def philips(shared_data):
    return shared_data / "vendor" / "philips_129DYPRG.xml"


@pytest.fixture(scope="module")
def real(philips) -> str:
    return philips.read_text()


@pytest.fixture(scope="module")
def reference(sierraecg, philips) -> np.ndarray:
    """sierraecg's leads of the real file, (12, 5500) int16."""
    return np.stack([lead.samples for lead in sierraecg.read_file(str(philips)).leads])


def _payload(text: str) -> str:
    return re.search(r"<parsedwaveforms[^>]*>(.*?)</parsedwaveforms>", text, re.S).group(1)


def _document(real: str, payload: bytes | str, **attributes) -> str:
    """The real file with its <parsedwaveforms> content replaced (bytes are base64-encoded here) and attributes
    set (None removes one)."""
    start = real.index("<parsedwaveforms")
    tag_end, end = real.index(">", start), real.index("</parsedwaveforms>")
    tag = real[start:tag_end]
    for name, value in attributes.items():
        tag = re.sub(rf'\s{name}="[^"]*"', "", tag) + ("" if value is None else f' {name}="{value}"')
    text = base64.b64encode(payload).decode() if isinstance(payload, bytes) else payload
    return real[:start] + tag + ">" + text + real[end:]


# --- an XLI encoder, written from the format's description in readers/xli.py --------------------------------

def lzw_encode(data: bytes, end_code: bool = False) -> bytes:
    """LZW with 10-bit codes, the table growing to MAX_CODE, codes packed most significant bit first."""
    table = {bytes([b]): b for b in range(256)}
    codes, word = [], b""
    for b in data:
        longer = word + bytes([b])
        if longer in table:
            word = longer
            continue
        codes.append(table[word])
        if len(table) <= MAX_CODE:
            table[longer] = len(table)
        word = bytes([b])
    codes += [table[word]] if word else []
    return pack(codes + ([MAX_CODE + 1] if end_code else []))


def pack(codes: list[int]) -> bytes:
    bits = "".join(f"{c:010b}" for c in codes)
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big") if bits else b""


def chunk(payload: bytes, first: int = 0) -> bytes:
    """A chunk header (size, the unused int16 1, the first delta) and its LZW payload."""
    return len(payload).to_bytes(4, "little") + (1).to_bytes(2, "little") + first.to_bytes(2, "little", signed=True) \
        + payload


def xli_chunk(x: np.ndarray, end_code: bool = False, odd: bool = False) -> bytes:
    """One lead's chunk: the deltas that make `x` (N >= 3) through x[i] = 2 x[i-1] - x[i-2] - e[i]."""
    x = x.astype(np.int64)
    e = 2 * x[1:-1] - x[:-2] - x[2:]                   # e[i] for i = 2 .. N-1
    d = np.concatenate([x[:2], e[1:] + 64, [0x0100 if odd else 64]])     # the last delta is never used
    assert np.all(np.abs(np.append(d, e[0]) + 0.5) < 2 ** 15), "the test signal's 2nd differences must fit int16"
    d = d.astype(np.int16).view(np.uint16)
    shuffled = (d >> 8).astype(np.uint8).tobytes() + (d & 0xFF).astype(np.uint8).tobytes()
    if odd:                                            # a trailing zero low byte may be left out
        shuffled = shuffled[:-1]
    return chunk(lzw_encode(shuffled, end_code), int(e[0]))


def smooth_leads(n_leads: int, n: int, seed: int, peak: int = 3000) -> np.ndarray:
    """(n_leads, n) int16 random walks whose 2nd differences stay small (what ECG deltas look like)."""
    rng = np.random.default_rng(seed)
    slope = np.cumsum(rng.integers(-40, 41, (n_leads, n)), axis=1)
    x = np.cumsum(slope, axis=1)
    x = x - x.mean(axis=1, keepdims=True)
    scale = np.maximum(np.abs(x).max(axis=1, keepdims=True) / peak, 1)
    return np.round(x / scale).astype(np.int16)


def extreme_leads(n: int = 600) -> np.ndarray:
    """I and II ramping to +32767 and -32768 together (their sums wrap), residuals at the limits."""
    ramp = np.clip(np.concatenate([np.arange(0, 70000, 400), np.arange(70000, -70000, -400),
                                   np.arange(-70000, 1, 400)]), -32768, 32767)[:n]
    ramp = np.pad(ramp, (0, n - len(ramp)))
    leads = smooth_leads(12, n, seed=7)
    leads[0], leads[1] = ramp, np.clip(ramp + 5, -32768, 32767)
    leads[2], leads[3] = np.clip(-ramp - 100, -32768, 32767), ramp
    leads[4], leads[5] = np.full(n, -32768), np.clip(-ramp - 3, -32768, 32767)
    return leads.astype(np.int16)


# --- (a) the real file ----------------------------------------------------------------------------------------

def test_the_real_file_decodes_as_sierraecg_decodes_it(real, reference):
    ours = decode_waveforms(_payload(real), "XLI", LABELS, 5500)
    assert ours.shape == reference.shape == (12, 5500) and ours.dtype == np.int16
    for lead, (a, b) in enumerate(zip(ours, reference)):
        assert np.array_equal(a, b), f"lead {LABELS[lead]}: {np.flatnonzero(a != b)[:5]}"


def test_read_ecg_gives_sierraecgs_samples_in_mv(philips, reference):
    r = read_ecg(philips)
    np.testing.assert_array_equal(r.signal, (reference * (5 / 1000)).astype(np.float32))   # 5 uV a unit


# --- (b) uncompressed -----------------------------------------------------------------------------------------

def test_an_uncompressed_document_reads_back_as_the_xli_one(real, philips, tmp_path):
    stored = decode_waveforms(_payload(real), "XLI", LABELS, 5500)          # the leads, as recorded
    path = tmp_path / "plain.xml"
    path.write_text(_document(real, stored.astype("<i2").tobytes(), compressflag="False", compressmethod=None))
    assert np.array_equal(decode_waveforms(_payload(path.read_text()), "Uncompressed", LABELS, 5500), stored)
    back, source = read_ecg(path), read_ecg(philips)
    assert np.array_equal(back.signal, source.signal) and back.device == source.device


# --- (c) XLI payloads made here ---------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"a", b"\x00" * 3000, bytes(range(256)) * 9,
                                  np.random.default_rng(1).integers(0, 256, 6000, np.uint8).tobytes(),
                                  np.random.default_rng(2).integers(0, 4, 20000, np.uint8).tobytes()],
                         ids=["empty", "one", "run", "ramp", "random", "four-symbols"])
@pytest.mark.parametrize("end_code", [False, True])
def test_lzw_decodes_what_our_encoder_wrote_as_sierraecg_does(sierraecg, data, end_code):
    packed = lzw_encode(data, end_code)
    decoder, theirs = sierraecg.lzw.LzwDecoder(packed, bits=10), bytearray()
    while (b := decoder.read()) != -1:
        theirs.append(b)
    assert lzw_decode(packed, 10**7) == bytes(theirs) == data


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_made_xli_chunks_decode_as_sierraecg_decodes_them(sierraecg, seed):
    n = [3, 500, 2500][seed]                          # 2500 samples: the LZW table fills
    leads = smooth_leads(12, n, seed, peak=[30, 3000, 30000][seed])
    data = b"".join(xli_chunk(x, end_code=k % 2 == 1, odd=k % 3 == 0) for k, x in enumerate(leads))
    ours, theirs = decode_xli(data, 12), sierraecg.xli.xli_decode(data, LABELS)
    assert len(theirs) == 12
    for k in range(12):
        assert ours[k].dtype == np.int16 and np.array_equal(ours[k], theirs[k]) and np.array_equal(ours[k], leads[k])


@pytest.mark.parametrize("leads", [smooth_leads(12, 1200, 5), extreme_leads()], ids=["smooth", "int16-limits"])
def test_made_documents_read_as_sierraecg_reads_them(sierraecg, real, tmp_path, leads):
    """The whole document, limb-lead reconstruction included (its int16 sums wrap at the limits)."""
    path = tmp_path / "made.xml"
    n = leads.shape[1]
    path.write_text(_document(real, b"".join(map(xli_chunk, leads)), durationperchannel=2 * n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)           # sierraecg's int16 scalars overflow here
        theirs = np.stack([lead.samples for lead in sierraecg.read_file(str(path)).leads])
    ours = decode_waveforms(_payload(path.read_text()), "XLI", LABELS, n)
    assert np.array_equal(ours, theirs)
    assert not np.array_equal(ours[2:6], leads[2:6])          # the residuals were rebuilt into leads


# --- (d) corrupt payloads, one line each ------------------------------------------------------------------------

def test_corrupt_payloads_are_refused_in_one_line(real, tmp_path):
    text = "".join(_payload(real).split())
    data = base64.b64decode(text)
    offset = 0
    for _ in range(11):
        offset += 8 + int.from_bytes(data[offset:offset + 4], "little")
    eleven = data[:offset]                             # the real file holds 16 chunks, 12 leads are named
    past_end = (10**6).to_bytes(4, "little") + data[4:]
    bad_code = chunk(pack([65, 900, 66]))              # 900 is past the 256 codes the table holds then
    first_code = chunk(pack([1022, 65]))
    lengths = b"".join(xli_chunk(x) for x in smooth_leads(11, 600, 3)) + xli_chunk(smooth_leads(1, 601, 4)[0])
    wild = chunk(xli_chunk(np.arange(600, dtype=np.int16) * 50)[8:], 30000)   # a first delta that sends x past int16
    cut = len(text) // 2 // 4 * 4 + 1                  # one character past a 4-character group
    assert_files_refused(tmp_path, {
        "b64_cut.xml": (_document(real, text[:cut]), "not base64"),
        "b64_junk.xml": (_document(real, text[:100] + "*" + text[100:]), "not base64"),
        "cut.xml": (_document(real, data[:len(data) // 2]), "chunk size"),
        "header_cut.xml": (_document(real, eleven + data[offset:offset + 5]), "chunk header needs 8 bytes, 5 remain"),
        "past_end.xml": (_document(real, past_end), "XLI lead 1 (byte 0): chunk size 1000000 bytes, "
                                                    f"{len(data) - 8} remain"),
        "code.xml": (_document(real, bad_code + data), "LZW code 900 (code 1) is past the table's 256 entries"),
        "first_code.xml": (_document(real, first_code + data), "the first LZW code is 1022, not a byte"),
        "eleven.xml": (_document(real, eleven), "holds 11 lead chunks, 12 leads named"),
        "seventeen.xml": (_document(real, data, leadlabels=" ".join(LABELS + list("ABCDE")), numberofleads=17),
                          "holds 16 lead chunks, 17 leads named"),
        "lengths.xml": (_document(real, lengths), "XLI leads of different lengths [600, 601] samples"),
        "wild.xml": (_document(real, wild + data), "out of the int16 range"),
        "empty.xml": (_document(real, ""), "the waveform payload is empty"),
        "three.xml": (_document(real, data, leadlabels="I II V1", numberofleads=3), "3 leads named; XLI stores"),
        "method.xml": (_document(real, data, compressmethod="ZIP"), "compression 'ZIP' is not supported"),
        "plain.xml": (_document(real, data, dataencoding="Plain"), "waveform encoding 'Plain' is not supported"),
        "short.xml": (_document(real, bytes(1000), compressmethod=None), "holds 1000 bytes; 12 leads x 5500 samples"),
        "nolabels.xml": (_document(real, data, leadlabels="I II", numberofleads="x"), "numberofleads is 'x'"),
        "version.xml": (real.replace("<documentversion>1.03<", "<documentversion>1.05<"),
                        "Sierra XML document SierraECG 1.05 is not supported"),
        "nodoc.xml": (re.sub(r"<documentinfo>.*?</documentinfo>", "", real, flags=re.S), "lacks documentinfo"),
        "nowaves.xml": (re.sub(r"<parsedwaveforms.*?</parsedwaveforms>", "", real, flags=re.S),
                        "lacks waveforms/parsedwaveforms"),
        "noduration.xml": (_document(real, data, durationperchannel=None),
                           "Sierra XML lacks parsedwaveforms durationperchannel"),
    })


def test_garbage_and_flipped_bytes_raise_only_xli_errors():
    rng = np.random.default_rng(0)
    made = bytearray(b"".join(map(xli_chunk, smooth_leads(12, 300, 6))))
    for k in range(300):
        if k % 2:                                      # a made payload with 1-3 bytes changed
            data = bytearray(made)
            for at in rng.integers(0, len(data), int(rng.integers(1, 4))):
                data[at] = int(rng.integers(0, 256))
        else:                                          # random bytes, half of them behind a fitting header
            data = rng.integers(0, 256, int(rng.integers(9, 400)), np.uint8).tobytes()
            data = (len(data) - 8).to_bytes(4, "little") + data[4:] if k % 4 else data
        try:
            out = decode_waveforms(base64.b64encode(bytes(data)).decode(), "XLI", LABELS, 300)
        except XliError as e:
            assert "\n" not in str(e)
        else:
            assert out.shape[0] == 12 and out.dtype == np.int16


def test_a_chunk_that_would_decode_too_far_is_refused_before_it_does(real, monkeypatch):
    from gem_runtime.readers import xli

    zeros = lzw_encode(bytes(200_000))                 # 5.5 kB of codes, 200 kB out
    assert lzw_decode(zeros, 200_000) == bytes(200_000)
    with pytest.raises(XliError, match="LZW data decodes to 200000 bytes, more than 100000"):
        lzw_decode(zeros, 100_000)
    monkeypatch.setattr(xli, "MAX_CHUNK_BYTES", 1000)
    with pytest.raises(XliError, match=r"XLI lead 1 \(byte 0\): chunk size 1518 bytes, more than"):
        decode_waveforms(_payload(real), "XLI", LABELS, 5500)


# --- the runtime needs neither sierraecg nor a second parse; (e) the read time ----------------------------------

def test_the_runtime_reads_philips_without_sierraecg_and_says_when_defusedxml_is_missing(philips):
    p = run_without("sierraecg", ["measure", philips])
    assert p.returncode == 0 and "device: Philips HeartstartMRx" in p.stdout, p.stderr
    p = run_without("defusedxml", ["measure", philips])
    assert p.returncode == 2 and p.stderr.strip().endswith("needs defusedxml (pip install defusedxml)"), p.stderr


def test_read_time(philips):
    read_ecg(philips)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        read_ecg(philips)
        times.append(time.perf_counter() - t0)
    assert statistics.median(times) < 0.2          # ~8 ms here (benchmarks/read_formats.md); sierraecg took ~140
