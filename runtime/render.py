"""Draw a 12-lead ECG as a standard paper printout (numpy + Pillow only).

GEM reads every ECG twice: as a time series and as this image through CLIP. Training images and the
images the runtime draws when the user gives none come from this one function, so the model sees the
same pixels in both. It runs for every interpretation on an ECG cart, so the paper (grid, calibration
pulses, labels, separators) is drawn once per size and cached; a call only draws the traces.

Layout (millimetres; 25 mm/s, 10 mm/mV):

    | 10 cal | 4 columns x 62.5 mm (2.5 s each)                     | 5 |
    row 0:     I     aVR    V1    V4        (column c: seconds [2.5c, 2.5c + 2.5) of its lead)
    row 1:     II    aVL    V2    V5
    row 2:     III   aVF    V3    V6
    row 3:     II rhythm strip, 0-10 s
    rows are 50 mm apart, baselines at 30, 80, 130, 180 mm; paper 265 x 210 mm (1060 x 840 px at 4 px/mm)
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gem_runtime.constants import LEADS

# --- Paper standard -------------------------------------------------------------------------
PAPER_SPEED_MM_S = 25.0   # mm of paper per second
GAIN_MM_MV = 10.0         # mm of deflection per mV
COLUMN_SECONDS = 2.5      # each of the 4 columns shows 2.5 s of its lead
RHYTHM_SECONDS = 10.0     # the rhythm strip shows 10 s

# --- Layout, in mm ------------------------------------------------------------------------------
LAYOUT = (                # rows x columns of the 3 x 4 panel block
    ("I", "aVR", "V1", "V4"),
    ("II", "aVL", "V2", "V5"),
    ("III", "aVF", "V3", "V6"),
)
RHYTHM_LEAD = "II"        # row 3
LEFT_MM = 10.0            # left margin holding the calibration pulses; traces start here
COLUMN_MM = COLUMN_SECONDS * PAPER_SPEED_MM_S      # 62.5
TRACE_MM = RHYTHM_SECONDS * PAPER_SPEED_MM_S       # 250
RIGHT_MM = 5.0
TOP_MM = 5.0
ROW_MM = 50.0             # row pitch; each row's baseline is in the middle of its band
N_ROWS = len(LAYOUT) + 1  # 3 panel rows + rhythm strip
PAPER_MM = (LEFT_MM + TRACE_MM + RIGHT_MM, TOP_MM + N_ROWS * ROW_MM + TOP_MM)   # (265, 210)
CLIP_MM = ROW_MM / 2 + 5.0  # traces are clipped to baseline +-30 mm: 5 mm of overlap into a neighbour
LABEL_OFFSET_MM = (1.5, -6.0)   # label text baseline, from (column start, row baseline)
LABEL_SIZE_MM = 3.5
SEPARATOR_MM = 3.0        # column separators run baseline +-3 mm
# calibration pulse, (x, y) mm from (0, row baseline), y up: 1 mV high, 200 ms wide
CAL_PULSE_MM = ((2.0, 0.0), (3.0, 0.0), (3.0, 10.0), (8.0, 10.0), (8.0, 0.0), (9.0, 0.0))

# --- Colours and strokes --------------------------------------------------------------------
PAPER_RGB = (255, 250, 250)
MINOR_RGB = (248, 200, 200)   # 1 mm lines
MAJOR_RGB = (232, 128, 128)   # 5 mm lines
INK_RGB = (0, 0, 0)
TRACE_MM_WIDTH = 0.375        # 1.5 px at 4 px/mm: a 1 px black core inside a 2 px grey halo
HALO_INK = 110                # halo coverage out of 255 (the core is 255)


def row_baseline_mm(row: int) -> float:
    """Baseline height of a row (0-3), mm from the top of the paper."""
    return TOP_MM + (row + 0.5) * ROW_MM


def column_x_mm(col: int) -> float:
    """Left edge of a column (0-3), mm from the left of the paper."""
    return LEFT_MM + col * COLUMN_MM


def paper_size_px(px_per_mm: float) -> tuple[int, int]:
    """(width, height) of the rendered image in pixels."""
    return round(PAPER_MM[0] * px_per_mm), round(PAPER_MM[1] * px_per_mm)


def render_ecg_image(signal: np.ndarray, fs: int = 500, *, px_per_mm: float = 4.0,
                     leads=LEADS) -> Image.Image:
    """Render a (12, N) mV signal as an RGB paper printout of `paper_size_px(px_per_mm)`.

    `leads` names the rows of `signal`. Records shorter than 10 s are drawn as far as they go;
    NaN and inf samples leave gaps in the trace. Only the first 10 s are drawn.
    """
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 2 or signal.shape[0] != len(leads):
        raise ValueError(f"signal has shape {signal.shape}, expected ({len(leads)}, samples)")
    missing = [name for row in LAYOUT for name in row if name not in leads]
    if missing:
        raise ValueError(f"leads {list(leads)} lack {missing}, needed by the 12-lead layout")
    if fs <= 0 or px_per_mm <= 0:
        raise ValueError(f"fs={fs} and px_per_mm={px_per_mm} must be positive")

    ink = Image.new("L", paper_size_px(px_per_mm), 0)   # trace coverage, inked in black at the end
    draw = ImageDraw.Draw(ink)
    lead_row = {name: i for i, name in enumerate(leads)}
    for row, names in enumerate(LAYOUT):
        for col, name in enumerate(names):
            start = round(col * COLUMN_SECONDS * fs)
            stop = round((col + 1) * COLUMN_SECONDS * fs)
            _draw_trace(draw, signal[lead_row[name], start:stop], fs, px_per_mm,
                        column_x_mm(col), row_baseline_mm(row))
    rhythm = signal[lead_row[RHYTHM_LEAD], :round(RHYTHM_SECONDS * fs)]
    _draw_trace(draw, rhythm, fs, px_per_mm, LEFT_MM, row_baseline_mm(len(LAYOUT)))
    return _ink_on(_paper_pixels(float(px_per_mm)), ink)


def _ink_on(paper: np.ndarray, ink: Image.Image) -> Image.Image:
    """Black ink with coverage `ink` (L) on the paper: `paper.paste(INK_RGB, mask=ink)`, pixel for pixel.

    Pillow blends every pixel of the page (7 ms here); the traces cover ~2% of it, so only those are
    blended, with Pillow's own rounding: out = DIV255(paper * (255 - mask) + ink * mask)."""
    pixels = paper.copy()                                     # (H, W, 3) uint8
    mask = np.asarray(ink).ravel()
    where = np.flatnonzero(mask)
    flat = pixels.reshape(-1, 3)
    m = mask[where].astype(np.int32)[:, None]
    t = flat[where].astype(np.int32) * (255 - m) + np.asarray(INK_RGB, np.int32) * m + 128
    flat[where] = ((t >> 8) + t) >> 8
    return Image.fromarray(pixels, "RGB")


