"""ECG tower pretraining: the tower learns to measure before the LLM ever reads its rows.

GEM's ECG tower comes pretrained (ECG-CoCa, contrastive ECG-text on MIMIC-IV-ECG); ours started from random
weights and the demo model learned rates and intervals only through the language loss, which stated a heart rate
within 10% of the truth on 0.615 of held-out ECGs. Here the simulator's truth is exact, so the tower is trained to
regress it directly from its rows (rate, RR variability, PR, QRS, QT, QTc, P/QRS/T axes, Sokolow-Lyon voltage, the
ST level of every lead) and to name the conditions, on records simulated on the fly, half of them with what carts
add (baseline wander, mains hum, muscle noise). Record i of a run is always the same record, so a stopped run
resumes exactly. The result is `ecg_tower.safetensors` under GEM's tensor names, taken by `gem-train fit
--init-tower`.

Global targets alone teach counting: a rate read from the number of beats in 10 s is off by up to one beat (6 bpm
at 60 bpm), and the PR interval, a 20-30 ms difference inside a 100 ms patch, was never learned (first-degree AV
block stayed at its base rate). So each patch row also learns where in it a P wave, a QRS and an R peak begin
(`beat_targets`, weighted by `beat_weight`): the timing the rate and the intervals are made of, in the rows the
LLM reads. A tower pretrained without them can be continued with them (`init_tower`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from gem_runtime.constants import ECG_FS, LEADS
from gem_runtime.errors import CheckpointError
from gem_runtime.preprocess import to_gem_array

from .checkpoint import ECG_PREFIX
from .config import GemConfig
from .corpus import ADC_GAIN, record_rng
from .model import EcgTransformer
from .train import load_state, lr_at, save_state
from .simulate import CONDITIONS, EcgTruth, Stress, simulate_ecg

TOWER_FILE = "ecg_tower.safetensors"
STATE_FILE = "pretrain_state.pt"
VALIDATION_SEED_OFFSET = 7919           # the held-out records: another seed, never trained on
# (name, centre, scale): targets are regressed as (value - centre) / scale.
SCALAR_TARGETS = (("hr_bpm", 85.0, 30.0), ("rr_cv", 0.05, 0.1), ("pr_ms", 180.0, 50.0), ("qrs_ms", 105.0, 30.0),
                  ("qt_ms", 370.0, 60.0), ("qtc_bazett_ms", 420.0, 40.0), ("sokolow_lyon_mv", 2.5, 1.0))
AXIS_TARGETS = ("p_axis_deg", "qrs_axis_deg", "t_axis_deg")      # regressed as (cos, sin)
ST_SCALE_MV = 0.15
N_REGRESSION = len(SCALAR_TARGETS) + 2 * len(AXIS_TARGETS) + len(LEADS)


@dataclass
class PretrainArgs:
    max_steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    noise_share: float = 0.5       # records with wander, mains and muscle noise added
    seed: int = 0
    validation_size: int = 256
    log_every: int = 25
    save_every: int = 100
    beat_weight: float = 1.0       # the per-patch timing targets' share of the loss (0: global targets only)


def truth_targets(truth: EcgTruth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(regression values, their mask: 0 where the truth has none, e.g. PR in AF; condition labels 0/1)."""
    values, mask = [], []
    for name, centre, scale in SCALAR_TARGETS:
        v = getattr(truth, name)
        values.append(0.0 if v is None else (v - centre) / scale)
        mask.append(v is not None)
    for name in AXIS_TARGETS:
        v = getattr(truth, name)
        values += [0.0, 0.0] if v is None else [math.cos(math.radians(v)), math.sin(math.radians(v))]
        mask += [v is not None] * 2
    values += [v / ST_SCALE_MV for v in truth.st_j60_mv]
    mask += [True] * len(LEADS)
    labels = [c in truth.conditions for c in CONDITIONS]
    return np.array(values, np.float32), np.array(mask, np.float32), np.array(labels, np.float32)


BEAT_COLUMNS = ("p onset", "QRS onset", "R peak")    # per patch: present (0/1), then where in the patch (0-1)


