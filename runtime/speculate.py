"""Speculative decoding: drafted tokens checked by the model itself, greedy, in one llama_decode.

GEM's reports are templated ("The PR interval is ... ms, QRS duration ..."), so the next few tokens are often
predictable without the model: from an n-gram table of the training reports shipped in the bundle
(`NgramTable`, written at export) and from the text so far (prompt lookup). The model then decodes the current
token and the k drafted ones as one batch; every draft token that equals the model's own greedy choice after the
one before it is kept, and the first that does not is replaced by that choice. So the text is plain greedy
decoding's, with one caveat shared with `gem-run batch --decode-batch`: llama.cpp's CPU matmuls round a batch of
k + 1 rows differently from one row (tinyBLAS and repacked kernels for several rows, vec_dot for one), so where the
model's top two tokens are within that rounding of each other the choice can differ. Flash attention must be off
(with it on, a one-token decode splits attention across threads and rounds differently again). How often the text
is identical is measured per model (`gem-bench speculation`); the tests pin identity on the tiny and demo models.

Whether it pays depends on the machine: a k-token decode costs more than one token (on 2 cores at GEM-7B depth,
k=2 costs 1.5x), so `gem-run tune` measures the cost curve and the acceptance rate and picks the draft length
(0: plain decoding) that gives the most tokens per second.
"""
from __future__ import annotations

import time
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import BundleError
from .files import atomic_write

NGRAM_FILE = "ngram_drafts.npz"
NGRAM_ORDER = 3            # tokens of context a table entry is keyed on
NGRAM_MIN_SHARE = 0.6      # a continuation drafted only where it followed its context at least this often
LOOKUP_MIN_MATCH = 2       # prompt lookup: the last tokens must have occurred before, at least this many


@dataclass
class SpeculationStats:
    """What a speculative decode did: tokens it drafted (at most draft_len per step), those the model kept, and
    its llama_decode calls."""

    draft_len: int = 0
    drafted: int = 0
    accepted: int = 0
    steps: int = 0

    @property
    def acceptance(self) -> float:
        return self.accepted / self.drafted if self.drafted else 0.0

    def to_dict(self) -> dict:
        return {"draft_len": self.draft_len, "drafted": self.drafted, "accepted": self.accepted,
                "steps": self.steps, "acceptance": round(self.acceptance, 3)}


