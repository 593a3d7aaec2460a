"""Runtime vs PyTorch reference on fresh synthetic ECGs: greedy text, token for token.

    python -m benchmarks.parity --bundle bundles/demo --checkpoint checkpoints/demo --n 10 --seed 4242

f16 GGUF must equal the reference exactly; Q8_0 and Q4_K_M agreement is reported (identical texts, and the
share of tokens before the first divergence). Writes benchmarks/parity.md.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click
import numpy as np


@click.command()
@click.option("--bundle", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--checkpoint", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True)
@click.option("--n", "n", type=click.IntRange(1), default=10, show_default=True)
@click.option("--seed", type=int, default=4242, show_default=True)
@click.option("--max-new-tokens", type=click.IntRange(1), default=256, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("benchmarks/parity.md"))
def main(bundle, checkpoint, n, seed, max_new_tokens, out):
    import torch

    from gem_runtime.constants import DEFAULT_QUESTION
    from gem_runtime.image import preprocess_image
    from gem_runtime.interpreter import Interpreter
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.prompt import build_prompt, prompt_ids
    from gem_runtime.readers import read_ecg
    from gem_runtime.render import render_ecg_image
    from gem_train.checkpoint import load_checkpoint
    from gem_train.corpus import write_corpus
    from gem_train.tokenizer import SpTokenizer

    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="gem-parity-"))
    records = json.loads(write_corpus(work, n, seed, images=False, progress=False).read_text())
    paths = [work / (r["ecg"] + ".hea") for r in records]
    model = load_checkpoint(checkpoint)
    tok = SpTokenizer(checkpoint / "tokenizer.model")
    ids = prompt_ids(build_prompt(DEFAULT_QUESTION), tok)
    refs = []
    for p in paths:
        x, _ = preprocess_ecg(read_ecg(p))
        pix = preprocess_image(render_ecg_image(x), model.config.vision_image_size)
        refs.append(model.generate(ids, torch.from_numpy(x), torch.from_numpy(pix), max_new_tokens, eos_id=tok.eos_id))
    rows = []
    for quant in ("f16", "q8_0", "q4_k_m"):
        with Interpreter.load(bundle, quant=quant, threads=2) as gem:
            same, prefix_share = 0, []
            for p, ref in zip(paths, refs):
                res = gem.interpret(p, max_new_tokens=max_new_tokens)
                got = res.token_ids
                same += got == ref
                k = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
                prefix_share.append(k / max(1, len(ref)))
            rows.append((quant, same, float(np.mean(prefix_share))))
            click.echo(f"{quant}: {same}/{n} token sequences identical to PyTorch, mean shared prefix {np.mean(prefix_share):.3f}")
    lines = [f"# Runtime vs PyTorch reference: greedy text on {n} fresh synthetic ECGs (seed {seed})", "",
             f"`python -m benchmarks.parity --bundle {bundle} --checkpoint {checkpoint} --n {n} --seed {seed}`", "",
             "| LLM file | token sequences identical to PyTorch | mean share of tokens before first divergence |",
             "|---|---|---|"]
    lines += [f"| {q} | {s}/{n} | {p:.3f} |" for q, s, p in rows]
    out.write_text("\n".join(lines) + "\n")
    if rows[0][1] != n:
        raise SystemExit(f"f16 parity failed: {rows[0][1]}/{n}")


if __name__ == "__main__":
    main()
