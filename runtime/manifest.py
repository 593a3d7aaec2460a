"""The bundle contract: every name a bundle uses (files, LLM types, encoder I/O tensors) and its typed manifest.

Owned by the runtime because a cart reads it; `gem-export` writes bundles through it, and nothing else spells a
manifest key. A manifest is parsed by `Manifest.from_dict`, which checks every key against the dataclasses
below and names the path of the first bad one (`manifest.encoders.ecg_encoder.rows: missing`).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

FORMAT = "gem-edge-bundle"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST_FILE = "manifest.json"
TOKENIZER_FILE = "tokenizer.model"


# --- names ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EncoderIO:
    """One encoder graph: its file stem and the names of its input and output tensors."""

    name: str
    input: str
    output: str

    def onnx_file(self, fp16: bool = False) -> str:
        return f"{self.name}.fp16.onnx" if fp16 else f"{self.name}.onnx"

    @property
    def int8_file(self) -> str:
        return f"{self.name}.int8.onnx"


ECG_ENCODER = EncoderIO("ecg_encoder", "ecg", "ecg_embeds")                 # (B, 12, 5000) -> (B, 101, H)
IMAGE_ENCODER = EncoderIO("image_encoder", "pixel_values", "image_embeds")  # (B, 3, S, S) -> (B, N, H)
ENCODERS = {e.name: e for e in (ECG_ENCODER, IMAGE_ENCODER)}   # ECG rows come first in the prompt, as GEM


@dataclass(frozen=True)
class LlmType:
    """A llama.cpp weight type a bundle may hold: its name, its `llama_ftype` and its file."""

    name: str
    llama_ftype: int      # enum llama_ftype in llama.h (MOSTLY_F16 = 1, MOSTLY_Q8_0 = 7, ...)

    @property
    def file(self) -> str:
        return f"llm-{self.name}.gguf"


# f16 is written by the converter; the others by llama.cpp's quantizer from it. Smallest last.
LLM_TYPES = {t.name: t for t in (
    LlmType("f16", 1), LlmType("q8_0", 7), LlmType("q6_k", 18), LlmType("q5_k_m", 17),
    LlmType("q4_k_m", 15), LlmType("iq4_nl", 25), LlmType("q4_0", 2))}
QUANTS = tuple(LLM_TYPES)                         # every type gem-export writes and gem-run loads
QUANTIZED = tuple(q for q in QUANTS if q != "f16")


# --- the manifest -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileEntry:
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Preprocessing:
    leads: list[str]
    ecg_fs: int
    ecg_samples: int
    image_size: int
    image_aspect_ratio: str
    clip_mean: list[float]
    clip_std: list[float]


@dataclass(frozen=True)
class Prompt:
    template: str
    system: str
    roles: list[str]
    sep: str
    sep2: str
    image_token: str
    image_token_index: int
    ecg_rows: int
    image_rows: int
    default_question: str
    eos_id: int
    bos_id: int


@dataclass(frozen=True)
class EncoderEntry:
    file: str                      # fp32 graph: the CPU runs it (faster and exact there)
    fp16_file: str                 # fp16 weights, fp32 I/O: ONNX Runtime CUDA
    rows: int                      # LLM rows per sample
    input: list                    # [tensor name, [dims]], e.g. ["ecg", ["batch", 12, 5000]]
    output: list
    opset: int
    external_data: bool
    export_s: float
    tensorrt_check: dict           # export/trt.py static_check report (ops, problems), informational
    int8_file: str | None = None   # int8 weights (ONNX Runtime dynamic quantization), for CPUs: used only
                                   # where its parity entry "<name>.int8" passed and tuning found it faster


@dataclass(frozen=True)
class EncoderParity:
    ok: bool
    cosine: float | None = None
    max_abs_diff: float | None = None
    min_cosine: float | None = None
    shapes: list | None = None
    problem: str | None = None


FINDINGS_MIN_SHARE = 0.98       # an LLM type is a default only where its findings match PyTorch's this often
# The speed knobs besides the LLM type, each gated like it (Parity.knobs): int8 encoders, ggml's weight repacking
# off, flash attention off, and speculative decoding at each draft length (draft_knob(k)).
INT8_ENCODERS, REPACK_OFF, FLASH_ATTN_OFF = "int8_encoders", "repack_off", "flash_attn_off"
DECODE_REPACKED = "decode_repacked"     # the prompt on unrepacked weights, decoding on a repacked copy


def draft_knob(draft_len: int) -> str:
    return f"draft_len_{draft_len}"


@dataclass(frozen=True)
class FindingsParity:
    """An LLM type's reports against PyTorch's on fresh synthetic ECGs (`gem-export findings`): token identity is
    too strict for a quantized model, so also whether the findings are the same: the conditions named, and every
    number PyTorch states stated too, within the grounding check's tolerance of PyTorch's value."""

    n: int
    seed: int
    tokens_identical: int
    findings_match: int          # conditions and numbers both
    conditions_match: int
    numbers_match: int

    @property
    def share(self) -> float:
        return self.findings_match / self.n if self.n else 0.0


@dataclass(frozen=True)
class LlmParity:
    """f16: greedy text vs torch (greedy_tokens, identical_prefix, agree); quantized: teacher-forced top-1."""

    ok: bool
    cosine: float
    problem: str
    greedy_tokens: int | None = None
    identical_prefix: int | None = None
    agree: int | None = None
    top1_agreement: float | None = None
    min_cosine: float | None = None
    min_top1: float | None = None
    findings: FindingsParity | None = None

    @property
    def usable(self) -> bool:
        """Its export gate passed and, where findings were compared (gem-export findings), they matched on at
        least FINDINGS_MIN_SHARE of the ECGs: what may be a default, by export or by tune."""
        return self.ok and (self.findings is None or self.findings.share >= FINDINGS_MIN_SHARE)


@dataclass(frozen=True)
class Parity:
    encoders: dict[str, EncoderParity] = field(default_factory=dict)
    llm: dict[str, LlmParity] = field(default_factory=dict)
    # every speed knob `gem-run tune` may take (KNOBS), per LLM type: its reports against the same type's with fp32
    # encoders and plain decoding, by findings (`gem-export knobs`): taken only at FINDINGS_MIN_SHARE
    knobs: dict[str, dict[str, FindingsParity]] = field(default_factory=dict)

    def knob_problem(self, quant: str, knob: str) -> str | None:
        """Why `knob` may not be taken with LLM type `quant` (None: its findings matched)."""
        f = self.knobs.get(quant, {}).get(knob)
        if f is None:
            return f"{knob} with {quant}: findings not compared (gem-export knobs)"
        if f.share < FINDINGS_MIN_SHARE:
            return (f"{knob} with {quant}: findings as the reference's on {f.findings_match}/{f.n} ECGs, under "
                    f"{FINDINGS_MIN_SHARE:.0%}")
        return None


@dataclass(frozen=True)
class Manifest:
    format: str
    format_version: int
    complete: bool
    model: dict                    # the checkpoint's config.json (LLaVA / HF layout), verbatim
    preprocessing: Preprocessing
    prompt: Prompt
    tools: dict                    # versions of the export's tools, informational
    llm: dict[str, str]            # LLM type -> file
    encoders: dict[str, EncoderEntry]
    files: dict[str, FileEntry]    # every file of the bundle, with size and sha256
    parity: Parity | None = None
    tensorrt: dict | None = None   # export/trt.py build report ({"status": ...}), informational
    bundle_id: str = ""
    build_seconds: float | None = None
    default_quant: str | None = None
    gate_failures: list[str] | None = None
    note: str | None = None        # why a bundle is usable although a gate failed (gem-bench: timing only)
    ngram_file: str | None = None  # speculative decoding's draft table of the training reports (speculate.py)

    def __post_init__(self):
        for key in ("num_hidden_layers", "hidden_size", "vocab_size"):
            if not isinstance(self.model.get(key), int):
                raise ManifestKeyError(f"model.{key}", "missing" if key not in self.model else "not an integer")
        for q, file in self.llm.items():
            if q not in LLM_TYPES:
                raise ManifestKeyError(f"llm.{q}", f"unknown LLM type (this runtime knows {', '.join(QUANTS)})")
            if file != LLM_TYPES[q].file:
                raise ManifestKeyError(f"llm.{q}", f"file {file!r}, expected {LLM_TYPES[q].file!r}")
        if set(self.encoders) != set(ENCODERS):
            raise ManifestKeyError("encoders", f"has {sorted(self.encoders)}, expected {sorted(ENCODERS)}")
        if self.default_quant is not None and self.default_quant not in self.llm:
            raise ManifestKeyError("default_quant", f"{self.default_quant!r} is not one of llm's {sorted(self.llm)}")

    @property
    def name(self) -> str:
        return str(self.model.get("gem_edge", {}).get("name", ""))

    @property
    def num_layers(self) -> int:
        return self.model["num_hidden_layers"]

    @property
    def rows(self) -> int:
        """Encoder rows the LLM receives per ECG (ECG + image)."""
        return self.prompt.ecg_rows + self.prompt.image_rows

    @classmethod
    def from_dict(cls, data: Any) -> "Manifest":
        """Check every key of a parsed manifest.json; raises ManifestKeyError naming the first bad path."""
        return _build(cls, data, "manifest")

    def to_dict(self) -> dict:
        """JSON-ready, with optional fields that are unset left out."""
        return _plain(self)


class ManifestKeyError(ValueError):
    """A manifest key that is missing, unknown or of the wrong type; `path` is dotted (`prompt.ecg_rows`)."""

    def __init__(self, path: str, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}")


# --- checked construction from JSON ---------------------------------------------------------------------

def _build(tp, value, path: str):
    """`value` (parsed JSON) as type `tp`, checked all the way down."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _build(inner, value, path)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ManifestKeyError(path, f"expected an object, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ManifestKeyError(f"{path}.{unknown[0]}", "unknown key")
        kwargs = {}
        for name, f in fields.items():
            if name not in value:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise ManifestKeyError(f"{path}.{name}", "missing")
                continue
            kwargs[name] = _build(hints[name], value[name], f"{path}.{name}")
        try:
            return tp(**kwargs)
        except ManifestKeyError as e:       # __post_init__ checks, with their path under this object
            raise ManifestKeyError(f"{path}.{e.path}", e.problem) from None
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ManifestKeyError(path, f"expected an object, got {type(value).__name__}")
        if not args:
            return value
        return {k: _build(args[1], v, f"{path}.{k}") for k, v in value.items()}
    if origin is list or tp is list:
        if not isinstance(value, list):
            raise ManifestKeyError(path, f"expected a list, got {type(value).__name__}")
        return value if not args else [_build(args[0], v, f"{path}[{i}]") for i, v in enumerate(value)]
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return _check(ok, float(value) if ok else value, "a number", path)
    if tp is int:
        return _check(isinstance(value, int) and not isinstance(value, bool), value, "an integer", path)
    if tp is bool:
        return _check(isinstance(value, bool), value, "true or false", path)
    if tp is str:
        return _check(isinstance(value, str), value, "a string", path)
    raise TypeError(f"manifest schema: no rule for {tp!r} at {path}")    # our bug, not the file's


def _check(ok: bool, value, what: str, path: str):
    if not ok:
        raise ManifestKeyError(path, f"expected {what}, got {type(value).__name__} {value!r:.40}")
    return value


def _plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (getattr(obj, f.name) is None and f.default is None)}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def in_progress_marker() -> dict:
    """What an export writes first: a manifest the runtime refuses until the export completes."""
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "complete": False}
