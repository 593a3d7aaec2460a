"""Runtime vs PyTorch reference on fresh synthetic ECGs: greedy text, token for token, and findings.

    python -m benchmarks.parity --bundle bundles/demo --checkpoint checkpoints/demo --n 10 --seed 4242

Each LLM type of the bundle as gem-run runs it: identical texts, the share of tokens before the first divergence,
and whether the findings match (conditions named, numbers within the grounding tolerances of PyTorch's). Then the
llama.cpp context settings that change f16 text, each on the same ECGs: flash attention (llama.cpp's choice, on
for CPUs, which gem-run keeps; off, as gem-run batch and speculative decoding run) and the KV cache type (f16; f32
as the export's parity gate runs). Writes benchmarks/parity.md.
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

    from gem_runtime.interpreter import Interpreter
    from gem_runtime.llm import LlamaLLM
    from gem_runtime.preprocess import preprocess_ecg
    from gem_runtime.readers import read_ecg
    from gem_train.checkpoint import load_checkpoint
    from gem_train.corpus import write_corpus
    from gem_train.evaluate import reference_ids
    from gem_train.scoring import findings_agree
    from gem_train.tokenizer import SpTokenizer

    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="gem-parity-"))
    records = json.loads(write_corpus(work, n, seed, images=False, progress=False).read_text())
    paths = [work / (r["ecg"] + ".hea") for r in records]
    model = load_checkpoint(checkpoint)
    tok = SpTokenizer(checkpoint / "tokenizer.model")
    refs = [reference_ids(model, tok, preprocess_ecg(read_ecg(p))[0], max_new_tokens) for p in paths]
    def compare(gem) -> tuple[int, float, int]:
        same, prefix_share, findings = 0, [], 0
        for p, ref in zip(paths, refs):
            res = gem.interpret(p, max_new_tokens=max_new_tokens)
            got = res.token_ids
            same += got == ref
            k = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
            prefix_share.append(k / max(1, len(ref)))
            findings += all(findings_agree(tok.decode(ref), res.text))
        return same, float(np.mean(prefix_share)), findings

    rows = []
    with Interpreter.load(bundle, threads=2, draft_len=0) as gem:
        quants = gem.bundle.llm_quants()
    for quant in quants:
        with Interpreter.load(bundle, quant=quant, threads=2, draft_len=0) as gem:
            rows.append((quant, *compare(gem)))
            click.echo(f"{quant}: {rows[-1][1]}/{n} token sequences identical to PyTorch, findings match "
                       f"{rows[-1][3]}/{n}")
    settings = []
    with Interpreter.load(bundle, quant="f16", threads=2, draft_len=0) as gem:
        path = gem.llm.path
        for name, kw in (("flash attention llama.cpp's choice (on), f16 KV: gem-run, serve", {}),
                         ("flash attention off, f16 KV: gem-run batch, speculative decoding", {"flash_attn": False}),
                         ("flash attention off, f32 KV: the export's parity gate", {"exact": True})):
            gem.llm.close()
            gem.llm = LlamaLLM(path, n_ctx=2048, n_batch=512, n_threads=2, **kw)
            settings.append((name, *compare(gem)))
            click.echo(f"f16, {name}: {settings[-1][1]}/{n} identical to PyTorch")
    lines = [f"# Runtime vs PyTorch reference: greedy text on {n} fresh synthetic ECGs (seed {seed})", "",
             f"`python -m benchmarks.parity --bundle {bundle} --checkpoint {checkpoint} --n {n} --seed {seed}`", "",
             "Each LLM type as gem-run runs it:", "",
             ("| LLM file | token sequences identical to PyTorch | mean share of tokens before first divergence | "
              "findings as PyTorch's |"), "|---|---|---|---|"]
    lines += [f"| {q} | {s}/{n} | {p:.3f} | {f}/{n} |" for q, s, p, f in rows]
    lines += ["", "The f16 file under the llama.cpp context settings that change its text:", "",
              "| context | identical to PyTorch | mean shared prefix | findings as PyTorch's |", "|---|---|---|---|"]
    lines += [f"| {name} | {s}/{n} | {p:.3f} | {f}/{n} |" for name, s, p, f in settings]
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
