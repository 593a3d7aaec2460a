"""R peaks on MIT-BIH 100 (2 leads, 30 min) against the cardiologists' annotations, detected as the runtime sees
ECGs: 10 s windows (issue 12). Same code as `python -m benchmarks.rpeaks_mitbih`."""
import itertools

import numpy as np
import pytest

from benchmarks.rpeaks_mitbih import TARGET, detect_windowed, load_annotated, score, window_plan
from gem_runtime.measure.detection import REFRACTORY_MS


@pytest.fixture(scope="module")
def mitbih100(physionet):
    return load_annotated(physionet / "100")


def test_windowed_r_peaks_match_the_annotations(mitbih100):
    rec = mitbih100
    assert rec.signal.shape == (2, 650000) and rec.fs == 360
    assert rec.beats.size == 2273                      # beats only: the '+' rhythm annotation is not one
    detected = detect_windowed(rec.signal, rec.fs)
    s = score(detected, rec.beats, rec.fs)
    assert s.sensitivity >= TARGET and s.ppv >= TARGET, (s.tp, s.fn, s.fp)
    assert abs(s.tp - rec.beats.size) <= 0.005 * rec.beats.size
    assert np.percentile(np.abs(s.errors_ms), 95) < 50.0
    # a beat at a seam is counted once: no two merged peaks closer than half a refractory period
    assert np.diff(detected).min() > REFRACTORY_MS / 2 * rec.fs / 1000


@pytest.mark.parametrize("n", [3000, 3600, 3601, 650000])
def test_window_cores_tile_the_record(n):
    plan = window_plan(n, 360.0)
    assert plan[0][0] == 0 and plan[-1][1] == n and plan[0][2] == 0 and plan[-1][3] == n
    assert all(stop - start == min(n, 3600) for start, stop, _, _ in plan)
    assert all(a[3] == b[2] and b[0] < a[1] for a, b in itertools.pairwise(plan))       # cores meet, windows overlap
    assert all(start <= lo < hi <= stop for start, stop, lo, hi in plan)


def test_score_matches_one_to_one_within_tolerance():
    fs = 360.0
    beats = np.array([1000, 2000, 3000])
    s = score(np.array([1010, 1020, 2100, 3000]), beats, fs)   # 2100 is 278 ms late: a miss and a false one
    assert (s.tp, s.fn, s.fp) == (2, 1, 2)
    assert s.missed.tolist() == [1] and sorted(s.false.tolist()) == [1, 2]