def beat_targets(truth: EcgTruth, patch: int, n_patches: int) -> np.ndarray:
    """(n_patches, 6): for each patch of `patch` samples, whether a P onset, a QRS onset and an R peak fall in it,
    each followed by its place in the patch (0-1, the first one's). No P onsets in AF: it has no P waves."""
    out = np.zeros((n_patches, 2 * len(BEAT_COLUMNS)), np.float32)
    pr = None if truth.pr_ms is None else int(round(truth.pr_ms * ECG_FS / 1000))
    events = ([] if pr is None else [q - pr for q in truth.qrs_onsets], truth.qrs_onsets, truth.r_peaks)
    for c, samples in enumerate(events):
        for sample in sorted(samples, reverse=True):             # the first in a patch is written last
            j = sample // patch
            if 0 <= sample and j < n_patches:
                out[j, 2 * c], out[j, 2 * c + 1] = 1.0, (sample - j * patch) / patch
    return out


def acquisition_noise(rng: np.random.Generator) -> Stress:
    """What a cart adds to a record without changing what it measures: some wander, sometimes hum or EMG."""
    return Stress(wander_mv=float(rng.uniform(0.0, 0.5)),
                  mains_mv=float(rng.uniform(0.0, 0.1)) if rng.random() < 0.4 else 0.0,
                  emg_mv=float(rng.uniform(0.0, 0.06)) if rng.random() < 0.4 else 0.0)


