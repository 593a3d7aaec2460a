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
    drafts: str = ""                  # where drafts came from, where not the bundle's table

    @property
    def tok_s(self) -> float:
        return self.tokens / self.decode_s if self.decode_s else 0.0

    @property
    def tokens_per_step(self) -> float:
        return (self.accepted + self.steps) / self.steps if self.steps else 1.0


def cost_curve(llm, pos: int, reps: int = 5) -> dict[int, float]:
    """ms of one llama_decode of k tokens at position pos (after a prompt), median of reps, for COST_TOKENS; the
    k are measured in turn within each round, so drift in machine load hits them alike."""
    times: dict[int, list[float]] = {k: [] for k in COST_TOKENS}
    llm.truncate(pos)                              # the prompt stays; what was generated after it goes
    for rep in range(reps + 1):
        for k in COST_TOKENS:
            t0 = time.perf_counter()
            llm.eval_tokens([5] * k, pos, "all")
            if rep:                                # the first round warms up
                times[k].append((time.perf_counter() - t0) * 1000)
            llm.truncate(pos)
    return {k: round(statistics.median(v), 3) for k, v in times.items()}


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
             machine: str, bound: dict | None = None) -> str:
    base = runs[0]
    what = "prompts (GEM's text prompt + a report's opening words)" if bound else "synthetic ECGs"
    lines = [f"# gem-bench speculation: {bundle}, {n} {what}, up to {new_tokens} new tokens, {threads} threads",
             "", f"Machine: {machine}", "",
             "| decoding | tokens/s | vs plain | drafts kept | tokens per llama_decode | cost of that decode | "
             "text identical to plain |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        name = ("plain, flash attention on (gem-run)" if r.flash_attn else
                "plain (flash attention off)" if r.draft_len == 0 else f"speculative, draft {r.draft_len}"
                + (f" ({r.drafts})" if r.drafts else ""))
        kept = f"{r.accepted / r.drafted:.2f}" if r.drafted else "-"
        cost = curve.get(r.draft_len + 1) if not r.flash_attn else None
        cost_txt = f"{cost / curve[1]:.2f}x" if cost else "-"
        lines.append(f"| {name} | {r.tok_s:,.1f} | {r.tok_s / base.tok_s:.2f}x | {kept} | {r.tokens_per_step:.2f} | "
                     f"{cost_txt} | {r.identical}/{n} |")
    lines += ["", "Cost curve (one llama_decode of k tokens after the prompt, ms): "
              + ", ".join(f"k={k} {ms:.2f}" for k, ms in curve.items())]
    if bound:
        best = max(runs, key=lambda r: r.tok_s)
        oracle = [r for r in runs if r.drafts.startswith("oracle") and r.steps]
        if oracle:
            p = bound["oracle_p"]
            lines += ["", f"What drafts accepted at p = {p:g} a token (the demo model's) would give here: each "
                          "oracle row's measured time per verify step (k + 1 tokens, in real decoding) over the "
                          "tokens such a step yields on average, (1 - p^(k+1)) / (1 - p):", "",
                      "| draft | ms per verify step | tokens per step at p | tok/s | vs plain | of the bound |",
                      "|---|---:|---:|---:|---:|---:|",
                      f"| plain | {1000 / base.tok_s:.1f} | 1.00 | {base.tok_s:.2f} | 1.00x | "
                      f"{100 * base.tok_s / bound['bound_tok_s']:.0f}% |"]
            for r in oracle:
                step = r.decode_s / r.steps
                per = (1 - p ** (r.draft_len + 1)) / (1 - p) if p < 1 else r.draft_len + 1
                lines.append(f"| {r.draft_len} | {1000 * step:.1f} | {per:.2f} | {per / step:.2f} | "
                             f"{per / step / base.tok_s:.2f}x | {100 * per / step / bound['bound_tok_s']:.0f}% |")
        lines += ["", f"Prefill of {bound['prefill_positions']} positions (GEM's prompt after the cached system "
                      f"prompt): {bound['prefill_ms'] / 1000:.2f} s."]
        lines += ["", f"Single-token decode bound: read bandwidth {bound['read_gb_s']:.1f} GB/s (measured in this "
                      f"run) / {bound['bytes_per_token'] / 1e9:.2f} GB a step reads = "
                      f"**{bound['bound_tok_s']:.2f} tok/s**. "
                      f"Plain decoding: {base.tok_s:.2f} tok/s ({100 * base.tok_s / bound['bound_tok_s']:.0f}% of it); "
                      f"the fastest setting "
                      f"({'plain' if best.draft_len == 0 else f'draft {best.draft_len} {best.drafts}'}): "
                      f"{best.tok_s:.2f} tok/s ({100 * best.tok_s / bound['bound_tok_s']:.0f}%)."]
    for r in runs:
        if r.first_divergence:
            lines.append(f"\n{'flash attention on' if r.flash_attn else f'draft {r.draft_len}'}: the records that "
                         f"differ diverge at token {', '.join(map(str, sorted(r.first_divergence)))}.")
    return "\n".join(lines) + "\n"


