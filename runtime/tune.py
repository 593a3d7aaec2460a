"""`gem-run tune`: which encoder precision and which LLM type are fastest on this machine, measured here.

    tuning = measure(bundle, threads)        # every usable variant, timed on this machine
    write_tuning(bundle, tuning)             # <bundle>.tune.json, beside the bundle folder
    read_tuning(bundle, threads)             # the choice, or None (no file, another machine, threads or bundle)

Which type is fastest depends on the CPU (Q4_0 on an AMD EPYC, Q4_K_M on an Intel Xeon, measured), so it is
never a constant. Only variants that passed their parity gate at export compete: an int8 encoder that failed
its gate is listed as such and never chosen. `Interpreter.load(encoder_precision="auto", quant=None)` uses the
choice when it was made on this machine with these threads for this bundle.

Speculative decoding's draft length is measured the same way: the chosen type interprets a real ECG (pydicom's)
plainly, as gem-run does, and with each draft length (flash attention off, as speculation needs, so its prefill
is timed too); plain decoding stays unless a draft length makes the request (prefill + REQUEST_TOKENS decode
steps) at least SPECULATION_MIN_SPEEDUP faster: a k-token decode costs more than one token, so whether drafts
pay depends on the machine and the model's depth.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .bundle import Bundle
from .manifest import ENCODERS, FINDINGS_MIN_SHARE

INT8_MIN_SPEEDUP = 1.2        # int8 encoders approximate: taken only where they are clearly faster (the demo's
                              # tiny encoders gain 1.2-1.4x on 5 ms, and its text changed on 15 of 40 ECGs)
REQUEST_TOKENS = 128          # a request's cost: prefill + this many decode steps (GEM's reports run ~100-250)
DRAFT_LENGTHS = (0, 1, 2, 3, 4, 6, 8)    # 0: plain decoding
SPECULATION_MIN_SPEEDUP = 1.05
SIMD_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "neon")


@dataclass(frozen=True)
class LlmTiming:
    prefill_ms: float             # the GEM prompt (rows + ids), no cached prefix
    decode_ms_per_token: float
    request_ms: float             # prefill + REQUEST_TOKENS decode steps
    parity_ok: bool               # its export parity gate
    parity: str                   # what the gate measured, for the table
    repack: bool = True           # ggml's CPU weight repacking, on or off, whichever made the request faster
    request_ms_other_repack: float | None = None     # the request with the other setting


@dataclass(frozen=True)
class Tuning:
    machine: str
    threads: int
    bundle_id: str
    encoders_ms: dict             # {encoder: {"fp32": ms, "int8": ms | "failed its parity gate: ..."}}
    llm: dict                     # {type: LlmTiming}
    encoder_precision: dict       # {encoder: "fp32" | "int8"}: int8 where it passed and is INT8_MIN_SPEEDUP faster
    quant: str                    # the LLM type with the least request_ms among those that passed
    request_ms_by_draft_len: dict = field(default_factory=dict)   # {draft length: request ms of `quant`}
    draft_len: int = 0            # speculation's draft length for `quant` (0: plain decoding)

    def to_dict(self) -> dict:
        return {**asdict(self), "llm": {q: asdict(t) for q, t in self.llm.items()}}


def machine_key() -> str:
    """The CPU model and the SIMD it offers (what decides which kernels run), and its core count."""
    name, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name == "unknown CPU":
                name = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return f"{name} | {' '.join(f for f in SIMD_FLAGS if f in flags)} | {os.cpu_count()} cores"


def default_threads() -> int:
    """gem-run's threads when not given: all cores, at most 8."""
    return min(8, os.cpu_count() or 1)


def tuned_quant(bundle: Bundle, threads: int) -> str:
    """The LLM type `gem-run tune` chose for this bundle on this machine at these threads, else the bundle's
    default: what gem-run and gem-run batch load when --quant is not given."""
    tuning = read_tuning(bundle, threads)
    return tuning.quant if tuning and tuning.quant in bundle.manifest.llm else bundle.default_quant()


def tuned_repack(bundle: Bundle, threads: int, quant: str) -> bool:
    """Whether weight repacking made this type's request faster here (tune times both), else on (llama.cpp's)."""
    tuning = read_tuning(bundle, threads)
    timing = tuning.llm.get(quant) if tuning else None
    return timing.repack if timing else True


def tuned_draft_len(bundle: Bundle, threads: int, quant: str) -> int:
    """The draft length `gem-run tune` measured fastest for this type here, else 0 (plain decoding)."""
    tuning = read_tuning(bundle, threads)
    return tuning.draft_len if tuning and tuning.quant == quant else 0


def tuning_path(bundle: Bundle) -> Path:
    return bundle.root.with_name(bundle.root.name + ".tune.json")


