"""Training: GEM's instruction tuning (and a projector-only `align` stage), small enough to read in one sitting.

AdamW, linear warmup + cosine decay, gradient accumulation, resumable (trainer_state.pt holds fp32 weights,
optimizer and step; read back with weights_only=True). The final checkpoint is the HF layout of checkpoint.py.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gem_runtime.constants import LEADS
from gem_runtime.errors import ConfigError
from gem_runtime.prompt import training_ids

from .checkpoint import save_checkpoint
from .corpus import read_records
from .config import GemConfig
from .model import GemForCausalLM
from .tokenizer import SpTokenizer


@dataclass
class TrainArgs:
    stage: str = "instruct"        # align: projectors only; instruct: LLM + projectors (+ encoders if small)
    max_steps: int = 1000
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.0      # GEM: 0
    seed: int = 0
    log_every: int = 10
    save_every: int = 200
    tower_lr_scale: float = 1.0    # the ECG tower's lr as a share of lr (a pretrained tower moves less)
    oversample: tuple = ()         # ((condition, share of each batch drawn from records with it), ...)
    mix: tuple = ()                # ((corpus folder, share of each batch drawn from it), ...)


# ----------------------------------------------------------------------------------------------- data
def load_ecg_array(path: Path) -> np.ndarray:
    """A corpus record -> the tower input (12, 5000) float32, through the runtime's own reader + preprocessing."""
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg

    x, _ = preprocess_ecg(read_ecg(path))
    return x


def load_pixels(path: Path, size: int) -> np.ndarray:
    from gem_runtime.image import load_image, preprocess_image

    return preprocess_image(load_image(path), size)


class GroundedDataset:
    """ECG-Grounding-format records.json + ECGs + images, preprocessed once and cached next to the data."""

    def __init__(self, data_dir: Path, config: GemConfig, tokenizer: SpTokenizer, limit: int | None = None):
        data_dir = Path(data_dir)
        self.records = read_records(data_dir, limit)
        n, size = len(self.records), config.vision_image_size
        cache = data_dir / f"cache_{n}_{size}.npz"
        if cache.exists():
            z = np.load(cache)
            self.ecgs, self.images = z["ecgs"], z["images"]
        else:
            from tqdm import tqdm

            self.ecgs = np.zeros((n, len(LEADS), config.ecg_samples), np.float16)
            self.images = np.zeros((n, 3, size, size), np.float16)
            for i, r in enumerate(tqdm(self.records, desc="preprocess", unit="rec")):
                self.ecgs[i] = load_ecg_array(data_dir / (r["ecg"] + ".hea"))
                self.images[i] = load_pixels(data_dir / r["image"], size)
            np.savez(cache, ecgs=self.ecgs, images=self.images)
        self.examples = []
        for r in self.records:
            human, gpt = r["conversations"][0]["value"], r["conversations"][1]["value"]
            self.examples.append(training_ids(human, gpt, tokenizer, tokenizer.eos_id))

    def __len__(self):
        return len(self.records)

    def batch(self, idx: list[int]):
        ids = [self.examples[i][0] for i in idx]
        labels = [self.examples[i][1] for i in idx]
        ecgs = torch.from_numpy(self.ecgs[idx].astype(np.float32))
        images = torch.from_numpy(self.images[idx].astype(np.float32))
        return ids, labels, ecgs, images