def write(bundle: Path, n: int, new_tokens: int, threads: int, runs: list[DraftRun], curve: dict[int, float],
          out: Path, bound: dict | None = None) -> Path:
    from .machine import machine_info, machine_line

    out.mkdir(parents=True, exist_ok=True)
    machine = machine_line(machine_info())
    (out / "results.json").write_text(json.dumps(
        {"bundle": str(bundle), "records": n, "new_tokens": new_tokens, "threads": threads, "machine": machine,
         "cost_curve_ms": curve, "decode_bound": bound, "runs": [{**asdict(r), "tok_s": round(r.tok_s, 2),
                                           "tokens_per_step": round(r.tokens_per_step, 3)} for r in runs]},
        indent=1) + "\n")
    path = out / "results.md"
    path.write_text(markdown(bundle, n, new_tokens, threads, runs, curve, machine, bound))
    return path


def table_from_corpus(bundle: Path, corpus: Path):
    """The draft table `gem-export ngrams` would add to the bundle."""
    from gem_runtime.manifest import TOKENIZER_FILE

    return table_from_corpus_tokenizer(Path(bundle) / TOKENIZER_FILE, corpus)


class OracleDrafter:
    """Drafts the plain greedy continuation, each token kept right with probability `p` (a wrong one otherwise):
    random weights draft almost nothing from the table or the text, so this sets the acceptance a trained model
    gets (the demo's draft-1 acceptance, 0.86) and measures what speculation then does on the real GGUF."""

    def __init__(self, prompt_len: int, plain: list[int], p: float, vocab: int, seed: int = 0):
        import numpy as np

        self.prompt_len, self.plain, self.p, self.vocab = prompt_len, plain, p, vocab
        self.rng = np.random.default_rng(seed)

    def draft(self, history: list[int], k: int) -> list[int]:
        at = len(history) - self.prompt_len
        right = self.plain[at:at + k]
        return [t if self.rng.random() < self.p else (t + 1) % self.vocab for t in right]


