"""Global P, QRS and T edges from the learned wave delineator, formed as cardiologists and carts form them.

The delineator (trained by gem_train.delineator on LUDB's cardiologists' marks, run here by ONNX Runtime; its
input is defined in wave_input.py) labels every sample of every lead none / P / QRS / T. Per beat, each good
lead gives its own wave nearest the beat's R; the beat's global onset is the second earliest over the leads and
its offset the second latest (IEC 60601-2-25's earliest-onset / latest-offset convention, robust to one lead's
stray edge), a wave seen in fewer than MIN_LEADS leads is not one. The record's edges are the medians over the
beats that made the median beat, as offsets from R, so measure.fiducials can put them on the median beat.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np

from .wave_input import MODEL_FILE, WAVE_CLASSES, WAVE_FS, filtered_wave_input, padded_length

P, QRS, T = (WAVE_CLASSES.index(name) for name in ("P", "QRS", "T"))
MIN_RUN_MS = {P: 20.0, QRS: 16.0, T: 40.0}   # a labelled run shorter than this is a flicker, not a wave
QRS_REACH_MS = 120.0      # a lead's QRS whose centre lies this close to the beat's R is the beat's
T_MERGE_MS = 60.0         # two T runs of one lead this close together are one (biphasic) T wave
MIN_LEADS = {P: 3, QRS: 2, T: 2}             # a wave in fewer good leads is not counted
EDGE_RANK = {P: (2, 2), QRS: (2, 3), T: (2, 3)}   # global onset: the k-th earliest over the leads, offset k-th latest
MIN_SHARE = 0.5           # P (or T) found in fewer of the kept beats: the record has none we can measure
MIN_SHARE_ALL = 1 / 3     # P found in fewer of all beats (paced or ectopic ones too): not the rhythm's P wave
PR_SPREAD_MS = 40.0       # PR varying more than this (interquartile range) over the beats: no consistent P


@dataclasses.dataclass
class BeatWaves:
    """One beat's global waves as (onset, offset) sample indices in the input record (None: not found)."""

    r: int
    p: tuple[int, int] | None = None
    qrs: tuple[int, int] | None = None
    t: tuple[int, int] | None = None


@dataclasses.dataclass
class WaveEdges:
    """The record's global edges as offsets (samples at the input rate) from each beat's R; None with its reason
    where the beats that made the median beat do not show the wave."""

    beats: list[BeatWaves]
    qrs: tuple[int, int] | None = None
    p: tuple[int, int] | None = None
    t: tuple[int, int] | None = None          # T onset and end
    reasons: dict[str, str] = dataclasses.field(default_factory=dict)   # "p" | "t" | "qrs" -> why None


class WaveDelineator:
    """Owns the ONNX Runtime session of the delineator (one per process: see `wave_delineator()`)."""

    def __init__(self, path: Path, threads: int = 2):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def labels(self, filtered: np.ndarray, fs: float) -> np.ndarray:
        """(n_leads, N) mV at fs, through wave_input.wave_filter -> (n_leads, M) class per sample at WAVE_FS."""
        inputs = filtered_wave_input(filtered, fs)
        m = inputs.shape[1]
        padded = np.zeros((inputs.shape[0], 1, padded_length(m)), dtype=np.float32)
        padded[:, 0, :m] = inputs
        logits = self._session.run(None, {"leads": padded})[0]           # (n_leads, 4, M')
        return logits[:, :, :m].argmax(axis=1)


@functools.lru_cache(maxsize=1)
def wave_delineator() -> WaveDelineator:
    return WaveDelineator(Path(__file__).with_name(MODEL_FILE))


