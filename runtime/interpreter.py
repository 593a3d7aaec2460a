"""The runtime API: `Interpreter.load(bundle).interpret(path)` -> `Result`.

    with Interpreter.load() as gem:                 # the committed demo bundle
        result = gem.interpret("ecg.hea")           # reads, renders, encodes, prefills, decodes greedily
        print(result.text, result.timings.to_dict())

A request is read -> preprocess -> render -> encode -> inject (prefill) -> decode -> measure, one method
each, every stage timed by one `Timings`. No torch: numpy, ONNX Runtime (or TensorRT), llama.cpp.
"""
from __future__ import annotations

import dataclasses
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import constants as K
from .bundle import Bundle
from .conversation import CUT_SHORT, Answer, Conversation, ConversationCache, position_after
from .encoders import Encoder, load_encoders
from .measure.waves import wave_delineator
from .diagnosis import check_diagnoses
from .errors import BundleError, ConfigError, EcgReadError
from .grounding import check_grounding, compare_with_device
from .image import load_image, png_bytes, preprocess_image, save_png
from .llm import LlamaLLM, LlmTimings, TextStream
from .measure import Measurements, measure_ecg
from .preprocess import preprocess_ecg
from .prompt import build_prompt, prompt_ids, split_prompt
from .readers import EcgRecord, read_ecg
from .readers.signal_checks import checked_record
from .result import Backends, Result
from .revise import LlamaScorer, revise_rhythm, rhythm_contradicted
from .render import render_ecg_image
from .speculate import Drafter, generate_speculative
from .timings import Timings
from .tuning import LoadPlan


@dataclass
class _Prepared:
    """What the encoders take, and what came with it."""
    signal: np.ndarray          # (12, 5000) mV at 500 Hz
    pixels: np.ndarray          # (3, S, S) CLIP-normalized
    warnings: list[str]
    image: object = None        # the PIL image the pixels came from


