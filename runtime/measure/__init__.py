"""Deterministic ECG measurements, made before any interpretation (as GE 12SL, Philips DXL, Glasgow do).

GEM's value is grounding: each diagnosis tied to measurable evidence. This module measures the signal
itself, with numpy/scipy only, so the runtime can put the numbers beside the model's text and flag any
number in the text that disagrees (see `grounding.py`).

    meas = measure_ecg(x, fs=500)        # x: (12, N) mV in LEADS order
    meas.to_dict()                       # {"hr_bpm": 72.1, "pr_ms": 164.0, ..., "quality": {...}}

Pipeline:
0. no usable signal (every lead flat, saturated or identical to another, as a cart writes one common-mode trace into
   the leads whose electrodes are off; fewer than 2 of the 8 independent leads left; or no repeating QRS: noise):
   every value None, the reason "no usable signal (...)", flag "no_signal"; `Measurements.require_signal()` raises
   NoUsableSignalError for a caller that must refuse (gem-run measure);
1. lead check (flat / off / saturated), band-pass spatial energy over all good leads, adaptive threshold with a
   refractory period and search-back -> R peaks; RR series and its regularity;
2. beats aligned by cross-correlation, ectopic beats (unlike the dominant QRS) left out, one median beat
   per lead;
3. GLOBAL fiducials from the spatial magnitude of the median beats (a vectorcardiogram from the 8
   independent leads, Kors' regression), levels taken from the PR segment (the last quiet window before
   the QRS): each wave is found where the magnitude, searched outward from the wave's peak, passes a
   threshold above the noise floor; the P and QRS onsets then go back to where the upstroke leaves the
   baseline (the mirrored trapezium-area point), and the T end is the trapezium-area point of the T
   descent (Vazquez-Seisdedos et al. 2011), which a drifting TP level or a slow return does not drag
   out. QRS offset ends where the spatial velocity drops below the QRS's and the isoelectric window's
   own motion (so ST elevation and f-waves do not stretch the QRS), goes on through a brief return to
   baseline when a fast lobe follows (RBBB's R'), and through a brief slow lobe after a pause (terminal
   slurring, IVCD); a P wave must look alike and sit at the same place in every beat (AF gives none),
   and its onset is measured from the level just before it;
   the median beats are taken after a 0.5-40 Hz band-pass and 50/60 Hz notches;
4. a confidence check on each P and T edge: a T wave too flat, not returning to the baseline or running
   into where an unfound P should be, a P onset not found or a P merged with the wave before it give
   None with the reason;
5. the global edges as cardiologists and carts measure intervals (earliest onset to latest offset over the leads),
   from the learned wave delineator (`waves.py`; a 1-D U-Net run by ONNX Runtime, trained by gem_train.delineator
   on LUDB's cardiologists' per-lead marks): every sample of every good lead labelled none / P / QRS / T, per beat
   the k-th earliest onset and k-th latest offset over the leads, the record's edges the medians over the kept
   beats; a P wave only where most beats show one at a steady PR. Where it finds no QRS, the threshold-based edges
   of steps 3-4, calibrated to the same convention (fiducials.EDGE_SHIFT_MS; benchmarks/delineation.md has the
   figures of both on LUDB and on the cart files);
6. intervals from the fiducials, frontal axes from the net areas of I and aVF.

A measurement that cannot be made is None with its reason in `quality.reasons`, never a guess. The picture
of the median beats is drawn by `gem_runtime.render_median`.
"""

from .beats import nanmedian0
from .fields import FIELD, FIELDS, MEASUREMENT_KEYS, MeasurementField
from .measurements import Measurements, measure_ecg
from .quality import Quality

__all__ = ["FIELD", "FIELDS", "MEASUREMENT_KEYS", "MeasurementField", "Measurements", "Quality", "measure_ecg",
           "nanmedian0"]