def _draw_trace(draw: ImageDraw.ImageDraw, values: np.ndarray, fs: int, px_per_mm: float,
                x0_mm: float, baseline_mm: float) -> None:
    """Draw one lead segment (mV) from x0, split at non-finite samples, clipped to its row band."""
    if values.size == 0:
        return
    baseline = baseline_mm * px_per_mm
    band = CLIP_MM * px_per_mm
    x = x0_mm * px_per_mm + np.arange(values.size) * (PAPER_SPEED_MM_S * px_per_mm / fs)
    finite = np.isfinite(values)
    mv = values if finite.all() else np.where(finite, values, 0.0)   # non-finite: not drawn below
    y = np.clip(baseline - mv * (GAIN_MM_MV * px_per_mm), baseline - band, baseline + band)
    points = np.rint(np.stack([x, y], axis=1)).astype(np.int64)   # (n, 2) px
    if finite.all():
        _stroke(draw, points, px_per_mm)
        return
    edges = np.flatnonzero(np.diff(np.concatenate([[False], finite, [False]]).astype(np.int8)))
    for start, stop in zip(edges[::2], edges[1::2]):   # runs of finite samples
        _stroke(draw, points[start:stop], px_per_mm)


def _stroke(draw: ImageDraw.ImageDraw, points: np.ndarray, px_per_mm: float) -> None:
    """A polyline of (n, 2) px points with a black core and a grey halo (~1.5 px at 4 px/mm)."""
    if len(points) == 1:
        points = np.repeat(points, 2, axis=0)
    flat = points.ravel().tolist()
    width = TRACE_MM_WIDTH * px_per_mm
    core = max(1, int(width))
    if width > core:   # fractional width: widen with a partial-coverage halo under the core
        draw.line(flat, fill=HALO_INK, width=core + 1)
    draw.line(flat, fill=255, width=core)


@functools.lru_cache(maxsize=4)
def _paper_pixels(px_per_mm: float) -> np.ndarray:
    """The blank page as a read-only (H, W, 3) uint8 array (Pillow -> numpy costs ~3 ms: done once)."""
    pixels = np.array(_paper(px_per_mm))
    pixels.flags.writeable = False
    return pixels


@functools.lru_cache(maxsize=4)
def _paper(px_per_mm: float) -> Image.Image:
    """Grid, calibration pulses, lead labels and column separators: everything but the traces."""
    width, height = paper_size_px(px_per_mm)
    pixels = np.empty((height, width, 3), dtype=np.uint8)   # (H, W, 3)
    pixels[:] = PAPER_RGB
    for step_mm, rgb in ((1, MINOR_RGB), (5, MAJOR_RGB)):   # major lines drawn over minor
        xs = np.rint(np.arange(0, PAPER_MM[0] + 1e-9, step_mm) * px_per_mm).astype(int)
        ys = np.rint(np.arange(0, PAPER_MM[1] + 1e-9, step_mm) * px_per_mm).astype(int)
        pixels[:, xs[xs < width]] = rgb
        pixels[ys[ys < height], :] = rgb
    paper = Image.fromarray(pixels, "RGB")

    ink = Image.new("L", paper.size, 0)
    draw = ImageDraw.Draw(ink)
    font = ImageFont.load_default(size=max(6, round(LABEL_SIZE_MM * px_per_mm)))
    mm = px_per_mm
    for row in range(N_ROWS):
        baseline = row_baseline_mm(row)
        pulse = np.array([(x, baseline - y) for x, y in CAL_PULSE_MM]) * mm
        _stroke(draw, np.rint(pulse).astype(np.int64), mm)
        names = LAYOUT[row] if row < len(LAYOUT) else (RHYTHM_LEAD,)
        for col, name in enumerate(names):
            x = column_x_mm(col)
            draw.text(((x + LABEL_OFFSET_MM[0]) * mm, (baseline + LABEL_OFFSET_MM[1]) * mm),
                      name, fill=255, font=font, anchor="ls")
            if col > 0:
                draw.line([(x * mm, (baseline - SEPARATOR_MM) * mm),
                           (x * mm, (baseline + SEPARATOR_MM) * mm)], fill=255, width=1)
    paper.paste(INK_RGB, mask=ink)
    return paper
