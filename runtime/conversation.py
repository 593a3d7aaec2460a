"""Follow-up questions on an ECG already interpreted: its conversation, continued from the sequence's KV state.

A follow-up never re-reads, re-renders, re-encodes or re-prefills the ECG: the conversation whose sequence is in
the context (the live one) just gets the new turn of GEM's llava_v1 template appended; another one is first
parked (its KV state saved with llama_state_seq_get_data) and the asked one restored (set_data). Parked states
are kept newest-last and evicted oldest-first to stay under a byte budget.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field

from .constants import EOS_ID, ROLES, SEP
from .diagnosis import DiagnosisVerdict
from .errors import ContextOverflowError, ConversationNotFound
from .grounding import GroundingItem
from .measure import Measurements
from .readers import DeviceReport
from .timings import Timings

_FORGOTTEN_IDS = 4096           # how many dropped ids are remembered, to say why rather than "unknown"
# why a conversation is no longer kept, as a follow-up's 404 says it
EVICTED = "was evicted to keep the cached states under the memory limit"
CUT_SHORT = ("was dropped: its last follow-up was cut short while it was being written (a timeout, a client that "
             "left, or an error), so its state is unusable; interpret the ECG again")


@dataclass
class Conversation:
    """One ECG's conversation: where its sequence ends, and what answers are checked against."""

    ecg_id: str
    pos: int                            # the next KV position
    pending: list[int]                  # generated ids not yet in the KV (the last one, stopped at a limit)
    prefix_ids: list[int]               # the prompt's prefix (shared by every request: its KV is reused)
    measurements: Measurements
    device: DeviceReport | None
    sex: str | None = None              # the record's patient sex ("F"/"M"/None): answers are checked with its limits
    image_png: bytes | None = None      # the image the model saw, where the caller keeps it (a viewer)
    turns: list[tuple[str, str]] = field(default_factory=list)   # (question, answer)
    state: bytes | None = None          # the parked KV state; None while the sequence is live

    @property
    def nbytes(self) -> int:
        return len(self.state or b"") + len(self.image_png or b"")

    def next_turn_ids(self, question: str, tokenize) -> list[int]:
        """`</s>USER: <question> ASSISTANT:` after the last answer (and its unfed last token)."""
        user, assistant = ROLES
        return self.pending + [EOS_ID] + list(tokenize(f"{user}: {question.strip()}{SEP}{assistant}:"))[1:]

    def check_room(self, turn_ids: list[int], n_ctx: int) -> None:
        """ContextOverflowError when the new turn would not leave room for an answer; raised before anything is
        written to the KV, so the conversation stays as it was (a shorter question still works)."""
        if self.pos + len(turn_ids) >= n_ctx:
            raise ContextOverflowError(f"the question's turn is {len(turn_ids)} tokens and the conversation holds "
                                       f"{self.pos}: over the context of {n_ctx}; the conversation is kept, ask a "
                                       "shorter question")


@dataclass(frozen=True)
class Answer:
    """A follow-up's answer, its numbers checked as the first report's are."""

    ecg_id: str
    question: str
    text: str
    new_tokens: int
    prompt_positions: int               # the new turn only: what was evaluated before the answer
    timings: Timings
    grounding: list[GroundingItem]
    token_ids: list[int] = field(default_factory=list)
    diagnoses: list[DiagnosisVerdict] = field(default_factory=list)   # every finding the answer states, checked

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["timings_ms"] = self.timings.to_dict()
        d["grounding"] = [g.to_dict() for g in self.grounding]
        d["diagnoses"] = [v.to_dict() for v in self.diagnoses]
        del d["timings"]
        return d


class ConversationCache:
    """Conversations by ecg_id, least recently used first; parked states evicted to stay under `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, Conversation] = OrderedDict()
        self._forgotten: OrderedDict[str, str] = OrderedDict()      # ecg_id -> why it was dropped

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self._items.values())

    def get(self, ecg_id: str) -> Conversation:
        conv = self._items.get(ecg_id)
        if conv is None:
            why = self._forgotten.get(ecg_id) or "is not known to this service (interpret the ECG first)"
            raise ConversationNotFound(f"ECG {ecg_id} {why}")
        self._items.move_to_end(ecg_id)
        return conv

    def put(self, conv: Conversation) -> None:
        self._items[conv.ecg_id] = conv
        self._items.move_to_end(conv.ecg_id)
        self._evict()

    def drop(self, ecg_id: str, why: str = EVICTED) -> None:
        """No longer keep a conversation; a later get says `why` (EVICTED, CUT_SHORT)."""
        if self._items.pop(ecg_id, None) is not None:
            self._forget(ecg_id, why)

    def _evict(self) -> None:
        """Parked conversations, oldest first; the live one holds no state bytes and stays."""
        while self.nbytes > self.max_bytes:
            oldest = next((k for k, c in self._items.items() if c.state is not None), None)
            if oldest is None:
                break
            self.drop(oldest)

    def _forget(self, ecg_id: str, why: str) -> None:
        self._forgotten[ecg_id] = why
        self._forgotten.move_to_end(ecg_id)
        while len(self._forgotten) > _FORGOTTEN_IDS:
            self._forgotten.popitem(last=False)


def position_after(pos: int, out: list[int], max_new_tokens: int, n_ctx: int) -> tuple[int, list[int]]:
    """(next KV position, ids not yet in the KV) after generating `out` from `pos`: generation feeds every
    token but the last when it stops at the token limit or the end of the context (not at EOS)."""
    if not out:
        return pos, []
    stopped_early = len(out) == max_new_tokens or pos + len(out) >= n_ctx
    return (pos + len(out) - 1, out[-1:]) if stopped_early else (pos + len(out), [])
