"""gem-bench speculation: decode tokens/s of plain greedy decoding and of speculative decoding per draft length,
side by side in one run, with how often the drafts were kept and whether the text stayed the same.

    gem-bench speculation --bundle B --records N [--new-tokens 128] [--threads 2] [--corpus DIR] [--out DIR]

The same N simulated ECGs (one seed) are interpreted by one warm Interpreter (flash attention off, as speculation
runs) with each draft length in turn, record by record, so drift hits every setting alike. Plain decoding with
flash attention on (`gem-run`'s own setting) runs in a second Interpreter for reference. The cost curve is the time
of one llama_decode of k tokens after the prompt over that of one token: a draft of k pays only where the tokens it
adds per step outweigh cost(k + 1). Drafts come from the bundle's n-gram table, or from one built from --corpus
(the training corpus) when the bundle has none. Run nothing else meanwhile.
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

DRAFT_LENGTHS = (0, 1, 2, 3, 4, 6, 8)
COST_TOKENS = (1, 2, 3, 4, 5, 7, 9)          # k + 1 for each draft length k


@dataclass
class DraftRun:
    draft_len: int                    # 0: plain greedy decoding
    flash_attn: bool
    decode_s: float                   # all records
    tokens: int
    drafted: int = 0
    accepted: int = 0
    steps: int = 0
    identical: int = 0                # records whose tokens equal plain decoding's (flash attention off)
    first_divergence: list[int] = field(default_factory=list)

    @property
    def tok_s(self) -> float:
        return self.tokens / self.decode_s if self.decode_s else 0.0

    @property
    def tokens_per_step(self) -> float:
        return (self.accepted + self.steps) / self.steps if self.steps else 1.0


def cost_curve(llm, pos: int, reps: int = 5) -> dict[int, float]:
    """ms of one llama_decode of k tokens at position pos (after a prompt), median of reps, for COST_TOKENS."""
    out = {}
    llm.truncate(pos)                              # the prompt stays; what was generated after it goes
    for k in COST_TOKENS:
        times = []
        for _ in range(reps + 1):
            t0 = time.perf_counter()
            llm.eval_tokens([5] * k, pos, "all")
            times.append((time.perf_counter() - t0) * 1000)
            llm.truncate(pos)
        out[k] = round(statistics.median(times[1:]), 3)
    return out


def run(bundle: Path, files: list[Path], new_tokens: int, threads: int, table=None, log=print
        ) -> tuple[list[DraftRun], dict[int, float]]:
    from gem_runtime import Interpreter
    from gem_runtime.speculate import Drafter

    runs = {k: DraftRun(k, False, 0.0, 0) for k in DRAFT_LENGTHS}
    plain: dict[Path, list[int]] = {}
    with Interpreter.load(bundle, threads=threads, draft_len=max(DRAFT_LENGTHS)) as gem:
        if table is not None:
            gem.drafter = Drafter(table)
        gem.draft_len = 0
        first = gem.interpret(files[0], max_new_tokens=new_tokens)            # warm-up, and the cost curve's prompt
        curve = cost_curve(gem.llm, first.prompt_positions)
        for i, f in enumerate(files):
            for k in DRAFT_LENGTHS:
                gem.draft_len = k
                r = gem.interpret(f, max_new_tokens=new_tokens)
                d = runs[k]
                d.decode_s += r.timings["decode"] / 1000
                d.tokens += r.new_tokens
                if r.speculation:
                    d.drafted, d.accepted = d.drafted + r.speculation.drafted, d.accepted + r.speculation.accepted
                    d.steps += r.speculation.steps
                if k == 0:
                    plain[f] = list(r.token_ids)
                _compare(d, plain[f], list(r.token_ids))
            log(f"[speculation] {i + 1}/{len(files)} {f.name}")
    reference = DraftRun(0, True, 0.0, 0)
    with Interpreter.load(bundle, threads=threads, draft_len=0) as gem:
        gem.interpret(files[0], max_new_tokens=new_tokens)
        for f in files:
            r = gem.interpret(f, max_new_tokens=new_tokens)
            reference.decode_s += r.timings["decode"] / 1000
            reference.tokens += r.new_tokens
            _compare(reference, plain[f], list(r.token_ids))
    return [runs[k] for k in DRAFT_LENGTHS] + [reference], curve


def _compare(d: DraftRun, plain: list[int], ids: list[int]) -> None:
    if ids == plain:
        d.identical += 1
    else:
        d.first_divergence.append(next((i for i, (a, b) in enumerate(zip(plain, ids)) if a != b),
                                       min(len(plain), len(ids))))


def markdown(bundle: Path, n: int, new_tokens: int, threads: int, runs: list[DraftRun], curve: dict[int, float],
             machine: str) -> str:
    base = runs[0]
    lines = [f"# gem-bench speculation: {bundle}, {n} synthetic ECGs, up to {new_tokens} new tokens, {threads} threads",
             "", f"Machine: {machine}", "",
             "| decoding | tokens/s | vs plain | drafts kept | tokens per llama_decode | cost of that decode | "
             "text identical to plain |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        name = ("plain, flash attention on (gem-run)" if r.flash_attn else
                "plain (flash attention off)" if r.draft_len == 0 else f"speculative, draft {r.draft_len}")
        kept = f"{r.accepted / r.drafted:.2f}" if r.drafted else "-"
        cost = curve.get(r.draft_len + 1) if not r.flash_attn else None
        cost_txt = f"{cost / curve[1]:.2f}x" if cost else "-"
        lines.append(f"| {name} | {r.tok_s:,.1f} | {r.tok_s / base.tok_s:.2f}x | {kept} | {r.tokens_per_step:.2f} | "
                     f"{cost_txt} | {r.identical}/{n} |")
    lines += ["", "Cost curve (one llama_decode of k tokens after the prompt, ms): "
              + ", ".join(f"k={k} {ms:.2f}" for k, ms in curve.items())]
    for r in runs:
        if r.first_divergence:
            lines.append(f"\n{'flash attention on' if r.flash_attn else f'draft {r.draft_len}'}: the records that "
                         f"differ diverge at token {', '.join(map(str, sorted(r.first_divergence)))}.")
    return "\n".join(lines) + "\n"


def write(bundle: Path, n: int, new_tokens: int, threads: int, runs: list[DraftRun], curve: dict[int, float],
          out: Path) -> Path:
    from .machine import machine_info, machine_line

    out.mkdir(parents=True, exist_ok=True)
    machine = machine_line(machine_info())
    (out / "results.json").write_text(json.dumps(
        {"bundle": str(bundle), "records": n, "new_tokens": new_tokens, "threads": threads, "machine": machine,
         "cost_curve_ms": curve, "runs": [{**asdict(r), "tok_s": round(r.tok_s, 2),
                                           "tokens_per_step": round(r.tokens_per_step, 3)} for r in runs]},
        indent=1) + "\n")
    path = out / "results.md"
    path.write_text(markdown(bundle, n, new_tokens, threads, runs, curve, machine))
    return path


def table_from_corpus(bundle: Path, corpus: Path):
    """The draft table `gem-export ngrams` would add to the bundle."""
    from gem_export.build import corpus_ngrams
    from gem_runtime.manifest import TOKENIZER_FILE

    return corpus_ngrams(Path(bundle) / TOKENIZER_FILE, corpus)[0]
