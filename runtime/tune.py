"""`gem-run tune`: which encoder precision and which LLM type are fastest on this machine, measured here.

    tuning = measure(bundle, threads)        # every usable variant, timed on this machine
    write_tuning(bundle, tuning)             # <bundle>.tune.json, beside the bundle folder
    read_tuning(bundle, threads)             # the choice, or None (no file, another machine, threads or bundle)

Which type is fastest depends on the CPU (Q4_0 on an AMD EPYC, Q4_K_M on an Intel Xeon, measured), so it is
never a constant. Only variants that passed their parity gate at export compete: an int8 encoder that failed
its gate is listed as such and never chosen. Every other knob is held to the LLM types' rule: int8 encoders,
repacking off, decoding alone repacked (only where it makes the request DECODE_REPACKED_MIN_SPEEDUP faster: it
holds the weights twice) and each draft length are taken only where the chosen type's findings with it matched its plain
decoding's on >= 98% of fresh ECGs (`gem-export knobs`, the manifest's Parity.knobs); `gates` in the tune file
says why a knob was not taken. `Interpreter.load(encoder_precision="auto", quant=None)` uses the
choice when it was made on this machine with these threads for this bundle.

Speculative decoding's draft length is measured the same way: the chosen type interprets a real ECG (pydicom's)
plainly, as gem-run does, and with each draft length (flash attention off, as speculation needs, so its prefill
is timed too); plain decoding stays unless a draft length makes the request (prefill + REQUEST_TOKENS decode
steps) at least SPECULATION_MIN_SPEEDUP faster: a k-token decode costs more than one token, so whether drafts
pay depends on the machine and the model's depth.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import replace

import numpy as np

from .bundle import Bundle
from .manifest import DECODE_REPACKED, ENCODERS, FINDINGS_MIN_SHARE, INT8_ENCODERS, REPACK_OFF, draft_knob
from .tuning import (DECODE_REPACKED_MIN_SPEEDUP, DRAFT_LENGTHS, INT8_MIN_SPEEDUP, REQUEST_TOKENS,
                     SPECULATION_MIN_SPEEDUP, LlmTiming, Tuning, int8_problem, kernels_key, knob_findings, knob_problem,
                     machine_key, second_copy_fits, timing_only)

def measure(bundle: Bundle, threads: int, runs: int = 3, log=print) -> Tuning:
    from .encoders import OrtEncoder

    rng = np.random.default_rng(0)
    encoders_ms, precision = {}, {}
    for name, io in ENCODERS.items():
        entry = bundle.manifest.encoders[name]
        shape = [1 if isinstance(d, str) else int(d) for d in entry.input[1]]
        x = rng.standard_normal(shape).astype(np.float32)
        encoders_ms[name] = {}
        for variant, file in (("fp32", entry.file), ("int8", entry.int8_file)):
            if variant == "int8" and (problem := int8_problem(bundle, name)):
                encoders_ms[name][variant] = problem
                continue
            enc = OrtEncoder(io, bundle.path(file), "cpu", threads)
            try:
                enc.run(x)
                encoders_ms[name][variant] = round(_median_ms(lambda: enc.run(x), runs), 2)
            finally:
                enc.close()
            log(f"[tune] {name} {variant}: {encoders_ms[name][variant]} ms")
    llm = {q: _faster_repack(bundle, q, threads, runs, rng, log) for q in bundle.manifest.llm}
    passed = ([] if timing_only(bundle) else [q for q, t in llm.items() if t.parity_ok]) or list(llm)
    quant = min(passed, key=lambda q: llm[q].request_ms)
    has_int8 = not all(int8_problem(bundle, name) for name in ENCODERS)      # (else there is nothing to gate)
    gates = {k: why for k in ((INT8_ENCODERS,) if has_int8 else ()) + (REPACK_OFF, DECODE_REPACKED)
             if (why := knob_problem(bundle, quant, k))}
    for name in ENCODERS:           # int8 where it is faster and its findings gate passed with the chosen type
        int8_ms = encoders_ms[name].get("int8")
        faster = isinstance(int8_ms, float) and encoders_ms[name]["fp32"] >= INT8_MIN_SPEEDUP * int8_ms
        precision[name] = "int8" if faster and INT8_ENCODERS not in gates else "fp32"
    tuning = Tuning(machine=machine_key(), threads=threads, bundle_id=bundle.bundle_id, encoders_ms=encoders_ms,
                    llm=llm, encoder_precision=precision, quant=quant, gates=gates,
                    knob_findings=knob_findings(bundle, quant), kernels=kernels_key())
    for knob, why in gates.items():
        log(f"[tune] {knob} not taken: {why}")
    return measure_speculation(bundle, tuning, runs, log)


def measure_speculation(bundle: Bundle, tuning: Tuning, runs: int, log=print) -> Tuning:
    """A request's cost with tuning.quant for each of DRAFT_LENGTHS on pydicom's ECG: prefill + REQUEST_TOKENS
    decode steps at the measured ms per token. Draft length 0 is plain decoding as gem-run runs it (llama.cpp's
    own flash attention choice); the others run with flash attention off, as speculation must, so the prefill
    that costs is counted too. The draft length to use: the cheapest, where it beats plain by the margin."""
    from pydicom.data import get_testdata_file

    from .interpreter import Interpreter

    ecg = get_testdata_file("waveform_ecg.dcm")
    ms: dict[int, float] = {}
    for lengths in ((0,), DRAFT_LENGTHS[1:]):
        with Interpreter.load(bundle.root, quant=tuning.quant, threads=tuning.threads, draft_len=max(lengths),
                              encoder_precision=tuning.encoder_precision,
                              repack=tuning.llm[tuning.quant].repack,
                              decode_repacked=tuning.llm[tuning.quant].decode_repacked) as gem:
            for k in lengths:
                gem.draft_len = k
                costs = []
                for _ in range(runs + 1):                # the first is a warm-up
                    r = gem.interpret(ecg, max_new_tokens=REQUEST_TOKENS)
                    per_token = r.timings["decode"] / max(1, r.new_tokens)
                    costs.append(r.timings["prefill"] + REQUEST_TOKENS * per_token)
                ms[k] = round(statistics.median(costs[1:]), 2)
                kept = f", {r.speculation.acceptance:.2f} of drafts kept" if r.speculation else ""
                log(f"[tune] llm {tuning.quant} draft length {k}: request {ms[k]} ms{kept}")
    gates = {**tuning.gates, **{draft_knob(k): why for k in ms if k
                                and (why := knob_problem(bundle, tuning.quant, draft_knob(k)))}}
    allowed = {k: v for k, v in ms.items() if draft_knob(k) not in gates}     # plain (0) is always allowed
    best = min(allowed, key=allowed.get)
    draft_len = best if best and ms[0] >= SPECULATION_MIN_SPEEDUP * ms[best] else 0
    return replace(tuning, request_ms_by_draft_len=ms, draft_len=draft_len, gates=gates)


def _faster_repack(bundle: Bundle, quant: str, threads: int, runs: int, rng, log) -> LlmTiming:
    """The type timed with ggml's weight repacking on and off: on an AMD EPYC (Zen 4, 2 cores) at gem-7b shape,
    off made Q4_K_M's prefill 1.7x faster and Q4_0's 2x slower; which wins depends on the type and the CPU."""
    on, off = (_time_llm(bundle, quant, threads, runs, rng, log, repack) for repack in (True, False))
    off_allowed = knob_problem(bundle, quant, REPACK_OFF) is None       # its findings gate (Parity.knobs)
    best, other = (on, off) if on.request_ms <= off.request_ms or not off_allowed else (off, on)
    best = replace(best, request_ms_other_repack=other.request_ms)
    # the prompt unrepacked and decoding repacked: only where each is the faster at its part, the gate allows it
    # and a second copy of the weights fits in the memory free now; kept only where clearly faster (it costs memory)
    if off.prefill_ms < on.prefill_ms and on.decode_ms_per_token < off.decode_ms_per_token \
            and knob_problem(bundle, quant, DECODE_REPACKED) is None and second_copy_fits(bundle.llm_path(quant)):
        split = _time_llm(bundle, quant, threads, runs, rng, log, repack=False, decode_repacked=True)
        if best.request_ms >= DECODE_REPACKED_MIN_SPEEDUP * split.request_ms:
            return replace(split, request_ms_other_repack=on.request_ms, request_ms_decode_repacked=split.request_ms)
        best = replace(best, request_ms_decode_repacked=split.request_ms)
    return best


def _time_llm(bundle: Bundle, quant: str, threads: int, runs: int, rng, log, repack: bool = True,
              decode_repacked: bool = False) -> LlmTiming:
    from . import constants as K
    from .llm import LlamaLLM, LlmTimings
    from .prompt import build_prompt, prompt_ids, split_prompt

    parity = (bundle.manifest.parity.llm if bundle.manifest.parity else {}).get(quant)
    with LlamaLLM(bundle.llm_path(quant), n_threads=threads, repack=repack, decode_repacked=decode_repacked) as llm:
        before, after = split_prompt(prompt_ids(build_prompt(K.DEFAULT_QUESTION), llm.tokenize))
        rows = (0.02 * rng.standard_normal((bundle.manifest.rows, llm.n_embd))).astype(np.float32)
        prefill, decode = [], []
        for _ in range(runs + 1):                    # the first is a warm-up
            lt = LlmTimings()
            pos = llm.prefill(before, rows, after, lt, reuse_prefix=False)
            llm.generate(pos, 32, lt, ignore_eos=True)
            prefill.append(lt.prefill_ms)
            decode.append(lt.decode_ms / max(1, lt.decode_tokens))
    p, d = statistics.median(prefill[1:]), statistics.median(decode[1:])
    timing = LlmTiming(prefill_ms=round(p, 2), decode_ms_per_token=round(d, 3),
                       request_ms=round(p + REQUEST_TOKENS * d, 1), parity_ok=bool(parity and parity.usable),
                       parity=_parity_text(quant, parity), repack=repack, decode_repacked=decode_repacked)
    how = "on" if repack else "off, decoding repacked" if decode_repacked else "off"
    log(f"[tune] llm {quant} (repack {how}): prefill {timing.prefill_ms} ms, "
        f"{timing.decode_ms_per_token} ms/token, request {timing.request_ms} ms ({timing.parity})")
    return timing


def _parity_text(quant: str, parity) -> str:
    if parity is None:
        return "no parity entry"
    failed = "" if parity.ok else ", FAILED"
    f = parity.findings
    findings = "" if f is None else f"; findings as PyTorch's on {f.findings_match}/{f.n} ECGs" + (
        "" if f.share >= FINDINGS_MIN_SHARE else f" (< {FINDINGS_MIN_SHARE:.0%}: not used)")
    if quant == "f16":
        return f"greedy {parity.agree}/{parity.greedy_tokens} tokens as PyTorch{failed}{findings}"
    return f"top-1 {parity.top1_agreement or 0:.2f}, logits cosine {parity.cosine:.4f}{failed}{findings}"


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)
