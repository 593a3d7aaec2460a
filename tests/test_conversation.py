"""Interpreter.ask: a follow-up continues the ECG's conversation from its KV state, whether the sequence is still
in the context or was parked while other ECGs were interpreted, and gives what evaluating the whole
conversation afresh gives."""
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from gem_runtime.constants import EOS_ID
from gem_runtime.errors import ConfigError, ConversationNotFound
from gem_runtime.interpreter import Interpreter
from gem_runtime.llm import LlmTimings

DICOM = get_testdata_file("waveform_ecg.dcm")
QUESTION = "Is the QT interval prolonged?"


@pytest.fixture(scope="module")
def gem(tiny_bundle):
    with Interpreter.load(tiny_bundle, quant="f16", threads=2, state_bytes=64 << 20) as g:
        yield g


def test_a_parked_conversation_continues_exactly_as_a_live_one(gem, ptb):
    live = gem.ask(gem.interpret(DICOM, max_new_tokens=24), QUESTION, max_new_tokens=16)
    first = gem.interpret(DICOM, max_new_tokens=24)
    gem.interpret(ptb, max_new_tokens=8)                       # parks the first conversation's state
    assert gem.conversations.get(first.ecg_id).state is not None
    parked = gem.ask(first, QUESTION, max_new_tokens=16)
    assert parked.token_ids == live.token_ids and parked.text == live.text and parked.new_tokens > 0
    assert parked.timings["ecg_encoder"] == parked.timings["image_encoder"] == parked.timings["render"] == 0.0
    second = gem.ask(first, "And the heart rate?", max_new_tokens=8)    # turns go on from where they stopped
    assert second.prompt_positions < 30


def test_the_cached_turn_equals_evaluating_the_conversation_afresh(gem):
    result = gem.interpret(DICOM, max_new_tokens=24)
    answer = gem.ask(result, QUESTION, max_new_tokens=16)
    # afresh: the same prompt, then the first answer and the new turn fed in one batch instead of token by token
    again = gem.interpret(DICOM, max_new_tokens=24)
    assert again.token_ids == result.token_ids
    llm = gem.llm
    llm.truncate(again.prompt_positions)
    user_turn = llm.tokenize(f"USER: {QUESTION} ASSISTANT:")[1:]
    pos = llm.eval_tokens(again.token_ids + [EOS_ID] + user_turn, again.prompt_positions, "last")
    fresh = llm.generate(pos, 16, LlmTimings())
    gem._live = None                                           # the context no longer holds that conversation
    gem.conversations.drop(again.ecg_id)
    assert fresh == answer.token_ids


def test_unknown_ids_and_empty_questions_are_refused(gem):
    with pytest.raises(ConversationNotFound, match="not known"):
        gem.ask("no-such-ecg", QUESTION)
    result = gem.interpret(DICOM, max_new_tokens=8)
    with pytest.raises(ConfigError, match="empty"):
        gem.ask(result, "   ")


def test_the_state_budget_evicts_the_oldest_parked_conversation(tiny_bundle, ptb):
    with Interpreter.load(tiny_bundle, quant="f16", threads=2, state_bytes=1) as g:     # room for none
        old = g.interpret(DICOM, max_new_tokens=8)
        g.interpret(ptb, max_new_tokens=8)
        with pytest.raises(ConversationNotFound, match="evicted"):
            g.ask(old, QUESTION)
    assert np.isfinite(old.measurements.hr_bpm)
