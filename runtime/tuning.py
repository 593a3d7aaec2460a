"""The tune file: what `gem-run tune` measured on this machine, and the load plan resolved from it.

    tuning = read_tuning(bundle, threads)     # <bundle>.tune.json, or None (absent, another machine, threads
                                              # or bundle)
    plan = LoadPlan.resolve(bundle, threads=2, quant=None)   # every choice made once: the caller's, else the
                                                             # tune file's, else the bundle's default
    Interpreter(plan)

Reading the choice is apart from timing it (`gem_runtime.tune`, which runs an Interpreter), so loading never
imports the timing code and the two cannot import each other.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .bundle import Bundle
from .files import atomic_write
from .manifest import ENCODERS

INT8_MIN_SPEEDUP = 1.2        # int8 encoders approximate: taken only where they are clearly faster (the demo's
                              # tiny encoders gain 1.2-1.4x on 5 ms, and its text changed on 15 of 40 ECGs)
REQUEST_TOKENS = 128          # a request's cost: prefill + this many decode steps (GEM's reports run ~100-250)
DRAFT_LENGTHS = (0, 1, 2, 3, 4, 6, 8)    # 0: plain decoding
SPECULATION_MIN_SPEEDUP = 1.05
DECODE_REPACKED_MIN_SPEEDUP = 1.05   # a second copy of the weights in memory: not for a difference in the noise
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
    decode_repacked: bool = False  # with repack off: decoding on a repacked copy was faster still (and allowed)
    request_ms_decode_repacked: float | None = None  # that request, where it was timed


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
    gates: dict = field(default_factory=dict)   # {knob: why it was not taken with `quant`}: its findings gate
    knob_findings: dict = field(default_factory=dict)   # {knob: "matched/n"} with `quant` (gem-export knobs), each
                                                        # knob's findings gate as the manifest records it
    kernels: str = ""             # kernels_key() of the libraries timed; a tune file without it predates the key

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


def kernels_key() -> str:
    """The kernels a tune timed: llama-cpp-python's version and the SIMD its ggml was compiled for, and ONNX
    Runtime's version. The same CPU runs other kernels after an upgrade or a rebuild (a wheel from pip's cache
    built elsewhere, or for AVX2 alone), and they move the choices: on this project's Zen 4, ggml built for AVX2
    alone prefills Q4_0 at 0.62x and makes Q4_K_M's repacking a wash, where the AVX-512 build prefills it 1.7x
    faster unrepacked (benchmarks/peer.md, "AVX2"). So a tune holds only for the kernels it timed."""
    import llama_cpp
    import onnxruntime

    return f"llama-cpp-python {llama_cpp.__version__} ({ggml_isa()}) | onnxruntime {onnxruntime.__version__}"


def ggml_isa() -> str:
    """The SIMD the loaded ggml was compiled for, from llama.cpp's system info ("SSE3 ... AVX2 F16C FMA ...")."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    return " ".join(m.group(1) for m in re.finditer(r"([A-Z0-9_]+) = 1\b", info))


def default_threads() -> int:
    """gem-run's threads when not given: all cores, at most 8."""
    return min(8, os.cpu_count() or 1)


def tuned_quant(bundle: Bundle, tuning: Tuning | None) -> str:
    """The LLM type `gem-run tune` chose for this bundle here, else the bundle's default."""
    return tuning.quant if tuning and tuning.quant in bundle.manifest.llm else bundle.default_quant()


def tuned_repack(tuning: Tuning | None, quant: str) -> tuple[bool, bool]:
    """(repack, decode_repacked): whether weight repacking made this type's request faster here (tune times both,
    and the prompt unrepacked with decoding repacked), else on (llama.cpp's)."""
    timing = tuning.llm.get(quant) if tuning else None
    return (timing.repack, timing.decode_repacked) if timing else (True, False)


def second_copy_fits(gguf: Path) -> bool:
    """decode_repacked holds a second, repacked copy of the weights in anonymous memory: it must leave a quarter
    of the memory available now (/proc/meminfo MemAvailable) free. False where that cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            free_kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return False
    return Path(gguf).stat().st_size <= 0.75 * free_kb * 1024


def tuned_draft_len(tuning: Tuning | None, quant: str) -> int:
    """The draft length `gem-run tune` measured fastest for this type here, else 0 (plain decoding)."""
    return tuning.draft_len if tuning and tuning.quant == quant else 0


def tuned_encoder_precision(bundle: Bundle, tuning: Tuning | None) -> dict[str, str]:
    """{encoder: "fp32" | "int8"}: tune's choice where its int8 encoder is usable, else fp32."""
    fp32 = dict.fromkeys(ENCODERS, "fp32")
    if tuning is None:
        return fp32
    return {**fp32, **{name: p if p == "fp32" or int8_problem(bundle, name) is None else "fp32"
                       for name, p in tuning.encoder_precision.items() if name in ENCODERS}}


