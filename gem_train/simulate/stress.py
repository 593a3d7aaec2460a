"""What real patients and carts add that the default simulator leaves out: a `Stress` makes a record less kind.

The default corpus (the demo model's training data) is left exactly as it was: a stress draws from its own
generator and only when given. Morphology stressors change the beat and so its truth (measured as always, on the
noise-free dipole; a U wave is not part of the T wave, so QT ends before it); acquisition stressors add to the
signal after the beats are placed and leave the truth alone.

    signal, truth = simulate_ecg(rng, [SB], stress=STRESSORS["slow rate"])
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .beat import DT_MS, Beat, lobes, unit_vector

SLOW_HR = (32.0, 42.0)            # bpm: "slow rate" sinus bradycardia, long RR and TP
SLOW_HR_ACCEPT = (30.0, 44.0)
IVCD_QRS_ACCEPT = (100.0, 150.0)  # ms: a wide QRS without a bundle branch block's pattern
U_TAIL_MS = 260.0                 # the beat template grows by this to hold a U wave


@dataclasses.dataclass(frozen=True)
class Stress:
    """Each field off by default; STRESSORS names one stressor each."""

    slow_rate: bool = False       # sinus bradycardia at 32-42 bpm
    ivcd: bool = False            # a slow, low terminal QRS lobe: wide slurred QRS without a bundle branch block
    low_p: bool = False           # P waves of 30-60 uV
    biphasic_p: bool = False      # P with an anterior then a posterior lobe (+/- in V1)
    flat_t: bool = False          # T waves of 50-100 uV
    biphasic_t: bool = False      # T with a lobe then an opposite one
    u_wave: bool = False          # a U wave after the T (QT ends before it)
    wander_mv: float = 0.0        # baseline wander, 0.1-0.5 Hz, up to this per lead
    mains_mv: float = 0.0         # 50 or 60 Hz hum
    emg_mv: float = 0.0           # bursts of muscle noise (broadband)
    gain: float = 1.0             # a cart's amplitude scale: the whole record times this

    @property
    def changes_beat(self) -> bool:
        return self.ivcd or self.low_p or self.biphasic_p or self.flat_t or self.biphasic_t or self.u_wave


STRESSORS = {
    "slow rate": Stress(slow_rate=True),
    "IVCD (slurred wide QRS)": Stress(ivcd=True),
    "low-amplitude P": Stress(low_p=True),
    "biphasic P": Stress(biphasic_p=True),
    "flat T": Stress(flat_t=True),
    "biphasic T": Stress(biphasic_t=True),
    "U wave": Stress(u_wave=True),
    "baseline wander 0.5 mV": Stress(wander_mv=0.5),
    "mains hum 0.1 mV": Stress(mains_mv=0.1),
    "EMG noise 0.08 mV": Stress(emg_mv=0.08),
    "cart gain x0.5": Stress(gain=0.5),
    "cart gain x2": Stress(gain=2.0),
}


def stress_beat(rng: np.random.Generator, beat: Beat, stress: Stress) -> Beat:
    """The beat with the stress's morphology: waves rescaled, split or added (a U wave in `beat.u`)."""
    p, qrs, t = beat.p, beat.qrs, beat.t
    t_ms = beat.t_ms
    if stress.u_wave:                                           # room after the T for the U wave
        extra = int(U_TAIL_MS / DT_MS)
        t_ms = np.concatenate([t_ms, t_ms[-1] + DT_MS * np.arange(1, extra + 1)])
        pad = lambda a: np.vstack([a, np.zeros((extra, 3))])   # noqa: E731
        p, qrs, t, beat = pad(p), pad(qrs), pad(t), dataclasses.replace(beat, st=pad(beat.st))
    if stress.ivcd:
        q_on, q_off = _support(qrs, t_ms)
        late = qrs[(t_ms >= q_on + 0.6 * (q_off - q_on)) & (t_ms <= q_off)].sum(axis=0)
        slur = lobes(t_ms, [q_off - rng.uniform(15.0, 25.0)], [rng.uniform(40.0, 55.0)], [1.0])[0]
        qrs = qrs + slur[:, None] * rng.uniform(0.12, 0.22) * -unit_vector(late)
    if stress.low_p or stress.biphasic_p:
        p_on, p_off = _support(p, t_ms) if np.abs(p).max() > 0 else (None, None)
        if p_on is not None:
            peak = np.linalg.norm(p, axis=1).max()
            direction = unit_vector(p.sum(axis=0))
            if stress.biphasic_p:
                dur = p_off - p_on
                first = lobes(t_ms, [p_on], [0.6 * dur], [1.0])[0][:, None] * unit_vector(direction + [0, 0, 0.9])
                second = lobes(t_ms, [p_on + 0.4 * dur], [0.6 * dur], [1.0])[0][:, None] * unit_vector([0.5, 0.3, -0.9])
                p = (first + second) * peak
            if stress.low_p:
                p = p * rng.uniform(0.03, 0.06) / np.linalg.norm(p, axis=1).max()
    if stress.biphasic_t:
        t_on, t_off = _support(t, t_ms)
        dur, direction = t_off - t_on, unit_vector(t.sum(axis=0))
        amp = np.linalg.norm(t, axis=1).max()
        t = (lobes(t_ms, [t_on], [0.55 * dur], [1.0])[0][:, None] * amp * direction
             - lobes(t_ms, [t_on + 0.45 * dur], [0.55 * dur], [1.0])[0][:, None] * 0.7 * amp * direction)
    if stress.flat_t:
        t = t * rng.uniform(0.05, 0.10) / np.linalg.norm(t, axis=1).max()
    u = None
    if stress.u_wave:
        _, t_end = _support(beat.st + t, t_ms)
        lobe = lobes(t_ms, [t_end + rng.uniform(30.0, 60.0)], [rng.uniform(140.0, 180.0)], [1.2])[0]
        u = lobe[:, None] * rng.uniform(0.05, 0.1) * unit_vector(t.sum(axis=0) if np.abs(t).max() else [0.5, 0.5, 0.5])
    return dataclasses.replace(beat, t_ms=t_ms, p=p, qrs=qrs, t=t, u=u)


