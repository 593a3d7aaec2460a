"""Where a wave starts and ends on a 1-D magnitude curve: threshold walks, and the trapezium-area method
(Vazquez-Seisdedos et al., BioMed Eng OnLine 2011), which places an edge where the wave meets the baseline
instead of where it crosses a threshold above the noise floor."""

from __future__ import annotations

import numpy as np


def outward(mag: np.ndarray, peak: int, threshold: float, step: int, stop: int) -> int:
    """The last index, going from peak in direction step, where mag is still above threshold."""
    i = peak
    while i + step != stop and 0 <= i + step < len(mag) and mag[i + step] >= threshold:
        i += step
    return i


def brief_lobe(slow: np.ndarray, slow_run: np.ndarray, lo: int, hi: int, longest: int) -> int | None:
    """The first moving sample in [lo, hi) if the motion it starts stops again (a slow run) within `longest`
    samples; else None."""
    moving = np.flatnonzero(slow[lo:hi] == 0)
    if not moving.size:
        return None
    first = lo + int(moving[0])
    ends = np.flatnonzero(slow_run[first:first + longest + 1])
    return first if ends.size else None


def wave_end(mag: np.ndarray, peak: int, threshold: float, stop: int, step: int = 1) -> int:
    """Last index after peak (before it, with step -1) still in the wave: before magnitude falls below
    threshold, or the trough where magnitude rises again by more than a threshold and 15% of the peak (the
    next wave; going back, the one before: the previous beat's U wave ahead of a P wave)."""
    rise = max(threshold, 0.15 * mag[peak])
    trough = peak
    for i in range(peak + step, stop, step):
        if mag[i] < threshold:
            return i - step
        if mag[i] < mag[trough]:
            trough = i
        elif mag[i] > mag[trough] + rise:
            return trough
    return trough


def trapezium_end(mag: np.ndarray, peak: int, last: int, smooth: int, reach: int) -> int:
    """The trapezium-area method (Vazquez-Seisdedos et al., BioMed Eng OnLine 2011): from the steepest point
    xm of the descent after the peak, the wave ends at the xi that maximises the area of the trapezium
    (xm, y(xm)), (xi, y(xi)), (xr, y(xi)), (xr, y(xm)), with xr `reach` samples after xm. It finds where the
    descent meets the baseline without a threshold on the noise floor, and never goes past `last`, the
    threshold end."""
    if last - peak < 2:
        return last
    kernel = np.ones(max(smooth, 1)) / max(smooth, 1)
    slope = np.convolve(np.gradient(mag[peak:last + 1]), kernel, mode="same")     # mV / sample
    xm = peak + int(np.argmin(slope))
    xr = min(xm + reach, len(mag) - 1)
    xi = np.arange(xm, min(last, xr) + 1)
    if xi.size == 0:
        return last
    area = (mag[xm] - mag[xi]) * (2 * xr - xi - xm)
    return int(xi[int(np.argmax(area))])


def trapezium_start(mag: np.ndarray, onset: int, peak: int, stop: int, reach: int, smooth: int = 1) -> int:
    """The trapezium-area method mirrored for a wave's start: from the steepest point xm of the rise between
    the threshold `onset` and the `peak`, the wave starts at the xi before the onset that maximises the area of
    the trapezium (xr, y(xm)), (xr, y(xi)), (xi, y(xi)), (xm, y(xm)), xr `reach` samples before xm, not before
    `stop`: where the rise leaves the baseline, which a threshold above the noise floor reaches late."""
    if peak - onset < 2:
        return onset
    kernel = np.ones(max(smooth, 1)) / max(smooth, 1)
    xm = onset + int(np.argmax(np.convolve(np.gradient(mag[onset:peak + 1]), kernel, mode="same")))
    xr = max(xm - reach, stop)
    xi = np.arange(xr, onset + 1)
    if xi.size == 0:
        return onset
    area = (mag[xm] - mag[xi]) * (xm + xi - 2 * xr)
    return int(xi[int(np.argmax(area))])