def run_llm(gguf: Path, tokenizer: Path, corpus: Path, prompts: int, new_tokens: int, threads: int,
            draft_lengths=(0, 1, 2, 3), oracle_p: float = 0.86, prefill_positions: int = 668, log=print
            ) -> tuple[list[DraftRun], dict[int, float], dict]:
    """The same comparison on a bare GGUF (the full-depth gem-7b one, which no bundle holds: its prefill of a whole
    GEM prompt takes ~20 s here). Each prompt is GEM's text prompt (no ECG rows) followed by the opening words of
    a corpus report; it is prefilled once, and every setting decodes from that same KV cache (the last prompt
    token re-evaluated for its logits): plain, drafts from the table and the text, and oracle drafts at the
    acceptance `oracle_p`. Also returns the decode roofline (read bandwidth over the bytes a one-token step reads,
    the bound speculation has to beat) and the time of one prefill of `prefill_positions` positions (the part of
    GEM's 758-position prompt after the cached system prompt)."""
    import sentencepiece as spm

    from gem_runtime import constants as K
    from gem_runtime.llm import LlamaLLM, LlmTimings
    from gem_runtime.prompt import build_prompt
    from gem_runtime.speculate import Drafter, generate_speculative
    from gem_train.corpus import read_records

    from .machine import measure_bandwidth
    from .roofline import decode_bytes, filler_ids

    table = table_from_corpus_tokenizer(tokenizer, corpus)
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer))
    reports = [t["value"] for r in read_records(corpus, prompts) for t in r["conversations"] if t["from"] == "gpt"]
    settings = [(k, "table") for k in draft_lengths] + [(k, "oracle") for k in draft_lengths if k]
    runs = {s: DraftRun(s[0], False, 0.0, 0, drafts="" if s[0] == 0 else
                        ("n-gram table + prompt lookup" if s[1] == "table" else f"oracle, p = {oracle_p:g}"))
            for s in settings}
    drafter = Drafter(table)
    with LlamaLLM(gguf, n_ctx=max(512, prefill_positions) + new_tokens + 8, n_threads=threads,
                  flash_attn=False) as llm:
        t0 = time.perf_counter()
        llm.eval_tokens(filler_ids(llm.n_vocab, prefill_positions), 0, "last")
        prefill_ms = (time.perf_counter() - t0) * 1000
        log(f"[speculation] prefill of {prefill_positions} positions: {prefill_ms / 1000:.2f} s")
        for i, report in enumerate(reports[:prompts]):
            text = build_prompt(K.DEFAULT_QUESTION).replace(K.IMAGE_TOKEN, "") + " " + " ".join(report.split()[:12])
            ids = sp.encode(text, add_bos=True)
            llm.truncate(0)
            llm.eval_tokens(ids[:-1], 0, "none")
            if i == 0:
                curve = cost_curve(llm, len(ids) - 1)
            plain = None
            order = settings if i % 2 == 0 else settings[:1] + settings[:0:-1]   # drift hits both ends alike
            for k, mode in order:
                llm.truncate(len(ids) - 1)
                pos = llm.eval_tokens(ids[-1:], len(ids) - 1, "last")
                t = LlmTimings()
                source = drafter if mode == "table" else OracleDrafter(len(ids), plain, oracle_p, llm.n_vocab, i)
                out = (llm.generate(pos, new_tokens, t, ignore_eos=True) if k == 0 else
                       generate_speculative(llm, pos, ids, new_tokens, source, k, t, ignore_eos=True))
                d = runs[(k, mode)]
                d.decode_s, d.tokens = d.decode_s + t.decode_ms / 1000, d.tokens + len(out)
                if t.speculation:
                    d.drafted, d.accepted = d.drafted + t.speculation.drafted, d.accepted + t.speculation.accepted
                    d.steps += t.speculation.steps
                plain = plain or out
                _compare(d, plain, out)
                log(f"[speculation] prompt {i + 1}/{prompts} draft {k} ({mode}): "
                    f"{len(out) / (t.decode_ms / 1000):.2f} tok/s")
    bw = measure_bandwidth(threads)
    nbytes = decode_bytes(gguf)["bytes_per_token"]
    bound = {"read_gb_s": bw["read_gb_s"], "bytes_per_token": nbytes, "bound_tok_s": bw["read_gb_s"] * 1e9 / nbytes,
             "prefill_positions": prefill_positions, "prefill_ms": round(prefill_ms, 1), "oracle_p": oracle_p}
    return [runs[s] for s in settings], curve, bound


def table_from_corpus_tokenizer(tokenizer: Path, corpus: Path):
    from gem_export.build import corpus_ngrams

    return corpus_ngrams(Path(tokenizer), corpus)[0]
