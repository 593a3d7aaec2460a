"""`gem-train eval`: greedy generation with the PyTorch model on held-out records, scored from the text; and on real
ECGs, what the model says beside what the cart that recorded them says."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from tqdm import tqdm

from gem_runtime.constants import DEFAULT_QUESTION, ECG_FS
from gem_runtime.prompt import build_prompt, prompt_ids

from .checkpoint import load_checkpoint
from .corpus import read_records
from .scoring import parse_diagnoses, parse_heart_rate, parse_rhythm, score
from .tokenizer import SpTokenizer
from .train import load_ecg_array, load_pixels


def _generate(model, tok: SpTokenizer, question: str, ecg, pixels, max_new_tokens: int) -> str:
    ids = prompt_ids(build_prompt(question), tok)
    return tok.decode(model.generate(ids, torch.from_numpy(ecg), torch.from_numpy(pixels), max_new_tokens,
                                     eos_id=tok.eos_id))


def reference_ids(model, tok: SpTokenizer, x, max_new_tokens: int = 256,
                  question: str = DEFAULT_QUESTION) -> list[int]:
    """PyTorch's greedy report on an ECG as GEM's preprocessing gives it ((12, 5000) mV), with the paper image
    rendered from the signal as gem-run renders it: the reference a runtime's text is compared with."""
    from gem_runtime.image import preprocess_image
    from gem_runtime.render import render_ecg_image

    pixels = preprocess_image(render_ecg_image(x, fs=ECG_FS), model.config.vision_image_size)
    return model.generate(prompt_ids(build_prompt(question), tok), torch.from_numpy(x), torch.from_numpy(pixels),
                          max_new_tokens, eos_id=tok.eos_id)


def evaluate_checkpoint(ckpt: Path, data_dir: Path, n: int, max_new_tokens: int = 256) -> dict:
    ckpt, data_dir = Path(ckpt), Path(data_dir)
    records = read_records(data_dir, n)                 # the user's inputs checked before the model loads
    model = load_checkpoint(ckpt)
    tok = SpTokenizer(ckpt / "tokenizer.model")
    texts = []
    for r in tqdm(records, desc="eval", unit="rec"):
        ecg = load_ecg_array(data_dir / (r["ecg"] + ".hea"))
        pixels = load_pixels(data_dir / r["image"], model.config.vision_image_size)
        texts.append(_generate(model, tok, r["conversations"][0]["value"], ecg, pixels, max_new_tokens))
    truths = [r["machine_measurements"] for r in records]
    return {"checkpoint": str(ckpt), "data": str(data_dir), "scores": score(texts, truths),
            "samples": [{"id": r["id"], "text": t} for r, t in zip(records[:20], texts[:20])]}


@dataclasses.dataclass(frozen=True)
class RealEcgReading:
    """One real ECG: the model's text and what it states, beside the cart's statements and our own measurement."""

    file: str
    text: str
    rhythm: str | None                 # the rhythm the text names (scoring.parse_rhythm)
    diagnoses: list[str]
    stated_hr_bpm: float | None
    measured_hr_bpm: float | None      # gem_runtime.measure on the same signal
    device: str | None                 # vendor and model, where the file names them
    device_hr_bpm: float | None
    device_statements: list[str]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def evaluate_real(ckpt: Path, files: list[Path], max_new_tokens: int = 256) -> list[RealEcgReading]:
    """Each file read, preprocessed and rendered as `gem-run` does, interpreted by the PyTorch model."""
    from gem_runtime.measure import measure_ecg
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg

    records = [read_ecg(f) for f in files]               # a file that cannot be read stops before the model loads
    model = load_checkpoint(Path(ckpt))
    tok = SpTokenizer(Path(ckpt) / "tokenizer.model")
    out = []
    for f, record in zip(files, records):
        x, _ = preprocess_ecg(record)
        text = tok.decode(reference_ids(model, tok, x, max_new_tokens))
        d = record.device
        out.append(RealEcgReading(
            file=Path(f).name, text=text, rhythm=parse_rhythm(text), diagnoses=sorted(parse_diagnoses(text)),
            stated_hr_bpm=parse_heart_rate(text), measured_hr_bpm=measure_ecg(x, ECG_FS).hr_bpm,
            device=None if d is None else f"{d.vendor} {d.model}",
            device_hr_bpm=None if d is None else d.measurements.get("hr_bpm"),
            device_statements=[] if d is None else list(d.statements)))
    return out