def tuning_path(bundle: Bundle) -> Path:
    return bundle.root.with_name(bundle.root.name + ".tune.json")


def read_tuning(bundle: Bundle, threads: int) -> Tuning | None:
    """The measured choice for this bundle on this machine, with these kernels, at these threads, else None.
    A tune file left stale (another CPU, other kernels, a rebuilt bundle) gets a one-line notice; another thread
    count is the caller's choice and passes silently."""
    path = tuning_path(bundle)
    try:
        data = json.loads(path.read_text())
        tuning = Tuning(**{**data, "llm": {q: LlmTiming(**t) for q, t in data["llm"].items()},
                           "request_ms_by_draft_len": {int(k): v for k, v in
                                                       data.get("request_ms_by_draft_len", {}).items()}})
    except (OSError, ValueError, TypeError, KeyError):
        return None                     # absent or not ours: the bundle's defaults, as before tuning
    stale = [what for what, then, now in (("another CPU", tuning.machine, machine_key()),
                                          ("other kernels", tuning.kernels, kernels_key()),
                                          ("another build of the bundle", tuning.bundle_id, bundle.bundle_id))
             if then != now]
    if stale:
        print(f"gem-edge: notice: {path}: measured on {' and '.join(stale)}; not used (run gem-run tune again)",
              file=sys.stderr, flush=True)
        return None
    return tuning if tuning.threads == threads else None


def write_tuning(bundle: Bundle, tuning: Tuning) -> Path:
    return atomic_write(tuning_path(bundle), json.dumps(tuning.to_dict(), indent=1) + "\n", durable=False)


def timing_only(bundle: Bundle) -> bool:
    """A bundle of random weights made to time the runtime (gem-bench make-7b writes the manifest's note): its
    parity gates pass or fail by chance on near-tied logits, so tune chooses by speed alone."""
    return bool(bundle.manifest.note)


def knob_problem(bundle: Bundle, quant: str, knob: str) -> str | None:
    """Why `gem-run tune` may not take `knob` with LLM type `quant` (None: it may): its findings against plain
    decoding's (manifest Parity.knobs, `gem-export knobs`) under FINDINGS_MIN_SHARE, or never compared. A bundle
    made for timing only (its manifest's note: random weights, which fail every findings gate) is not gated."""
    parity = bundle.manifest.parity
    if timing_only(bundle) and not (parity and parity.knobs.get(quant)):
        return None
    return parity.knob_problem(quant, knob) if parity else f"{knob}: findings not compared (gem-export knobs)"


def knob_findings(bundle: Bundle, quant: str) -> dict[str, str]:
    """Each knob's findings against plain decoding's with LLM type `quant`, as "matched/n" (the manifest's
    Parity.knobs): what the gate decided on, passed or not, so the tune file shows it for every knob."""
    parity = bundle.manifest.parity
    return {k: f"{f.findings_match}/{f.n}" for k, f in (parity.knobs.get(quant, {}) if parity else {}).items()}


def int8_problem(bundle: Bundle, name: str) -> str | None:
    """Why the bundle's int8 `name` may not be used (None: it may)."""
    entry = bundle.manifest.encoders[name]
    if not entry.int8_file:
        return f"the bundle has no int8 {name} (gem-export int8 adds one)"
    parity = (bundle.manifest.parity.encoders if bundle.manifest.parity else {}).get(f"{name}.int8")
    if parity is None or not parity.ok:
        return f"its int8 {name} failed its parity gate ({parity.problem if parity else 'not checked'})"
    return None




PRECISIONS = ("auto", "fp32", "int8")


