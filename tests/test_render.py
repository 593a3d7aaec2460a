"""The paper renderer: every lead in its panel, 10 mm/mV, 25 mm/s, gaps for NaN, fixed output."""

import numpy as np
import pytest

from gem_runtime.constants import LEADS
from gem_runtime.render import (
    CLIP_MM, COLUMN_MM, LABEL_OFFSET_MM, LABEL_SIZE_MM, column_x_mm, render_ecg_image,
    row_baseline_mm,
)

FS = 500
PX = 4.0   # px per mm
# The standard 3 x 4 layout, written out here rather than imported: (row, column) per lead.
PANEL = {"I": (0, 0), "aVR": (0, 1), "V1": (0, 2), "V4": (0, 3),
         "II": (1, 0), "aVL": (1, 1), "V2": (1, 2), "V5": (1, 3),
         "III": (2, 0), "aVF": (2, 1), "V3": (2, 2), "V6": (2, 3)}
RHYTHM_ROW = 3


def pixels(signal, **kwargs) -> np.ndarray:
    return np.asarray(render_ecg_image(signal, FS, **kwargs))   # (H, W, 3) uint8


def dark(image: np.ndarray) -> np.ndarray:
    """Black ink (traces, labels, pulses); grid lines are red and never count."""
    return image.max(axis=2) < 100   # (H, W) bool


def px(mm: float) -> int:
    return int(round(mm * PX))


def sine(seconds=10.0, mv=0.8, hz=1.7):
    return mv * np.sin(2 * np.pi * hz * np.arange(int(seconds * FS)) / FS)


def one_lead(name, values):
    signal = np.zeros((12, values.size))
    signal[LEADS.index(name)] = values
    return signal


def dark_row_center(image, x_mm, y_lo_mm, y_hi_mm) -> float:
    """Mean row of the dark pixels in one pixel column between two heights (mm)."""
    column = dark(image)[px(y_lo_mm):px(y_hi_mm), px(x_mm)]
    rows = np.flatnonzero(column)
    assert rows.size, f"no ink at x={x_mm} mm between {y_lo_mm} and {y_hi_mm} mm"
    return px(y_lo_mm) + rows.mean()


def test_output_size_follows_paper_layout():
    # 10 mm calibration margin + 10 s at 25 mm/s + 5 mm; 4 rows of 50 mm + 2 x 5 mm margins
    assert render_ecg_image(np.zeros((12, 5000)), FS).size == (1060, 840)
    image = render_ecg_image(np.zeros((12, 5000)), FS, px_per_mm=3.0)
    assert image.size == (795, 630) and image.mode == "RGB"


@pytest.mark.parametrize("name", LEADS)
def test_each_lead_draws_only_in_its_panel(name):
    zero = pixels(np.zeros((12, 5000)))
    drawn = pixels(one_lead(name, sine()))
    changed = (drawn != zero).any(axis=2)   # (H, W)
    ink = dark(drawn)

    row, col = PANEL[name]
    boxes = [(row_baseline_mm(row), column_x_mm(col), COLUMN_MM)]
    if name == "II":
        boxes.append((row_baseline_mm(RHYTHM_ROW), column_x_mm(0), 4 * COLUMN_MM))
    allowed = np.zeros_like(changed)
    for baseline, x0, width in boxes:
        top, bottom = px(baseline - 10) - 2, px(baseline + 10) + 2   # 0.8 mV fits in +-10 mm
        left, right = px(x0) - 2, px(x0 + width) + 2
        allowed[top:bottom, left:right] = True
        # inside the panel the trace swings 8 mm (0.8 mV) above and below the baseline
        rows = np.flatnonzero(ink[top:bottom, left + 4:right - 4].any(axis=1)) + top
        assert rows.min() <= px(baseline - 7) and rows.max() >= px(baseline + 7), name
    assert not (changed & ~allowed).any(), f"{name} drew outside its panel"


def test_lead_labels_are_printed():
    image = dark(pixels(np.zeros((12, 5000))))
    labels = [(name, *PANEL[name]) for name in PANEL] + [("II", RHYTHM_ROW, 0)]
    for name, row, col in labels:
        x = column_x_mm(col) + LABEL_OFFSET_MM[0]
        y = row_baseline_mm(row) + LABEL_OFFSET_MM[1]
        box = image[px(y - LABEL_SIZE_MM) - 2:px(y) + 2, px(x) - 1:px(x + 2.5 * LABEL_SIZE_MM)]
        assert box.sum() >= 8, f"label {name} missing in row {row} column {col}"
        # the same place one column later and 15 mm lower (no label there) is blank paper
        blank = image[px(y + 15 - LABEL_SIZE_MM):px(y + 15), px(x + 20):px(x + 30)]
        assert not blank.any()


def test_calibration_pulse_is_10_mm_high_and_200_ms_wide():
    image = pixels(np.zeros((12, 5000)))
    for row in range(4):
        baseline = row_baseline_mm(row)
        top = dark_row_center(image, 5.5, baseline - 15, baseline - 5)   # middle of the plateau
        foot = dark_row_center(image, 2.3, baseline - 5, baseline + 5)   # before the rise
        assert foot - top == pytest.approx(10 * PX, abs=0.5)
        plateau = np.flatnonzero(dark(image)[int(round(top)), px(1):px(9.5)]) + px(1)
        assert plateau.max() - plateau.min() == pytest.approx(5 * PX, abs=1)   # 0.2 s at 25 mm/s


