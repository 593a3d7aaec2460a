"""The median beats on ECG paper with their fiducial marks (`gem-run --save-image`, `gem-run measure
--save-image`): the picture a reader checks the measured intervals on. Beside `render.py`, which draws the
10 s page the model sees."""

from __future__ import annotations

import numpy as np

from .constants import LEADS
from .measure import FIELD, Measurements

DRAW_LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
DRAW_SPEED_MM_S = 50.0           # median beats are read at double speed
DRAW_GAIN_MM_MV = 10.0
DRAW_PX_PER_MM = 4.0
DRAW_ROW_MM = 40.0
DRAW_HEADER_KEYS = ("hr_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_bazett_ms", "qrs_axis_deg")
DRAW_MARKERS = {"p_on": ((0, 120, 220), "P on"), "p_off": ((0, 120, 220), "P off"),
                "qrs_on": ((0, 150, 60), "QRS on"), "qrs_off": ((0, 150, 60), "QRS off"),
                "t_end": ((200, 100, 0), "T end")}


def draw_median_beats(meas: Measurements, out_png) -> None:
    """Write a PNG of the 12 median beats on ECG paper (50 mm/s, 10 mm/mV) with the global fiducials
    as vertical lines, so a reader can check where each interval was measured."""
    from PIL import Image, ImageDraw

    if meas.median_beats is None:
        raise ValueError("no median beats to draw: " + meas.quality.reasons_text())
    beats, fs, fid = meas.median_beats, meas.fs, meas.fiducials
    r = fid["r"]
    lo = max(0, r - int(0.40 * fs) if fid.get("p_on") is None else fid["p_on"] - int(0.08 * fs))
    hi = min(beats.shape[1], (fid["t_end"] if fid.get("t_end") is not None else r + int(0.45 * fs))
             + int(0.10 * fs))
    px = DRAW_PX_PER_MM
    panel_mm = (hi - lo) / fs * DRAW_SPEED_MM_S + 6.0
    header_mm = 14.0
    width, height = int(4 * panel_mm * px), int((header_mm + 3 * DRAW_ROW_MM) * px)
    img = Image.new("RGB", (width, height), (255, 250, 250))
    draw = ImageDraw.Draw(img)
    for mm in range(int(width / px) + 1):                                   # 1 mm and 5 mm grid
        draw.line([(mm * px, header_mm * px), (mm * px, height)], fill=(232, 128, 128) if mm % 5 == 0
                  else (248, 210, 210))
    for mm in range(int(header_mm), int(height / px) + 1):
        draw.line([(0, mm * px), (width, mm * px)], fill=(232, 128, 128) if (mm - header_mm) % 5 == 0
                  else (248, 210, 210))
    d = meas.to_dict()
    text = "  ".join(f"{FIELD[k].short} {d[k]:g}" for k in DRAW_HEADER_KEYS if d[k] is not None)
    draw.text((4, 4), "median beats, 50 mm/s, 10 mm/mV   " + text, fill=(0, 0, 0))
    legend_x = 4
    for colour, label in {v[1][:1]: v for v in DRAW_MARKERS.values()}.values():
        draw.text((legend_x, 4 + 12 * 1.5), label.split()[0] + " on/off" if label[0] != "T" else label,
                  fill=colour)
        legend_x += 90
    t = (np.arange(lo, hi) - lo) / fs * DRAW_SPEED_MM_S + 3.0                   # mm within a panel
    for row, names in enumerate(DRAW_LAYOUT):
        base_mm = header_mm + (row + 0.55) * DRAW_ROW_MM
        for col, name in enumerate(names):
            x0 = col * panel_mm
            for key, (colour, _) in DRAW_MARKERS.items():
                if fid.get(key) is not None and lo <= fid[key] < hi:
                    xm = (x0 + (fid[key] - lo) / fs * DRAW_SPEED_MM_S + 3.0) * px
                    draw.line([(xm, (base_mm - 17) * px), (xm, (base_mm + 15) * px)], fill=colour, width=1)
            y = np.clip(beats[LEADS.index(name), lo:hi] * DRAW_GAIN_MM_MV, -17, 17)
            pts = [((x0 + tx) * px, (base_mm - ty) * px) for tx, ty in zip(t, y)]
            draw.line(pts, fill=(0, 0, 0), width=2)
            draw.text(((x0 + 1.5) * px, (base_mm - 16) * px), name, fill=(0, 0, 0))
            draw.line([(x0 * px, header_mm * px), (x0 * px, height)], fill=(120, 120, 120))
    img.save(out_png)