@dataclass(frozen=True)
class LoadPlan:
    """Everything `Interpreter` loads with, resolved once: the caller's overrides, else what `gem-run tune`
    measured here (read once), else the bundle's defaults. The batch engines, the service and the listener
    resolve one plan and load from it, so they all make the same choices."""
    bundle: Bundle
    quant: str
    backend: str                   # the encoders' backend, resolved: "tensorrt", "cuda" or "cpu"
    threads: int
    n_gpu_layers: int
    encoder_precision: dict        # {encoder: "fp32" | "int8"}
    draft_len: int = 0             # speculation's tokens per step (0: plain decoding)
    repack: bool = True            # ggml's CPU weight repacking
    decode_repacked: bool = False  # with repack off: decode on a second, repacked copy of the weights
    flash_attn: bool | None = None  # None: llama.cpp's choice; speculation turns it off
    n_ctx: int = 2048
    n_seq: int = 1                 # ECGs `interpret_many` decodes together
    state_bytes: int = 0           # memory for the parked follow-up states of earlier ECGs

    @classmethod
    def resolve(cls, bundle: str | Path | Bundle | None = None, *, quant: str | None = None, backend: str = "auto",
                threads: int | None = None, n_ctx: int = 2048, n_gpu_layers: int | None = None,
                state_bytes: int = 0, n_seq: int = 1, flash_attn: bool | None = None,
                encoder_precision: str | dict[str, str] = "auto", draft_len: int | None = None,
                repack: bool | None = None, decode_repacked: bool | None = None) -> "LoadPlan":
        """None (or "auto") for a choice: tune's for this machine, threads and bundle, else the default. The GPU
        takes the bundle's default type and plain decoding (tune times the CPU)."""
        from .bundle import default_bundle
        from .encoders import resolve_backend
        from .errors import BackendUnavailableError
        from .llama_handles import has_gpu_offload

        b = bundle if isinstance(bundle, Bundle) else Bundle.open(Path(bundle) if bundle else default_bundle())
        threads = threads or default_threads()
        if n_gpu_layers is None:
            n_gpu_layers = 999 if backend in ("cuda", "tensorrt") else 0
        if n_gpu_layers and not has_gpu_offload():
            if backend in ("cuda", "tensorrt"):
                raise BackendUnavailableError(f"backend {backend!r}: this llama-cpp-python build has no GPU offload")
            n_gpu_layers = 0
        backend = resolve_backend(b, backend)      # the GPU layers above follow the backend as asked, not "auto"
        on_cpu = backend == "cpu"
        tuning = None if n_gpu_layers else read_tuning(b, threads)      # read once, for every choice
        quant = quant or (b.default_quant() if n_gpu_layers else tuned_quant(b, tuning))
        if draft_len is None:
            draft_len = tuned_draft_len(tuning, quant) if n_seq == 1 and not n_gpu_layers else 0
        tuned = tuned_repack(tuning, quant) if not n_gpu_layers else (True, False)
        if repack is None:
            repack = tuned[0]
        if decode_repacked is None:
            decode_repacked = tuned[1] and not repack and n_seq == 1
            if decode_repacked and not second_copy_fits(b.llm_path(quant)):
                decode_repacked = False     # tune's memory is not this process's: never risk the OOM killer
                print(f"gem-edge: notice: {b.llm_path(quant).name}: decoding on a repacked copy (tuned) needs its "
                      "size again in free memory; decoding unrepacked", file=sys.stderr, flush=True)
        if draft_len:
            flash_attn = False          # a k-token verify computes as k one-token decodes only with it off
        if not isinstance(encoder_precision, dict):
            encoder_precision = _encoder_precision(b, on_cpu, encoder_precision, tuning if on_cpu else None)
        return cls(bundle=b, quant=quant, backend=backend, threads=threads, n_gpu_layers=n_gpu_layers,
                   encoder_precision=dict(encoder_precision), draft_len=draft_len, repack=repack,
                   decode_repacked=bool(decode_repacked), flash_attn=flash_attn, n_ctx=n_ctx, n_seq=n_seq,
                   state_bytes=state_bytes)


def _encoder_precision(bundle: Bundle, on_cpu: bool, requested: str, tuning: Tuning | None) -> dict[str, str]:
    """"int8" is refused in one line where the bundle's int8 encoders are missing or failed their gate, or the
    backend is not the CPU; "auto" takes tune's choice (read for the CPU only), else fp32."""
    from .errors import BackendUnavailableError

    if requested not in PRECISIONS:
        raise BackendUnavailableError(f"unknown encoder precision {requested!r}; choose from {', '.join(PRECISIONS)}")
    if requested == "int8":
        if not on_cpu:
            raise BackendUnavailableError("int8 encoders are for the CPU backend (GPUs run fp16)")
        for name in ENCODERS:
            if problem := int8_problem(bundle, name):
                raise BackendUnavailableError(f"{bundle.root}: --encoder-precision int8: {problem}")
        return dict.fromkeys(ENCODERS, "int8")
    return tuned_encoder_precision(bundle, tuning if requested == "auto" else None)