@pytest.mark.parametrize("px_per_mm", [4.0, 3.0])
def test_one_millivolt_step_deflects_10_mm(px_per_mm):
    step = np.where(np.arange(5000) < 1.25 * FS, 0.0, 1.0)
    image = dark(pixels(one_lead("I", step), px_per_mm=px_per_mm))
    baseline_px = row_baseline_mm(0) * px_per_mm

    def center(x_mm):
        rows = np.flatnonzero(image[:int(25 * px_per_mm * 2), int(round(x_mm * px_per_mm))])
        return rows.mean()

    before, after = center(column_x_mm(0) + 0.5 * 25), center(column_x_mm(0) + 2.0 * 25)
    assert before == pytest.approx(baseline_px, abs=0.5)
    assert before - after == pytest.approx(10 * px_per_mm, abs=0.5)


def test_rhythm_strip_shows_ten_seconds_of_lead_two():
    step = np.where(np.arange(5000) < 8.0 * FS, 0.0, -0.5)   # only in the last 2 s
    image = pixels(one_lead("II", step))
    baseline = row_baseline_mm(RHYTHM_ROW)
    before = dark_row_center(image, column_x_mm(0) + 7.5 * 25, baseline - 10, baseline + 10)
    after = dark_row_center(image, column_x_mm(0) + 9.5 * 25, baseline - 10, baseline + 10)
    assert after - before == pytest.approx(5 * PX, abs=0.5)


def test_short_record_draws_what_there_is():
    image = dark(pixels(np.zeros((12, 3 * FS))))
    for row in range(3):
        line = image[px(row_baseline_mm(row))]
        assert line[px(column_x_mm(0) + 5):px(column_x_mm(0) + 60)].all()        # 0-2.5 s
        assert line[px(column_x_mm(1) + 5):px(column_x_mm(1) + 12)].all()        # 2.5-3 s
        assert not line[px(column_x_mm(1) + 15):px(column_x_mm(2) - 1)].any()    # 3.1-5 s
        assert not line[px(column_x_mm(2) + 1):px(column_x_mm(3) - 1)].any()     # 5-7.5 s
        assert not line[px(column_x_mm(3) + 1):px(column_x_mm(3) + 60)].any()     # 7.5-10 s


def test_nan_leaves_gaps_and_does_not_crash():
    signal = np.zeros((12, 5000))
    signal[LEADS.index("I"), 250:750] = np.nan    # 0.5-1.5 s
    signal[LEADS.index("V1")] = np.nan
    signal[LEADS.index("V4"), 4000] = np.inf
    image = dark(pixels(signal))
    line = image[px(row_baseline_mm(0))]
    assert line[px(column_x_mm(0) + 2):px(column_x_mm(0) + 12)].all()             # 0.1-0.5 s
    assert not line[px(column_x_mm(0) + 14):px(column_x_mm(0) + 36)].any()       # inside gap
    assert not line[px(column_x_mm(2) + 1):px(column_x_mm(3) - 1)].any()         # V1 all NaN
    assert line[px(column_x_mm(3) + 20):px(column_x_mm(3) + 60)].sum() > px(35)
    all_nan = dark(pixels(np.full((12, 5000), np.nan)))
    assert not all_nan[px(row_baseline_mm(3)), px(15):px(255)].any()


def test_huge_signal_is_clipped_to_its_row_band():
    zero = pixels(np.zeros((12, 5000)))
    changed = (pixels(one_lead("II", 50.0 * np.sign(sine()))) != zero).any(axis=2)
    rows = np.flatnonzero(changed.any(axis=1))
    for row in (1, RHYTHM_ROW):
        assert changed[px(row_baseline_mm(row) - CLIP_MM)].any()   # reaches the clip limit
    band_rows = [r for r in rows if abs(r - px(row_baseline_mm(1))) <= px(CLIP_MM) + 2
                 or abs(r - px(row_baseline_mm(RHYTHM_ROW))) <= px(CLIP_MM) + 2]
    assert len(band_rows) == len(rows)
    assert not changed[px(row_baseline_mm(0)) - 2:px(row_baseline_mm(0)) + 2].any()
    assert not changed[px(row_baseline_mm(2)) - 2:px(row_baseline_mm(2)) + 2].any()


def test_output_is_deterministic_and_cache_is_not_modified():
    rng = np.random.default_rng(0)
    signal = rng.normal(0, 0.5, (12, 5000))
    first = pixels(np.zeros((12, 5000)))
    assert np.array_equal(pixels(signal), pixels(signal))
    assert np.array_equal(pixels(np.zeros((12, 5000))), first)


def test_rejects_signal_of_wrong_shape():
    with pytest.raises(ValueError, match=r"\(11, 5000\)"):
        render_ecg_image(np.zeros((11, 5000)), FS)
    with pytest.raises(ValueError, match="lack"):
        render_ecg_image(np.zeros((12, 5000)), FS, leads=LEADS[:-1] + ("X",))


def test_inking_equals_pillows_masked_paste(ptb, monkeypatch):
    """The traces are blended with numpy on the inked pixels only; Pillow's paste over the whole page
    must give the same bytes (real PTB leads, with a NaN gap and clipped peaks)."""
    from PIL import Image

    from gem_runtime import render
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg

    x, _ = preprocess_ecg(read_ecg(ptb))
    x[2, 100:400] = np.nan
    x[7] *= 8                                             # beyond the band: clipped
    ours = pixels(x)

    def pillow(paper: np.ndarray, ink: Image.Image) -> Image.Image:
        page = Image.fromarray(paper.copy(), "RGB")
        page.paste(render.INK_RGB, mask=ink)
        return page
    monkeypatch.setattr(render, "_ink_on", pillow)
    np.testing.assert_array_equal(ours, pixels(x))