class NgramTable:
    """Context of NGRAM_ORDER tokens -> the token that followed it in the training reports (where it did so in at
    least NGRAM_MIN_SHARE of cases). Stored as three int32 arrays in an .npz (no pickles)."""

    def __init__(self, keys: np.ndarray, nexts: np.ndarray):
        self.keys, self.nexts = keys, nexts
        self._next = {tuple(int(t) for t in k): int(n) for k, n in zip(keys, nexts)}

    @classmethod
    def build(cls, token_streams: Iterable[list[int]]) -> "NgramTable":
        counts: dict[tuple, Counter] = defaultdict(Counter)
        for ids in token_streams:
            for i in range(NGRAM_ORDER, len(ids)):
                counts[tuple(ids[i - NGRAM_ORDER:i])][ids[i]] += 1
        keys, nexts = [], []
        for key, c in counts.items():
            token, n = c.most_common(1)[0]
            if n >= NGRAM_MIN_SHARE * sum(c.values()):
                keys.append(key), nexts.append(token)
        return cls(np.array(keys, np.int32).reshape(-1, NGRAM_ORDER), np.array(nexts, np.int32))

    def save(self, path: Path) -> Path:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:      # a file object: np.savez would add ".npz" to a name
                np.savez(f, order=np.int32(NGRAM_ORDER), keys=self.keys, nexts=self.nexts)

        return atomic_write(Path(path), write)

    @classmethod
    def load(cls, path: Path) -> "NgramTable":
        try:
            with np.load(path, allow_pickle=False) as z:
                order, keys, nexts = int(z["order"]), z["keys"], z["nexts"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise BundleError(Path(path).parent, f"{Path(path).name}: not an n-gram draft table ({e})") from None
        if order != NGRAM_ORDER or keys.ndim != 2 or keys.shape != (len(nexts), order):
            raise BundleError(Path(path).parent, f"{Path(path).name}: table of order {order}, shape {keys.shape}; "
                                                 f"this runtime reads order {NGRAM_ORDER}")
        return cls(keys, nexts)

    def __len__(self) -> int:
        return len(self._next)

    def chain(self, history: list[int], k: int) -> list[int]:
        """Up to k tokens, each the table's continuation of the NGRAM_ORDER before it."""
        context, out = list(history[-NGRAM_ORDER:]), []
        while len(out) < k and len(context) == NGRAM_ORDER:
            nxt = self._next.get(tuple(context))
            if nxt is None:
                break
            out.append(nxt)
            context = context[1:] + [nxt]
        return out


def lookup(history: list[int], k: int, max_match: int = 4) -> list[int]:
    """Prompt lookup: where the last tokens (the longest match first) occurred before, what followed them."""
    for n in range(min(max_match, len(history) - 1), LOOKUP_MIN_MATCH - 1, -1):
        tail = history[-n:]
        for start in range(len(history) - n - 1, -1, -1):
            if history[start:start + n] == tail:
                return history[start + n:start + n + k]
    return []


class Drafter:
    """The table's chain first (the reports' template), then prompt lookup, for the rest of the k tokens."""

    def __init__(self, table: NgramTable | None):
        self.table = table

    def draft(self, history: list[int], k: int) -> list[int]:
        out = self.table.chain(history, k) if self.table is not None else []
        if len(out) < k:
            out += lookup(history + out, k - len(out))
        return out[:k]


def generate_speculative(llm, pos: int, history: list[int], max_new_tokens: int, drafter: Drafter, draft_len: int,
                         timings, ignore_eos: bool = False,
                         on_token: Callable[[int], None] | None = None) -> list[int]:
    """`LlamaLLM.generate` with up to draft_len drafted tokens per step: the same stopping rules (EOS, the limit,
    the end of the context) and the KV cache left as generate leaves it; what it drafted and kept goes into
    timings.speculation. `history`: the prompt's token ids (the table's first context, what lookup searches)."""
    stats = timings.speculation = SpeculationStats(draft_len=draft_len)
    out: list[int] = []
    pos0, t0 = pos, time.perf_counter()
    tok, stopped_at_eos = int(np.argmax(llm.logits())), False
    while True:
        if tok == llm.eos_id and not ignore_eos:
            stopped_at_eos = True
            break
        out.append(tok)
        if on_token is not None:
            on_token(tok)
        if pos + 1 >= llm.n_ctx or len(out) == max_new_tokens:
            break
        room = min(draft_len, max_new_tokens - len(out), llm.n_ctx - pos - 2)
        draft = drafter.draft(history + out, room) if room > 0 else []
        predicted = llm.verify([tok] + draft, pos)
        stats.steps += 1
        stats.drafted += len(draft)
        kept = 0
        while kept < len(draft) and draft[kept] == predicted[kept]:
            kept += 1
        stats.accepted += kept
        if kept < len(draft):
            llm.truncate(pos + 1 + kept)               # the rejected drafts leave the cache
        pos += 1                                       # `tok` is in the cache; pos: the next one's place
        stop = False
        for d in draft[:kept]:                         # each checked as the loop above checks `tok`
            if d == llm.eos_id and not ignore_eos:
                stopped_at_eos = stop = True
                break
            out.append(d)
            if on_token is not None:
                on_token(d)
            if pos + 1 >= llm.n_ctx or len(out) == max_new_tokens:
                stop = True
                break
            pos += 1
        if stop:
            break
        tok = predicted[kept]
    fed = len(out) if stopped_at_eos else max(0, len(out) - 1)    # what plain generate leaves in the cache
    llm.truncate(pos0 + fed)
    timings.decode_ms = (time.perf_counter() - t0) * 1000
    timings.decode_tokens = len(out)
    return out