def stress_noise(rng: np.random.Generator, t: np.ndarray, stress: Stress, n_leads: int = 8) -> np.ndarray:
    """The stress's acquisition noise on the 8 independent leads. (8, N) mV"""
    noise = np.zeros((n_leads, t.size))
    if stress.wander_mv:
        for _ in range(3):
            hz = rng.uniform(0.1, 0.5)
            noise += (stress.wander_mv / 3) * rng.uniform(0.3, 1.0, (n_leads, 1)) * np.sin(
                2 * np.pi * hz * t[None, :] + rng.uniform(0, 2 * np.pi, (n_leads, 1)))
    if stress.mains_mv:
        hz = 50.0 if rng.random() < 0.5 else 60.0
        noise += stress.mains_mv * rng.uniform(0.5, 1.0, (n_leads, 1)) * np.sin(
            2 * np.pi * hz * t[None, :] + rng.uniform(0, 2 * np.pi, (n_leads, 1)))
    if stress.emg_mv:
        white = rng.standard_normal((n_leads, t.size + 1))
        broadband = np.diff(white, axis=1) / np.sqrt(2.0)       # muscle noise: mostly above the ECG's band
        bursts = np.zeros(t.size)
        for _ in range(rng.integers(2, 5)):
            start = rng.uniform(0, t[-1])
            bursts += np.exp(-0.5 * ((t - start) / rng.uniform(0.3, 0.8)) ** 2)
        noise += stress.emg_mv * np.clip(bursts, 0.2, 1.0)[None, :] * broadband
    return noise


def _support(wave: np.ndarray, t_ms: np.ndarray) -> tuple[float, float]:
    """First and last time (ms) where a wave's dipole is not zero."""
    on = np.flatnonzero(np.linalg.norm(wave, axis=1) > 1e-9)
    return float(t_ms[on[0]]), float(t_ms[on[-1]])