class Interpreter:
    """Sessions and the LLM context are created once; `interpret` can be called many times."""

    def __init__(self, plan: LoadPlan):
        """Load what `plan` says (LoadPlan.resolve makes one; `Interpreter.load` does both)."""
        self.plan = plan
        bundle = plan.bundle
        self.bundle, self.quant, self.threads = bundle, plan.quant, plan.threads
        self.draft_len = plan.draft_len
        self.drafter = Drafter(bundle.ngram_table()) if plan.draft_len else None
        self.conversations = ConversationCache(plan.state_bytes)   # parked follow-up states (0: only the live one)
        self._live: Conversation | None = None
        t0 = time.perf_counter()
        gguf = bundle.llm_path(plan.quant)          # checked before any native loader runs
        self.encoders: dict[str, Encoder] = load_encoders(bundle, plan.backend, plan.threads, plan.encoder_precision)
        try:
            self.llm = LlamaLLM(gguf, n_ctx=plan.n_ctx, n_batch=512, n_threads=plan.threads,
                                n_gpu_layers=plan.n_gpu_layers, n_seq=plan.n_seq, flash_attn=plan.flash_attn,
                                repack=plan.repack, decode_repacked=plan.decode_repacked)
        except BaseException:
            self._close_encoders()
            raise
        self.llm_backend = f"llama.cpp-{'cuda' if plan.n_gpu_layers else 'cpu'}"
        wave_delineator()               # the measurement's ONNX session, started here: its cost is the load's
        self.image_size = bundle.manifest.preprocessing.image_size
        self.load_ms = (time.perf_counter() - t0) * 1000

    @classmethod
    def load(cls, bundle: str | Path | Bundle | None = None, **choices) -> "Interpreter":
        """Resolve a `LoadPlan` (gem_runtime.tuning: quant, backend, threads, n_ctx, n_gpu_layers, state_bytes,
        n_seq, flash_attn, encoder_precision, draft_len, repack, decode_repacked; None or "auto": what `gem-run
        tune` measured here, else the bundle's default) and load it. state_bytes: memory for the KV states of
        earlier ECGs, so a follow-up on any of them continues where it stopped. n_seq: ECGs `interpret_many`
        decodes together. flash_attn False gives the same text at any thread count and n_seq (see LlamaLLM)."""
        return cls(LoadPlan.resolve(bundle, **choices))

    @property
    def backends(self) -> Backends:
        """Which backend runs each stage (what a Result and the service's health report)."""
        return Backends(ecg_encoder=self.encoders["ecg_encoder"].backend,
                        image_encoder=self.encoders["image_encoder"].backend, llm=self.llm_backend)

    def close(self):
        self._close_encoders()
        if getattr(self, "llm", None) is not None:
            self.llm.close()

    def _close_encoders(self):
        for enc in self.encoders.values():
            enc.close()
        self.encoders = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def interpret(self, ecg: str | Path | EcgRecord, *, image: str | Path | None = None, fs: float | None = None,
                  question: str = K.DEFAULT_QUESTION, max_new_tokens: int = 256,
                  stream: Callable[[str], None] | None = None, save_image: str | Path | None = None,
                  ignore_eos: bool = False, timings: Timings | None = None, keep_image: bool = False,
                  revise: bool = False) -> Result:
        """One ECG -> Result. `timings`: a Timings the caller already started (e.g. around its own read).
        `stream` may raise GenerationStopped to stop generating (a client gone, a deadline passed).
        keep_image: keep the image the model saw (PNG) with the conversation, for a viewer.
        revise: revise a contradicted rhythm statement (gem_runtime.revise; `stream` had the model's own words)."""
        _check_text(question)
        t = timings or Timings()
        lt = LlmTimings()
        with t.request():
            record, img = self._read(ecg, image, fs, t)
            prep = self._prepare(record, img, save_image, t)
            meas = self._measure(record, prep.signal, save_image, t)
            rows = self._encode(prep, t)
            self._park_live()
            pos, prefix, suffix = self._prefill(question, rows, lt, t)
            out, text = self._decode(pos, max_new_tokens, lt, t, stream, ignore_eos, suffix)
            out, text, revisions, model_text = self._revise(revise, pos, suffix[-1], out, text, meas, record.device,
                                                            record.sex, max_new_tokens, t)
        conv = self._open_conversation(pos, out, max_new_tokens, prefix, meas, record,
                                       png_bytes(prep.image) if keep_image else None, question, text)
        result = self._result(record, prep, out, text, max_new_tokens, lt, t, meas, conv.ecg_id)
        return dataclasses.replace(result, revisions=revisions, model_text=model_text) if revisions else result

    def interpret_many(self, ecgs: list[str | Path | EcgRecord], *, question: str = K.DEFAULT_QUESTION,
                       max_new_tokens: int = 256, save_images: list[str | Path | None] | None = None,
                       timings: list[Timings] | None = None, revise: bool = False) -> list[Result | EcgReadError]:
        """Up to n_seq ECGs, each read, rendered and encoded alone, then prefilled as sequences of one context
        and decoded together (one llama_decode per step for all): per ECG its Result, or the EcgReadError that
        refused it. No follow-ups on these. The text can differ from `interpret`'s: decoding several columns at once
        sums in another order (gem-bench batch, 64 tokens: 96/100 demo records identical; random GEM-7B-shape
        weights, whose logits are near ties, 7/8; benchmarks/README.md).
        revise: a record whose rhythm statement is contradicted is revised from its own sequence's KV once all are
        decoded (its sequence copied into sequence 0, where revision cuts back and re-feeds), not interpreted again;
        each record's wall clock includes the others' revisions, as it includes the shared decoding."""
        if len(ecgs) > self.llm.n_seq:
            raise ConfigError(f"{len(ecgs)} ECGs at once, but this Interpreter was loaded with n_seq "
                              f"{self.llm.n_seq}")
        _check_text(question)
        images = save_images or [None] * len(ecgs)
        results: list = [None] * len(ecgs)
        ready = []                                  # (index, record, prep, rows, Timings, LlmTimings, Measurements)
        for i, (ecg, image) in enumerate(zip(ecgs, images)):
            t = timings[i] if timings else Timings()
            try:
                with t.request():
                    record, img = self._read(ecg, None, None, t)
                    prep = self._prepare(record, img, image, t)
                    meas = self._measure(record, prep.signal, image, t)
                    ready.append((i, record, prep, self._encode(prep, t), t, LlmTimings(), meas))
            except EcgReadError as exc:
                results[i] = exc
        if not ready:
            return results
        self._park_live()
        before, after = split_prompt(prompt_ids(build_prompt(question), self.llm.tokenize))
        lts = [r[5] for r in ready]
        with ExitStack() as spans:                  # each record's wall clock includes the shared LLM loop
            for r in ready:
                spans.enter_context(r[4].request())
            positions, first = self.llm.prefill_many(before, [r[3] for r in ready], after, lts)
            outs = self.llm.generate_many(positions, first, max_new_tokens, lts)
            for seq, ((i, record, prep, _, t, lt, meas), out, pos) in enumerate(zip(ready, outs, positions)):
                t.stages_ms["prefill"] += lt.prefill_ms
                t.stages_ms["decode"] += lt.decode_ms
                text, revisions, model_text = self._text(out), [], None
                if revise and rhythm_contradicted(check_diagnoses(text, meas, record.device, sex=record.sex)):
                    self.llm.use_sequence(seq)
                    out, text, revisions, model_text = self._revise(True, pos, after[-1], out, text, meas,
                                                                    record.device, record.sex, max_new_tokens, t)
                result = self._result(record, prep, out, text, max_new_tokens, lt, t, meas, "")
                results[i] = dataclasses.replace(result, revisions=revisions, model_text=model_text) \
                    if revisions else result
        return results

    def _text(self, out: list[int]) -> str:
        pieces: list[str] = []
        sink = TextStream(self.llm, pieces.append)
        for tok in out:
            sink(tok)
        return "".join(pieces).strip()

    def _result(self, record: EcgRecord, prep: "_Prepared", out: list[int], text: str, max_new_tokens: int,
                lt: LlmTimings, t: Timings, meas: Measurements, ecg_id: str) -> Result:
        if len(out) == max_new_tokens:
            prep.warnings.append(f"stopped at the limit of {max_new_tokens} new tokens before end of text")
        return Result(text=text, source=record.source, new_tokens=len(out), prompt_positions=lt.prefill_positions,
                      timings=t, decode_tok_s=round(lt.decode_tok_s, 2),
                      backends=self.backends,
                      bundle_id=self.bundle.bundle_id, quant=self.quant, threads=self.threads,
                      measurements=meas, grounding=check_grounding(text, meas, record.device),
                      warnings=prep.warnings, prefix_cached=lt.prefix_cached, token_ids=out, device=record.device,
                      device_comparison=compare_with_device(meas, record.device), ecg_id=ecg_id,
                      speculation=lt.speculation, diagnoses=check_diagnoses(text, meas, record.device, sex=record.sex),
                      lead_issues=dict(record.lead_issues), sex=record.sex)

    def ask(self, ecg: "Result | str", question: str, *, max_new_tokens: int = 256,
            stream: Callable[[str], None] | None = None) -> Answer:
        """A follow-up question on an ECG already interpreted (its Result or ecg_id): only the new turn is
        evaluated, after the conversation's KV state. Raises ConversationNotFound if its state is not kept."""
        ecg_id = ecg.ecg_id if isinstance(ecg, Result) else str(ecg)
        conv = self.conversations.get(ecg_id)
        if not question.strip():
            raise ConfigError("the question is empty")
        _check_text(question)
        t, lt = Timings(), LlmTimings()
        ids = conv.next_turn_ids(question, self.llm.tokenize)
        conv.check_room(ids, self.llm.n_ctx)            # too long: refused before the KV is touched, conv kept
        try:
            with t.request():
                with t.stage("prefill"):                 # the new turn only (after restoring a parked state)
                    if conv is not self._live:
                        self._park_live()
                        self.llm.restore_state(conv.state, conv.prefix_ids)
                        conv.state, self._live = None, conv
                    pos = self.llm.eval_tokens(ids, conv.pos, "last")
                out, text = self._decode(pos, max_new_tokens, lt, t, stream, False, ids)
        except BaseException:
            self.conversations.drop(ecg_id, CUT_SHORT)      # a turn cut short leaves the sequence half-written
            self._live = None
            raise
        conv.pos, conv.pending = position_after(pos, out, max_new_tokens, self.llm.n_ctx)
        conv.turns.append((question, text))
        return Answer(ecg_id=ecg_id, question=question, text=text, new_tokens=len(out),
                      prompt_positions=len(ids), timings=t, token_ids=out,
                      grounding=check_grounding(text, conv.measurements, conv.device),
                      diagnoses=check_diagnoses(text, conv.measurements, conv.device, sex=conv.sex))

    def _revise(self, revise: bool, pos: int, last_prompt_id: int, out: list[int], text: str, meas, device, sex,
                max_new_tokens: int, t: Timings):
        """(ids, text, revisions, the model's own text or None): gem_runtime.revise on what was just generated."""
        if not revise:
            return out, text, [], None
        with t.stage("decode"):
            revised = revise_rhythm(LlamaScorer(self.llm, pos, last_prompt_id, out), out, meas, device=device, sex=sex,
                                    max_new_tokens=max_new_tokens)
        if not revised.revisions:
            return out, text, [], None
        return revised.ids, self._text(revised.ids), revised.revisions, text

    # --- conversations ---
    def conversation(self, ecg_id: str) -> Conversation:
        """The kept conversation of an ECG; ConversationNotFound (with the reason) if none is kept."""
        return self.conversations.get(ecg_id)

    @property
    def conversation_count(self) -> int:
        return len(self.conversations)

    @property
    def conversation_bytes(self) -> int:
        """Memory held by parked follow-up states."""
        return self.conversations.nbytes

    def _park_live(self) -> None:
        """Before the context is used for another ECG: keep the live conversation's state, if memory allows."""
        live, self._live = self._live, None
        if live is None:
            return
        if self.conversations.max_bytes <= 0:
            self.conversations.drop(live.ecg_id)
            return
        live.state = self.llm.save_state()
        self.conversations.put(live)

    def _open_conversation(self, pos, out, max_new_tokens, prefix, meas, record, image_png, question, text):
        next_pos, pending = position_after(pos, out, max_new_tokens, self.llm.n_ctx)
        conv = Conversation(ecg_id=uuid.uuid4().hex, pos=next_pos, pending=pending, prefix_ids=prefix,
                            measurements=meas, device=record.device, sex=record.sex, image_png=image_png,
                            turns=[(question, text)])
        self.conversations.put(conv)
        self._live = conv
        return conv

    # --- the stages ---
    def _read(self, ecg, image, fs, t: Timings):
        with t.stage("read"):
            record = read_ecg(ecg, fs=fs) if not isinstance(ecg, EcgRecord) else checked_record(ecg)
            img = load_image(image) if image is not None else None
        return record, img

    def _prepare(self, record: EcgRecord, img, save_image, t: Timings) -> _Prepared:
        with t.stage("preprocess"):
            x, warnings = preprocess_ecg(record)                      # (12, 5000) float32
        if img is None:
            with t.stage("render"):
                img = render_ecg_image(x, fs=K.ECG_FS)                # what the training images were drawn with
        if save_image is not None:
            save_png(img, Path(save_image))
        with t.stage("preprocess"):
            pixels = preprocess_image(img, self.image_size)           # (3, S, S)
        return _Prepared(x, pixels, list(record.warnings) + warnings, img)

    def _encode(self, prep: _Prepared, t: Timings) -> np.ndarray:
        with t.stage("ecg_encoder"):
            ecg_rows = self.encoders["ecg_encoder"].run(prep.signal[None])[0]     # (101, H)
        with t.stage("image_encoder"):
            img_rows = self.encoders["image_encoder"].run(prep.pixels[None])[0]   # (N, H)
        rows = np.concatenate([ecg_rows, img_rows], axis=0)                       # ECG rows first, as GEM
        if rows.shape[0] != self.bundle.manifest.rows:
            raise BundleError(self.bundle.root, f"encoders gave {rows.shape[0]} rows, "
                                                f"manifest says {self.bundle.manifest.rows}")
        return rows

    def _prefill(self, question: str, rows: np.ndarray, lt: LlmTimings, t: Timings
                 ) -> tuple[int, list[int], list[int]]:
        """GEM's prompt with the encoder rows injected at the <image> sentinel: (next position, the ids before
        the rows, the ids after them)."""
        with t.stage("prefill"):
            before, after = split_prompt(prompt_ids(build_prompt(question), self.llm.tokenize))
            return self.llm.prefill(before, rows, after, lt), before, after

    def _decode(self, pos: int, max_new_tokens: int, lt: LlmTimings, t: Timings, stream, ignore_eos: bool,
                history: list[int]):
        """Greedy decoding, speculative where draft_len > 0 (the same tokens); history: the prompt's last ids."""
        pieces: list[str] = []

        def on_text(s: str):
            pieces.append(s)
            if stream:
                stream(s)

        sink = TextStream(self.llm, on_text)

        def on_token(tok: int):
            t.first_token()
            sink(tok)

        with t.stage("decode"):
            if self.draft_len:
                out = generate_speculative(self.llm, pos, history, max_new_tokens, self.drafter, self.draft_len, lt,
                                           ignore_eos=ignore_eos, on_token=on_token)
            else:
                out = self.llm.generate(pos, max_new_tokens, lt, ignore_eos=ignore_eos, on_token=on_token)
        return out, "".join(pieces).strip()

    def _measure(self, record: EcgRecord, x: np.ndarray, save_image, t: Timings) -> Measurements:
        """The evidence for the grounding check, made before the model sees the record (~20 ms): a record without
        usable signal (leads off, flat, saturated, noise) is refused here and never reaches the model."""
        with t.stage("measure"):
            meas = measure_ecg(x, K.ECG_FS)
        if not meas.has_signal:
            raise EcgReadError(record.source, meas.quality.reasons.get("hr_bpm") or "no usable signal")
        if save_image is not None and meas.median_beats is not None:  # fiducials on the median beats, beside it
            from .render_median import draw_median_beats

            draw_median_beats(meas, median_beats_path(Path(save_image)))
        return meas


def median_beats_path(image_path: Path) -> Path:
    return image_path.with_name(image_path.stem + "-median-beats.png")


def _check_text(question: str) -> None:
    """A question the tokenizer can take: JSON's "\\ud800" (or a byte that is not UTF-8, read with surrogateescape)
    decodes to an unpaired surrogate, which it cannot encode."""
    try:
        question.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ConfigError(f"the question holds {question[e.start]!r} at {e.start}, an unpaired surrogate, "
                          "not text") from None
