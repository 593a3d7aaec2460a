"""Train the runtime's wave delineator: a small 1-D U-Net that labels every sample of one lead none / P / QRS / T,
trained on LUDB's cardiologists' marks (one half of the shared records only) and exported to ONNX for
`gem_runtime.measure.waves`.

    gem-train delineator --ludb ../shared/data/real/ludb --out runtime/measure/wave_delineator.onnx  (scripts/train_delineator.sh)

Why learned: the hand-tuned thresholds (measure.fiducials) reach a wave late and leave it early, lose P waves and
place T ends early on records they were not tuned on (benchmarks/delineation.md). The network sees each lead as
the cardiologists did and the runtime forms global edges from all leads as they do (second earliest onset,
second latest offset). Its input is defined once, in `gem_runtime.measure.wave_input`.

Training records: LUDB numbers mod 4 == 1 (the `tune` half of benchmarks/delineation.py); the other half and
every cart file are only ever evaluated. The first and last beats of a LUDB record are often unmarked: the loss
covers only the span from a lead's first marked wave to its last.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gem_runtime.measure.wave_input import WAVE_CLASSES, WAVE_FS, wave_input

LUDB_LEADS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")
CLASS_OF_PEAK = {"p": 1, "N": 2, "t": 3}
STRETCHES = (0.75, 0.85, 0.94, 1.0, 1.06, 1.12)    # time-stretch variants of every record (rates and durations vary)
SIM_T_MS = 40.0                              # simulated T waves: only their last 40 ms are labelled T, and
SIM_ST_MS = 20.0                             # ... the first 20 ms after the QRS none (the rest of the ST-T: no loss)
CROP = 1024                                  # samples at WAVE_FS (4 s)


def training_records(ludb: Path) -> list[int]:
    """The tune half: LUDB numbers mod 4 == 1 that the shared copy holds."""
    return sorted(int(p.stem) for p in ludb.glob("*.hea") if int(p.stem) % 4 == 1)


def lead_labels(path_base: Path, lead: str, n: int) -> tuple[np.ndarray, int, int]:
    """(labels (n,) int64 at the record's 500 Hz, first marked sample, last marked sample) of one lead."""
    import wfdb

    ann = wfdb.rdann(str(path_base), lead)
    sym, at = ann.symbol, ann.sample
    labels = np.zeros(n, dtype=np.int64)
    first, last = n, 0
    for i, s in enumerate(sym):
        if s in CLASS_OF_PEAK and 0 < i < len(sym) - 1 and sym[i - 1] == "(" and sym[i + 1] == ")":
            on, off = int(at[i - 1]), int(at[i + 1])
            labels[on:off + 1] = CLASS_OF_PEAK[s]
            first, last = min(first, on), max(last, off)
    return labels, first, last


def record_examples(ludb: Path, record: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input (M,), target (M,) with -1 where unmarked) for each lead of one record, in every STRETCHES variant,
    with noise of the kinds carts record added before the runtime's own filtering."""
    import wfdb
    from scipy.signal import resample_poly

    signal, fields = wfdb.rdsamp(str(ludb / str(record)))
    x = np.nan_to_num(signal.T.astype(np.float64))                       # (12, 5000) mV
    fs = float(fields["fs"])
    out = []
    labels = [lead_labels(ludb / str(record), lead, x.shape[1]) for lead in LUDB_LEADS]
    for stretch in STRETCHES:
        t = np.arange(x.shape[1]) / fs
        noisy = x + rng.normal(0, rng.uniform(0.0, 0.03), x.shape)         # white (amplifier) noise
        noisy += rng.uniform(0, 0.3) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 6))
        noisy += rng.uniform(0, 0.1) * np.sin(2 * np.pi * rng.choice([50.0, 60.0]) * t)
        up = int(round(stretch * 100))
        stretched = resample_poly(noisy, up, 100, axis=-1) if up != 100 else noisy
        inputs = wave_input(stretched, fs)                                 # (12, M) at WAVE_FS
        m = inputs.shape[1]
        for lead, (lab, first, last) in enumerate(labels):
            if first >= last:
                continue
            where = np.minimum((np.arange(m) * fs / WAVE_FS / stretch).astype(np.int64), len(lab) - 1)
            target = lab[where].copy()
            inside = (where >= first) & (where <= last)
            target[~inside] = -1
            out.append((inputs[lead], target))
    return out