# ------------------------------------------------------------------------------------------ schedule
def lr_at(step: int, a) -> float:
    """Linear warmup, then cosine to min_lr_ratio * lr at max_steps (a: TrainArgs or pretrain.PretrainArgs)."""
    if step < a.warmup_steps:
        return a.lr * (step + 1) / a.warmup_steps
    progress = min(1.0, (step - a.warmup_steps) / max(1, a.max_steps - a.warmup_steps))
    return a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def load_state(model, opt, state_file: Path, log) -> int:
    """Weights, optimizer and step of a stopped run (read with weights_only=True): the step to continue from."""
    state = torch.load(state_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    log(f"resumed from {state_file} at step {int(state['step'])}")
    return int(state["step"])


def save_state(model, opt, step: int, state_file: Path) -> None:
    """What load_state reads, written whole or not at all (tmp + rename)."""
    tmp = Path(str(state_file) + ".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step}, str(tmp))
    tmp.replace(state_file)


def _draw(rng: random.Random, n: int, k: int, pools: list) -> list[int]:
    """k record indices: each slot from an oversampled condition's records with that share, else from all."""
    idx = rng.sample(range(n), k)
    for j in range(k):
        for members, share in pools:
            if members and rng.random() < share:
                idx[j] = rng.choice(members)
                break
    return idx


def _draw_mixed(rng: random.Random, data, k: int, pools: list, mixes: list) -> list[tuple]:
    """k (dataset, index) pairs: each slot from a mixed-in corpus with its share, else as _draw gives it."""
    picks = [(data, i) for i in _draw(rng, len(data), k, pools)]
    for j in range(k):
        for other, share in mixes:
            if rng.random() < share:
                picks[j] = (other, rng.randrange(len(other)))
                break
    return picks


def mixed_batch(picks: list[tuple]):
    """GroundedDataset.batch over (dataset, index) pairs from several datasets."""
    ids = [d.examples[i][0] for d, i in picks]
    labels = [d.examples[i][1] for d, i in picks]
    ecgs = torch.from_numpy(np.stack([d.ecgs[i] for d, i in picks]).astype(np.float32))
    images = torch.from_numpy(np.stack([d.images[i] for d, i in picks]).astype(np.float32))
    return ids, labels, ecgs, images


def set_trainable(model: GemForCausalLM, stage: str) -> None:
    """align: projectors only (LLM and towers frozen). instruct: GEM's recipe, LLM + projectors, towers frozen
    for gem-7b; the small presets train their towers too (they start from random weights)."""
    small = model.config.name != "gem-7b"
    for name, p in model.named_parameters():
        is_proj = "_projector" in name
        is_tower = ".ecg_tower." in name or ".vision_tower." in name
        if stage == "align":
            p.requires_grad_(is_proj)
        else:
            p.requires_grad_(not is_tower or small)


def fit(config: GemConfig, data_dir: Path, tokenizer_dir: Path, out: Path, args: TrainArgs,
        init_from: Path | None = None, init_tower: Path | None = None, resume: bool = False, log=print) -> Path:
    torch.manual_seed(args.seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = SpTokenizer(Path(tokenizer_dir) / "tokenizer.model")
    if tok.vocab_size != config.vocab_size:
        raise ConfigError(f"{tokenizer_dir}: tokenizer has {tok.vocab_size} pieces but preset {config.name!r} expects {config.vocab_size}")
    if init_from is not None:
        from .checkpoint import load_checkpoint

        model = load_checkpoint(init_from)
    else:
        model = GemForCausalLM(config)
    if init_tower is not None:
        from .pretrain import load_tower

        load_tower(model, init_tower)
    data = GroundedDataset(data_dir, config, tok)          # after the inputs that fail fast are checked
    mixes = [(GroundedDataset(Path(d), config, tok), share) for d, share in args.mix]
    set_trainable(model, args.stage)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    groups = []
    for in_tower, scale in ((False, 1.0), (True, args.tower_lr_scale)):
        mine = [p for n, p in named if (".ecg_tower." in n) == in_tower]
        groups += [{"params": [p for p in mine if p.ndim >= 2], "weight_decay": args.weight_decay, "lr_scale": scale},
                   {"params": [p for p in mine if p.ndim < 2], "weight_decay": 0.0, "lr_scale": scale}]
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=args.lr, betas=(0.9, 0.95))
    step, state_file = 0, out / "trainer_state.pt"
    if resume and state_file.exists():
        step = load_state(model, opt, state_file, log)
    rng = random.Random(args.seed * 1000003 + step)
    pools = [([i for i, r in enumerate(data.records) if name in r["machine_measurements"]["conditions"]], share)
             for name, share in args.oversample]
    n_train = sum(p.numel() for p in params)
    log(f"training {config.name}: {n_train / 1e6:.2f}M trainable params, {len(data)} records"
        + "".join(f" + {len(d)} mixed in at {share:.0%}" for d, share in mixes) + f", stage {args.stage}, "
        f"batch {args.batch_size}x{args.grad_accum}, {args.max_steps} steps, threads {torch.get_num_threads()}")
    model.train()
    t0, losses = time.time(), []
    while step < args.max_steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args) * g["lr_scale"]
        for _ in range(args.grad_accum):
            if mixes:
                batch = mixed_batch(_draw_mixed(rng, data, args.batch_size, pools, mixes))
            else:
                batch = data.batch(_draw(rng, len(data), args.batch_size, pools))
            loss = model(*batch) / args.grad_accum
            loss.backward()
            losses.append(loss.item() * args.grad_accum)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % args.log_every == 0 or step == args.max_steps:
            dt = (time.time() - t0) / args.log_every
            log(f"step {step}/{args.max_steps}: loss {np.mean(losses):.4f}, lr {lr_at(step - 1, args):.2e}, "
                f"{dt * 1000:.0f} ms/step")
            losses, t0 = [], time.time()
        if step % args.save_every == 0 or step == args.max_steps:
            save_state(model, opt, step, state_file)
    model.eval()
    save_checkpoint(model, out, tokenizer_dir)
    log(f"saved {out}")
    return out
