"""Typical atrial flutter made from a real sinus record's own beats: the test material for the flutter-wave
measurement (`gem_runtime.measure.atrial`), since the two flutters of the shared records are both held out.

`flutter_from_beats` keeps a sinus record's QRS-T complexes (`real_af.qrs_t_complexes`: from just before the QRS onset
to just past the T end, so its P waves are gone), lays the atrial rhythm down first, a sawtooth at one
cycle length for the whole record (wandering +-2% over seconds), and puts a complex a fixed FR interval after the
nadir of every k-th flutter wave (k = 2, 3 or 4 throughout, or varying beat by beat), at that wave's actual time:
the conducted wave is locked to its QRS, as on a real flutter, so a fixed conduction shows the same wave before
every QRS. Typical (counter-clockwise) flutter's F waves are negative in II, III
and aVF, a slow descent then a steep return with no isoelectric baseline, and upright, discrete in V1; I is
small. The limb leads are built from I and II as a cart derives them. The training half's records only."""
from __future__ import annotations

import numpy as np

from gem_runtime.constants import ECG_FS, ECG_SAMPLES

from .real_af import LEADS12, qrs_t_complexes

CYCLE_MS = (180.0, 250.0)              # atrial cycle length: 240-330 /min
FR_MS = (180.0, 280.0)                 # flutter wave (its nadir) to the conducted QRS onset
MIN_GAP_MS = 30.0                      # a complex must end this long before the next one starts (at the nominal
                                       # cycle; the 2% wander takes at most ~10 ms of it)
F_MV = {"II": (0.08, 0.25), "I": (0.0, 0.05), "V1": (0.05, 0.2), "V2": (0.03, 0.1), "other": (0.0, 0.05)}
CONDUCTIONS = ("2:1", "3:1", "4:1", "variable")


def flutter_from_beats(x: np.ndarray, rng: np.random.Generator, conduction: str | None = None) -> np.ndarray | None:
    """(12, 5000) mV at 500 Hz (GEM's lead order) -> (12, 5000) of the same complexes in typical atrial flutter
    at `conduction` (one of CONDUCTIONS; drawn when None); None where the record's complexes are too long for that
    conduction at any cycle length in CYCLE_MS, or fewer than 3 are found."""
    segments = qrs_t_complexes(x)
    if segments is None:
        return None
    ms = ECG_FS / 1000.0
    conduction = conduction or CONDUCTIONS[int(rng.integers(len(CONDUCTIONS)))]
    ratios = {"2:1": (2,), "3:1": (3,), "4:1": (4,), "variable": (2, 3, 4)}[conduction]
    longest = max(s.shape[1] for s in segments) + MIN_GAP_MS * ms
    shortest_cycle = longest / min(ratios)                              # samples: the shortest RR must hold one
    lo_cycle = max(CYCLE_MS[0] * ms, shortest_cycle)
    if lo_cycle > CYCLE_MS[1] * ms:
        return None
    cycle = rng.uniform(lo_cycle, CYCLE_MS[1] * ms)
    fr = round(rng.uniform(*FR_MS) * ms)                                # samples
    phase, fall = _atrial_phase(cycle, rng), rng.uniform(0.6, 0.8)
    nadirs = np.searchsorted(phase, np.arange(np.ceil(phase[0]), phase[-1]) + fall)   # each F wave's lowest point
    out = np.zeros((12, ECG_SAMPLES), np.float32)
    wave = int(rng.integers(4))                                         # the first conducted flutter wave
    prev_end, prev_val = 0, None
    while wave < len(nadirs) and int(nadirs[wave]) + fr < ECG_SAMPLES:
        pos = int(nadirs[wave]) + fr
        seg = segments[int(rng.integers(len(segments)))]
        n = min(seg.shape[1], ECG_SAMPLES - pos)
        left = prev_val if prev_val is not None else seg[:, 0]
        gap = pos - prev_end
        if gap > 0:                                                     # a straight bridge where the P wave was
            w = np.linspace(0.0, 1.0, gap, endpoint=False)[None, :]
            out[:, prev_end:pos] = (1 - w) * left[:, None] + w * seg[:, 0][:, None]
        out[:, pos:pos + n] = seg[:, :n]
        prev_end, prev_val = pos + n, seg[:, n - 1]
        wave += int(ratios[int(rng.integers(len(ratios)))])
    if prev_end < ECG_SAMPLES:
        out[:, prev_end:] = prev_val[:, None]
    return out + _flutter_waves(phase, fall, rng)


def _sawtooth(phase: np.ndarray, fall: float) -> np.ndarray:
    """One F wave per unit of phase: 0 at the start, a slow descent to -1 over `fall` of the cycle, a steep return."""
    p = np.mod(phase, 1.0)
    return np.where(p < fall, -p / fall, -1.0 + (p - fall) / (1.0 - fall))


def _atrial_phase(cycle: float, rng: np.random.Generator) -> np.ndarray:
    """(5000,) flutter waves elapsed at each sample, one per `cycle` samples; the cycle wanders by a few ms (+-2%)
    over seconds, as a re-entrant circuit's does."""
    t = np.arange(ECG_SAMPLES, dtype=np.float64)
    wander = 1.0 + 0.02 * np.sin(2 * np.pi * t / (ECG_FS * rng.uniform(2.0, 6.0)) + rng.uniform(0, 2 * np.pi))
    return np.cumsum(1.0 / (cycle * wander)) + rng.uniform(0, 1)


def _flutter_waves(phase: np.ndarray, fall: float, rng: np.random.Generator) -> np.ndarray:
    """(12, 5000) F waves at `phase`: II's sawtooth (I a small share of it, the other limb leads derived), V1's
    upright discrete waves, smaller further across the chest."""
    t = np.arange(ECG_SAMPLES, dtype=np.float64)
    breathing = 1.0 + 0.15 * np.sin(2 * np.pi * t / (ECG_FS * rng.uniform(3.0, 5.0)) + rng.uniform(0, 2 * np.pi))
    kernel = np.exp(-0.5 * (np.arange(-10, 11) / 3.0) ** 2)
    kernel /= kernel.sum()
    saw = np.convolve(_sawtooth(phase, fall) + 0.5, kernel, mode="same")        # zero mean, corners rounded

    def amp(lead: str) -> float:
        return float(rng.uniform(*F_MV.get(lead, F_MV["other"])))

    saw = saw * breathing
    ii = amp("II") * saw
    i = amp("I") * saw * rng.choice([-1.0, 1.0])
    limb = [i, ii, ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2]
    v1_wave = np.convolve(np.maximum(-_sawtooth(phase + 0.5, fall) - 0.6, 0.0), kernel, mode="same")
    v1_wave = v1_wave / max(v1_wave.max(), 1e-9) - v1_wave.mean() / max(v1_wave.max(), 1e-9)
    chest = []
    for k, lead in enumerate(LEADS12[6:]):
        a = amp("V1") if lead == "V1" else amp("V2") if lead == "V2" else amp("other")
        chest.append(a * (v1_wave if k < 2 else -saw * 0.5))
    return np.stack(limb + chest).astype(np.float32)