def simulate_batch(seed: int, start: int, n: int, noise_share: float, patch: int = 50):
    """Records start..start+n of a run: tower inputs (n, 12, 5000) as the corpus stores them (1 uV steps, through
    the runtime's own preprocessing), regression values, masks, labels and per-patch beat targets."""
    ecgs, values, masks, labels, beats = [], [], [], [], []
    for i in range(start, start + n):
        rng = record_rng(seed, i)
        stress = acquisition_noise(rng) if rng.random() < noise_share else None
        signal, truth = simulate_ecg(rng, stress=stress)
        x, _ = to_gem_array(np.round(signal * ADC_GAIN) / ADC_GAIN, ECG_FS)
        v, m, y = truth_targets(truth)
        ecgs.append(x), values.append(v), masks.append(m), labels.append(y)
        beats.append(beat_targets(truth, patch, x.shape[1] // patch))
    return tuple(torch.from_numpy(np.stack(a)) for a in (ecgs, values, masks, labels, beats))


class TowerWithHeads(nn.Module):
    """GEM's EcgTransformer plus a small head on its rows (CLS and the mean of the patch rows): the head is thrown
    away, the rows GEM's projector reads keep what it needed."""

    def __init__(self, config: GemConfig):
        super().__init__()
        w = config.ecg_width
        self.tower = EcgTransformer(config)
        self.head = nn.Sequential(nn.LayerNorm(2 * w), nn.Linear(2 * w, w), nn.GELU(),
                                  nn.Linear(w, N_REGRESSION + len(CONDITIONS)))
        self.beats = nn.Linear(w, 2 * len(BEAT_COLUMNS))                 # on each patch row

    def forward(self, ecg):
        rows = self.tower(ecg)                                          # (B, 101, W)
        out = self.head(torch.cat([rows[:, 0], rows[:, 1:].mean(1)], dim=-1))
        return out[:, :N_REGRESSION], out[:, N_REGRESSION:], self.beats(rows[:, 1:])


def pretrain_loss(model: TowerWithHeads, batch, beat_weight: float = 1.0) -> torch.Tensor:
    ecg, values, mask, labels, beats = batch
    reg, logits, beat_out = model(ecg)
    regression = (F.smooth_l1_loss(reg, values, reduction="none", beta=0.5) * mask).sum() / mask.sum()
    loss = regression + F.binary_cross_entropy_with_logits(logits, labels)
    if beat_weight:
        present, where = beats[..., 0::2], beats[..., 1::2]
        place = (F.smooth_l1_loss(beat_out[..., 1::2], where, reduction="none", beta=0.1) * present).sum()
        loss = loss + beat_weight * (F.binary_cross_entropy_with_logits(beat_out[..., 0::2], present)
                                     + 10 * place / present.sum().clamp(min=1))
    return loss


@torch.no_grad()
def validate(model: TowerWithHeads, batch) -> dict[str, float]:
    """What the head reads back on held-out records: heart rate and PR error, and condition accuracy."""
    model.eval()
    ecg, values, mask, labels = batch[:4]
    reg, logits = torch.cat([torch.cat(o[:2], 1) for o in (model(e) for e in ecg.split(64))]).split(
        [N_REGRESSION, len(CONDITIONS)], dim=1)
    model.train()
    (_, _, hr_scale), (_, _, pr_scale) = SCALAR_TARGETS[0], SCALAR_TARGETS[2]
    hr_err = (reg[:, 0] - values[:, 0]).abs() * hr_scale
    pr_err = ((reg[:, 2] - values[:, 2]).abs() * pr_scale * mask[:, 2]).sum() / mask[:, 2].sum()
    hr_true = values[:, 0] * hr_scale + SCALAR_TARGETS[0][1]
    per_condition = ((logits > 0).float() == labels).float().mean(0)
    return {"hr_mae_bpm": float(hr_err.mean()), "hr_within_10pct": float((hr_err <= 0.1 * hr_true).float().mean()),
            "pr_mae_ms": float(pr_err), "worst_condition_accuracy": float(per_condition.min()),
            "exact_conditions": float(((logits > 0).float() == labels).all(1).float().mean())}


def pretrain_tower(config: GemConfig, out: Path, args: PretrainArgs, resume: bool = False,
                   init_tower: Path | None = None, log=print) -> Path:
    """Train the tower (resumable from OUT/pretrain_state.pt; from init_tower's weights when starting); write
    OUT/ecg_tower.safetensors; returns it."""
    torch.manual_seed(args.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = TowerWithHeads(config)
    if init_tower is not None:
        _load_into(model.tower, init_tower)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    step, state_file = 0, out / STATE_FILE
    if resume and state_file.exists():
        step = load_state(model, opt, state_file, log)
    patch = config.ecg_patch_size
    held_out = simulate_batch(args.seed + VALIDATION_SEED_OFFSET, 0, args.validation_size, args.noise_share, patch)
    log(f"pretraining the ECG tower of {config.name}: {sum(p.numel() for p in model.tower.parameters()) / 1e6:.2f}M "
        f"params, batch {args.batch_size}, {args.max_steps} steps, threads {torch.get_num_threads()}")
    model.train()
    t0, losses = time.time(), []
    while step < args.max_steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args)
        loss = pretrain_loss(model, simulate_batch(args.seed, step * args.batch_size, args.batch_size,
                                                   args.noise_share, patch), args.beat_weight)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        step += 1
        if step % args.log_every == 0 or step == args.max_steps:
            v = validate(model, held_out)
            log(f"step {step}/{args.max_steps}: loss {np.mean(losses):.4f}, held-out HR MAE {v['hr_mae_bpm']:.2f} bpm "
                f"(within 10% {v['hr_within_10pct']:.3f}), PR MAE {v['pr_mae_ms']:.1f} ms, conditions exact "
                f"{v['exact_conditions']:.3f} (worst {v['worst_condition_accuracy']:.3f}), "
                f"{(time.time() - t0) / args.log_every * 1000:.0f} ms/step")
            losses, t0 = [], time.time()
        if step % args.save_every == 0 or step == args.max_steps:
            save_state(model, opt, step, state_file)
    return save_tower(model.tower, out / TOWER_FILE)


def save_tower(tower: EcgTransformer, path: Path) -> Path:
    tmp = Path(str(path) + ".tmp")
    save_file({ECG_PREFIX + k: v.detach().float().contiguous() for k, v in tower.state_dict().items()}, str(tmp),
              metadata={"format": "pt"})
    tmp.replace(path)
    return path


def load_tower(model, folder: Path) -> None:
    """Put a pretrained tower (OUT of `pretrain_tower`) into a GemForCausalLM; its shape must match."""
    _load_into(model.model.ecg_tower.ecg_tower, folder)


def _load_into(tower: EcgTransformer, folder: Path) -> None:
    path = Path(folder) / TOWER_FILE
    if not path.is_file():
        raise CheckpointError(folder, f"no {TOWER_FILE}: make one with `gem-train pretrain-tower --out {folder}`")
    weights = load_file(str(path))
    state = {k[len(ECG_PREFIX):]: v for k, v in weights.items() if k.startswith(ECG_PREFIX)}
    expected = tower.state_dict()
    wrong = sorted(k for k in expected if k not in state or state[k].shape != expected[k].shape)
    if wrong or len(state) != len(expected):
        raise CheckpointError(path, f"not a tower of this preset ({len(wrong)} tensors missing or of another shape, "
                                    f"e.g. {(wrong or sorted(set(state) - set(expected)))[0]})")
    tower.load_state_dict(state)