def _runs(labels: np.ndarray, cls: int) -> np.ndarray:
    """(k, 2) [start, end] (inclusive, at WAVE_FS) of the runs of `cls` at least MIN_RUN_MS long."""
    is_c = np.concatenate([[0], (labels == cls).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(is_c))
    runs = edges.reshape(-1, 2) - np.array([0, 1])
    return runs[(runs[:, 1] - runs[:, 0] + 1) * 1000.0 / WAVE_FS >= MIN_RUN_MS[cls]]


def _kth(values: list[int], k: int, latest: bool) -> int:
    """The k-th earliest (or latest) of values, 1-based; the last one when there are fewer."""
    return sorted(values, reverse=latest)[min(k, len(values)) - 1]


def beat_waves(labels: np.ndarray, r_peaks: np.ndarray, fs: float) -> list[BeatWaves]:
    """Each beat's global waves from the labels of the good leads (n_good, M) at WAVE_FS; R peaks at fs."""
    scale = WAVE_FS / fs
    runs = []
    for lead in labels:                                   # per lead and class: runs (k, 2) and their centres (k,)
        by_class = {c: _runs(lead, c) for c in (P, QRS, T)}
        runs.append({c: (r, r.mean(axis=1)) for c, r in by_class.items()})
    reach = QRS_REACH_MS * WAVE_FS / 1000.0
    rs = np.round(np.asarray(r_peaks) * scale).astype(int)
    out = []
    for k, r in enumerate(rs):
        prev_r = rs[k - 1] if k else r - int(0.7 * WAVE_FS)
        next_r = rs[k + 1] if k + 1 < len(rs) else r + int(1.0 * WAVE_FS)
        found: dict[int, list[tuple[int, int]]] = {P: [], QRS: [], T: []}
        for lead in runs:
            q, centre = lead[QRS]
            near = np.flatnonzero(np.abs(centre - r) <= reach)
            if not near.size:
                continue
            on, off = q[near[np.argmin(np.abs(centre[near] - r))]]
            found[QRS].append((on, off))
            p, p_centre = lead[P]
            before = p[(p_centre > prev_r) & (p[:, 1] < on)]
            if len(before):
                found[P].append(tuple(before[-1]))
            t, t_centre = lead[T]
            after = t[(t[:, 0] > off) & (t_centre < next_r)]
            if len(after):
                t_on, t_off = after[0]
                for nxt_on, nxt_off in after[1:]:
                    if nxt_on - t_off > T_MERGE_MS * WAVE_FS / 1000.0:
                        break
                    t_off = nxt_off
                found[T].append((t_on, t_off))
        beat = BeatWaves(int(r_peaks[k]))
        for cls, name in ((P, "p"), (QRS, "qrs"), (T, "t")):
            if len(found[cls]) >= MIN_LEADS[cls]:
                on = _kth([a for a, _ in found[cls]], EDGE_RANK[cls][0], latest=False)
                off = _kth([b for _, b in found[cls]], EDGE_RANK[cls][1], latest=True)
                setattr(beat, name, (int(round(on / scale)), int(round(off / scale))))
        out.append(beat)
    return out


def wave_edges(filtered: np.ndarray, fs: float, r_peaks: np.ndarray, kept: np.ndarray, good: list[int]
               ) -> WaveEdges:
    """The record's global edges (see the module docstring) from the good leads of `filtered` (12, N) mV at fs,
    the record through wave_input.wave_filter."""
    labels = wave_delineator().labels(filtered[good], fs)
    beats = beat_waves(labels, r_peaks, fs)
    edges = WaveEdges(beats)
    used = [b for b, keep in zip(beats, kept) if keep and b.qrs is not None]
    if not used:
        edges.reasons["qrs"] = "no QRS found by the wave delineator in the beats that made the median beat"
        return edges
    edges.qrs = _median_from_r(used, "qrs")
    with_p = [b for b in used if b.p is not None]
    every = [b for b in beats if b.qrs is not None]
    every_p = sum(b.p is not None for b in every)
    if len(with_p) < MIN_SHARE * len(used):
        edges.reasons["p"] = f"no P wave in most beats (found in {len(with_p)} of {len(used)})"
    elif every_p < MIN_SHARE_ALL * len(every):
        # e.g. a ventricular-paced AF: the few beats alike enough to make the median beat show an atrial wave
        edges.reasons["p"] = f"no P wave in a third of all beats (found in {every_p} of {len(every)})"
    else:
        pr = np.array([b.qrs[0] - b.p[0] for b in with_p]) * 1000.0 / fs
        spread = float(np.subtract(*np.percentile(pr, [75, 25])))
        if spread > PR_SPREAD_MS:
            edges.reasons["p"] = f"no consistent P wave (PR varies by {spread:.0f} ms between beats)"
        else:
            edges.p = _median_from_r(with_p, "p")
    with_t = [b for b in used if b.t is not None]
    if len(with_t) < MIN_SHARE * len(used):
        edges.reasons["t"] = f"no T wave end in most beats (found in {len(with_t)} of {len(used)})"
    else:
        edges.t = _median_from_r(with_t, "t")
    if edges.p is None:                       # a record without a consistent P wave gives no beat one either
        for b in beats:
            b.p = None
    return edges


def _median_from_r(beats: list[BeatWaves], wave: str) -> tuple[int, int]:
    """The median onset and offset of `wave` ("p", "qrs", "t") over `beats`, as offsets from each beat's R."""
    edges = np.array([getattr(b, wave) for b in beats]) - np.array([b.r for b in beats])[:, None]   # (n, 2)
    return int(np.median(edges[:, 0])), int(np.median(edges[:, 1]))
