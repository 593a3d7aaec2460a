"""decode_repacked: the prompt prefilled on unrepacked weights, its KV state handed to a second context on a
repacked copy for decoding (`gem-run tune` takes it where each setting is the faster at its part), on the committed
demo model with real llama.cpp: the hand-over loses nothing, follow-ups and parked conversations run on the decode
context, and the prefill context keeps reusing the prompt prefix."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from gem_runtime import Interpreter
from gem_runtime.errors import LlmError
from gem_runtime.bundle import Bundle
from gem_runtime.llm import LlamaLLM, LlmTimings
from gem_runtime.tuning import (LlmTiming, LoadPlan, Tuning, kernels_key, machine_key, second_copy_fits,
                                write_tuning)

DEMO = Path(__file__).resolve().parents[1] / "bundles" / "demo"
DICOM = get_testdata_file("waveform_ecg.dcm")
QUANT = "q4_k_m"               # a K-quant: ggml repacks it on AVX2 and AVX-512 CPUs


def _prompt(llm: LlamaLLM):
    from gem_runtime import constants as K
    from gem_runtime.prompt import build_prompt, prompt_ids, split_prompt

    before, after = split_prompt(prompt_ids(build_prompt(K.DEFAULT_QUESTION), llm.tokenize))
    rows = (0.05 * np.random.default_rng(3).standard_normal((40, llm.n_embd))).astype(np.float32)
    return before, rows, after


def test_the_decode_context_continues_the_prefill_contexts_state_exactly():
    """Split decoding gives token for token what a repacked model gives when it is handed the unrepacked prompt's
    KV state and first token by hand, and a second request reuses the prefix on the prefill context."""
    path = DEMO / f"llm-{QUANT}.gguf"
    with LlamaLLM(path, n_threads=1, repack=False, decode_repacked=True) as split:
        before, rows, after = _prompt(split)
        t = LlmTimings()
        pos = split.prefill(before, rows, after, t)
        got = split.generate(pos, 24, t, ignore_eos=True)
        again = LlmTimings()
        assert split.generate(split.prefill(before, rows, after, again), 24, again, ignore_eos=True) == got
        assert again.prefix_cached and not t.prefix_cached

    with LlamaLLM(path, n_threads=1, repack=False) as plain, LlamaLLM(path, n_threads=1, repack=True) as packed:
        pos = plain.prefill(before, rows, after, LlmTimings())
        first = int(np.argmax(plain.logits()))
        packed.restore_state(plain.save_state(), before)
        want, tok = [first], first
        for _ in range(23):
            pos = packed.eval_tokens([tok], pos)
            tok = int(np.argmax(packed.logits()))
            want.append(tok)
    assert got == want


def test_follow_ups_and_parked_conversations_run_on_the_decode_context(ptb):
    """A follow-up asked at once, and one asked after another ECG parked the conversation (its state restored onto
    the decode context), answer alike."""
    with Interpreter.load(DEMO, quant=QUANT, threads=1, state_bytes=1 << 26, draft_len=0, repack=False,
                          decode_repacked=True) as gem:
        assert gem.llm.decode_repacked and gem.plan.decode_repacked
        first = gem.interpret(DICOM, max_new_tokens=48)
        at_once = gem.ask(first, "Is the QT interval prolonged?", max_new_tokens=24)
        again = gem.interpret(DICOM, max_new_tokens=48)
        gem.interpret(ptb, max_new_tokens=16, question="What is the heart rate?")
        parked = gem.ask(again, "Is the QT interval prolonged?", max_new_tokens=24)
    assert again.text == first.text and at_once.text.strip() and parked.text == at_once.text


def test_it_is_refused_for_several_sequences():
    with pytest.raises(LlmError, match="one sequence"):
        LlamaLLM(DEMO / f"llm-{QUANT}.gguf", n_threads=1, repack=False, decode_repacked=True, n_seq=2)


def test_a_tuned_split_loads_where_a_second_copy_fits_and_only_for_one_sequence(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    copy = tmp_path / "demo"
    shutil.copytree(DEMO, copy)
    bundle = Bundle.open(copy)
    split = LlmTiming(prefill_ms=1.0, decode_ms_per_token=1.0, request_ms=2.0, parity_ok=True, parity="",
                      repack=False, decode_repacked=True)
    write_tuning(bundle, Tuning(machine=machine_key(), threads=1, bundle_id=bundle.bundle_id, encoders_ms={},
                                llm={QUANT: split}, encoder_precision={}, quant=QUANT, kernels=kernels_key()))
    plan = LoadPlan.resolve(bundle, threads=1)
    assert plan.quant == QUANT and not plan.repack and plan.decode_repacked
    assert not LoadPlan.resolve(bundle, threads=1, n_seq=2).decode_repacked
    assert not LoadPlan.resolve(bundle, threads=1, decode_repacked=False).decode_repacked


def test_a_second_copy_larger_than_the_free_memory_does_not_fit(tmp_path):
    assert second_copy_fits(DEMO / f"llm-{QUANT}.gguf")
    huge = tmp_path / "huge.gguf"
    with open(huge, "wb") as f:
        f.truncate(1 << 42)                      # 4 TiB, sparse: more than any machine this runs on has free
    assert not second_copy_fits(huge)
