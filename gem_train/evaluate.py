"""`gem-train eval`: greedy generation with the PyTorch model on held-out records, scored from the text."""
from __future__ import annotations

from pathlib import Path

import torch
from tqdm import tqdm

from gem_runtime.prompt import build_prompt, prompt_ids

from .checkpoint import load_checkpoint
from .corpus import read_records
from .scoring import score
from .tokenizer import SpTokenizer
from .train import load_ecg_array, load_pixels


def evaluate_checkpoint(ckpt: Path, data_dir: Path, n: int, max_new_tokens: int = 256) -> dict:
    ckpt, data_dir = Path(ckpt), Path(data_dir)
    records = read_records(data_dir, n)                 # the user's inputs checked before the model loads
    model = load_checkpoint(ckpt)
    tok = SpTokenizer(ckpt / "tokenizer.model")
    texts = []
    for r in tqdm(records, desc="eval", unit="rec"):
        question = r["conversations"][0]["value"]
        ids = prompt_ids(build_prompt(question), tok)
        ecg = torch.from_numpy(load_ecg_array(data_dir / (r["ecg"] + ".hea")))
        pix = torch.from_numpy(load_pixels(data_dir / r["image"], model.config.vision_image_size))
        texts.append(tok.decode(model.generate(ids, ecg, pix, max_new_tokens, eos_id=tok.eos_id)))
    truths = [r["machine_measurements"] for r in records]
    return {"checkpoint": str(ckpt), "data": str(data_dir), "scores": score(texts, truths),
            "samples": [{"id": r["id"], "text": t} for r, t in zip(records[:20], texts[:20])]}