def simulated_examples(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Leads of n simulated records labelled from the simulator's truth (gem_train.simulate: where the dipole
    leaves zero), for the rates and rhythms LUDB has few of (sinus tachycardia with the P wave on the T wave,
    first-degree AV block, atrial fibrillation's f-waves as background; every other one with one of the simulator's
    stressors: a slurred QRS, low or biphasic P, flat or biphasic T, U waves, noise, cart gains). The truth has no T onset: from SIM_ST_MS
    after the QRS end to the last SIM_T_MS of the T wave the loss is not taken."""
    from gem_train.simulate import SB, STRESSORS, simulate_ecg

    rng = np.random.default_rng(seed)
    out = []
    stresses = list(STRESSORS.values())
    for i in range(n):
        # every other record less kind (slurred QRS, low or biphasic P, flat or biphasic T, U waves, noise, gains)
        stress = stresses[(i // 2) % len(stresses)] if i % 2 else None
        signal, truth = simulate_ecg(rng, [SB] if stress is not None and stress.slow_rate else None, stress=stress)
        fs = 500.0
        lab = np.zeros(signal.shape[1], dtype=np.int64)
        ms = fs / 1000.0
        for q in truth.qrs_onsets:
            if truth.pr_ms is not None:
                p_on = q - int(round(truth.pr_ms * ms))
                lab[max(p_on, 0):max(p_on + int(round(truth.p_ms * ms)), 0)] = 1
            q_off = q + int(round(truth.qrs_ms * ms)) - 1
            t_end = q + int(round(truth.qt_ms * ms)) - 1
            lab[max(q, 0):max(q_off + 1, 0)] = 2
            lab[max(q_off + 1 + int(SIM_ST_MS * ms), 0):max(t_end - int(SIM_T_MS * ms), 0)] = -1
            lab[max(t_end - int(SIM_T_MS * ms), 0):max(t_end + 1, 0)] = 3
        first = truth.qrs_onsets[0] - (int(truth.pr_ms * ms) if truth.pr_ms is not None else 0)
        last = truth.qrs_onsets[-1] + int(round(truth.qt_ms * ms))
        lab[:max(first, 0)] = -1
        lab[last:] = -1
        inputs = wave_input(signal, fs)
        m = inputs.shape[1]
        where = np.minimum((np.arange(m) * fs / WAVE_FS).astype(np.int64), len(lab) - 1)
        out.extend((inputs[lead], lab[where]) for lead in range(inputs.shape[0]))
    return out


class Block(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 9):
        super().__init__(nn.Conv1d(c_in, c_out, k, padding=k // 2), nn.BatchNorm1d(c_out), nn.ReLU(),
                         nn.Conv1d(c_out, c_out, k, padding=k // 2), nn.BatchNorm1d(c_out), nn.ReLU())


class WaveUNet(nn.Module):
    """(batch, 1, L) -> (batch, 4, L) logits; L a multiple of 16."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 32, 32, 48)):
        super().__init__()
        self.down = nn.ModuleList()
        c = 1
        for w in widths[:-1]:
            self.down.append(Block(c, w))
            c = w
        self.bottom = Block(c, widths[-1])
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        c = widths[-1]
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose1d(c, w, 2, stride=2))
            self.merge.append(Block(2 * w, w))
            c = w
        self.head = nn.Conv1d(c, len(WAVE_CLASSES), 1)

    def forward(self, x):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool1d(x, 2)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def batches(examples, batch: int, rng: np.random.Generator):
    """Random CROP-long crops, random polarity and gain, a little extra noise."""
    while True:
        xs, ys = [], []
        for i in rng.integers(0, len(examples), batch):
            x, y = examples[i]
            start = int(rng.integers(0, max(len(x) - CROP, 0) + 1))
            xc, yc = x[start:start + CROP], y[start:start + CROP]
            if len(xc) < CROP:
                xc = np.pad(xc, (0, CROP - len(xc)))
                yc = np.pad(yc, (0, CROP - len(yc)), constant_values=-1)
            xc = xc * rng.choice([-1.0, 1.0]) * rng.uniform(0.7, 1.3) + rng.normal(0, rng.uniform(0, 0.03), CROP)
            xs.append(xc)
            ys.append(yc)
        yield (torch.tensor(np.stack(xs)[:, None], dtype=torch.float32),
               torch.tensor(np.stack(ys), dtype=torch.int64))


def sample_f1(model: WaveUNet, examples) -> dict[str, float]:
    """Per-class F1 over every marked sample of `examples` (whole leads, no crops)."""
    model.eval()
    tp = np.zeros(4)
    fp = np.zeros(4)
    fn = np.zeros(4)
    with torch.no_grad():
        for x, y in examples:
            n = -(-len(x) // 16) * 16
            logits = model(torch.tensor(np.pad(x, (0, n - len(x)))[None, None]))[0, :, :len(x)]
            pred = logits.argmax(0).numpy()
            keep = y >= 0
            for c in range(1, 4):
                tp[c] += ((pred == c) & (y == c) & keep).sum()
                fp[c] += ((pred == c) & (y != c) & keep).sum()
                fn[c] += ((pred != c) & (y == c) & keep).sum()
    model.train()
    return {WAVE_CLASSES[c]: round(2 * tp[c] / max(2 * tp[c] + fp[c] + fn[c], 1), 4) for c in range(1, 4)}


def train(ludb: Path, out: Path, steps: int, seed: int, validate: int, simulated: int,
          max_records: int | None = None, batch: int = 32, log=print) -> Path:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    records = training_records(ludb)[:max_records]
    val_records = records[:validate]
    fit_records = records[validate:]
    start = time.time()
    fit = [e for r in fit_records for e in record_examples(ludb, r, rng)]
    fit += simulated_examples(simulated, seed)
    val = [e for r in val_records for e in record_examples(ludb, r, np.random.default_rng(seed + 1))[24:36]]
    log(f"{len(fit_records)} LUDB records and {simulated} simulated ({len(fit)} leads), {len(val_records)} for "
        f"validation; data {time.time() - start:.0f} s")
    model = WaveUNet()
    log(f"{sum(p.numel() for p in model.parameters())} parameters")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    loss_fn = nn.CrossEntropyLoss(ignore_index=-1)
    feed = batches(fit, batch, rng)
    running = None
    for step in range(1, steps + 1):
        x, y = next(feed)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % 200 == 0 or step == steps:
            f1 = sample_f1(model, val) if val else {}
            log(f"step {step}/{steps} loss {running:.4f} val F1 {f1} ({time.time() - start:.0f} s)")
    export(model, out)
    log(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    return out


def export(model: WaveUNet, out: Path) -> None:
    model.eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(12, 1, 2512)
    torch.onnx.export(model, (dummy,), str(out), input_names=["leads"], output_names=["logits"],
                      dynamic_axes={"leads": {0: "n", 2: "length"}, "logits": {0: "n", 2: "length"}},
                      opset_version=17, dynamo=False)