def read_tuning(bundle: Bundle, threads: int) -> Tuning | None:
    """The measured choice for this bundle on this machine at these threads, else None."""
    path = tuning_path(bundle)
    try:
        data = json.loads(path.read_text())
        tuning = Tuning(**{**data, "llm": {q: LlmTiming(**t) for q, t in data["llm"].items()},
                           "request_ms_by_draft_len": {int(k): v for k, v in
                                                       data.get("request_ms_by_draft_len", {}).items()}})
    except (OSError, ValueError, TypeError, KeyError):
        return None                     # absent or not ours: the bundle's defaults, as before tuning
    if (tuning.machine, tuning.threads, tuning.bundle_id) != (machine_key(), threads, bundle.bundle_id):
        return None
    return tuning


def write_tuning(bundle: Bundle, tuning: Tuning) -> Path:
    path = tuning_path(bundle)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(tuning.to_dict(), indent=1) + "\n")
    tmp.replace(path)
    return path


def int8_problem(bundle: Bundle, name: str) -> str | None:
    """Why the bundle's int8 `name` may not be used (None: it may)."""
    entry = bundle.manifest.encoders[name]
    if not entry.int8_file:
        return f"the bundle has no int8 {name} (gem-export int8 adds one)"
    parity = (bundle.manifest.parity.encoders if bundle.manifest.parity else {}).get(f"{name}.int8")
    if parity is None or not parity.ok:
        return f"its int8 {name} failed its parity gate ({parity.problem if parity else 'not checked'})"
    return None


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
        int8_ms = encoders_ms[name].get("int8")
        faster = isinstance(int8_ms, float) and encoders_ms[name]["fp32"] >= INT8_MIN_SPEEDUP * int8_ms
        precision[name] = "int8" if faster else "fp32"
    llm = {q: _faster_repack(bundle, q, threads, runs, rng, log) for q in bundle.manifest.llm}
    passed = [q for q, t in llm.items() if t.parity_ok] or list(llm)
    tuning = Tuning(machine=machine_key(), threads=threads, bundle_id=bundle.bundle_id, encoders_ms=encoders_ms,
                    llm=llm, encoder_precision=precision, quant=min(passed, key=lambda q: llm[q].request_ms))
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
                              repack=tuning.llm[tuning.quant].repack) as gem:
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
    best = min(ms, key=ms.get)
    draft_len = best if best and ms[0] >= SPECULATION_MIN_SPEEDUP * ms[best] else 0
    return replace(tuning, request_ms_by_draft_len=ms, draft_len=draft_len)


def _faster_repack(bundle: Bundle, quant: str, threads: int, runs: int, rng, log) -> LlmTiming:
    """The type timed with ggml's weight repacking on and off: on an AMD EPYC (Zen 4, 2 cores) at gem-7b shape,
    off made Q4_K_M's prefill 1.7x faster and Q4_0's 2x slower; which wins depends on the type and the CPU."""
    on, off = (_time_llm(bundle, quant, threads, runs, rng, log, repack) for repack in (True, False))
    best, other = (on, off) if on.request_ms <= off.request_ms else (off, on)
    return replace(best, request_ms_other_repack=other.request_ms)


def _time_llm(bundle: Bundle, quant: str, threads: int, runs: int, rng, log, repack: bool = True) -> LlmTiming:
    from . import constants as K
    from .llm import LlamaLLM, LlmTimings
    from .prompt import build_prompt, prompt_ids

    parity = (bundle.manifest.parity.llm if bundle.manifest.parity else {}).get(quant)
    with LlamaLLM(bundle.llm_path(quant), n_threads=threads, repack=repack) as llm:
        ids = prompt_ids(build_prompt(K.DEFAULT_QUESTION), llm.tokenize)
        s = ids.index(K.IMAGE_TOKEN_INDEX)
        rows = (0.02 * rng.standard_normal((bundle.manifest.rows, llm.n_embd))).astype(np.float32)
        prefill, decode = [], []
        for _ in range(runs + 1):                    # the first is a warm-up
            lt = LlmTimings()
            pos = llm.prefill(ids[:s], rows, ids[s + 1:], lt, reuse_prefix=False)
            llm.generate(pos, 32, lt, ignore_eos=True)
            prefill.append(lt.prefill_ms)
            decode.append(lt.decode_ms / max(1, lt.decode_tokens))
    p, d = statistics.median(prefill[1:]), statistics.median(decode[1:])
    timing = LlmTiming(prefill_ms=round(p, 2), decode_ms_per_token=round(d, 3),
                       request_ms=round(p + REQUEST_TOKENS * d, 1), parity_ok=bool(parity and parity.usable),
                       parity=_parity_text(quant, parity), repack=repack)
    log(f"[tune] llm {quant} (repack {'on' if repack else 'off'}): prefill {timing.prefill_ms} ms, "
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
