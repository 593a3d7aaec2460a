"""A 12-lead ECG simulator with known truth: the training corpus of the `demo` GEM model.

GEM learned from GPT-4o texts grounded in machine measurements; here the measurements are exact
because we make the signal. Every beat is a cardiac dipole d(t) = (x left, y inferior, z anterior)
in mV, built from smooth lobes (P, QRS, ST injury, T), and every lead is a projection of it:

    I = x,  II = x cos 60 + y sin 60,  III = II - I,  aVR = -(I + II)/2,  aVL = I - II/2,  aVF = II - I/2
    Vk = gain_k * (x cos a_k + z sin a_k)     (a_k: the electrode's angle in the horizontal plane)

so the limb-lead identities hold to float precision and the electrical axis is a real property of
the signal. Noise is added to the 8 independent leads (I, II, V1-V6) before the other four are
derived, so the identities survive the noise too.

Truth is measured on the noise-free beat, the way a careful reader would: durations are where the
spatial magnitude of a wave's dipole first and last exceeds 15 uV, axes are the angle of the net
frontal-plane area of the simulated limb leads, and the rate is read off the placed R peaks.
Conditions are produced with gaps between classes (rate, axis, PR, QRS, voltage) so labels are clean.

The package: `conditions` (names, class ranges, consistent sampling), `beat` (the dipole beat model and
its measurement), `rhythm` (RR intervals, beat placement, f-waves, noise), `record` (`simulate_ecg`
and its `EcgTruth`) and `stress` (what real patients and carts add: slow rates, slurred wide QRS, low or
biphasic P, flat or biphasic T, U waves, wander, mains, EMG, cart gains; off unless asked for).
"""

from .beat import DT_MS, PRECORDIAL_ANGLE_DEG, PRECORDIAL_GAIN, SQRT3_2, WAVE_THRESHOLD_MV
from .conditions import (
    AF, AF_MIN_CV, ANT_STE, AVB1, AXIS_ACCEPT, AXIS_TARGET, CONDITIONS, CONDUCTION, EDGE_MS, EXTRA_WEIGHT,
    EXTRAS, HR_ACCEPT, HR_TARGET, INF_STE, LAD, LBBB, LVH, MIN_II_QRS_MV, MIN_QRS_NET_AREA, NSR, PR_ACCEPT,
    PR_NOMINAL, QRS_ACCEPT, QRS_NOMINAL, RAD, RBBB, RHYTHMS, RR_CV_REGULAR, SB, SOKOLOW_LVH,
    SOKOLOW_MAX_OTHER, STACH, STE, sample_conditions, validate_conditions,
)
from .record import EcgTruth, simulate_ecg
from .stress import STRESSORS, Stress

__all__ = [
    "simulate_ecg", "EcgTruth", "Stress", "STRESSORS", "sample_conditions", "validate_conditions",
    "NSR", "SB", "STACH", "AF", "AVB1", "RBBB", "LBBB", "LAD", "RAD", "LVH", "INF_STE", "ANT_STE",
    "CONDITIONS", "RHYTHMS", "EXTRAS", "CONDUCTION", "STE", "EXTRA_WEIGHT",
    "HR_TARGET", "HR_ACCEPT", "AXIS_TARGET", "AXIS_ACCEPT", "QRS_NOMINAL", "QRS_ACCEPT", "PR_NOMINAL",
    "PR_ACCEPT", "SOKOLOW_LVH", "SOKOLOW_MAX_OTHER", "RR_CV_REGULAR", "AF_MIN_CV", "MIN_QRS_NET_AREA",
    "MIN_II_QRS_MV", "EDGE_MS", "DT_MS", "WAVE_THRESHOLD_MV", "SQRT3_2", "PRECORDIAL_ANGLE_DEG",
    "PRECORDIAL_GAIN",
]
