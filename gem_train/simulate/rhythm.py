"""From one beat to a 10 s record: RR intervals, beat placement, rendering, f-waves and noise."""

from __future__ import annotations

from typing import Callable

import numpy as np

from gem_runtime.constants import ECG_FS, ECG_SAMPLES

from .beat import DT_MS, SQRT3_2, Beat, limb_leads, project_leads
from .conditions import AF, EDGE_MS


def draw_rr(rng, rhythm: str, n_beats: int, qt_ms: float, rr_mean: float) -> np.ndarray:
    """RR intervals in ms: sinus has slow respiratory modulation, AF is irregularly irregular."""
    if rhythm == AF:
        rr = rr_mean * np.exp(rng.uniform(0.16, 0.3) * rng.standard_normal(n_beats))
        return np.clip(rr, max(0.55 * rr_mean, qt_ms + 50.0), 1.8 * rr_mean)
    k = np.arange(n_beats)
    resp = rng.uniform(0.008, 0.03) * np.sin(2 * np.pi * k * rr_mean / rng.uniform(3500, 5500)
                                             + rng.uniform(0, 2 * np.pi))
    return rr_mean * (1.0 + resp + rng.uniform(0.003, 0.01) * rng.standard_normal(n_beats))


def place_beats(rng, rr_ms: np.ndarray, r_peak: int) -> np.ndarray | None:
    """Template start samples of beats covering the record; no R peak within EDGE_MS of either end,
    so every beat in the truth is whole enough for a detector to find (None if no shift works)."""
    starts = np.round((np.cumsum(rr_ms) - rr_ms[0]) / DT_MS).astype(np.int64)
    edge = int(EDGE_MS / DT_MS)
    for _ in range(20):
        r_peaks = starts + r_peak + int(round(-rng.uniform(1.0, 2.0) * rr_ms[0] / DT_MS))
        near_start = (r_peaks > -edge) & (r_peaks < edge)
        near_end = (r_peaks > ECG_SAMPLES - edge) & (r_peaks < ECG_SAMPLES + edge)
        if not (near_start.any() or near_end.any()):
            starts_out = r_peaks - r_peak
            return starts_out[starts_out < ECG_SAMPLES]
    return None


def render_beats(rng, beat: Beat, tpl_starts: np.ndarray, rhythm: str, v_dirs: np.ndarray,
            stress_noise: Callable[[np.ndarray], np.ndarray] | None = None, gain: float = 1.0) -> np.ndarray:
    """Place the beats (with small amplitude variation), add f-waves and noise (and a stress's noise, and its
    cart gain); (12, 5000) float32."""
    waves = beat.p + beat.qrs + beat.st + beat.t + (0.0 if beat.u is None else beat.u)
    template = project_leads(waves, v_dirs)                                     # (12, L)
    independent = np.r_[0, 1, 6:12]                                       # I, II, V1..V6
    template = template[independent]                                     # (8, L)
    n_tpl = template.shape[1]
    pad = n_tpl
    acc = np.zeros((8, ECG_SAMPLES + 2 * pad))
    starts = tpl_starts + pad
    resp_phase = rng.uniform(0, 2 * np.pi)
    scales = 1.0 + 0.04 * np.sin(np.arange(len(starts)) * 0.9 + resp_phase) \
        + 0.015 * rng.standard_normal(len(starts))
    for start, scale in zip(starts, scales):
        if start + n_tpl <= 0 or start >= acc.shape[1]:
            continue
        lo = max(start, 0)
        acc[:, lo:start + n_tpl] += scale * template[:, lo - start:]
    sig = acc[:, pad:pad + ECG_SAMPLES]                                   # (8, 5000)

    t = np.arange(ECG_SAMPLES) / ECG_FS
    if rhythm == AF:
        sig = sig + _f_waves(rng, t, v_dirs)
    sig = sig + _noise(rng, t)
    if stress_noise is not None:
        sig = sig + stress_noise(t)
    full = np.vstack([limb_leads(sig[0], sig[1]), sig[2:]])
    return (full * gain).astype(np.float32) if gain != 1.0 else full.astype(np.float32)


def _f_waves(rng, t: np.ndarray, v_dirs: np.ndarray) -> np.ndarray:
    """Fibrillatory atrial dipole (4-9 Hz, drifting rate and direction), projected on I, II, V1..V6."""
    inst_hz = rng.uniform(5.0, 7.5) + 0.8 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t
                                                   + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(inst_hz) / ECG_FS
    envelope = 1.0 + 0.35 * np.sin(2 * np.pi * rng.uniform(0.15, 0.5) * t + rng.uniform(0, 2 * np.pi))
    weights = np.array([0.3, 0.6, 0.9]) * rng.uniform(0.06, 0.14)
    dipole = np.stack([w * envelope * (np.sin(phase + rng.uniform(0, 2 * np.pi))
                                       + 0.3 * np.sin(2 * phase + rng.uniform(0, 2 * np.pi)))
                       for w in weights], axis=1)                        # (N, 3)
    lead_i = dipole[:, 0]
    lead_ii = 0.5 * dipole[:, 0] + SQRT3_2 * dipole[:, 1]
    return np.vstack([lead_i, lead_ii, (dipole @ v_dirs.T).T])


def _noise(rng, t: np.ndarray) -> np.ndarray:
    """Baseline wander (respiration + slow drift), muscle noise and sometimes mains hum. (8, N)"""
    n_leads = 8
    resp = np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * t + rng.uniform(0, 2 * np.pi))
    drift = np.sin(2 * np.pi * rng.uniform(0.05, 0.12) * t + rng.uniform(0, 2 * np.pi))
    wander = (rng.uniform(0.0, 0.08, (n_leads, 1)) * resp
              + rng.uniform(0.0, 0.2, (n_leads, 1)) * drift
              + rng.uniform(-0.05, 0.05, (n_leads, 1)))
    muscle = rng.uniform(0.01, 0.04) * rng.standard_normal((n_leads, t.size), dtype=np.float32)
    noise = wander + muscle
    if rng.random() < 0.3:
        hz = 50.0 if rng.random() < 0.5 else 60.0
        hum = np.sin(2 * np.pi * hz * t[None, :] + rng.uniform(0, 2 * np.pi, (n_leads, 1)))
        noise = noise + rng.uniform(0.005, 0.03, (n_leads, 1)) * hum
    return noise
